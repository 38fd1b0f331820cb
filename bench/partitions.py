"""Past one detector (docs/scaling.md): the live feed as a detector that follows one partition
of the calls would read it (the call id's CRC-32 modulo 4) against the whole feed's read, at
20,000 live calls of the shipped client's shape (two peers sending every 2 s: 20,000 feed
rows a second).

Three databases hold the same rows: the feed as it is (one series per server process), the
partition as a tag (one series per process and partition), and as an integer field. Each
read is what a tick reads: the rows of its last second whole, and the keys of the 3 s overlap
before them (docs/live.md, "Incremental reads"); medians of five, alternating.

    python -m bench --only partitions
"""
import asyncio
import statistics
import time
import zlib

from rtcscope.ingest.formats import Feed
from rtcscope.live.activity import FEED_OVERLAP_MS
from rtcscope.storage.store import Store

from . import harness
from .harness import BenchError
from .scaling import FLEET_SEND_S, _calls_lines

PARTITIONS = 4
CALLS = 20_000
ROUNDS = 7
FEED = '"rtc_feed"."rtc_feed"'
COLUMNS = ('"node", "call", "peer", "first", "last", "recv", "w", "end", "at", "detail", "disconnected", '
           '"imported"')


def partition_of(call):
    return zlib.crc32(call.encode()) % PARTITIONS


class PartitionedFeed(Feed):
    """The feed with each row's partition as a tag (`part`, a series per process and
    partition) or as an integer field."""

    def __init__(self, node, place):
        super().__init__(node)
        self.place = place

    def _line(self, call, peer, fields, now_ns):
        part = partition_of(call)
        if self.place == "tag":
            self._prefix = f"rtc_feed,node={self.node},part={part} ".encode()
        else:
            fields = f"part={part}i,{fields}"
        return super()._line(call, peer, fields, now_ns)


async def _filled(ctx, place, now):
    store = Store(ctx.influxd.url, ctx.database(f"partitions{place or 'none'}"), timeout=60.0)
    await store.setup()
    feed = Feed("bench") if place is None else PartitionedFeed("bench", place)
    # In slices of 100 ms, so that the rows' receive times (unique within a series) follow their posts.
    for since in range(now - 1000 - FEED_OVERLAP_MS, now, 100):
        lines = _calls_lines(CALLS, since, since + 100, every_ms=FLEET_SEND_S * 1000, feed=feed, stats=False)
        await store.write(b"\n".join(lines))
    return store


def _reads(now, condition=""):
    """A tick's two statements: the overlap's keys, then the last second's rows whole."""
    return (f'SELECT "call" FROM {FEED} WHERE time >= {now - 1000 - FEED_OVERLAP_MS}ms{condition} GROUP BY "node"',
            f"SELECT {COLUMNS} FROM {FEED} WHERE time >= {now - 1000}ms{condition}")


async def _read_cost(ctx, store, statements):
    """(wall s, influxd CPU s, reader CPU s: the answer's transfer and decoding, rows whole)."""
    pid = ctx.influxd.process.pid
    wall, influx, cpu = time.perf_counter(), harness.cpu_seconds(pid), time.process_time()
    rows = 0
    for statement in statements:
        answer = await store.query_series(statement, epoch="ns")
        rows = sum(len(series.get("values", ())) for series in answer)  # the last one's: the rows read whole
    return time.perf_counter() - wall, harness.cpu_seconds(pid) - influx, time.process_time() - cpu, rows


async def _measure(ctx):
    now = int(time.time() * 1000)
    stores = {place: await _filled(ctx, place, now) for place in (None, "tag", "field")}
    part = 2
    reads = {
        "whole feed": (stores[None], _reads(now)),
        "whole feed, partition tagged": (stores["tag"], _reads(now)),
        "one partition of four, a tag": (stores["tag"], _reads(now, f" AND \"part\" = '{part}'")),
        "one partition of four, a field": (stores["field"], _reads(now, f' AND "part" = {part}')),
    }
    costs = {name: [] for name in reads}
    try:
        for _ in range(ROUNDS):
            for name, (store, statements) in reads.items():
                costs[name].append(await _read_cost(ctx, store, statements))
    finally:
        for store in stores.values():
            await store.close()
    return {name: [statistics.median(column) for column in zip(*runs)] for name, runs in costs.items()}


def partitions(ctx, section):
    found = asyncio.run(_measure(ctx))
    whole = found["whole feed"]
    if not whole[3]:
        raise BenchError("partitions: the whole feed read no rows")
    for name in ("one partition of four, a tag", "one partition of four, a field", "whole feed, partition tagged"):
        wall, influx, cpu, rows = found[name]
        section.add(f"{name}: influxd CPU of a tick's feed read, {CALLS:,} calls", influx * 1000, "ms",
                    "the whole feed", whole[1] * 1000)
        section.add(f"{name}: the reader's CPU (transfer and decoding)", cpu * 1000, "ms", "the whole feed",
                    whole[2] * 1000)
        section.note(f"{name}: {rows:,} rows read whole, {wall * 1000:.0f} ms wall, influxd {influx * 1000:.0f} ms, "
                     f"reader {cpu * 1000:.0f} ms (the whole feed: {whole[3]:,} rows, {whole[0] * 1000:.0f} ms wall, "
                     f"influxd {whole[1] * 1000:.0f} ms, reader {whole[2] * 1000:.0f} ms).")
    section.note(f"{CALLS:,} calls of the shipped client's shape (bench.scaling's \"real\" call: two peers, audio, "
                 f"video and connection samples, posting every {FLEET_SEND_S} s), their feed rows of the last "
                 f"{(1000 + FEED_OVERLAP_MS) // 1000} s written to three databases: the feed as it is, the partition "
                 "(CRC-32 of the call id modulo 4) as a tag, and as an integer field. A read is a tick's: the keys of "
                 "the overlap, then the last second's rows whole; medians of "
                 f"{ROUNDS}, the four reads alternating. The reader's CPU is the query's transfer and orjson's "
                 "decoding in the bench process; the detector's folding of the rows (per row) comes on top of it "
                 "in the same proportion.")
