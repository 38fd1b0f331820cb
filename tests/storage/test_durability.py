"""Acknowledged samples survive InfluxDB outages, crashes and restarts, exactly once.

Real processes: server.py is started as an operator would start it, influxd is
killed and restarted, the server gets SIGTERM and SIGKILL. Every sample
carries a unique `seq` and timestamp, so a sample stored twice would show
as two rows and a lost one as a missing number. A 200 means the request's
points are in the write-ahead log, so SIGKILL loses none of them."""
import asyncio
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from rtcscope.storage.store import Store
from rtcscope.storage.wal import RECORD_HEADER, _records
from tests.support.api import post
from tests.support.influxd import Influxd, SlowProxy, count_points
from tests.support.metrics import exposed, metric
from tests.support.processes import ROOT
from tests.support.samples import now_ms
from tests.support.waits import eventually, wait

pytestmark = pytest.mark.slow

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
                assert answer["error"]["code"] in ("wal_full", "shutting_down"), answer
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


def kill(server):
    server.process.kill()  # SIGKILL: no flush, no goodbye
    server.process.wait()


@contextlib.contextmanager
def load_through_an_outage(server, influxd, call, acked_while_down):
    """A client posting while InfluxDB goes down (SIGKILL): the block runs once
    `acked_while_down` requests were acknowledged without it; the client
    stops after the block."""
    server.wait_ready()
    load = Load(server.port, call)
    load.start()
    try:
        wait(lambda: len(load.acked) >= 5 * PER_REQUEST)
        kill_influxd(influxd)
        killed_at = len(load.statuses)
        wait(lambda: load.count(200, since=killed_at) >= acked_while_down)
        yield load
    finally:
        load.stop()


def acknowledged_then_killed(server, call, requests):
    """Post until `requests` requests were acknowledged, then SIGKILL the server; the client's record."""
    load = Load(server.port, call)
    load.start()
    try:
        wait(lambda: len(load.acked) >= requests * PER_REQUEST)
    finally:
        load.stop()
    kill(server)
    return load


def stored_count(influxd, database):
    """Samples stored so far; 0 until the (re)started server has created the database."""
    try:
        return count_points(influxd, database, field="seq")
    except AssertionError:
        return 0


def assert_exactly_once(influxd, database, load):
    """Every acknowledged sample stored once; nothing stored that was not sent."""
    acked = set(load.acked)
    wait(lambda: stored_count(influxd, database) >= len(acked), timeout=60)
    time.sleep(0.5)  # anything written twice would land by now
    stored = stored_seqs(influxd, database)
    assert len(stored) == len(set(stored)), "a sample was stored twice"
    assert acked <= set(stored), f"lost {len(acked - set(stored))} acknowledged samples"
    assert set(stored) <= acked | set(load.unknown)


def test_a_full_log_is_503_with_retry_after_and_loses_nothing(own_influxd, servers, tmp_path):
    """InfluxDB down: ingest acknowledges into the log (far beyond the memory
    buffer) until --max-wal, then answers 503 + Retry-After; when InfluxDB is
    back every acknowledged sample arrives once."""
    influxd = own_influxd
    server = servers(influxdb_url=influxd.url, database="outage", max_buffer=200, max_wal=96 * 1024,
                     flush_interval="0.1s")
    server.wait_ready()
    load = Load(server.port, "outage")
    load.start()
    try:
        wait(lambda: len(load.acked) >= 10 * PER_REQUEST)
        kill_influxd(influxd)
        killed_at = len(load.statuses)
        wait(lambda: 503 in load.statuses[killed_at:], timeout=60)
        first_503 = load.statuses.index(503, killed_at)
        acked_while_down = load.statuses[killed_at:first_503].count(200)
        assert acked_while_down * POINTS_PER_REQUEST > 5 * 200, "memory full must not refuse: the log takes it"
        assert all(seconds >= 1 for seconds in load.retry_after)
        status, ready = server.get_json("/readyz")
        assert status == 503 and ready["wal"]["full"] is True and ready["influxdb"] is False
        assert ready["buffer_memory"] <= 200 and ready["buffer"] > 5 * 200
        assert 64 * 1024 < ready["wal"]["bytes"] <= 96 * 1024
        assert server.get_json("/healthz") == (200, {"status": "ok"})
        assert metric(server, "rtcscope_wal_full") == 1
        influxd.start()
        back_at = len(load.statuses)
        wait(lambda: load.count(200, since=back_at) >= 5, timeout=60)
    finally:
        load.stop()
    assert load.refused and not load.unknown
    assert_exactly_once(influxd, "outage", load)
    wait(lambda: metric(server, "rtcscope_buffer_depth") == 0)
    assert server.get_json("/readyz")[0] == 200


