"""conf/nginx.conf, as shipped, in front of two server processes on one InfluxDB:
keep-alive ingest, REST, a websocket live update, X-Forwarded-* honoured."""
import http.client
import json
import os
import re
import time

import pytest

from rtcscope.registry import extract
from tests.support.api import get, get_json, post
from tests.support.metrics import metric
from tests.support.nginx import Nginx
from tests.support.processes import ROOT, ServerProcess
from tests.support.reports import clean_reports, report_delta
from tests.support.samples import now_ms
from tests.support.waits import eventually, wait
from tests.support.websockets import Peer, Viewer

pytestmark = pytest.mark.nginx


def test_keep_alive_ingest_spreads_over_the_processes(deployment, influxd):
    nginx, servers, database = deployment
    before = [metric(server, "rtcscope_samples_accepted_total") for server in servers]
    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    sock_before = None
    start = now_ms() - 10_000
    for i in range(40):
        body = json.dumps({"call": "nginx-ka", "peer": "p", "ts": start + i, "stats": {"seq": i}})
        connection.request("POST", "/v1/stats/write/", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert json.loads(response.read())["accepted"] == 1
        assert sock_before in (None, connection.sock)  # one client connection throughout
        sock_before = connection.sock
    connection.close()
    after = [metric(server, "rtcscope_samples_accepted_total") for server in servers]
    assert sum(after) - sum(before) == 40
    assert all(a > b for a, b in zip(after, before)), (before, after)  # both processes took some
    def stored():
        return sorted(row["seq"] for row in
                      influxd.rows('SELECT "seq" FROM "rtc_stats" WHERE "call" = \'nginx-ka\'', database))

    wait(lambda: len(stored()) >= 40, timeout=20)
    assert stored() == list(range(40))


def test_errors_stay_json_through_nginx(deployment):
    nginx, _, _ = deployment
    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    for size, answered_by in ((1024 * 1024 + 1, "server"), (3 * 1024 * 1024, "nginx")):
        connection.request("POST", "/v1/stats/write/", b"#" * size, {"Content-Type": "text/plain"})
        response = connection.getresponse()
        assert response.status == 413, answered_by
        assert response.getheader("Content-Type").startswith("application/json"), answered_by
        assert json.loads(response.read())["error"]["code"] == "body_too_large"
        connection.close()
    # The server read the body it refused instead of resetting the connection under its answer.
    assert "reset by peer" not in nginx.error_log() and "prematurely closed" not in nginx.error_log()


def test_a_burst_beyond_the_ingest_limit_gets_429_from_nginx(deployment):
    """limit_req in front of every process: a client that posts faster than the
    zone's rate beyond its burst gets nginx's JSON 429 with Retry-After, and
    those requests never reach a process."""
    nginx, servers, _ = deployment
    shipped = open(os.path.join(ROOT, "conf", "nginx.conf")).read()
    burst = int(re.search(r"limit_req zone=rtcscope_ingest burst=(\d+) nodelay;", shipped).group(1))
    before = sum(metric(server, "rtcscope_samples_accepted_total") for server in servers)
    # Its own address, so the zone's state does not touch the other tests.
    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10, source_address=("127.0.0.3", 0))
    statuses, refusals = [], []
    for i in range(3 * burst):
        body = json.dumps({"call": "nginx-burst", "peer": "p", "ts": now_ms(), "stats": {"seq": i}})
        connection.request("POST", "/v1/stats/write/", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        document = json.loads(response.read())
        statuses.append(response.status)
        if response.status == 429:
            refusals.append((document["error"]["code"], response.getheader("Retry-After"),
                             response.getheader("Content-Type")))
    connection.close()
    assert set(statuses) == {200, 429}, statuses
    assert statuses[:burst] == [200] * burst  # the burst goes through at once
    assert statuses.count(429) >= burst // 2, statuses
    assert {code for code, _, _ in refusals} == {"too_many_requests"}
    assert all(retry_after == "1" and kind.startswith("application/json") for _, retry_after, kind in refusals)
    after = sum(metric(server, "rtcscope_samples_accepted_total") for server in servers)
    assert after - before == statuses.count(200)


def test_forwarded_client_address_is_honoured(deployment):
    """The client connects from 127.0.0.2; with --xheaders the servers log that
    address (from nginx's X-Real-IP), not nginx's own 127.0.0.1."""
    nginx, servers, _ = deployment
    marker = f"xff-{now_ms()}"
    for _ in range(2):  # round robin: one request reaches each process
        connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10,
                                                source_address=("127.0.0.2", 0))
        connection.request("GET", f"/healthz?{marker}", headers={"X-Real-IP": "203.0.113.9"})
        assert connection.getresponse().status == 200
        connection.close()
    time.sleep(0.5)
    logs = [line for server in servers for line in server.log().splitlines() if marker in line]
    assert logs and all("(127.0.0.2)" in line for line in logs), logs


