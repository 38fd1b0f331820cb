"""Live graphs: fan-out of the detector's messages to many websocket viewers,
and how soon a call's start and end reach a viewer.

One server process (bench.served: the real server with its detector ticks
timed) gets samples for 50 live calls every second. A separate process holds
the viewers: first 1 (the baseline), then 1,000. While the single viewer
watches, probe calls start, then end by an explicit event or by silence.
"""
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

from . import harness
from .harness import BenchError

LIVE_CALLS = 50
METRIC = "rtt"
CALL_TIMEOUT_S = 5.0
TICK_S = 1.0
FLUSH_S = 0.5
PROBE_SAMPLES = 4  # a probe call posts this many samples, 0.5 s apart, before it ends


class Poster:
    """One keep-alive connection posting JSON to the ingest URL."""

    def __init__(self, base_url):
        self.address = urllib.parse.urlsplit(base_url).netloc
        self.connection = http.client.HTTPConnection(self.address, timeout=10)

    def post(self, document):
        body = json.dumps(document).encode()
        self.connection.request("POST", "/v1/stats/write/", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        if response.status != 200:
            raise BenchError(f"ingest answered {response.status}")

    def close(self):
        self.connection.close()


def sample(call, n):
    return {"call": call, "peer": "p", "kind": "audio",
            "stats": {"rtt": 30.0 + n % 13, "jitter": 2.0, "packetsLost": n, "packetsSent": 50 * n}}


class Feeder(threading.Thread):
    """LIVE_CALLS calls, each posting a sample every second, until stopped (at most `limit` s)."""

    def __init__(self, base_url, limit):
        super().__init__(daemon=True)
        self.base_url = base_url
        self.limit = limit
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        poster = Poster(self.base_url)
        deadline = time.monotonic() + self.limit
        n = 0
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                for index in range(LIVE_CALLS):
                    poster.post(sample(f"live-{index:02d}", n))
                n += 1
                self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - started)))
        except (OSError, BenchError) as exc:
            self.error = exc
        finally:
            poster.close()


class Probe(threading.Thread):
    """A call that starts after `delay`, posts a few samples, then ends by an
    end event or by silence; notes when it sent what."""

    def __init__(self, base_url, call, delay, by_event):
        super().__init__(daemon=True)
        self.base_url, self.call, self.delay, self.by_event = base_url, call, delay, by_event
        self.first_sent = self.last_sent = self.end_sent = None
        self.error = None

    def run(self):
        time.sleep(self.delay)
        poster = Poster(self.base_url)
        try:
            for n in range(PROBE_SAMPLES):
                sent = time.time()
                poster.post(sample(self.call, n))
                self.first_sent = self.first_sent or sent
                self.last_sent = sent
                time.sleep(0.5)
            if self.by_event:
                self.end_sent = time.time()
                poster.post({"call": self.call, "event": "end"})
        except (OSError, BenchError) as exc:
            self.error = exc
        finally:
            poster.close()


def influx_query_requests(influxd):
    """Query requests influxd has received (this one included)."""
    result = influxd.query("SHOW STATS FOR 'httpd'")["results"][0]
    for series in result.get("series", []):
        return dict(zip(series["columns"], series["values"][0])).get("queryReq", 0)
    return 0


def read_ticks(path, since, until):
    with open(path) as ticks:
        rows = [json.loads(line) for line in ticks if line.strip()]
    return [row for row in rows if since <= row["start"] <= until]


