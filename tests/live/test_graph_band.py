"""Live graphs at fleet scale (SPEC §18) against a real influxd: beyond --graph-lines live calls
the server sends the fleet's p50–p95 band and the five worst calls, computed in memory.

2,000 calls are posted through the ingest API in requests of 1,000 calls; the detector ticks
when the test says (its periodic callback slowed to an hour)."""
import asyncio

import pytest

from rtcscope import registry
from rtcscope.live.graphs import BUCKET_MS, SNAPSHOT_MS
from rtcscope.summary import percentile
from tests.support.api import post, record_statements
from tests.support.samples import now_ms, split_by_call
from tests.support.waits import eventually
from tests.support.websockets import Recorder

CALLS = 2000
FLEET = {"tick": 3600.0, "call_timeout": 60.0, "quality_window": 30.0, "max_calls_per_request": 1000,
         "max_new_calls": 100_000, "max_live_calls": 100_000}
pytestmark = pytest.mark.app_config(**FLEET)
# The worst calls: the highest round trips, by far (index -> base rtt, ms).
BAD = {1999: 800.0, 1500: 750.0, 777: 700.0, 222: 650.0, 11: 600.0}


def call_id(index):
    return f"c-{index:04d}"


def base_rtt(index):
    return BAD.get(index, 20.0 + index * 37 % 199 + index % 7 / 8)


def rtt(index, bucket):
    """Call `index`'s round trip in the bucket starting at `bucket` ms: its base, moving with time."""
    return base_rtt(index) + bucket // BUCKET_MS % 5


async def send(http_client, base_url, app, samples):
    for body in split_by_call(samples, 1000):
        status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
        assert status == 200, result
    await eventually(lambda: app.writer.depth == 0)


def fleet_samples(bucket, values=None):
    """One sample of every call at `bucket`; `values` {index: rtt} replaces some."""
    values = values or {}
    return [{"call": call_id(i), "peer": "a", "kind": "audio", "ts": bucket,
             "stats": {"rtt": values.get(i, rtt(i, bucket))}} for i in range(CALLS)]


def band_of(per_call):
    """{"p50", "p95"} nearest rank across the calls' values (summary.percentile, the fleet's rule)."""
    ordered = sorted(per_call)
    return {"p50": percentile(ordered, 0.5), "p95": percentile(ordered, 0.95)}


def expected_band(buckets, overrides=None):
    """{bucket: band} of the fleet's samples, one per call and bucket; overrides {bucket: {index: rtt}}."""
    overrides = overrides or {}
    return {bucket: band_of([overrides.get(bucket, {}).get(i, rtt(i, bucket)) for i in range(CALLS)])
            for bucket in buckets}


def band_points(message):
    """{bucket: {"p50", "p95"}} of a snapshot's or points message's band."""
    found = {}
    for label in ("p50", "p95"):
        for ms, value in message["band"][label]:
            found.setdefault(ms, {})[label] = value
    return found


async def until_bucket(bucket):
    """Wait until `bucket` ms has begun, so that its samples are not in the future."""
    wait = (bucket + 50 - now_ms()) / 1000
    if wait > 0:
        await asyncio.sleep(wait)


