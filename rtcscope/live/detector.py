"""The call detector: which calls are live, their quality, and the newest points of the live graphs.

Each tick brings its window of activity up to date with the live feed's rows received since
the previous tick (activity.py: rtc_feed, one series per server process, with an overlap for
rows still being written; the whole window only at its first tick and after a failed one),
diffs the calls' states with the previous tick's, computes every live call's quality and the
newest buckets of the watched metrics the feed carries from memory, all calls at once in
arrays and in a worker thread, off the event loop (recent.py, fleet.judge), and asks
InfluxDB only for the other watched metrics (one query each). It publishes the result: the
live call list's message (calllist.py) and the graphs' `call_started` / `points` /
`call_ended` (graphs.py), each serialised once and handed to every viewer; the calls that
end go into the ended-call index (history.py) and are summarised (summaries.py). InfluxDB is
the only state that matters, so every server process derives the same events from the same
rows. See docs/live.md.
"""
import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from ..dimensions.peer import DEFAULT_MAX_VALUES, person_values
from ..quality import people, verdict_of
from ..storage.schema import SUMMARIES_MEASUREMENT
from ..storage.store import StoreError, collection_paused
from ..tasks import cancel_and_wait
from . import fleet
from .activity import CLOCK_SLACK_MS, FEED_OVERLAP_MS, SLICE_ROWS, Activity
from .buckets import Buckets
from .calllist import CallList
from .calls import ended_reason
from .graphs import BUCKET_MS, RECENT_BUCKETS, Graphs
from .history import ENDED_WINDOW_MS, MAX_ENDED_CALLS, EndedCalls, EndedCallsUpkeep
from .summaries import Summaries

log = logging.getLogger("rtcscope.detector")

# How far back the first tick looks for the start of calls already live.
STARTS_LOOK_BACK_MS = 86400_000
# The longest a tick may hold the event loop in one go, ingest waiting (docs/live.md, "The loop's budget").
LOOP_BUDGET_MS = 50


class DetectorUnavailable(Exception):
    """The detector has not yet been able to read the live calls from InfluxDB."""


def now_ms():
    """The detector's clock unless it is given one: the wall clock, Unix ms."""
    return int(time.time() * 1000)


