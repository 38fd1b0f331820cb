"""Import a chrome://webrtc-internals dump as an ended call.

A dump holds, per RTCPeerConnection, one series per stat field
(``"<stat id>-<field>"``) whose ``values`` is a JSON-encoded array sampled
once per getStats() poll. Every stat also has a ``timestamp`` series with
the report times, so the values of one stat are lined up by their end
against it (a field that appeared later has a shorter series). Each poll is
rebuilt as a getStats()-like report and goes through the registry's
``extract``, then through the ingest collector, so an imported call is
stored exactly like a POSTed one, with the dump's own times everywhere.

The dump is read with ijson's event parser, so only one PeerConnection's
decoded series are held at a time; everything is validated and encoded
before the caller buffers any point.
"""
import gzip
import json
import sys
import zlib
from array import array
from bisect import bisect_left
from dataclasses import dataclass

import ijson
import orjson

from .. import registry
from ..dimensions.report import report_dimensions
from ..storage.feed import apply_dimensions
from ..storage.lines import dimensions_line, encode_extracted
from ..storage.schema import IDENTIFIER_RE, IDENTIFIER_RULE, NOT_IDENTIFIER_RE
from ..timeparse import parse_time_ms
from .formats import IngestError, Limits, Parsed, _Collector

GZIP_MAGIC = b"\x1f\x8b"
_SERIES_KEYS = ("startTime", "endTime", "statsType", "values")
_READ_SIZE = 256 * 1024
_NUMBER_TYPES = frozenset({int, float, type(None)})
_NAN = float("nan")


def _error(message, code="invalid_dump"):
    return IngestError(message, 400, code)


class _LimitedReader:
    """A decompressed stream that refuses to grow past `limit` bytes (a gzip bomb)."""

    def __init__(self, stream, limit):
        self.stream = stream
        self.limit = limit
        self.size = 0

    def read(self, size=-1):
        try:
            chunk = self.stream.read(_READ_SIZE if size is None or size < 0 else size)
        except (OSError, EOFError, zlib.error) as exc:
            raise _error(f"the compressed dump is damaged: {exc}", "invalid_gzip") from None
        self.size += len(chunk)
        if self.size > self.limit:
            raise IngestError(f"the dump is larger than {self.limit} bytes once decompressed", 413, "dump_too_large")
        return chunk


def open_dump(stream, max_bytes):
    """The dump's JSON as a binary stream: as stored, or decompressed when it is
    gzip (Chromium's "Compress result")."""
    if stream.read(2) == GZIP_MAGIC:
        stream.seek(0)
        return _LimitedReader(gzip.GzipFile(fileobj=stream, mode="rb"), max_bytes)
    stream.seek(0)
    return stream


def peer_name(key, taken):
    """A PeerConnection key ("8-1") as a peer id: characters outside the
    identifier set become "-", and a name taken twice gets a suffix."""
    name = NOT_IDENTIFIER_RE.sub("-", str(key))[:120] or "peer"
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    taken.add(candidate)
    return candidate


def _peer_connections(events, found_meta):
    """Yield (key, {stat id: stat}) per PeerConnection, one at a time (see
    `_add_series`); of everything else in the dump only its `UserAgent` is kept
    (in `found_meta`). Each series is decoded as soon as it has been read, so
    the dump's text is never held."""
    stack = []  # (name, is_map) of the containers the parser is in
    key = None
    found = False
    connection = series = None
    for event, value in events:
        if event == "map_key":
            key = value
            continue
        if event in ("end_map", "end_array"):
            name, _ = stack.pop()
            depth = len(stack)
            if depth == 4 and series is not None:
                _add_series(connection, stack[2][0], name, series)
                series = None
            elif depth == 2 and connection is not None:
                yield name, connection
                connection = None
            continue
        depth = len(stack)
        name = key if stack and stack[-1][1] else None
        path = [entry[0] for entry in stack]
        if depth == 0:
            if event != "start_map":
                raise _error("not a webrtc-internals dump: the top level must be a JSON object")
        elif depth == 1 and name == "UserAgent" and event == "string":
            found_meta["user_agent"] = value
        elif depth == 1 and name == "PeerConnections":
            if event != "start_map":
                raise _error("PeerConnections must be an object of PeerConnection entries")
            found = True
        elif depth == 2 and path[1] == "PeerConnections":
            if event != "start_map":
                raise _error(f"PeerConnections.{name} must be an object")
            connection = {}
        elif depth == 3 and path[1] == "PeerConnections" and name == "stats":
            if event != "start_map":
                raise _error(f"PeerConnections.{path[2]}.stats must be an object of series")
        elif depth == 4 and path[1] == "PeerConnections" and path[3] == "stats":
            if event != "start_map":
                raise _error(f"PeerConnections.{path[2]}.stats.{name} must be an object")
            series = {}
        elif depth == 5 and series is not None and name in _SERIES_KEYS:
            if event in ("start_map", "start_array"):
                raise _error(f"PeerConnections.{path[2]}.stats.{path[4]}.{name} must be a string")
            series[name] = value
        if event in ("start_map", "start_array"):
            stack.append((name, event == "start_map"))
    if not found:
        raise _error("not a webrtc-internals dump: it has no PeerConnections")


