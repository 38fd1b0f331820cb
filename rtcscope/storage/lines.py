"""Line protocol of what the ingest paths store (docs/storage.md): samples (rtc_stats),
explicit ends and disconnect markers (rtc_events), presence (rtc_calls), the live feed's
rows beside them (feed.py), the peers' dimensions when they change (rtc_dimensions) and
rtcstats sessions (rtc_rtcstats_sessions).

Identifiers and field names arrive checked (schema.IDENTIFIER_RE, FIELD_RE): they need no
escaping, so a line is a plain join. Every value is written as a float (a field whose type
changes is refused by InfluxDB), but rtc_dimensions' `d`, always a string.
"""
import orjson

from .feed import encode_feed_values, string_field
from .schema import (
    DIMENSIONS_MEASUREMENT,
    END_DETAIL_CODES,
    END_REASON_CODES,
    EVENTS_MEASUREMENT,
    MEASUREMENT,
    PRESENCE_MEASUREMENT,
    SESSIONS_MEASUREMENT,
)

# Series prefixes a long-lived caller keeps for its points (`prefixes`), at most this many.
SERIES_PREFIXES_LIMIT = 64
_NUMBER_TYPES = frozenset({float, int})
_COLONS_AS_EQUALS = bytes.maketrans(b":", b"=")