@pytest.mark.gen_test(timeout=240)
async def test_two_thousand_calls_are_a_band_and_the_five_worst_tick_by_tick(http_client, base_url, app):
    detector = app.detector
    first = (now_ms() // BUCKET_MS - 3) * BUCKET_MS
    buckets = [first, first + BUCKET_MS, first + 2 * BUCKET_MS]
    await send(http_client, base_url, app, [s for bucket in buckets for s in fleet_samples(bucket)])
    await detector.run_tick()  # learns the 2,000 live calls; the followed graphs take in the feed's samples
    assert len(detector.live_calls) == CALLS

    # The first viewer: the band's buckets and the five worst calls' lines, nothing else.
    statements = record_statements(app.store)
    queries = detector.graphs.queries
    viewer = Recorder()
    await detector.watch(registry.lookup("rtt"), viewer)
    [snapshot] = viewer.messages
    worst = [call_id(i) for i in BAD]
    assert (snapshot["type"], snapshot["metric"], snapshot["bucket_ms"], snapshot["mode"]) == (
        "snapshot", "rtt", BUCKET_MS, "band")
    assert snapshot["drawn"] == worst and list(snapshot["calls"]) == worst
    assert snapshot["band"]["calls"] == CALLS
    assert band_points(snapshot) == expected_band(buckets)
    for index in BAD:
        assert snapshot["calls"][call_id(index)] == [[bucket, rtt(index, bucket)] for bucket in buckets]
    # Its one query: the five drawn calls' older buckets (the process is younger than five minutes), by name.
    assert detector.graphs.queries == queries + 1
    [statement] = [s for s in statements if "rtc_stats" in s]  # (the ended-call index loads beside it)
    assert all(f"\"call\" = '{call}'" in statement for call in worst) and statement.count('"call" = ') == 5

    # Every tick: the new bucket of the band and of the drawn calls.
    for _ in range(3):
        bucket = buckets[-1] + BUCKET_MS
        buckets.append(bucket)
        await until_bucket(bucket)
        await send(http_client, base_url, app, fleet_samples(bucket))
        viewer.clear()
        statements.clear()
        await detector.run_tick()
        [points] = viewer.of_type("points")
        assert band_points(points)[bucket] == expected_band([bucket])[bucket]
        assert points["band"]["calls"] == CALLS
        assert set(points["calls"]) == set(worst)
        assert all(points["calls"][call_id(i)] == [[bucket, rtt(i, bucket)]] for i in BAD)
        assert viewer.of_type("drawn") == []
        assert not [s for s in statements if "rtc_stats" in s]  # the graphs ask InfluxDB nothing

    # A call goes bad: it joins the worst five with its five minutes, and the fifth leaves. It started
    # before the memory did (the process is younger than five minutes): one query for it alone.
    bucket = buckets[-1] + BUCKET_MS
    await until_bucket(bucket)
    await send(http_client, base_url, app, fleet_samples(bucket, {500: 6000.0}))
    viewer.clear()
    statements.clear()
    await detector.run_tick()
    watch = detector.graphs.watches["rtt"]
    assert await watch.fetching
    [statement] = [s for s in statements if "rtc_stats" in s]
    assert "\"call\" = 'c-0500'" in statement and statement.count('"call" = ') == 1
    [points] = viewer.of_type("points")  # meanwhile the band and the lines drawn so far
    assert band_points(points)[bucket] == expected_band([bucket], {bucket: {500: 6000.0}})[bucket]
    assert set(points["calls"]) == set(worst)
    viewer.clear()
    await detector.run_tick()
    [drawn] = viewer.messages
    history = [[b, rtt(500, b)] for b in buckets] + [[bucket, 6000.0]]
    assert drawn == {"type": "drawn", "metric": "rtt", "drawn": ["c-0500"] + worst[:4],
                     "calls": {"c-0500": history}, "left": [call_id(11)]}

    # Once the memory holds five minutes of every call (as five minutes of ticks leave it), a call
    # that joins costs no query: its buckets are the memory's, told on the tick it joins.
    watch.since -= SNAPSHOT_MS
    buckets.append(bucket)
    bucket += BUCKET_MS
    await until_bucket(bucket)
    await send(http_client, base_url, app, fleet_samples(bucket, {500: 6000.0, 50: 20000.0}))
    viewer.clear()
    queries = detector.graphs.queries
    await detector.run_tick()
    assert detector.graphs.queries == queries
    drawn, points = viewer.messages
    assert drawn["drawn"] == ["c-0050", "c-0500"] + worst[:3] and drawn["left"] == [call_id(222)]
    assert drawn["calls"] == {"c-0050": [[b, rtt(50, b)] for b in buckets] + [[bucket, 20000.0]]}
    assert set(points["calls"]) == {"c-0500"} | set(worst[:3])  # not the one that left, nor the one that joined
    late = Recorder()
    await detector.watch(registry.lookup("rtt"), late)
    [snapshot] = late.messages
    assert snapshot["drawn"] == drawn["drawn"] and list(snapshot["calls"]) == drawn["drawn"]
    assert detector.graphs.queries == queries  # a shared snapshot, from memory


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(**FLEET, graph_lines=3)
async def test_a_graph_turns_to_the_band_past_graph_lines_and_back(http_client, base_url, app):
    detector = app.detector
    await detector.run_tick()
    viewer = Recorder()
    await detector.watch(registry.lookup("jitter"), viewer)
    assert viewer.messages[0]["mode"] == "lines"
    at = now_ms()  # after the memory began: these calls' whole lives are in it
    samples = [{"call": f"m-{i}", "peer": "a", "kind": "audio", "ts": at, "stats": {"rtt": 200.0 * (i + 1), "jitter": 1.0 + i}}
               for i in range(3)]
    await send(http_client, base_url, app, samples)
    await detector.run_tick()
    assert [m["type"] for m in viewer.messages[1:]] == ["call_started"] * 3 + ["drawn", "points"]
    assert viewer.of_type("drawn")[0]["drawn"] == ["m-2", "m-1", "m-0"]  # worst first
    viewer.clear()
    await send(http_client, base_url, app, [{"call": "m-3", "peer": "a", "kind": "audio", "ts": now_ms(),
                                             "stats": {"rtt": 20.0, "jitter": 3.0}}])
    await detector.run_tick()
    started, snapshot = viewer.messages
    assert started["type"] == "call_started" and snapshot["type"] == "snapshot" and snapshot["mode"] == "band"
    assert snapshot["drawn"] == ["m-2", "m-1", "m-0", "m-3"] and snapshot["band"]["calls"] == 4
    bucket = at // BUCKET_MS * BUCKET_MS
    assert dict(snapshot["band"]["p50"])[bucket] == 2.0 and dict(snapshot["band"]["p95"])[bucket] == 3.0
    viewer.clear()
    await send(http_client, base_url, app, [{"call": "m-3", "event": "end"}])
    await detector.run_tick()
    snapshot, ended = viewer.messages
    assert (snapshot["mode"], snapshot["drawn"], ended["type"]) == ("lines", ["m-2", "m-1", "m-0"], "call_ended")
    assert "band" not in snapshot


@pytest.mark.gen_test(timeout=60)
async def test_a_metric_the_feed_does_not_carry_loads_its_band_with_one_bounded_query(http_client, base_url, app):
    detector = app.detector
    at = (now_ms() - 6000) // BUCKET_MS * BUCKET_MS
    # 20 calls (nearest rank agrees with InfluxDB's rounded rank at 20), frame rates 10..29, two buckets
    samples = [{"call": f"f-{i:02d}", "peer": "a", "kind": "video", "ts": ts,
                "stats": {"rtt": 20.0 + 60 * i, "framesPerSecond": 10.0 + i + (ts - at) / 1000}}
               for i in range(20) for ts in (at, at + BUCKET_MS)]
    await send(http_client, base_url, app, samples)
    await detector.run_tick()
    statements = record_statements(app.store)
    viewer = Recorder()
    await detector.watch(registry.lookup("framesPerSecond"), viewer)
    [snapshot] = viewer.messages
    assert snapshot["mode"] == "band" and snapshot["drawn"] == [f"f-{i:02d}" for i in (19, 18, 17, 16, 15)]
    assert band_points(snapshot) == {
        bucket: band_of([10.0 + i + (bucket - at) / 1000 for i in range(20)]) for bucket in (at, at + BUCKET_MS)}
    assert snapshot["calls"]["f-19"] == [[at, 29.0], [at + BUCKET_MS, 31.0]]
    band, drawn = [s for s in statements if "rtc_stats" in s]
    assert 'percentile("value", 50)' in band and 'GROUP BY time(2s) fill(none)' in band
    assert drawn.count('"call" = ') == 5
