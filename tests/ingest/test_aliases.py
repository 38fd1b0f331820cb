"""Stats sent under a registry alias are stored under the canonical name when the registry can convert them."""
import pytest

from rtcscope import registry
from tests.support.api import post
from tests.support.influxd import count_points
from tests.support.samples import now_ms
from tests.support.waits import eventually


def test_storage_plan_renames_converts_and_lets_canonical_names_win():
    assert registry.storage_plan(("rtt", "jitter", "bytesSent")) is None
    plan = registry.storage_plan(("availableOutgoingBitrate", "roundTripTime", "audioLevel", "googTransmitBitrate"))
    assert plan == (("availableBandwidth", 1.0), ("rtt", 1000.0), ("inputLevel", 1.0), ("googTransmitBitrate", 1.0))
    assert registry.storage_plan(("roundTripTime", "rtt")) == ((None, 1000.0), ("rtt", 1.0))
    assert registry.storage_plan(("googRtt", "roundTripTime")) == (("rtt", 1.0), (None, 1000.0))
    stats = {"roundTripTime": 0.041, "audioLevel": 0.5, "flag": True, "missing": None}
    stored = registry.apply_storage_plan(registry.storage_plan(tuple(stats)), stats)
    assert stored == {"rtt": 41.0, "inputLevel": 0.5, "flag": True, "missing": None}


@pytest.mark.gen_test(timeout=30)
async def test_aliases_are_stored_under_the_canonical_name(http_client, base_url, app, influxd, database):
    ts = now_ms()
    body = [{"call": "alias-1", "peer": "a", "kind": "connection", "ts": ts,
             "stats": {"availableOutgoingBitrate": 1.5e6, "roundTripTime": 0.041, "googTransmitBitrate": 5000}},
            {"call": "alias-1", "peer": "a", "kind": "audio", "ts": ts,
             "stats": {"audioLevel": 0.25, "audioInputLevel": 16000, "rtt": 40.0, "currentRoundTripTime": 0.5}}]
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200 and result["accepted"] == 2, result
    await eventually(lambda: count_points(influxd, database) >= 2)
    rows = {row["kind"]: row for row in influxd.rows("SELECT * FROM rtc_stats WHERE time > 0", database)}
    connection, audio = rows["connection"], rows["audio"]
    assert (connection["availableBandwidth"], connection["rtt"]) == (1.5e6, pytest.approx(41.0))
    assert connection["googTransmitBitrate"] == 5000.0  # a computed metric: the registry cannot convert it
    assert audio["inputLevel"] == 0.25  # audioLevel came first; audioInputLevel is not stored over it
    assert audio["rtt"] == 40.0  # the canonical name wins over the alias
    keys = {row["fieldKey"] for row in influxd.rows("SHOW FIELD KEYS FROM rtc_stats", database)}
    assert not keys & {"availableOutgoingBitrate", "roundTripTime", "audioLevel", "audioInputLevel",
                       "currentRoundTripTime"}
