"""The live feed's rows (rtc_feed, docs/storage.md): how a presence, end, disconnect or
import becomes a row, and how a row's samples (`w`) are written and read back. Ingest
writes them, the detector reads them (`Store.feed_since`)."""
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import orjson

from .schema import END_REASON_CODES, FEED_DIMENSIONS_EVERY_NS, FEED_FIELDS, FEED_MAX_SAMPLES, FEED_MEASUREMENT

# (call, peer) whose dimensions as last sent a process keeps (the least recently sent go first).
DIMENSIONS_KEPT = 100_000


class Feed:
    """Writes the call detector's feed (rtc_feed): one row per presence, end and
    disconnect marker, tagged only by this process's node id so the measurement
    has one series per process, with `call` and `peer` as string fields. A row's
    time is its receive time, made unique within the series (rows of one series
    at one time would overwrite each other). A presence row also carries the
    FEED_FIELDS of its samples (`w`, see `encode_samples`), and its peer's dimensions
    (`d`) when `dimensions` says they are due."""

    def __init__(self, node, dimensions_kept=DIMENSIONS_KEPT):
        self.node = node
        self._prefix = f"{FEED_MEASUREMENT},node={node} ".encode()
        self._last_ns = 0
        self._sent = OrderedDict()  # (call, peer) -> [its dimensions as last sent, when (ns), the update then]
        self.dimensions_kept = dimensions_kept

    def _stamp(self, now_ns):
        self._last_ns = max(now_ns, self._last_ns + 1)
        return self._last_ns

    def _line(self, call, peer, fields, now_ns):
        # Identifiers hold no quote nor backslash (IDENTIFIER_RE): no escaping needed.
        return b'%scall="%s",peer="%s",%s %d' % (self._prefix, call.encode(), (peer or "").encode(),
                                                fields.encode(), self._stamp(now_ns))

    def presence(self, call, peer, first_ms, last_ms, now_ns, samples=(), dimensions=None):
        """`dimensions`: the row's `d`, as `dimensions` gave it (None: none)."""
        recv_ms = float(now_ns // 1_000_000)
        encoded = encode_samples(samples, last_ms).replace('"', '\\"')  # a line-protocol string
        d = "" if dimensions is None else f',d="{string_field(dimensions)}"'
        return self._line(call, peer, f"first={float(first_ms)!r},last={float(last_ms)!r},recv={recv_ms!r},"
                                      f'w="{encoded}"{d}', now_ns)

    def dimensions(self, call, peer, update, now_ns):
        """What a presence row of (call, peer) carries of its dimensions after `update`
        ({name: value, or None: no longer known}, what one request tells): (`d`, changed).
        `d` is the JSON of every value this process knows of the peer (and null for the
        names `update` removed), or None when nothing changed and it was sent less than
        FEED_DIMENSIONS_EVERY_NS ago; `changed`: the values differ from those last sent
        (first sight included), so an rtc_dimensions point is due too. An `update`
        equal to the previous one (a peer's requests repeat theirs) changes nothing."""
        key = (call, peer)
        sent = self._sent.get(key)
        applied = None if sent is not None and (sent[2] is update or sent[2] == update) else apply_dimensions(
            {} if sent is None else sent[0], update)
        if applied is None:
            if sent is None:
                return None, False
            sent[2] = update
            if now_ns - sent[1] < FEED_DIMENSIONS_EVERY_NS:
                return None, False
            sent[1] = now_ns
            self._sent.move_to_end(key)
            return orjson.dumps(sent[0]).decode(), False
        values, d = applied
        self._sent[key] = [values, now_ns, update]
        self._sent.move_to_end(key)
        if len(self._sent) > self.dimensions_kept:
            self._sent.popitem(last=False)
        return d, True

    def forget(self, keys):
        """(call, peer) whose `dimensions` were not stored after all (the request was refused):
        their next request sends them again."""
        for key in keys:
            self._sent.pop(key, None)

    def end(self, call, peer, at_ms, detail_code, now_ns, reason="explicit"):
        """`reason` other than explicit (a media server's session timeout) is written as its code."""
        detail = "" if detail_code is None else f",detail={detail_code!r}"
        if reason != "explicit":
            detail += f",reason={END_REASON_CODES[reason]!r}"
        return self._line(call, peer, f"end=1.0,at={float(at_ms)!r}{detail}", now_ns)

    def disconnect(self, call, peer, now_ns):
        return self._line(call, peer, f"disconnected={float(now_ns // 1_000_000)!r}", now_ns)

    def imported(self, call, now_ns):
        """An imported call, after all of its points: not presence (the call is over and
        never live), only word to every detector that the ended calls have one more."""
        return self._line(call, "", f"imported={float(now_ns // 1_000_000)!r}", now_ns)


def apply_dimensions(known, update):
    """`known` dimensions ({name: value}) after `update` ({name: value, or None: no longer
    known}): None when nothing changes, else (the new values, their `d`: JSON of them with
    null for each name `update` removed)."""
    for name, value in update.items():  # the common case: nothing new
        if known.get(name) != value:
            break
    else:
        return None
    values = known.copy()
    removed = {}
    for name, value in update.items():
        if value is not None:
            values[name] = value
        elif name in values:
            del values[name]
            removed[name] = None
    return values, orjson.dumps({**values, **removed} if removed else values).decode()


def string_field(text):
    """`text` as the inside of a line-protocol string field."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def decode_dimensions(text):
    """A `d` (of a feed row or an rtc_dimensions point) back as {name: value or None}; {}
    when it cannot be read."""
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    if values.__class__ is not dict:
        return {}
    return {name: value for name, value in values.items() if value is None or value.__class__ is str}


def encode_feed_values(values):
    """A sample's FEED_FIELDS of `values` ({name: number}) as `w` holds them: JSON numbers in
    FEED_FIELDS order, `null` for an absent one, without the brackets (b"": none of them)."""
    encoded = orjson.dumps(list(map(values.get, FEED_FIELDS)))
    return b"" if encoded == _NO_FEED_VALUES else encoded[1:-1]


def encode_samples(samples, last_ms):
    """`w`: [(kind, time ns, `encode_feed_values` of it)] as JSON, {kind: [[offset, v, v, ...],
    ...]} with each kind's samples oldest first and a sample's time as µs before the row's
    `last` (ms); "" for no samples. Only the newest FEED_MAX_SAMPLES samples are kept.
    JSON, so a detector decodes a row with one orjson call (identifiers hold no quote nor
    backslash: a kind needs no escaping)."""
    if not samples:
        return ""
    if len(samples) > FEED_MAX_SAMPLES:
        samples = sorted(samples, key=lambda sample: sample[1])[-FEED_MAX_SAMPLES:]
    last_us = int(last_ms) * 1000
    groups = {}
    for kind, ts_ns, values in samples:
        groups.setdefault(kind or "", []).append(b"[%d,%s]" % (last_us - ts_ns // 1000, values))
    return "{" + ",".join(f'"{kind}":[{b",".join(entries).decode()}]' for kind, entries in groups.items()) + "}"


_WIDTH = len(FEED_FIELDS)
_NO_FEED_VALUES = orjson.dumps([None] * _WIDTH)


class SampleRuns(NamedTuple):
    """The samples of many feed rows, decoded at once (decode_sample_runs): a run is one kind
    of one row, rows in order; `keys` [(call, peer, kind)] and `counts` [samples] of each run;
    each sample's time (µs, int64) and FEED_FIELDS values (float64 rows, NaN: absent), run
    after run, each run's samples as listed (not sorted, not merged)."""

    keys: list
    counts: np.ndarray
    times: np.ndarray
    values: np.ndarray


def decode_sample_runs(rows):
    """`w`s of feed rows [(call, peer, `w`, last ms)] back as SampleRuns, in arrays: one orjson
    call per row, one conversion for all their numbers (a detector decodes tens of thousands
    of rows a second). What cannot be read is left out: a sample whose offset is not a whole
    number; of a sample, a value that is not a number (absent); a row from a newer server may
    carry more names than this one knows, its values are cut to these; one from a server
    before JSON reads as no samples."""
    keys, counts, lasts, entries = [], [], [], []
    for call, peer, text, last_ms in rows:
        for kind, listed in _groups(text).items():
            if listed.__class__ is list and listed:
                keys.append((call, peer, kind))
                counts.append(len(listed))
                lasts.append(int(last_ms) * 1000)
                entries += listed
    table = _table(entries)
    offsets = table[:, 0]
    readable = offsets == np.trunc(offsets)  # NaN and the infinities are not
    runs = np.repeat(np.arange(len(keys)), counts)
    times = np.repeat(np.array(lasts, np.int64), counts)
    if not readable.all():
        table, runs, times = table[readable], runs[readable], times[readable]
    return SampleRuns(keys, np.bincount(runs, minlength=len(keys)), times - table[:, 0].astype(np.int64),
                      table[:, 1:])


def _groups(text):
    """A `w`'s {kind: entries} as JSON has it; {} when it is not that."""
    if not text:
        return {}
    try:
        groups = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return groups if groups.__class__ is dict else {}


def _table(entries):
    """The entries [offset, value, ...] as float64 rows of an offset and _WIDTH values, NaN
    for what is absent or not a number: in one conversion when they are all as this server
    writes them, else entry by entry, value by value."""
    try:
        table = np.array(entries, np.float64)
        if table.ndim == 2 and table.shape[1] == _WIDTH + 1:
            return table
    except (ValueError, TypeError, OverflowError):
        pass
    table = np.full((len(entries), _WIDTH + 1), np.nan)
    for row, entry in zip(table, entries):
        if entry.__class__ is list:
            row[:min(len(entry), _WIDTH + 1)] = [_number(value) for value in entry[:_WIDTH + 1]]
    return table


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return np.nan

