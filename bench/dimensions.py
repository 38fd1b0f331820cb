"""What extracting the peers' dimensions costs an ingest request: whole requests
through the real server with the dimensions and without, in the same run;
then the domain work alone with and without, and each step alone.

Whole requests: the application as server.py builds and serves it
(`server.make_app`, `server.http_server`; ingest-only, --xheaders), twice in
this process, each listening on loopback: as shipped, and with its dimension
step a no-op (`NoDimensions` as the application's `dimensions`, through which
every ingest path reads them). A window writes a batch of real requests on
50 keep-alive connections at once (POST bodies, websocket frames, rtcstats
entries, as bench/fleetload.py builds them: a browser's User-Agent and
X-Real-Ip, the application's tags, the real Chromium capture) and waits for
every answer, then for the writer to empty its buffer into InfluxDB: the
server always has the next request at hand, so its work per request does not
depend on how the machine schedules a client. Windows alternate between the
two servers (A B, B A, ...). Per request: this process's CPU from /proc
(headers, body, admission, parse, dimensions, WAL append, feed rows, answer,
the writer's flushes; and the client's writes and reads, the same for both)
and wall until the last answer, over all the rounds; the notes give the
rounds' own ratios.

    python -m bench --only dimensions      # in the report
    python -m bench.dimensions [--full]    # this section alone (its own influxd)
"""
import asyncio
import gc
import itertools
import json
import os
import statistics
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
from rtcscope.ingest.rtcstats import Session, Sessions, Stored
from rtcscope.storage.feed import Feed
from tests.support.influxd import free_port
from tests.support.reports import chromium_reports

from . import harness
from .fleetload import TAGS, USER_AGENT, Load, pong, server_frames, ws_frame
from .harness import BenchError
from .ingest import BATCH_CALLS, BATCH_SAMPLES, SINGLE_BODY, WRITE_PATH
from .jsonlibs import compare
from .report import median_ratio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DB = os.path.join(ROOT, "tests", "data", "geoip-test.mmdb")
ADDRESS = "91.64.1.1"
TARGET = 1.05
CONNECTIONS = 50
# Rounds (a window on each server, the order alternating) and the CPU seconds a window aims at.
SIZES = {"quick": {"rounds": 80, "window_s": 0.1}, "full": {"rounds": 150, "window_s": 0.15}}
SERVED = {"detector": False, "xheaders": True, "max_new_calls": 10_000_000, "max_live_calls": 10_000_000}


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
        return {}, True

    @staticmethod
    def app(application_name):
        return {}

    @staticmethod
    def peer(key, client, tags=None, report=None):
        return {}


def dimensions(ctx, section, sizes=None):
    whole = whole_requests(ctx, section, sizes or SIZES[ctx.mode.name])
    domain_work(section, whole)
    steps(section)


# --- whole requests ------------------------------------------------------------------------------

PATHS = [  # label, what a window sends (`_Client.window`)
    ("POST, one JSON sample with tags", "sample"),
    ("POST, rtcscope.js's request (two raw getStats() reports, tags)", "post"),
    (f"POST, {BATCH_SAMPLES} JSON samples of {BATCH_CALLS} calls", "batch"),
    ("websocket, a frame of two deltas (tags on the URL)", "ws"),
    ("rtcstats, a getstats entry", "rtcstats"),
]


def whole_requests(ctx, section, sizes):
    thresholds = gc.get_threshold()
    gc.set_threshold(*server.GC_THRESHOLDS)  # as a server process runs
    try:
        results = asyncio.run(_measure(ctx, sizes))
    finally:
        gc.set_threshold(*thresholds)
    whole = {}  # label -> CPU µs per request without the dimensions
    for (label, _), runs in zip(PATHS, results):
        # Per request over all the rounds of each (CPU from /proc, whole ticks over many windows) ...
        totals = [[sum(window[i] for window in side) for i in range(4)] for side in zip(*runs)]
        (ours, ours_proc, _, ours_wall), (theirs, theirs_proc, _, theirs_wall) = totals
        cpu = ours_proc / ours * 1e6, theirs_proc / theirs * 1e6
        ratio = cpu[0] / cpu[1]
        section.add(f"{label}: CPU per request, with dimensions", cpu[0], "µs", "without (the step a no-op)", cpu[1],
                    target=f"≤ {TARGET}× without", met=ratio <= TARGET)
        whole[label] = cpu[1]
        section.add(f"{label}: wall per request, with dimensions", ours_wall / ours * 1e6, "µs", "without",
                    theirs_wall / theirs * 1e6)
        # ... and round by round (CPU to the ns: a window is a few ticks of /proc).
        by_round = [(a[2] / a[0], b[2] / b[0]) for a, b in runs]
        walls = [(a[3] / a[0], b[3] / b[0]) for a, b in runs]
        section.note(f"{label}: {runs[0][0][0]:,} requests a window; CPU ratio median of the rounds "
                     f"{median_ratio(by_round):.3f} (quartiles {_quartiles(by_round)}), wall "
                     f"{median_ratio(walls):.3f} ({_quartiles(walls)}).")
    section.note(f"Whole requests: {sizes['rounds']} rounds, a window of about {sizes['window_s']} s of CPU on each "
                 "server in turn (A B, B A, ...), after a warm-up window; both servers in this process (ingest-only, "
                 "--xheaders, each with its WAL in the bench's scratch directory and its database on the bench's "
                 f"influxd), {CONNECTIONS} keep-alive connections or websocket peers each, every peer with its own "
                 "address. The figures are per request over all the rounds (CPU: /proc/self/stat); the notes give the "
                 "rounds' own ratios (CPU: clock_gettime, the same kernel accounting to the ns).")
    return whole


