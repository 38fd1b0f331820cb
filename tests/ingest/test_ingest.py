"""POST /v1/stats/write/ in every format against a real influxd."""

import asyncio
import time
import urllib.parse

import pytest

from tests.support.api import assert_error, get, post
from tests.support.influxd import count_points
from tests.support.reports import chromium_reports
from tests.support.samples import now_ms
from tests.support.waits import eventually

SEED_BODY = ("rtc_stats,id=8d3f0c4e-77aa-4f1e-9a51-0c3b2f1a9e10 availableBandwidth=12.3,"
             "inputLevel=undefined,packetsLost=0,rtt=41,packetsSent=1320,bytesSent=184211 {ts}")
FORM = "application/x-www-form-urlencoded; charset=UTF-8"


def url(base_url):
    return base_url + "/v1/stats/write/"


def rows(influxd, database, where="time > 0"):
    return influxd.rows(f"SELECT * FROM rtc_stats WHERE {where}", database)


async def flushed(influxd, database, expected, measurement="rtc_stats"):
    await eventually(lambda: count_points(influxd, database, measurement) >= expected)
    return count_points(influxd, database, measurement)


@pytest.mark.gen_test(timeout=30)
async def test_seed_client_line_protocol_as_form_data(http_client, base_url, app, influxd, database):
    ts_ns = now_ms() * 1_000_000
    status, body, _ = await post(http_client, url(base_url), SEED_BODY.format(ts=ts_ns), FORM)
    assert (status, body["success"], body["accepted"], body["dropped"]) == (200, True, 1, 1)
    await flushed(influxd, database, 1)
    [row] = rows(influxd, database)
    assert row["call"] == "8d3f0c4e-77aa-4f1e-9a51-0c3b2f1a9e10"
    assert row["time"] == ts_ns // 1_000_000
    assert (row["availableBandwidth"], row["rtt"], row["packetsSent"], row["bytesSent"]) == (12.3, 41, 1320, 184211)
    assert "inputLevel" not in row
    assert "id" not in row
    # every field is a float in InfluxDB, whatever the client wrote
    types = influxd.rows("SHOW FIELD KEYS FROM rtc_stats", database)
    assert {r["fieldType"] for r in types} == {"float"}


@pytest.mark.gen_test(timeout=30)
async def test_line_protocol_tags_precision_booleans_integers_escapes(http_client, base_url, app, influxd, database):
    ts_s = now_ms() // 1000
    body = (f"rtc_stats,call=c1,peer=alice,kind=video,region=eu framesPerSecond=30i,muted=true,rtt=1e2 {ts_s}\n"
            "\n# a comment line\n"
            f"rtc_stats,call=c1,peer=bob,kind=audio jitter=3.5,nothing=NaN,empty=,n2=null {ts_s}\r\n")
    status, result, _ = await post(http_client, url(base_url) + "?precision=s", body, "text/plain")
    assert status == 200, result
    assert (result["accepted"], result["dropped"]) == (2, 3)
    await flushed(influxd, database, 2)
    by_peer = {r["peer"]: r for r in rows(influxd, database)}
    assert by_peer["alice"]["framesPerSecond"] == 30.0 and by_peer["alice"]["muted"] == 1.0
    assert by_peer["alice"]["rtt"] == 100.0 and by_peer["alice"]["kind"] == "video"
    assert by_peer["bob"]["jitter"] == 3.5 and by_peer["bob"]["time"] == ts_s * 1000
    assert "region" not in by_peer["alice"]


@pytest.mark.gen_test(timeout=30)
async def test_json_object_and_array(http_client, base_url, app, influxd, database):
    ts = now_ms()
    status, result, _ = await post(http_client, url(base_url), {
        "call": "c-42", "peer": "alice", "kind": "video", "ts": ts,
        "stats": {"rtt": 41.0, "jitter": 3.1, "packetsLost": 2, "gone": None}})
    assert (status, result["success"], result["accepted"], result["dropped"]) == (200, True, 1, 1)
    status, result, _ = await post(http_client, url(base_url), [
        {"call": "c-42", "peer": "bob", "stats": {"rtt": 20}},
        {"call": "c-43", "stats": {"rtt": 10, "huge": 1e400}, "ts": ts + 1},
    ], "text/plain")
    assert (status, result["accepted"], result["dropped"]) == (200, 2, 1)
    await flushed(influxd, database, 3)
    data = {(r["call"], r["peer"]): r for r in rows(influxd, database)}
    assert data[("c-42", "alice")]["time"] == ts and data[("c-42", "alice")]["packetsLost"] == 2.0
    assert data[("c-42", "bob")]["rtt"] == 20.0
    assert data[("c-43", None)]["rtt"] == 10.0 and "huge" not in data[("c-43", None)]


