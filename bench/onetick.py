"""One incremental detector against a populated influxd, ticking after arrivals: its wall
and CPU time per tick, and optionally a cProfile of its ticks or the CPU of each of its
phases (thread CPU clock, no profiler).

    python -m bench.onetick 20000 --ticks 6 [--arrivals 1] [--phases | --profile [--sort cumulative]] [--compare]

Each call is the shipped client's two peers with the real fixture's kinds (bench.scaling's "real" shape).

Before each tick exactly `--arrivals S` more seconds of the fleet are written (default 1: the
cost of a tick on time), the bench driving the detector's clock (bench.scaling.DrivenClock),
so every second is written however long writing and ticking take, with the collector's
thresholds a server process has. A smaller driver than 6d, for looking at where a tick's CPU
goes; `make bench`'s 6e (`detector_tick`) is its figures against the detector's targets.

Each timed tick runs beside a probe on the event loop (LoopHold): the longest the tick held
the loop, in one go up to the tick's end, is printed with the tick's cost. `--compare`: after the ticks, on the
samples the detector holds then, the quality of every live call the per-call way it was
computed before (tests/support/reference.py) and the columnar way, alternating, per call."""
import argparse
import asyncio
import collections
import contextlib
import cProfile
import functools
import gc
import os
import pstats
import statistics
import tempfile
import time

import numpy as np

from rtcscope.live import activity, buckets, calllist, calls, fleet, graphs, recent
from rtcscope.live.detector import LOOP_BUDGET_MS, CallDetector
from rtcscope.storage.schema import FEED_FIELDS
from rtcscope.storage.store import Store
from tests.support import reference

from . import harness
from .scaling import GC_THRESHOLDS, TICK_TIMEOUT_MS, DrivenClock, ticks_on_a_driven_clock

# (owner, function) timed by --phases: the tick's parts, by what they handle.
PHASES = [(activity.Activity, name) for name in ("read", "apply")]
PHASES += [(CallDetector, name) for name in ("_apply", "_diff", "_keep_starts", "_in_worker")]
PHASES += [(calllist.CallList, "publish")]
PHASES += [(graphs.Graphs, name) for name in ("recent_series", "publish")]
PHASES += [(buckets.CallBuckets, name) for name in ("merge", "update_band")]
PHASES += [(recent.RecentSamples, name) for name in ("add", "settle", "window_rows", "peers", "metric_series")]
PHASES += [(calls.CallStates, "rebuild"), (fleet, "judge"), (fleet, "fleet_aggregates")]
# Run in the detector's worker thread, off the event loop (their CPU is that thread's).
IN_WORKER = ("CallDetector._in_worker", "RecentSamples.settle", "RecentSamples.window_rows", "RecentSamples.peers",
             "RecentSamples.metric_series", "fleet.judge", "fleet.fleet_aggregates")


def time_phases():
    """Wrap PHASES with CPU timers; returns {phase: CPU seconds} as they accumulate."""
    spent = collections.Counter()
    for owner, name in PHASES:
        original = getattr(owner, name)
        label = f"{owner.__name__.rsplit('.', 1)[-1]}.{name}"
        if asyncio.iscoroutinefunction(original):
            async def timed(*args, _original=original, _label=label, **kwargs):
                began = time.thread_time()
                try:
                    return await _original(*args, **kwargs)
                finally:
                    spent[_label] += time.thread_time() - began
        else:
            def timed(*args, _original=original, _label=label, **kwargs):
                began = time.thread_time()
                try:
                    return _original(*args, **kwargs)
                finally:
                    spent[_label] += time.thread_time() - began
        setattr(owner, name, functools.wraps(original)(timed))
    return spent


class LoopHold:
    """The longest the event loop was held in one go while it ran: a callback due every
    `period` seconds records how late it ran (what a request arriving then would have waited)."""

    def __init__(self, period=0.005):
        self.period = period
        self.longest = 0.0
        self._due = self._handle = self._stopped = None

    def start(self):
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.period
        self._handle = loop.call_at(self._due, self._run, loop)

    def _run(self, loop):
        now = loop.time()
        self.longest = max(self.longest, now - self._due)
        if self._stopped is not None:
            self._stopped.set_result(None)
            self._stopped = None
            return
        self._due = now + self.period
        self._handle = loop.call_at(self._due, self._run, loop)

    async def stop(self):
        """After the timer's next run: a hold that lasts to the end of what is measured counts too."""
        self._stopped = asyncio.get_running_loop().create_future()
        await self._stopped


async def run(influxd, count, ticks, profile, seconds=1, spent=None, compare=0, database=None):
    """(costs [(wall, CPU)], the longest loop hold in a timed tick (s), the comparison's rounds,
    the phases' CPU in the timed ticks)."""
    store = Store(influxd.url, database or f"onetick{count}", timeout=60.0)
    await store.setup()
    hold = LoopHold()

    @contextlib.asynccontextmanager
    async def timed():
        hold.start()
        if profile:
            profile.enable()
        try:
            yield
        finally:
            if profile:
                profile.disable()
            await hold.stop()

    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # the collector as a server process has it
    try:
        clock = DrivenClock()
        detector = CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000, clock=clock)
        costs = await ticks_on_a_driven_clock(store, detector, clock, count, ticks, seconds, timed,
                                              filled=spent.clear if spent is not None else None)
        phases = collections.Counter(spent) if spent is not None else None  # the ticks' own, not the comparison's
        rounds = compare_paths(detector, detector.last_tick_ms, compare) if compare else []
        await detector.stop()
        return costs, hold.longest, rounds, phases
    finally:
        gc.set_threshold(*thresholds)
        await store.close()


