"""The rtcstats protocol as Jitsi Meet's client speaks it (@jitsi/rtcstats 9.x, `3.1_STANDARD`).

The client opens `/rtcstats/<meeting path>?statsSessionId=S&isReconnect=B`,
sends nothing until the server has told it the last sequence number it
stored for S (`{"type": "sn", "body": {"value": N, "state": "initial"}}`),
then sends every buffered entry after N, and live ones as they come. Each
entry (`identity`, `stats-entry`) carries its client time and a sequence
number; `keepalive` carries neither. The server acknowledges stored numbers
(`"state": "ongoing"`) so the client trims its buffer (1,000 entries).

What a session keeps lives here, with no tornado: the websocket handler
feeds it text and stores the points it makes. A message's points are stored
all or none: `receive` prepares an `Outcome` without changing the session,
`commit` applies it once the writer took its points, so a message that could
not be stored is taken again, unchanged, when the client resends it.

The last stored sequence number, the clock offset, the call and the peer of
a session are stored with each message's points (`rtc_rtcstats_sessions`),
so a reconnect to a restarted process continues without duplicates.
"""
import math
import urllib.parse
from dataclasses import dataclass, field

import orjson

from ..storage.lines import disconnect_lines, encode_extracted, end_lines, session_line
from ..storage.schema import NOT_IDENTIFIER_RE
from . import formats
from .formats import Limits
from .reports import PeerReports, ReportError

PROTOCOL = "3.1_STANDARD"
# Close codes of the client (constants.js): 3001 the conference was left (the
# client does not reconnect), 3002 "do not reconnect" for anything else.
CONFERENCE_LEFT = 3001
DO_NOT_RECONNECT = 3002
# Entries resent after a reconnect keep their own time up to this age (the
# client stops reconnecting after 10 minutes); older ones are dropped.
MAX_AGE_MS = 15 * 60_000
# How long a session's state (its reports, for the deltas) outlives its
# connection in memory: the client's reconnect window.
RECONNECT_WINDOW_MS = 11 * 60_000

# Peer connections one session may open (Jitsi opens one to the bridge and at
# times a peer-to-peer one): what a session holds stays bounded.
MAX_PEER_CONNECTIONS = 32



