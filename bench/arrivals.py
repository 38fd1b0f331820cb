"""Writes a fleet's arrivals to InfluxDB in real time, as a process of its own: what
`count` calls sending every 2 s leave there (bench.scaling.fleet_arrivals), every
0.1 s the posts of the time that passed, for `seconds`.

    python -m bench.arrivals INFLUXDB_URL DATABASE COUNT SECONDS

It prints "filled" once the detector's look-back window is full, then writes on;
its CPU is its own, as an ingest tier's is not the detector's."""
import asyncio
import sys
import time

from rtcscope.live.detector import CallDetector
from rtcscope.storage.store import Store

from .scaling import TICK_TIMEOUT_MS, fleet_arrivals

WRITE_EVERY_S = 0.1


async def run(url, database, count, seconds):
    store = Store(url, database, timeout=60.0)
    await store.setup()
    arrivals = fleet_arrivals(store, count)
    await arrivals(CallDetector(store, timeout_ms=TICK_TIMEOUT_MS, tick_ms=1000).window_ms // 1000)
    print("filled", flush=True)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        await asyncio.sleep(WRITE_EVERY_S)
        await arrivals()
    await store.close()


if __name__ == "__main__":
    url, database, count, seconds = sys.argv[1:5]
    asyncio.run(run(url, database, int(count), float(seconds)))
