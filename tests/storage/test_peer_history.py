"""Ended peers' breakdown and explanation from rtc_peer_summaries, against a real influxd:
what InfluxDB's GROUP BY answers gives what the same peers give live."""
import pytest

from rtcscope.diagnosis.breakdown import breakdown, live_rows
from rtcscope.diagnosis.explain import Tally, explain
from rtcscope.dimensions import BUILTIN_DIMENSIONS
from tests.support.fleets import TURN_2, fleet, relayed_over_tcp_through_turn_2
from tests.support.samples import now_ms

DIMENSIONS = BUILTIN_DIMENSIONS + ("region", "app_version", "media_server")


def escaped(tag_value):
    return tag_value.replace(" ", "\\ ")


def summary_line(index, values, poor, mos, ended_ms):
    """An ended peer's summary point: its dimensions as tags (absent when unknown)."""
    tags = "".join(f",{name}={escaped(value)}" for name, value in sorted(values.items()))
    mos_field = f"mos_mean={mos!r}," if mos is not None else ""
    return f"rtc_peer_summaries{tags} {mos_field}poor={float(poor)!r},duration_s=60.0 {ended_ms * 1_000_000 + index}"


@pytest.fixture
def ended(app, influxd, database):
    """800 ended peers with the bad cohort, written a minute ago, and 20 more a day ago."""
    now = now_ms()
    peers = fleet(peers=800, bad=relayed_over_tcp_through_turn_2, seed=5)
    lines = [summary_line(i, values, verdict == "poor", mos, now - 60_000)
             for i, (_call, _peer, values, verdict, mos) in enumerate(peers)]
    lines += [summary_line(i, {"browser": "Old"}, True, 1.0, now - 86_400_000) for i in range(20)]
    influxd.write(lines, database)
    return now, peers


@pytest.mark.gen_test(timeout=30)
async def test_a_history_breakdown_is_the_live_one_of_the_same_peers(app, ended):
    now, peers = ended
    for by in ("turn_server", "browser", "region"):
        rows = await app.store.peer_breakdown(now - 3600_000, now, by)
        assert breakdown(by, "ended", rows) == dict(breakdown(by, "live", live_rows(peers, by)), state="ended")
    rows = await app.store.peer_breakdown(now - 3600_000, now, "turn_server")
    assert sorted(rows, key=str)[-1][0] is None  # the peers without a TURN server
    assert sum(peers for _, peers, _, _ in rows) == 800
    two_days = await app.store.peer_breakdown(now - 2 * 86_400_000, now, "browser")
    assert ("Old", 20, 20.0, 1.0) in two_days


@pytest.mark.gen_test(timeout=30)
async def test_a_dimension_no_ended_peer_has_is_all_null(app, ended):
    now, _ = ended
    rows = await app.store.peer_breakdown(now - 3600_000, now, "app")
    assert [(value, peers) for value, peers, _, _ in rows] == [(None, 800)]


@pytest.mark.gen_test(timeout=30)
async def test_a_history_explanation_finds_the_bad_cohort_as_live_peers_do(app, ended):
    now, peers = ended
    total, counts, poor_groups = await app.store.peer_tally(now - 3600_000, now, DIMENSIONS)
    assert total == 800 and counts[("turn_server", TURN_2)] == sum(
        values.get("turn_server") == TURN_2 for _, _, values, _, _ in peers)
    assert sum(poor for _, poor in poor_groups) == sum(verdict == "poor" for *_, verdict, _ in peers)
    document = explain(Tally.of_history(total, counts, poor_groups), 5)
    assert document == explain(Tally.of_live(peers), 5)
    assert (document["findings"][0]["dimension"], document["findings"][0]["value"]) == ("turn_server", TURN_2)


@pytest.mark.gen_test(timeout=30)
async def test_no_ended_peer_is_an_empty_answer(app):
    now = now_ms()
    assert await app.store.peer_breakdown(now - 3600_000, now, "browser") == []
    assert await app.store.peer_tally(now - 3600_000, now, DIMENSIONS) == (0, {}, [])
    assert explain(Tally.of_history(0, {}, []), 5) == {"peers": 0, "poor": 0, "findings": []}