class Refused(Exception):
    """A connection the server will not take: closed with `code` and a reason saying why."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def choose_subprotocol(offered):
    """The protocol to answer the handshake with; legacy and unknown ones are
    answered too, so the close that follows can say why they are refused."""
    if PROTOCOL in offered:
        return PROTOCOL
    return offered[0] if offered else None


def check_subprotocol(chosen):
    if chosen == PROTOCOL:
        return
    if chosen and chosen.endswith("_LEGACY"):
        raise Refused(DO_NOT_RECONNECT, f"protocol {chosen[:40]} is not supported: set rtcstatsUseLegacy to false "
                                        f"({PROTOCOL})")
    raise Refused(DO_NOT_RECONNECT, f"protocol {(chosen or 'none')[:40]} is not supported; use {PROTOCOL}")


def identifier(text):
    """Any text as a call or peer id: characters outside the id set become `-`, at most 128."""
    return NOT_IDENTIFIER_RE.sub("-", text)[:128]


def connection_arguments(meeting, arguments):
    """The meeting path and the query arguments ({name: text}) of a connection.

    The client appends `/<meeting>?statsSessionId=S&isReconnect=B` to the
    configured endpoint, so a key given there (`wss://HOST/rtcstats?key=K`)
    swallows the rest: the query reads `key=K/<meeting>?statsSessionId=S&...`.
    That form is taken apart here."""
    values = {name: texts[-1].decode("utf-8", "replace") for name, texts in arguments.items() if texts}
    key = values.get("key", "")
    if "/" in key and "statsSessionId" not in values:
        values["key"], _, rest = key.partition("/")
        meeting, _, query = rest.partition("?")
        values.update(urllib.parse.parse_qsl(query))
    return meeting.strip("/"), values


@dataclass
class Outcome:
    """What one message asks for: points to store, then the changes to commit."""

    lines: list = field(default_factory=list)
    sn: int | None = None  # the message's sequence number, acknowledged once stored
    offset_ms: float | None = None  # the session's clock offset with this message
    at_ms: float = 0.0  # the entry's time on the server's clock
    parsed: formats.Parsed | None = None
    reports: dict = field(default_factory=dict)  # pc id -> rebuilt report
    call: str | None = None  # from an identity: the call and the peer from now on
    peer: str | None = None
    app: dict | None = None  # from an identity: its applicationName as the `app` dimension
    opened: str | None = None  # a peer connection seen for the first time
    closed: str | None = None  # a peer connection that sent `close`
    # The peer's dimensions after it: (client, app, dimensions, settled: read_connections')
    dimensions: tuple | None = None
    ended: bool = False
    dropped: str | None = None  # why nothing of it is stored (counted)
    untyped: int = 0  # stat ids that arrived without the fields that say what they are


@dataclass
class Stored:
    """What InfluxDB remembers of a session from a previous connection or process."""

    sn: int = 0
    offset_ms: float | None = None
    call: str | None = None
    peer: str | None = None


class Session:
    """One statsSessionId: what its connections and reconnects share."""

    def __init__(self, session_id, meeting, stored, limits):
        self.session_id = session_id
        self.limits = limits
        self.sn = stored.sn
        self.offset_ms = stored.offset_ms
        self.call = stored.call or identifier(meeting) or session_id
        self.peer = stored.peer or session_id
        self.reports = PeerReports()
        self.prefixes = {}  # the series prefixes of its points (storage.lines.Points)
        self.opened = set()
        self.closed = set()
        self.ended = False
        # Set by the first identity, or once points are stored: the call and the
        # peer stay (a later identity brings the meeting's unique id; a call must not split).
        self.fixed = stored.call is not None
        self.stored_any = stored.call is not None
        self.connection = None  # the websocket that holds the session now
        self.detached_ms = None  # when its last connection closed
        # The peer's dimensions: read by its connection's extractor (None: none kept), with what
        # that connection tells of its client and the identity's app; `dimensions` as the last
        # stored message told them (`Outcome.dimensions`).
        self.extractor = None
        self.client = {}
        self.app = {}
        self.dimensions = None

    def receive(self, text, now_ms):
        """Validate one message and prepare its points; the session is unchanged until `commit`."""
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Outcome(dropped="invalid_json")
        if not isinstance(message, dict):
            return Outcome(dropped="invalid_message")
        kind = message.get("type")
        if kind == "keepalive":
            return Outcome()
        if kind not in ("identity", "stats-entry"):
            return Outcome(dropped="unknown_type")
        data = message.get("data")
        if kind == "stats-entry" and isinstance(data, str):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError:
                return Outcome(dropped="invalid_json")
        if not (isinstance(data, list) and len(data) == 5 and isinstance(data[0], str) and _is_int(data[4])
                and _is_number(data[3]) and (data[1] is None or isinstance(data[1], str))):
            return Outcome(dropped="invalid_entry")
        method, pc_id, value, client_ms, sn = data
        if sn <= self.sn:
            return Outcome(dropped="duplicate")
        # The smallest receive-minus-client time seen is the clock offset plus the
        # least latency: entries resent after a reconnect, older, never lower it.
        offset = now_ms - client_ms if self.offset_ms is None else min(self.offset_ms, now_ms - client_ms)
        outcome = Outcome(sn=sn, offset_ms=offset, at_ms=client_ms + offset)
        if kind == "identity":
            return self._identity(value, outcome)
        if now_ms - outcome.at_ms > MAX_AGE_MS:
            outcome.dropped = "too_old"
            return outcome
        if pc_id is not None and pc_id not in self.opened and method in ("create", "getstats"):
            if len(self.opened) >= MAX_PEER_CONNECTIONS or len(pc_id) > 64:
                outcome.dropped = "too_many_peer_connections"
                return outcome
            outcome.opened = pc_id
        if method == "getstats" and pc_id is not None:
            if pc_id in self.closed:  # a poll that resolved after its connection closed: not a comeback
                return outcome
            return self._getstats(pc_id, value, outcome, now_ms)
        if method == "close" and pc_id is not None and pc_id not in self.closed:
            outcome.closed = pc_id
            if self.stored_any and not self.ended and pc_id in self.opened and self.opened <= self.closed | {pc_id}:
                outcome.ended = True
                outcome.lines = [*self.end_lines("closed", outcome.at_ms, now_ms), self._session_line(outcome, now_ms)]
        return outcome

    def _identity(self, value, outcome):
        """The call is the conference name, the peer the endpoint id; nothing else
        of identity (names, user ids, emails, configuration) is kept."""
        if not isinstance(value, dict):
            outcome.dropped = "invalid_entry"
            return outcome
        outcome.app = {} if self.extractor is None else self.extractor.app(value.get("applicationName"))
        if self.fixed:
            return outcome
        conference, endpoint = value.get("confName"), value.get("endpointId")
        if isinstance(conference, str) and identifier(conference):
            outcome.call = identifier(conference)
        if isinstance(endpoint, str) and identifier(endpoint):
            outcome.peer = identifier(endpoint)
        return outcome

    def _getstats(self, pc_id, value, outcome, now_ms):
        """The endpoint's metrics from its peer connections' latest reports, this one rebuilt."""
        try:
            report, outcome.untyped, moved = self.reports.rebuild_rtcstats(pc_id, value)
        except ReportError as exc:
            outcome.dropped = exc.code
            return outcome
        outcome.reports = {pc_id: report}
        collector = formats._Collector(_ns(now_ms), self.limits, self.prefixes)
        ts_ns = collector.timestamp(round(outcome.at_ms * 1000) * 1000)
        for kind, fields in self.reports.extract(outcome.reports, at_ms=outcome.at_ms).items():
            collector.add_sample(self.call, self.peer, kind, ts_ns, encode_extracted(fields), fields)
        if self.extractor is not None and collector.presence:
            # Read again only when this report may have moved them, or traffic weighs in them.
            known = self.dimensions
            if known is None or moved or not known[3] or known[0] is not self.client or known[1] is not self.app:
                route, settled = self.extractor.connections({**self.reports.reports, **outcome.reports}.values())
                known = (self.client, self.app, {**self.client, **self.app, **route}, settled)
            outcome.dimensions = known
            collector.dimensions[(self.call, self.peer)] = known[2]
        outcome.parsed = collector.finish()
        if outcome.parsed.lines:
            outcome.lines = outcome.parsed.lines + [self._session_line(outcome, now_ms)]
        return outcome

    def commit(self, outcome):
        """The outcome's points were stored (or it had none): apply it."""
        if outcome.sn is None:
            return
        self.sn = outcome.sn
        self.offset_ms = outcome.offset_ms
        if outcome.app is not None:
            self.app = outcome.app
        if outcome.call is not None or outcome.peer is not None:
            self.call, self.peer, self.fixed = outcome.call or self.call, outcome.peer or self.peer, True
        if outcome.opened is not None:
            self.opened.add(outcome.opened)
        if outcome.closed is not None:
            self.closed.add(outcome.closed)
            self.reports.discard(outcome.closed)
            self.dimensions = None
        if outcome.dimensions is not None:
            self.dimensions = outcome.dimensions
        self.reports.commit(outcome.reports, outcome.at_ms)
        if outcome.lines:  # stored: an end, or samples (after an end, the peer is back)
            self.stored_any = self.fixed = True
            self.ended = outcome.ended

    def end_lines(self, detail, at_ms, now_ms):
        """An explicit end of this peer, `detail` saying why (END_DETAIL_CODES), and its live feed row."""
        return end_lines(self.call, self.peer, int(at_ms), detail, _ns(now_ms), self.limits.feed)

    def _session_line(self, outcome, now_ms):
        return session_line(self.call, self.peer, self.session_id, outcome.sn, outcome.offset_ms, _ns(now_ms))

    def closed_lines(self, code, now_ms):
        """What a closed connection stores: an end on 3001 (the conference was
        left), else a disconnect marker; nothing for a peer that has ended or
        never stored anything."""
        if self.ended or not self.stored_any:
            return []
        if code == CONFERENCE_LEFT:
            return self.end_lines("leave", now_ms, now_ms)
        return disconnect_lines(self.call, self.peer, _ns(now_ms), self.limits.feed)


