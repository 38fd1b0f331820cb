"""Scaling: ingest through nginx with one and two server processes, the
cost of a detector tick per live call from 10 to 5,000 live calls, and the
detector's incremental feed read (presence, quality and points from the feed)
against whole-window grouped reads up to 20,000."""
import asyncio
import contextlib
import functools
import gc
import math
import os
import statistics
import sys
import time

import tornado.ioloop

from rtcscope import registry
from rtcscope.live import fleet
from rtcscope.live.activity import FEED_OVERLAP_MS
from rtcscope.live.detector import CallDetector
from rtcscope.live.graphs import BUCKET_MS, RECENT_BUCKETS
from rtcscope.storage.feed import Feed, encode_feed_values
from rtcscope.storage.store import Store
from server import GC_THRESHOLDS
from tests.support.nginx import Nginx
from tests.support.reports import clean_reports

from . import harness, ingest
from .harness import BenchError
from .report import median_ratio, spread


def _behind_nginx(ctx, processes):
    """Batched ingest through nginx to `processes` servers on one database:
    (samples/s, cores busy, share of 503 answers)."""
    database = ctx.database(f"nginx{processes}")
    servers = [harness.start_server(ctx.influxd, database, ctx.log_dir, name=f"server-n{processes}-{index}")
               for index in range(processes)]
    nginx = None
    try:
        # conf/nginx.conf as shipped, ports changed; its two upstream lines name one process twice for one.
        ports = [server.port for server in servers]
        # wrk is one client address: the shipped per-address limit_req would measure itself.
        nginx = Nginx(os.path.join(ctx.log_dir, f"nginx-{time.time_ns()}"), (ports * 2)[:2], ingest_limit=False)
        nginx.start()
        meters = {f"server {i + 1}": server for i, server in enumerate(servers)}
        meters["nginx"] = nginx.process
        meters["influxd"] = ctx.influxd.process
        rate, cpu, refused = ingest.batched_load(ctx, nginx.url, servers, database, meters)
    finally:
        if nginx:
            nginx.stop()
        for server in servers:
            server.stop()
    cores = {"servers": sum(v for k, v in cpu.items() if k.startswith("server")),
             "nginx": cpu["nginx"], "influxd": cpu["influxd"], "wrk": cpu["wrk"]}
    return rate, cores, refused


def processes(ctx, section):
    one, two, one_cpu, two_cpu, backpressure = [], [], [], [], []
    for index in range(ctx.mode.rounds):
        for count in ((1, 2) if index % 2 == 0 else (2, 1)):
            rate, cores, refused = _behind_nginx(ctx, count)
            (one if count == 1 else two).append(rate)
            (one_cpu if count == 1 else two_cpu).append(cores)
            backpressure.append(f"{count}: {refused:.1%}")
    pairs = list(zip(two, one))
    section.add("samples/s, 2 server processes behind nginx", statistics.median(two), "samples/s",
                "1 process behind nginx", statistics.median(one), ratio_override=median_ratio(pairs))
    for label, runs in (("1 process", one_cpu), ("2 processes", two_cpu)):
        cores = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
        section.note(f"CPU cores busy, {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()) +
                     f" = {sum(cores.values()):.2f} of {os.cpu_count()}.")
    section.note("Requests answered 503 (buffer full), by processes: " + ", ".join(backpressure) + ".")
    section.note(f"Batched JSON bodies as in 2, wrk → nginx (conf/nginx.conf as shipped without its "
                 "per-address ingest limit_req: wrk is one address; one worker, access log "
                 f"on) → servers → one influxd; {ctx.mode.rounds} rounds alternating (spread {spread(pairs)}).")


# --- detector tick per live call ------------------------------------------------


class CountingViewer:
    """A viewer (the detector's `send`/`close` interface) that counts what it is sent."""

    def __init__(self):
        self.messages = 0
        self.bytes = 0

    def send(self, message):
        self.messages += 1
        self.bytes += len(message)

    def close(self, code, reason):
        pass


