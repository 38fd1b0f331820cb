"""The live graphs' fan-out: per followed metric, its viewers and five minutes of every live
call's 2 s buckets (buckets.CallBuckets), the snapshot a new viewer gets, and each tick's new
points. A graph of more live calls than `--graph-lines` is the fleet's p50–p95 band and the
five worst calls, and that is all the server sends. Every message is serialised once and the
same bytes go to every viewer (docs/live.md).

A viewer is any object with `send(bytes)` (one serialised JSON message) and
`close(code, reason)`."""
import asyncio
import functools
import logging

import orjson

from .. import registry
from ..registry import COUNTER
from ..storage.schema import FEED_FIELDS
from ..storage.store import StoreError
from ..tasks import cancel_and_wait
from .buckets import BAND, BUCKET_MS, SNAPSHOT_MS, WORST_LINES, Buckets, CallBuckets, worst_calls

log = logging.getLogger("rtcscope.detector")

# Buckets re-read every tick, so samples that arrive a few seconds late still land.
RECENT_BUCKETS = 4
# A rate's bucket is drawn once it has closed and its last samples have had
# time to arrive (a client's send interval plus the flush interval, roughly).
RATE_SETTLE_MS = 1000
LINES, BAND_MODE = "lines", "band"
# The dashboard's default graphs, all carried by the feed: followed from the first tick,
# watched or not, so that their first viewer's snapshot is in memory at any fleet size.
KEPT_METRICS = ("rtt", "jitter", "packetsLost", "availableBandwidth")
# Calls whose buckets a tick merges into a graph's memory in one hold of the event loop.
MERGED_CALLS = 2000


def dumps(message):
    """One serialisation per message; the same bytes go to every viewer."""
    return orjson.dumps(message)


def deliver(message, viewers, leave):
    """Hand one serialised message to every viewer; one broken viewer must not cost the others their tick."""
    for viewer in list(viewers):
        try:
            viewer.send(message)
        except Exception:
            log.exception("dropping a viewer that failed to take a message")
            leave(viewer)


class Watch:
    """One followed metric: its viewers, five minutes of the live calls' buckets, and what
    its viewers were told: the mode and the calls drawn as lines, worst first."""

    def __init__(self, metric, kept=False):
        self.metric = metric
        self.rate = metric.type == COUNTER
        self.kept = kept  # followed from the first tick, watched or not
        self.viewers = set()
        self.waiting = 0
        self.memory = CallBuckets() if kept else None  # once loaded
        self.filled = False  # False: the next tick brings in every bucket the feed's samples give
        # None: the memory holds every live call's buckets of the last five minutes. Else the time
        # (ms) from which it does (the first tick, or the first viewer's load); before it, only the
        # `complete` calls' buckets, loaded when they were to be drawn.
        self.since = None
        self.complete = set()
        # The band is computed from the memory from this time (ms); before it, it came from a query.
        self.band_since = None
        self.loading = None
        self.fetching = None  # loading the five minutes of calls about to be drawn
        self.mode = None  # LINES or BAND_MODE as told; None: nobody was told anything yet
        self.drawn = []
        self._snapshot = None

    @property
    def loaded(self):
        return self.memory is not None

    def covers(self, call, end_ms):
        """Whether the memory holds the call's last five minutes."""
        return self.since is None or self.since <= end_ms - SNAPSHOT_MS or call in self.complete

    def points(self, call, end_ms):
        return self.memory.points(call, end_ms - SNAPSHOT_MS, end_ms)

    def snapshot(self, live_count, end_ms):
        """The snapshot message, serialised once per tick that changed something."""
        if self._snapshot is None:
            message = {"type": "snapshot", "metric": self.metric.name, "bucket_ms": BUCKET_MS, "mode": self.mode,
                       "drawn": self.drawn}
            if self.mode == BAND_MODE:
                message["band"] = {**self.memory.band_points(end_ms - SNAPSHOT_MS, end_ms), "calls": live_count}
            message["calls"] = {call: self.points(call, end_ms) for call in self.drawn}
            self._snapshot = dumps(message)
        return self._snapshot


