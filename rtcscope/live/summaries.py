"""Call summaries: each call the detector saw end gets one rtc_call_summaries point, 5 s
after its end, written in the background (at most 50 per round), and its summary quality
goes into the ended-call index. Every process summarises each call from the same rows
with the same queries, so they all write the same point, which InfluxDB keeps once
(docs/live.md, "History")."""
import asyncio
import logging

from ..storage.store import StoreError
from ..storage.summaries import summary_line
from ..summary import history_fields, load_summary
from . import fleet
from .calls import load_calls

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
    ended call's start is looked up."""

    def __init__(self, store, writer, clock, history_ms, timeout_ms, index, is_live):
        self.store = store
        self.writer = writer
        self.clock = clock
        self.history_ms = history_ms
        self.timeout_ms = timeout_ms
        self.index = index
        self._is_live = is_live
        self.pending = {}  # ended call -> when to summarise it (ms)
        self._task = None
        self.written = 0

    def queue(self, calls, now):
        """Summarise these ended calls once they have settled."""
        if self.writer is None:
            return
        for call in calls:
            if len(self.pending) >= MAX_PENDING_SUMMARIES:
                log.warning("call summaries fall behind: %s is not summarised", call)
                continue
            self.pending[call] = now + SUMMARY_SETTLE_MS
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
                states = await load_calls(self.store, now, self.history_ms, self.timeout_ms, call=call)
                state = states.get(call)
                if state is None or state.state != "ended":
                    self.pending.pop(call, None)  # live again: summarised when it ends again
                    continue
                fields = history_fields(await load_summary(self.store, state))
            except (TimeoutError, StoreError) as exc:
                log.warning("call summary of %s failed, retried: %s", call, exc)
                return
            if not self.writer.submit([summary_line(call, fields, state.ended)]):
                return  # the buffer is full: try again next round
            self.pending.pop(call, None)
            self.written += 1
            if not self._is_live(call):
                self.index.record(state, fleet.summary_quality({**fields, "time": state.ended}))
