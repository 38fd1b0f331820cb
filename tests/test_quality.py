"""MOS estimation and detection of sustained quality problems."""
import math
import random

import numpy as np
import pytest

from rtcscope.quality import (
    FAIR_MOS,
    GOOD_MOS,
    JITTER_THRESHOLD_MS,
    LOSS_THRESHOLD,
    RTT_THRESHOLD_MS,
    codes_of_mask,
    current_problems,
    estimate_mos,
    estimate_mos_array,
    find_problems,
    loss_ratio,
    loss_ratio_array,
    mos_timeline,
    people,
    problem_mask,
    problem_mask_array,
    summarize_quality,
    voting_peers,
)
from rtcscope.registry import ICE_STATE_CODES, QUALITY_LIMITATION_CODES

T0 = 1795536126000


def every_second(*values):
    return [(T0 + i * 1000, value) for i, value in enumerate(values)]


def test_perfect_network_scores_near_the_e_model_ceiling():
    assert estimate_mos(0, 0, 0) == pytest.approx(4.40, abs=0.01)


def test_five_percent_loss_is_clearly_worse():
    assert estimate_mos(0, 0, 0.05) == pytest.approx(3.91, abs=0.01)
    assert estimate_mos(0, 0, 0.05) < estimate_mos(0, 0, 0) - 0.4


def test_cut_offs_are_the_g107_satisfaction_bands():
    assert GOOD_MOS == pytest.approx(4.02, abs=0.01)  # R = 80
    assert FAIR_MOS == pytest.approx(3.60, abs=0.01)  # R = 70


def test_mos_falls_as_rtt_jitter_or_loss_grow():
    rtts = [estimate_mos(rtt, 5, 0.01) for rtt in (0, 50, 150, 300, 500, 1000)]
    jitters = [estimate_mos(50, jitter, 0.01) for jitter in (0, 10, 30, 100, 300)]
    losses = [estimate_mos(50, 5, loss) for loss in (0, 0.01, 0.03, 0.1, 0.3)]
    for scores in (rtts, jitters, losses):
        assert scores == sorted(scores, reverse=True)
        assert len(set(scores)) == len(scores)


def test_mos_stays_in_range():
    assert estimate_mos(10_000, 1_000, 1.0) == 1.0
    assert 1.0 <= estimate_mos(-5, -5, -1) <= 4.5
    assert estimate_mos(0, 0, 2.0) == estimate_mos(0, 0, 1.0)


def test_mos_needs_rtt_or_loss():
    assert estimate_mos(None, None, None) is None
    assert estimate_mos(None, 20, None) is None
    assert estimate_mos(100, None, None) == estimate_mos(100, 0, 0)
    assert estimate_mos(None, None, 0.02) == estimate_mos(0, 0, 0.02)


def test_sustained_loss_window_is_found_and_a_single_spike_ignored():
    series = {
        # spike at second 1, sustained loss seconds 4..7 (10 of 110, 20 of 120 ...), then clean
        "packetsLost": every_second(0, 30, 0, 0, 10, 20, 10, 5, 0, 0),
        "packetsReceived": every_second(100, 70, 100, 100, 100, 100, 100, 100, 100, 100),
    }
    assert find_problems(series) == [{
        "problem": "high_loss",
        "metric": "packetsLost",
        "from": T0 + 4000,
        "to": T0 + 7000,
        "worst": 20 / 120,
        "threshold": LOSS_THRESHOLD,
    }]


def test_packets_sent_keeps_a_send_only_peer_from_reading_as_total_loss():
    series = {
        "packetsLost": every_second(1, 1, 1, 1),
        "packetsReceived": every_second(0, 0, 0, 0),
        "packetsSent": every_second(100, 100, 100, 100),
    }
    assert find_problems(series) == []


def test_fraction_lost_is_used_without_packet_rates():
    series = {"fractionLost": every_second(0.0, 0.05, 0.1, 0.06, 0.01)}
    (problem,) = find_problems(series)
    assert (problem["metric"], problem["from"], problem["to"], problem["worst"]) == (
        "fractionLost", T0 + 1000, T0 + 3000, 0.1
    )


