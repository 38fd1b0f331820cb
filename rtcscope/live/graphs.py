"""The live graphs' fan-out: per watched metric, its viewers and the last five minutes of
its live calls in 2 s buckets, the snapshot a new viewer gets, and each tick's new points.
Every message is serialised once and the same bytes go to every viewer (docs/live.md).

A viewer is any object with `send(bytes)` (one serialised JSON message) and
`close(code, reason)`."""
import asyncio
import logging

import orjson

from ..registry import COUNTER
from ..storage.schema import FEED_FIELDS

log = logging.getLogger("rtcscope.detector")

BUCKET_MS = 2000
SNAPSHOT_MS = 5 * 60 * 1000
# Buckets re-read every tick, so samples that arrive a few seconds late still land.
RECENT_BUCKETS = 4
# A rate's bucket is drawn once it has closed and its last samples have had
# time to arrive (a client's send interval plus the flush interval, roughly).
RATE_SETTLE_MS = 1000


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
    """One watched metric: its viewers and the last five minutes of its live calls."""

    def __init__(self, metric):
        self.metric = metric
        self.rate = metric.type == COUNTER
        self.viewers = set()
        self.waiting = 0
        self.series = None  # {call: {bucket ms: value}} once loaded
        self.loading = None
        self._snapshot = None

    @property
    def loaded(self):
        return self.series is not None

    def merge(self, call, points, since_ms, now_ms):
        """Store new or changed buckets; return them as [[ms, value]].

        A rate's bucket is used once it has closed and settled: before that it
        holds part of the bucket's increase over the whole bucket's time, a dip
        that would be redrawn every tick."""
        known = self.series.setdefault(call, {})
        until = now_ms - BUCKET_MS - RATE_SETTLE_MS if self.rate else now_ms
        newest = next(reversed(known)) if known else None
        out_of_order = False
        changed = []
        for ms, value in points:
            if value is None or not since_ms <= ms <= until or known.get(ms) == value:
                continue
            if ms not in known and newest is not None and ms < newest:
                out_of_order = True
            known[ms] = value
            newest = ms if newest is None else max(newest, ms)
            changed.append([ms, value])
        if out_of_order:
            self.series[call] = dict(sorted(known.items()))
        if changed:
            self._snapshot = None
        return changed

    def add_call(self, call):
        self.series.setdefault(call, {})
        self._snapshot = None

    def drop_call(self, call):
        if self.series.pop(call, None) is not None:
            self._snapshot = None

    def trim(self, cutoff_ms):
        for points in self.series.values():
            while points and next(iter(points)) < cutoff_ms:
                del points[next(iter(points))]
                self._snapshot = None

    def snapshot(self):
        """The snapshot message, serialised once per change."""
        if self._snapshot is None:
            self._snapshot = dumps({
                "type": "snapshot", "metric": self.metric.name, "bucket_ms": BUCKET_MS,
                "calls": {call: [[ms, value] for ms, value in points.items()]
                          for call, points in sorted(self.series.items())}})
        return self._snapshot


