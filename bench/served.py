"""rtcscope-server with the call detector's ticks timed, for the live benchmarks.

    RTCSCOPE_BENCH_TICK_LOG=ticks.jsonl python -m bench.served [server options]

The server runs unchanged; each detector tick appends one JSON line: its
start and end (wall clock, comparable with the viewer process's receive
times), the InfluxDB queries it made, the viewers and the live calls.
"""
import asyncio
import os
import sys
import time

import orjson

import server
from rtcscope.live.detector import CallDetector

from . import harness


def time_ticks(log_path):
    log_file = open(log_path, "ab", buffering=0)
    run_tick = CallDetector.run_tick

    async def timed_run_tick(detector):
        started, queries = time.time(), detector.queries
        await run_tick(detector)
        log_file.write(orjson.dumps({
            "start": started, "end": time.time(), "queries": detector.queries - queries,
            "viewers": detector.graphs.viewer_count, "live": len(detector.live_calls),
            "failures": detector.failures}) + b"\n")

    CallDetector.run_tick = timed_run_tick


if __name__ == "__main__":
    time_ticks(os.environ["RTCSCOPE_BENCH_TICK_LOG"])
    sys.argv[0] = os.path.join(harness.ROOT, "server.py")
    asyncio.run(server.main())
