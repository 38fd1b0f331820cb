"""POST /v1/integrations/janus/ against a real influxd, with Janus's own (captured) posts."""
import base64
import gzip
import json
import time

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest

from handlers import ingest
from handlers.janus import JanusEventsHandler
from server import STORED_ROUTES
from tests.support.api import assert_error, get, post
from tests.support.detector import tick
from tests.support.influxd import count_points
from tests.support.janus import posts
from tests.support.samples import FLEET, now_ms
from tests.support.waits import eventually

PATH = "/v1/integrations/janus/"


def moved(name, end_us=None):
    """A capture's posts with every event's time moved so that its last one is `end_us` (now)."""
    documents = [json.loads(body) for body in posts(name)]
    stamps = [event["timestamp"] for document in documents
              for event in (document if isinstance(document, list) else [document])]
    offset = (end_us or time.time_ns() // 1000) - max(stamps)
    for document in documents:
        for event in document if isinstance(document, list) else [document]:
            event["timestamp"] += offset
    return [json.dumps(document) for document in documents]


def metric_value(app, name, **labels):
    return app.telemetry.value(name, **labels)


@pytest.mark.gen_test(timeout=60)
async def test_a_janus_call_is_stored_as_its_sfu_peers(http_client, base_url, app, influxd, database):
    for body in moved("echotest"):
        status, answer, _ = await post(http_client, base_url + PATH, body)
        assert status == 200 and answer["success"] is True, answer
    await eventually(lambda: count_points(influxd, database, "rtc_events") == 1)
    rows = influxd.rows("SELECT * FROM rtc_stats WHERE time > 0", database)
    assert {(row["call"], row["peer"], row["kind"]) for row in rows} == {
        ("c-1", "alice@janus", kind) for kind in ("audio", "video", "connection")}
    media = [row for row in rows if row["kind"] == "video"]
    assert len(media) >= 3 and all(row["packetsReceived"] > 0 and row["jitter"] is not None for row in media)
    # Janus's integers are written as they come, floats to InfluxDB as every value is.
    assert {row["fieldType"] for row in influxd.rows("SHOW FIELD KEYS FROM rtc_stats", database)} == {"float"}
    [end] = influxd.rows("SELECT * FROM rtc_events WHERE time > 0", database)
    assert (end["peer"], end["reason"]) == ("alice@janus", 1.0)

    status, call, _ = await get(http_client, base_url + "/v1/calls/c-1/")
    assert status == 200 and call["peers"] == ["alice@janus"]
    events = sum(len(json.loads(body)) for body in posts("echotest"))
    assert sum(metric_value(app, "rtcscope_janus_events_total", type=name) for name in
               ("core", "transports", "sessions", "handles", "jsep", "webrtc", "media", "plugins")) == events
    assert metric_value(app, "rtcscope_janus_events_skipped_total", reason="no_opaque_id") == 2
    assert metric_value(app, "rtcscope_janus_events_skipped_total", reason="invalid_opaque_id") == 2
    status, _, response = await get(http_client, base_url + "/metrics")
    assert b'rtcscope_janus_events_total{type="media"}' in response.body


@pytest.mark.gen_test(timeout=60)
async def test_ingest_keys_as_query_or_basic_auth_password(http_client, start_server, app_config, tmp_path, influxd,
                                                          database):
    keys = tmp_path / "keys"
    keys.write_text("key-alpha\n")
    application = await start_server(**{**app_config, "ingest_keys": str(keys), "read_token": "reader"})
    await application.store.setup()
    url = application.base_url + PATH
    bodies = moved("echotest")

    status, answer, _ = await post(http_client, url, bodies[0])
    assert_error(status, answer, 401, "unauthorized")
    basic = "Basic " + base64.b64encode(b"janus:key-beta").decode()
    status, answer, _ = await post(http_client, url, bodies[0], headers={"Authorization": basic})
    assert_error(status, answer, 403, "forbidden")
    status, answer, _ = await post(http_client, url + "?key=key-gamma", bodies[0])
    assert_error(status, answer, 403, "forbidden")

    basic = "Basic " + base64.b64encode(b"janus:key-alpha").decode()
    half = len(bodies) // 2
    for body in bodies[:half]:  # backend_user/backend_pwd
        status, answer, _ = await post(http_client, url, body, headers={"Authorization": basic})
        assert status == 200, answer
    for body in bodies[half:]:  # backend = "http://.../v1/integrations/janus/?key=key-alpha"
        status, answer, _ = await post(http_client, url + "?key=key-alpha", body)
        assert status == 200, answer
    await eventually(lambda: count_points(influxd, database, "rtc_events") == 1)
    assert application.telemetry.value("rtcscope_ingest_refused_total", reason="unauthorized") == 1
    assert application.telemetry.value("rtcscope_ingest_refused_total", reason="forbidden") == 2


@pytest.mark.gen_test(timeout=60)
async def test_a_malformed_post_is_a_json_400_and_stores_nothing(http_client, base_url, app, influxd, database):
    good, *_ = [body for body in moved("echotest") if '"c-1/alice"' in body and '"attached"' in body]
    broken = json.loads(good) + [{"type": 32, "subtype": 3, "handle_id": 1, "opaque_id": "c-1/bob",
                                  "event": {"media": "audio", "packets-received": "12"}}]
    for body in (json.dumps(broken), "{", "[1, 2]", '"text"', ""):
        status, answer, _ = await post(http_client, base_url + PATH, body)
        assert_error(status, answer, 400)
    marker = json.dumps({"call": "marker", "stats": {"mark": 1}})
    assert (await post(http_client, base_url + "/v1/stats/write/", marker))[0] == 200
    await eventually(lambda: count_points(influxd, database, field="mark") == 1)
    assert count_points(influxd, database, "rtc_calls") == 1  # the marker's: nothing of the Janus posts


@pytest.mark.gen_test(timeout=60)
async def test_compressed_posts_are_taken(http_client, base_url, app, influxd, database):
    """Janus's `compress = true` gzips each post (Content-Encoding: gzip)."""
    for body in moved("echotest"):
        status, answer, _ = await post(http_client, base_url + PATH, gzip.compress(body.encode()),
                                       headers={"Content-Encoding": "gzip"})
        assert status == 200, answer
    await eventually(lambda: count_points(influxd, database, "rtc_events") == 1)
    status, answer, _ = await post(http_client, base_url + PATH, b"not gzip", headers={"Content-Encoding": "gzip"})
    assert_error(status, answer, 400)


@pytest.mark.gen_test(timeout=60)
async def test_a_stored_post_is_answered_as_the_handler_answers_it(http_client, base_url, app, app_config,
                                                                   start_server):
    """A Janus post is stored below RequestHandler (handlers/ingest.StoredWrite) as JSON posts are;
    with --wal-fsync=always JanusEventsHandler answers it: the same status, headers and body."""
    handled = await start_server(**{**app_config, "wal_fsync": "always"})
    stored = ingest.stored_write(app, HTTPServerRequest("POST", PATH, headers=HTTPHeaders({"Content-Length": "2"})),
                                 STORED_ROUTES)
    assert stored is not None and stored.route is JanusEventsHandler
    answers = []
    for server_url in (base_url, handled.base_url):
        for origin in ({}, {"Origin": "https://app.example"}):
            status, answer, response = await post(http_client, server_url + PATH, moved("echotest")[0],
                                                  headers=origin)
            headers = sorted((name, value) for name, value in response.headers.get_all() if name != "Date")
            answers.append((status, answer, headers))
    assert answers[:2] == answers[2:]
    assert answers[0][0] == 200 and answers[0][1]["events"] > 0
    assert app.telemetry.value("rtcscope_http_requests_total", route="JanusEventsHandler", status=200) == 2


def attaches(calls, now_us):
    return json.dumps([{"emitter": "janus-1", "type": 2, "timestamp": now_us, "session_id": 1, "handle_id": number,
                        "opaque_id": f"room-{number}/p", "event": {"name": "attached", "plugin": "janus.plugin.echotest"}}
                       for number in calls])


@pytest.mark.app_config(max_new_calls=150)
@pytest.mark.gen_test(timeout=60)
async def test_a_post_holds_up_to_100_calls_as_janus_groups_them(http_client, base_url, app):
    """Janus cannot split a post (and drops a refused one): its group of up to 100 events
    may name 100 calls, beyond --max-calls-per-request."""
    now_us = now_ms() * 1000
    status, answer, _ = await post(http_client, base_url + PATH, attaches(range(100), now_us))
    assert status == 200, answer
    status, answer, _ = await post(http_client, base_url + PATH, attaches(range(100, 201), now_us))
    assert_error(status, answer, 413, "too_many_calls")


@pytest.mark.app_config(max_new_calls=5)
@pytest.mark.gen_test(timeout=60)
async def test_new_calls_beyond_the_instances_budget_are_429(http_client, base_url, app):
    now_us = now_ms() * 1000
    status, answer, _ = await post(http_client, base_url + PATH, attaches(range(5), now_us))
    assert status == 200, answer
    status, answer, response = await post(http_client, base_url + PATH, attaches(range(5, 7), now_us))
    assert_error(status, answer, 429, "too_many_new_calls")
    assert int(response.headers["Retry-After"]) >= 1
    status, answer, _ = await post(http_client, base_url + PATH, attaches(range(5), now_us))
    assert status == 200, answer  # calls it already has carry on


@pytest.mark.gen_test(timeout=60)
async def test_the_sfu_peers_dimensions_are_on_the_call_page(http_client, base_url, app):
    for body in moved("echotest"):
        status, answer, _ = await post(http_client, base_url + PATH, body)
        assert status == 200, answer

    async def dimensions():
        status, call, _ = await get(http_client, base_url + "/v1/calls/c-1/")
        return call["dimensions"].get("alice@janus") if status == 200 else None
    found = await eventually(dimensions)
    assert found["emitter"] == "janus-test" and found["candidate_type"] == "host" and found["transport"] == "udp"
    assert "browser" not in found  # Janus's own User-Agent says nothing of the peer's browser


@pytest.mark.app_config(**FLEET)
@pytest.mark.gen_test(timeout=60)
async def test_a_session_timeout_ends_the_sfu_peer_as_timed_out_live_and_listed(http_client, base_url, app, influxd,
                                                                                 database):
    """The stored reason of a Janus end (2: timeout) is the one the detector and /v1/calls/ give."""
    [*_, body] = moved("timeout")
    events = json.loads(body)
    split = next(index for index, event in enumerate(events) if event["type"] == 1 and
                 event["event"]["name"] == "timeout")
    await tick(app)  # the whole window, empty: what follows comes through the live feed
    for part in (events[:split], events[split:]):
        status, answer, _ = await post(http_client, base_url + PATH, json.dumps(part))
        assert status == 200, answer
        await eventually(lambda: app.writer.depth == 0)
        await tick(app)
        if part[0]["type"] != 1:
            assert app.detector.calls["c-2"].state == "live"
    state = app.detector.calls["c-2"]
    assert (state.state, state.end_reason, state.peers) == ("ended", "timeout", ["carol@janus"])
    assert state.peer_ends["carol@janus"][1] == "timeout"

    status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=ended")  # the ended-call index
    assert status == 200 and [(call["call"], call["end_reason"]) for call in listed["calls"]] == [("c-2", "timeout")]
    status, call, _ = await get(http_client, base_url + "/v1/calls/c-2/")  # read from rtc_events
    assert status == 200 and (call["state"], call["end_reason"]) == ("ended", "timeout")
