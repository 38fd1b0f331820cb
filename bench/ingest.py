"""Ingest benchmarks: one sample per request against a bare Tornado handler,
batched bodies against InfluxDB's own write rate, and the 2015 prototype.

Each comparison alternates subject and baseline within one run (A B, B A,
...) and reports the median of the per-round ratios, so that load from
other processes on the machine hits both sides alike.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from . import harness
from .harness import BenchError, cpu_meter, wrk
from .report import median_ratio, spread

WRITE_PATH = "/v1/stats/write/"
SINGLE_BODY = (b'{"call":"c-42","peer":"alice","kind":"video","stats":{"rtt":41.0,"jitter":3.1,'
               b'"packetsLost":2,"packetsSent":1320,"bytesSent":184211,"framesPerSecond":30,'
               b'"frameWidth":1280,"frameHeight":720}}')
# The 2015 client's body: line protocol sent as jQuery form data (no `undefined`
# values: the prototype answered 500 to those).
PROTOTYPE_BODY = (b"rtc_stats,id=8d3f0c4e-77aa-4f1e-9a51-0c3b2f1a9e10 availableBandwidth=12.3,"
                  b"packetsLost=0,rtt=41,packetsSent=1320,bytesSent=184211 1448000000000000000")
FORM_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
BATCH_SAMPLES = 100
BATCH_CALLS = 10
PROTOTYPE_VENV = os.path.join(harness.BENCH, ".venv-flask")
PROTOTYPE_REQUIREMENTS = os.path.join(harness.BENCH, "prototype", "requirements.txt")


def _alternating(rounds, subject, baseline):
    """Round i runs (subject, baseline) or (baseline, subject): drift cancels out."""
    for index in range(rounds):
        yield from ((subject, baseline) if index % 2 else (baseline, subject))


def _checked(summary, what):
    if summary["error_count"]:
        raise BenchError(f"{what}: {summary['error_count']} errors {summary['errors']} in {summary['requests']} requests")
    return summary


def _body_file(ctx, name, body):
    path = os.path.join(ctx.work_dir, name)
    with open(path, "wb") as out:
        out.write(body)
    return path


def compare_keepalive(ctx, subject, baseline, body_path, content_type, rounds=None):
    """wrk with one static body against two servers, alternating (`rounds`, default the mode's);
    per-side lists of summaries."""
    runs = {subject[0]: [], baseline[0]: []}
    for name, proc in _alternating(rounds or ctx.mode.rounds, subject, baseline):
        proc.check_alive()
        with cpu_meter({"p": proc}) as cpu:
            summary = wrk(proc.url + WRITE_PATH, ["file", body_path, content_type], seconds=ctx.mode.seconds)
        summary["cpu"] = cpu["p"]
        runs[name].append(_checked(summary, name))
    return runs[subject[0]], runs[baseline[0]]


def _median(runs, key):
    return statistics.median(key(run) for run in runs)


def single(ctx, section):
    body_path = _body_file(ctx, "single.json", SINGLE_BODY)
    server = harness.start_server(ctx.influxd, ctx.database("single"), ctx.log_dir)
    bare = harness.start_bare(ctx.log_dir)
    try:
        ours, bares = compare_keepalive(ctx, ("server", server), ("bare", bare), body_path, "application/json")
    finally:
        server.stop()
        bare.stop()
    pairs = [(o["rps"], b["rps"]) for o, b in zip(ours, bares)]
    section.add("POST /v1/stats/write/ requests/s", _median(ours, lambda r: r["rps"]), "req/s",
                "bare Tornado parse-and-answer", _median(bares, lambda r: r["rps"]),
                target="ratio ≥ 0.8", met=median_ratio(pairs) >= 0.8, ratio_override=median_ratio(pairs))
    for label, key in (("p50", "p50"), ("p99", "p99")):
        section.add(f"latency {label}", _median(ours, lambda r: r["latency_us"][key] / 1000), "ms",
                    "bare", _median(bares, lambda r: r["latency_us"][key] / 1000))
    section.add("server CPU per request", _median(ours, lambda r: r["cpu"] / r["requests"] * 1e6), "µs",
                "bare", _median(bares, lambda r: r["cpu"] / r["requests"] * 1e6))
    section.note(f"{ctx.mode.rounds} rounds of {ctx.mode.seconds} s each side, alternating; "
                 f"ratio = median of per-round ratios (spread {spread(pairs)}). Body: one video sample, "
                 f"8 fields, {len(SINGLE_BODY)} bytes, wrk with 1 thread.")


def batched(ctx, section):
    ours, direct, backpressure = [], [], []
    server_cpu, influx_cpu = [], []
    for side, _ in _alternating(ctx.mode.rounds, ("server", None), ("influxdb", None)):
        database = ctx.database(f"batch_{side}")
        if side == "server":
            rate, cpu, refused = _batched_through_server(ctx, database)
            ours.append(rate)
            server_cpu.append(cpu)
            backpressure.append(refused)
        else:
            rate, cpu = _batched_direct(ctx, database)
            direct.append(rate)
            influx_cpu.append(cpu)
    pairs = list(zip(ours, direct))
    ratio = median_ratio(pairs)
    value = statistics.median(ours)
    section.add("samples/s into InfluxDB through one server process", value, "samples/s",
                f"InfluxDB /write direct, {BATCH_SAMPLES} points/write", statistics.median(direct),
                target="≥ 0.5 of direct", met=ratio >= 0.5, ratio_override=ratio)
    section.add("samples/s per server process, end to end on this machine", value, "samples/s",
                target="≥ 50,000", met=value >= 50_000)
    section.add("samples per CPU-second of the server process", statistics.median(
                    rate / cpu["server"] for rate, cpu in zip(ours, server_cpu)), "samples/s",
                "points per CPU-second of influxd, direct", statistics.median(
                    rate / cpu["influxd"] for rate, cpu in zip(direct, influx_cpu)))
    section.add("samples per CPU-second of the whole path (server + influxd + wrk)", statistics.median(
                    rate / sum(cpu.values()) for rate, cpu in zip(ours, server_cpu)), "samples/s",
                "direct (influxd + wrk)", statistics.median(
                    rate / sum(cpu.values()) for rate, cpu in zip(direct, influx_cpu)))
    cores = {name: statistics.median(run[name] for run in server_cpu) for name in server_cpu[0]}
    direct_cores = {name: statistics.median(run[name] for run in influx_cpu) for name in influx_cpu[0]}
    section.note(f"Requests answered 503 (buffer full: retry later) per round: "
                 f"{', '.join(f'{share:.1%}' for share in backpressure)}; their samples were not acknowledged "
                 "and are not counted.")
    section.note("CPU cores busy through the server: " + _cores(cores) +
                 "; direct: " + _cores(direct_cores) + f" (of {os.cpu_count()}).")
    section.note(f"{ctx.mode.rounds} rounds of {ctx.mode.seconds} s each side, alternating (spread {spread(pairs)}). "
                 f"JSON bodies of {BATCH_SAMPLES} samples over {BATCH_CALLS} calls (audio 6 fields, video 8), "
                 "a fresh body with new timestamps per request from wrk's Lua; the same points as line protocol "
                 "for the direct side. Samples counted in InfluxDB after the run; the server's time runs until "
                 "its buffer is empty. Per CPU-second: what one process (or the whole path) would take with the cores "
                 "to itself, which a shared machine cannot give it.")


def _cores(cpu):
    return ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())


def batched_load(ctx, url, servers, database, meters, seconds=None):
    """wrk posting fresh 100-sample bodies to `url` (servers behind it share
    `database`) until their buffers are empty; every acknowledged sample must
    be in InfluxDB. (samples/s, {name: cores busy}, share of answers that were 503)."""
    started = time.monotonic()
    with cpu_meter(meters) as cpu:
        summary = wrk(url + WRITE_PATH, ["batch", "json", BATCH_SAMPLES, BATCH_CALLS, int(time.time() * 1e6)],
                      seconds=seconds or ctx.mode.seconds, backpressure_ok=True)
        for server in servers:
            harness.wait_until(lambda: buffer_empty(server), 60, "the buffers to drain")
    elapsed = time.monotonic() - started
    _checked(summary, "batched ingest")
    counted = harness.count_samples(ctx.influxd, database)
    acknowledged = (summary["requests"] - summary["backpressure"]) * BATCH_SAMPLES
    if counted < acknowledged:
        raise BenchError(f"only {counted} of {acknowledged} acknowledged samples reached InfluxDB")
    cpu["wrk"] = summary["wrk_cpu"]
    return (counted / elapsed, {name: used / elapsed for name, used in cpu.items()},
            summary["backpressure"] / max(1, summary["requests"]))


def _batched_through_server(ctx, database):
    server = harness.start_server(ctx.influxd, database, ctx.log_dir, name="server-batch")
    try:
        return batched_load(ctx, server.url, [server], database, {"server": server, "influxd": ctx.influxd.process})
    finally:
        server.stop()


def buffer_empty(server):
    """The server has written every acknowledged point (its /readyz says so)."""
    status, body = harness.http("GET", server.url + "/readyz")
    return json.loads(body).get("buffer") == 0


def _batched_direct(ctx, database):
    harness.create_database(ctx.influxd, database)
    base_us = int(time.time() * 1e6)
    started = time.monotonic()
    with cpu_meter({"influxd": ctx.influxd.process}) as cpu:
        summary = wrk(harness.influx_write_url(ctx.influxd, database),
                      ["batch", "line", BATCH_SAMPLES, BATCH_CALLS, base_us], seconds=ctx.mode.seconds)
    elapsed = time.monotonic() - started
    _checked(summary, "InfluxDB direct")
    counted = harness.count_samples(ctx.influxd, database)
    cpu["wrk"] = summary["wrk_cpu"]
    return counted / elapsed, {name: used / elapsed for name, used in cpu.items()}


def prototype_python():
    """The prototype's virtualenv interpreter, created on first use; raises BenchError if it cannot be."""
    python = os.path.join(PROTOTYPE_VENV, "bin", "python")
    marker = os.path.join(PROTOTYPE_VENV, ".installed")
    if os.path.exists(marker):
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", PROTOTYPE_VENV], check=True, capture_output=True, timeout=120)
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", PROTOTYPE_REQUIREMENTS],
                       check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"could not install Flask + influxdb from PyPI: {(exc.stderr or '')[-300:]}") from None
    except subprocess.TimeoutExpired:
        raise BenchError("installing Flask + influxdb from PyPI took over 5 minutes") from None
    open(marker, "w").close()
    return python