class Graphs:
    """The followed metrics by name and their viewers. KEPT_METRICS are followed from the
    first tick; another metric from its first viewer, which costs a five-minute query for the
    calls drawn as lines and, in band mode, one for the band (bounded: a row per bucket),
    until the last one leaves. Each tick, a metric the feed carries is bucketed from the
    detector's samples in memory (`recent`, RecentSamples), any other costs one query.

    `wait_ready()`: awaits the detector's first tick; `qualities()`: {live call: CallQuality}
    as of the last one; `clock()`: the time (Unix ms); `lines`: --graph-lines."""

    def __init__(self, store, recent, clock, wait_ready, qualities, incremental=True, lines=12):
        self.store = store
        self.recent = recent
        self.clock = clock
        self._wait_ready = wait_ready
        self._qualities = qualities
        # False: every watched metric is queried every tick (what the benchmarks compare with)
        self.incremental = incremental
        self.lines = lines
        self.live = set()  # the live calls as of the last tick
        self.end = None  # the last tick's time (ms)
        self._drawn = None  # the calls drawn as lines as of the last tick, once asked for
        self.watches = {}  # metric name -> Watch
        if incremental:
            for name in KEPT_METRICS:
                self.watches[name] = Watch(registry.lookup(name), kept=True)
        self.queries = 0

    @property
    def viewer_count(self):
        return sum(len(watch.viewers) for watch in self.watches.values())

    @property
    def watched_count(self):
        return sum(1 for watch in self.watches.values() if watch.viewers)

    def viewers(self):
        return [viewer for watch in self.watches.values() for viewer in watch.viewers]

    def loaded(self):
        """The watches whose memory is loaded: the ones a tick brings up to date."""
        return [watch for watch in self.watches.values() if watch.loaded]

    def mode(self, live=None):
        """The graphs' mode with the live calls as of the last tick (or `live`)."""
        return BAND_MODE if len(self.live if live is None else live) > self.lines else LINES

    def drawn(self):
        """The calls drawn as lines now, worst first: every live call, or the five worst beyond `lines`."""
        if self._drawn is None:
            self._drawn = self.drawn_of(self.live, self._qualities())
        return self._drawn

    def drawn_of(self, live, qualities):
        """The calls `drawn` gives with these live calls and qualities ({call: CallQuality}),
        for a tick's worker thread to work out before the tick publishes them."""
        return worst_calls(live, qualities, WORST_LINES if self.mode(live) == BAND_MODE else None)

    async def watch(self, metric, viewer):
        """Send `viewer` the metric's snapshot, then every change. A metric followed already
        costs no query, unless the calls it draws are older than its memory (one query for
        them); the first viewer of another one loads it."""
        watch = self.watches.get(metric.name)
        if watch is None:
            watch = self.watches[metric.name] = Watch(metric)
        watch.waiting += 1
        try:
            if watch.kept:
                await self._wait_ready()
            elif not watch.loaded:
                if watch.loading is None or watch.loading.done():  # none yet, or the last one failed
                    watch.loading = asyncio.ensure_future(self._load(watch))
                await asyncio.shield(watch.loading)
            if watch.mode is None:  # followed with nobody watching: what the last tick found
                watch.mode, watch.drawn, watch._snapshot = self.mode(), self.drawn(), None
            for _ in range(2):  # a load of other calls under way, then this one's
                if watch.fetching is None or watch.fetching.done():
                    missing = [call for call in watch.drawn if not watch.covers(call, self.end)]
                    if not missing:
                        break
                    watch.fetching = asyncio.ensure_future(self._fetch(watch, missing, self.end))
                if not await asyncio.shield(watch.fetching):
                    raise StoreError("could not load the calls to draw")
        finally:
            watch.waiting -= 1
            if not watch.loaded:
                self._forget_if_unwatched(watch)
        viewer.send(watch.snapshot(len(self.live), self.end))
        watch.viewers.add(viewer)

    async def stop(self):
        """Cancel the loads under way: nothing of them runs after a stop."""
        await cancel_and_wait(*(task for watch in self.watches.values() for task in (watch.loading, watch.fetching)))

    def unwatch(self, viewer):
        for watch in list(self.watches.values()):
            if viewer in watch.viewers:
                watch.viewers.discard(viewer)
                self._forget_if_unwatched(watch)

    def _forget_if_unwatched(self, watch):
        if watch.viewers or watch.waiting:
            return
        if watch.kept:
            watch.mode = None  # its memory goes on; the next viewer is told afresh
        elif self.watches.get(watch.metric.name) is watch:
            del self.watches[watch.metric.name]

    async def _load(self, watch):
        """The first viewer of a metric not followed yet: in band mode, the band's five minutes
        from one query whose answer is a row per bucket (it reads every call's series: when it
        fails or times out, the band starts now), the calls drawn as lines loaded like any calls
        the memory does not hold. The other calls' buckets come with the ticks."""
        await self._wait_ready()
        end = self.end
        memory = CallBuckets()
        if self.mode() == BAND_MODE:
            watch.band_since = end
            try:
                memory.set_band(await self.metric_band(watch, end - SNAPSHOT_MS, end))
            except (StoreError, TimeoutError) as exc:  # the graph starts now rather than not at all
                log.warning("the band of %s over five minutes could not be read (%s): from now on only", watch.metric.name,
                            exc)
        watch.memory, watch.since = memory, end

    async def metric_series(self, watch, start_ms, end_ms, calls=None):
        """Per-call points from `start_ms` (of `calls` only, if given); rates need the bucket before it too."""
        self.queries += 1
        query_start = start_ms - BUCKET_MS if watch.rate else start_ms
        return await self.store.metric_series(watch.metric, query_start, end_ms, BUCKET_MS // 1000,
                                              rate=watch.rate, calls=calls)

    async def metric_band(self, watch, start_ms, end_ms):
        """{bucket ms: [value of each BAND percentile]} across calls from one query, settled buckets only."""
        self.queries += 1
        query_start = start_ms - BUCKET_MS if watch.rate else start_ms
        band = await self.store.metric_band(watch.metric, query_start, end_ms, BUCKET_MS // 1000, rate=watch.rate,
                                            percentiles=[round(fraction * 100) for _, fraction in BAND])
        until = self._until(watch, end_ms)
        return {ms: values for ms, values in band.items() if start_ms <= ms <= until}

    @staticmethod
    def _until(watch, end_ms):
        """The newest bucket drawn: a rate's once it has closed and settled (before that it holds
        part of the bucket's increase over the whole bucket's time, a dip redrawn every tick)."""
        return end_ms - BUCKET_MS - RATE_SETTLE_MS if watch.rate else end_ms

    def in_memory(self, watch):
        """Whether the feed carries the metric's samples, so its newest buckets need no query."""
        return self.incremental and watch.metric.source_field in FEED_FIELDS

    def recent_series(self, watch, calls, start_ms, end_ms):
        """What `metric_series` answers, for the live calls, from the feed's samples: a
        function that computes it (RecentSamples.metric_series with what it needs decided
        now), for the tick's worker thread. A gauge's buckets change only with new samples:
        only the calls that got some are computed, from the bucket of their earliest new one
        (a rate's bucket also becomes due as time passes: all of them, whole). A watch not
        filled yet gets every bucket of every call the samples give."""
        field, scale = watch.metric.source_field, watch.metric.scale
        if not watch.filled:
            start_ms = end_ms - SNAPSHOT_MS
        series = functools.partial(self.recent.metric_series, field, end_ms=end_ms, bucket_ms=BUCKET_MS, scale=scale,
                                   rate=watch.rate)
        if watch.rate:
            return functools.partial(series, calls, start_ms - BUCKET_MS)
        if not watch.filled:
            return functools.partial(series, calls, start_ms)
        touched = self.recent.touched
        return functools.partial(series, calls & touched.keys(), start_ms, changed=touched)

    def broadcast(self, message, watches):
        for watch in watches:
            deliver(message, watch.viewers, self.unwatch)

    async def publish(self, started, recent, ended, live, since, end, drawn=None):
        """A tick's messages, in this order: the `call_started`s [(call, at)], per followed
        metric ([(watch, {call: points})], the live calls' buckets since `since`) a new snapshot
        when its mode changed, a `drawn` message when its drawn calls changed, and a `points`
        when something it draws changed, then the `call_ended`s [(call, at, reason)]. A
        metric's buckets: buckets.Buckets. Events go to every viewer of every metric, the
        others to the viewers of their metric. Each metric's memory and messages change in
        one go, the loop given back between metrics (docs/live.md, "The loop's budget").
        `drawn`: drawn_of the tick's, when worked out."""
        self.live, self.end, self._drawn = live, end, drawn
        for call, at in started:
            for watch in self.watches.values():
                if watch.since is not None and at >= watch.since:  # its whole life is in the memory
                    watch.complete.add(call)
            self.broadcast(dumps({"type": "call_started", "call": call, "at": at}), self.watches.values())
        for watch, series in recent:
            if watch.loaded:
                await self._update(watch, series, live, since, end)
        for call, at, reason in ended:
            self.broadcast(dumps({"type": "call_ended", "call": call, "at": at, "reason": reason}),
                           self.watches.values())

    async def _update(self, watch, series, live, since, end):
        """Bring a watch's memory up to date with a tick's buckets (buckets.Buckets) and tell
        its viewers. The buckets are merged MERGED_CALLS calls at a time, the loop given back
        between (a viewer that comes meanwhile is sent the changes with the others)."""
        memory = watch.memory
        start = since if watch.filled else end - SNAPSHOT_MS
        if watch.kept and not watch.filled:
            watch.since = end
        for call in memory.rows.keys() - live:
            memory.drop(call)
            watch.complete.discard(call)
        # The calls whose changed buckets the viewers may be sent: in lines mode every live call.
        report = live if watch.mode == LINES and self.mode() == LINES else set(watch.drawn)
        changed, until = {}, self._until(watch, end)
        for first in range(0, len(series.calls), MERGED_CALLS):
            await asyncio.sleep(0)
            changed.update(memory.merge(series.select(first, first + MERGED_CALLS, live), start, until, report))
        band = memory.update_band(start if watch.band_since is None else max(start, watch.band_since), end)
        watch.filled = True
        watch._snapshot = None
        if watch.mode is not None:
            self._tell(watch, changed, band, end)

    def _tell(self, watch, changed, band, end):
        """The tick's messages to a watch's viewers. A new mode is a new snapshot; new drawn
        calls a `drawn` message with the five minutes of those that joined. When the memory
        does not hold those (a metric followed for less than five minutes), they are loaded
        first (one query for them), and told at the first tick after."""
        joined = ()
        if watch.fetching is None or watch.fetching.done():
            watch.fetching = None
            mode, drawn = self.mode(), self.drawn()
            if (mode, drawn) != (watch.mode, watch.drawn):
                if mode != watch.mode:
                    needed = drawn
                elif mode == BAND_MODE:
                    needed = [call for call in drawn if call not in watch.drawn]
                else:  # a new line's buckets come as points
                    needed = []
                missing = [call for call in needed if not watch.covers(call, end)]
                if missing:
                    watch.fetching = asyncio.ensure_future(self._fetch(watch, missing, end))
                elif mode != watch.mode:
                    watch.mode, watch.drawn = mode, drawn
                    self.broadcast(watch.snapshot(len(self.live), end), [watch])
                    return
                else:
                    joined = [call for call in drawn if call not in watch.drawn]
                    told = {call: watch.points(call, end) for call in joined} if mode == BAND_MODE else {}
                    left = [call for call in watch.drawn if call not in drawn]
                    watch.drawn = drawn
                    self.broadcast(dumps({"type": "drawn", "metric": watch.metric.name, "drawn": drawn,
                                          "calls": told, "left": left}), [watch])
        drawn = set(watch.drawn).difference(joined if watch.mode == BAND_MODE else ())
        message = {"type": "points", "metric": watch.metric.name}
        if watch.mode == BAND_MODE and any(band.values()):
            message["band"] = {**band, "calls": len(self.live)}
        message["calls"] = {call: points for call, points in changed.items() if call in drawn}
        if message["calls"] or "band" in message:
            self.broadcast(dumps(message), [watch])

    async def _fetch(self, watch, calls, end):
        """The buckets the memory lacks (before `watch.since`) of calls about to be drawn: one
        query for them. False when InfluxDB did not answer (the next tick tries again)."""
        try:
            series = await self.metric_series(watch, end - SNAPSHOT_MS, watch.since, calls=calls)
        except (StoreError, TimeoutError) as exc:
            log.warning("could not load the calls to draw on %s: %s", watch.metric.name, exc)
            return False
        calls = [call for call in calls if call in self.live]
        watch.memory.merge(Buckets.of({call: series.get(call, ()) for call in calls}), end - SNAPSHOT_MS,
                           watch.since - 1)
        watch.complete.update(calls)
        return True
