"""rtcscope.js's websocket ingest (`/v1/stats/ws?call=C&peer=P`): one
connection per monitored peer, JSON text frames of one message or an array.

Messages (numbered from 1 on each connection, array elements one each):
`{"ts", "report": [...]}` a full report; `{"ts", "delta": {...}, "removed":
[...]}` what changed since the connection's previous report; `{"ts", "kind",
"stats": {...}}` plain stats; `{"event": "end", "reason"}`. The call and the
peer come from the URL only.

What a connection keeps lives here, with no tornado: `receive` validates a
frame and prepares its points without changing the connection; `commit`
applies it once the writer took them, so a frame refused for back-pressure
leaves the delta state as before it and its resend applies cleanly. Each
message is validated and refused on its own (an error for its number,
nothing of it stored); the others of its frame go on. A refused report or
delta drops the connection's report state, so the deltas after it are
refused with `need_full_report` until a full report comes: a delta is never
laid over a report other than the one the client computed it from.

The state per connection is the held report (reports.PeerReports: the fields
extraction and the dimensions read, at most `MAX_STATS` stat ids), the peer's
dimensions (the upgrade's, with the route and codecs of the held report,
worked out again only in a frame whose reports may have moved them) and a few
counters.
"""
from dataclasses import dataclass, field

import orjson

from ..storage.lines import disconnect_lines, encode_extracted
from . import formats
from .formats import IngestError
from .reports import MAX_STATS, PeerReports, ReportError

# The one peer connection a websocket ingest connection reports on.
PC = "pc"
_NO_BASE = object()  # the report state was dropped by a refused report: deltas need a full report


@dataclass
class Frame:
    """What one frame asks for: its points, its refusals, then the state to commit."""

    first: int  # number of the frame's first message
    count: int = 0  # messages in it
    parsed: formats.Parsed | None = None
    errors: list = field(default_factory=list)  # [(message number, code, message)]
    report: object = None  # the report state after the frame (None: unchanged)
    ended: bool = False
    route_moved: bool = False  # a report of it may have changed the peer's route or codecs
    route: dict | None = None  # then, the connection's dimensions with those of the report after the frame


class FrameError(Exception):
    """A frame that cannot be numbered (not JSON): the connection is closed with this reason."""


class StatsConnection:
    """One websocket ingest connection of one peer of one call."""

    def __init__(self, call, peer, limits, max_stats=MAX_STATS, extractor=None, client=None):
        """`extractor` (dimensions.extract.Extractor; None: no dimensions) reads the route and
        codecs of its reports; `client`: what the upgrade tells of the peer's dimensions (its
        client's, its `tag.<name>=` arguments), sent with its presence."""
        self.call = call
        self.peer = peer
        self.limits = limits
        self.extractor = extractor
        self.client = client or {}
        # The upgrade's dimensions with the route and codecs of the held report (dimensions.report):
        # the same object while they stay, which the live feed recognises at once.
        self.route = self.client
        self.reports = PeerReports(max_stats=max_stats)
        self.prefixes = {}  # the series prefixes of its points (storage.lines.Points)
        self.handled = 0  # messages acknowledged or refused so far
        self.stored_any = False
        self.ended = False

    def receive(self, text, now_ns):
        """Validate a frame and prepare its points; the connection is unchanged until `commit`."""
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise FrameError(f"invalid JSON: {exc}"[:120]) from None
        messages = document if isinstance(document, list) else [document]
        frame = Frame(first=self.handled + 1, count=len(messages))
        if frame.count > self.limits.max_samples:
            raise FrameError(f"more than {self.limits.max_samples} messages in one frame")
        collector = formats._Collector(now_ns, self.limits, self.prefixes)
        base = self.reports.reports.get(PC)
        for number, message in enumerate(messages, frame.first):
            try:
                base = self._message(message, number, base, collector, frame)
            except (IngestError, ReportError) as exc:
                code = getattr(exc, "code", "bad_request")
                frame.errors.append((number, code, exc.message))
                if isinstance(message, dict) and ("report" in message or "delta" in message):
                    base = _NO_BASE
        if self.extractor is not None and collector.presence:
            # Once per frame, and only when its reports may have moved the route or the codecs:
            # those of the report as the frame leaves it.
            if frame.route_moved and base is not _NO_BASE:
                frame.route = {**self.client, **self.extractor.report(base)}
            collector.dimensions[(self.call, self.peer)] = frame.route or self.route
        frame.parsed = collector.finish()
        frame.report = base
        return frame

    def _message(self, message, number, base, collector, frame):
        """Add one message's points to `collector`; returns the report state after it."""
        where = f"message {number}"
        if not isinstance(message, dict):
            raise IngestError(f"{where}: each message must be a JSON object")
        if "report" in message or "delta" in message:
            if "report" in message:
                report = self.reports.rebuild_full(PC, message["report"])
                frame.route_moved = True
            else:
                report, moved = self.reports.rebuild_delta(PC, message["delta"], message.get("removed", []),
                                                           base=None if base is _NO_BASE else base)
                frame.route_moved = frame.route_moved or moved
            ts_ns = collector.timestamp(_ts_ns(message, where, collector))
            for kind, fields in self.reports.extract({PC: report}).items():
                collector.add_sample(self.call, self.peer, kind, ts_ns, encode_extracted(fields), fields)
            return report
        event = message.get("event")
        if event is not None:
            if event != "end":
                raise IngestError(f"{where}: unknown event {formats._show(event)} (only 'end')")
            reason = message.get("reason")
            if reason is not None:
                formats.check_end_detail(reason, event, where)
            collector.add_end(self.call, self.peer, collector.timestamp(_ts_ns(message, where, collector)),
                              detail=reason)
            frame.ended = True
            return base
        if "stats" not in message:
            raise IngestError(f"{where}: needs 'report', 'delta', 'stats' or 'event'")
        formats._json_object({"ts": message.get("ts"), "kind": message.get("kind"), "stats": message["stats"],
                              "call": self.call, "peer": self.peer}, where, collector)
        return base

    def commit(self, frame):
        """The frame's points were stored (or it had none): apply it."""
        self.handled += frame.count
        if frame.report is _NO_BASE:
            self.reports.discard(PC)
        elif frame.report is not None:
            self.reports.commit({PC: frame.report}, 0)
        if frame.route is not None:
            self.route = frame.route
        if frame.parsed.lines:
            self.stored_any = True
            self.ended = frame.ended

    def closed_lines(self, now_ns):
        """A connection closed without an end stores a disconnect marker (if it stored anything)."""
        if self.ended or not self.stored_any:
            return []
        return disconnect_lines(self.call, self.peer, now_ns, self.limits.feed)

    @property
    def stat_count(self):
        return self.reports.stat_count


def _ts_ns(message, where, collector):
    """The message's `ts` (Unix ms) in ns to the µs, None without one (the receive time is used)."""
    ts = message.get("ts")
    if ts is None:
        return None
    if ts.__class__ not in (int, float):
        raise IngestError(f"{where}: ts must be a number (Unix ms)")
    try:
        return round(ts * 1000) * 1000
    except (OverflowError, ValueError):
        collector.result.restamped += 1
        return None