def prototype(ctx, section):
    python = prototype_python()
    body_path = _body_file(ctx, "prototype.lp", PROTOTYPE_BODY)
    prototype_db = ctx.database("prototype")
    harness.create_database(ctx.influxd, prototype_db)
    port = harness.free_port()
    flask = harness.HTTPProc(
        "prototype", [python, os.path.join(harness.BENCH, "prototype", "app.py"), str(port),
                      str(ctx.influxd.http_port), prototype_db], ctx.log_dir, port)
    server = harness.start_server(ctx.influxd, ctx.database("vs_prototype"), ctx.log_dir)
    try:
        ours, olds = compare_keepalive(ctx, ("server", server), ("prototype", flask), body_path, FORM_TYPE)
    finally:
        server.stop()
        flask.stop()
    pairs = [(o["rps"], b["rps"]) for o, b in zip(ours, olds)]
    ratio = median_ratio(pairs)
    section.add("rtcscope requests/s, 2015 line-protocol body", _median(ours, lambda r: r["rps"]), "req/s",
                "Flask prototype", _median(olds, lambda r: r["rps"]),
                target="≥ 10×", met=ratio >= 10, ratio_override=ratio)
    section.add("latency p99", _median(ours, lambda r: r["latency_us"]["p99"] / 1000), "ms",
                "Flask prototype", _median(olds, lambda r: r["latency_us"]["p99"] / 1000))
    section.note(f"Flask {_version(python, 'flask')} + influxdb-python {_version(python, 'influxdb')} on "
                 f"Python {sys.version_info.major}.{sys.version_info.minor} (the 2015 releases need Python 2), "
                 "Werkzeug's threaded server as the prototype ran it, debug off; one InfluxDB write per request. "
                 f"Spread of ratios {spread(pairs)}.")


def _version(python, package):
    completed = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                               capture_output=True, text=True, timeout=30)
    return completed.stdout.strip() or "?"
