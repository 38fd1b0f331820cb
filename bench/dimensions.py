"""What extracting the peers' dimensions costs an ingest request: whole requests
through the real server with the dimensions and without, in the same run;
then the domain work alone with and without, and each step alone.

Whole requests: the application as server.py builds and serves it
(`server.make_app`, `server.http_server`, ingest-only, --xheaders), twice in
this process on loopback: as shipped, and with its dimension step a no-op
(`NoDimensions` as the application's `dimensions`, through which every ingest
path reads them). A client in another process (wrk; bench/fleetload.py in a
closed loop) loads one and then the other, the order alternating each round.
Per request: this process's CPU from /proc (headers, body, admission, parse,
dimensions, WAL append, feed rows, answer, and the writer's flushes until its
buffer is empty) over the requests answered, and wall (the load's seconds
over its answers: the client keeps the server busy). Ratios are the medians
of the per-round ratios.

    python -m bench --only dimensions      # in the report
    python -m bench.dimensions             # this section alone (its own influxd)
"""
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import server
from rtcscope.dimensions.extract import Extractor
from rtcscope.dimensions.geoip import GeoIP
from rtcscope.dimensions.report import report_dimensions
from rtcscope.dimensions.useragent import UserAgents
from rtcscope.ingest.connection import StatsConnection
from rtcscope.ingest.formats import Limits, parse
from rtcscope.storage.feed import Feed
from tests.support.influxd import free_port
from tests.support.reports import chromium_reports

from . import harness
from .fleetload import TAGS, USER_AGENT, clean_reports, delta
from .harness import BenchError
from .ingest import BATCH_CALLS, BATCH_SAMPLES, SINGLE_BODY, WRITE_PATH
from .jsonlibs import _batch_body, compare
from .report import median_ratio, spread

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DB = os.path.join(ROOT, "tests", "data", "geoip-test.mmdb")
ADDRESS = "91.64.1.1"
TARGET = 1.05
# Rounds (each: both servers, the order alternating) and seconds of load per run.
SIZES = {"quick": {"rounds": 4, "seconds": 3, "peers": 50, "warmup": 1},
         "full": {"rounds": 6, "seconds": 6, "peers": 50, "warmup": 2}}
SERVED = {"detector": False, "xheaders": True, "max_new_calls": 10_000_000, "max_live_calls": 10_000_000}
BROWSER = (f"User-Agent: {USER_AGENT}", f"X-Real-Ip: {ADDRESS}")


class NoDimensions:
    """The dimension step as a no-op: every source tells nothing, so no request has any."""

    peer_tags = ()

    @staticmethod
    def client(user_agent, address):
        return {}

    @staticmethod
    def tags(tags, where):
        return {}

    @staticmethod
    def query_tags(arguments, where="query"):
        return {}

    @staticmethod
    def report(report):
        return {}

    @staticmethod
    def connections(reports):
        return {}


def dimensions(ctx, section, sizes=None):
    whole_requests(ctx, section, sizes or SIZES[ctx.mode.name])
    ingest_paths(section)
    steps(section)


# --- whole requests ------------------------------------------------------------------------------