class CallDetector:
    """Diffs InfluxDB's live calls tick by tick and fans the changes out to viewers.

    A viewer is any object with `send(bytes)` (one serialised JSON message) and
    `close(code, reason)`."""

    def __init__(self, store, timeout_ms, tick_ms, quality_window_ms=10_000, history_ms=30 * 86400_000, writer=None,
                 incremental=True, ended_window_ms=ENDED_WINDOW_MS, max_ended_calls=MAX_ENDED_CALLS, clock=now_ms,
                 graph_lines=12, max_dimension_values=DEFAULT_MAX_VALUES):
        self.store = store
        self.clock = clock  # the time it is (Unix ms): the wall clock, or a benchmark's
        # False: the whole window and the grouped queries over rtc_stats every tick (what the benchmarks compare with)
        self.incremental = incremental
        self.timeout_ms = timeout_ms
        self.tick_ms = tick_ms
        self.quality_window_ms = quality_window_ms
        # What the last tick found.
        self.calls = None  # {call: CallState}; None before the first tick
        self.recv = {}  # call -> latest receive time of its presence rows
        self.starts = {}  # live call -> its first sample (ms)
        self.qualities = {}  # live call -> fleet.CallQuality
        self.last_tick_ms = None
        # Its parts: the window's rows, the live calls' quality, the two websockets' fan-out, the ended calls.
        # A dimension's value unseen for the history is in no stored series any more: its place is free.
        self.activity = Activity(store, timeout_ms, tick_ms, quality_window_ms, incremental, max_dimension_values,
                                 history_ms / 1000)
        # (call, peer) -> dimensions.peer.Dimensions of the peers in the window, learnt from the feed's rows.
        self.dimensions = self.activity.dimensions
        # The tick's array work (the samples' columns, every call's quality, the watched
        # metrics' buckets) runs here, off the event loop: numpy releases the GIL for it.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rtcscope-detector")
        self.graphs = Graphs(store, self.activity.recent, clock, self._wait_ready, lambda: self.qualities, incremental,
                             graph_lines)
        self.call_list = CallList()
        # The calls that ended within the call list's default window, kept up to date tick by tick.
        self.ended_calls = EndedCalls(ended_window_ms, max_ended_calls)
        self.summaries = Summaries(store, writer, clock, history_ms, timeout_ms, self.ended_calls, self._is_live,
                                   self._dimensions_of)
        self.ended_upkeep = EndedCallsUpkeep(store, self.ended_calls, clock, timeout_ms, self._is_live, self.summaries)
        # Called each tick with (now, {live call: fleet.CallQuality}, {call: CallState}, live calls): the alert rules.
        self.tick_hooks = []
        # The schedule, and what /metrics counts of it.
        self._task = None
        self._ready = asyncio.Event()
        self._deadline = None  # the schedule's deadline the latest tick() call served (monotonic s)
        self.ticks = 0
        self.skipped = 0
        self.failures = 0
        self._queries = 0  # its own; `queries` counts its parts' too

    @property
    def queries(self):
        """InfluxDB queries the detector made, all its parts together."""
        return self._queries + self.activity.queries + self.graphs.queries + self.ended_upkeep.queries

    def register_metrics(self, telemetry):
        """Declare the detector's /metrics families in `telemetry` (rtcscope.telemetry.Telemetry), read when scraped."""
        telemetry.counter("rtcscope_detector_ticks_total", "call detector ticks completed", lambda: self.ticks)
        telemetry.counter("rtcscope_detector_queries_total", "InfluxDB queries of the call detector",
                          lambda: self.queries)
        telemetry.counter("rtcscope_detector_skipped_ticks_total",
                          "ticks due that did not start: the previous one still ran, or the loop was held past them",
                          lambda: self.skipped)
        telemetry.counter("rtcscope_detector_failures_total", "ticks that failed (InfluxDB unavailable)",
                          lambda: self.failures)
        telemetry.gauge("rtcscope_live_calls", "calls live at the last detector tick", lambda: len(self.live_calls))
        telemetry.gauge("rtcscope_graph_viewers", "graph websocket viewers", lambda: self.graphs.viewer_count)
        telemetry.gauge("rtcscope_watched_metrics", "metrics that at least one viewer watches",
                        lambda: self.graphs.watched_count)
        telemetry.gauge("rtcscope_calls_viewers", "live call list (/ws/calls) viewers", lambda: len(self.call_list.viewers))
        telemetry.counter("rtcscope_call_summaries_written_total", f"{SUMMARIES_MEASUREMENT} points written for ended calls",
                          lambda: self.summaries.written)
        telemetry.gauge("rtcscope_ended_calls", "ended calls of the last 24 h held in memory for /v1/calls/",
                        lambda: len(self.ended_calls))
        telemetry.gauge("rtcscope_ended_calls_ready",
                        "1 while /v1/calls/ lists ended calls from memory (0: loading, or read from InfluxDB)",
                        lambda: int(self.ended_calls.ready))

    # --- live calls and viewers -------------------------------------------------------

    @property
    def live_calls(self):
        return sorted(call for call, state in (self.calls or {}).items() if state.state == "live")

    def live_people(self):
        """(call, peer, dimensions, view dimensions, mos) of every live person as of the last
        tick (quality.people: a client and the media server's view of it are one person, the
        client's MOS its own): what breakdowns, explanations, cohort alerts and dimension
        filters read. The two are the detector's dimensions.peer.Dimensions of the peer and
        of its view (None: not known; read, never change them); the MOS is the peer's over
        the quality window (None without one)."""
        dimensions, qualities, nothing = self.dimensions, self.qualities, {}
        for call, state in (self.calls or {}).items():
            if state.state != "live":
                continue
            found = qualities.get(call)
            windows = found.peers if found is not None else nothing
            found_people = state.people
            if found_people is None:
                ended = state.peer_ends
                found_people = state.people = people([peer for peer in state.peers if peer not in ended]
                                                     if ended else state.peers)
            persons, views = found_people
            for peer in persons:
                window = windows.get(peer)
                view = views.get(peer) if views else None
                yield (call, peer, dimensions.get((call, peer)), None if view is None else dimensions.get((call, view)),
                       None if window is None else window.get("mos"))

    def live_peers(self):
        """(call, peer, dimension values, verdict, mos) of every live person (live_people), its
        values its client's and its view's together (dimensions.peer.person_values); the
        verdict that of its MOS ("unknown" without one)."""
        for call, peer, known, view, mos in self.live_people():
            yield (call, peer, person_values(None if known is None else known.values, None if view is None else view.values),
                   verdict_of(mos) or "unknown", mos)

    def _dimensions_of(self, call):
        """{peer: dimension values} of a call's peers the detector knows."""
        return {key[1]: self.dimensions[key].as_json() for key in self.activity.dimension_keys(call)}

    def _is_live(self, call):
        state = (self.calls or {}).get(call)
        return state is not None and state.state == "live"

    def live_states(self):
        """{call: CallState} of the live calls as of the last tick; None before the first."""
        if self.calls is None:
            return None
        return {call: state for call, state in self.calls.items() if state.state == "live"}

    async def watch(self, metric, viewer):
        """Send `viewer` the metric's snapshot, then every change (graphs.Graphs.watch)."""
        await self.graphs.watch(metric, viewer)

    def unwatch(self, viewer):
        self.graphs.unwatch(viewer)

    async def watch_calls(self, viewer):
        """Send `viewer` the live call list's snapshot, then every change (no query of its own)."""
        await self._wait_ready()
        self.call_list.add(viewer, self.live_states)

    def unwatch_calls(self, viewer):
        self.call_list.discard(viewer)

    def send_calls_viewers(self, data):
        """One serialised message to every /ws/calls viewer."""
        self.call_list.send(data)

    def quality_of(self, call):
        """A live call's quality as of the last tick (unknown for a call newer than it)."""
        found = self.qualities.get(call)
        return (found or fleet.unknown_quality(self.last_tick_ms)).as_json()

    async def _wait_ready(self):
        try:
            await asyncio.wait_for(self._ready.wait(), max(5.0, 5 * self.tick_ms / 1000))
        except TimeoutError:
            raise DetectorUnavailable("live calls not known yet (is InfluxDB reachable?)") from None

    # --- ticks --------------------------------------------------------------------

    def tick(self):
        """PeriodicCallback entry: start a tick unless the previous one still runs.

        Both count as skipped: a call while the previous tick runs, and a deadline that
        passed without a call (a PeriodicCallback held past its next deadline, by a tick's
        synchronous part or anything else on the loop, passes it silently)."""
        now = time.monotonic()
        self.skipped += self._deadlines_passed(now)
        if self._task is not None and not self._task.done():
            self.skipped += 1
            return
        self._task = asyncio.ensure_future(self.run_tick())

    def _deadlines_passed(self, now):
        """The schedule's deadlines before `now` that got no call, since the previous call.
        A call comes at or after its deadline, so the earliest phase seen is the schedule's."""
        period = self.tick_ms / 1000
        if self._deadline is None:
            self._deadline = now
            return 0
        self._deadline = min(self._deadline + period, now)
        passed = int((now - self._deadline) // period)
        self._deadline += passed * period
        return passed

    async def run_tick(self):
        try:
            await self._tick()
        except (TimeoutError, StoreError) as exc:
            self._failed()
            log.warning("call detector tick failed: %s", exc)
        except Exception:
            self._failed()
            log.exception("call detector tick failed")

    def _failed(self):
        """A tick that failed may have missed feed rows: the next one reads the whole window,
        and the ended-call index (it may have missed imports) is loaded again."""
        self.failures += 1
        self.activity.read_whole_next()
        self.ended_calls.invalidate()

    async def stop(self):
        """Cancel a running tick and tell viewers to go elsewhere."""
        await cancel_and_wait(self._task)
        self._worker.shutdown(wait=False)
        await self.graphs.stop()
        await self.ended_upkeep.stop()
        self.summaries.stop()
        for viewer in self.graphs.viewers() + list(self.call_list.viewers):
            viewer.close(1001, "server shutting down")

    async def _tick(self):
        """A tick runs with the cyclic collector paused (store.collection_paused), its
        queries included: the feed's rows and what a tick builds for 20,000 calls, dropped
        by its end, would otherwise be promoted through the generations by the collections
        their own allocations trigger, and end in full collections of the heap (measured:
        a third to a half of a tick's CPU at 20,000 live calls). A tick is bounded by the
        store's timeout; reference counting frees everything else meanwhile. What survives
        of it is looked at by young collections of its own, between its parts (_collect_young),
        not all at once by the first collection after it."""
        with collection_paused():
            await self._tick_paused()
            await self._collect_young()

    @staticmethod
    async def _collect_young():
        """A collection of the youngest generation in a hold of the loop of its own: what the
        tick's part before it made (tens of thousands of objects at 20,000 calls) is looked at
        now, in a piece within the loop's budget, and promoted out of it."""
        await asyncio.sleep(0)
        gc.collect(0)
        await asyncio.sleep(0)

    async def _tick_paused(self):
        """The tick's queries at once (the feed, and the watched metrics it does not carry),
        then its work; only a comeback after a whole-window read and the first tick's
        starts await again."""
        now = self.clock()
        watches = self.graphs.loaded()
        end = now
        since = (end // BUCKET_MS - RECENT_BUCKETS + 1) * BUCKET_MS
        queried = [watch for watch in watches if not self.graphs.in_memory(watch)]
        reads = [self.graphs.metric_series(watch, since, end) for watch in queried]
        window = None
        if not self.incremental:
            self._queries += 1
            reads.insert(0, self.store.quality_window(now - self.quality_window_ms, now, fleet.WINDOW_GAUGES,
                                                      fleet.WINDOW_LAST, fleet.WINDOW_COUNTERS))
        # The other reads run beside the feed's, which is awaited alone: a gathered task keeps
        # its result as long as the gathering does, and the feed's rows would outlive their
        # folding, to be traversed by the collection that follows the tick (measured: 0.2-0.4 s
        # at 20,000 live calls).
        others = asyncio.gather(*reads) if reads else None
        try:
            read = await self.activity.read(now)
        except BaseException:
            if others is not None:
                others.cancel()
            raise
        answers = await others if others is not None else []
        await asyncio.sleep(0)  # the feed's decoding and its folding, each one hold of the loop, not one together
        if not self.incremental:
            window = answers.pop(0)
        if not read.whole:
            self.ended_upkeep.note_imports(read.fed.imports, read.since)
        await self.activity.apply(now, read)
        del read
        await self._collect_young()
        try:
            await self._apply(now, watches, since, end, window, dict(zip(queried, answers)))
        finally:
            self.activity.tick_done()

    async def _apply(self, now, watches, since, end, window, answers):
        """The tick's work on what was read: the states, then the array work in the worker
        thread, then what viewers are told, at once. The parts on the loop yield to it
        between them (docs/live.md, "The loop's budget")."""
        rebuilt = await self.activity.build(now)
        await self._collect_young()
        calls, recv = dict(self.activity.call_states.states), dict(self.activity.call_states.recv)
        # Only these can have started, ended or changed: the others' states are last tick's objects.
        candidates = rebuilt | (self.calls or {}).keys() - calls.keys()
        started, ended = await self._diff(calls, candidates, now)
        self.activity.tick_done()  # what the feed read brought is not needed any more
        await asyncio.sleep(0)
        await self._keep_starts(calls, candidates, started, now)
        imported = await self.ended_upkeep.imported_states(now)
        await asyncio.sleep(0)
        live = {call for call, state in calls.items() if state.state == "live"}
        readers = [None if watch in answers else self.graphs.recent_series(watch, live, since, end) for watch in watches]
        qualities, aggregates, news, drawn, series = await asyncio.get_running_loop().run_in_executor(
            self._worker, self._in_worker, now, calls, live, window, readers)
        await self._collect_young()
        # Synchronous up to the graphs: the calls, their qualities and the call list's message
        # change in one go; then each followed graph's memory and messages, in turn.
        previous, before = self.calls or {}, self.qualities
        if self.last_tick_ms is not None and now - self.last_tick_ms > self.activity.window_ms - FEED_OVERLAP_MS:
            self.ended_calls.invalidate()  # calls may have started and ended unseen between the two ticks
        self.calls, self.recv = calls, recv
        self.ticks += 1
        self.last_tick_ms = now
        self.ended_upkeep.update(started, ended, imported, calls, previous, live, now)
        self.qualities = qualities
        recent = [Buckets.of(answers[watch]) if watch in answers else found for watch, found in zip(watches, series)]
        self.call_list.publish(started, ended, calls, previous, live, news, aggregates)
        self.summaries.queue((call for call, _ in ended), now)
        self._run_tick_hooks(now, calls, live)
        self._ready.set()
        await asyncio.sleep(0)
        del previous  # the previous tick's states and qualities, freed in holds of their own
        await asyncio.sleep(0)
        del before
        await self.graphs.publish(started, zip(watches, recent),
                                  [(call, at, ended_reason(calls.get(call))) for call, at in ended], live, since, end,
                                  drawn)

    def _in_worker(self, now, calls, live, window, readers):
        """(qualities, the fleet's aggregates, the call list's news, the graphs' drawn calls,
        [buckets of each reader]): the tick's array work, in the worker thread while the loop
        serves requests. Only the tick changes what it reads: the samples, as `activity.apply` folded them (settled
        here), or the quality window's rows read from rtc_stats (`window`), the calls' states
        (`calls`, this tick's) and what the call list told."""
        recent = self.activity.recent
        recent.settle(now - self.activity.samples_ms)
        if window is None:
            rows, row_peers = recent.window_rows(now - self.quality_window_ms, now)
            qualities = fleet.judge(rows, row_peers, recent.peers(), live, now)
        else:
            qualities = fleet.call_qualities(window, live, now)
        aggregates = fleet.fleet_aggregates({call: calls[call] for call in live}, qualities)
        news = self.call_list.news(live, qualities)
        drawn = self.graphs.drawn_of(live, qualities)
        return qualities, aggregates, news, drawn, [None if reader is None else reader() for reader in readers]

    def _run_tick_hooks(self, now, calls, live):
        for hook in self.tick_hooks:
            try:
                hook(now, self.qualities, calls, live)
            except Exception:  # alerts must not cost the live views their tick
                log.exception("a tick hook failed")

    # --- what changed -----------------------------------------------------------------

    async def _diff(self, calls, candidates, now):
        """[(call, at)] started and ended since the previous tick, of the `candidates`: the
        calls whose states were built again, and those gone from the window.

        A call first seen already over (it lived between two ticks) starts and
        ends at once, so every process tells the same story. The first tick
        only learns the live set: no viewer can be watching before it (they
        wait for it), and they get that set in their snapshot."""
        if self.calls is None:
            return [], []
        previous = self.calls
        started, ended = [], []
        for index, call in enumerate(candidates):
            if index and not index % SLICE_ROWS:
                await asyncio.sleep(0)
            state, before = calls.get(call), previous.get(call)
            was_live = before is not None and before.state == "live"
            if state is None:
                if was_live:  # aged out of the window between ticks
                    ended.append((call, before.last_seen))
                continue
            if state.state == "live" and not was_live:
                at = state.started
                if before is not None:
                    at = await self.activity.restart_time(call, self.recv, now) or at
                started.append((call, at))
            elif state.state == "ended" and was_live:
                ended.append((call, state.ended))
            elif state.state == "ended" and before is None:
                started.append((call, state.started))
                ended.append((call, state.ended))
        started.sort(key=lambda item: (item[1], item[0]))
        ended.sort(key=lambda item: (item[1], item[0]))
        return started, ended

    async def _keep_starts(self, calls, candidates, started, now):
        """Give each live call its real start: the look-back window holds only the
        last seconds of a long call. A call's start is remembered from the tick it
        started; calls already live at this process's first tick cost one query,
        once, over the last day."""
        if self.calls is None:
            live = {call for call, state in calls.items() if state.state == "live"}
            if live:
                self._queries += 1
                seen = await self.store.first_seen(now - STARTS_LOOK_BACK_MS, now + CLOCK_SLACK_MS)
                self.starts = {call: at for call, at in seen.items() if call in live}
        for call, at in started:
            self.starts[call] = at
        for index, call in enumerate(candidates):  # the others' states were given their start at an earlier tick
            if index and not index % SLICE_ROWS:
                await asyncio.sleep(0)
            state = calls.get(call)
            if state is not None and state.state == "live":
                state.started = self.starts.setdefault(call, state.started)
            else:
                self.starts.pop(call, None)
