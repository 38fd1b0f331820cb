"""POST /v1/import/webrtc-internals with the captured Chromium dumps, against a real influxd."""
import gzip
import json
import tracemalloc
import urllib.parse

import pytest
from tornado.httpclient import HTTPRequest

from rtcscope import registry
from tests.data import dumps
from tests.support.api import assert_error, get, post
from tests.support.influxd import count_points
from tests.support.samples import now_ms
from tests.support.waits import eventually

DAY_MS = 86_400_000


def import_url(base_url, call):
    return f"{base_url}/v1/import/webrtc-internals?call={urllib.parse.quote(call, safe='')}"


def call_rows(influxd, database, call, measurement="rtc_stats"):
    return influxd.rows(f"SELECT * FROM {measurement} WHERE time > 0 AND \"call\" = '{call}'", database)


async def import_dump(http_client, base_url, call, dump, headers=None):
    body = dump if isinstance(dump, bytes) else json.dumps(dump)
    return await post(http_client, import_url(base_url, call), body, headers=headers)


@pytest.mark.gen_test(timeout=60)
async def test_an_imported_dump_is_an_ended_call_at_its_own_times(http_client, base_url, app, influxd, database):
    call = "room:import@1"
    dump = dumps.recent(dumps.AUDIO_VIDEO)
    status, answer, _ = await import_dump(http_client, base_url, call, dump)
    assert status == 200, answer
    report_times = dumps.timestamps(dump)
    assert answer == {"call": call, "peers": ["8-1", "8-2"], "samples": answer["samples"],
                      "from": int(min(min(times) for times in report_times.values())),
                      "to": int(dumps.last_time(dump))}
    await eventually(lambda: len(call_rows(influxd, database, call)) == answer["samples"])
    rows = call_rows(influxd, database, call)
    assert {row["peer"] for row in rows} == {"8-1", "8-2"}
    assert {row["kind"] for row in rows} == {"audio", "video", "connection"}
    for peer, times in report_times.items():  # every poll of the dump, at its own time (ms precision)
        assert {row["time"] for row in rows if row["peer"] == peer} == {int(t) for t in times}
    video = [row for row in rows if row["kind"] == "video"]
    assert all(5 <= row["framesPerSecond"] <= 60 for row in video if row["framesPerSecond"] is not None)
    assert any(row["framesPerSecond"] for row in video if row["peer"] == "8-2")  # the receiver's fps
    assert all(0 <= row["rtt"] < 100 for row in rows if row["kind"] == "connection")
    sender_video = sorted((row["time"], row["bytesSent"]) for row in video if row["peer"] == "8-1")
    assert [sent for _, sent in sender_video] == sorted(sent for _, sent in sender_video)  # a counter, in order

    # Only the registry's numeric metrics: no SDP, addresses, URLs or other strings of the dump.
    fields = influxd.rows("SHOW FIELD KEYS FROM rtc_stats", database)
    assert {row["fieldKey"] for row in fields} <= {metric.source_field for metric in registry.all_metrics()}
    assert {row["fieldType"] for row in fields} == {"float"}
    tag_keys = {row["tagKey"] for row in influxd.rows("SHOW TAG KEYS FROM rtc_stats", database)}
    assert tag_keys == {"call", "peer", "kind"}

    status, ended, _ = await get(http_client, base_url + "/v1/calls/?state=ended&since=1h")
    [listed] = [item for item in ended["calls"] if item["call"] == call]
    assert listed["peers"] == ["8-1", "8-2"] and listed["state"] == "ended"
    assert listed["started"] == answer["from"] and listed["last_seen"] == answer["to"]
    assert abs(listed["ended"] - answer["to"]) < 2_000
    status, live, _ = await get(http_client, base_url + "/v1/calls/?state=live&since=1h")
    assert call not in [item["call"] for item in live["calls"]]
    assert call not in app.detector.live_calls
    fed = await app.store.feed_since(0)  # the live feed never carries an import as live
    assert [row_call for row_call, _, _ in fed.imports] == [call]  # only word that it was imported
    assert call not in {row_call for row_call, _, _ in fed.presence + fed.ends + fed.samples}

    status, summary, _ = await get(http_client, f"{base_url}/v1/calls/{urllib.parse.quote(call, safe='')}/")
    assert status == 200, summary
    assert sorted(summary["peers"]) == ["8-1", "8-2"]
    assert summary["state"] == "ended" and 9 <= summary["duration"] <= 11  # a 10 s dump
    metrics = summary["metrics"]
    assert 0 <= metrics["rtt"]["max"] < 100 and 5 <= metrics["framesPerSecond"]["mean"] <= 60
    assert metrics["bitrate"]["mean"] > 100_000  # bit/s, a rate of the dump's bytesSent
    assert summary["quality"]["verdict"] == "good" and summary["quality"]["mos"] > 4  # a clean loopback call


