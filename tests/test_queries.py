"""REST queries: the 2015 /v1/stats/ shapes, calls, metrics and health."""
import re
import time
from urllib.parse import quote

import pytest

from tests.support.api import assert_error, get, post
from tests.support.samples import now_ms
from tests.support.waits import eventually

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def seed_data(http_client, base_url, influxd, database, start=None):
    """Two calls: c-1 (alice, bob) with rtt 40/60 and a growing packetsLost, c-2 with rtt 10."""
    start = start or now_ms() - 20_000
    body = []
    for i in range(0, 20):
        ts = start + i * 1000
        body.append({"call": "c-1", "peer": "alice", "kind": "audio", "ts": ts,
                     "stats": {"rtt": 40.0, "packetsLost": float(i * 2), "bytesSent": float(i * 1000)}})
        body.append({"call": "c-1", "peer": "bob", "kind": "audio", "ts": ts, "stats": {"rtt": 60.0}})
        body.append({"call": "c-2", "peer": "carol", "ts": ts, "stats": {"rtt": 10.0}})
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200 and result["accepted"] == 60
    await eventually(lambda: len(influxd.rows("SELECT rtt FROM rtc_stats WHERE time > 0", database)) == 60)
    return start


def buckets_ok(points, bucket_ms):
    assert points and all(set(p) == {"time", "mean"} and RFC3339.match(p["time"]) for p in points)
    times = [time.mktime(time.strptime(p["time"], "%Y-%m-%dT%H:%M:%SZ")) for p in points]
    assert all(b - a == bucket_ms / 1000 for a, b in zip(times, times[1:]))


@pytest.mark.gen_test(timeout=30)
async def test_recent_stats_shape(http_client, base_url, app, influxd, database):
    await seed_data(http_client, base_url, influxd, database)
    status, body, _ = await get(http_client, base_url + "/v1/stats/?type=rtt")
    assert status == 200
    assert set(body) == {"c-1", "c-2"}
    buckets_ok(body["c-1"], 10_000)
    assert 30 <= len(body["c-1"]) <= 31
    means = [p["mean"] for p in body["c-1"] if p["mean"] is not None]
    assert means and all(m == 50.0 for m in means)  # mean of alice 40 and bob 60
    assert body["c-1"][0]["mean"] is None  # empty bucket 5 minutes ago
    assert {p["mean"] for p in body["c-2"] if p["mean"] is not None} == {10.0}


@pytest.mark.gen_test(timeout=30)
async def test_seed_counter_is_the_mean_of_stored_values(http_client, base_url, app, influxd, database):
    await seed_data(http_client, base_url, influxd, database)
    status, body, _ = await get(http_client, base_url + "/v1/stats/interval/?type=packetsLost&duration=10m")
    assert status == 200 and set(body) == {"c-1"}
    buckets_ok(body["c-1"], 30_000)
    values = [p["mean"] for p in body["c-1"] if p["mean"] is not None]
    assert max(values) <= 38 and min(values) >= 0 and sum(values) > 0  # running totals, not rates


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("duration,bucket_ms", [("10m", 30_000), ("30m", 120_000), ("1h", 300_000),
                                                ("2h", 15_000), ("7d", 1_800_000)])
async def test_interval_buckets(http_client, base_url, app, influxd, database, duration, bucket_ms):
    await seed_data(http_client, base_url, influxd, database)
    status, body, _ = await get(http_client, base_url + f"/v1/stats/interval/?type=rtt&duration={duration}")
    assert status == 200
    buckets_ok(body["c-2"], bucket_ms)
    assert len(body["c-2"]) <= 501


@pytest.mark.gen_test(timeout=30)
async def test_timerange_rfc3339_ms_and_now(http_client, base_url, app, influxd, database):
    start = await seed_data(http_client, base_url, influxd, database)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start / 1000 - 60))
    for query in (f"start={quote(iso)}&end=now", f"start={start - 60_000}&end={now_ms()}", f"start={start - 60_000}"):
        status, body, _ = await get(http_client, base_url + f"/v1/stats/timerange/?type=rtt&{query}")
        assert status == 200, body
        assert set(body) == {"c-1", "c-2"}
        assert {p["mean"] for p in body["c-2"] if p["mean"] is not None} == {10.0}


@pytest.mark.gen_test(timeout=30)
async def test_call_stats_cover_the_whole_call(http_client, base_url, app, influxd, database):
    await seed_data(http_client, base_url, influxd, database)
    status, body, _ = await get(http_client, base_url + "/v1/stats/c-1/?type=rtt")
    assert status == 200 and isinstance(body, list)
    buckets_ok(body, 1000)  # 19 s call: 1 s buckets give <= 120
    assert 19 <= len(body) <= 21
    assert {p["mean"] for p in body} == {50.0}