def _ns(ms):
    """A time in ms as InfluxDB ns, to the µs: points of one series a few µs apart stay distinct."""
    return round(ms * 1000) * 1000


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Sessions:
    """The sessions this process holds, by statsSessionId. A session outlives its
    connection for the client's reconnect window, so a reconnect to this
    process continues its deltas; one to another process (or after a restart)
    starts from what InfluxDB remembers."""

    def __init__(self, store, max_samples, window_ms=RECONNECT_WINDOW_MS, feed=None):
        self.store = store
        self.limits = Limits(max_samples=max_samples, max_skew_ns=MAX_AGE_MS * 1_000_000, feed=feed)
        self.window_ms = window_ms
        self.by_id = {}

    async def attach(self, session_id, meeting, is_reconnect, connection, now_ms):
        """The session for a new connection, and the connection it takes over from (or None)."""
        session = self.by_id.get(session_id)
        if session is None:
            stored = await self.load(session_id, now_ms) if is_reconnect else Stored()
            session = self.by_id.setdefault(session_id, Session(session_id, meeting, stored, self.limits))
        previous, session.connection, session.detached_ms = session.connection, connection, None
        return session, previous

    def detach(self, session, connection, now_ms):
        """The connection closed; True if it still held the session."""
        if session.connection is not connection:
            return False
        session.connection, session.detached_ms = None, now_ms
        return True

    def finish(self, session):
        """The conference was left: the client will not come back."""
        if session.connection is None:
            self.by_id.pop(session.session_id, None)

    @property
    def connected(self):
        return sum(1 for session in self.by_id.values() if session.connection is not None)

    def register_metrics(self, telemetry):
        """The rtcstats families on /metrics: the sessions read when scraped, the
        messages counted by the socket that receives them."""
        telemetry.gauge("rtcscope_rtcstats_connections", "rtcstats websocket connections open", lambda: self.connected)
        telemetry.gauge("rtcscope_rtcstats_sessions", "rtcstats sessions held (connected or within the reconnect window)",
                        lambda: len(self.by_id))
        telemetry.counter("rtcscope_rtcstats_messages_total", "rtcstats messages received")
        telemetry.counter("rtcscope_rtcstats_dropped_total",
                          "rtcstats messages dropped, by reason (duplicate, too_old, invalid_entry, ...)",
                          labels=("reason",))
        telemetry.counter("rtcscope_rtcstats_stats_incomplete_total",
                          "rtcstats stat ids that arrived without their type (state lost in a restart): not extracted")

    def sweep(self, now_ms):
        """Forget sessions whose client has stopped reconnecting."""
        gone = [session_id for session_id, session in self.by_id.items()
                if session.detached_ms is not None and now_ms - session.detached_ms > self.window_ms]
        for session_id in gone:
            del self.by_id[session_id]

    async def load(self, session_id, now_ms):
        """The last stored state of a session (StoreError when InfluxDB cannot say)."""
        latest = await self.store.rtcstats_session(session_id, now_ms - 2 * MAX_AGE_MS, now_ms + 60_000)
        if latest is None:
            return Stored()
        tags, row = latest
        return Stored(sn=int(row["sn"]), offset_ms=row.get("offset"), call=tags.get("call") or None,
                      peer=tags.get("peer") or None)
