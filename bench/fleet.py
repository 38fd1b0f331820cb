"""The shipped client at fleet scale (SPEC §13): N emulated peers replaying the
real Chromium fixture at one report per second, over the websocket (deltas,
two reports per frame: rtcscope.js's defaults) and over the POST path as the
client sent before it (two full reports per request), in the same run.

Server CPU comes from /proc over the measured window only (after every peer
is connected and a warm-up); a peer-second is one peer sending for one
second, i.e. one report. Each run starts once the shared influxd is idle
(it may still be compacting what an earlier benchmark wrote). The load generator (bench/fleetload.py) is its own
process, so its CPU is not the server's. The per-connection state is
measured with tracemalloc on the real fixture.

The server is measured in both of its roles: ingest-only (--detector=false,
what a fleet runs on most of its ingest processes: the targets are read
there, against POST on the same role) and at its defaults, the detector
ticking every second beside the ingest (the detector's share is the
difference). Beside them, in the same run: the ingest-only server on uvloop,
and two floors from bench/wsfloor.py taking the same frames (a bare asyncio
Protocol, a bare tornado WebSocketHandler); and the ingest domain work of a
frame in process (bench/domain.py's frames). Bare asyncio plus the domain
work is what no change to the socket layer can go below.
"""
import json
import statistics
import subprocess
import sys
import time
import tracemalloc

from tests.support.reports import clean_reports

from . import harness
from .fleetload import delta
from .harness import BenchError, cpu_meter

SIZES = {"quick": {"ws": 2000, "post": 200, "warmup": 4, "seconds": 10},
         "full": {"ws": 10_000, "post": 500, "warmup": 8, "seconds": 20}}
SERVER_OPTIONS = {"max_new_calls": 10_000_000, "max_live_calls": 10_000_000}


INGEST_ONLY = {"detector": "false"}
# The load runs: (name, how the server is started). POST and the websocket against the ingest-only
# server and the server at its defaults, the ingest-only one on uvloop, and the floors.
RUNS = (("post_ingest", INGEST_ONLY), ("post", {}), ("ws_ingest", INGEST_ONLY), ("ws", {}),
        ("ws_uvloop", {**INGEST_ONLY, "event_loop": "uvloop"}), ("floor_tornado", "tornado"),
        ("floor_asyncio", "asyncio"))
DOMAIN_ROUNDS = 9


def start_subject(ctx, name, how, root=harness.ROOT):
    """A fresh server with options `how` (a dict), the one of the tree `root`, or the bench.wsfloor
    server `how` names."""
    if isinstance(how, str):
        port = harness.free_port()
        return harness.HTTPProc(name, [sys.executable, "-m", "bench.wsfloor", how, str(port)], ctx.log_dir, port)
    return harness.start_server(ctx.influxd, ctx.database(f"fleet_{name}"), ctx.log_dir, name=f"server-fleet-{name}",
                                root=root, **SERVER_OPTIONS, **how)