@pytest.mark.gen_test(timeout=30)
async def test_derived_bitrate_is_a_rate(http_client, base_url, app, influxd, database):
    await seed_data(http_client, base_url, influxd, database)
    status, body, _ = await get(http_client, base_url + "/v1/stats/c-1/?type=bitrate")
    assert status == 200
    values = [p["mean"] for p in body if p["mean"] is not None]
    assert values and all(v == pytest.approx(8000.0) for v in values)  # 1000 B/s = 8000 bit/s


BAD_QUERIES = [
    ("/v1/stats/", 400), ("/v1/stats/?type=", 400), ("/v1/stats/?type=rtt'%20OR%201=1", 400),
    ("/v1/stats/?type=rtt%22;DROP%20DATABASE%20x", 400), ("/v1/stats/?type=noSuchMetric", 404),
    ("/v1/stats/interval/?type=rtt&duration=8d", 400), ("/v1/stats/interval/?type=rtt&duration=10", 400),
    ("/v1/stats/interval/?type=rtt&duration=0m", 400), ("/v1/stats/interval/?type=rtt&duration=1m;", 400),
    ("/v1/stats/timerange/?type=rtt", 400), ("/v1/stats/timerange/?type=rtt&start=yesterday", 400),
    ("/v1/stats/timerange/?type=rtt&start=2026-11-25T00:00:00Z&end=2026-11-24T00:00:00Z", 400),
    ("/v1/stats/timerange/?type=rtt&start=1&start=2", 400),
    ("/v1/stats/nosuchcall/?type=rtt", 404), ("/v1/stats/c-1'/?type=rtt", 404),
    ("/v1/calls/?state=dead", 400), ("/v1/calls/?since=forever", 400), ("/v1/calls/nosuchcall/", 404),
    ("/v1/calls/c'%20or%201=1/", 404), ("/v1/nothing", 404),
]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("path,status", BAD_QUERIES)
async def test_bad_queries_are_json_errors(http_client, base_url, app, influxd, database, path, status):
    got, body, response = await get(http_client, base_url + path)
    assert_error(got, body, status)
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Traceback" not in response.body.decode()


@pytest.mark.gen_test(timeout=30)
async def test_stored_field_outside_the_registry_is_queryable(http_client, base_url, app, influxd, database):
    await post(http_client, base_url + "/v1/stats/write/", {"call": "x", "stats": {"customScore": 7}})
    await eventually(lambda: influxd.rows("SELECT * FROM rtc_stats WHERE time > 0", database))
    app.store._fields = (0.0, frozenset())
    status, body, _ = await get(http_client, base_url + "/v1/stats/?type=customScore")
    assert status == 200 and {p["mean"] for p in body["x"] if p["mean"] is not None} == {7.0}


@pytest.mark.gen_test(timeout=30)
async def test_alias_resolves_to_the_registry_metric(http_client, base_url, app, influxd, database):
    await seed_data(http_client, base_url, influxd, database)
    status, body, _ = await get(http_client, base_url + "/v1/stats/?type=googRtt")
    assert status == 200 and set(body) == {"c-1", "c-2"}


@pytest.mark.slow
@pytest.mark.gen_test(timeout=40)
async def test_calls_live_and_ended(http_client, base_url, app, influxd, database):
    ts = now_ms()
    await post(http_client, base_url + "/v1/stats/write/", [
        {"call": "live-1", "peer": "alice", "ts": ts - 2000, "stats": {"rtt": 1}},
        {"call": "live-1", "peer": "bob", "ts": ts, "stats": {"rtt": 1}},
        {"call": "ended-1", "peer": "alice", "ts": ts - 1000, "stats": {"rtt": 1}},
        {"call": "ended-1", "event": "end", "ts": ts},
        {"call": "half", "peer": "alice", "ts": ts, "stats": {"rtt": 1}},
        {"call": "half", "peer": "bob", "ts": ts, "stats": {"rtt": 1}},
        {"call": "half", "peer": "bob", "event": "end", "ts": ts + 1},
    ])

    async def calls(state):
        status, body, _ = await get(http_client, base_url + f"/v1/calls/?state={state}")
        assert status == 200
        return {c["call"]: c for c in body["calls"]}

    live = await eventually(lambda: _ready(calls("live"), {"live-1", "half"}))
    assert live["live-1"]["peers"] == ["alice", "bob"]
    assert live["live-1"]["started"] == ts - 2000 and live["live-1"]["last_seen"] == ts
    assert live["live-1"]["ended"] is None and live["live-1"]["state"] == "live"
    ended = await calls("ended")
    assert set(ended) == {"ended-1"} and ended["ended-1"]["ended"] == ts
    assert set(await calls("all")) == {"live-1", "half", "ended-1"}
    # call_timeout is 3 s in tests: without new samples every call ends, at its last sample
    ended = await eventually(lambda: _ready(calls("ended"), {"live-1", "half", "ended-1"}), timeout=8)
    assert ended["live-1"]["ended"] == ts and ended["live-1"]["state"] == "ended"