class Graphs:
    """The watched metrics by name and their viewers. The first viewer of a metric costs
    one five-minute query; the next ones get the shared snapshot. Each tick, a metric
    the feed carries is bucketed from the detector's samples in memory (`recent`,
    RecentSamples), any other costs one query.

    `wait_ready()`: awaits the detector's first tick; `live_calls()`: the live calls as of
    the last one; `clock()`: the time (Unix ms)."""

    def __init__(self, store, recent, clock, wait_ready, live_calls, incremental=True):
        self.store = store
        self.recent = recent
        self.clock = clock
        self._wait_ready = wait_ready
        self._live_calls = live_calls
        # False: every watched metric is queried every tick (what the benchmarks compare with)
        self.incremental = incremental
        self.watches = {}  # metric name -> Watch
        self.queries = 0

    @property
    def viewer_count(self):
        return sum(len(watch.viewers) for watch in self.watches.values())

    def viewers(self):
        return [viewer for watch in self.watches.values() for viewer in watch.viewers]

    def loaded(self):
        """The watches whose five minutes are loaded: the ones a tick brings up to date."""
        return [watch for watch in self.watches.values() if watch.loaded]

    async def watch(self, metric, viewer):
        """Send `viewer` the metric's snapshot, then every change. The first
        viewer of a metric costs one query; the others get the shared snapshot."""
        watch = self.watches.get(metric.name)
        if watch is None:
            watch = self.watches[metric.name] = Watch(metric)
        watch.waiting += 1
        try:
            if not watch.loaded:
                if watch.loading is None or watch.loading.done():  # none yet, or the last one failed
                    watch.loading = asyncio.ensure_future(self._load(watch))
                await asyncio.shield(watch.loading)
        finally:
            watch.waiting -= 1
            if not watch.loaded:
                self._forget_if_unwatched(watch)
        viewer.send(watch.snapshot())
        watch.viewers.add(viewer)

    def unwatch(self, viewer):
        for watch in list(self.watches.values()):
            if viewer in watch.viewers:
                watch.viewers.discard(viewer)
                self._forget_if_unwatched(watch)

    def _forget_if_unwatched(self, watch):
        if not watch.viewers and not watch.waiting and self.watches.get(watch.metric.name) is watch:
            del self.watches[watch.metric.name]

    async def _load(self, watch):
        """Fill a newly watched metric with the last five minutes of the live calls."""
        await self._wait_ready()
        end = self.clock()
        start = (end - SNAPSHOT_MS) // BUCKET_MS * BUCKET_MS
        series = await self.metric_series(watch, start, end)
        watch.series = {}
        for call in self._live_calls():
            watch.merge(call, series.get(call, ()), start, end)

    async def metric_series(self, watch, start_ms, end_ms):
        """Per-call points from `start_ms`; rates need the bucket before it too."""
        self.queries += 1
        query_start = start_ms - BUCKET_MS if watch.rate else start_ms
        return await self.store.metric_series(watch.metric, query_start, end_ms, BUCKET_MS // 1000,
                                              rate=watch.rate)

    def in_memory(self, watch):
        """Whether the feed carries the metric's samples, so its newest buckets need no query."""
        return self.incremental and watch.metric.source_field in FEED_FIELDS

    def recent_series(self, watch, calls, start_ms, end_ms):
        """What `metric_series` answers, for the live calls, from the feed's samples. A
        gauge's buckets change only with new samples: only the calls that got some are
        computed, from the bucket of their earliest new one (a rate's bucket also becomes
        due as time passes: all of them, whole)."""
        if watch.rate:
            return self.recent.metric_series(watch.metric.source_field, calls, start_ms - BUCKET_MS, end_ms,
                                             BUCKET_MS, rate=True, scale=watch.metric.scale)
        touched = self.recent.touched
        return self.recent.metric_series(watch.metric.source_field, calls & touched.keys(), start_ms, end_ms,
                                         BUCKET_MS, rate=False, scale=watch.metric.scale, changed=touched)

    def broadcast(self, message, watches):
        for watch in watches:
            deliver(message, watch.viewers, self.unwatch)

    def publish(self, started, recent, ended, live, since, end):
        """A tick's messages, in this order: the `call_started`s [(call, at)], one `points`
        per watched metric whose buckets changed ([(watch, {call: points})], the live
        calls' buckets since `since`), the `call_ended`s [(call, at, reason)]. Events go
        to every viewer of every metric, points to the viewers of their metric."""
        for call, at in started:
            for watch in self.watches.values():
                if watch.loaded:
                    watch.add_call(call)
            self.broadcast(dumps({"type": "call_started", "call": call, "at": at}), self.watches.values())
        for watch, series in recent:
            if not watch.loaded:
                continue
            changed = {}
            for call in live & series.keys():
                points = watch.merge(call, series[call], since, end)
                if points:
                    changed[call] = points
            watch.trim(end - SNAPSHOT_MS)
            if changed:
                self.broadcast(dumps({"type": "points", "metric": watch.metric.name, "calls": changed}), [watch])
        for call, at, reason in ended:
            for watch in self.watches.values():
                if watch.loaded:
                    watch.drop_call(call)
            self.broadcast(dumps({"type": "call_ended", "call": call, "at": at, "reason": reason}),
                           self.watches.values())
