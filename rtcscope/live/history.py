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
import dataclasses
from types import MappingProxyType

# Ended calls held at most: about 0.8 KB each (docs/live.md), so ~160 MB at the cap.
MAX_ENDED_CALLS = 200_000
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


def _slim(state):
    """The state as listed: the peers' own ends are not kept (only alerts read them, of live calls)."""
    return dataclasses.replace(state, peer_ends=_NO_PEER_ENDS)