@pytest.mark.gen_test(timeout=60)
async def test_audio_only_and_open_dumps_and_a_compressed_one(http_client, base_url, app, influxd, database):
    for call, path, body_of in (("audio-only", dumps.AUDIO_ONLY, lambda d: json.dumps(d).encode()),
                                ("open", dumps.AUDIO_VIDEO_OPEN, lambda d: json.dumps(d).encode()),
                                ("gzipped", dumps.AUDIO_ONLY_GZIP, lambda d: gzip.compress(json.dumps(d).encode()))):
        dump = dumps.recent(path)
        status, answer, _ = await import_dump(http_client, base_url, call, body_of(dump))
        assert status == 200, answer
        assert answer["peers"] == sorted(dump["PeerConnections"])
        await eventually(lambda: len(call_rows(influxd, database, call)) == answer["samples"])
        kinds = {row["kind"] for row in call_rows(influxd, database, call)}
        assert kinds == ({"audio", "video", "connection"} if "video" in path.name else {"audio", "connection"})
    status, ended, _ = await get(http_client, base_url + "/v1/calls/?state=ended&since=1h")
    assert {"audio-only", "open", "gzipped"} <= {item["call"] for item in ended["calls"]}


BAD_BODIES = {
    "not json": (b'{"PeerConnections": {"8-1": ', "not valid JSON"),
    "no PeerConnections": (b'{"getUserMedia": [], "UserAgent": "Chrome"}', "no PeerConnections"),
    "top level array": (b"[]", "top level must be a JSON object"),
    "empty": (b"", "empty body"),
}


def _bad_values(dump):
    stats = dump["PeerConnections"]["8-2"]["stats"]
    key = next(key for key in stats if key.endswith("-bytesReceived"))
    stats[key]["values"] = "[1, 2"
    return dump


def _no_times(dump):
    stats = dump["PeerConnections"]["8-1"]["stats"]
    del stats[next(key for key in stats if key.endswith("-packetsSent"))]["endTime"]
    return dump


@pytest.mark.gen_test(timeout=60)
async def test_a_bad_dump_is_a_400_and_stores_nothing(http_client, base_url, app, influxd, database):
    cases = {name: body for name, (body, _) in BAD_BODIES.items()}
    cases["values not an array"] = json.dumps(_bad_values(dumps.recent(dumps.AUDIO_ONLY))).encode()
    cases["times missing"] = json.dumps(_no_times(dumps.recent(dumps.AUDIO_ONLY))).encode()
    cases["bad gzip"] = gzip.compress(json.dumps(dumps.recent(dumps.AUDIO_ONLY)).encode())[:3000]
    messages = {**{name: message for name, (_, message) in BAD_BODIES.items()},
                "values not an array": "values must be a non-empty JSON-encoded array",
                "times missing": "endTime is missing", "bad gzip": "damaged"}
    for name, body in cases.items():
        status, answer, _ = await import_dump(http_client, base_url, "bad", body)
        assert_error(status, answer, 400)
        assert messages[name] in answer["error"]["message"], (name, answer)
    # A good import after them: once it is in InfluxDB, nothing of the bad ones is.
    status, answer, _ = await import_dump(http_client, base_url, "good", dumps.recent(dumps.AUDIO_ONLY))
    assert status == 200, answer
    await eventually(lambda: len(call_rows(influxd, database, "good", "rtc_calls")) == 2)
    for measurement in ("rtc_stats", "rtc_calls", "rtc_events"):
        assert call_rows(influxd, database, "bad", measurement) == []
    assert count_points(influxd, database) == answer["samples"]
    assert app.telemetry.value("rtcscope_ingest_refused_total", reason="invalid_json") == 1  # counted in /metrics
    assert app.telemetry.value("rtcscope_ingest_refused_total", reason="empty_body") == 1