def run_load(ctx, name, how, peers, sizes, root=harness.ROOT):
    """One load run against a fresh server: (server CPU µs per peer-second, the generator's summary)."""
    mode = "post" if name.startswith("post") else "ws"
    harness.wait_quiet(ctx.influxd.process.pid)
    server = start_subject(ctx, name, how, root)
    try:
        argv = [sys.executable, "-m", "bench.fleetload", mode, server.url, str(peers),
                str(sizes["warmup"]), str(sizes["seconds"])]
        load = subprocess.Popen(argv, cwd=harness.ROOT, stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + peers / 50 + sizes["warmup"] + sizes["seconds"] + 120
            line = load.stdout.readline()
            if line.strip() != "measuring":
                raise BenchError(f"fleet load ({name}) did not start: {line!r}")
            with cpu_meter({"server": server, "load": load.pid}) as cpu:
                summary_line = load.stdout.readline()
            load.wait(max(1, deadline - time.monotonic()))
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        server.check_alive()
        summary = json.loads(summary_line)
        if summary["errors"] or summary["lost"] or not summary["answered"]:
            raise BenchError(f"fleet load ({name}) had errors: {summary}")
        summary["server_cpu"], summary["load_cpu"] = cpu["server"], cpu["load"]
        peer_seconds = summary["peers"] * summary["seconds"]
        return cpu["server"] / peer_seconds * 1e6, summary
    finally:
        server.stop()


def state_bytes_per_connection(connections=200):
    """Memory a websocket ingest connection holds after a full report and deltas (tracemalloc)."""
    from rtcscope.ingest.connection import StatsConnection
    from rtcscope.ingest.formats import Limits

    reports = clean_reports()["caller"]
    frames = [json.dumps([{"ts": 1000, "report": reports[0]}]).encode()]
    frames += [b'[{"ts":%d,%s}]' % (1000 + i, delta(reports[i - 1], reports[i])) for i in range(1, len(reports))]
    now_ns = 1000 * 1_000_000
    limits = Limits(max_skew_ns=10**18)
    held = []
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for index in range(connections):
        connection = StatsConnection(f"call-{index}", "peer", limits)
        for frame in frames:
            connection.commit(connection.receive(frame, now_ns))
        held.append(connection)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / connections, held[0].stat_count


def domain_us_per_peer_second():
    """The ingest domain work in process (bench/domain.py's frames of two deltas through
    StatsConnection: parse, rebuild, extraction, encoding, the feed's row), CPU µs per
    peer-second: the median of DOMAIN_ROUNDS rounds, half a frame each."""
    from .domain import Subject

    subject = Subject("rtcscope")
    return statistics.median(subject.timed(4)[0] for _ in range(DOMAIN_ROUNDS)) / 2


def fleet(ctx, section):
    sizes = SIZES[ctx.mode.name]
    runs = {name: run_load(ctx, name, how, sizes["post" if name.startswith("post") else "ws"], sizes)
            for name, how in RUNS}
    (ws_cpu, ws), (post_cpu, post) = runs["ws_ingest"], runs["post_ingest"]
    ratio = post_cpu / ws_cpu
    section.add("websocket (deltas, 2 reports per frame), ingest-only process: server CPU per peer-second", ws_cpu,
                "µs", "POST, 2 full reports per request, same role", post_cpu, target="≥ 5× cheaper than POST",
                met=ratio >= 5, ratio_override=ws_cpu / post_cpu)
    per_core = 1e6 / ws_cpu
    section.add("websocket: peers one ingest core carries at one report per second", per_core, "peers",
                "POST", 1e6 / post_cpu, target="≥ 10,000", met=per_core >= 10_000)
    section.add(f"websocket: p99 ack latency at {ws['peers']:,} peers, ingest-only", ws["p99_ms"], "ms",
                f"POST p99 at {post['peers']:,} peers", post["p99_ms"], target="≤ 50 ms", met=ws["p99_ms"] <= 50)
    section.add("websocket: p50 ack latency, ingest-only", ws["p50_ms"], "ms", "POST p50", post["p50_ms"])
    floor = runs["floor_asyncio"][1]
    section.add("websocket: p99 ack latency, ingest-only", ws["p99_ms"], "ms", "bare asyncio floor p99, same load "
                "(what the machine and the load generator add)", floor["p99_ms"])
    (all_cpu, all_run), all_post = runs["ws"], runs["post"][0]
    section.add("websocket, the detector ticking every second beside the ingest (the defaults): CPU per peer-second",
                all_cpu, "µs", "POST at the defaults", all_post, ratio_override=all_cpu / all_post)
    section.add("websocket at the defaults: p99 ack latency", all_run["p99_ms"], "ms", "ingest-only", ws["p99_ms"])
    section.add("websocket, ingest-only, on uvloop: server CPU per peer-second", runs["ws_uvloop"][0], "µs",
                "on asyncio", ws_cpu)
    floor_cpu, tornado_cpu = runs["floor_asyncio"][0], runs["floor_tornado"][0]
    section.add("floor: bare tornado WebSocketHandler (parse, write_message ack), CPU per peer-second", tornado_cpu,
                "µs", "ours, ingest-only", ws_cpu)
    section.add("floor: bare asyncio Protocol (frame, unmask, parse, ack), CPU per peer-second", floor_cpu, "µs",
                "ours, ingest-only", ws_cpu)
    domain = domain_us_per_peer_second()
    section.add("floor: the ingest domain work in process (parse, rebuild, extraction, encoding), CPU per "
                "peer-second", domain, "µs", "ours, ingest-only", ws_cpu)
    floors = floor_cpu + domain
    section.add("ceiling: peers per core at bare asyncio plus the domain work", 1e6 / floors, "peers",
                "ours, ingest-only", per_core, target="≥ 10,000", met=1e6 / floors >= 10_000)
    section.note(f"Of the ingest-only websocket's {ws_cpu:.0f} µs per peer-second, {floor_cpu:.0f} µs is what a bare "
                 f"asyncio server spends on the same frames ({tornado_cpu:.0f} µs a bare tornado WebSocketHandler) and "
                 f"{domain:.0f} µs the domain work measured in process: {floors:.0f} µs, "
                 f"{1e6 / floors:,.0f} peers per core, before storing, answering and the writer "
                 f"({max(0.0, ws_cpu - floors):.0f} µs here). The detector beside the ingest adds "
                 f"{all_cpu - ws_cpu:.0f} µs at {all_run['peers']:,} live calls. The POST path's {post_cpu:.0f} µs / 5 "
                 f"= {post_cpu / 5:.0f} µs is the 5× target.")
    state, stats = state_bytes_per_connection()
    section.add(f"websocket: state held per connection ({stats} stat ids of the fixture)", state / 1024, "KiB")
    for name, (_, run) in runs.items():
        section.note(f"{name}: {run['peers']:,} peers for {run['seconds']:.0f} s, {run['sent']:,} frames sent, "
                     f"{run['answered']:,} answered, {run['refused']} refused (busy/503), {run['skipped']} sends "
                     f"skipped (previous unanswered), server {run['server_cpu']:.1f} CPU s, load generator "
                     f"{run['load_cpu']:.1f} CPU s, latency p50/p99/max {run['p50_ms']:.1f}/{run['p99_ms']:.0f}/"
                     f"{run['max_ms']:.0f} ms.")