def _quartiles(pairs):
    ratios = sorted(value / baseline for value, baseline in pairs)
    return f"{ratios[len(ratios) // 4]:.2f}–{ratios[3 * len(ratios) // 4]:.2f}"


async def _measure(ctx, sizes):
    """For each path, [(`_window` with, `_window` without)] per round."""
    apps = {}
    try:
        for name in ("with", "without"):
            apps[name] = await _serve(ctx, name)
        results = []
        for _, kind in PATHS:
            clients = {name: await _Client.connect(app, kind) for name, app in apps.items()}
            try:
                requests, _, cpu, _ = await _window(apps["with"], clients["with"], 4)
                await _window(apps["without"], clients["without"], 4)
                per_connection = max(1, round(sizes["window_s"] / (cpu / requests * CONNECTIONS)))
                runs = []
                for index in range(sizes["rounds"]):
                    measured = {}
                    for name in ("with", "without") if index % 2 == 0 else ("without", "with"):
                        measured[name] = await _window(apps[name], clients[name], per_connection)
                    runs.append((measured["with"], measured["without"]))
            finally:
                for client in clients.values():
                    client.close()
            results.append(runs)
        return results
    finally:
        for app in apps.values():
            app.http.stop()
            await app.stop()


async def _serve(ctx, name):
    """The application listening on loopback (`port`); `without`: its dimension step a no-op."""
    scratch = os.path.join(ctx.work_dir, f"dimensions-{name}")
    app = server.make_app(influxdb_url=ctx.influxd.url, database=ctx.database(f"dimensions_{name}"),
                          wal_dir=os.path.join(scratch, "wal"), spool_dir=os.path.join(scratch, "spool"), **SERVED)
    if name == "without":
        app.dimensions = NoDimensions()
    await app.start()
    await app.store.setup()
    app.http = server.http_server(app)
    app.port = free_port()
    app.http.listen(app.port, "127.0.0.1")
    return app


async def _window(app, client, per_connection):
    """`per_connection` requests or frames on each connection at once: (requests, process CPU
    seconds from /proc, the same to the ns, wall seconds until the last answer). The CPU runs
    until the writer has taken everything to InfluxDB (woken at once rather than at its next
    flush): its work for these requests is theirs."""
    payloads = client.window(per_connection)  # built before the clock starts
    started_proc, started_cpu, started = harness.cpu_seconds(os.getpid()), time.process_time(), time.perf_counter()
    await client.send(payloads, per_connection)
    wall = time.perf_counter() - started
    app.writer.flush_now()  # what a full batch does
    deadline = time.monotonic() + 60
    while app.writer.depth:
        if time.monotonic() > deadline:
            raise BenchError("dimensions: the writer did not empty its buffer within 60 s")
        await asyncio.sleep(0.001)
    return (per_connection * len(client.connections), harness.cpu_seconds(os.getpid()) - started_proc,
            time.process_time() - started_cpu, wall)


