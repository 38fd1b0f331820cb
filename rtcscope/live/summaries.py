"""Call summaries: each call the detector saw end gets one rtc_call_summaries point, 5 s
after its end, written in the background (at most 50 per round), and its summary quality
goes into the ended-call index; each of its people (a client and the media server's view of
it are one) gets one rtc_peer_summaries point, its dimensions (as the detector knew them when
the call ended) as tags. Every process summarises each call from the same rows with the same
queries, so they all write the same points, which InfluxDB keeps once (docs/live.md,
"History")."""
import asyncio
import logging

from .. import quality
from ..dimensions.peer import person_values
from ..storage.store import StoreError
from ..storage.summaries import peer_summary_line, summary_line
from ..summary import history_fields, load_summary
from . import fleet
from .calls import build_calls

log = logging.getLogger("rtcscope.detector")

# An ended call is summarised into rtc_call_summaries this long after its end was
# seen: its last samples have reached InfluxDB, so every process reads the same.
SUMMARY_SETTLE_MS = 5000
# Summaries written per round, so a burst of ended calls cannot hold the writer.
SUMMARIES_PER_ROUND = 50
# Ended calls waiting for their summary, at most (bounded memory while InfluxDB is down).
MAX_PENDING_SUMMARIES = 100_000


class Summaries:
    """The ended calls waiting for their summary, and the task that writes them.

    `writer`: where the points go (None: not written); `index`: the ended-call index
    (history.EndedCalls); `is_live(call)`: whether the call is live again as of the
    detector's last tick; `clock()`: the time (Unix ms); `history_ms`: how far back an
    ended call's start is looked up; `dimensions_of(call)`: {peer: dimension values} of
    the call's peers, as the detector knows them."""

    def __init__(self, store, writer, clock, history_ms, timeout_ms, index, is_live, dimensions_of=None):
        self.store = store
        self.writer = writer
        self.clock = clock
        self.history_ms = history_ms
        self.timeout_ms = timeout_ms
        self.index = index
        self._is_live = is_live
        self._dimensions_of = dimensions_of
        self.pending = {}  # ended call -> when to summarise it (ms)
        # ended call -> {peer: dimension values} as they were when it ended (None: not seen live, see `queue`)
        self.peer_dimensions = {}
        self._task = None
        self.written = 0

    def queue(self, calls, now, seen_live=True):
        """Summarise these ended calls once they have settled. The peers of calls not
        `seen_live` (found ended at a start) are summarised only when their dimensions are
        known: another process that saw them live writes them with theirs."""
        if self.writer is None:
            return
        for call in calls:
            if len(self.pending) >= MAX_PENDING_SUMMARIES:
                log.warning("call summaries fall behind: %s is not summarised", call)
                continue
            self.pending[call] = now + SUMMARY_SETTLE_MS
            known = self._dimensions_of(call) if self._dimensions_of is not None else {}
            self.peer_dimensions[call] = known if seen_live else (known or None)
        if self.pending and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._write())

    def stop(self):
        if self._task is not None:
            self._task.cancel()

    async def _write(self):
        """Summarise the ended calls that have settled, one rtc_call_summaries point each.

        The call's state is read again over the whole history (the detector's
        window starts too late for a long call), so every process computes the
        same start, end and buckets, and writes the same point: same time,
        tag and fields, which InfluxDB keeps once."""
        now = self.clock()
        due = [call for call, at in self.pending.items() if at <= now][:SUMMARIES_PER_ROUND]
        for call in due:
            try:
                # load_calls' query, whose rows also give each peer's first sample
                presence, ends = await self.store.call_activity(now - self.history_ms, now + 60_000, call)
                state = build_calls(presence, ends, now, self.timeout_ms).get(call)
                if state is None or state.state != "ended":
                    self.pending.pop(call, None)  # live again: summarised when it ends again
                    self.peer_dimensions.pop(call, None)
                    continue
                summary = await load_summary(self.store, state)
                fields = history_fields(summary)
            except (TimeoutError, StoreError) as exc:
                log.warning("call summary of %s failed, retried: %s", call, exc)
                return
            lines = [summary_line(call, fields, state.ended)]
            lines += self._peer_lines(state, presence, summary, self.peer_dimensions.get(call))
            if not self.writer.submit(lines):
                return  # the buffer is full: try again next round
            self.pending.pop(call, None)
            self.peer_dimensions.pop(call, None)
            self.written += 1
            if not self._is_live(call):
                self.index.record(state, fleet.summary_quality({**fields, "time": state.ended}))

    @staticmethod
    def _peer_lines(state, presence, summary, dimensions):
        """One rtc_peer_summaries point per ended person of the call (quality.people: a client
        and the media server's view of it are one, with the dimensions of both): its MOS (the
        mean of its summary timeline, as a call's), whether it was poor, how long it sent, at
        its end. `dimensions` ({peer: values}) None: none (another process writes them)."""
        if dimensions is None:
            return []
        firsts = {}
        for _, peer, row in presence:
            firsts[peer] = min(row["first"], firsts.get(peer, row["first"]))
        qualities = summary["quality"]["peers"]
        lines = []
        persons, views = quality.people(sorted(state.peer_ends))
        for peer in persons:
            ended_at = state.peer_ends[peer][0]
            values = person_values(dimensions.get(peer), dimensions.get(views.get(peer)))
            timeline = [mos for _, mos in (qualities.get(peer) or {}).get("timeline", ()) if mos is not None]
            fields = {"duration_s": max(0.0, (ended_at - firsts.get(peer, ended_at)) / 1000)}
            if timeline:
                fields["mos_mean"] = sum(timeline) / len(timeline)
            fields["poor"] = 1.0 if quality.verdict_of(fields.get("mos_mean")) == "poor" else 0.0
            lines.append(peer_summary_line(state.call, peer, values, fields, ended_at))
        return lines
