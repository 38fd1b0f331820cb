"""The calls that ended within the call list's default window, held in memory, so
that `GET /v1/calls/?state=ended|all` answers without asking InfluxDB.

Without it every such request ran the grouped presence query over the whole
window (one group per call) and read every rtc_call_summaries point of it.
The index is filled from what the detector already has: one load at start
(those two queries, once), then each tick the calls the detector saw end,
and each call's summary quality when the detector writes its summary. Every
process sees the same ends in the shared feed and loads the same rows, so
they all list the same calls. See docs/live.md.
"""
import asyncio
import dataclasses
import logging
from types import MappingProxyType

from ..storage.store import StoreError
from ..tasks import cancel_and_wait
from . import fleet
from .activity import CLOCK_SLACK_MS
from .calls import build_calls, load_calls

log = logging.getLogger("rtcscope.detector")

# Ended calls held at most: about 0.8 KB each (docs/live.md), so ~160 MB at the cap.
MAX_ENDED_CALLS = 200_000
# The ended-call index's look-back: the call list's default `since`.
ENDED_WINDOW_MS = 86400_000
# A failed load of the ended-call index is tried again after this long.
ENDED_LOAD_RETRY_MS = 30_000
# Calls the load finds ended this recently without a summary point are summarised here
# too (another process may have stopped before writing it; the point is written idempotently).
SUMMARY_CATCH_UP_MS = 60_000
_NO_PEER_ENDS = MappingProxyType({})


class EndedCall:
    """One index entry: the ended call's state and its summary quality (None until summarised)."""

    __slots__ = ("state", "quality")

    def __init__(self, state, quality):
        self.state = state
        self.quality = quality


class EndedCalls:
    """Ended calls by id whose latest presence point (`CallState.recv`) lies within
    `window_ms`, oldest first (roughly: entries go in as they end).

    It answers for a look-back only when it holds every ended call of it: after
    its load has finished, for a look-back no longer than the window, and not
    reaching before `covered_from` (raised when the cap drops the oldest)."""

    def __init__(self, window_ms, max_entries=MAX_ENDED_CALLS):
        self.window_ms = window_ms
        self.max_entries = max_entries
        self.entries = {}  # call -> EndedCall, in the order they were recorded
        self._problems = {}  # one tuple per set of problem codes, shared by the entries that have it
        self.covered_from = None  # ms: every ended call seen since is here; None: not loaded
        self._touched = None  # calls recorded or forgotten while a load runs: newer than what it read
        self._imports = {}  # call -> deadline (ms): imported here, not indexed yet
        self.dropped = 0  # entries the cap pushed out

    def __len__(self):
        return len(self.entries)

    @property
    def ready(self):
        return self.covered_from is not None

    def covers(self, since_ms, now_ms):
        """Whether the index holds every call that ended in the last `since_ms`."""
        if self._imports:
            self._imports = {call: until for call, until in self._imports.items() if until > now_ms}
        return (self.ready and not self._imports and since_ms <= self.window_ms
                and now_ms - since_ms >= self.covered_from)

    def since(self, cutoff_ms):
        """The entries whose latest presence point is at or after `cutoff_ms`."""
        return [entry for entry in self.entries.values() if entry.state.recv >= cutoff_ms]

    # --- filling ------------------------------------------------------------------

    def begin_load(self):
        self._touched = set()

    def abort_load(self):
        self._touched = None

    def finish_load(self, now_ms, states, qualities):
        """Replace the entries with a load's ended `states` (read at `now_ms`), keeping
        what ticks recorded or forgot meanwhile; `qualities`: {call: summary quality}."""
        touched, self._touched = self._touched or set(), None
        loaded = {}
        for state in sorted(states, key=lambda state: state.recv):
            if state.call in touched:
                continue
            quality = qualities.get(state.call)
            known = self.entries.get(state.call)
            if quality is None and known is not None and known.state.ended == state.ended:
                loaded[state.call] = EndedCall(_slim(state), known.quality)  # summarised before its point was read
            else:
                loaded[state.call] = EndedCall(_slim(state), self._shared(quality))
        for call in touched:
            if call in self.entries:
                loaded[call] = self.entries[call]
        self.entries = loaded
        self.covered_from = now_ms - self.window_ms
        self._enforce_cap()

    def record(self, state, quality=None):
        """A call the detector saw end (quality None) or summarised: the newest entry."""
        self._imports.pop(state.call, None)
        if self._touched is not None:
            self._touched.add(state.call)
        self.entries.pop(state.call, None)
        self.entries[state.call] = EndedCall(_slim(state), self._shared(quality))
        self._enforce_cap()

    def forget(self, call):
        """A call that is live again is no longer an ended one."""
        if self._touched is not None:
            self._touched.add(call)
        self.entries.pop(call, None)

    def expect_import(self, call, until_ms):
        """An import this process stored: until the detector has read it back (or
        `until_ms`), the index does not answer, so the importer finds the call listed."""
        self._imports[call] = until_ms

    def invalidate(self):
        """The detector may have missed ends (a failed tick, a gap longer than its window):
        the index stops answering until a new load has finished."""
        self.covered_from = None

    def expire(self, now_ms):
        """Drop the entries that have left the window (from the oldest end)."""
        cutoff = now_ms - self.window_ms
        gone = []
        for call, entry in self.entries.items():
            if entry.state.recv >= cutoff:
                break
            gone.append(call)
        for call in gone:
            del self.entries[call]

    def _enforce_cap(self):
        excess = len(self.entries) - self.max_entries
        if excess <= 0:
            return
        oldest = [call for call, _ in zip(self.entries, range(excess))]
        for call in oldest:
            entry = self.entries.pop(call)
            if self.covered_from is not None:
                self.covered_from = max(self.covered_from, entry.state.recv + 1)
        self.dropped += excess

    def _shared(self, quality):
        """A summary quality whose problem codes are a tuple shared with the other entries that have them."""
        if quality is None:
            return None
        problems = tuple(quality["problems"])
        return {**quality, "problems": self._problems.setdefault(problems, problems)}


