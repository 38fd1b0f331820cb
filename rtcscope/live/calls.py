"""Which calls are live, from what InfluxDB holds.

Liveness is decided from presence points (stamped with the receive time,
so a client with a wrong clock is still live) and stored end events. Every
process computes the same answer from the same rows, which is how several
servers behind one nginx agree.
"""
from dataclasses import dataclass, field

from ..storage.schema import END_DETAIL_CODES, END_REASON_CODES

_DETAILS = {code: name for name, code in END_DETAIL_CODES.items()}
_REASONS = {code: name for name, code in END_REASON_CODES.items()}


@dataclass(slots=True)  # the ended-call index holds up to --max-ended-calls of them
class CallState:
    call: str
    state: str  # "live" or "ended"
    peers: list = field(default_factory=list)
    started: int = 0
    last_seen: int = 0
    ended: int | None = None
    end_reason: str | None = None  # "explicit", "timeout" or "disconnect"; that of the peer that ended last
    end_detail: str | None = None  # with "explicit": what the client said (pagehide, stop, leave) or closed (rtcstats)
    peer_ends: dict = field(default_factory=dict)  # peer -> (ended at, end reason) of the peers that ended
    recv: int = 0  # when its latest presence point was received (ms): what a look-back window selects it by
    # quality.people of its live peers, worked out once per state by the first read of the live people
    people: tuple | None = field(default=None, compare=False, repr=False)

    @property
    def span_seconds(self):
        """Whole seconds from the first to the last sample, at least 1."""
        return max(1, -(-(self.last_seen - self.started) // 1000))

    def as_json(self):
        return {"call": self.call, "state": self.state, "peers": self.peers,
                "started": self.started, "last_seen": self.last_seen, "ended": self.ended,
                "end_reason": self.end_reason, "end_detail": self.end_detail}


def build_calls(presence, ends, now_ms, timeout_ms):
    """presence: [(call, peer, {first, last, recv})]; ends: [(call, peer, {time, at, detail, reason, disconnected})]
    (the latest end event and the latest disconnect marker; either may be None).

    A peer has ended when an end event (its own, or a call-wide one without
    a peer) was received no earlier than its last samples, or was taken no
    earlier than its last sample (a request still in flight when the page
    closed and its end beacon overtook it is not a comeback), or when it sent
    nothing for `timeout_ms`. A disconnect marker received no earlier than
    its last samples, while it was still live, gives it `timeout_ms` from the
    marker to reconnect; then it ends as `disconnect` at its last sample. A
    call is live while any peer is live. An end event's stored reason is its peer's
    (a media server's session timeout is `timeout`); without one it is `explicit`."""
    end_by_key = {(call, peer): row for call, peer, row in ends}
    rows_of = {}
    for call, peer, row in presence:
        rows = rows_of.get(call)
        if rows is None:
            rows_of[call] = [(peer, row)]
        else:
            rows.append((peer, row))
    return {call: call_state(call, rows, end_by_key, now_ms, timeout_ms)[0] for call, rows in rows_of.items()}


def call_state(call, rows, end_by_key, now_ms, timeout_ms):
    """(CallState, due) of one call from its presence rows [(peer, row)] in window order, as
    build_calls judges it; due: the time after which a peer that is live now times out,
    the only change time alone can make (None without a live peer)."""
    state = due = None
    for peer, row in rows:
        recv = row["recv"]
        ended_at = reason = detail = None
        for end in (end_by_key.get((call, peer)), end_by_key.get((call, "")) if peer else None):
            if end is not None and end.get("at") is not None and (end["time"] >= recv or end["at"] >= row["last"]):
                ended_at, detail = int(end["at"]), _DETAILS.get(end.get("detail"))
                reason = _REASONS.get(end.get("reason"), "explicit")
                break
        if ended_at is None:
            disconnected = _disconnected_at(end_by_key.get((call, peer)), recv, timeout_ms)
            since = recv if disconnected is None else disconnected
            if now_ms - since > timeout_ms:
                ended_at, reason = int(row["last"]), "timeout" if disconnected is None else "disconnect"
            elif due is None or since + timeout_ms < due:
                due = since + timeout_ms
        if state is None:
            state = CallState(call, "ended", started=int(row["first"]), last_seen=int(row["last"]), ended=ended_at,
                              end_reason=reason, end_detail=detail, recv=int(recv))
        else:
            state.started = min(state.started, int(row["first"]))
            state.last_seen = max(state.last_seen, int(row["last"]))
            state.recv = max(state.recv, int(recv))
            if ended_at is not None and state.ended is not None and ended_at >= state.ended:
                state.ended, state.end_reason, state.end_detail = ended_at, reason, detail
        if peer:
            state.peers.append(peer)
            if ended_at is not None:
                state.peer_ends[peer] = (ended_at, reason)
        if ended_at is None:
            state.state = "live"
    state.peers.sort()
    if state.state == "live":
        state.ended = state.end_reason = state.end_detail = None
    return state, due


class CallStates:
    """build_calls over a window kept in memory, brought up to date tick by tick: only
    the calls whose rows changed, or a live peer of which may have timed out since, are
    built again (at 20,000 live calls sending every 2 s, half of them a tick, not all)."""

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.states = {}  # call -> CallState
        self.recv = {}  # call -> latest receive time of its presence rows
        self._due = {}  # call -> when its first live peer times out (calls with a live peer)

    def clear(self):
        self.states, self.recv, self._due = {}, {}, {}

    def due(self, changed, now_ms):
        """The calls to build again: `changed`, those whose rows or end rows changed since
        the last build, and those with a live peer that may have timed out since."""
        rebuilt = set(changed)
        rebuilt.update(call for call, at in self._due.items() if now_ms > at)
        return rebuilt

    def rebuild(self, calls, rows_of, end_by_key, now_ms):
        """The states of `calls` as build_calls gives them over the window's rows, `rows_of`
        {call: {peer: row}} in window order and `end_by_key` {(call, peer): row}."""
        for call in calls:
            rows = rows_of.get(call)
            if not rows:
                self.states.pop(call, None)
                self.recv.pop(call, None)
                self._due.pop(call, None)
                continue
            self.states[call], due = call_state(call, rows.items(), end_by_key, now_ms, self.timeout_ms)
            self.recv[call] = max(row["recv"] for row in rows.values())
            if due is None:
                self._due.pop(call, None)
            else:
                self._due[call] = due


def _disconnected_at(end, recv, timeout_ms):
    """When the peer's connection closed without an end, if that counts: received
    no earlier than its last samples (samples after it void it) and before the
    peer had timed out (a marker then must not bring an ended peer back)."""
    disconnected = end.get("disconnected") if end else None
    if disconnected is None or not recv <= disconnected <= recv + timeout_ms:
        return None
    return disconnected


def ended_reason(state):
    """The reason a websocket message gives for a call that ended this tick: a call
    that aged out of the look-back window or came back within the tick timed out."""
    return state.end_reason if state is not None and state.state == "ended" else "timeout"


async def load_calls(store, now_ms, window_ms, timeout_ms, call=None):
    """Calls seen within `window_ms` before now, by id. Rows stamped up to a
    minute ahead are included, for servers whose clocks run slightly fast."""
    presence, ends = await store.call_activity(now_ms - window_ms, now_ms + 60_000, call)
    return build_calls(presence, ends, now_ms, timeout_ms)
