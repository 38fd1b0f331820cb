"""Parse and validate ingest bodies (line protocol or JSON) into line-protocol points
(written by storage/lines.py).

The whole body is validated before anything is returned, so a handler can
buffer all of a request or none of it. Identifiers and field names are
restricted to characters that need no escaping in line protocol, which keeps
encoding a plain string join on the hot path.

Hot path (see docs/PERFORMANCE.md): JSON is decoded by orjson (twice as fast
as ujson on our bodies), names and sets of field names that already passed
their pattern are remembered, and a sample whose values are all finite
numbers is encoded by orjson and one byte translation (lines.encode_fields)
instead of a Python loop over its fields.
"""
from dataclasses import dataclass
from math import isfinite

import orjson
import ujson

from .. import registry
from ..storage.feed import Feed
from ..storage.lines import SERIES_PREFIXES_LIMIT, Points, encode_fields
from ..storage.schema import (
    CLIENT_END_DETAILS,
    FIELD_RE,
    FIELD_RULE,
    IDENTIFIER_RE,
    IDENTIFIER_RULE,
    MEASUREMENT,
)

MAX_FIELDS = 64
MAX_EXACT_INT = 2**53  # ints up to this convert to float exactly, and never overflow
# Names that already matched their pattern: every sample repeats a few field
# names and its call's ids, so a set lookup replaces most regex matches.
# Bounded (cleared when full) because call ids keep coming.
_VALID_NAMES_LIMIT = 20_000
_valid_identifiers = set()
_valid_fields = set()
_field_plans = {}  # tuples of a sample's field names, all valid -> the registry's storage plan (None: as sent)

