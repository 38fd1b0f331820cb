"""One incremental detector against a populated influxd, ticking after arrivals: its wall
and CPU time per tick, and optionally a cProfile of its ticks or the CPU of each of its
phases (thread CPU clock, no profiler).

    python -m bench.onetick 20000 --ticks 6 [--arrivals 1] [--phases | --profile [--sort cumulative]]

Each call is the shipped client's two peers with the real fixture's kinds (bench.scaling's "real" shape).

Before each tick exactly `--arrivals S` more seconds of the fleet are written (default 1: the
cost of a tick on time), the bench driving the detector's clock (bench.scaling.DrivenClock),
so every second is written however long writing and ticking take. A smaller driver than 6d,
for looking at where a tick's CPU goes; the figures of record are 6d's."""
import argparse
import asyncio
import collections
import contextlib
import cProfile
import functools
import os
import pstats
import statistics
import tempfile
import time

from rtcscope.live import activity, buckets, calllist, calls, fleet, graphs, recent
from rtcscope.live.detector import CallDetector
from rtcscope.storage.store import Store

from . import harness
from .scaling import TICK_TIMEOUT_MS, DrivenClock, ticks_on_a_driven_clock

# (owner, function) timed by --phases: the tick's parts, by what they handle.
PHASES = [(activity.Activity, name) for name in ("read", "apply")]
PHASES += [(CallDetector, name) for name in ("_apply", "_diff", "_keep_starts")]
PHASES += [(fleet.FeedQualities, "update"), (calllist.CallList, "publish")]
PHASES += [(graphs.Graphs, name) for name in ("recent_series", "publish")]
PHASES += [(buckets.CallBuckets, name) for name in ("merge", "update_band")]
PHASES += [(recent.RecentSamples, name) for name in ("add", "trim", "windows", "metric_series")]
PHASES += [(calls.CallStates, "update"), (fleet, "qualities_of"), (fleet, "fleet_aggregates")]


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


async def run(influxd, count, ticks, profile, seconds=1, spent=None):
    store = Store(influxd.url, f"onetick{count}", timeout=60.0)
    await store.setup()

    @contextlib.asynccontextmanager
    async def profiled():
        profile.enable()
        try:
            yield
        finally:
            profile.disable()

    try:
        clock = DrivenClock()
        detector = CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000, clock=clock)
        return await ticks_on_a_driven_clock(store, detector, clock, count, ticks, seconds, profiled if profile else None,
                                             filled=spent.clear if spent is not None else None)
    finally:
        await store.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", type=int, nargs="+")
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--arrivals", type=int, default=1, help="seconds of arrivals before each tick")
    parser.add_argument("--phases", action="store_true", help="the CPU of each phase of a tick, per tick")
    parser.add_argument("--profile", action="store_true")
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
                costs = asyncio.run(run(influxd, count, args.ticks, profile, args.arrivals, spent))
                wall, cpu = (statistics.median(column) for column in zip(*costs))
                print(f"{count:,} live calls: tick {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms detector CPU "
                      f"(median of {len(costs)}; load {load:.1f} to {os.getloadavg()[0]:.1f})")
                if profile:
                    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
                for phase, seconds in spent.most_common() if spent is not None else ():
                    print(f"  {phase:32} {seconds / len(costs) * 1000:7.1f} ms CPU per tick")
        finally:
            influxd.cleanup()


if __name__ == "__main__":
    main()