@pytest.mark.gen_test(timeout=30)
async def test_the_call_id_is_required_and_checked(http_client, base_url, app):
    body = json.dumps(dumps.recent(dumps.AUDIO_ONLY))
    status, answer, _ = await post(http_client, base_url + "/v1/import/webrtc-internals", body)
    assert_error(status, answer, 400, "missing_call")
    assert "parameter call" in answer["error"]["message"]
    for call in ("a b", "x" * 129, "room/1"):
        status, answer, _ = await import_dump(http_client, base_url, call, body.encode())
        assert_error(status, answer, 400, "bad_call")


@pytest.mark.gen_test(timeout=30)
async def test_a_dump_older_than_the_retention_is_refused(http_client, base_url, app, influxd, database):
    old = dumps.shifted(dumps.load(dumps.AUDIO_ONLY), now_ms() - 31 * DAY_MS)
    status, answer, _ = await import_dump(http_client, base_url, "old", old)
    assert_error(status, answer, 400, "dump_too_old")
    assert "retention period (30 days)" in answer["error"]["message"]
    # older than --max-skew but within the retention: kept, at its own times
    week_old = dumps.shifted(dumps.load(dumps.AUDIO_ONLY), now_ms() - 7 * DAY_MS)
    status, answer, _ = await import_dump(http_client, base_url, "week-old", week_old)
    assert status == 200, answer
    await eventually(lambda: len(call_rows(influxd, database, "week-old")) == answer["samples"])
    assert min(row["time"] for row in call_rows(influxd, database, "week-old")) == answer["from"]