class EndedCallsUpkeep:
    """Keeps an EndedCalls index up to date from the detector's ticks: loads it (once after
    the first tick, and again once it stops answering), records the calls each tick saw
    end, forgets those that came back, and adds the calls imported by any process.

    `is_live(call)`: whether the call is live as of the detector's last tick; `summaries`
    (summaries.Summaries): where the calls the load finds just ended without a summary go;
    `clock()`: the time (Unix ms)."""

    def __init__(self, store, index, clock, timeout_ms, is_live, summaries):
        self.store = store
        self.index = index
        self.clock = clock
        self.timeout_ms = timeout_ms
        self._is_live = is_live
        self.summaries = summaries
        self._load_task = None
        self._load_after_ms = 0
        self._imported = set()  # imported calls read in the feed, to look up this tick
        self._import_rows = {}  # (call, time) of the feed's import rows already read -> time (the overlap re-reads them)
        self.queries = 0

    def note_imports(self, imports, since):
        """The feed's `imported` rows [(call, peer, row)] read from `since` (ms)."""
        for call, _, row in imports:
            if (call, row["time"]) not in self._import_rows:
                self._import_rows[(call, row["time"])] = row["time"]
                self._imported.add(call)
        for key in [key for key, at in self._import_rows.items() if at < since]:
            del self._import_rows[key]

    async def imported_states(self, now):
        """The ended states of the calls imported since the previous tick (by any process)."""
        imported, self._imported = self._imported, set()
        states = []
        for call in sorted(imported):
            self.queries += 2
            state = (await load_calls(self.store, now, self.index.window_ms, self.timeout_ms, call=call)).get(call)
            if state is not None and state.state == "ended":
                states.append(state)
        return states

    def update(self, started, ended, imported, calls, previous, live, now):
        """Bring the index up to date with a tick's ends and comebacks (`started`, `ended`:
        [(call, at)]; `calls`, `previous`: {call: CallState} of this tick and the one
        before), and load it when it is not ready. An end seen here carries the state of
        the tick; the summary, 5 s later, replaces it with the one read over the call's
        whole history."""
        index = self.index
        for call, _ in started:
            if call in live:
                index.forget(call)
        for call, _ in ended:
            state, before = calls.get(call), previous.get(call)
            if state is None:  # aged out of the window between ticks: ended at its last sample
                state = dataclasses.replace(before, state="ended", ended=before.last_seen, end_reason="timeout",
                                            end_detail=None)
            elif state.state != "ended":
                continue
            elif before is not None and before.state == "live":  # its real start and every peer it had
                state = dataclasses.replace(state, started=min(state.started, before.started),
                                            peers=sorted(set(state.peers) | set(before.peers)))
            index.record(state)
        for state in imported:
            if state.call not in live:
                index.record(state)
        index.expire(now)
        if not index.ready and (self._load_task is None or self._load_task.done()) and now >= self._load_after_ms:
            self._load_task = asyncio.ensure_future(self._load())

    async def stop(self):
        await cancel_and_wait(self._load_task)

    async def _load(self):
        """Fill the index: the window's calls and rtc_call_summaries points, read once."""
        index = self.index
        now = self.clock()
        start, end = now - index.window_ms, now + CLOCK_SLACK_MS
        index.begin_load()
        try:
            self.queries += 3
            (presence, ends), summaries = await asyncio.gather(self.store.call_activity(start, end),
                                                               self.store.call_summaries(start, end))
        except (TimeoutError, StoreError) as exc:
            index.abort_load()
            self._load_after_ms = now + ENDED_LOAD_RETRY_MS
            log.warning("loading the ended calls failed, tried again in %d s: %s", ENDED_LOAD_RETRY_MS // 1000, exc)
            return
        ended = [state for state in build_calls(presence, ends, now, self.timeout_ms).values()
                 if state.state == "ended" and not self._is_live(state.call)]
        index.finish_load(now, ended, {call: fleet.summary_quality(row) for call, row in summaries.items()})
        catch_up = [state.call for state in ended
                    if state.call not in summaries and state.ended >= now - SUMMARY_CATCH_UP_MS]
        if catch_up:
            self.summaries.queue(catch_up, now, seen_live=False)


def _slim(state):
    """The state as listed: the peers' own ends are not kept (only alerts read them, of live calls)."""
    return dataclasses.replace(state, peer_ends=_NO_PEER_ENDS)