def whole_requests(ctx, section, sizes):
    single = os.path.join(ctx.work_dir, "dimensions-single.json")
    with open(single, "wb") as out:
        out.write(json.dumps({"call": "c-42", "peer": "alice", "kind": "video", "tags": TAGS,
                              "stats": json.loads(SINGLE_BODY)["stats"]}).encode())
    paths = [
        ("POST, one JSON sample with tags", "wrk", ["file", single, "application/json"]),
        ("POST, rtcscope.js's request (two raw getStats() reports, tags)", "post", None),
        (f"POST, {BATCH_SAMPLES} JSON samples of {BATCH_CALLS} calls", "wrk",
         lambda: ["batch", "json", BATCH_SAMPLES, BATCH_CALLS, int(time.time() * 1e6)]),
        ("websocket, a frame of two deltas (tags on the URL)", "ws", None),
        ("rtcstats, a getstats entry", "rtcstats", None),
    ]
    thresholds = gc.get_threshold()
    gc.set_threshold(*server.GC_THRESHOLDS)  # as the server process runs
    try:
        results = asyncio.run(_measure_paths(ctx, paths, sizes))
    finally:
        gc.set_threshold(*thresholds)
    for (label, _, _), runs in zip(paths, results):
        cpu = [(ours[0], theirs[0]) for ours, theirs in runs]
        wall = [(ours[1], theirs[1]) for ours, theirs in runs]
        ratio = median_ratio(cpu)
        section.add(f"{label}: CPU per request, with dimensions", statistics.median(c[0] for c in cpu), "µs",
                    "without (the step a no-op)", statistics.median(c[1] for c in cpu), target=f"≤ {TARGET}× without",
                    met=ratio <= TARGET, ratio_override=ratio)
        section.add(f"{label}: wall per request, with dimensions", statistics.median(w[0] for w in wall), "µs",
                    "without", statistics.median(w[1] for w in wall), ratio_override=median_ratio(wall))
        section.note(f"{label}: CPU ratio per round {spread(cpu)}, wall {spread(wall)}.")
    section.note(f"Whole requests: {sizes['rounds']} rounds of {sizes['seconds']} s per server and path, the "
                 "order alternating; both servers in this process (ingest-only, --xheaders, the WAL in the bench's "
                 "scratch directory, each writing its own database of the bench's influxd). wrk: 50 keep-alive "
                 "connections, a browser's User-Agent and X-Real-Ip on every request; bench/fleetload.py: "
                 f"{sizes['peers']} peers in a closed loop (each sends its next request or frame as soon as the "
                 "previous one is answered), the real Chromium capture as rtcscope.js and rtcstats send it, "
                 "every peer with its own address.")


async def _measure_paths(ctx, paths, sizes):
    """For each path, [((CPU µs, wall µs) with, (CPU µs, wall µs) without)] per round."""
    servers = {}
    try:
        for name in ("with", "without"):
            servers[name] = await _serve(ctx, name)
        results = []
        for _, client, args in paths:
            for name in servers:  # the first requests of a path are not its steady state
                await _run(servers[name], client, args, {**sizes, "seconds": 1})
            runs = []
            for index in range(sizes["rounds"]):
                order = ("with", "without") if index % 2 == 0 else ("without", "with")
                measured = {}
                for name in order:
                    measured[name] = await _run(servers[name], client, args, sizes)
                runs.append((measured["with"], measured["without"]))
            results.append(runs)
        return results
    finally:
        for app, http in servers.values():
            http.stop()
            await app.stop()


async def _serve(ctx, name):
    """The application listening on loopback; `without`: its dimension step a no-op."""
    scratch = os.path.join(ctx.work_dir, f"dimensions-{name}")
    app = server.make_app(influxdb_url=ctx.influxd.url, database=ctx.database(f"dimensions_{name}"),
                          wal_dir=os.path.join(scratch, "wal"), spool_dir=os.path.join(scratch, "spool"), **SERVED)
    if name == "without":
        app.dimensions = NoDimensions()
    await app.start()
    await app.store.setup()
    http = server.http_server(app)
    app.port = free_port()
    http.listen(app.port, "127.0.0.1")
    return app, http