@pytest.mark.gen_test(timeout=30)
async def test_raw_getstats_report_is_extracted(http_client, base_url, app, influxd, database):
    report = chromium_reports()[-1]
    body = [{"call": "loop", "peer": "caller", "report": report["caller"]},
            {"call": "loop", "peer": "callee", "report": report["callee"]}]
    status, result, _ = await post(http_client, url(base_url), body)
    assert status == 200 and result["accepted"] == 6, result
    await flushed(influxd, database, 6)
    data = {(r["peer"], r["kind"]): r for r in rows(influxd, database)}
    assert set(data) == {(p, k) for p in ("caller", "callee") for k in ("audio", "video", "connection")}
    assert data[("caller", "video")]["rtt"] == 1.236
    assert data[("caller", "connection")]["availableBandwidth"] == 3608000.0
    assert data[("callee", "video")]["framesPerSecond"] == 20.0
    keys = {r["fieldKey"] for r in influxd.rows("SHOW FIELD KEYS FROM rtc_stats", app.store.database)}
    assert not keys & {"ip", "address", "port", "candidateType"}


@pytest.mark.gen_test(timeout=30)
async def test_skewed_timestamps_are_restamped(http_client, base_url, app, influxd, database):
    before = now_ms()
    status, result, _ = await post(http_client, url(base_url), [
        {"call": "old", "ts": 1448000000000, "stats": {"rtt": 1}},
        {"call": "future", "ts": before + 3600_000, "stats": {"rtt": 2}}])
    assert status == 200 and result["restamped"] == 2
    await flushed(influxd, database, 2)
    for row in rows(influxd, database):
        assert before - 1000 <= row["time"] <= now_ms() + 1000


@pytest.mark.gen_test(timeout=30)
async def test_samples_without_timestamps_in_one_request_do_not_overwrite(http_client, base_url, app, influxd, database):
    body = "\n".join(f"rtc_stats,call=same rtt={i}" for i in range(5))
    status, result, _ = await post(http_client, url(base_url), body, "text/plain")
    assert status == 200 and result["accepted"] == 5
    assert await flushed(influxd, database, 5) == 5


BAD_BODIES = [
    ("rtc_stats,call=a rtt=1\nrtc_stats,call=b rtt=abc", "line 2"),
    ("rtc_stats,call=a rtt=1\nother,call=b rtt=1", "line 2"),
    ('rtc_stats,call=a name="alice"', "string"),
    ("rtc_stats rtt=1", "call"),
    ("rtc_stats,call=a", "line 1"),
    ("rtc_stats,call=a rtt=1 notatime", "timestamp"),
    ("rtc_stats,call=bad/id rtt=1", "call"),
    ("rtc_stats,call=a 9bad=1", "field name"),
    ('{"call": "a", "stats": {"rtt": "41"}}', "stats.rtt"),
    ('{"call": "a", "stats": {"rtt": [1]}}', "stats.rtt"),
    ('{"call": "a", "stats": {"rtt": {"x": 1}}}', "stats.rtt"),
    ('[{"call": "a", "stats": {"rtt": 1}}, {"call": "b c", "stats": {"rtt": 1}}]', "index 1"),
    ('[{"call": "a", "stats": {"rtt": 1}}, 5]', "index 1"),
    ('{"call": "a"}', "stats"),
    ('{"stats": {"rtt": 1}}', "call"),
    ('{"call": "a", "stats": {"rtt": 1}, "ts": "yesterday"}', "ts"),
    ('{"call": "a", "event": "restart"}', "event"),
    ('{"call": "a", "report": {"not": "an array"}}', "report"),
    ('{"call": "a", "stats": {"rtt": 1}', "JSON"),
    ('"just a string"', None),
    ('{"call": "' + "x" * 129 + '", "stats": {"rtt": 1}}', "call"),
    ('{"call": "a", "stats": {' + ",".join(f'"f{i}": 1' for i in range(65)) + "}}", "64"),
]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("body,mentions", BAD_BODIES)
async def test_bad_input_is_400_and_stores_nothing(http_client, base_url, app, influxd, database, body, mentions):
    status, result, response = await post(http_client, url(base_url), body, "text/plain")
    assert_error(status, result, 400)
    assert response.headers["Content-Type"].startswith("application/json")
    if mentions:
        assert mentions.lower() in result["error"]["message"].lower(), result
    assert app.writer.depth == 0
    await post(http_client, url(base_url), {"call": "marker", "stats": {"ok": 1}})
    await flushed(influxd, database, 1)
    assert {r["call"] for r in rows(influxd, database)} == {"marker"}


@pytest.mark.gen_test(timeout=30)
async def test_empty_body_and_bad_precision(http_client, base_url, app):
    status, result, _ = await post(http_client, url(base_url), "  \n ", "text/plain")
    assert_error(status, result, 400, "empty_body")
    status, result, _ = await post(http_client, url(base_url) + "?precision=h", "rtc_stats,call=a rtt=1", "text/plain")
    assert_error(status, result, 400)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(max_body=1000, max_samples=5)