def test_two_points_far_apart_are_sustained_by_duration():
    series = {"rtt": [(T0, 400.0), (T0 + 10_000, 350.0), (T0 + 20_000, 40.0)]}
    (problem,) = find_problems(series)
    assert problem == {"problem": "high_rtt", "metric": "rtt", "from": T0, "to": T0 + 10_000,
                       "worst": 400.0, "threshold": RTT_THRESHOLD_MS}


def test_every_kind_of_problem_sorted_by_start():
    series = {
        "jitter": every_second(5, 5, 5, 40, 50, 45, 5),
        "rtt": every_second(100, 310, 320, 330, 100, 100, 100),
        "freezeCount": every_second(0, 0, 0, 0, 0, 1, 0),
        "qualityLimitationReason": every_second(1, 1, 1, 0, 2, 2, 2),
        "packetsLost": every_second(None, None, None, None, None, None, None),
    }
    problems = find_problems(series)
    assert [(p["problem"], p["from"], p["to"]) for p in problems] == [
        ("cpu_limited", T0, T0 + 2000),
        ("high_rtt", T0 + 1000, T0 + 3000),
        ("high_jitter", T0 + 3000, T0 + 5000),
        ("bandwidth_limited", T0 + 4000, T0 + 6000),
        ("freezes", T0 + 5000, T0 + 5000),
    ]
    assert problems[2]["worst"] == 50 and problems[2]["threshold"] == JITTER_THRESHOLD_MS


def test_unsorted_points_and_empty_buckets_are_handled():
    series = {"rtt": [(T0 + 2000, 400.0), (T0, 400.0), (T0 + 1000, None), (T0 + 3000, 500.0), (T0 + 1500, 450.0)]}
    (problem,) = find_problems(series)
    assert (problem["from"], problem["to"], problem["worst"]) == (T0, T0 + 3000, 500.0)


def test_mos_timeline_shows_when_the_call_got_worse():
    series = {
        "rtt": every_second(40, 40, 500, 40),
        "jitter": every_second(2, None, 2, 2),
        "packetsLost": every_second(0, 0, 0, 10),
        "packetsReceived": every_second(90, 90, 90, 90),
    }
    assert mos_timeline(series) == [
        (T0, estimate_mos(40, 2, 0)),
        (T0 + 1000, estimate_mos(40, None, 0)),
        (T0 + 2000, estimate_mos(500, 2, 0)),
        (T0 + 3000, estimate_mos(40, 2, 0.1)),
    ]
    scores = [mos for _, mos in mos_timeline(series)]
    assert scores[0] > 4.3 and scores[2] < 4.0 and scores[3] < 3.5
    assert mos_timeline({"jitter": every_second(1, 2)}) == []
    assert mos_timeline({"fractionLost": every_second(0.0, 0.2)}) == [
        (T0, estimate_mos(None, None, 0.0)), (T0 + 1000, estimate_mos(None, None, 0.2))]


def test_summary_of_a_clean_call_is_good():
    series = {
        "rtt": every_second(40, 42, 41),
        "jitter": every_second(2, 3, 2),
        "packetsLost": every_second(0, 0, 0),
        "packetsReceived": every_second(50, 50, 50),
    }
    summary = summarize_quality(series)
    assert summary["verdict"] == "good"
    assert summary["mos"] == pytest.approx(estimate_mos(41, 7 / 3, 0.0))
    assert summary["problems"] == []


def test_summary_uses_overall_loss_ratio_and_reports_problems():
    series = {
        "rtt": every_second(350, 400, 450, 400),
        "packetsLost": every_second(10, 10, 10, 10),
        "packetsReceived": every_second(90, 90, 90, 90),
    }
    summary = summarize_quality(series)
    assert summary["mos"] == pytest.approx(estimate_mos(400, None, 0.1))
    assert summary["verdict"] == "poor"
    assert {p["problem"] for p in summary["problems"]} == {"high_rtt", "high_loss"}


