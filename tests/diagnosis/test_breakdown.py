"""A dimension's breakdown over live peers and over history rows (pure)."""
import pytest

from rtcscope.diagnosis.breakdown import breakdown, lift, live_rows


def peer(index, verdict, mos, **values):
    return (f"c-{index}", "alice", values, verdict, mos)


FLEET = (
    [peer(i, "good", 4.3, browser="Chrome") for i in range(6)]
    + [peer(10 + i, "poor", 2.0 + i / 10, browser="Chrome") for i in range(2)]
    + [peer(20 + i, "poor", 2.5, browser="Safari") for i in range(3)]
    + [peer(30, "fair", 3.8, browser="Safari")]
    + [peer(40, "unknown", None, browser="Firefox")]
    + [peer(50, "good", 4.4), peer(51, "poor", 1.9)]
)


def test_each_value_counted_with_its_poor_share_median_mos_and_lift():
    document = breakdown("browser", "live", live_rows(FLEET, "browser"))
    assert (document["by"], document["state"], document["peers"], document["poor"]) == ("browser", "live", 15, 6)
    assert document["values"] == [
        {"value": "Safari", "peers": 4, "poor": 3, "poor_share": 0.75, "mos_p50": 2.5, "lift": 1.88},
        {"value": "Chrome", "peers": 8, "poor": 2, "poor_share": 0.25, "mos_p50": 4.3, "lift": 0.62},
        {"value": None, "peers": 2, "poor": 1, "poor_share": 0.5, "mos_p50": 1.9, "lift": 1.25},
        {"value": "Firefox", "peers": 1, "poor": 0, "poor_share": 0.0, "mos_p50": None, "lift": 0.0},
    ]


def test_lift_is_the_values_poor_share_over_the_fleets():
    assert lift(3, 4, 6, 15) == pytest.approx((3 / 4) / (6 / 15), abs=0.005)
    assert lift(18, 24, 40, 600) == 11.25
    assert lift(0, 10, 5, 100) == 0.0
    assert lift(3, 4, 0, 15) is None  # no poor peer in the fleet: nothing to compare with


def test_sorted_by_poor_then_peers_descending_and_stable_on_ties():
    rows = [("b", 10, 2, 4.0), ("a", 10, 2, 4.0), ("big", 50, 2, 4.0), (None, 10, 2, 4.0), ("worst", 5, 5, 1.0)]
    values = [found["value"] for found in breakdown("asn", "ended", rows)["values"]]
    assert values == ["worst", "big", "a", "b", None]


def test_the_median_mos_is_the_nearest_rank_one_and_unknown_mos_does_not_count():
    fleet = [peer(i, "good", mos, country="DE") for i, mos in enumerate((4.1, 3.0, 4.4, 2.0))]
    fleet.append(peer(9, "unknown", None, country="DE"))
    (found,) = breakdown("country", "live", live_rows(fleet, "country"))["values"]
    assert found["peers"] == 5 and found["mos_p50"] == 3.0  # 2.0 3.0 | 4.1 4.4: the 2nd of 4


def test_history_rows_as_influxdb_answers_them():
    """count() and sum() of the ended peers' summaries per value (floats from InfluxDB), a value
    of no peer left out."""
    rows = [("turn-2.example.com:443", 24, 18.0, 2.514), (None, 500, 12.0, 4.2), ("turn-1.example.com:3478", 76, 2.0, 4.1),
            ("gone", 0, 0.0, None)]
    document = breakdown("turn_server", "ended", rows)
    assert (document["state"], document["peers"], document["poor"]) == ("ended", 600, 32)
    assert [(v["value"], v["peers"], v["poor"], v["mos_p50"]) for v in document["values"]] == [
        ("turn-2.example.com:443", 24, 18, 2.51), (None, 500, 12, 4.2), ("turn-1.example.com:3478", 76, 2, 4.1)]
    assert document["values"][0]["lift"] == 14.06 and document["values"][0]["poor_share"] == 0.75
    assert all(isinstance(v["poor"], int) for v in document["values"])


def test_an_empty_fleet_has_no_values():
    assert breakdown("os", "live", live_rows([], "os")) == {"by": "os", "state": "live", "peers": 0, "poor": 0,
                                                             "values": []}


def test_one_pass_over_the_live_peers():
    assert breakdown("browser", "live", live_rows(iter(FLEET), "browser"))["peers"] == len(FLEET)