async def test_limits_are_413(http_client, base_url, app):
    status, result, _ = await post(http_client, url(base_url), "x" * 2000, "text/plain")
    assert_error(status, result, 413)
    many = [{"call": "a", "stats": {"rtt": i}} for i in range(6)]
    status, result, _ = await post(http_client, url(base_url), many)
    assert_error(status, result, 413)
    lines = "\n".join(f"rtc_stats,call=a rtt={i}" for i in range(6))
    status, result, _ = await post(http_client, url(base_url), lines, "text/plain")
    assert_error(status, result, 413)
    assert app.writer.depth == 0
    status, result, _ = await post(http_client, url(base_url), many[:5])
    assert status == 200 and result["accepted"] == 5


@pytest.mark.gen_test(timeout=30)
async def test_cors_preflight_and_header(http_client, base_url, app):
    response = await http_client.fetch(url(base_url), method="OPTIONS", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, raise_error=False)
    assert response.code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    _, _, response = await post(http_client, url(base_url), {"call": "a", "stats": {"rtt": 1}},
                                headers={"Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"


@pytest.mark.gen_test(timeout=30)
async def test_a_stored_post_is_answered_as_the_handler_answers_it(http_client, base_url, app, app_config,
                                                                   start_server):
    """Stored posts are answered below RequestHandler (handlers/ingest.StoredWrite); with
    --wal-fsync=always WriteHandler answers them: the same status, headers and body."""
    handled = await start_server(**{**app_config, "wal_fsync": "always"})
    answers = []
    for server_url in (base_url, handled.base_url):
        for origin in ({}, {"Origin": "https://app.example"}):
            status, result, response = await post(http_client, url(server_url), {"call": "a", "stats": {"rtt": 1}},
                                                  headers=origin)
            headers = sorted((name, value) for name, value in response.headers.get_all() if name != "Date")
            answers.append((status, result, headers))
    assert answers[:2] == answers[2:]
    assert answers[0][0] == 200 and ("Referrer-Policy", "no-referrer") in answers[0][2]
    status, result, response = await post(http_client, url(base_url) + "?precision=s&precision=ms",
                                          "rtc_stats,call=a rtt=1 1", "text/plain")
    assert_error(status, result, 400)  # refused after the body was read: answered by WriteHandler
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert app.telemetry.value("rtcscope_http_requests_total", route="WriteHandler", status=200) == 2
    assert app.telemetry.value("rtcscope_ingest_refused_total", reason="bad_request") == 1


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(client_timeout=0.8)
async def test_a_stored_post_whose_body_stalls_is_hung_up_on_after_the_client_timeout(http_client, base_url, app):
    """StoredWrite's bodies are timed by one sweep (ingest.close_stalled_posts), not by Tornado's timer."""
    body = b'{"call": "stalled", "stats": {"rtt": 1}}'
    address = urllib.parse.urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(b"POST /v1/stats/write/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10]))
    await writer.drain()
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # hung up on, nothing answered
    assert 0.7 < time.monotonic() - started < 3
    assert app.posts_reading == {}
    writer.close()
    status, result, _ = await post(http_client, url(base_url), {"call": "a", "stats": {"rtt": 1}})
    assert status == 200 and app.posts_reading == {}


@pytest.mark.gen_test(timeout=30)
async def test_a_fault_while_storing_a_post_is_a_json_500_and_stores_nothing(http_client, base_url, app,
                                                                            monkeypatch):
    def broken(*args):
        raise RuntimeError("a fault of the server's own")

    monkeypatch.setattr(app.admission, "admit", broken)
    status, result, _ = await post(http_client, url(base_url), {"call": "a", "stats": {"rtt": 1}})
    assert_error(status, result, 500)
    assert app.writer.depth == 0


@pytest.mark.gen_test(timeout=30)
async def test_get_on_write_is_json_405(http_client, base_url, app):
    status, result, _ = await get(http_client, url(base_url))
    assert_error(status, result, 405)


@pytest.mark.gen_test(timeout=30)
async def test_end_event_is_stored(http_client, base_url, app, influxd, database):
    ts = now_ms()
    await post(http_client, url(base_url), {"call": "c-9", "peer": "alice", "stats": {"rtt": 1}, "ts": ts})
    status, result, _ = await post(http_client, url(base_url), {"call": "c-9", "peer": "alice", "event": "end", "ts": ts + 5})
    assert status == 200 and result["events"] == 1 and result["accepted"] == 0
    await flushed(influxd, database, 1, "rtc_events")
    [event] = influxd.rows("SELECT * FROM rtc_events WHERE time > 0", database)
    assert (event["call"], event["peer"], event["at"]) == ("c-9", "alice", ts + 5)