def compare_paths(detector, now, rounds):
    """[(per-call µs of the per-call path, of the columnar path)], CPU, `rounds` pairs in
    alternating order, on the same samples: every live call's window rows and quality."""
    samples = detector.activity.recent
    calls_of, names, call_names, _ = samples.peers()
    kinds = {number: kind for (_, _, kind), number in samples._series.index.items()}
    peer_of = samples._peer_of
    rows = []
    values = samples.values.astype(object)
    values[np.isnan(samples.values)] = None
    starts = np.flatnonzero(np.diff(samples.series, prepend=-1)).tolist() + [len(samples.series)]
    series, times, values = samples.series.tolist(), samples.times.tolist(), values.tolist()
    for first, end in zip(starts, starts[1:]):
        peer = int(peer_of[series[first]])
        rows.append((call_names[calls_of[peer]], names[peer],
                     {kinds[series[first]]: dict(zip(times[first:end], values[first:end]))}))
    per_call = reference.Samples()
    per_call.add(rows)
    assert len(values[0]) == len(FEED_FIELDS)
    live = set(detector.live_calls)
    window = detector.quality_window_ms

    def old():
        return reference.qualities(per_call.windows(live, now - window, now)[0], live, now)

    def new():
        return fleet.judge(*samples.window_rows(now - window, now), samples.peers(), live, now)

    out = []
    for index in range(rounds):
        spent = {}
        for name, path in ((("old", old), ("new", new)) if index % 2 == 0 else (("new", new), ("old", old))):
            began = time.process_time()
            path()
            spent[name] = (time.process_time() - began) / len(live) * 1e6
        out.append((spent["old"], spent["new"]))
    return out


def detector_tick(ctx, section):
    """`make bench`'s figures of the detector's targets (issue 23, SPEC §18): at
    `ctx.mode.tick_target` real calls, a tick of one more second's CPU and wall time, the
    longest the loop was held in one go during it against the budget (docs/live.md), and
    every call's windows and quality against the per-call path on the same samples, in
    alternating pairs after the ticks."""
    count, ticks, rounds = ctx.mode.tick_target, ctx.mode.tick_target_ticks, ctx.mode.rounds + 1
    load = os.getloadavg()[0]
    costs, held, pairs, _ = asyncio.run(run(ctx.influxd, count, ticks, None, compare=rounds,
                                            database=ctx.database(f"tick{count}")))
    wall, cpu = (statistics.median(column) for column in zip(*costs))
    old, new = (statistics.median(column) for column in zip(*pairs))
    section.add(f"a tick of one more second, {count:,} real calls: detector CPU", cpu * 1000, "ms",
                "the per-call path's windows and qualities alone", old * count / 1000,
                target="≤ 800 ms (goal 500)", met=cpu <= 0.8)
    section.add("the same tick's wall time", wall * 1000, "ms")
    section.add("windows and quality per live call, columnar", new, "µs", "the per-call path, same samples", old,
                target="≤ 0.33 (≥ 3× fewer µs)", met=old >= 3 * new)
    section.add("the longest hold of the event loop during a tick", held * 1000, "ms", "the budget (docs/live.md)",
                LOOP_BUDGET_MS, target="≤ the budget", met=held * 1000 <= LOOP_BUDGET_MS)
    section.note(f"{count:,} live calls, each the shipped client's two peers with the real fixture's audio, video "
                 f"and connection (bench.scaling's \"real\" shape), one rtt viewer; the detector's samples filled, "
                 f"then {ticks} ticks each after exactly one more second of arrivals on a clock the bench drives "
                 f"(medians; load {load:.1f} before). The loop's longest hold: a timer every 5 ms on the loop, its "
                 f"greatest lateness during a timed tick. Per call: {len(pairs)} alternating pairs, CPU of every live "
                 f"call's window rows and quality, the per-call path (tests/support/reference.py) against "
                 f"`window_rows` + `fleet.judge`, pairs {', '.join(f'{o:.1f}/{n:.1f}' for o, n in pairs)} µs. "
                 "Where the tick goes: `python -m bench.onetick 20000 --ticks 5 --phases`.")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", type=int, nargs="+")
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--arrivals", type=int, default=1, help="seconds of arrivals before each tick")
    parser.add_argument("--phases", action="store_true", help="the CPU of each phase of a tick, per tick")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--compare", type=int, default=0, metavar="ROUNDS",
                        help="pairs of the per-call and the columnar quality on the samples held after the ticks")
    parser.add_argument("--sort", default="tottime", help="the profile's order (pstats: tottime, cumulative)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        influxd = harness.start_influxd(work_dir)
        try:
            spent = time_phases() if args.phases else None
            for count in args.calls:
                profile = cProfile.Profile() if args.profile else None
                load = os.getloadavg()[0]
                costs, held, rounds, phases = asyncio.run(run(influxd, count, args.ticks, profile, args.arrivals, spent,
                                                      args.compare))
                wall, cpu = (statistics.median(column) for column in zip(*costs))
                print(f"{count:,} live calls: tick {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms detector CPU "
                      f"(median of {len(costs)}; load {load:.1f} to {os.getloadavg()[0]:.1f}); "
                      f"loop held at most {held * 1000:.1f} ms in one go")
                if profile:
                    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
                for phase, seconds in phases.most_common() if phases is not None else ():
                    where = " (worker thread)" if phase in IN_WORKER else ""
                    print(f"  {phase:32} {seconds / len(costs) * 1000:7.1f} ms CPU per tick{where}")
                if rounds:
                    old, new = (statistics.median(column) for column in zip(*rounds))
                    print(f"  quality of every live call, same samples, {len(rounds)} pairs: per-call path {old:.1f} µs "
                          f"a call, columnar {new:.1f} µs ({statistics.median(o / n for o, n in rounds):.1f}× less)")
        finally:
            influxd.cleanup()


if __name__ == "__main__":
    main()