def test_summary_without_data():
    assert summarize_quality({}) == {"mos": None, "verdict": None, "problems": [], "timeline": []}
    assert summarize_quality({"jitter": every_second(1, 2)})["mos"] is None


def test_a_value_hovering_at_a_threshold_is_one_problem():
    # three sustained stretches over 300 ms, each one second below apart: one problem
    hovering = every_second(*([350.0] * 4 + [250.0] + [360.0] * 4 + [290.0] + [340.0] * 4))
    [problem] = find_problems({"rtt": hovering})
    assert (problem["problem"], problem["from"], problem["to"], problem["worst"]) == (
        "high_rtt", T0, T0 + 13_000, 360.0)
    # apart by the sustain time or more: two problems
    apart = every_second(*([350.0] * 4 + [250.0] * 4 + [350.0] * 4))
    assert [(p["from"], p["to"]) for p in find_problems({"rtt": apart})] == [(T0, T0 + 3000), (T0 + 8000, T0 + 11_000)]


def test_freezes_close_together_are_one_problem():
    freezes = every_second(1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    assert [(p["problem"], p["from"], p["to"]) for p in find_problems({"freezeCount": freezes})] == [
        ("freezes", T0, T0 + 2000), ("freezes", T0 + 7000, T0 + 7000)]


def test_window_values_show_the_summary_problems():
    assert current_problems({"rtt": 301.0, "jitter": 30.0, "loss": 0.031, "freezes": 1.0,
                             "qualityLimitationReason": 2.0}) == ["high_loss", "high_rtt", "freezes", "bandwidth_limited"]
    assert current_problems({"rtt": None, "jitter": 31.0, "loss": None, "freezes": 0.0,
                             "qualityLimitationReason": 1.0}) == ["high_jitter", "cpu_limited"]
    assert current_problems({}) == []


def test_a_failed_ice_state_is_a_problem_at_once_with_the_next_bit():
    failed, ready = ICE_STATE_CODES["failed"], ICE_STATE_CODES["ready"]
    assert current_problems({"rtt": 40.0, "iceState": failed}) == ["ice_failed"]
    assert current_problems({"iceState": ready}) == []
    [found] = find_problems({"iceState": every_second(1.0, 2.0, ready, ready, failed)})  # one point is enough
    assert (found["problem"], found["metric"], found["from"], found["to"]) == ("ice_failed", "iceState", T0 + 4000,
                                                                              T0 + 4000)
    assert problem_mask(["ice_failed", "high_loss"]) == 65.0  # bits 1..32 keep their codes
    assert codes_of_mask(64.0 + 32.0) == ["bandwidth_limited", "ice_failed"]


def test_a_media_servers_view_votes_only_without_clients():
    assert voting_peers(["alice", "alice@janus", "bob"]) == ["alice", "bob"]
    assert voting_peers(["alice@janus", "bob@janus"]) == ["alice@janus", "bob@janus"]
    client = {"rtt": every_second(40, 40, 40, 40)}
    view = {"rtt": every_second(900, 900, 900, 900), "iceState": every_second(4.0, 4.0, 5.0, 5.0)}
    found = summarize_quality(client, view)
    assert found["mos"] == pytest.approx(estimate_mos(40, None, None))
    assert [p["problem"] for p in found["problems"]] == ["ice_failed"]  # not the view's high_rtt


def test_a_client_and_the_media_servers_view_of_it_are_one_person():
    assert people(["alice", "bob"]) == (["alice", "bob"], {})
    assert people(["alice", "alice@janus", "bob"]) == (["alice", "bob"], {"alice": "alice@janus"})
    # A view of no client (its opaque id named the call alone) may be one of the clients: no one.
    assert people(["alice", "bob", "janus-7@janus"]) == (["alice", "bob"], {})
    # Without clients, the views are the people, as they are the call's voters.
    assert people(["carol@janus", "janus-7@janus"]) == (["carol@janus", "janus-7@janus"], {})
    assert people([]) == ([], {})


# --- the array forms the fleet view uses, against the scalar ones -----------------------

def random_inputs(rng, count):
    """Window values as the scalar forms take them (None: none): random, negative, absurd,
    missing, and on and around each threshold and the E-model's knee and clamps."""
    edges = {"rtt": (RTT_THRESHOLD_MS, 2 * (177.3 - 10.0), 0.0, 1e6), "jitter": (JITTER_THRESHOLD_MS, 0.0, 88.65),
             "loss": (LOSS_THRESHOLD, 0.0, 1.0, 2.0, 1.5), "freezes": (0.0, 1.0),
             "qualityLimitationReason": tuple(QUALITY_LIMITATION_CODES.values()) + (1.5, 2.5, 0.49),
             "iceState": tuple(ICE_STATE_CODES.values()) + (ICE_STATE_CODES["failed"] + 0.5,)}
    spread = {"rtt": 2000.0, "jitter": 200.0, "loss": 1.2, "freezes": 3.0, "qualityLimitationReason": 4.0,
              "iceState": 8.0}
    rows = []
    for _ in range(count):
        row = {}
        for name, top in spread.items():
            pick = rng.random()
            if pick < 0.2:
                row[name] = None
            elif pick < 0.5:
                edge = rng.choice(edges[name])
                row[name] = edge + rng.choice((0.0, 0.0, 1e-9, -1e-9, math.ulp(edge), -math.ulp(edge)))
            else:
                row[name] = rng.uniform(-0.1 * top, top)
        rows.append(row)
    return rows


def as_array(rows, name):
    return np.array([math.nan if row[name] is None else row[name] for row in rows])


@pytest.mark.parametrize("seed", range(3))
def test_the_array_mos_is_the_scalar_mos_value_for_value(seed):
    rows = random_inputs(random.Random(seed), 3000)
    found = estimate_mos_array(as_array(rows, "rtt"), as_array(rows, "jitter"), as_array(rows, "loss"))
    for row, mos in zip(rows, found.tolist()):
        expected = estimate_mos(row["rtt"], row["jitter"], row["loss"])
        assert (None if math.isnan(mos) else mos) == expected, row  # one formula: equal, not close
    assert np.isnan(found).any() and (found == 1.0).any() and (found > 4.0).any()


@pytest.mark.parametrize("seed", range(3))
def test_the_array_problems_are_the_scalar_problems_value_for_value(seed):
    rows = random_inputs(random.Random(seed), 3000)
    masks = problem_mask_array({name: as_array(rows, name) for name in rows[0]})
    for row, mask in zip(rows, masks.tolist()):
        assert mask == problem_mask(current_problems(row)), row
    assert len(set(masks.tolist())) > 30


@pytest.mark.parametrize("seed", range(3))
def test_the_array_loss_ratio_is_the_scalar_one_value_for_value(seed):
    rng = random.Random(seed)
    counts = [[rng.choice((None, 0.0, -1.0, rng.uniform(-5, 50), rng.uniform(0, 5000))) for _ in range(3)]
              for _ in range(3000)]
    counts += [[0.0, 0.0, 0.0], [-2.0, 5.0, None], [3.0, None, None], [None, 7.0, 1.0]]
    found = loss_ratio_array(*(np.array([math.nan if value is None else value for value in column])
                               for column in zip(*counts)))
    for (lost, received, sent), ratio in zip(counts, found.tolist()):
        expected = None if lost is None else loss_ratio(lost, received or 0.0, sent or 0.0)
        assert (None if math.isnan(ratio) else ratio) == expected, (lost, received, sent)
        assert ratio != 0 or math.copysign(1, ratio) == 1  # never -0.0
    assert np.isnan(found).any() and (found == 0).any() and (found == 1).any()


def test_the_clamps_are_exact_at_the_ends():
    assert estimate_mos(0, 0, 1.0) == estimate_mos(0, 0, 7.0) == estimate_mos_array(
        np.array([0.0]), np.array([0.0]), np.array([7.0]))[0]
    assert estimate_mos(1e9, 0, 0) == 1.0 and estimate_mos_array(np.array([1e9]), np.zeros(1), np.zeros(1))[0] == 1.0
