"""An ingest-only process (--detector=false) beside one that runs the detector, on one
InfluxDB: what the first takes in, the second shows live; the first answers the
detector's routes with a JSON 421, runs no tick and reads nothing of the feed."""
import json

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.support.api import get, post
from tests.support.metrics import exposed, sample_names
from tests.support.reports import REPORTS
from tests.support.reports import report_delta as delta
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import Peer, Viewer


@pytest.fixture
def pair(io_loop, start_server, influxd, database):
    """(ingest-only app, detector app) on one database."""
    common = {"influxdb_url": influxd.url, "database": database, "flush_interval": 0.1, "tick": 0.2,
              "call_timeout": 3.0}

    async def start():
        return await start_server(detector=False, **common), await start_server(**common)

    return io_loop.run_sync(start)


@pytest.mark.gen_test(timeout=60)
async def test_what_an_ingest_only_process_takes_the_detector_process_shows(http_client, pair):
    ingest, viewing = pair
    calls = await Viewer.open(viewing.base_url, "/ws/calls")
    await calls.next("snapshot")
    peer = await Peer(ingest.base_url, "role-ws", "alice").connect()
    start = now_ms() - 2000
    await peer.send([{"ts": start, "report": REPORTS[0]}, dict(delta(REPORTS[0], REPORTS[1]), ts=start + 1000)])
    assert await peer.answers() == [{"type": "ack", "seq": 2}]
    status, _, _ = await post(http_client, ingest.base_url + "/v1/stats/write/",
                           [{"call": "role-post", "peer": "bob", "kind": "audio", "ts": now_ms(),
                             "stats": {"rtt": 420.0, "jitter": 4.0}}])
    assert status == 200

    def started():
        return {entry["call"] for message in calls.messages if message["type"] == "calls"
                for entry in message["started"]}

    await eventually(lambda: started() == {"role-ws", "role-post"})
    status, listed, _ = await get(http_client, viewing.base_url + "/v1/calls/?state=live&sort=worst")
    assert status == 200
    assert [entry["call"] for entry in listed["calls"]] == ["role-post", "role-ws"]  # 420 ms rtt is the worst
    worst = listed["calls"][0]["quality"]
    assert "high_rtt" in worst["problems"] and worst["worst_peer"] == "bob"
    # The ingest-only process ran no tick, asked InfluxDB nothing of the feed and counts no detector.
    assert ingest.detector is None
    assert len(ingest.periodic_callbacks) == len(viewing.periodic_callbacks) - 1
    text = (await http_client.fetch(ingest.base_url + "/metrics")).body.decode()
    assert exposed(text, "rtcscope_samples_accepted_total") is not None and exposed(text, "rtcscope_alerts_sender") == 0
    assert not {"rtcscope_detector_ticks_total", "rtcscope_alerts_firing"} & sample_names(text)
    assert "rtcscope_detector_ticks_total" in sample_names((await http_client.fetch(viewing.base_url + "/metrics")).body.decode())


@pytest.mark.gen_test(timeout=60)
async def test_periodic_callbacks_run_with_the_application_and_stop_with_it(pair):
    for application in pair:
        assert application.periodic_callbacks
        assert all(callback.is_running() for callback in application.periodic_callbacks)
        await application.stop()
        assert not any(callback.is_running() for callback in application.periodic_callbacks)


@pytest.mark.gen_test(timeout=60)
async def test_an_ingest_only_process_answers_the_detectors_routes_with_421(http_client, pair):
    ingest, _ = pair
    for path in ("/v1/calls/", "/v1/calls/?state=ended", "/ws/calls", "/ws/graph/rtt"):
        status, document, _ = await get(http_client, ingest.base_url + path)
        assert status == 421, path
        assert document["error"]["code"] == "no_detector"
        assert "--detector=false" in document["error"]["message"]
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(ingest.base_url.replace("http://", "ws://") + "/ws/calls"))
    assert refused.value.code == 421
    assert json.loads(refused.value.response.body)["error"]["code"] == "no_detector"
    # What reads InfluxDB, not the detector's memory, still answers here.
    status, _, _ = await post(http_client, ingest.base_url + "/v1/stats/write/",
                           [{"call": "role-one", "peer": "p", "kind": "audio", "ts": now_ms(), "stats": {"rtt": 30.0}}])
    assert status == 200

    async def summary():
        status, document, _ = await get(http_client, ingest.base_url + "/v1/calls/role-one/")
        return status == 200 and document

    document = await eventually(summary)
    assert document["call"] == "role-one"
    for path in ("/v1/alerts/", "/v1/fleet/", "/readyz", "/v1/metrics/"):
        status, _, _ = await get(http_client, ingest.base_url + path)
        assert status == 200, path
