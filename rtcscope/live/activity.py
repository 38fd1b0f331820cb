"""The call detector's window of activity: every (call, peer) of its look-back window, kept in
memory between ticks and brought up to date with one read of the live feed per tick.

Per (call, peer) its presence (earliest first sample, latest last sample and receive time)
and its latest end and disconnect marker, the answer the grouped queries over the window
give (`Store.call_activity`), whatever rows the feed's overlap reads twice; the samples of
the last seconds the feed's rows carry (`recent`); and each call's state as `build_calls`
gives it over those rows, built again only for the calls whose rows changed
(`calls.CallStates`). The whole window is read at the first tick and after a failed one.
See docs/live.md, "Incremental reads: the live feed".

It also keeps each peer's dimensions, learnt from the `d` of the feed's presence rows
(no query of its own), each value through the process's cardinality bound; they are
forgotten with the call's last row in the window, so the summary of a call that ends
has those of the peers that left before it."""
import asyncio
from typing import NamedTuple

from ..dimensions.peer import DEFAULT_MAX_VALUES, Dimensions, ValueBound
from ..tasks import in_slices
from .calls import CallStates
from .graphs import BUCKET_MS, RECENT_BUCKETS
from .recent import RecentSamples

# Presence rows stamped up to this far ahead count (servers whose clocks run fast).
CLOCK_SLACK_MS = 60_000
# The live feed is re-read this far back every tick: rows that became visible late
# (a batch still being written, a writer's flush) are read then. Clocks of the
# processes sharing a database must agree within it (NTP).
FEED_OVERLAP_MS = 3000
# Rows (or calls) folded in one hold of the event loop: some milliseconds of Python.
SLICE_ROWS = 1000


class Read(NamedTuple):
    """What one read brought: presence, ends and disconnects as [(call, peer, row)], the
    feed's FeedRows (None: not read), whether it is the whole window, and from when (ms)."""
    presence: list
    ends: list
    disconnects: list
    fed: object
    whole: bool
    since: int