PRECISION_NS = {"ns": 1, "n": 1, "us": 1_000, "u": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

# Values that browsers of the 2015 era produced for a stat they did not have.
MISSING_VALUES = frozenset({"", "undefined", "NaN", "nan", "null", "None"})
TRUE_VALUES = frozenset({"t", "T", "true", "True", "TRUE"})
FALSE_VALUES = frozenset({"f", "F", "false", "False", "FALSE"})
LINE_TAGS = {"id": "call", "call": "call", "peer": "peer", "kind": "kind"}


class IngestError(Exception):
    """A request the client must fix; `status` is the HTTP status to answer."""

    def __init__(self, message, status=400, code="bad_request"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass
class Limits:
    max_samples: int = 10_000
    max_skew_ns: int = 300 * 1_000_000_000
    feed: Feed | None = None  # None: nothing goes to the live feed (imports, written with their own old times)


@dataclass
class Parsed:
    """What one request adds: its points, ready to buffer, the calls they are of, and its counters."""

    lines: list
    calls: set
    sent_dimensions: list | None = None  # the (call, peer) whose dimensions went with the points (Feed.forget)
    samples: int = 0
    accepted: int = 0
    events: int = 0
    dropped: int = 0
    restamped: int = 0


# A request without a client's dimensions (shared: never changed).
_NO_DIMENSIONS = {}


class _Collector(Points):
    """One request's validated samples and ends as points, with its counters and limits."""

    def __init__(self, now_ns, limits, prefixes=None, extractor=None, client=None,
                 prefixes_limit=SERIES_PREFIXES_LIMIT):
        """`prefixes`: a connection's table of series prefixes, kept from one frame to the next
        (at most `prefixes_limit`);
        `extractor` (dimensions.extract.Extractor; None: no dimensions) reads the peers'
        dimensions, `client` those the request's User-Agent and address tell of every peer."""
        Points.__init__(self, now_ns, limits.feed, prefixes, prefixes_limit)
        self.limits = limits
        self.result = Parsed(self.lines, self.calls, self.sent_dimensions)
        self._stamp = 0
        self.extractor = extractor
        self.client = client
        self._tags = None  # (call, peer) -> the allowed tags of its objects
        self._reports = None  # (call, peer) -> its newest raw report in the request

    def timestamp(self, ts_ns):
        """Use the client's time unless it is missing or skewed; server stamps are
        spread by 1 µs so samples of one series in one request stay distinct."""
        if ts_ns is not None and abs(ts_ns - self.now_ns) <= self.limits.max_skew_ns:
            return ts_ns
        if ts_ns is not None:
            self.result.restamped += 1
        self._stamp += 1000
        return self.now_ns + self._stamp

    def add_sample(self, call, peer, kind, ts_ns, fields, values):
        """`fields` is the sample's encoded field set (b"rtt=41.0,jitter=3.1"), empty if none;
        `values` the {name: number} it was encoded from, read for the live feed (None: no feed)."""
        result = self.result
        result.samples += 1
        if result.samples > self.limits.max_samples:
            raise IngestError(
                f"more than {self.limits.max_samples} samples in one request",
                413, "too_many_samples")
        if not fields:
            return
        result.accepted += 1
        self.sample(call, peer, kind, ts_ns, fields, values)

    def add_end(self, call, peer, ts_ns, detail=None, reason="explicit"):
        """An end; `detail` is what the client said (CLIENT_END_DETAILS). `reason`: "explicit",
        or "timeout" for a peer a media server saw time out (END_REASON_CODES)."""
        self.end(call, peer, ts_ns // 1_000_000, detail, reason)
        self.result.events += 1

    def add_presence(self, call, peer, ts_ns):
        """A peer seen without a sample (a media server's handle attached): its presence only."""
        self.seen(call, peer, ts_ns)

    def note_peer(self, call, peer, tags, report, where):
        """A JSON object's `tags` member (checked: a bad one refuses the request) and raw
        report: what they tell of the peer's dimensions is read once, at `finish`."""
        if tags is not None:
            tags = self.extractor.tags(tags, where)  # shared: never changed
            if self._tags is None:
                self._tags = {}
            known = self._tags.get((call, peer))
            self._tags[(call, peer)] = tags if known is None or known is tags else {**known, **tags}
        if report is not None:
            if self._reports is None:
                self._reports = {}
            self._reports[(call, peer)] = report

    def finish(self):
        """The request's points with their presence (Points.finish), and its counters."""
        if self.extractor is not None:
            self.peer_dimensions()
        Points.finish(self)
        return self.result

    def peer_dimensions(self):
        """Each peer's dimensions as the request tells them: its client's, the tags and the
        route and codecs of the newest report of each peer (Extractor.peer)."""
        tags, reports, dimensions, peer = self._tags, self._reports, self.dimensions, self.extractor.peer
        client = _NO_DIMENSIONS if self.client is None else self.client
        for key in self.presence:
            if not key[1]:
                continue
            update = peer(key, client, None if tags is None else tags.get(key),
                          None if reports is None else reports.get(key))
            if update:
                dimensions[key] = update


def _remember(valid, name):
    if len(valid) >= _VALID_NAMES_LIMIT:
        valid.clear()
    valid.add(name)


def check_identifier(value, what, where):
    if value.__class__ is str and value in _valid_identifiers:
        return value
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        raise IngestError(
            f"{where}: {what} must be {IDENTIFIER_RULE}, got {_show(value)}")
    _remember(_valid_identifiers, value)
    return value


def check_field_name(name, where):
    if name in _valid_fields:
        return
    if not FIELD_RE.fullmatch(name):
        raise IngestError(
            f"{where}: field name {_show(name)} must match {FIELD_RULE}")
    _remember(_valid_fields, name)


def _show(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse(body, now_ns, limits, precision="ns", extractor=None, client=None):
    """Parse a request body of any supported format into a `Parsed`; with an `extractor`, the
    peers' dimensions go with their presence (`client`: what the request's User-Agent and
    address tell, dimensions.extract.Extractor.client)."""
    stripped = body.lstrip()
    if not stripped:
        raise IngestError("empty body: send line protocol or JSON", code="empty_body")
    collector = _Collector(now_ns, limits, None, extractor, client)
    if stripped[:1] in (b"{", b"["):
        _parse_json(stripped, collector)
    else:
        _parse_lines(stripped, collector, precision)
    return collector.finish()


# --- line protocol -----------------------------------------------------------

def _parse_lines(body, collector, precision):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"body is not valid UTF-8 (byte {exc.start})") from None
    scale = PRECISION_NS.get(precision)
    if scale is None:
        raise IngestError(f"precision must be one of ns, us, ms, s; got {_show(precision)}")
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        if "\\" in line or '"' in line:
            sections = _split_escaped(line, " ", where)
        else:
            sections = line.split(" ")
        if len(sections) not in (2, 3) or not all(sections):
            raise IngestError(f"{where}: expected 'measurement[,tags] fields [timestamp]'")
        series = _split_escaped(sections[0], ",", where) if "\\" in sections[0] else sections[0].split(",")
        measurement = _unescape(series[0])
        if measurement != MEASUREMENT:
            raise IngestError(f"{where}: measurement must be {MEASUREMENT}, got {_show(measurement)}")
        tags = {}
        for pair in series[1:]:
            key, _, value = pair.partition("=")
            key = LINE_TAGS.get(_unescape(key))
            if key:
                tags[key] = check_identifier(_unescape(value), key, where)
        call = tags.get("call")
        if call is None:
            raise IngestError(f"{where}: missing call id (tag id or call)")
        fields, values = _line_fields(sections[1], where, collector)
        ts_ns = None
        if len(sections) == 3:
            try:
                ts_ns = int(sections[2]) * scale
            except ValueError:
                raise IngestError(f"{where}: timestamp must be an integer, got {_show(sections[2])}") from None
        ts_ns = collector.timestamp(ts_ns)
        collector.add_sample(call, tags.get("peer"), tags.get("kind"), ts_ns, fields, values)


def _line_fields(section, where, collector):
    """The line's fields as line-protocol bytes and as {name: float}."""
    pairs = _split_escaped(section, ",", where) if ("\\" in section or '"' in section) else section.split(",")
    if len(pairs) > MAX_FIELDS:
        raise IngestError(f"{where}: more than {MAX_FIELDS} fields")
    encoded, values = [], {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = _unescape(name)
        if not sep:
            raise IngestError(f"{where}: field {_show(name)} has no '='")
        if name not in _valid_fields:
            check_field_name(name, where)
        try:
            value = float(raw)  # the common case; everything float() refuses is looked at below
        except ValueError:
            value = _line_value(raw, name, where)
        if value is None or not isfinite(value):
            collector.result.dropped += 1
        else:
            encoded.append(f"{name}={value!r}")
            values[name] = value
    return ",".join(encoded).encode(), values


def _line_value(raw, name, where):
    """A value float() refused: a missing marker, a boolean, an integer or an error."""
    if raw in MISSING_VALUES:
        return None
    if raw[:1] == '"':
        raise IngestError(f"{where}: field {name} is a string; metrics must be numbers")
    if raw in TRUE_VALUES:
        return 1.0
    if raw in FALSE_VALUES:
        return 0.0
    if raw[-1:] in ("i", "u"):
        try:
            value = float(int(raw[:-1]))
        except (ValueError, OverflowError):
            raise IngestError(f"{where}: field {name} is not a number: {_show(raw)}") from None
        return value
    raise IngestError(f"{where}: field {name} is not a number: {_show(raw)}")


def _split_escaped(text, separator, where):
    """Split on `separator` outside backslash escapes and double-quoted strings."""
    parts, start, quoted, i, n = [], 0, False, 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise IngestError(f"{where}: unterminated string")
    parts.append(text[start:])
    return parts


def _unescape(text):
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


# --- JSON --------------------------------------------------------------------

def _parse_json(body, collector):
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        # ujson decides what orjson refuses (NaN, 1e999, lone surrogates), so
        # the accepted bodies and their error messages stay what they were.
        try:
            document = ujson.loads(body)
        except (ValueError, OverflowError, RecursionError) as exc:
            raise IngestError(f"invalid JSON: {exc}", code="invalid_json") from None
    if isinstance(document, dict):
        _json_object(document, "body", collector)
    elif isinstance(document, list):
        if len(document) > collector.limits.max_samples:
            raise IngestError(
                f"more than {collector.limits.max_samples} samples in one request",
                413, "too_many_samples")
        for index, item in enumerate(document):
            _json_object(item, f"index {index}", collector)
    else:
        raise IngestError("JSON body must be an object or an array of objects")


def check_end_detail(detail, event, where):
    """The client's reason for an end: one of CLIENT_END_DETAILS, and only on an end event."""
    if event != "end" or detail not in CLIENT_END_DETAILS:
        raise IngestError(f"{where}: reason {_show(detail)} goes with an end event and is one of "
                          f"{', '.join(CLIENT_END_DETAILS)}")


def _number(value):
    """A JSON number as float, None for null/non-finite, else raise TypeError."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            value = float(value)
        except OverflowError:
            return None
        return value if isfinite(value) else None
    raise TypeError


def _json_object(item, where, collector):
    if not isinstance(item, dict):
        raise IngestError(f"{where}: each sample must be a JSON object")
    call = item.get("call")
    call = check_identifier(item.get("id") if call is None else call, "call", where)
    peer = item.get("peer")
    if peer is not None:
        check_identifier(peer, "peer", where)
    kind = item.get("kind")
    if kind is not None:
        check_identifier(kind, "kind", where)
    ts_ns = None
    if item.get("ts") is not None:
        try:
            ts_ms = _number(item["ts"])
        except TypeError:
            raise IngestError(f"{where}: ts must be a number (Unix ms)") from None
        ts_ns = None if ts_ms is None else round(ts_ms * 1000) * 1000  # µs: exact in a float
        if ts_ms is None:
            collector.result.restamped += 1
    event = item.get("event")
    stats, report = item.get("stats"), item.get("report")
    if event is None and stats is None and report is None:
        raise IngestError(f"{where}: needs 'stats', 'report' or 'event'")
    if event is not None and event != "end":
        raise IngestError(f"{where}: unknown event {_show(event)} (only 'end')")
    detail = item.get("reason")
    if detail is not None:
        check_end_detail(detail, event, where)
    ts_ns = collector.timestamp(ts_ns)
    if report is not None and not isinstance(report, list):
        raise IngestError(f"{where}: report must be the array getStats() returned")
    if collector.extractor is not None:
        tags = item.get("tags")
        if tags is not None or report is not None:
            collector.note_peer(call, peer, tags, report, where)
    if stats is not None:
        collector.add_sample(call, peer, kind, ts_ns, *_json_stats(stats, where, collector))
    if report is not None:
        for report_kind, fields in registry.extract(report).items():
            collector.add_sample(call, peer, report_kind, ts_ns, *_json_stats(fields, where, collector))
    if event == "end":
        collector.add_end(call, peer, ts_ns, detail)


def _json_stats(stats, where, collector):
    """The sample's fields as line-protocol bytes (b"" when none is left) and as {name: number}."""
    if not isinstance(stats, dict):
        raise IngestError(f"{where}: stats must be an object of name: number")
    names = tuple(stats)
    try:
        plan = _field_plans[names]
    except KeyError:
        if len(names) > MAX_FIELDS:
            raise IngestError(f"{where}: more than {MAX_FIELDS} fields") from None
        for name in names:
            check_field_name(name, where)
        if len(_field_plans) >= _VALID_NAMES_LIMIT:
            _field_plans.clear()
        plan = _field_plans[names] = registry.storage_plan(names)
    if plan is not None:
        stats = registry.apply_storage_plan(plan, stats)
    encoded = encode_fields(stats)
    return _json_stats_one_by_one(stats, where, collector) if encoded is None else (encoded, stats)


def _json_stats_one_by_one(stats, where, collector):
    """Values that are not all finite numbers: drop null and non-finite ones
    (counted), turn booleans into 1/0, refuse anything else."""
    encoded, kept = [], {}
    for name, value in stats.items():
        kind = value.__class__
        if kind is float:
            keep = isfinite(value)
        elif kind is int and -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
            value, keep = float(value), True
        else:
            try:
                value = _number(value)
            except TypeError:
                raise IngestError(f"{where}: stats.{name} must be a number, got {_show(value)}") from None
            keep = value is not None
        if keep:
            encoded.append(f"{name}={value!r}")
            kept[name] = value
        else:
            collector.result.dropped += 1
    return ",".join(encoded).encode(), kept