class _Client:
    """The load of one path on one server: `CONNECTIONS` connections (peers) of this process,
    their requests built by bench/fleetload.py's `Load` (or here, for the synthetic POST bodies)."""

    def __init__(self, app, kind):
        self.kind = kind
        self.load = Load("post" if kind in ("sample", "batch") else kind, f"http://127.0.0.1:{app.port}", CONNECTIONS)
        self.connections = []

    @classmethod
    async def connect(cls, app, kind):
        client = cls(app, kind)
        loop = asyncio.get_running_loop()
        for index in range(CONNECTIONS):
            _, connection = await loop.create_connection(lambda i=index: _Connection(i, kind), "127.0.0.1", app.port)
            client.connections.append(connection)
            if kind in ("ws", "rtcstats"):
                connection.transport.write(client.load.handshake(index))
                await connection.arrived(1, "upgraded")
            if kind == "rtcstats":
                await connection.arrived(1, "texts")  # its initial `sn`: 0, a new session
                connection.sn = 1
                connection.transport.write(ws_frame(client.load.identity(connection)))
                await connection.arrived(1)
        return client

    def window(self, count):
        """Each connection's next `count` requests or frames, as one write."""
        ts_ms = int(time.time() * 1000)
        payloads = []
        for connection in self.connections:
            if self.kind == "sample":
                requests = [self._post(connection, SAMPLE_BODY)] * count
            elif self.kind == "batch":
                requests = [self._post(connection, _batch(ts_ms - 1000 * (count - n))) for n in range(count)]
            else:  # a poll a second, two to a request or frame
                requests = []
                for n in range(count):
                    requests.append(self.load.frame(connection, ts_ms - 2000 * (count - n)))
                    connection.frames += 1
            payloads.append(b"".join(requests))
        return payloads

    def _post(self, connection, body):
        return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n%sContent-Length: %d"
                b"\r\n\r\n%s" % (WRITE_PATH.encode(), self.load.port, self.load.browser_headers(connection.index).encode(),
                                  len(body), body))

    async def send(self, payloads, count):
        for connection, payload in zip(self.connections, payloads):
            connection.transport.write(payload)
        await asyncio.gather(*(connection.arrived(connection.answers + count) for connection in self.connections))

    def close(self):
        for connection in self.connections:
            connection.transport.close()


SAMPLE_BODY = json.dumps({"call": "c-42", "peer": "alice", "kind": "video", "tags": TAGS,
                          "stats": json.loads(SINGLE_BODY)["stats"]}).encode()