def run_viewers(ctx, ws_url, count, seconds, name):
    """Start the viewer process; (process, path of its result file)."""
    result_path = os.path.join(ctx.work_dir, f"{name}.json")
    process = subprocess.Popen([sys.executable, "-m", "bench.viewers", ws_url, str(count), str(seconds), result_path],
                               cwd=harness.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, result_path


def wait_ready(process, timeout):
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("ready"):
            return time.time()
        if not line and process.poll() is not None:
            break
        if line.startswith("failed"):
            break
    process.kill()
    raise BenchError(f"viewers did not connect: {line.strip() or process.stdout.read()[-300:]}")


def finish_viewers(process, result_path, timeout):
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise BenchError("the viewer process did not finish in time") from None
    if process.returncode != 0:
        raise BenchError(f"the viewer process failed: {process.stdout.read()[-500:]}")
    with open(result_path) as result:
        return json.load(result)


def tick_latencies(ticks, messages, viewers):
    """Seconds from each tick's start to the last viewer having its points message."""
    starts = sorted(tick["start"] for tick in ticks)
    out = []
    for message in messages:
        if message["type"] != "points" or message["count"] < viewers:
            continue
        before = [start for start in starts if start <= message["first"]]
        if before:
            out.append(message["last"] - before[-1])
    return out


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def watch_phase(ctx, server, tick_log, ws_url, viewers, seconds, name, during=None):
    """Connect `viewers`, let `seconds` of ticks pass (running `during()` meanwhile); measure."""
    process, result_path = run_viewers(ctx, ws_url, viewers, seconds, name)
    ready = wait_ready(process, 150)
    queries_before = influx_query_requests(ctx.influxd)
    cpu_before = server.cpu_seconds()
    if during:
        during()
    time.sleep(min(2.0, seconds / 3))
    rss = server.rss_bytes()
    result = finish_viewers(process, result_path, seconds + 120)
    window_end = ready + seconds
    queries = influx_query_requests(ctx.influxd) - queries_before - 1
    ticks = read_ticks(tick_log, ready, window_end)
    if not ticks:
        raise BenchError(f"no detector tick logged while {viewers} viewers watched")
    if any(tick["failures"] for tick in ticks):
        raise BenchError("detector ticks failed; see the server log")
    latencies = tick_latencies(ticks, result["messages"], viewers)
    return {
        "result": result, "rss": rss, "ticks": ticks, "latencies": latencies,
        "queries_per_tick": statistics.median(tick["queries"] for tick in ticks),
        "influx_queries_per_tick": queries / len(ticks),
        "cpu_per_tick": (server.cpu_seconds() - cpu_before) / len(ticks),
        "dropped": len(result["closed"]),
    }


@contextlib.contextmanager
def fed_server(ctx, name):
    """A timed-ticks server with LIVE_CALLS calls posting every second; yields
    (server, tick log path, websocket URL of the watched metric)."""
    tick_log = os.path.join(ctx.work_dir, f"{name}-ticks.jsonl")
    database = ctx.database(name)
    port = harness.free_port()
    argv = [sys.executable, "-m", "bench.served", f"--port={port}", f"--influxdb-url={ctx.influxd.url}",
            f"--database={database}", f"--spool-dir={os.path.join(ctx.work_dir, name + '-spool')}",
            f"--wal-dir={os.path.join(ctx.work_dir, f'{name}-{database}-wal')}",
            f"--call-timeout={CALL_TIMEOUT_S}", f"--tick={TICK_S}", f"--flush-interval={FLUSH_S}"]
    server = harness.HTTPProc(name, argv, ctx.log_dir, port, env={"RTCSCOPE_BENCH_TICK_LOG": tick_log})
    feeder = Feeder(server.url, limit=600)
    try:
        harness.wait_until(lambda: harness.database_exists(ctx.influxd, database), 30, f"database {database}")
        feeder.start()
        harness.wait_until(lambda: _live_count(server) >= LIVE_CALLS, 30, f"{LIVE_CALLS} live calls", interval=0.2)
        yield server, tick_log, f"ws://127.0.0.1:{port}/ws/graph/{METRIC}"
    finally:
        feeder.stopping.set()
        if feeder.is_alive():
            feeder.join(10)
        server.stop()
    if feeder.error:
        raise BenchError(f"posting samples failed: {feeder.error}")


def live(ctx, fanout, detection):
    probes = []

    def start_probes():
        count = ctx.mode.probes
        for index in range(count):  # spread over two ticks: every phase of the tick is seen
            probe = Probe(server.url, f"probe-{index:02d}", 2 * TICK_S * index / count, by_event=index % 2 == 0)
            probe.start()
            probes.append(probe)

    probe_seconds = 2 * TICK_S + PROBE_SAMPLES * 0.5 + CALL_TIMEOUT_S + 2 * TICK_S + 1
    with fed_server(ctx, "live") as (server, tick_log, ws_url):
        one = watch_phase(ctx, server, tick_log, ws_url, 1, max(ctx.mode.ticks, probe_seconds), "one",
                          during=start_probes)
        for probe in probes:
            probe.join(30)
        many = watch_phase(ctx, server, tick_log, ws_url, ctx.mode.viewers, ctx.mode.ticks, "many")
    for probe in probes:
        if probe.error:
            raise BenchError(f"posting samples failed: {probe.error}")
    _fanout_figures(fanout, ctx, one, many)
    _detection_figures(detection, one["result"]["messages"], probes)


def _live_count(server):
    status, body = harness.http("GET", server.url + "/v1/calls/?state=live&since=1m")
    return json.loads(body).get("count", 0) if status == 200 else 0


def _fanout_figures(section, ctx, one, many):
    viewers = ctx.mode.viewers
    if not many["latencies"] or not one["latencies"]:
        raise BenchError("no points message reached every viewer")
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        value = percentile(many["latencies"], fraction) * 1000
        baseline = percentile(one["latencies"], fraction) * 1000
        section.add(f"tick → last of {viewers:,} viewers has the points, {label}", value, "ms",
                    "1 viewer", baseline, **({"target": "≤ 250 ms", "met": value <= 250} if label == "p99" else {}))
    per_viewer = (many["rss"] - one["rss"]) / (viewers - 1)
    section.add("server memory per viewer (RSS delta / viewers)", per_viewer / 1024, "KB",
                "RSS with 1 viewer", one["rss"] / 1024, target="≤ 50 KB", met=per_viewer <= 50 * 1024,
                ratio_override=many["rss"] / one["rss"])
    section.add(f"detector InfluxDB queries per tick, {viewers:,} viewers", many["queries_per_tick"], "",
                "1 viewer", one["queries_per_tick"], target="equal", met=many["queries_per_tick"] == one["queries_per_tick"])
    section.add(f"queries influxd received per tick, {viewers:,} viewers", many["influx_queries_per_tick"], "",
                "1 viewer", one["influx_queries_per_tick"])
    section.add("server CPU per tick", many["cpu_per_tick"] * 1000, "ms", "1 viewer", one["cpu_per_tick"] * 1000)
    sizes = [m["bytes"] for m in many["result"]["messages"] if m["type"] == "points"]
    section.note(f"{LIVE_CALLS} live calls posting every second, tick {TICK_S:g} s; points messages of "
                 f"{statistics.median(sizes):,.0f} bytes (median); {len(many['latencies'])} ticks with "
                 f"{viewers:,} viewers and {len(one['latencies'])} with 1. Viewers are aiohttp websockets in "
                 "one separate process; receive times include that process's own scheduling. "
                 f"Viewers dropped as too slow: {many['dropped']}. RSS: {one['rss'] / 2**20:.1f} MiB with 1 viewer, "
                 f"{many['rss'] / 2**20:.1f} MiB with {viewers:,}.")


def _detection_figures(section, messages, probes):
    received = {(m["type"], m["call"]): m["first"] for m in messages if m["call"]}
    started, by_event, by_timeout = [], [], []
    for probe in probes:
        began = received.get(("call_started", probe.call))
        ended = received.get(("call_ended", probe.call))
        if began is None or ended is None:
            raise BenchError(f"{probe.call}: call_started or call_ended never reached the viewer")
        started.append(began - probe.first_sent)
        if probe.by_event:
            by_event.append(ended - probe.end_sent)
        else:
            by_timeout.append(ended - probe.last_sent)
    bound = FLUSH_S + TICK_S + 0.3
    timeout_bound = CALL_TIMEOUT_S + TICK_S + 0.3
    for what, values, limit, label in (
            ("first sample → call_started", started, bound, "flush + tick + 0.3 s"),
            ("end event → call_ended", by_event, bound, "flush + tick + 0.3 s"),
            ("last sample → call_ended by timeout", by_timeout, timeout_bound, "timeout + tick + 0.3 s")):
        worst = max(values)
        section.add(f"{what}, worst of {len(values)}", worst, "s", label, limit,
                    target="≤ bound", met=worst <= limit)
        section.add(f"{what}, median", statistics.median(values), "s")
    section.note(f"Flush interval {FLUSH_S:g} s, tick {TICK_S:g} s, call timeout {CALL_TIMEOUT_S:g} s; probe calls "
                 "start at phases spread over two ticks, while the 50 live calls post. Times run from sending the "
                 "request to the viewer receiving the message (the bound is the contract's, not a measurement).")
