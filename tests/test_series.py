"""GET /v1/series/: what the pages draw for a time range, counters as rates."""
import pytest

from rtcscope.summary import percentile
from tests.support.api import assert_error, get, post
from tests.support.samples import now_ms
from tests.support.waits import eventually


async def seed(http_client, base_url, app):
    """c-1: rtt 40 (alice) and 60 (bob), packetsLost +3 per second; c-2: rtt 10. Whole 10 s buckets."""
    start = (now_ms() - 95_000) // 10_000 * 10_000
    body = []
    for i in range(80):
        ts = start + i * 1000
        body.append({"call": "c-1", "peer": "alice", "ts": ts, "stats": {"rtt": 40.0, "packetsLost": 3.0 * i}})
        body.append({"call": "c-1", "peer": "bob", "ts": ts, "stats": {"rtt": 60.0}})
        body.append({"call": "c-2", "peer": "carol", "ts": ts, "stats": {"rtt": 10.0}})
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200, result
    await eventually(lambda: app.writer.depth == 0)
    return start


@pytest.mark.gen_test(timeout=30)
async def test_gauges_per_call_in_the_websocket_shape(http_client, base_url, app):
    start = await seed(http_client, base_url, app)
    status, body, _ = await get(http_client, base_url + "/v1/series/?metric=googRtt&duration=5m")
    assert status == 200, body
    assert (body["metric"], body["unit"], body["type"], body["bucket_ms"]) == ("rtt", "ms", "gauge", 1000)
    assert body["end"] - body["start"] == 300_000
    assert set(body["calls"]) == {"c-1", "c-2"}
    assert body["calls"]["c-1"] == [[start + i * 1000, 50.0] for i in range(80)]  # both peers averaged
    assert {value for _, value in body["calls"]["c-2"]} == {10.0}


@pytest.mark.gen_test(timeout=30)
async def test_counters_are_per_second_rates_over_a_start_end_range(http_client, base_url, app):
    start = await seed(http_client, base_url, app)
    url = f"/v1/series/?metric=packetsLost&start={start}&end={start + 80_000}"
    status, body, _ = await get(http_client, base_url + url)
    assert status == 200, body
    assert body["type"] == "counter" and body["unit"] == "packets/s" and body["bucket_ms"] == 1000
    assert list(body["calls"]) == ["c-1"]
    points = body["calls"]["c-1"]
    assert [ms for ms, _ in points] == [start + i * 1000 for i in range(1, 80)]  # the first has nothing before it
    assert {value for _, value in points} == {3.0}
    # one call only, with a bucket the range picks (10 min -> 2 s)
    status, body, _ = await get(http_client, base_url + "/v1/series/?metric=rtt&duration=10m&call=c-2")
    assert status == 200 and list(body["calls"]) == ["c-2"] and body["bucket_ms"] == 2000


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("query,status,code", [
    ("", 400, "bad_request"),
    ("metric=rtt", 400, "bad_request"),
    ("metric=rtt&duration=10x", 400, "bad_request"),
    ("metric=rtt&duration=0s", 400, "bad_request"),
    ("metric=rtt&start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", 400, "bad_request"),
    ("metric=rtt&start=yesterday", 400, "bad_request"),
    ("metric=rtt%22%3B%20DROP%20DATABASE", 400, "bad_request"),
    ("metric=noSuchMetric&duration=10m", 404, "not_found"),
    ("metric=rtt&duration=10m&call=nobody", 404, "not_found"),
    ("metric=rtt&metric=jitter&duration=10m", 400, "bad_request"),
    ("metric=rtt&duration=10m&band=yes", 400, "bad_request"),
    ("metric=rtt&duration=10m&band=true&band=false", 400, "bad_request"),
])
async def test_bad_parameters_are_json_errors(http_client, base_url, app, query, status, code):
    got, body, _ = await get(http_client, base_url + "/v1/series/?" + query)
    assert_error(got, body, status, code)


@pytest.mark.gen_test(timeout=30)
async def test_an_ended_calls_last_partial_bucket_is_not_drawn_as_a_drop(http_client, base_url, app):
    """Samples every 250 ms, +250 bytes each: 8000 bit/s throughout, ending a quarter into a bucket."""
    start = (now_ms() - 60_000) // 1000 * 1000
    body = [{"call": "short", "ts": start + k * 250, "stats": {"bytesSent": 250.0 * k}} for k in range(21)]
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200, result
    await eventually(lambda: app.writer.depth == 0)
    status, body, _ = await get(http_client, base_url + f"/v1/series/?metric=bitrate&call=short&start={start}")
    assert status == 200, body
    points = body["calls"]["short"]
    assert [ms for ms, _ in points] == [start + 1000 * i for i in range(1, 5)]  # not the bucket at start + 5 s
    assert {value for _, value in points} == {8000.0}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(call_timeout=120.0, max_calls_per_request=20)
async def test_band_true_draws_a_range_as_the_live_graphs_do(http_client, base_url, app):
    """20 live calls, round trips 20 + 60 i ms: beyond --graph-lines (12), the band and the five worst."""
    start = (now_ms() - 50_000) // 1000 * 1000
    body = [{"call": f"b-{i:02d}", "peer": "a", "ts": start + k * 1000, "stats": {"rtt": 20.0 + 60 * i + k % 10}}
            for i in range(20) for k in range(50)]
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200, result
    await eventually(lambda: len(app.detector.live_calls) == 20)
    await eventually(lambda: len(app.detector.qualities) == 20 and all(
        q.mos is not None for q in app.detector.qualities.values()))
    url = f"/v1/series/?metric=rtt&start={start}&end={start + 49_000}&band=true"
    status, document, _ = await get(http_client, base_url + url)
    assert status == 200, document
    assert document["mode"] == "band" and document["bucket_ms"] == 1000
    worst = [f"b-{i:02d}" for i in (19, 18, 17, 16, 15)]
    assert document["drawn"] == worst and list(document["calls"]) == worst
    assert document["calls"]["b-19"] == [[start + k * 1000, 1160.0 + k % 10] for k in range(50)]
    band = document["band"]
    assert band["calls"] == 20
    for label, fraction in (("p50", 0.5), ("p95", 0.95)):
        assert band[label] == [[start + k * 1000, percentile(sorted(20.0 + 60 * i + k % 10 for i in range(20)), fraction)]
                               for k in range(50)]
    # Up to --graph-lines calls: every line, worst first.
    status, document, _ = await get(http_client, base_url + url + "&call=b-03")
    assert status == 400, document
    status, document, _ = await get(http_client, base_url + f"/v1/series/?metric=rtt&start={start}&end={start + 49_000}")
    assert "mode" not in document and len(document["calls"]) == 20  # without band=true, as ever


@pytest.mark.gen_test(timeout=30)
async def test_band_true_with_few_calls_is_every_line_worst_first(http_client, base_url, app):
    start = await seed(http_client, base_url, app)
    status, document, _ = await get(http_client, base_url + f"/v1/series/?metric=rtt&start={start}&band=true")
    assert status == 200, document
    assert document["mode"] == "lines" and "band" not in document
    assert set(document["drawn"]) == {"c-1", "c-2"} and set(document["calls"]) == {"c-1", "c-2"}