def test_sigkill_while_influxdb_is_down_loses_nothing(own_influxd, servers, tmp_path):
    influxd = own_influxd
    options = dict(influxdb_url=influxd.url, database="crash", wal_dir=tmp_path / "wal", flush_interval="0.1s",
                   max_buffer=300)
    first = servers(**options)
    with load_through_an_outage(first, influxd, "crash", acked_while_down=40) as load:
        kill(first)
    # A start with InfluxDB still down replays nothing yet, and a second crash then loses nothing either.
    second = servers(**options)
    wait(lambda: metric(second, "rtcscope_buffer_depth") >= 40 * POINTS_PER_REQUEST)
    kill(second)
    influxd.start()
    third = servers(**options)
    assert_exactly_once(influxd, "crash", load)
    wait(lambda: metric(third, "rtcscope_buffer_depth") == 0)
    third.signal(signal.SIGTERM)
    assert third.wait(30) == 0
    assert not list((tmp_path / "wal").glob("*.wal")), "a drained log leaves no segment behind"


def test_sigkill_mid_load_with_influxdb_up_loses_nothing(own_influxd, servers, tmp_path):
    influxd = own_influxd
    options = dict(influxdb_url=influxd.url, database="midload", wal_dir=tmp_path / "wal", flush_interval="0.2s")
    first = servers(**options)
    first.wait_ready()
    loads = [Load(first.port, f"midload{n}") for n in range(3)]
    for n, load in enumerate(loads):
        load.seq = n * 100_000  # seq numbers (and timestamps, 100 s apart) unique across the calls
        load.start()
    try:
        wait(lambda: all(len(load.acked) >= 30 * PER_REQUEST for load in loads), timeout=60)
        kill(first)
    finally:
        for load in loads:
            load.stop()
    assert count_points(influxd, "midload", field="seq") < sum(len(load.acked) for load in loads) + 1
    servers(**options)
    everything = Load(0, "all")
    for load in loads:
        everything.acked += load.acked
        everything.unknown += load.unknown
    assert_exactly_once(influxd, "midload", everything)


def segment_records(path):
    data = path.read_bytes()
    return [(end - RECORD_HEADER.size - len(payload), end, payload) for _, end, payload in _records(data, 8)]


