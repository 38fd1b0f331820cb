"""Writes a fleet's arrivals to InfluxDB in real time, as a process of its own: what
`count` calls sending every 2 s leave there (bench.scaling.fleet_arrivals), every
0.1 s the posts of the time that passed, for `seconds`.

    python -m bench.arrivals INFLUXDB_URL DATABASE COUNT FILL_SECONDS SECONDS

It prints "filled" once the first FILL_SECONDS are written (the detector's steady state), then writes on;
its CPU is its own, as an ingest tier's is not the detector's. It writes what the detector reads
(presence and feed rows), not the samples in rtc_stats: storing those is InfluxDB's work for the
ingest tier, which at this size has a machine of its own."""
import asyncio
import sys
import time

from rtcscope.storage.store import Store

from .scaling import fleet_arrivals

WRITE_EVERY_S = 0.1


async def run(url, database, count, fill_seconds, seconds):
    store = Store(url, database, timeout=60.0)
    await store.setup()
    arrivals = fleet_arrivals(store, count, stats=False)
    await arrivals(fill_seconds)
    print("filled", flush=True)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        await asyncio.sleep(WRITE_EVERY_S)
        await arrivals()
    await store.close()


if __name__ == "__main__":
    url, database, count, fill_seconds, seconds = sys.argv[1:6]
    asyncio.run(run(url, database, int(count), int(fill_seconds), float(seconds)))