@pytest.mark.gen_test(timeout=30)
async def test_a_partly_visible_presence_point_is_skipped_not_a_500(http_client, base_url, app, influxd, database):
    """InfluxDB may answer while a point is half written: a presence group
    whose `first` is not visible yet must not break the list or the detector."""
    ts = now_ms()
    status, _, _ = await post(http_client, base_url + "/v1/stats/write/",
                              {"call": "whole", "peer": "alice", "ts": ts, "stats": {"rtt": 1}})
    assert status == 200
    influxd.write([f"rtc_calls,call=half-written,peer=bob last={float(ts)},recv={float(ts)} {ts * 1_000_000}"],
                  database)
    listed = await eventually(lambda: _ready(_calls(http_client, base_url, "all"), {"whole"}))
    assert set(listed) == {"whole"}
    ticks, failures = app.detector.ticks, app.detector.failures
    await eventually(lambda: app.detector.ticks >= ticks + 2)
    assert app.detector.live_calls == ["whole"] and app.detector.failures == failures


async def _calls(http_client, base_url, state):
    status, body, _ = await get(http_client, base_url + f"/v1/calls/?state={state}")
    assert status == 200, body
    return {c["call"]: c for c in body["calls"]}


async def _ready(calls_coro, expected):
    calls = await calls_coro
    return calls if set(calls) == expected else None


@pytest.mark.gen_test(timeout=30)
async def test_call_summary(http_client, base_url, app, influxd, database):
    await seed_data(http_client, base_url, influxd, database)
    status, body, _ = await get(http_client, base_url + "/v1/calls/c-1/")
    assert status == 200, body
    assert body["call"] == "c-1" and body["peers"] == ["alice", "bob"]
    assert body["duration"] == pytest.approx(19.0, abs=0.01)
    rtt = body["metrics"]["rtt"]
    assert (rtt["min"], rtt["max"], rtt["mean"], rtt["p95"], rtt["unit"]) == (40.0, 60.0, 50.0, 60.0, "ms")
    lost = body["metrics"]["packetsLost"]
    assert lost["unit"] == "packets/s" and lost["mean"] == pytest.approx(2.0)
    assert body["metrics"]["bitrate"]["mean"] == pytest.approx(8000.0)
    assert set(body["quality"]) >= {"mos", "problems"}
    assert 1.0 <= body["quality"]["mos"] <= 4.5


@pytest.mark.gen_test(timeout=30)
async def test_metrics_registry_health_ready(http_client, base_url, app):
    status, body, _ = await get(http_client, base_url + "/v1/metrics/")
    assert status == 200
    by_name = {m["name"]: m for m in body["metrics"]}
    assert {"availableBandwidth", "rtt", "inputLevel", "packetsLost", "jitter", "bitrate"} <= set(by_name)
    assert by_name["rtt"]["unit"] == "ms" and by_name["packetsLost"]["type"] == "counter"
    assert all(m["description"] for m in body["metrics"])
    status, body, _ = await get(http_client, base_url + "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body, _ = await get(http_client, base_url + "/readyz")
    assert status == 200 and body["influxdb"] is True


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(influxdb_url="http://127.0.0.1:9")
async def test_readyz_is_503_when_influxdb_is_unreachable(http_client, base_url, app):
    status, body, _ = await get(http_client, base_url + "/readyz")
    assert status == 503 and body["influxdb"] is False
    status, body, _ = await get(http_client, base_url + "/v1/stats/?type=rtt")
    assert_error(status, body, 503)


@pytest.mark.gen_test(timeout=30)
async def test_call_summary_rates_ignore_partial_first_and_last_buckets(http_client, base_url, app, influxd, database):
    """Four samples a second, +250 bytes each (8000 bit/s), starting and ending inside a bucket."""
    start = (now_ms() - 60_000) // 1000 * 1000 + 500
    body = [{"call": "steady", "peer": "a", "ts": start + k * 250, "stats": {"bytesSent": 250.0 * k}}
            for k in range(22)]
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200 and result["accepted"] == 22
    await eventually(lambda: app.writer.depth == 0)
    status, summary, _ = await get(http_client, base_url + "/v1/calls/steady/")
    assert status == 200, summary
    bitrate = summary["metrics"]["bitrate"]
    assert (bitrate["min"], bitrate["max"]) == (pytest.approx(8000.0), pytest.approx(8000.0)), bitrate