def test_a_torn_last_record_is_cut_and_the_rest_replayed(own_influxd, servers, tmp_path):
    """A power loss can leave a record half on disk: the next start cuts it
    (it was never answered: a torn record is one whose fsync had not
    completed) and replays every record before it."""
    influxd = own_influxd
    wal_dir = tmp_path / "wal"
    influxd.stop()
    first = servers(influxdb_url=influxd.url, database="torn", wal_dir=wal_dir, flush_interval="0.1s")
    load = acknowledged_then_killed(first, "torn", requests=20)
    (segment,) = sorted(wal_dir.glob("*.wal"))
    records = segment_records(segment)
    start, end, payload = records[-1]
    cut_seqs = {int(line.split(b"seq=")[1].split(b" ")[0]) for line in payload.split(b"\n") if b"seq=" in line}
    assert len(cut_seqs) == PER_REQUEST
    with open(segment, "r+b") as segment_file:
        segment_file.truncate(start + (end - start) // 2)
    influxd.start()
    second = servers(influxdb_url=influxd.url, database="torn", wal_dir=wal_dir, flush_interval="0.1s")
    expected = set(load.acked) - cut_seqs
    wait(lambda: count_points(influxd, "torn", field="seq") >= len(expected), timeout=60)
    wait(lambda: metric(second, "rtcscope_buffer_depth") == 0)
    assert set(stored_seqs(influxd, "torn")) == expected
    assert metric(second, "rtcscope_wal_records_cut_total") == 1
    assert "cut" in second.log() and "torn or damaged record" in second.log()


def run_refused(tmp_path, **options):
    """Start server.py expecting it to refuse: (exit code, its output)."""
    args = [f"--{name}={value}" for name, value in options.items()]
    result = subprocess.run([sys.executable, os.path.join(ROOT, "server.py"), "--port=0", *args],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


def test_a_second_process_on_the_same_log_refuses_to_start(influxd, servers, tmp_path):
    wal_dir = tmp_path / "wal"
    first = servers(influxdb_url=influxd.url, database="locked", wal_dir=wal_dir)
    code, output = run_refused(tmp_path, influxdb_url=influxd.url, database="locked", wal_dir=wal_dir)
    assert code == 2, output
    assert f"--wal-dir {wal_dir} is in use by another process (pid {first.process.pid})" in output
    assert first.get_json("/readyz")[0] == 200  # the first one is untouched
    first.stop()
    servers(influxdb_url=influxd.url, database="locked", wal_dir=wal_dir)  # free once it has gone


def test_another_databases_log_is_not_replayed_into_this_one(own_influxd, servers, tmp_path):
    influxd = own_influxd
    wal_dir = tmp_path / "wal"
    influxd.stop()
    first = servers(influxdb_url=influxd.url, database="one", wal_dir=wal_dir)
    load = acknowledged_then_killed(first, "one", requests=5)
    influxd.start()
    code, output = run_refused(tmp_path, influxdb_url=influxd.url, database="two", wal_dir=wal_dir)
    assert code == 2, output
    assert "holds points for database 'one', not 'two'" in output
    influxd.query('CREATE DATABASE "two"')
    assert count_points(influxd, "two", field="seq") == 0
    servers(influxdb_url=influxd.url, database="one", wal_dir=wal_dir)  # its own database takes it
    assert_exactly_once(influxd, "one", load)


def test_an_old_spool_directory_is_replayed_once(own_influxd, servers, tmp_path):
    """Spool files of the version before the log are taken into the log at start and deleted."""
    influxd = own_influxd
    spool = tmp_path / "spool"
    spool.mkdir()
    ts = now_ms() * 1_000_000
    (spool / "spool-1-1.lp").write_bytes(b"".join(
        f"rtc_stats,call=old,peer=p seq={n}.0 {ts + n * 1000}\n".encode() for n in range(300)))
    (spool / "spool-2-1.lp").write_bytes(b"".join(
        f"rtc_stats,call=old,peer=p seq={n}.0 {ts + n * 1000}\n".encode() for n in range(300, 350)))
    options = dict(influxdb_url=influxd.url, database="upgrade", spool_dir=spool, wal_dir=tmp_path / "wal",
                   flush_interval="0.1s")
    first = servers(**options)
    assert not list(spool.glob("*.lp"))
    wait(lambda: influxd.has_database("upgrade") and count_points(influxd, "upgrade", field="seq") == 350, timeout=60)
    assert stored_seqs(influxd, "upgrade") == list(range(350))
    wait(lambda: metric(first, "rtcscope_buffer_depth") == 0)
    assert "took 300 spooled points" in first.log()
    first.stop()
    second = servers(**options)
    second.wait_ready()
    assert metric(second, "rtcscope_points_written_total") == 0  # nothing replayed a second time
    assert metric(second, "rtcscope_buffer_depth") == 0


def test_sigterm_with_influxdb_down_leaves_the_rest_in_the_log(own_influxd, servers, tmp_path):
    influxd = own_influxd
    options = dict(influxdb_url=influxd.url, database="restart", wal_dir=tmp_path / "wal", flush_interval="0.1s",
                   shutdown_timeout="1s")
    first = servers(**options)
    with load_through_an_outage(first, influxd, "restart", acked_while_down=10) as load:
        started = time.monotonic()
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0, first.log()
        assert time.monotonic() - started < 15
    assert "points left in the write-ahead log" in first.log()
    influxd.start()
    servers(**options)
    assert_exactly_once(influxd, "restart", load)


@pytest.mark.gen_test(timeout=60)
# No detector tick: each tick also writes the alert sender's heartbeat (docs/alerts.md), not a batch.
@pytest.mark.app_config(flush_interval=0.3, tick=3600.0)
async def test_a_type_conflict_costs_only_its_point_and_is_counted(http_client, base_url, app, influxd, database):
    """InfluxDB refuses a point whose field type conflicts with what is
    stored and writes the rest of the batch (a partial write): the batch is
    done in one write, not split and retried, and the refusal is counted."""
    ts = now_ms()
    request = urllib.request.Request(f"{influxd.url}/write?db={database}&rp=rtcscope",
                                     data=f"rtc_stats,call=other weird=1i {ts - 10}000000".encode())
    urllib.request.urlopen(request, timeout=10)
    before = influxd.write_requests()
    samples = [{"call": "batch", "ts": ts + i, "stats": {"seq": i}} for i in range(99)]
    samples.insert(50, {"call": "batch", "ts": ts + 500, "stats": {"seq": 500, "weird": 2.5}})
    response = await http_client.fetch(base_url + "/v1/stats/write/", method="POST", body=json.dumps(samples))
    assert json.loads(response.body)["accepted"] == 100
    await eventually(lambda: app.writer.depth == 0)
    # Two writes, none retried or split: the points (InfluxDB said what it dropped) and their feed rows.
    assert influxd.write_requests() - before == 2
    feed = influxd.rows("SELECT * FROM rtc_feed.rtc_feed WHERE \"call\" = 'batch'", database)
    assert len(feed) == 1 and feed[0]["peer"] in (None, "") and feed[0]["last"] == ts + 500, feed
    assert app.writer.rejected_by_reason == {"type_conflict": 1, "max_series": 0, "max_values_per_tag": 0, "other": 0}
    assert stored_seqs(influxd, database) == list(range(99))
    response = await http_client.fetch(base_url + "/metrics")
    assert exposed(response.body.decode(), "rtcscope_points_rejected_total", reason="type_conflict") == 1
    response = await http_client.fetch(base_url + "/readyz")
    ready = json.loads(response.body)
    assert response.code == 200 and ready["status"] == "ok"
    assert ready["refused"]["reason"] == "type_conflict" and ready["refused"]["points"] == 1
    assert 'input field "weird"' in ready["refused"]["message"]
    assert ready["points_refused"]["type_conflict"] == 1


@pytest.fixture
def series_limited_influxd(tmp_path):
    instance = Influxd(str(tmp_path / "influxd"), data_options={"index-version": "inmem",
                                                                "max-series-per-database": 5}).start()
    yield instance
    instance.cleanup()


@pytest.mark.gen_test(timeout=60)
async def test_a_series_limit_costs_only_the_new_series(http_client, start_server, series_limited_influxd):
    """Past max-series-per-database InfluxDB drops the points of new series
    and says how many: they are counted, calls already stored keep working."""
    influxd = series_limited_influxd
    application = await start_server(influxdb_url=influxd.url, database="limited", flush_interval=0.1)
    await application.store.setup()
    url = application.base_url + "/v1/stats/write/"
    ts = now_ms()
    # 2 series (samples + presence) per call: 2 calls fit under the limit of 5, the third does not.
    for seq, call in enumerate(["first", "second", "third", "fourth"]):
        status, _, _ = await post(http_client, url, [{"call": call, "ts": ts + seq, "stats": {"seq": seq}}])
        assert status == 200
        await eventually(lambda: application.writer.depth == 0)
    status, _, _ = await post(http_client, url, [{"call": "first", "ts": ts + 100, "stats": {"seq": 100}}])
    assert status == 200
    await eventually(lambda: application.writer.depth == 0)
    assert stored_seqs(influxd, "limited") == [0, 1, 100]
    refused = application.writer.rejected_by_reason["max_series"]
    assert refused >= 3  # the third call's points (one of its series may still have fitted) and the fourth's
    assert application.writer.points_rejected == refused
    assert application.writer.last_refusal["reason"] == "max_series"
    assert "max-series-per-database limit exceeded" in application.writer.last_refusal["message"]


@pytest.mark.gen_test(timeout=60)
async def test_shutdown_cuts_a_hanging_write_short_and_the_log_keeps_it(http_client, start_server, influxd, database,
                                                                         tmp_path):
    """InfluxDB takes the write but does not answer in time: the shutdown
    deadline cancels it mid-write, the points stay in the log, and the next
    start writes them again: each sample is stored once although InfluxDB got
    it twice."""
    proxy = await SlowProxy(influxd.http_port, delay=30).start()
    wal_dir = str(tmp_path / "hanging-wal")  # tmp_path / "wal" is the `app` fixture's
    first = await start_server(influxdb_url=f"http://127.0.0.1:{proxy.port}", database=database,
                               flush_interval=0.1, wal_dir=wal_dir)
    direct = Store(influxd.url, database)  # set up directly: through the proxy it would time out
    await direct.setup()
    await direct.close()
    ts = now_ms()
    response = await http_client.fetch(first.base_url + "/v1/stats/write/", method="POST", body=json.dumps(
        [{"call": "hang", "ts": ts - i, "stats": {"seq": i}} for i in range(50)]))
    assert response.code == 200
    await eventually(lambda: proxy.connections > 0 and first.writer.depth == 52)  # 50 samples, a presence point, its feed row
    await asyncio.sleep(0.3)  # the write is on its way, its answer held back
    await first.writer.stop(timeout=0.5)
    second = await start_server(influxdb_url=influxd.url, database=database, flush_interval=0.1, wal_dir=wal_dir)
    assert second.writer.depth == 52
    await eventually(lambda: second.writer.depth == 0)
    assert stored_seqs(influxd, database) == list(range(50))
    await proxy.close()
