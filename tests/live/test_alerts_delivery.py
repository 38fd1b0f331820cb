"""Alerts end to end in one server: samples in, rules fire and resolve, webhooks
reach a real local receiver, /v1/alerts/, /ws/calls and /metrics tell the same."""
import asyncio
import hashlib
import hmac
import json
import time

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

import server
from tests.support.alerts import Feeder, high_rtt_rules, sending
from tests.support.api import get, post
from tests.support.metrics import exposed
from tests.support.waits import eventually

SECRET = "hook-secret"
TICK = 0.2
FOR_S = 1.0
RULES = high_rtt_rules("1s")


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return str(path)


def verify(secret, headers, body):
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Rtcscope-Signature", ""), expected)


def alert_config(receiver, rules_file, **extra):
    return {"alert_rules": rules_file, "alert_webhooks": [receiver.url], "alert_secret": SECRET,
            "quality_window": 1.0, "tick": TICK, "public_url": "https://rtc.example", **extra}


@pytest.fixture
def app_config(app_config, receiver, rules_file):
    app_config.update(alert_config(receiver, rules_file))
    return app_config


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_a_bad_call_fires_once_signed_resolves_on_recovery_and_a_good_call_never_fires(
        http_client, base_url, app, receiver):
    await sending(app)
    feeder = Feeder(http_client, base_url)
    feeder.rtt = {"bad-1": 650.0, "good-1": 35.0}
    feeder.start()
    try:
        await eventually(lambda: ("bad-1", "high_rtt", "firing") in receiver.events(), timeout=15)
        fired_at = receiver.received[0][0]
        # The window holds only bad samples from the first one: it fires `for` after the
        # first tick that sees it (flush + tick), within a tick and a margin.
        assert fired_at - feeder.first_post["bad-1"] <= FOR_S + 0.1 + 2 * TICK + 2.0
        _, headers, body = receiver.received[0]
        assert verify(SECRET, headers, body)
        assert not verify("another-secret", headers, body)
        assert headers["Content-Type"] == "application/json"
        alert = json.loads(body)
        assert set(alert) == {"id", "rule", "severity", "state", "scope", "call", "peer", "value", "threshold",
                              "since", "at", "url"}
        assert alert["scope"] == "peer"
        assert (alert["rule"], alert["severity"], alert["state"], alert["call"], alert["peer"], alert["threshold"]) == (
            "high_rtt", "critical", "firing", "bad-1", "alice", 400.0)
        assert alert["value"] == pytest.approx(650.0)
        assert alert["at"] - alert["since"] >= FOR_S * 1000
        assert alert["at"] - alert["since"] <= FOR_S * 1000 + 3 * TICK * 1000
        assert alert["url"] == "https://rtc.example/calls/bad-1/"

        async def listed_firing():
            status, listed, _ = await get(http_client, base_url + "/v1/alerts/")
            assert status == 200
            return listed if listed["count"] else None

        # Listed from InfluxDB: within a flush interval of its delivery.
        assert await eventually(listed_firing) == {"alerts": [alert], "count": 1}

        feeder.rtt["bad-1"] = 40.0
        await eventually(lambda: ("bad-1", "high_rtt", "resolved") in receiver.events(), timeout=15)
        resolved = receiver.alerts()[-1]
        assert (resolved["id"], resolved["since"]) == (alert["id"], alert["since"])
        assert resolved["at"] > alert["at"] and resolved["value"] < 400
        await asyncio.sleep(4 * TICK)
    finally:
        await feeder.stop()
    assert receiver.events() == [("bad-1", "high_rtt", "firing"), ("bad-1", "high_rtt", "resolved")]
    assert all(verify(SECRET, headers, body) for _, headers, body in receiver.received)

    status, listed, _ = await get(http_client, base_url + "/v1/alerts/")
    assert (status, listed) == (200, {"alerts": [], "count": 0})
    status, listed, _ = await get(http_client, base_url + "/v1/alerts/?state=all&since=1h")
    assert status == 200 and listed["count"] == 1
    assert listed["alerts"][0] == resolved
    status, of_call, _ = await get(http_client, base_url + "/v1/alerts/?state=all&call=bad-1")
    assert (status, of_call) == (200, listed)
    status, of_call, _ = await get(http_client, base_url + "/v1/alerts/?state=all&call=good-1")
    assert (status, of_call) == (200, {"alerts": [], "count": 0})
    status, of_scope, _ = await get(http_client, base_url + "/v1/alerts/?state=all&since=1h&scope=peer")
    assert (status, of_scope) == (200, listed)
    for query in ("scope=cohort", "dimension=turn_server"):
        status, of_scope, _ = await get(http_client, base_url + "/v1/alerts/?state=all&since=1h&" + query)
        assert (status, of_scope) == (200, {"alerts": [], "count": 0})
    _, metrics, response = await get(http_client, base_url + "/metrics")
    text = response.body.decode()
    assert exposed(text, "rtcscope_alerts_firing") == 0
    assert exposed(text, "rtcscope_webhook_deliveries_total", result="delivered") == 2