@pytest.mark.gen_test(timeout=30)
async def test_import_needs_the_read_token_not_an_ingest_key(http_client, start_server, app_config, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("ingest-key\n")
    application = await start_server(**{**app_config, "read_token": "read-secret", "ingest_keys": str(keys)})
    body = json.dumps(dumps.recent(dumps.AUDIO_ONLY)).encode()
    url = application.base_url
    status, answer, _ = await import_dump(http_client, url, "t", body)
    assert_error(status, answer, 401)
    status, answer, _ = await import_dump(http_client, url, "t", body, {"Authorization": "Bearer ingest-key"})
    assert_error(status, answer, 403)
    status, answer, _ = await import_dump(http_client, url, "t", body, {"Authorization": "Bearer read-secret"})
    assert status == 200 and answer["peers"] == ["8-1", "8-2"], answer
    response = await http_client.fetch(url + "/import", raise_error=False, follow_redirects=False)
    assert response.code == 401
    response = await http_client.fetch(url + "/import", headers={"Authorization": "Bearer read-secret"})
    assert response.code == 200 and b'id="import-file"' in response.body


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(max_import=50_000)
async def test_a_dump_over_max_import_is_a_413(http_client, base_url, app, influxd, database):
    body = json.dumps(dumps.recent(dumps.AUDIO_ONLY)).encode()
    assert len(body) > 50_000
    status, answer, _ = await import_dump(http_client, base_url, "big", body)
    assert_error(status, answer, 413, "dump_too_large")

    async def chunked(write):  # no Content-Length: found out while reading
        for start in range(0, len(body), 16_384):
            await write(body[start:start + 16_384])

    request = HTTPRequest(import_url(base_url, "big"), method="POST", body_producer=chunked,
                          headers={"Content-Type": "application/json"})
    response = await http_client.fetch(request, raise_error=False)
    assert response.code == 413, response.body
    assert json.loads(response.body)["error"]["code"] == "dump_too_large"
    assert call_rows(influxd, database, "big", "rtc_calls") == []


@pytest.mark.slow
@pytest.mark.gen_test(timeout=240)
async def test_a_dump_near_max_import_is_streamed_without_a_second_copy(http_client, base_url, app, influxd,
                                                                         database):
    base = dumps.load(dumps.AUDIO_VIDEO)
    last = now_ms() - 60_000
    one = len(json.dumps(dumps.long_dump(base, 1000, 1, last)))
    body = json.dumps(dumps.long_dump(base, 1000, (63 << 20) // one, last)).encode()
    assert 60 << 20 < len(body) <= 64 << 20

    async def chunked(write):
        for start in range(0, len(body), 1 << 20):
            await write(body[start:start + (1 << 20)])

    request = HTTPRequest(import_url(base_url, "long"), method="POST", body_producer=chunked,
                          headers={"Content-Type": "application/json"}, request_timeout=200)
    tracemalloc.start()
    try:
        response = await http_client.fetch(request, raise_error=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    answer = json.loads(response.body)
    assert response.code == 200, answer
    assert len(answer["peers"]) == (63 << 20) // one and answer["to"] == int(last + 0.5)
    # Held at once: one connection's decoded series and the encoded points, far less than the dump.
    print(f"peak {peak / 2**20:.1f} MiB for a {len(body) / 2**20:.1f} MiB dump")
    assert peak < len(body) // 2


@pytest.mark.gen_test(timeout=60)
async def test_call_ids_with_colon_at_and_braces_work_encoded_or_not(http_client, base_url, app, influxd, database):
    call = "room:{7}@eu"
    status, answer, _ = await import_dump(http_client, base_url, call, dumps.recent(dumps.AUDIO_ONLY))
    assert status == 200, answer
    await eventually(lambda: len(call_rows(influxd, database, call)) == answer["samples"])
    for spelled in (call, urllib.parse.quote(call, safe=""), "room%3a%7b7%7d%40eu"):
        status, summary, _ = await get(http_client, f"{base_url}/v1/calls/{spelled}/")
        assert status == 200 and sorted(summary["peers"]) == ["8-1", "8-2"], (spelled, summary)
        status, means, _ = await get(http_client, f"{base_url}/v1/stats/{spelled}/?type=rtt")
        assert status == 200 and any(point["mean"] is not None for point in means), (spelled, means)
        response = await http_client.fetch(f"{base_url}/calls/{spelled}/", raise_error=False)
        assert response.code == 200 and b'data-call="room:{7}@eu"' in response.body, spelled
    for outside in ("room%2F7", "room%207", "room%2E%2E"):  # not identifier characters: no such call
        status, answer, _ = await get(http_client, f"{base_url}/v1/calls/{outside}/")
        assert status == 404, (outside, answer)
    response = await http_client.fetch(base_url + "/v1/import/webrtc-internals", raise_error=False)
    assert response.code == 405


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(max_imports=1)
async def test_imports_beyond_max_imports_wait_their_turn(http_client, base_url, app, influxd, database):
    body = json.dumps(dumps.recent(dumps.AUDIO_ONLY)).encode()
    app.imports_running = 1  # another dump being read
    status, answer, response = await import_dump(http_client, base_url, "queued", body)
    assert_error(status, answer, 503, "imports_busy")
    assert response.headers["Retry-After"] == "5"
    app.imports_running = 0
    status, answer, _ = await import_dump(http_client, base_url, "queued", body)
    assert status == 200, answer
    assert app.imports_running == 0  # the slot is given back, the spool file closed


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(max_buffer=40)
async def test_a_dump_the_buffer_cannot_hold_is_a_413(http_client, base_url, app, influxd, database):
    status, answer, _ = await import_dump(http_client, base_url, "huge", dumps.recent(dumps.AUDIO_ONLY))
    assert_error(status, answer, 413, "dump_too_many_points")
    assert "--max-buffer" in answer["error"]["message"]
    assert app.writer.depth == 0


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(max_new_calls=2)
async def test_imports_count_against_the_new_call_limit_of_their_client(http_client, base_url, app):
    body = json.dumps(dumps.recent(dumps.AUDIO_ONLY)).encode()
    for call in ("first", "second", "second"):  # the same call again is not a new one
        status, answer, _ = await import_dump(http_client, base_url, call, body)
        assert status == 200, answer
    status, answer, response = await import_dump(http_client, base_url, "third", body)
    assert_error(status, answer, 429)
    assert int(response.headers["Retry-After"]) >= 1
