"""rtc_call_summaries and GET /v1/fleet/: one point per ended call, the same from
every process, and the history buckets computed from them."""
import asyncio
import math
from collections import defaultdict

import pytest

from tests.support.api import assert_error, get, post
from tests.support.samples import now_ms
from tests.support.waits import eventually

CALLS = {  # call -> (rtt, lost of 100 packets)
    "h-good": (40.0, 0), "h-lossy": (80.0, 12), "h-slow": (900.0, 0), "h-fine": (60.0, 1)}


def samples(call, start, rtt, lost, count=5):
    return [{"call": call, "peer": peer, "kind": "audio", "ts": start + i * 1000,
             "stats": {"rtt": rtt, "jitter": 4.0, "packetsLost": float(lost * i),
                       "packetsReceived": float((100 - lost) * i)}}
            for i in range(count) for peer in ("alice", "bob")]


def summary_points(influxd, database):
    return {row["call"]: row for row in influxd.rows("SELECT * FROM rtc_call_summaries WHERE time > 0", database)}


def nearest_rank(values, fraction):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_two_servers_write_one_summary_per_ended_call(http_client, start_server, influxd, database, tmp_path):
    config = {"influxdb_url": influxd.url, "database": database, "flush_interval": 0.1, "tick": 0.2,
              "call_timeout": 3.0}
    one = await start_server(**config, spool_dir=str(tmp_path / "one"))
    two = await start_server(**config, spool_dir=str(tmp_path / "two"))
    await one.store.setup()
    start = now_ms() - 5000
    body = [sample for call, (rtt, lost) in CALLS.items() for sample in samples(call, start, rtt, lost)]
    status, result, _ = await post(http_client, one.base_url + "/v1/stats/write/", body)
    assert status == 200, result
    await eventually(lambda: one.writer.depth == 0)
    await eventually(lambda: len(one.detector.live_calls) == len(two.detector.live_calls) == 4)
    ended_at = now_ms()
    ends = [{"call": call, "event": "end", "ts": ended_at} for call in ("h-good", "h-lossy", "h-slow")]
    status, result, _ = await post(http_client, two.base_url + "/v1/stats/write/", ends)
    assert status == 200, result
    # h-fine times out (3 s); every summary waits for its call to settle (5 s)
    await eventually(lambda: len(summary_points(influxd, database)) == 4, timeout=30)
    await eventually(lambda: one.detector.summaries.written == two.detector.summaries.written == 4, timeout=10)
    await asyncio.sleep(1.0)
    points = summary_points(influxd, database)
    assert sorted(points) == sorted(CALLS)  # both processes wrote each call: one point, the same values

    for call, point in points.items():
        status, summary, _ = await get(http_client, f"{one.base_url}/v1/calls/{call}/")
        assert status == 200
        timeline = [mos for _, mos in summary["quality"]["timeline"]]
        assert point["mos_mean"] == pytest.approx(sum(timeline) / len(timeline), abs=1e-9)
        assert point["mos_min"] == pytest.approx(min(timeline), abs=1e-9)
        assert point["duration_s"] == pytest.approx(summary["duration"])
        assert point["peers"] == 2.0
        codes = {problem["problem"] for problem in summary["quality"]["problems"]}
        assert point["problems"] == len(codes)
        assert point["poor"] == (1.0 if point["mos_mean"] < 3.6 else 0.0)
        assert point["time"] == summary["ended"]  # stamped with the call's end
    assert points["h-slow"]["poor"] == 1.0 and points["h-good"]["poor"] == 0.0
    assert points["h-lossy"]["problems"] == 1.0 and points["h-good"]["problems"] == 0.0

    # the ended list carries each call's summary quality
    status, listed, _ = await get(http_client, one.base_url + "/v1/calls/?state=ended&sort=worst")
    assert status == 200
    qualities = {c["call"]: c["quality"] for c in listed["calls"]}
    assert qualities["h-slow"]["mos"] == round(points["h-slow"]["mos_mean"], 2)
    assert qualities["h-slow"]["verdict"] == "poor" and qualities["h-slow"]["problems"] == ["high_rtt"]
    assert qualities["h-lossy"]["problems"] == ["high_loss"]
    assert [c["call"] for c in listed["calls"]] == sorted(points, key=lambda c: (round(points[c]["mos_mean"], 2), c))
    assert {c["call"]: c["end_reason"] for c in listed["calls"]} == {
        "h-good": "explicit", "h-lossy": "explicit", "h-slow": "explicit", "h-fine": "timeout"}

    # history: per one-minute bucket of call ends
    status, history, _ = await get(http_client, two.base_url + "/v1/fleet/?duration=1h&bucket=1m")
    assert status == 200, history
    assert history["bucket_ms"] == 60_000 and len(history["buckets"]) in (60, 61)
    ended = {c["call"]: c["ended"] for c in listed["calls"]}
    expected = defaultdict(list)
    for call, point in points.items():
        expected[ended[call] // 60_000 * 60_000].append(point)
    busy = {b["time"]: b for b in history["buckets"] if b["calls"]}
    assert sorted(busy) == sorted(expected)
    for time, group in expected.items():
        assert busy[time] == {
            "time": time, "calls": len(group),
            "minutes": round(sum(p["duration_s"] for p in group) / 60, 2),
            "mos_p50": round(nearest_rank([p["mos_mean"] for p in group], 0.5), 2),
            "poor_share": round(sum(p["poor"] for p in group) / len(group), 4)}
    idle = [b for b in history["buckets"] if not b["calls"]]
    assert all(b["minutes"] == 0 and b["mos_p50"] is None and b["poor_share"] is None for b in idle)


@pytest.mark.gen_test(timeout=30)
async def test_fleet_history_parameters(http_client, base_url, app):
    status, document, _ = await get(http_client, base_url + "/v1/fleet/")
    assert status == 200 and document["bucket_ms"] == 3_600_000 and len(document["buckets"]) in (24, 25)
    assert all(b["calls"] == 0 for b in document["buckets"])
    status, document, _ = await get(http_client, base_url + "/v1/fleet/?duration=7d&bucket=1h")
    assert status == 200 and len(document["buckets"]) in (168, 169)
    for query in ("duration=31d&bucket=1d", "duration=1h&bucket=1s", "duration=day", "bucket=0s", "duration=1h&bucket=x"):
        status, document, _ = await get(http_client, base_url + "/v1/fleet/?" + query)
        assert_error(status, document, 400)
