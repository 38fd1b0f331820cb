"""Acknowledged samples survive InfluxDB outages and server restarts, exactly once.

Real processes: server.py is started as an operator would start it, influxd is
killed and restarted, the server gets SIGTERM and SIGKILL. Every sample
carries a unique `seq` and timestamp, so a sample stored twice would show
as two rows and a lost one as a missing number."""
import asyncio
import http.client
import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from rtcscope.storage.store import Store
from tests.conftest import now_ms
from tests.helpers import count_points, eventually
from tests.influxd import Influxd
from tests.processes import ServerProcess, wait
from tests.test_load import SlowProxy

PER_REQUEST = 20
POINTS_PER_REQUEST = PER_REQUEST + 1  # the samples and one presence point


class Load(threading.Thread):
    """A client posting batches over one keep-alive connection, honouring
    Retry-After, and remembering what was acknowledged, refused or left unknown
    (no answer: the server may or may not have buffered it)."""

    def __init__(self, port, call):
        super().__init__(daemon=True)
        self.port = port
        self.call = call
        self.base_ms = now_ms() - 60_000
        self.seq = 0
        self.acked, self.refused, self.unknown = [], [], []
        self.statuses = []
        self.retry_after = []
        self.halt = threading.Event()

    def body(self):
        seqs = list(range(self.seq, self.seq + PER_REQUEST))
        self.seq += PER_REQUEST
        return seqs, json.dumps([{"call": self.call, "peer": "p", "ts": self.base_ms + s,
                                  "stats": {"seq": s}} for s in seqs])

    def run(self):
        connection = None
        while not self.halt.is_set():
            seqs, body = self.body()
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("POST", "/v1/stats/write/", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException):
                self.unknown.extend(seqs)
                connection = None
                self.statuses.append("error")
                time.sleep(0.05)
                continue
            self.statuses.append(response.status)
            if response.status == 200 and answer == {"success": True, "accepted": PER_REQUEST, "dropped": 0,
                                                     "restamped": 0, "events": 0}:
                self.acked.extend(seqs)
            elif response.status == 503:
                self.refused.extend(seqs)
                assert answer["error"]["code"] in ("buffer_full", "shutting_down"), answer
                self.retry_after.append(int(response.headers["Retry-After"]))
                time.sleep(min(self.retry_after[-1], 1))
            else:
                raise AssertionError(f"unexpected answer {response.status} {answer}")
            time.sleep(0.01)

    def stop(self):
        self.halt.set()
        self.join(30)
        assert not self.is_alive()

    def count(self, status, since=0):
        return self.statuses[since:].count(status)


def stored_seqs(influxd, database):
    return sorted(row["seq"] for row in influxd.rows('SELECT "seq" FROM "rtc_stats" WHERE time > 0', database))


def kill_influxd(influxd):
    influxd.process.kill()  # SIGKILL: no goodbye to open connections
    influxd.process.wait()
    influxd.process = None


def metric(server, name):
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.fixture
def own_influxd(tmp_path):
    instance = Influxd(str(tmp_path / "influxd")).start()
    yield instance
    instance.cleanup()