def _decode_values(text):
    """A series' values held compactly (a dump's decoded series would take
    several times its size as Python objects): numbers as an array of doubles
    (null as NaN, which extraction treats as absent), anything else as a list
    with each distinct string once. Nested objects (qualityLimitationDurations)
    are dropped: extraction reads numbers, strings and booleans only. Integers
    beyond 64 bits (ICE priorities can come close) fall back to the json
    module. None when `text` is not a JSON array."""
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            values = json.loads(text)
        except (ValueError, RecursionError):
            return None
    if not isinstance(values, list):
        return None
    types = set(map(type, values))
    if types <= _NUMBER_TYPES:
        try:
            return array("d", [_NAN if value is None else value for value in values] if type(None) in types else values)
        except OverflowError:
            pass
    return [sys.intern(value) if value.__class__ is str else None if value.__class__ in (dict, list) else value
            for value in values]


def _series_time(series, name, where):
    value = series.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    parsed = parse_time_ms(value, 0) if isinstance(value, str) and value != "now" else None
    if parsed is None:
        raise _error(f"{where}: {name} is missing or not a time (RFC 3339 or Unix ms), got {value!r:.60}")
    return float(parsed)


def _add_series(stats, key, series_key, series):
    """Validate one series of PeerConnection `key` and add it to `stats`,
    {stat id: {"type", "fields": {field: values}, "start", "end"}}; the
    dump's computed "[...]" series are skipped."""
    stat_id, _, field = series_key.rpartition("-")
    if field.endswith("]"):
        return
    where = f"PeerConnections.{key}.stats.{series_key}"
    if not stat_id or not field:
        raise _error(f"{where}: a series key must be '<stat id>-<field>'")
    stats_type = series.get("statsType")
    if not isinstance(stats_type, str) or not stats_type:
        raise _error(f"{where}: statsType is missing")
    start, end = _series_time(series, "startTime", where), _series_time(series, "endTime", where)
    if end < start:
        raise _error(f"{where}: endTime is before startTime")
    text = series.get("values")
    if not isinstance(text, str):
        raise _error(f"{where}: values is missing or not a string holding a JSON array")
    values = _decode_values(text)
    if not values:  # None (not an array) or empty
        raise _error(f"{where}: values must be a non-empty JSON-encoded array, got {text!r:.60}")
    stat = stats.setdefault(stat_id, {"type": stats_type, "fields": {}, "start": start, "end": end})
    if stat["type"] != stats_type:
        raise _error(f"{where}: statsType {stats_type!r} differs from the other series of {stat_id}")
    stat["fields"][field] = values
    stat["start"], stat["end"] = min(stat["start"], start), max(stat["end"], end)


def _report_times(key, stat_id, stat):
    """The times (Unix ms) of a stat's polls: its own timestamp series, or,
    in a dump without one, its longest series spread evenly over its span."""
    where = f"PeerConnections.{key}.stats.{stat_id}-timestamp"
    times = stat["fields"].pop("timestamp", None)
    if times is not None:
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1e14 for t in times):
            raise _error(f"{where}: values must be a JSON array of Unix ms numbers")
        if any(later < earlier for earlier, later in zip(times, times[1:])):
            raise _error(f"{where}: timestamps go backwards")
        longest = max((len(values) for values in stat["fields"].values()), default=0)
        if longest > len(times):
            raise _error(f"PeerConnections.{key}.stats.{stat_id}: a series has {longest} values "
                         f"but the stat has only {len(times)} timestamps")
        return [float(t) for t in times]
    count = max(len(values) for values in stat["fields"].values())
    step = (stat["end"] - stat["start"]) / (count - 1) if count > 1 else 0.0
    return [stat["start"] + index * step for index in range(count)]


def _poll_slots(times, polls):
    """The poll each of a stat's values was taken in. Most stats carry the
    poll's time; remote-inbound/outbound-rtp carry the time of the RTCP
    report they come from, earlier and repeated while no new one arrives, so
    each value goes to the first poll at or after its time that follows the
    previous value's poll. None for a value no poll can hold."""
    slots, previous = [], -1
    for ms in times:
        slot = max(previous + 1, bisect_left(polls, ms))
        slots.append(slot if slot < len(polls) else None)
        previous = slot
    return slots


