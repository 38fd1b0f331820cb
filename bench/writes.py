"""How the batching writer should talk to InfluxDB: batch size, concurrent
writes and gzip, measured as InfluxDB's write rate and CPU per point for the
same points, against the server's settings (20,000 points, one write at a
time, no compression) in the same run."""
import asyncio
import gzip
import statistics
import time

import aiohttp

from . import harness, ingest
from .harness import BenchError
from .report import median_ratio, spread

BASELINE = (20000, 1, False)
VARIANTS = [(100, 1, False), (1000, 1, False), (5000, 1, False), (20000, 2, False), (20000, 1, True)]


def _points(count, base_ns, salt):
    """`count` rtc_stats points over 100 calls, audio and video, a microsecond apart."""
    lines = []
    for index in range(count):
        call, kind = f"w{salt}-{index % 100}", ("audio", "video")[index // 100 % 2]
        lines.append(f"rtc_stats,call={call},kind={kind},peer=p rtt={30 + index % 17}.0,jitter=1.5,packetsLost="
                     f"{index % 5}.0,packetsSent={1000 + index}.0,bytesSent={(1000 + index) * 1100}.0 "
                     f"{base_ns + index * 1000}".encode())
    return lines


async def _write_all(url, batches, concurrency, compressed):
    async with aiohttp.ClientSession() as session:
        pending = iter(batches)

        async def worker():
            for body in pending:
                headers = {"Content-Encoding": "gzip"} if compressed else {}
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 204:
                        raise BenchError(f"InfluxDB answered {response.status}: {(await response.text())[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _measure(ctx, batch, concurrency, compressed, salt):
    """(points/s, influxd CPU µs per point, client gzip CPU µs per point)."""
    database = ctx.database("writes")
    harness.create_database(ctx.influxd, database)
    count = ctx.mode.write_points
    lines = _points(count, time.time_ns() // 1000 * 1000, salt)
    batches = [b"\n".join(lines[start:start + batch]) for start in range(0, count, batch)]
    gzip_cpu = 0.0
    if compressed:
        started = time.process_time()
        batches = [gzip.compress(body, compresslevel=1) for body in batches]
        gzip_cpu = time.process_time() - started
    url = harness.influx_write_url(ctx.influxd, database)
    influx_before, started = harness.cpu_seconds(ctx.influxd.process.pid), time.monotonic()
    asyncio.run(asyncio.wait_for(_write_all(url, batches, concurrency, compressed), 120))
    elapsed = time.monotonic() - started
    influx_cpu = harness.cpu_seconds(ctx.influxd.process.pid) - influx_before
    counted = harness.count_samples(ctx.influxd, database)
    if counted != count:
        raise BenchError(f"{counted} of {count} points in InfluxDB")
    return count / elapsed, influx_cpu / count * 1e6, gzip_cpu / count * 1e6


def _label(batch, concurrency, compressed):
    return (f"{batch:,} points per write" + (f", {concurrency} at a time" if concurrency > 1 else "") +
            (", gzip level 1" if compressed else ""))


def write_batching(ctx, section):
    results = {variant: [] for variant in [BASELINE, *VARIANTS]}
    salt = 0
    for _ in range(ctx.mode.write_rounds):
        for variant in VARIANTS:  # each variant right after its own baseline measurement
            for measured in (BASELINE, variant):
                salt += 1
                results[measured].append(_measure(ctx, *measured, salt))
    base_rate = statistics.median(r[0] for r in results[BASELINE])
    base_cpu = statistics.median(r[1] for r in results[BASELINE])
    section.add(f"InfluxDB write rate, {_label(*BASELINE)} (the server's)", base_rate, "points/s")
    section.add("influxd CPU per point at that setting", base_cpu, "µs")
    for variant in VARIANTS:
        rates = [r[0] for r in results[variant]]
        section.add(f"write rate, {_label(*variant)}", statistics.median(rates), "points/s",
                    "the server's setting", base_rate)
        section.add(f"influxd CPU per point, {_label(*variant)}", statistics.median(r[1] for r in results[variant]),
                    "µs", "the server's setting", base_cpu)
    gzip_cost = statistics.median(r[2] for r in results[(20000, 1, True)])
    section.note(f"gzip level 1 costs the writer {gzip_cost:.2f} µs of CPU per point (in its event loop).")
    section.note(f"{ctx.mode.write_points:,} points of 5 fields over 100 series per measurement, written from the bench "
                 "process with aiohttp to a fresh database each time; every point counted in InfluxDB afterwards. "
                 f"{ctx.mode.write_rounds} round(s), each variant measured right after the baseline; medians.")
    _sustained(ctx, section)


def _sustained(ctx, section):
    """The server itself under sustained batched load, default batch size
    against 5,000 points (the previous default), alternating."""
    rates, refused = {5000: [], None: []}, {5000: [], None: []}
    seconds = 2 * ctx.mode.seconds
    for index in range(ctx.mode.write_rounds):
        for batch_size in ((5000, None) if index % 2 == 0 else (None, 5000)):
            database = ctx.database("sustained")
            options = {"batch_size": batch_size} if batch_size else {}
            server = harness.start_server(ctx.influxd, database, ctx.log_dir, name="server-sustained", **options)
            try:
                rate, _, share = ingest.batched_load(ctx, server.url, [server], database,
                                                     {"server": server}, seconds=seconds)
            finally:
                server.stop()
            rates[batch_size].append(rate)
            refused[batch_size].append(share)
    pairs = list(zip(rates[None], rates[5000]))
    section.add(f"server, sustained batched ingest ({seconds} s runs), default batch size", statistics.median(rates[None]),
                "samples/s", "--batch-size=5000", statistics.median(rates[5000]), ratio_override=median_ratio(pairs))
    section.note(f"Sustained runs: ratio spread {spread(pairs)}; 503 answers (buffer full) with the default "
                 f"{', '.join(f'{x:.1%}' for x in refused[None])}, with 5,000 {', '.join(f'{x:.1%}' for x in refused[5000])}. "
                 "A busy event loop delays each write's completion and the start of the next by whole loop "
                 "iterations; bigger batches pay that delay less often.")
