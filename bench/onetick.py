"""One incremental detector against a populated influxd, ticking after each second of
arrivals: its wall and CPU time per tick, and optionally a cProfile of its ticks.

    python -m bench.onetick 20000 --ticks 6 [--profile [--sort cumulative]]

A smaller driver than 6c (no whole-window detector beside it) for looking at where a
tick's CPU goes; the figures of record are 6c's."""
import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time

from rtcscope import registry
from rtcscope.live.detector import CallDetector
from rtcscope.storage.store import Store

from . import harness
from .scaling import TICK_TIMEOUT_MS, CountingViewer, fleet_arrivals


async def run(influxd, count, ticks, profile):
    store = Store(influxd.url, f"onetick{count}", timeout=60.0)
    await store.setup()
    arrivals = fleet_arrivals(store, count)
    detector = CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000)
    await arrivals(detector.window_ms // 1000)
    await detector.run_tick()
    viewer = CountingViewer()
    await detector.watch(registry.lookup("rtt"), viewer)
    await arrivals()
    await detector.run_tick()
    costs = []
    for _ in range(ticks):
        await asyncio.sleep(0.5)
        await arrivals()
        wall, cpu = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        await detector.run_tick()
        if profile:
            profile.disable()
        costs.append((time.perf_counter() - wall, time.process_time() - cpu))
    await store.close()
    if detector.failures or len(detector.live_calls) != count:
        raise harness.BenchError(f"{detector.failures} failed ticks, {len(detector.live_calls)} live")
    return costs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", type=int, nargs="+")
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="the profile's order (pstats: tottime, cumulative)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        influxd = harness.start_influxd(work_dir)
        try:
            for count in args.calls:
                profile = cProfile.Profile() if args.profile else None
                load = os.getloadavg()[0]
                costs = asyncio.run(run(influxd, count, args.ticks, profile))
                wall, cpu = (statistics.median(column) for column in zip(*costs))
                print(f"{count:,} live calls: tick {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms detector CPU "
                      f"(median of {len(costs)}; load {load:.1f} to {os.getloadavg()[0]:.1f})")
                if profile:
                    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
        finally:
            influxd.cleanup()


if __name__ == "__main__":
    main()