async def _run(served, client, args, sizes):
    """One load run against one server: (CPU µs, wall µs) per request answered."""
    app, _ = served
    url = f"http://127.0.0.1:{app.port}"
    if client == "wrk":
        args = args() if callable(args) else args
        started = harness.cpu_seconds(os.getpid())
        summary = await asyncio.get_running_loop().run_in_executor(None, lambda: harness.wrk(
            url + WRITE_PATH, args, seconds=sizes["seconds"], headers=BROWSER))
        answered, seconds = summary["requests"] - summary["error_count"], summary["seconds"]
        if summary["error_count"]:
            raise BenchError(f"dimensions: {summary['error_count']} errors {summary['errors']}")
    else:
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fleetload", client, url, str(sizes["peers"]), str(sizes["warmup"]),
            str(sizes["seconds"]), "0", cwd=harness.ROOT, stdout=subprocess.PIPE)
        try:
            line = await asyncio.wait_for(load.stdout.readline(), 60)
            if line.strip() != b"measuring":
                raise BenchError(f"dimensions: the {client} load did not start: {line!r}")
            started = harness.cpu_seconds(os.getpid())
            summary = json.loads(await asyncio.wait_for(load.stdout.readline(), sizes["seconds"] + 60))
            await asyncio.wait_for(load.wait(), 30)
        finally:
            if load.returncode is None:
                load.kill()
                await load.wait()
        if summary["errors"] or summary["refused"] or summary["lost"] or not summary["answered"]:
            raise BenchError(f"dimensions: the {client} load was not all answered: {summary}")
        answered, seconds = summary["answered"], summary["seconds"]
    deadline = time.monotonic() + 60
    while app.writer.depth:  # the writer's work for these requests is theirs
        if time.monotonic() > deadline:
            raise BenchError("dimensions: the writer did not empty its buffer within 60 s")
        await asyncio.sleep(0.02)
    cpu = harness.cpu_seconds(os.getpid()) - started
    return cpu / answered * 1e6, seconds / answered * 1e6


# --- the domain work alone -----------------------------------------------------------------------

def _paired(baseline, subject, rounds=21, calls=200):
    """(subject µs, baseline µs, median of the per-round subject/baseline ratios) per call:
    thread CPU time of `calls` calls each, the two alternating in order round by round, so
    that load from other processes hits both alike (medians)."""
    def timed(function):
        started = time.thread_time()
        for _ in range(calls):
            function()
        return (time.thread_time() - started) / calls * 1e6
    ours, theirs = [], []
    for index in range(rounds):
        for run, into in ((subject, ours), (baseline, theirs)) if index % 2 else ((baseline, theirs), (subject, ours)):
            into.append(timed(run))
    return (statistics.median(ours), statistics.median(theirs),
            statistics.median(subject / baseline for subject, baseline in zip(ours, theirs)))