@pytest.mark.gen_test(timeout=90)
async def test_websocket_live_update_and_agreement_through_nginx(deployment, http_client):
    nginx, servers, _ = deployment
    viewers = [await Viewer.open(nginx.url, "/ws/graph/rtt", origin=nginx.url) for _ in range(4)]
    try:
        for viewer in viewers:
            await viewer.next("snapshot")
        call, first = f"nginx-live-{now_ms()}", now_ms() - 500
        status, body, _ = await post(http_client, nginx.url + "/v1/stats/write/",
                                     [{"call": call, "peer": "alice", "ts": first, "stats": {"rtt": 33.0}}])
        assert status == 200, body
        for viewer in viewers:
            _, started = await viewer.next("call_started", call)
            assert started["at"] == first
            _, points = await viewer.next("points", call)
            assert points["calls"][call][-1][1] == 33.0

        # The REST answer through nginx, and each process asked directly, agree.
        async def live_everywhere():
            answers = [await get(http_client, url + "/v1/calls/?state=live")
                       for url in [nginx.url] + [server.url for server in servers]]
            return all(status == 200 for status, _, _ in answers) and \
                all(call in [c["call"] for c in body["calls"]] for _, body, _ in answers)

        await eventually(live_everywhere, timeout=20, interval=0.2)
        status, _, _ = await post(http_client, nginx.url + "/v1/stats/write/",
                                  {"call": call, "peer": "alice", "event": "end"})
        assert status == 200
        for viewer in viewers:
            await viewer.next("call_ended", call)
        ended = [await get(http_client, server.url + f"/v1/calls/{call}/") for server in servers]
        assert all(body["state"] == "ended" for _, body, _ in ended), ended
    finally:
        for viewer in viewers:
            viewer.close()


@pytest.mark.gen_test(timeout=60)
async def test_rtcscope_js_websocket_through_nginx(deployment, influxd):
    """/v1/stats/ws is upgraded by nginx: a full report and a delta are acknowledged and stored."""
    nginx, _, database = deployment
    reports = clean_reports()["caller"]
    call, ts = f"nginx-ws-{now_ms()}", now_ms()
    peer = await Peer(nginx.url, call, "alice", origin="https://app.example").connect()
    await peer.send([{"ts": ts, "report": reports[0]}, dict(report_delta(reports[0], reports[1]), ts=ts + 1000)])
    assert await peer.answers() == [{"type": "ack", "seq": 2}]
    peer.connection.close()
    want = len(extract(reports[0])) + len(extract(reports[1]))
    await eventually(lambda: len(influxd.rows(f"SELECT * FROM rtc_stats WHERE call = '{call}'", database)) == want)


def test_ingest_only_processes_take_the_ingest_and_a_detector_process_the_views(influxd, tmp_path):
    """The fleet layout of conf/nginx.conf: ingest goes to the ingest-only process, pages,
    the call list and live views to the one with the detector, and the call one took in
    the other shows live."""
    database = f"nginxroles{os.getpid()}"
    common = {"influxdb_url": influxd.url, "database": database, "xheaders": "true", "flush_interval": "0.1s",
              "tick": "0.2s", "call_timeout": "5s"}
    viewing = ServerProcess(str(tmp_path), spool_dir=tmp_path / "spool-v", wal_dir=tmp_path / "wal-v", **common).start()
    ingest = ServerProcess(str(tmp_path), spool_dir=tmp_path / "spool-i", wal_dir=tmp_path / "wal-i", detector="false",
                           **common).start()
    nginx = Nginx(str(tmp_path / "nginx"), [viewing.port] * 2, ingest_ports=[ingest.port] * 2).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
        body = json.dumps([{"call": "nginx-roles", "peer": "p", "kind": "audio", "ts": now_ms(), "stats": {"rtt": 40.0}}])
        connection.request("POST", "/v1/stats/write/", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["accepted"]) == (200, 1)
        assert metric(ingest, "rtcscope_samples_accepted_total") == 1
        assert metric(viewing, "rtcscope_samples_accepted_total") == 0
        # Janus's event handler posts go to an ingest process too (one per Janus address).
        janus_event = {"emitter": "janus-1", "type": 16, "subtype": 1, "timestamp": now_ms() * 1000, "session_id": 1,
                       "handle_id": 2, "opaque_id": "nginx-roles/p", "event": {"ice": "ready"}}
        connection.request("POST", "/v1/integrations/janus/", json.dumps([janus_event]),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["accepted"]) == (200, 1)
        assert metric(ingest, "rtcscope_samples_accepted_total") == 2
        connection.close()

        def listed():
            status, document = get_json(nginx.url + "/v1/calls/?state=live")
            return status == 200 and [entry["call"] for entry in document["calls"]]

        wait(lambda: listed() == ["nginx-roles"], timeout=20)
        status, document = ingest.get_json("/v1/calls/?state=live")
        assert (status, document["error"]["code"]) == (421, "no_detector")
    finally:
        nginx.stop()
        for server in (ingest, viewing):
            server.stop()