def _batch(ts_ms):
    """A body of BATCH_SAMPLES samples over BATCH_CALLS calls, as bench/wrk/ingest.lua's batches."""
    return json.dumps([{"call": f"b-{n % BATCH_CALLS}", "peer": "p", "kind": ("audio", "video")[n // BATCH_CALLS % 2],
                        "ts": ts_ms + n / 1000, "stats": {"rtt": 30.0 + n % 17, "jitter": 1.5, "packetsLost": n % 5,
                                                          "packetsSent": 1000 + n, "bytesSent": (1000 + n) * 1100}}
                       for n in range(BATCH_SAMPLES)]).encode()


class _Connection:
    """One keep-alive connection or websocket peer: counts its answers (HTTP 200s; `ack`s or
    rtcstats' `ongoing` sequence numbers), answers pings, and refuses to go on after any other."""

    MARKERS = {"ws": b'{"type":"ack"', "rtcstats": b'"ongoing"'}

    def __init__(self, index, kind):
        self.index, self.kind = index, kind
        self.websocket = kind in self.MARKERS
        self.frames = self.sn = 0  # for `Load.frame`
        self.transport = None
        self.buffer = b""
        self.upgraded = not self.websocket
        self.answers = self.texts = 0
        self.failure = None
        self._waiting = None  # (count, attribute, future)

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self._fail(f"connection {self.index} lost: {exc}")

    def eof_received(self):
        return None

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass

    def data_received(self, data):
        buffer = self.buffer + data
        if not self.upgraded:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                return self._fail(head[:200].decode(errors="replace"))
            self.upgraded = True
        if self.websocket:
            frames, self.buffer = server_frames(buffer)
            marker = self.MARKERS[self.kind]
            for opcode, payload in frames:
                if opcode == 0x9:
                    self.transport.write(pong(payload))
                elif opcode == 0x1:
                    self.texts += 1
                    if marker in payload:
                        self.answers += 1
                    elif self.texts > 1 or self.kind != "rtcstats":  # rtcstats' first: its initial `sn`
                        return self._fail(payload[:200].decode(errors="replace"))
        else:  # the status lines whose status has arrived (no JSON answer holds "HTTP/1.1 ")
            seen = len(buffer) - 4
            responses = buffer.count(b"HTTP/1.1 ", 0, seen)
            if buffer.count(b"HTTP/1.1 200 ") != responses:
                return self._fail(buffer[:300].decode(errors="replace"))
            self.answers += responses
            self.buffer = buffer[buffer.rfind(b"HTTP/1.1 ", 0, seen) + 9:] if responses else buffer[-12:]
        self._check()

    async def arrived(self, count, attribute="answers"):
        """Once `count` answers (or text frames, or the upgrade: 1) have arrived."""
        if self.failure:
            raise BenchError(self.failure)
        if getattr(self, attribute) >= count:
            return
        self._waiting = (count, attribute, asyncio.get_running_loop().create_future())
        await asyncio.wait_for(self._waiting[2], 120)

    def _check(self):
        if self._waiting and getattr(self, self._waiting[1]) >= self._waiting[0] and not self._waiting[2].done():
            self._waiting[2].set_result(None)

    def _fail(self, message):
        self.failure = self.failure or f"dimensions, connection {self.index}: {message}"
        if self._waiting and not self._waiting[2].done():
            self._waiting[2].set_exception(BenchError(self.failure))


# --- the domain work alone -----------------------------------------------------------------------

def _paired(baseline, subject, pairs):
    """(subject µs, baseline µs, their difference µs) per call, medians: each call timed alone
    (thread CPU), the two alternating call by call (each first in turn), so that both meet the
    machine as it is at that moment; the difference is the median of the pairs' differences
    (call i of each is the same request of the same peer)."""
    clock = time.thread_time_ns
    ours, theirs, differences = [], [], []
    for index in range(pairs):
        subject_first = index % 2
        first, second = (subject, baseline) if subject_first else (baseline, subject)
        started = clock()
        first()
        middle = clock()
        second()
        ended = clock()
        first_ns, second_ns = middle - started, ended - middle
        subject_ns, baseline_ns = (first_ns, second_ns) if subject_first else (second_ns, first_ns)
        ours.append(subject_ns)
        theirs.append(baseline_ns)
        differences.append(subject_ns - baseline_ns)
    return (statistics.median(ours) / 1000, statistics.median(theirs) / 1000,
            statistics.median(differences) / 1000)


def domain_work(section, whole, pairs=4000):
    """Each path's ingest code for one request, without its HTTP or websocket layer, the WAL
    or the writer, as the server runs it: with the application's extractor and with the no-op
    one, call by call in this process (`_paired`), in steady state (the peers' dimensions as
    their previous request left them). Their difference over the whole request without
    (`whole`: label -> CPU µs) is the dimensions' share of it, measured far more finely than
    whole requests can be on a busy machine."""
    extractor = Extractor()
    for label, kind in PATHS:
        ours, theirs, difference = _paired(_domain(kind, NoDimensions()), _domain(kind, extractor),
                                           pairs if kind != "batch" else pairs // 4)
        section.add(f"domain work alone, {label}, with dimensions", ours, "µs",
                    f"without (the dimensions: {difference:.2f} µs)", theirs)
        if label in whole:
            section.note(f"{label}: the dimensions' {difference:.2f} µs of domain work are "
                         f"{difference / whole[label] * 100:.2f} % of the whole request without them.")


def _domain(kind, extract, connections=CONNECTIONS):
    """One request's domain work of path `kind` with `extract`, as a function: each call the
    next request of the next of `connections` peers."""
    now_ms = int(time.time() * 1000)
    now_ns = now_ms * 1_000_000
    client = extract.client(USER_AGENT, ADDRESS)
    load = Load({"sample": "post", "batch": "post"}.get(kind, kind), "http://127.0.0.1:1", connections)
    peers = [_Connection(index, kind) for index in range(connections)]
    turn = itertools.count()

    def next_peer():
        peer = peers[next(turn) % connections]
        message = load.message(peer, now_ms)
        peer.frames += 1
        return peer, message
    if kind in ("sample", "batch", "post"):
        limits = Limits(feed=Feed("n"))
        bodies = {"sample": SAMPLE_BODY, "batch": _batch(now_ms)}

        def request():
            body = bodies.get(kind) or next_peer()[1].partition(b"\r\n\r\n")[2]
            parse(body, now_ns, limits, "ns", extract, extract.client(USER_AGENT, ADDRESS))
    elif kind == "ws":
        limits = Limits(feed=Feed("n"))
        held = [StatsConnection(*load.ids(index), limits, extractor=extract, client=client)
                for index in range(connections)]

        def request():
            peer, message = next_peer()
            connection = held[peer.index]
            connection.commit(connection.receive(message, now_ns))
    else:
        sessions = Sessions(None, 10_000, feed=Feed("n"))
        held = [Session(f"s{index}", "room", Stored(), sessions.limits) for index in range(connections)]
        for index, session in enumerate(held):
            session.extractor, session.client = extract, client
            peers[index].sn = 1
            session.commit(session.receive(load.identity(peers[index]), now_ms))

        def request():
            peer, message = next_peer()
            session = held[peer.index]
            session.commit(session.receive(message, now_ms))
    for _ in range(2 * connections):  # every peer's first requests: first sight
        request()
    return request


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
                 "ingest code of one request without its HTTP or websocket layer, the WAL or the writer, the peers "
                 "in steady state (thread CPU of each call, in this process, with the dimensions and without "
                 "call by call; medians, the dimensions the median of the pairs' differences): a small part of a "
                 "whole request, so its ratio is several times its share of one.")


if __name__ == "__main__":
    from .__main__ import MODES, Context
    from .report import Section, text_table

    alone = Section("Dimensions: cost per ingest request, with them and without (§15)")
    with tempfile.TemporaryDirectory(prefix="rtcscope-bench-") as scratch:
        context = Context(MODES["full" if "--full" in sys.argv else "quick"], scratch)
        try:
            dimensions(context, alone)
        finally:
            context.close()
    print(text_table([alone]))