@pytest.mark.gen_test(timeout=90)
async def test_bad_alert_list_parameters_are_400(http_client, base_url, app):
    for query in ("state=open", "since=yesterday", "state=all&state=firing", "call=a%20b", "scope=call",
                  "dimension=nope"):
        status, document, _ = await get(http_client, base_url + "/v1/alerts/?" + query)
        assert status == 400, query
        assert document["error"]["code"] == "bad_request"


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_a_receiver_that_is_down_gets_the_events_once_it_is_back(http_client, base_url, app, receiver):
    await sending(app)
    receiver.down()
    feeder = Feeder(http_client, base_url)
    feeder.rtt = {"bad-2": 700.0}
    feeder.start()
    try:
        await eventually(lambda: app.telemetry.value("rtcscope_webhook_deliveries_total", result="failed") >= 2,
                         timeout=15)
        assert receiver.received == []
        receiver.up()
        await eventually(lambda: ("bad-2", "high_rtt", "firing") in receiver.events(), timeout=20)
    finally:
        await feeder.stop()
    assert [event for event in receiver.events() if event[2] == "firing"] == [("bad-2", "high_rtt", "firing")]


@pytest.mark.gen_test(timeout=90)
async def test_alerts_are_pushed_on_the_calls_websocket(http_client, base_url, app, receiver):
    await sending(app)
    socket = await tornado.websocket.websocket_connect(base_url.replace("http", "ws") + "/ws/calls")
    assert json.loads(await socket.read_message())["type"] == "snapshot"
    feeder = Feeder(http_client, base_url)
    feeder.rtt = {"bad-3": 900.0}
    feeder.start()
    try:
        deadline = time.monotonic() + 15
        message = None
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(socket.read_message(), 15))
            if message["type"] == "alert":
                break
        assert message["type"] == "alert"
        await eventually(lambda: receiver.alerts(), timeout=10)
        assert message == {"type": "alert", **receiver.alerts()[0]}
    finally:
        await feeder.stop()
        socket.close()


LOW_FPS_RULES = """
[[rule]]
name = "low_fps"
metric = "framesPerSecond"
op = "<"
threshold = 10
for = "0s"

[[rule]]
name = "sending_too_much"
metric = "bitrate"
op = ">"
threshold = 1000000
for = "0s"
"""


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_rules_on_other_registry_metrics_read_their_window_too(http_client, base_url, app, app_config, receiver,
                                                                   tmp_path):
    await app.stop()
    rules = tmp_path / "fps.toml"
    rules.write_text(LOW_FPS_RULES)
    other = server.make_app(**{**app_config, "alert_rules": str(rules)})
    await other.start()
    http = tornado.httpserver.HTTPServer(other)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http.add_sockets(sockets)
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/v1/stats/write/"
    try:
        await sending(other)
        # Two video streams' kinds of one peer: the lowest frame rate is the one a `<` rule is about.
        for step in range(12):
            body = [{"call": "fps-1", "peer": "alice", "kind": "video", "stats": {"framesPerSecond": 4.0,
                     "bytesSent": 1000.0 * step}},
                    {"call": "fps-1", "peer": "alice", "kind": "audio", "stats": {"framesPerSecond": 30.0}},
                    {"call": "fps-2", "peer": "bob", "kind": "video", "stats": {"framesPerSecond": 30.0,
                     "bytesSent": 1_000_000.0 * step}}]
            status, result, _ = await post(http_client, url, body)
            assert status == 200, result
            await asyncio.sleep(0.2)
        await eventually(lambda: len(receiver.events()) >= 2, timeout=15)
    finally:
        http.stop()
        await other.stop()
    assert sorted(set(receiver.events())) == [("fps-1", "low_fps", "firing"), ("fps-2", "sending_too_much", "firing")]
    low = next(alert for alert in receiver.alerts() if alert["rule"] == "low_fps")
    assert low["value"] == pytest.approx(4.0)
