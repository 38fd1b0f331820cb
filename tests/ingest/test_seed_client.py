"""The 2015 rtcscope.js client, replayed byte for byte, and read back through every /v1/stats/ endpoint.

That client (static/js/main.js of the Flask prototype) took the legacy callback getStats() of the
audio track every 2.5 s and sent one line of line protocol per request with jQuery's $.ajax
defaults: a form content type with no form encoding, X-Requested-With, `id` = the track id, values
exactly as the browser gave them (`undefined` for a stat it lacked), nanoseconds from
Date.now() * 1000000. It only looked at `success` in the answer.
"""
import time
from collections import defaultdict

import pytest

from tests.support.api import get, post
from tests.support.samples import now_ms
from tests.support.waits import eventually

TRACK_ID = "8d3f0c4e-77aa-4f1e-9a51-0c3b2f1a9e10"
JQUERY_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Accept": "*/*"}
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
SAMPLES = 6
PERIOD_MS = 2500


def seed_line(ts_ms, i):
    fields = (f"availableBandwidth={12.3 + i},inputLevel=undefined,packetsLost={i * 2},rtt={41 + i},"
              f"packetsSent={1320 + i * 125},bytesSent={184211 + i * 17000}")
    return f"rtc_stats,id={TRACK_ID} {fields} {ts_ms * 1000000}"


def rfc3339(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def bucket_means(samples, bucket_ms):
    """{RFC 3339 bucket start: mean} of (ms, value) samples, as InfluxDB's GROUP BY time() buckets them."""
    buckets = defaultdict(list)
    for ms, value in samples:
        buckets[ms // bucket_ms * bucket_ms].append(value)
    return {rfc3339(start): sum(values) / len(values) for start, values in buckets.items()}


def non_empty(points):
    assert all(set(point) == {"time", "mean"} for point in points)
    return {point["time"]: point["mean"] for point in points if point["mean"] is not None}


@pytest.mark.gen_test(timeout=60)
async def test_the_2015_client_post_is_stored_and_read_back_through_every_stats_endpoint(
        http_client, base_url, app, influxd, database):
    first = (now_ms() - 20_000) // 1000 * 1000
    stamps = [first + i * PERIOD_MS for i in range(SAMPLES)]
    for i, ts in enumerate(stamps):
        status, answer, response = await post(http_client, base_url + "/v1/stats/write/", seed_line(ts, i),
                                              content_type=FORM_CONTENT_TYPE, headers=JQUERY_HEADERS)
        assert status == 200, answer
        assert answer["success"] is True and answer["accepted"] == 1 and answer["dropped"] == 1  # inputLevel
        assert response.headers["Content-Type"].startswith("application/json")

    await eventually(lambda: len(influxd.rows("SELECT * FROM rtc_stats WHERE time > 0", database)) == SAMPLES)
    rows = influxd.rows("SELECT * FROM rtc_stats WHERE time > 0", database)
    assert [row["time"] for row in rows] == stamps
    for i, row in enumerate(rows):
        assert row["call"] == TRACK_ID and "id" not in row and row.get("peer") is None and row.get("kind") is None
        assert (row["rtt"], row["packetsLost"], row["availableBandwidth"]) == (41.0 + i, i * 2.0, 12.3 + i)
        assert row["bytesSent"] == 184211.0 + i * 17000 and "inputLevel" not in row

    rtt = [(ts, 41.0 + i) for i, ts in enumerate(stamps)]
    lost = [(ts, i * 2.0) for i, ts in enumerate(stamps)]
    bandwidth = [(ts, 12.3 + i) for i, ts in enumerate(stamps)]

    # Last 5 minutes in 10 s buckets, per call; the mean of stored values (packetsLost is a running total).
    for metric, samples in (("rtt", rtt), ("packetsLost", lost), ("availableBandwidth", bandwidth)):
        status, body, _ = await get(http_client, base_url + f"/v1/stats/?type={metric}")
        assert status == 200 and set(body) == {TRACK_ID}, body
        assert non_empty(body[TRACK_ID]) == pytest.approx(bucket_means(samples, 10_000))
        assert len(body[TRACK_ID]) in (30, 31)

    status, body, _ = await get(http_client, base_url + "/v1/stats/interval/?type=rtt&duration=10m")
    assert status == 200 and set(body) == {TRACK_ID}
    assert non_empty(body[TRACK_ID]) == pytest.approx(bucket_means(rtt, 30_000))

    status, body, _ = await get(http_client, base_url + f"/v1/stats/timerange/?type=rtt&start={first - 60_000}&end=now")
    assert status == 200 and set(body) == {TRACK_ID}
    assert non_empty(body[TRACK_ID]) == pytest.approx(bucket_means(rtt, 1000))  # ~80 s: 1 s buckets

    # The call's whole life (12.5 s: 1 s buckets), by the id the client sent.
    status, body, _ = await get(http_client, base_url + f"/v1/stats/{TRACK_ID}/?type=packetsLost")
    assert status == 200 and isinstance(body, list)
    assert non_empty(body) == pytest.approx(bucket_means(lost, 1000))
    assert body[0]["time"] == rfc3339(first) and body[-1]["time"] == rfc3339(stamps[-1])

    # The one graph the client never had a value for is empty, not an error.
    status, body, _ = await get(http_client, base_url + "/v1/stats/?type=inputLevel")
    assert status == 200 and body == {}

    status, calls, _ = await get(http_client, base_url + "/v1/calls/?state=all")
    (call,) = [c for c in calls["calls"] if c["call"] == TRACK_ID]
    assert (call["started"], call["last_seen"], call["peers"]) == (first, stamps[-1], [])
