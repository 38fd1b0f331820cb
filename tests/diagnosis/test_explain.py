"""What sets the poor peers apart: the explain statistic on known fleets (pure)."""
import fractions
import math
import random

import pytest

from rtcscope.diagnosis.explain import MAX_FINDINGS, Tally, candidates, explain, log_binomial_tail, wilson_lower
from tests.support.fleets import TURN_2, fleet, relayed_over_tcp_through_turn_2


def found(document):
    return [(finding["dimension"], finding["value"]) for finding in document["findings"]]


def test_a_bad_cohort_among_good_peers_is_the_first_finding_and_named_once():
    peers = fleet(bad=relayed_over_tcp_through_turn_2)
    document = explain(Tally.of_live(peers), min_poor=5)
    first = document["findings"][0]
    assert (first["dimension"], first["value"]) == ("turn_server", TURN_2)
    cohort = [p for p in peers if relayed_over_tcp_through_turn_2(p[2])]
    poor = [p for p in peers if p[3] == "poor"]
    assert (document["peers"], document["poor"]) == (2000, len(poor))
    assert first["peers"] == len(cohort) and first["poor"] == sum(p[3] == "poor" for p in cohort)
    assert first["poor_share"] == round(first["poor"] / first["peers"], 4)
    assert first["share_of_poor"] == round(first["poor"] / len(poor), 4)
    assert first["lift"] == round((first["poor"] / first["peers"]) / (len(poor) / 2000), 2) and first["lift"] > 5
    # The same poor peers named less well: relayed, over TCP (turn-1's TCP relays are fine).
    assert ("relay_protocol", "tcp") not in found(document)
    assert ("candidate_type", "relay") not in found(document)
    assert len(document["findings"]) == 1


def test_a_fleet_with_nothing_special_finds_nothing():
    for seed in range(5):
        for rate in (0.03, 0.1, 0.3):
            document = explain(Tally.of_live(fleet(poor_rate=rate, seed=seed)), min_poor=5)
            assert document["findings"] == [], (seed, rate, document["findings"])
            assert document["poor"] > 0


def test_a_small_value_at_lift_2_by_chance_is_not_a_finding():
    """12 peers of one network, 6 poor where the fleet has 25 %: lift 2, as chance gives it
    now and then among many values. Not confident enough to be named."""
    peers = [(f"c-{i}", "a", {"asn": "AS1"}, "poor" if i < 6 else "good", None) for i in range(12)]
    peers += [(f"d-{i}", "a", {"asn": f"AS{2 + i % 50}"}, "poor" if i % 4 == 3 else "good", None) for i in range(1200)]
    tally = Tally.of_live(peers)
    assert tally.poor_counts[("asn", "AS1")] == 6 and tally.counts[("asn", "AS1")] == 12
    assert explain(tally, min_poor=5)["findings"] == []


def test_two_separate_causes_are_two_findings_the_bigger_first():
    peers = fleet(bad=lambda v: relayed_over_tcp_through_turn_2(v) or v["asn"] == "AS3", seed=3)
    assert found(explain(Tally.of_live(peers), min_poor=5))[:2] == [("turn_server", TURN_2), ("asn", "AS3")]


def test_a_value_inside_a_better_finding_is_kept_when_its_lift_is_higher():
    """Cellular peers are poor at 50 %, those of AS7 (all cellular) at 100 %: AS7's poor peers are
    all cellular ones, but it names them better, so both are findings."""
    rng = random.Random(1)
    peers = []
    for index in range(3000):
        values = {"network_type": "cellular" if index % 5 == 0 else "wifi"}
        if index % 5 == 0 and index % 25 == 0:
            values["asn"] = "AS7"
        bad = values.get("asn") == "AS7" or (values["network_type"] == "cellular" and rng.random() < 0.5)
        peers.append((f"c-{index}", "p", values, "poor" if bad or rng.random() < 0.03 else "good", None))
    document = explain(Tally.of_live(peers), min_poor=5)
    assert found(document) == [("network_type", "cellular"), ("asn", "AS7")]
    assert document["findings"][1]["lift"] > document["findings"][0]["lift"]


def test_a_value_sharing_less_than_80_percent_of_its_poor_peers_is_not_nested():
    """Safari and relay_protocol=tcp are two causes; a third of the TCP relays' poor peers use Safari."""
    peers = []
    for index in range(3000):
        values = {"browser": "Safari" if index % 10 == 0 else "Chrome",
                  "relay_protocol": "tcp" if index % 10 in (0, 1, 2) and index % 3 == 0 else "udp"}
        bad = values["browser"] == "Safari" or values["relay_protocol"] == "tcp"
        peers.append((f"c-{index}", "p", values, "poor" if bad or index % 97 == 0 else "good", None))
    assert set(found(explain(Tally.of_live(peers), min_poor=5))) == {("browser", "Safari"), ("relay_protocol", "tcp")}