TICK_TIMEOUT_MS = 15_000  # the default --call-timeout


# What each replayed call sends, by shape: "real", the shipped client's two peers with the
# real fixture's extracted values per kind (audio, video, connection); "thin", one peer with
# rtt alone (the grouped baselines of 6a and 6c need every sample in rtc_stats too, which
# this machine can write in real time for 20,000 thin calls, not for 20,000 real ones). Both
# take one sample a second of each kind and post them every FLEET_SEND_S seconds.
STATS_EVERY_MS = 1000  # the client's getStats interval
# Counters grow as the fixture's streams do, roughly (per second); one call in CALL_LOSSY loses packets.
COUNTER_RATES = {"audio": 50.0, "video": 90.0}
CALL_LOSSY = 10


def _fixture_shape():
    """{peer: {kind: extracted values}} of one report of the real fixture."""
    reports = clean_reports()
    return {peer: registry.extract(reports[peer][len(reports[peer]) // 2]) for peer in ("caller", "callee")}


CALL_SHAPES = {"real": _fixture_shape(), "thin": {"p": {"audio": {"rtt": 30.0}}}}


@functools.lru_cache(maxsize=8192)
def _encoded_sample(shape, peer, kind, seconds, rtt_step, lossy):
    """(feed values, rtc_stats fields) of one sample of `peer`'s `kind` at `seconds`: the
    shape's values, with rtt moving (30 + rtt_step ms) and the counters growing, a
    `lossy` call's losses too, so windows and buckets differ. Calls share them (cached):
    the writer's CPU is not what is measured."""
    values = dict(CALL_SHAPES[shape][peer][kind])
    if "rtt" in values:
        values["rtt"] = float(30 + rtt_step)
    rate = COUNTER_RATES.get(kind, 0.0)
    for name in ("packetsSent", "packetsReceived"):
        if name in values:
            values[name] = float(seconds * rate)
    if "packetsLost" in values and lossy:
        values["packetsLost"] = float(seconds * rate * 0.08)
    return encode_feed_values(values), ",".join(f"{name}={value!r}" for name, value in values.items())


def _calls_lines(count, since_ms, until_ms, every_ms=1000, feed=None, stats=True, shape="real"):
    """What `count` calls of `shape` leave in InfluxDB over (since_ms, until_ms] when each of
    their peers posts every `every_ms` the samples taken since its previous post (one per kind
    every STATS_EVERY_MS): per post a presence row and its live feed row, and with `stats` the
    samples in rtc_stats. The peers' posts are spread evenly over the period, as independent
    clients' are, so any stretch of time holds its share of them, whatever its length."""
    lines = []
    feed = feed or Feed("bench")
    peers = CALL_SHAPES[shape]
    senders = count * len(peers)
    per_post = max(1, every_ms // STATS_EVERY_MS)
    for index in range(count):
        call = f"tick-{index:05d}"
        lossy = index % CALL_LOSSY == 0
        for number, (peer, kinds) in enumerate(peers.items()):
            phase = (index * len(peers) + number) * every_ms // senders
            at = since_ms + (phase - since_ms - 1) % every_ms + 1  # its first post after since_ms
            while at <= until_ms:
                times = [at - offset * STATS_EVERY_MS for offset in range(per_post - 1, -1, -1)]
                samples = []
                for kind in kinds:
                    for sampled in times:
                        seconds = sampled // 1000
                        values, fields = _encoded_sample(shape, peer, kind, seconds, (index + seconds) % 17, lossy)
                        samples.append((kind, sampled * 1_000_000, values))
                        if stats:
                            lines.append(f"rtc_stats,call={call},kind={kind},peer={peer} {fields} "
                                         f"{sampled * 1_000_000}".encode())
                first = times[0]
                lines.append(f"rtc_calls,call={call},peer={peer} first={first}.0,last={at}.0,recv={at}.0 "
                             f"{at * 1_000_000}".encode())
                lines.append(feed.presence(call, peer, first, at, at * 1_000_000, samples))
                at += every_ms
    return lines


async def _tick_costs(ctx, count, ticks):
    """(wall seconds, bench-process CPU seconds, influxd CPU seconds) per tick with `count` live calls."""
    store = Store(ctx.influxd.url, ctx.database(f"tick{count}"))
    try:
        await store.setup()

        async def feed(seconds):
            now = int(time.time() * 1000)
            lines = _calls_lines(count, now - seconds * 1000, now, shape="thin")
            for start in range(0, len(lines), 5000):
                await store.write(b"\n".join(lines[start:start + 5000]))

        detector = CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000)
        await feed(detector.activity.window_ms // 1000)  # the look-back window full, as in steady state
        await detector.run_tick()
        viewer = CountingViewer()
        await detector.watch(registry.lookup("rtt"), viewer)
        costs = []
        for _ in range(ticks):
            await asyncio.sleep(1.0)  # a second of posts from every call, as between real ticks
            await feed(1)
            wall, cpu, influx = time.perf_counter(), time.process_time(), harness.cpu_seconds(ctx.influxd.process.pid)
            await detector.run_tick()
            costs.append((time.perf_counter() - wall, time.process_time() - cpu,
                          harness.cpu_seconds(ctx.influxd.process.pid) - influx))
        if detector.failures or len(detector.live_calls) != count:
            raise BenchError(f"detector with {count} calls: {detector.failures} failed ticks, "
                             f"{len(detector.live_calls)} live")
        if not viewer.messages:
            raise BenchError(f"detector with {count} calls sent the viewer nothing")
        return [statistics.median(column) for column in zip(*costs)], await _presence_query_costs(ctx, store, detector)
    finally:
        await store.close()


async def _presence_query_costs(ctx, store, detector):
    """influxd CPU seconds of the detector's grouped presence query over its
    window, and of reading only the raw rows of the last two seconds (what an
    incremental detector would ask), alternating; median of three each."""
    now = int(time.time() * 1000)
    grouped = (f'SELECT min("first") AS "first", max("last") AS "last", max("recv") AS "recv" FROM rtc_calls '
               f'WHERE time >= {now - detector.activity.window_ms}ms GROUP BY "call", "peer"')
    raw = f'SELECT "call", "peer", "first", "last", "recv" FROM rtc_calls WHERE time >= {now - 2000}ms'
    costs = {grouped: [], raw: []}
    for _ in range(3):
        for statement in costs:
            before = harness.cpu_seconds(ctx.influxd.process.pid)
            await store.query(statement)
            costs[statement].append(harness.cpu_seconds(ctx.influxd.process.pid) - before)
    return statistics.median(costs[grouped]), statistics.median(costs[raw])


def detector_curve(ctx, section):
    """Per-call cost is CPU (the detector's and influxd's), which contention
    inflates less than wall time; wall time is noted too."""
    sizes = ctx.mode.tick_calls
    measured = {count: asyncio.run(_tick_costs(ctx, count, ctx.mode.tick_rounds)) for count in sizes}
    costs = {count: tick for count, (tick, _) in measured.items()}
    base = ctx.mode.tick_baseline
    per_call = {count: (cpu + influx) / count for count, (_, cpu, influx) in costs.items()}
    for count in sizes:
        wall, cpu, influx = costs[count]
        figure = section.add(f"tick CPU per live call, {count:,} calls", per_call[count] * 1e6, "µs",
                             f"per call at {base:,}", per_call[base] * 1e6)
        if count == max(sizes):
            figure.target, figure.met = "≤ 1.25 (linear)", per_call[count] <= 1.25 * per_call[base]
        section.note(f"{count:,} live calls: tick {wall * 1000:.1f} ms wall, detector CPU {cpu * 1000:.1f} ms, "
                     f"influxd CPU {influx * 1000:.1f} ms (median of {ctx.mode.tick_rounds} ticks).")
    counts = list(sizes)
    slope, intercept = _fit(counts, [costs[c][0] for c in counts])
    section.note(f"Wall time, least-squares line: tick ≈ {intercept * 1000:.1f} ms + {slope * 1e6:.1f} µs × live "
                 f"calls, so a {1000:,} ms tick is full at about {(1 - intercept) / slope:,.0f} live calls.")
    grouped, raw = measured[max(sizes)][1]
    section.add(f"influxd CPU, presence query over the window, {max(sizes):,} calls", grouped * 1000, "ms",
                "raw rows of the last 2 s", raw * 1000)
    section.note("The detector runs in the bench process against the shared influxd with the default call timeout "
                 f"({TICK_TIMEOUT_MS // 1000} s): one watched metric, one viewer, every call (\"thin\": one peer, "
                 "rtt alone) posting every second and "
                 "its look-back window full of rows, as in steady state. InfluxDB's cost is per series (call × peer) "
                 "a query groups by, whatever the window: the last row compares it with reading only new rows.")


# --- the detector at fleet scale: the feed alone against whole-window grouped reads ------

FLEET_SEND_S = 2  # the shipped client's send interval


def fleet_arrivals(store, count, stats=True, shape="real", clock=None):
    """arrivals(seconds=None): writes what `count` calls sending every FLEET_SEND_S seconds
    posted in the last `seconds`, or by default since the previous arrivals (at most a call
    timeout): exactly the posts of the time that passed, so a slow tick has more rows to
    read after it, and a tick on time the rows of a second. Without `stats`, only what the
    incremental detector reads (presence and feed rows), not the samples in rtc_stats.
    `shape`: what each call sends (CALL_SHAPES); `clock`: the time it is (ms; default the wall clock)."""
    feed = Feed("bench")
    written = [None]

    async def arrivals(seconds=None):
        now = clock() if clock is not None else int(time.time() * 1000)
        since = now - seconds * 1000 if seconds or written[0] is None else max(written[0], now - TICK_TIMEOUT_MS)
        written[0] = now
        lines = _calls_lines(count, since, now, every_ms=FLEET_SEND_S * 1000, feed=feed, stats=stats, shape=shape)
        for start in range(0, len(lines), 5000):
            await store.write(b"\n".join(lines[start:start + 5000]))

    return arrivals


async def _before_and_after(ctx, count, ticks):
    """Two detectors on one database, one viewer of rtt each: whole-window grouped reads
    every tick, presence, quality window and rtt points over rtc_calls and rtc_stats
    (before), and the feed since the previous tick alone (after), in phases A B B A of
    ticks after the arrivals of the seconds since the previous ones, each phase's first
    tick not timed. {mode: [(wall, influxd CPU, detector CPU)]}."""
    store = Store(ctx.influxd.url, ctx.database(f"feed{count}"), timeout=60.0)  # a 20,000-call snapshot under load
    try:
        await store.setup()
        arrivals = fleet_arrivals(store, count, shape="thin")
        detectors = {"before": CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000, incremental=False),
                     "after": CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000)}
        await arrivals(detectors["after"].activity.window_ms // 1000)
        viewers = {}
        for name, detector in detectors.items():
            await detector.run_tick()
            viewers[name] = CountingViewer()
            await detector.watch(registry.lookup("rtt"), viewers[name])
        costs = {name: [] for name in detectors}
        pid = ctx.influxd.process.pid
        for name in ("after", "before", "before", "after"):  # phases of each, so the feed is read since its own tick
            detector = detectors[name]
            await arrivals()
            await detector.run_tick()  # not timed: it catches up with the other detector's phase
            for _ in range(max(1, ticks // 2)):
                await asyncio.sleep(0.5)
                await arrivals()
                wall, cpu, influx = time.perf_counter(), time.process_time(), harness.cpu_seconds(pid)
                await detector.run_tick()
                costs[name].append((time.perf_counter() - wall, harness.cpu_seconds(pid) - influx,
                                    time.process_time() - cpu))
        for name, detector in detectors.items():
            if detector.failures or len(detector.live_calls) != count or not viewers[name].messages:
                raise BenchError(f"{name} detector with {count} calls: {detector.failures} failed ticks, "
                                 f"{len(detector.live_calls)} live, {viewers[name].messages} messages to its viewer")
        return costs, await _incremental_query_costs(ctx, store, detectors["after"])
    finally:
        await store.close()


async def _incremental_query_costs(ctx, store, detector):
    """influxd CPU seconds, alone (median of three), of the one query of an incremental
    tick and of the grouped queries over rtc_stats it no longer makes."""
    now = int(time.time() * 1000)
    rtt = registry.lookup("rtt")
    since = (now // BUCKET_MS - RECENT_BUCKETS + 1) * BUCKET_MS
    queries = {
        "the feed since the previous tick": lambda: store.feed_since(now - 1000 - FEED_OVERLAP_MS),
        "the quality window, grouped (no longer asked)": lambda: store.quality_window(
            now - detector.quality_window_ms, now, fleet.WINDOW_GAUGES, fleet.WINDOW_LAST, fleet.WINDOW_COUNTERS),
        "the rtt points, grouped (no longer asked)": lambda: store.metric_series(
            rtt, since, now, BUCKET_MS // 1000, rate=False),
    }
    costs = {name: [] for name in queries}
    for _ in range(3):
        for name, run in queries.items():
            before = harness.cpu_seconds(ctx.influxd.process.pid)
            await run()
            costs[name].append(harness.cpu_seconds(ctx.influxd.process.pid) - before)
    return {name: statistics.median(values) for name, values in costs.items()}


def _skipped(walls, tick_s=1.0):
    """Ticks a 1 s periodic callback skips while these ticks run."""
    return sum(max(0, math.ceil(wall / tick_s) - 1) for wall in walls)


def detector_feed(ctx, section):
    sizes = ctx.mode.feed_calls
    for count in sizes:
        costs, queries = asyncio.run(_before_and_after(ctx, count, ctx.mode.feed_ticks))
        medians = {name: [statistics.median(column) for column in zip(*runs)] for name, runs in costs.items()}
        (wall_b, influx_b, cpu_b), (wall_a, influx_a, cpu_a) = medians["before"], medians["after"]
        section.add(f"tick wall time, {count:,} live calls, incremental", wall_a * 1000, "ms",
                    "whole window, grouped, every tick", wall_b * 1000)
        figure = section.add(f"influxd CPU per tick, {count:,} live calls, incremental", influx_a * 1000, "ms",
                             "whole window, grouped, every tick", influx_b * 1000)
        skipped = {name: _skipped([run[0] for run in runs]) for name, runs in costs.items()}
        if count == max(sizes):
            figure.target, figure.met = "no skipped tick", skipped["after"] == 0
        section.note(f"{count:,} live calls: incremental tick {wall_a * 1000:.0f} ms wall, influxd {influx_a * 1000:.0f} ms, "
                     f"detector {cpu_a * 1000:.0f} ms CPU, {skipped['after']} ticks skipped over "
                     f"{len(costs['after'])} ticks; whole window {wall_b * 1000:.0f} ms wall, influxd {influx_b * 1000:.0f} ms, "
                     f"detector {cpu_b * 1000:.0f} ms CPU, {skipped['before']} skipped (median of "
                     f"{len(costs['after'])} ticks each). influxd CPU of each query, alone: " +
                     ", ".join(f"{name} {cost * 1000:.0f} ms" for name, cost in queries.items()) + ".")
    section.note(f"Every call sends every {FLEET_SEND_S} s (the client's default), so half of them arrive each "
                 "second: a presence row, its feed row (with its two samples' rtt, one a second) and those rtt "
                 "samples in rtc_stats each (the \"thin\" call of bench.scaling: one peer, rtt alone); the window is "
                 "full, as in steady state. Two detectors on one database, one rtt viewer each, tick in phases (feed, "
                 "grouped, grouped, feed; each phase's first tick untimed, so the feed is read since the same "
                 "detector's previous tick), each tick after the arrivals of the seconds since the previous ones "
                 "and 0.5 s: the whole window read with grouped "
                 "queries (presence, the quality window and the rtt points over rtc_calls, rtc_events and rtc_stats) "
                 "against the feed alone. Skipped: ticks a 1 s periodic callback would skip while one runs.")


def _fit(xs, ys):
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    return slope, mean_y - slope * mean_x



# --- the detector in real time ------------------------------------------------------


def steady_fill_s(detector):
    """Seconds of arrivals that put `detector` in its steady state: the samples it keeps,
    the feed's overlap and one more. Older rows give it nothing more to follow (a peer's
    presence is one entry, whatever its age), and this machine takes longer than a call
    timeout to write the whole window of 20,000 real calls."""
    return (detector.activity.samples_ms + FEED_OVERLAP_MS) // 1000 + 1

REALTIME_WARMUP_S = 5


async def _realtime(ctx, count, seconds):
    """One detector on the server's 1 s schedule (a PeriodicCallback of CallDetector.tick,
    which skips a tick while the previous one runs) with one rtt viewer, while
    bench.arrivals writes the fleet's posts in real time from a process of its own.
    {walls, skipped, cpu, influxd, writer, seconds, messages, alone} over `seconds` after a warm-up."""
    database = ctx.database(f"realtime{count}")
    store = Store(ctx.influxd.url, database, timeout=60.0)
    clock = DrivenClock()  # the wall clock, until its ticks alone
    detector = CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000, clock=clock)
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.arrivals", ctx.influxd.url, database, str(count),
        str(steady_fill_s(detector)), str(REALTIME_WARMUP_S + seconds + 60), cwd=harness.ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        if (await asyncio.wait_for(writer.stdout.readline(), 600)).strip() != b"filled":
            raise BenchError(f"bench.arrivals for {count} calls did not start")
        await detector.run_tick()
        viewer = CountingViewer()
        await detector.watch(registry.lookup("rtt"), viewer)
        walls, in_flight, run_tick = [], [], detector.run_tick

        async def timed_tick():  # what tick() starts: the detector's own, timed
            began = time.perf_counter()
            in_flight[:] = [asyncio.current_task()]
            await run_tick()
            walls.append(time.perf_counter() - began)

        detector.run_tick = timed_tick
        schedule = tornado.ioloop.PeriodicCallback(detector.tick, 1000)
        schedule.start()
        await asyncio.sleep(REALTIME_WARMUP_S)
        loaded = time.monotonic() + 120
        while not detector.ended_calls.ready and time.monotonic() < loaded:  # its one load, once per start
            await asyncio.sleep(0.5)
        walls.clear()
        skipped, messages = detector.skipped, viewer.messages
        cpu, wall = time.process_time(), time.perf_counter()
        influx, written = harness.cpu_seconds(ctx.influxd.process.pid), harness.cpu_seconds(writer.pid)
        await asyncio.sleep(seconds)
        cpu, influx = time.process_time() - cpu, harness.cpu_seconds(ctx.influxd.process.pid) - influx
        written = harness.cpu_seconds(writer.pid) - written
        elapsed = time.perf_counter() - wall
        schedule.stop()
        if in_flight:
            await in_flight[0]
        skipped = detector.skipped - skipped  # tick() counts the deadlines the loop passed too
        detector.run_tick = run_tick
        writer.kill()
        await writer.wait()
        if detector.failures or len(detector.live_calls) != count:
            raise BenchError(f"realtime detector with {count} calls: {detector.failures} failed ticks, "
                             f"{len(detector.live_calls)} live")
        return {"walls": walls, "skipped": skipped, "cpu": cpu, "influxd": influx, "writer": written,
                "seconds": elapsed, "messages": viewer.messages - messages,
                "alone": await _ticks_alone(store, detector, clock, count)}
    finally:
        if writer.returncode is None:
            writer.kill()
        await writer.wait()
        await store.close()


class DrivenClock:
    """A detector's clock in a benchmark (ms): the wall clock, except inside `driven()`, where
    the bench moves it on: each timed tick then follows exactly one more second of a fleet
    whose every second was written, however long writing and ticking take on this machine."""

    def __init__(self):
        self.ms = None  # None: the wall clock

    def __call__(self):
        return int(time.time() * 1000) if self.ms is None else self.ms

    @contextlib.contextmanager
    def driven(self):
        """Stopped at the time it is on entry, moved on by the bench inside."""
        self.ms = int(time.time() * 1000)
        try:
            yield self
        finally:
            self.ms = None


async def ticks_on_a_driven_clock(store, detector, clock, count, ticks, seconds=1, each=None, filled=None):
    """[(wall, CPU) seconds] of `ticks` ticks of `detector` (made with the DrivenClock `clock`),
    each after exactly `seconds` more of the fleet's arrivals, with nothing else running: the
    detector's own cost of that much of the fleet, in its steady state (its samples filled
    first, one rtt viewer). `each`: an async context manager factory around each timed tick
    (a profiler); `filled`: called once the fill is read, before the timed ticks."""
    with clock.driven():
        arrivals = fleet_arrivals(store, count, stats=False, clock=clock)
        await arrivals(steady_fill_s(detector))
        await detector.run_tick()
        if not detector.graphs.viewer_count:
            await detector.watch(registry.lookup("rtt"), CountingViewer())
        clock.ms += seconds * 1000
        await arrivals()
        await detector.run_tick()  # the first after the fill's whole-window read, not timed
        if filled is not None:
            filled()
        costs = []
        for _ in range(ticks):
            clock.ms += seconds * 1000
            await arrivals()
            wall, cpu = time.perf_counter(), time.process_time()
            async with each() if each is not None else contextlib.nullcontext():
                await detector.run_tick()
            costs.append((time.perf_counter() - wall, time.process_time() - cpu))
    if detector.failures or len(detector.live_calls) != count:
        raise BenchError(f"detector with {count} calls on a driven clock: {detector.failures} failed ticks, "
                         f"{len(detector.live_calls)} live")
    return costs


async def _ticks_alone(store, detector, clock, count, ticks=3):
    """(wall, CPU) seconds, medians, of ticks that each follow exactly one more second of
    arrivals, nothing else running: the detector's own cost of a second of the fleet."""
    costs = await ticks_on_a_driven_clock(store, detector, clock, count, ticks)
    return tuple(statistics.median(column) for column in zip(*costs))


async def _alone(ctx, count):
    """_ticks_alone of a detector following `count` live calls: for a fleet this machine
    cannot write in real time beside the detector."""
    store = Store(ctx.influxd.url, ctx.database(f"alone{count}"), timeout=60.0)
    try:
        await store.setup()
        clock = DrivenClock()
        return await _ticks_alone(store, CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000, clock=clock),
                                  clock, count)
    finally:
        await store.close()


def detector_realtime(ctx, section):
    seconds = ctx.mode.realtime_seconds
    base, count = ctx.mode.realtime_calls
    target = ctx.mode.realtime_target
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # the collector as a server process has it
    try:
        runs = {size: asyncio.run(_realtime(ctx, size, seconds)) for size in (base, count)}
        alone = asyncio.run(_alone(ctx, target))
    finally:
        gc.set_threshold(*thresholds)
    at, below = runs[count], runs[base]
    section.add(f"ticks skipped over {seconds} s, {count:,} live calls", at["skipped"], "ticks",
                f"at {base:,} live calls", below["skipped"], target="no skipped tick", met=at["skipped"] == 0)
    section.add(f"tick wall time, median, {count:,} live calls", statistics.median(at["walls"]) * 1000, "ms",
                f"at {base:,}", statistics.median(below["walls"]) * 1000)
    section.add(f"tick wall time, slowest, {count:,} live calls", max(at["walls"]) * 1000, "ms",
                f"at {base:,}", max(below["walls"]) * 1000)
    section.add(f"detector CPU per second, {count:,} live calls", at["cpu"] / at["seconds"] * 1000, "ms",
                f"at {base:,}", below["cpu"] / below["seconds"] * 1000)
    section.add(f"influxd CPU per second, {count:,} live calls (the arrivals' writes included)",
                at["influxd"] / at["seconds"] * 1000, "ms", f"at {base:,}", below["influxd"] / below["seconds"] * 1000)
    section.add(f"one tick after one second of arrivals, nothing else running, {target:,} live calls: detector CPU",
                alone[1] * 1000, "ms", f"at {count:,}", at["alone"][1] * 1000,
                target="< 1,000 ms (a core keeps the 1 s tick)", met=alone[1] < 1.0)
    section.add(f"the same tick's wall time, {target:,} live calls", alone[0] * 1000, "ms", f"at {count:,}",
                at["alone"][0] * 1000)
    demand = (at["alone"][1] + (at["influxd"] + at["writer"]) / at["seconds"])
    section.note(f"What a second at {count:,} live calls asks of the machine: the detector's tick of one second's "
                 f"arrivals alone {at['alone'][1] * 1000:.0f} ms of CPU ({at['alone'][0] * 1000:.0f} ms wall), "
                 f"influxd {at['influxd'] / at['seconds'] * 1000:.0f} ms and the arrivals' writer "
                 f"{at['writer'] / at['seconds'] * 1000:.0f} ms a second: {demand:.2f} of the {os.cpu_count()} cores, "
                 "with the tick's share one Python thread that must finish within the second while the other two "
                 "take cores from it; a tick that runs over reads more rows the next time.")
    for size, run in runs.items():
        section.note(f"{size:,} live calls: {len(run['walls'])} ticks in {run['seconds']:.1f} s, {run['skipped']} "
                     f"skipped; wall median {statistics.median(run['walls']) * 1000:.0f} ms, slowest "
                     f"{max(run['walls']) * 1000:.0f} ms; detector {run['cpu']:.2f} CPU s, influxd "
                     f"{run['influxd']:.2f} CPU s, the arrivals' writer {run['writer']:.2f} CPU s (of "
                     f"{run['seconds'] * os.cpu_count():.0f} the machine had); {run['messages']} messages to the "
                     "rtt viewer.")
    section.note(f"{target:,} live calls, the detector alone: its samples filled, then three ticks each after exactly "
                 f"one more second of arrivals, the bench driving the detector's clock (every second of the fleet "
                 f"written, however long writing and ticking take): {alone[1] * 1000:.0f} ms of CPU, "
                 f"{alone[0] * 1000:.0f} ms wall (medians). This machine cannot also write {target:,} real calls' "
                 f"arrivals in real time beside "
                 f"it: influxd and the writer need about {(at['influxd'] + at['writer']) / at['seconds'] * target / count:.1f} "
                 f"cores for them (scaled from {count:,}).")
    section.note(f"The detector as the server runs it: a 1 s PeriodicCallback (a tick still running when the next "
                 f"is due skips it; skipped is the detector's count: those, and the deadlines the loop was held past), "
                 f"one rtt viewer, while a process of its own (bench/arrivals.py) writes what the calls send in real "
                 f"time, every 0.1 s the posts of the time that passed. A call is the shipped client's two peers, each "
                 f"posting every {FLEET_SEND_S} s, spread evenly, the samples of the real fixture's audio, video and "
                 f"connection kinds (one a second each): a presence row and its feed row per post (what the detector "
                 f"reads; the samples' rtc_stats points are the ingest tier's load on InfluxDB, not written here). "
                 f"Measured over {seconds} s after {REALTIME_WARMUP_S} s of ticks and the ended-call index's load "
                 f"(once per start), the detector's samples full from the start.")