class Activity:
    """The look-back window's rows and the states of its calls, between ticks."""

    def __init__(self, store, timeout_ms, tick_ms, quality_window_ms, incremental=True,
                 max_dimension_values=DEFAULT_MAX_VALUES, dimension_values_kept_s=None):
        self.store = store
        # False: the whole window every tick, without the feed (what the benchmarks compare with)
        self.incremental = incremental
        # Long enough that a call live at the previous tick is still seen when
        # it times out, even after a few slow or failed ticks.
        self.window_ms = timeout_ms + max(10_000, 5 * tick_ms)
        # Samples are kept for the quality window and the newest buckets of the watched metrics.
        self.samples_ms = max(quality_window_ms, (RECENT_BUCKETS + 1) * BUCKET_MS)
        self.recent = RecentSamples()
        # (call, peer) -> presence {first, last, recv}; (call, peer) -> the latest end and
        # disconnect marker {time, at, detail, reason, disconnected} (None: none).
        self.presence = {}
        self.ends = {}
        self.rows_of = {}  # call -> {peer: its presence row}: self.presence by call, in the same order
        self.changed = set()  # calls whose rows changed since the last build
        self.call_states = CallStates(timeout_ms)
        self.dimensions = {}  # (call, peer) -> dimensions.peer.Dimensions, values bounded
        self._dimension_peers = {}  # call -> its peers in self.dimensions
        self.value_bound = ValueBound(max_dimension_values, dimension_values_kept_s)
        self.feed_read_ms = None  # when the feed was last read; None: read the whole window next
        self._feed_keys = {}  # the rows the previous feed read read whole
        self._arrived = []  # during a tick, the presence rows its feed read brought
        self._arrived_first = None  # call -> earliest first sample of those received since the previous tick
        self.full_reads = 0
        self.queries = 0

    async def read(self, now):
        """What brings the window up to date: the feed's rows since the previous read, or
        the whole window at the first tick and after a failed one (`whole`)."""
        if self.incremental and self.feed_read_ms is not None:
            since = self.feed_read_ms - FEED_OVERLAP_MS
            fed = await self.store.feed_since(since, self._feed_keys)
            self.queries += fed.queries
            return Read(fed.presence, fed.ends, fed.disconnects, fed, False, since)
        self.full_reads += 1
        since = now - self.window_ms
        if not self.incremental:
            self.queries += 2
            return Read(*await self.store.call_activity(since, now + CLOCK_SLACK_MS), [], None, True, since)
        self.queries += 3  # and the samples of the last seconds, from the feed, which holds them
        (presence, ends), fed = await asyncio.gather(
            self.store.call_activity(since, now + CLOCK_SLACK_MS),
            self.store.feed_since(now - self.samples_ms - FEED_OVERLAP_MS))
        return Read(presence, ends, [], fed, True, since)

    async def apply(self, now, read):
        """Fold what `read` read into the window, SLICE_ROWS rows at a time; forget what is
        older than it (the samples' arrays are brought up to date by `recent.settle`, in the
        tick's worker thread)."""
        presence, ends, disconnects, fed, whole, _ = read
        self.recent.touched = {}
        self._arrived, self._arrived_first = ([] if whole else presence), None
        if whole:
            self.presence, self.ends, self.rows_of = {}, {}, {}
            self.call_states.clear()
            self.recent.clear()
            if fed is not None:
                await in_slices(fed.presence, SLICE_ROWS, self.merge)
                self.merge((), fed.ends, fed.disconnects)
        await in_slices(presence, SLICE_ROWS, self.merge)
        self.merge((), ends, disconnects)
        if fed is not None:
            for runs in fed.samples:  # a chunk of the feed's answer each
                self.recent.add(runs)
                await asyncio.sleep(0)
            self._feed_keys = fed.keys
            await in_slices(fed.dimensions, SLICE_ROWS, lambda rows: self.learn_dimensions(rows, now))
        if whole:
            for call in [call for call in self._dimension_peers if call not in self.rows_of]:
                self.forget_dimensions(call)
        await asyncio.sleep(0)
        self.forget_before(now - self.window_ms)
        self.feed_read_ms = now

    def learn_dimensions(self, rows, now):
        """Fold the feed's dimension rows [(call, peer, (received ms, {name: value or None}))]."""
        known, peers_of, bound = self.dimensions, self._dimension_peers, self.value_bound.bound
        now_s = now / 1000
        for call, peer, (at_ms, values) in rows:
            key = (call, peer)
            found = known.get(key)
            if found is None:
                found = known[key] = Dimensions()
                peers = peers_of.get(call)
                if peers is None:
                    peers_of[call] = [peer]
                else:
                    peers.append(peer)
            found.update(bound(values, now_s), at_ms)

    def dimension_keys(self, call):
        """The (call, peer) of a call's peers whose dimensions are known."""
        return [(call, peer) for peer in self._dimension_peers.get(call, ())]

    def forget_dimensions(self, call):
        for peer in self._dimension_peers.pop(call, ()):
            self.dimensions.pop((call, peer), None)

    async def build(self, now):
        """Bring the calls' states up to date, SLICE_ROWS calls at a time; returns the calls built again."""
        rebuilt = self.call_states.due(self.changed, now)
        self.changed = set()
        await in_slices(list(rebuilt), SLICE_ROWS,
                        lambda calls: self.call_states.rebuild(calls, self.rows_of, self.ends, now))
        return rebuilt

    def read_whole_next(self):
        """After a failed tick, which may have missed feed rows."""
        self.feed_read_ms = None
        self._feed_keys = {}

    def tick_done(self):
        self._arrived, self._arrived_first = [], None  # freed now, not traversed by the collector after

    def merge(self, presence, ends=(), disconnects=()):
        """Fold rows into the window: the same answer as the grouped queries over it
        (earliest first, latest last and recv; per (call, peer) the latest end and
        the latest disconnect marker, as `store.call_activity` gives them), whatever rows repeat.
        The calls whose rows changed are noted, for the next build."""
        known, rows_of, changed = self.presence, self.rows_of, self.changed
        for call, peer, row in presence:
            key = (call, peer)
            found = known.get(key)
            if found is None:
                known[key] = row
                rows = rows_of.get(call)
                if rows is None:
                    rows_of[call] = {peer: row}
                else:
                    rows[peer] = row
                changed.add(call)
            elif row["first"] < found["first"] or row["last"] > found["last"] or row["recv"] > found["recv"]:
                found["first"] = min(found["first"], row["first"])
                found["last"] = max(found["last"], row["last"])
                found["recv"] = max(found["recv"], row["recv"])
                changed.add(call)
        events = self.ends
        changed.update(call for call, _, _ in ends)
        changed.update(call for call, _, _ in disconnects)
        for call, peer, row in ends:
            found = events.get((call, peer))
            if found is None:
                events[(call, peer)] = {"disconnected": None, **row}
            else:
                if row.get("at") is not None and (found["time"] is None or row["time"] >= found["time"]):
                    # >=: a re-read of a partly written row completes it
                    found.update(time=row["time"], at=row["at"], detail=row.get("detail"), reason=row.get("reason"))
                if row.get("disconnected") is not None:
                    found["disconnected"] = max(found["disconnected"] or row["disconnected"], row["disconnected"])
        for call, peer, row in disconnects:
            found = events.setdefault((call, peer), {"time": None, "at": None, "detail": None, "reason": None,
                                                        "disconnected": None})
            found["disconnected"] = max(found["disconnected"] or row["disconnected"], row["disconnected"])

    def forget_before(self, since):
        """Rows older than the window are what the grouped queries would no longer read."""
        for key in [key for key, row in self.presence.items() if row["recv"] < since]:
            del self.presence[key]
            call, peer = key
            rows = self.rows_of[call]
            del rows[peer]
            if not rows:
                del self.rows_of[call]
                self.forget_dimensions(call)
            self.changed.add(call)
            self.recent.drop(call, peer)
        for key, row in list(self.ends.items()):
            if row["time"] is not None and row["time"] < since:
                row.update(time=None, at=None, detail=None, reason=None)
                self.changed.add(key[0])
            if row["disconnected"] is not None and row["disconnected"] < since:
                row["disconnected"] = None
                self.changed.add(key[0])
            if row["time"] is None and row["disconnected"] is None:
                del self.ends[key]

    async def restart_time(self, call, seen, now):
        """First sample of a call that came back: the earliest one received after what the
        previous tick had seen (`seen`: {call: its latest receive time then}; the window
        still holds the old part). The feed's rows of this tick hold it; after a whole
        read, one query."""
        if self._arrived_first is None:  # once per tick, and only in a tick with a comeback
            self._arrived_first = {}
            for arrived, _, row in self._arrived:
                if row["recv"] > seen.get(arrived, 0):
                    first = self._arrived_first.get(arrived)
                    self._arrived_first[arrived] = row["first"] if first is None else min(first, row["first"])
        if call in self._arrived_first:
            return int(self._arrived_first[call])
        self.queries += 2
        presence, _ = await self.store.call_activity(seen.get(call, 0) + 1, now + CLOCK_SLACK_MS, call=call)
        firsts = [row["first"] for _, _, row in presence]
        return int(min(firsts)) if firsts else None