def _connection_samples(key, stats):
    """([(ts µs, [(kind, encoded fields)])], [(poll ms, {dimension: value or None})]) of one
    PeerConnection: each poll rebuilt as a report of the stats it held then, through the
    registry's extraction, and encoded at once (bytes hold far less than dicts); and its
    route and codecs (dimensions.report) at each poll where they changed."""
    times = {stat_id: _report_times(key, stat_id, stat) for stat_id, stat in stats.items()}
    polls = sorted({ms for stat_id, stat_times in times.items() if not stats[stat_id]["type"].startswith("remote-")
                    for ms in stat_times}) or sorted({ms for stat_times in times.values() for ms in stat_times})
    placed = []  # (stat id, type, columns, {poll: value index})
    for stat_id, stat in stats.items():
        stat_times = times[stat_id]
        columns = [(field, values, len(stat_times) - len(values)) for field, values in stat["fields"].items()]
        positions = {slot: index for index, slot in enumerate(_poll_slots(stat_times, polls)) if slot is not None}
        placed.append((stat_id, stat["type"], columns, positions))
    samples, routes, route = [], [], None
    for slot, ms in enumerate(polls):
        report = []
        for stat_id, stats_type, columns, positions in placed:
            index = positions.get(slot)
            if index is not None:
                entry = {field: values[index - offset] for field, values, offset in columns if index >= offset}
                entry["id"], entry["type"] = stat_id, stats_type
                report.append(entry)
        extracted = registry.extract(report)
        if extracted:
            samples.append((round(ms * 1000), [(kind, encode_extracted(fields)) for kind, fields in extracted.items()]))
        found = report_dimensions(report)
        if found and found != route:
            routes.append((ms, found))
            route = found
    return samples, routes


@dataclass
class DumpImport:
    """What a dump adds: the ingest `Parsed` (points ready to buffer), its
    peers, its first and last sample times (Unix ms), the User-Agent of the
    browser that saved it (None: none) and each peer's route and codecs as
    they changed ({peer: [(ms, dimensions)]}, for `dimension_lines`)."""

    parsed: Parsed
    peers: list
    first_ms: int
    last_ms: int
    user_agent: str | None = None
    routes: dict | None = None

    def dimension_lines(self, call, client):
        """The rtc_dimensions points of every peer: `client` (what the dump's User-Agent
        tells, dimensions.extract.Extractor.client) with the route and codecs of its
        first poll that has them, then one at each change, at the polls' times."""
        lines = []
        for peer in self.peers:
            known = {}
            for ms, found in self.routes.get(peer) or [(self.first_ms, {})]:
                applied = apply_dimensions(known, {**client, **found} if not known else found)
                if applied is not None:
                    known, d = applied
                    lines.append(dimensions_line(call, peer, d, round(ms * 1000) * 1000))
        return lines


def parse_dump(stream, call, now_ms, retention_ms, max_future_ms, max_bytes):
    """Validate and encode a whole dump (a binary file) for `call` into a `DumpImport`.

    `retention_ms` (None: forever) refuses a dump the database would not keep;
    `max_bytes` bounds a compressed dump once decompressed. Nothing is
    returned for a dump with a problem: an `IngestError` says what."""
    if not isinstance(call, str) or not IDENTIFIER_RE.fullmatch(call):
        raise IngestError(f"call must be {IDENTIFIER_RULE}", 400, "bad_call")
    taken = set()
    connections = []  # (peer, [(µs, [(kind, encoded fields)])])
    routes = {}
    meta = {}
    try:
        for key, connection in _peer_connections(ijson.basic_parse(open_dump(stream, max_bytes), use_float=True),
                                                 meta):
            peer = peer_name(key, taken)
            samples, routes[peer] = _connection_samples(key, connection)
            connections.append((peer, samples))
    except ijson.JSONError as exc:
        raise _error(f"the dump is not valid JSON: {exc}", "invalid_json") from None
    except UnicodeDecodeError as exc:
        raise _error(f"the dump is not valid UTF-8 (byte {exc.start})", "invalid_json") from None
    if not connections:
        raise _error("the dump has no PeerConnections: Chromium forgets connections once they close, unless "
                     "chrome://webrtc-internals?keepRemovedConnections was open before the call")
    times = [micros for _, samples in connections for micros, _ in samples]
    if not times:
        raise _error("the dump's PeerConnections have no stats a metric can be taken from", "empty_dump")
    first_ms, last_ms = min(times) // 1000, max(times) // 1000
    if retention_ms is not None and first_ms < now_ms - retention_ms:
        days = retention_ms / 86_400_000
        raise IngestError(f"the dump starts {(now_ms - first_ms) / 86_400_000:.1f} days ago, before the "
                          f"retention period ({days:g} days) of this server: it would not be kept",
                          400, "dump_too_old")
    if last_ms > now_ms + max_future_ms:
        raise IngestError("the dump's samples lie in the future: check the clock of the machine that saved it",
                          400, "dump_in_future")
    peers = [peer for peer, samples in connections if samples]
    user_agent = meta.get("user_agent")
    return DumpImport(_encode(call, connections, last_ms), peers, first_ms, last_ms,
                      user_agent if isinstance(user_agent, str) else None, routes)


def _encode(call, connections, last_ms):
    """Samples, presence and the end of every peer, all at the dump's times:
    the collector stamps presence and end events with its `now`, here the
    dump's last sample, so the call is already over when it is stored.
    Consumes `connections`: each peer's samples are let go once they are lines."""
    last_ns = last_ms * 1_000_000
    collector = _Collector(last_ns, Limits(max_samples=2**62, max_skew_ns=2**62))
    for peer, samples in connections:
        for micros, encoded in samples:
            for kind, fields in encoded:
                collector.add_sample(call, peer, kind, micros * 1000, fields, None)  # an import has no live feed
        if samples:
            collector.add_end(call, peer, samples[-1][0] * 1000)
            samples.clear()
    return collector.finish()