@pytest.fixture
def servers(tmp_path):
    started = []

    def start(**options):
        server = ServerProcess(str(tmp_path), **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        if server.process and server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_influxdb_killed_mid_load_loses_nothing(own_influxd, servers, tmp_path):
    influxd = own_influxd
    max_buffer = 1500
    server = servers(influxdb_url=influxd.url, database="outage", spool_dir=tmp_path / "spool",
                     max_buffer=max_buffer, flush_interval="0.1s")
    wait(lambda: server.get_json("/readyz")[0] == 200)
    load = Load(server.port, "outage")
    load.start()
    try:
        wait(lambda: len(load.acked) >= 10 * PER_REQUEST)
        kill_influxd(influxd)
        killed_at = len(load.statuses)
        # Down: acknowledged until the buffer is full, then 503 + Retry-After.
        wait(lambda: 503 in load.statuses[killed_at:], timeout=60)
        first_503 = load.statuses.index(503, killed_at)
        acked_while_down = load.statuses[killed_at:first_503].count(200)
        assert acked_while_down >= (max_buffer // POINTS_PER_REQUEST) // 2, load.statuses[killed_at:first_503]
        assert all(seconds >= 1 for seconds in load.retry_after)
        assert server.get_json("/readyz")[0] == 503
        assert server.get_json("/healthz") == (200, {"status": "ok"})
        assert metric(server, "rtcscope_buffer_depth") > max_buffer - POINTS_PER_REQUEST
        influxd.start()
        back_at = len(load.statuses)
        wait(lambda: load.count(200, since=back_at) >= 5, timeout=60)
    finally:
        load.stop()
    assert load.refused and not load.unknown
    acked = sorted(load.acked)
    wait(lambda: count_points(influxd, "outage", field="seq") >= len(acked), timeout=60)
    time.sleep(0.5)  # anything written twice would land by now
    assert stored_seqs(influxd, "outage") == acked
    assert metric(server, "rtcscope_buffer_depth") == 0


def test_sigterm_with_influxdb_down_spools_and_the_next_start_replays(own_influxd, servers, tmp_path):
    influxd = own_influxd
    spool = tmp_path / "spool"
    options = dict(influxdb_url=influxd.url, database="restart", spool_dir=spool, flush_interval="0.1s",
                   shutdown_timeout="1s")
    first = servers(**options)
    wait(lambda: first.get_json("/readyz")[0] == 200)
    load = Load(first.port, "restart")
    load.start()
    try:
        wait(lambda: len(load.acked) >= 5 * PER_REQUEST)
        kill_influxd(influxd)
        killed_at = len(load.statuses)
        wait(lambda: load.count(200, since=killed_at) >= 10)
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0, first.log()
    finally:
        load.stop()
    acked = set(load.acked)
    spooled = sorted(spool.glob("*.lp"))
    assert len(spooled) == 1, spooled
    spooled_lines = spooled[0].read_bytes().count(b"\n")
    assert spooled_lines >= 10 * POINTS_PER_REQUEST
    assert f"spooled {spooled_lines} points" in first.log()

    # The next start replays the spool; a crash before InfluxDB is back must not lose it.
    second = servers(**options)
    wait(lambda: metric(second, "rtcscope_buffer_depth") == spooled_lines)
    assert metric(second, "rtcscope_spool_bytes") == os.path.getsize(spooled[0])
    second.process.kill()
    second.wait()
    assert sorted(spool.glob("*.lp")) == spooled

    influxd.start()
    third = servers(**options)
    wait(lambda: not list(spool.glob("*.lp")), timeout=60)
    wait(lambda: count_points(influxd, "restart", field="seq") >= len(acked), timeout=60)
    stored = stored_seqs(influxd, "restart")
    assert len(stored) == len(set(stored)), "a sample was stored twice"
    assert acked <= set(stored), f"lost {len(acked - set(stored))} acknowledged samples"
    assert set(stored) <= acked | set(load.unknown)
    third.signal(signal.SIGTERM)
    assert third.wait(30) == 0
    assert not list(spool.glob("*.lp"))


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(flush_interval=0.3)
async def test_a_refused_point_does_not_take_its_batch_with_it(http_client, base_url, app, influxd, database):
    """InfluxDB refuses a point whose field type conflicts with what is stored;
    the writer isolates that point and every other one of the batch lands."""
    ts = now_ms()
    request = urllib.request.Request(f"{influxd.url}/write?db={database}&rp=rtcscope",
                                     data=f"rtc_stats,call=other weird=1i {ts - 10}000000".encode())
    urllib.request.urlopen(request, timeout=10)
    samples = [{"call": "batch", "ts": ts + i, "stats": {"seq": i}} for i in range(99)]
    samples.insert(50, {"call": "batch", "ts": ts + 500, "stats": {"seq": 500, "weird": 2.5}})
    response = await http_client.fetch(base_url + "/v1/stats/write/", method="POST", body=json.dumps(samples))
    assert json.loads(response.body)["accepted"] == 100
    await eventually(lambda: app.writer.depth == 0)
    assert app.writer.points_rejected == 1
    assert stored_seqs(influxd, database) == list(range(99))


@pytest.mark.gen_test(timeout=60)
async def test_shutdown_cuts_a_hanging_write_short_and_spools_it(http_client, start_server, influxd, database,
                                                                 tmp_path):
    """InfluxDB takes the write but does not answer in time: the shutdown
    deadline cancels it mid-write, the batch is spooled, and replaying it
    next time stores each sample once although InfluxDB got it twice."""
    proxy = await SlowProxy(influxd.http_port, delay=30).start()
    spool = tmp_path / "spool"
    first = await start_server(influxdb_url=f"http://127.0.0.1:{proxy.port}", database=database,
                               flush_interval=0.1, spool_dir=str(spool))
    direct = Store(influxd.url, database)  # set up directly: through the proxy it would time out
    await direct.setup()
    await direct.close()
    ts = now_ms()
    response = await http_client.fetch(first.base_url + "/v1/stats/write/", method="POST", body=json.dumps(
        [{"call": "hang", "ts": ts - i, "stats": {"seq": i}} for i in range(50)]))
    assert response.code == 200
    await eventually(lambda: proxy.connections > 0 and first.writer.depth == 51)
    await asyncio.sleep(0.3)  # the write is on its way, its answer held back
    await first.writer.stop(timeout=0.5)
    spooled = list(spool.glob("*.lp"))
    assert len(spooled) == 1 and spooled[0].read_bytes().count(b"\n") == 51
    second = await start_server(influxdb_url=influxd.url, database=database, flush_interval=0.1,
                                spool_dir=str(spool))
    await eventually(lambda: not list(spool.glob("*.lp")) and second.writer.depth == 0)
    assert stored_seqs(influxd, database) == list(range(50))
    await proxy.close()