class Points:
    """One request's points, as its samples and ends arrive; `finish` adds its presence.
    With a live feed (feed.Feed), its rows go beside them."""

    def __init__(self, now_ns, feed=None, prefixes=None, prefixes_limit=SERIES_PREFIXES_LIMIT):
        """`prefixes`: a connection's table of series prefixes, kept from one request to the next,
        of at most `prefixes_limit`."""
        self.now_ns = now_ns
        self.feed = feed
        self.lines = []
        self.calls = set()  # the calls of its ends and presence
        # Presence per (call, peer): [first sample ms, last sample ms].
        self.presence = {}
        self.feed_samples = {}  # (call, peer) -> [(kind, time ns, its encoded FEED_FIELDS)], with a live feed
        self.ends = []  # (call, peer, at ms, detail code, reason) of the ends, for the live feed
        # (call, peer) -> what the request tells of the peer's dimensions ({name: value or None}), with a live feed
        self.dimensions = {}
        self.sent_dimensions = []  # the (call, peer) whose dimensions `finish` wrote
        # (call, peer, kind) -> b"rtc_stats,call=..,kind=..,peer=..", (call, peer) -> b"rtc_calls,call=..,peer=.. first="
        self._prefixes = {} if prefixes is None else prefixes
        self._prefixes_limit = prefixes_limit

    def sample(self, call, peer, kind, ts_ns, fields, values):
        """`fields` is the sample's encoded field set (b"rtt=41.0,jitter=3.1"), not empty;
        `values` the {name: number} it was encoded from, read for the live feed (None: no feed)."""
        series = (call, peer, kind)
        prefix = self._prefixes.get(series)
        if prefix is None:
            tags = "call=" + call + (",kind=" + kind if kind else "") + (",peer=" + peer if peer else "")
            prefix = self._remember(series, f"{MEASUREMENT},{tags}".encode())
        self.lines.append(b"%s %s %d" % (prefix, fields, ts_ns))
        ms = ts_ns // 1_000_000
        key = (call, peer)
        span = self.presence.get(key)
        if span is None:
            self.presence[key] = [ms, ms]
        elif ms < span[0]:
            span[0] = ms
        elif ms > span[1]:
            span[1] = ms
        if self.feed is not None:
            feed_values = encode_feed_values(values)
            if feed_values:
                self.feed_samples.setdefault(key, []).append((kind, ts_ns, feed_values))

    def _remember(self, key, prefix):
        """`prefix` of the points of a series (call, peer, kind) or the presence of a peer (call, peer)."""
        if len(self._prefixes) >= self._prefixes_limit:  # a client naming ever new kinds
            self._prefixes.clear()
        self._prefixes[key] = prefix
        return prefix

    def end(self, call, peer, at_ms, detail=None, reason="explicit"):
        """An end at `at_ms` (an int), explicit unless `reason` says otherwise (END_REASON_CODES);
        its feed row comes with `finish`."""
        self.lines.append(end_line(call, peer, at_ms, detail, self.now_ns, reason))
        self.ends.append((call, peer, at_ms, None if detail is None else END_DETAIL_CODES[detail], reason))
        self.calls.add(call)

    def seen(self, call, peer, ts_ns):
        """A peer present at `ts_ns` without a sample (a media server's handle attached)."""
        ms = ts_ns // 1_000_000
        span = self.presence.setdefault((call, peer), [ms, ms])
        span[0], span[1] = min(span[0], ms), max(span[1], ms)

    def finish(self):
        """Add one presence point per (call, peer) at the receive time: /v1/calls/
        reads liveness from these, not from every sample. With a live feed, the
        presence and the ends go to it too: the call detector reads only that."""
        received = b",recv=%a %d" % (float(self.now_ns // 1_000_000), self.now_ns)
        lines = self.lines
        feed = self.feed
        dimensions = self.dimensions
        prefixes = self._prefixes
        for key, (first, last) in self.presence.items():
            call, peer = key
            prefix = prefixes.get(key)
            if prefix is None:
                tags = "call=" + call + (",peer=" + peer if peer else "")
                prefix = self._remember(key, f"{PRESENCE_MEASUREMENT},{tags} first=".encode())
            lines.append(b"%s%a,last=%a%s" % (prefix, float(first), float(last), received))
            if feed is not None:
                d = None
                update = dimensions.get(key) if peer else None
                if update:
                    d, changed = feed.dimensions(call, peer, update, self.now_ns)
                    if changed:
                        lines.append(dimensions_line(call, peer, d, self.now_ns))
                    if d is not None:
                        self.sent_dimensions.append(key)
                lines.append(feed.presence(call, peer, first, last, self.now_ns, self.feed_samples.get(key, ()), d))
            self.calls.add(call)
        if feed is not None:
            lines.extend(feed.end(call, peer, at_ms, detail, self.now_ns, reason)
                         for call, peer, at_ms, detail, reason in self.ends)


def dimensions_line(call, peer, d, time_ns):
    """An rtc_dimensions point: the peer's dimensions `d` (JSON, as the feed's rows carry it)
    as of `time_ns`, written when they change."""
    return f'{DIMENSIONS_MEASUREMENT},call={call},peer={peer} d="{string_field(d)}" {time_ns}'.encode()


def end_line(call, peer, at_ms, detail, now_ns, reason="explicit"):
    """An end of `peer` (None: of the whole call) at `at_ms`; `detail` is what the client
    said (END_DETAIL_CODES; None: nothing), kept as a code, as is `reason` (END_REASON_CODES:
    explicit, or timeout when a media server saw the peer time out)."""
    tags = "call=" + call + (",peer=" + peer if peer else "")
    codes = f",reason={END_REASON_CODES[reason]!r}"
    if detail is not None:
        codes += f",detail={END_DETAIL_CODES[detail]!r}"
    return f"{EVENTS_MEASUREMENT},{tags} end=1.0,at={float(at_ms)!r}{codes} {now_ns}".encode()


def end_lines(call, peer, at_ms, detail, now_ns, feed):
    """`end_line`, and with a live feed its feed row."""
    lines = [end_line(call, peer, at_ms, detail, now_ns)]
    if feed is not None:
        lines.append(feed.end(call, peer, at_ms, None if detail is None else END_DETAIL_CODES[detail], now_ns))
    return lines


def disconnect_line(call, peer, now_ns):
    """A marker, not an end: the peer ends as `disconnect` if nothing follows it
    within --call-timeout (a websocket ingest connection closed without an end).
    It has no `end` nor `at`, so readers of ends pass it by."""
    return (f"{EVENTS_MEASUREMENT},call={call},peer={peer} "
            f"reason={END_REASON_CODES['disconnect']!r},disconnected={float(now_ns // 1_000_000)!r} "
            f"{now_ns}").encode()


def disconnect_lines(call, peer, now_ns, feed):
    """The disconnect marker, and with a live feed its feed row."""
    lines = [disconnect_line(call, peer, now_ns)]
    if feed is not None:
        lines.append(feed.disconnect(call, peer, now_ns))
    return lines


def session_line(call, peer, session, sn, offset_ms, now_ns):
    """An rtcstats session's last stored sequence number and clock offset, written with its points."""
    return (f"{SESSIONS_MEASUREMENT},call={call},peer={peer},session={session} "
            f"sn={float(sn)!r},offset={float(offset_ms)!r} {now_ns}").encode()


def encode_fields(fields):
    """{name: number} (valid names) as line-protocol fields, or None when a value
    is not a finite number. A number without the `i` suffix is a float to
    InfluxDB, so orjson's "41" is stored as 41.0, like every other value."""
    if not set(map(type, fields.values())) <= _NUMBER_TYPES:
        return None
    try:
        text = orjson.dumps(fields)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return None
    if b":null" in text:  # orjson writes NaN and infinities as null
        return None
    return _fields_of_json(text)


def encode_extracted(fields):
    """`encode_fields` of extraction's output (registry.extract: finite floats under registry
    names), which needs none of its checks."""
    return _fields_of_json(orjson.dumps(fields))


def _fields_of_json(text):
    """orjson's {"name":value,...} of valid names and finite numbers as line-protocol fields. Neither
    holds a quote nor a colon, so one pass drops the quotes and makes the colons equals signs
    (a fifth of the time of two replacements, which took longer than orjson's encoding)."""
    return text.translate(_COLONS_AS_EQUALS, b'"')[1:-1]
