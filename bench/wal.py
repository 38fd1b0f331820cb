"""The write-ahead log's cost per ingest request: the same server with the
log (--wal-fsync=1s, the default, and always) against memory only
(--wal-dir= empty), all three measured in one run, rounds rotating their
order so that load from elsewhere on the machine hits each alike."""
import os
import statistics
import time

from . import harness
from .harness import BenchError, cpu_meter, wrk
from .ingest import BATCH_CALLS, BATCH_SAMPLES, SINGLE_BODY, WRITE_PATH, _body_file, _checked, buffer_empty
from .report import median_ratio, spread

VARIANTS = (("memory", {"wal_dir": ""}), ("wal-1s", {"wal_fsync": "1s"}), ("wal-always", {"wal_fsync": "always"}))


def _run(ctx, proc, body):
    """One wrk run, then until the server has written everything to InfluxDB (so
    that no run drains into the next one's time); (CPU µs per request of the
    server, ingest and writes both, requests/s, p50 ms, p99 ms)."""
    proc.check_alive()
    with cpu_meter({"p": proc}) as cpu:
        summary = wrk(proc.url + WRITE_PATH, body, seconds=ctx.mode.seconds)
        harness.wait_until(lambda: buffer_empty(proc), 60, f"{proc.name} to write what it took")
    _checked(summary, proc.name)
    if summary["requests"] == 0:
        raise BenchError(f"{proc.name}: no request answered")
    return (cpu["p"] / summary["requests"] * 1e6, summary["rps"],
            summary["latency_us"]["p50"] / 1000, summary["latency_us"]["p99"] / 1000)


def wal_cost(ctx, section):
    single = ["file", _body_file(ctx, "wal-single.json", SINGLE_BODY), "application/json"]
    bodies = (("one sample per request", lambda: single),
              (f"{BATCH_SAMPLES} samples per request",
               lambda: ["batch", "json", BATCH_SAMPLES, BATCH_CALLS, int(time.time() * 1e6)]))
    servers = {name: harness.start_server(ctx.influxd, ctx.database(name.replace("-", "_")), ctx.log_dir,
                                          name=f"server-{name}", **options)
               for name, options in VARIANTS}
    try:
        for label, body in bodies:
            runs = {name: [] for name in servers}
            names = list(servers)
            for round_index in range(ctx.mode.rounds):
                order = names[round_index % len(names):] + names[:round_index % len(names)]
                results = {name: _run(ctx, servers[name], body()) for name in order}
                for name, result in results.items():
                    runs[name].append(result)
            base = runs["memory"]
            for name in ("wal-1s", "wal-always"):
                cpu_pairs = [(run[0], b[0]) for run, b in zip(runs[name], base)]
                ratio = median_ratio(cpu_pairs)
                default = name == "wal-1s"
                section.add(f"{label}: server CPU per request, --wal-fsync={name[4:]}",
                            statistics.median(r[0] for r in runs[name]), "µs",
                            "memory only (no log)", statistics.median(r[0] for r in base),
                            target="≤ 1.10× memory only" if default else "", met=ratio <= 1.10 if default else None,
                            ratio_override=ratio)
                section.add(f"{label}: requests/s, --wal-fsync={name[4:]}", statistics.median(r[1] for r in runs[name]),
                            "req/s", "memory only", statistics.median(r[1] for r in base),
                            ratio_override=median_ratio([(run[1], b[1]) for run, b in zip(runs[name], base)]))
                section.add(f"{label}: latency p99, --wal-fsync={name[4:]}", statistics.median(r[3] for r in runs[name]),
                            "ms", "memory only", statistics.median(r[3] for r in base))
            section.note(f"{label}: CPU ratio per round {spread(cpu_pairs)} (always vs memory), "
                         f"p50 latency memory {statistics.median(r[2] for r in base):.2f} ms, "
                         f"1s {statistics.median(r[2] for r in runs['wal-1s']):.2f} ms, "
                         f"always {statistics.median(r[2] for r in runs['wal-always']):.2f} ms.")
    finally:
        for server in servers.values():
            server.stop()
    section.note(f"{ctx.mode.rounds} rounds of {ctx.mode.seconds} s per variant, the order rotating each round; "
                 "wrk, 50 keep-alive connections, 1 thread; CPU from /proc (utime + stime of the server process, "
                 "from the start of the run until it has written every point to InfluxDB) over the requests wrk "
                 "counted. The three servers write to one influxd; the log lives in the bench's "
                 f"scratch directory ({os.path.dirname(ctx.log_dir)}, the machine's disk): with `always` every "
                 "answer waits for an fdatasync shared by the requests that arrived meanwhile.")