def ingest_paths(section, connections=50):
    """Each ingest path's domain work for one request, as the server runs it, with the
    peers' dimensions and without (the same code, the no-op step), alternating in this
    process (`_paired`): POST JSON (`parse` with the request's client and the live feed, steady
    state: the peers' dimensions unchanged since their last request) and a websocket
    frame of two deltas (StatsConnection.receive and commit, with the upgrade's
    dimensions and the route of each frame's report)."""
    extractor = Extractor()
    now_ns = 1795536126812000000
    report = chromium_reports()[-1]["caller"]
    tagged = json.dumps([{"call": "c-42", "peer": "alice", "kind": "video", "tags": TAGS,
                          "stats": json.loads(SINGLE_BODY)["stats"]}]).encode()
    bodies = [("POST JSON, one sample with tags", tagged),
              ("POST JSON, 100 samples of 10 peers", _batch_body()),
              ("POST JSON, a raw getStats() report", json.dumps({"call": "c-42", "peer": "caller", "tags": TAGS,
                                                                 "report": report}).encode())]
    for label, body in bodies:
        def run(extract, limits, body=body):
            return lambda: parse(body, now_ns, limits, "ns", extract, extract.client(USER_AGENT, ADDRESS))
        with_dimensions = run(extractor, Limits(feed=Feed("n1")))
        with_dimensions()  # first sight: its rtc_dimensions point
        ours, theirs, ratio = _paired(run(NoDimensions(), Limits(feed=Feed("n2"))), with_dimensions)
        section.add(f"domain work alone, {label}, with dimensions", ours, "µs",
                    f"without (median ratio {ratio:.3f})", theirs)

    reports = clean_reports()["caller"]
    full = json.dumps(reports[0], separators=(",", ":")).encode()
    deltas = [delta(reports[i], reports[i + 1]) for i in range(len(reports) - 1)]
    ms = now_ns // 1_000_000
    frames = [b'[{"ts":%d,%s},{"ts":%d,%s}]' % (ms, deltas[2 * k], ms + 1000, deltas[2 * k + 1])
              for k in range(len(deltas) // 2)]

    def peers(extract):
        limits = Limits(feed=Feed("n1"))
        client = {**extract.client(USER_AGENT, ADDRESS), **extract.query_tags({"tag.region": [b"eu-west"]})}
        found = [StatsConnection(f"c{i}", "caller", limits, extractor=extract, client=client)
                 for i in range(connections)]
        for peer in found:
            peer.commit(peer.receive(b'[{"ts":%d,"report":%s}]' % (ms, full), now_ns))
        return found

    def frames_of(connected):
        turn = [0]

        def run():
            frame_bytes = frames[turn[0] % len(frames)]
            turn[0] += 1
            for peer in connected:
                peer.commit(peer.receive(frame_bytes, now_ns))
        return run
    ours, theirs, ratio = _paired(frames_of(peers(NoDimensions())), frames_of(peers(extractor)), calls=4)
    section.add("domain work alone, websocket frame of two deltas, with dimensions", ours / connections, "µs",
                f"without (median ratio {ratio:.3f})", theirs / connections)


# --- each step alone -----------------------------------------------------------------------------

def _uncached_seconds(user_agents, rounds=400):
    """Seconds per parse of a string never seen before (the first request of a new browser build)."""
    headers = [USER_AGENT.replace("131.0.0.0", f"131.0.{n}.0") for n in range(rounds)]
    started = time.perf_counter()
    for header in headers:
        user_agents.parse(header)
    return (time.perf_counter() - started) / len(headers)


def steps(section):
    now_ns = 1795536126812000000
    report = chromium_reports()[-1]["caller"]  # a real Chromium sender's report
    report_body = json.dumps({"call": "c-42", "peer": "caller", "report": report}).encode()
    started = time.perf_counter()
    user_agents = UserAgents()
    load_ms = (time.perf_counter() - started) * 1000
    cached, _ = compare(lambda: None, lambda: user_agents.parse(USER_AGENT))
    section.add("User-Agent, a string seen before (cache)", cached * 1e6, "µs", "a string never seen",
                _uncached_seconds(user_agents) * 1e6)
    embedded = GeoIP()
    operators = GeoIP([TEST_DB])
    mmdb, iptocc_s = compare(lambda: embedded.lookup(ADDRESS), lambda: operators.lookup("127.0.0.1"))
    section.add("address, a MaxMind-format file (--geoip-db)", mmdb * 1e6, "µs", "the embedded table",
                iptocc_s * 1e6)
    report_s, parse_s = compare(lambda: parse(report_body, now_ns, Limits()), lambda: report_dimensions(report))
    section.add(f"route and codecs of a raw report ({len(report)} stats), read whole", report_s * 1e6, "µs",
                "parse of its request", parse_s * 1e6)
    operators.close()
    section.note(f"The User-Agent rules load in {load_ms:.0f} ms, once per process. The domain work alone is the "
                 "ingest code of one request without its HTTP or websocket layer, the WAL or the writer "
                 "(thread CPU, in this process, medians of 21 alternating rounds): the share of a whole request "
                 "is several times smaller than its ratio.")


if __name__ == "__main__":
    from .__main__ import MODES, Context
    from .report import Section, text_table

    alone = Section("Dimensions: cost per ingest request, with and without")
    with tempfile.TemporaryDirectory(prefix="rtcscope-bench-") as scratch:
        context = Context(MODES["full" if "--full" in sys.argv else "quick"], scratch)
        try:
            dimensions(context, alone)
        finally:
            context.close()
    print(text_table([alone]))