def test_the_min_poor_threshold():
    """A cohort of 6 peers, all poor, in a fleet that is otherwise fine."""
    peers = [(f"c-{i}", "a", {"country": "NZ" if i < 6 else "DE"}, "poor" if i < 6 or i % 50 == 0 else "good", None)
             for i in range(1000)]
    assert found(explain(Tally.of_live(peers), min_poor=6)) == [("country", "NZ")]
    assert found(explain(Tally.of_live(peers), min_poor=7)) == []


def test_a_lift_of_exactly_2_passes_and_just_under_does_not():
    def fleet_with(poor_in_value):
        # 1000 peers, 100 poor (10 %); the value has 500 peers: lift 2 needs 100 of them poor.
        peers = [(f"c-{i}", "a", {"os": "Linux" if i < 500 else "Windows"},
                  "poor" if (i < poor_in_value or 500 <= i < 500 + 100 - poor_in_value) else "good", None)
                 for i in range(1000)]
        return explain(Tally.of_live(peers), min_poor=5)
    assert found(fleet_with(100)) == [("os", "Linux")] and fleet_with(100)["findings"][0]["lift"] == 2.0
    assert found(fleet_with(99)) == []


def test_ties_name_the_more_specific_dimension():
    """Every TCP relay goes through turn-2 and every turn-2 relay is over TCP: the same peers."""
    peers = [(f"c-{i}", "a", {"relay_protocol": "tcp", "turn_server": TURN_2, "candidate_type": "relay"}
              if i < 40 else {"candidate_type": "host"}, "poor" if i < 36 or i % 40 == 0 else "good", None)
             for i in range(2000)]
    assert found(explain(Tally.of_live(peers), min_poor=5)) == [("turn_server", TURN_2)]
    assert [(c.dimension, c.value) for c in candidates(Tally.of_live(peers), 5)] == [
        ("turn_server", TURN_2), ("relay_protocol", "tcp"), ("candidate_type", "relay")]


def test_values_past_the_cardinality_bound_are_never_a_finding():
    peers = [(f"c-{i}", "a", {"asn": "other" if i < 30 else "AS1"}, "poor" if i < 30 else "good", None)
             for i in range(600)]
    assert found(explain(Tally.of_live(peers), min_poor=5)) == []


def test_at_most_ten_findings():
    peers = []
    for index in range(4000):
        group = index % 40
        peers.append((f"c-{index}", "a", {"media_server": f"sfu-{group}"}, "poor" if group < 12 else "good", None))
    document = explain(Tally.of_live(peers), min_poor=5)
    assert len(document["findings"]) == MAX_FINDINGS
    assert all(finding["lift"] == pytest.approx(40 / 12, abs=0.01) for finding in document["findings"])
    assert [f["value"] for f in document["findings"]] == sorted(f"sfu-{g}" for g in range(12))[:10]


def test_no_poor_peer_or_every_peer_poor_or_no_peer_finds_nothing():
    good = [(f"c-{i}", "a", {"os": "Linux"}, "good", 4.3) for i in range(50)]
    poor = [(f"c-{i}", "a", {"os": "Linux"}, "poor", 2.0) for i in range(50)]
    assert explain(Tally.of_live(good), 5) == {"peers": 50, "poor": 0, "findings": []}
    assert explain(Tally.of_live(poor), 5) == {"peers": 50, "poor": 50, "findings": []}
    assert explain(Tally.of_live([]), 5) == {"peers": 0, "poor": 0, "findings": []}


def test_history_counts_give_what_the_same_live_peers_give():
    """Ended peers come as InfluxDB groups them: peers per value of each dimension, and the
    poor peers grouped by all their values."""
    peers = fleet(bad=relayed_over_tcp_through_turn_2, seed=11)
    counts, poor_groups = {}, {}
    for _call, _peer, values, verdict, _mos in peers:
        for item in values.items():
            counts[item] = counts.get(item, 0) + 1
        if verdict == "poor":
            key = tuple(sorted(values.items()))
            poor_groups[key] = poor_groups.get(key, 0) + 1
    tally = Tally.of_history(len(peers), counts, [(dict(key), poor) for key, poor in poor_groups.items()])
    assert explain(tally, 5) == explain(Tally.of_live(peers), 5)
    assert explain(tally, 5)["findings"][0]["value"] == TURN_2


def test_wilson_lower_bound():
    assert wilson_lower(0, 10, 1.96) == 0.0
    assert wilson_lower(5, 10, 1.96) == pytest.approx(0.2366, abs=1e-4)
    assert wilson_lower(45, 45, 1.96) == pytest.approx(0.9213, abs=1e-4)
    assert wilson_lower(18, 24, 3.0) < wilson_lower(18, 24, 1.96) < 18 / 24


@pytest.mark.parametrize("successes, trials, rate", [(13, 55, "1/10"), (6, 6, "1/10"), (100, 500, "1/10"),
                                                     (45, 45, "7/100"), (300, 1000, "3/20"), (5, 5000, "1/2000")])
def test_the_binomial_tail_is_exact(successes, trials, rate):
    rate = fractions.Fraction(rate)
    exact = 1 - sum(math.comb(trials, k) * rate ** k * (1 - rate) ** (trials - k) for k in range(successes))
    assert log_binomial_tail(successes, trials, float(rate)) == pytest.approx(math.log(exact), rel=1e-9)
