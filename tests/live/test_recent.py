"""The detector's memory of the last seconds' samples (rtcscope/live/recent.py) and the
fleet's qualities judged from it all at once (fleet.judge): rows in and out of order,
merges of one point, dropping and trimming, the window's rows and buckets, on values in
FEED_FIELDS order as decode_samples gives them; and the columnar results held equal to
the reference, call by call in plain Python over rtcscope/quality.py
(tests/support/reference.py), over randomised fleets."""
import math
import random

import numpy as np
import pytest

from rtcscope.live import fleet
from rtcscope.live.recent import RecentSamples
from rtcscope.storage.feed import decode_sample_runs, encode_feed_values, encode_samples
from rtcscope.storage.schema import FEED_FIELDS, FEED_INDEX
from tests.support import reference

MS = 1_800_000_000_000


def row(call, peer, *samples):
    """A feed row (call, peer, `w`, last ms) of samples [(kind, ms, {name: value})], through the feed's own encoding."""
    last = max(ms for _, ms, _ in samples)
    text = encode_samples([(kind, ms * 1_000_000, encode_feed_values(values)) for kind, ms, values in samples], last)
    return call, peer, text, last


def runs(*rows):
    """The rows' samples as the detector folds them."""
    return decode_sample_runs(rows)


def decoded(rows):
    """The rows' samples as the reference folds them: [(call, peer, {kind: {time µs: values}})]."""
    return [(call, peer, reference.decode_samples(text, last)) for call, peer, text, last in rows]


def window_of(recent, start_ms, end_ms):
    """{(call, peer): [{name: value} of each kind's row]} of the window."""
    rows, peers = recent.window_rows(start_ms, end_ms)
    calls, names, call_names, _ = recent.peers()
    out = {}
    for values, peer in zip(rows.tolist(), peers.tolist()):
        out.setdefault((call_names[calls[peer]], names[peer]), []).append(
            {name: value for name, value in zip(fleet.WINDOW_NAMES, values) if not math.isnan(value)})
    return out


def test_rows_out_of_order_and_one_point_twice_are_one_series_in_time_order():
    recent = RecentSamples()
    recent.add(runs(row("c", "p", ("audio", MS + 2000, {"rtt": 40.0}), ("audio", MS + 3000, {"rtt": 41.0}))))
    recent.settle(MS)
    recent.add(runs(row("c", "p", ("audio", MS + 1000, {"rtt": 39.0}))))  # late
    recent.add(runs(row("c", "p", ("audio", MS + 3000, {"jitter": 2.0, "rtt": 45.0}))))  # the same point again
    recent.add(runs(row("c", "p", ("audio", MS + 4000, {"rtt": 42.0}))))
    assert recent.touched == {"c": (MS + 1000) * 1000}  # the earliest sample that came in
    recent.settle(MS)
    assert (recent.times // 1000 - MS).tolist() == [1000, 2000, 3000, 4000]
    merged = recent.values[2]  # fields of both, the later's where they meet
    assert (merged[FEED_INDEX["rtt"]], merged[FEED_INDEX["jitter"]]) == (45.0, 2.0)
    assert window_of(recent, MS + 3000, MS + 3000) == {("c", "p"): [{"rtt": 45.0, "jitter": 2.0}]}


def test_settle_forgets_what_is_older_and_the_dropped_peers():
    recent = RecentSamples()
    for call in ("a", "b"):
        recent.add(runs(row(call, "p", *(("audio", MS + i * 1000, {"rtt": float(i)}) for i in range(5)))))
    recent.drop("a", "p")
    assert recent.touched["a"] == 0  # a dropped peer changes every bucket
    recent.settle(MS + 3000)
    assert (recent.times // 1000 - MS).tolist() == [3000, 4000]
    assert list(window_of(recent, MS, MS + 5000)) == [("b", "p")]
    recent.add(runs(row("a", "p", ("audio", MS + 5000, {"rtt": 7.0}))))  # back, under a number freed and reused
    recent.settle(MS + 3000)
    assert window_of(recent, MS + 4500, MS + 6000) == {("a", "p"): [{"rtt": 7.0}]}


def test_the_window_rows_of_a_slice():
    recent = RecentSamples()
    recent.add(runs(row("c", "p", *(("audio", MS + i * 1000, {"rtt": 10.0 * i, "packetsLost": float(i * i)})
                               for i in range(8)),
                    ("video", MS + 2500, {"qualityLimitationReason": 1.0, "freezeCount": 3.0}),
                    ("video", MS + 4500, {"qualityLimitationReason": 2.0, "freezeCount": 5.0}),
                    ("connection", MS + 3000, {"iceState": 4.0}), ("connection", MS + 4800, {"iceState": 5.0}))))
    recent.settle(MS)
    rows = window_of(recent, MS + 2000, MS + 5000)[("c", "p")]  # the samples at 2..5 s
    assert len(rows) == 3
    assert {"rtt": 35.0, "packetsLost": 25.0 - 4.0} in rows  # audio
    assert {"qualityLimitationReason": 2.0, "freezeCount": 2.0} in rows  # video
    assert {"iceState": 5.0} in rows  # connection: the latest state


def test_buckets_of_a_gauge_and_of_a_counters_rate():
    recent = RecentSamples()
    recent.add(runs(row("c", "p", *(("audio", MS + i * 500, {"rtt": 20.0 + i, "packetsLost": [0, 2, 4, 6, 1, 3][i]})
                               for i in range(6)))))
    recent.settle(MS)
    gauge = recent.metric_series("rtt", ["c"], MS, MS + 3000, 1000, rate=False).as_dict()
    assert gauge == {"c": [(MS, 20.5), (MS + 1000, 22.5), (MS + 2000, 24.5)]}
    rates = recent.metric_series("packetsLost", ["c"], MS, MS + 3000, 1000, rate=True).as_dict()
    assert rates == {"c": [(MS + 1000, 4.0)]}  # last per bucket 2, 6, 3: +4 a second, then a reset (none)
    assert FEED_INDEX["packetsLost"] == FEED_FIELDS.index("packetsLost")


def test_a_gauges_buckets_from_the_earliest_new_sample_only():
    recent = RecentSamples()
    recent.add(runs(row("c", "p", *(("audio", MS + i * 1000, {"rtt": 10.0 * i}) for i in range(6)))))
    recent.touched = {}
    recent.add(runs(row("c", "p", ("audio", MS + 4500, {"rtt": 100.0}))))  # late into the bucket at 4 s
    recent.settle(MS)
    whole = recent.metric_series("rtt", ["c"], MS, MS + 6000, 2000, rate=False).as_dict()
    assert whole == {"c": [(MS, 5.0), (MS + 2000, 25.0), (MS + 4000, 190.0 / 3)]}
    fresh = recent.metric_series("rtt", ["c"], MS, MS + 6000, 2000, rate=False, changed=recent.touched).as_dict()
    assert fresh == {"c": [(MS + 4000, 190.0 / 3)]}  # the buckets before it got nothing new


# --- the columnar results against the reference, over randomised fleets ---------------

KINDS = ("audio", "video", "connection")
WINDOW_MS = 10_000


def random_values(rng):
    """A sample's values: each field present or not, now and then over a problem's threshold."""
    values = {"rtt": rng.choice((40.0, 120.0, 350.0, 900.0)) + rng.random(), "jitter": rng.uniform(0, 60),
              "fractionLost": rng.choice((0.0, 0.01, 0.2)), "qualityLimitationReason": float(rng.randint(0, 3)),
              "iceState": float(rng.choice((1, 2, 4, 5))), "packetsLost": float(rng.randint(0, 400)),
              "packetsReceived": float(rng.randint(0, 5000)), "packetsSent": float(rng.randint(0, 5000)),
              "freezeCount": float(rng.randint(0, 3)), "availableBandwidth": rng.uniform(1e5, 3e6)}
    return {name: value for name, value in values.items() if rng.random() < 0.75}


def random_fleet_ticks(rng, ticks, calls):
    """[(now ms, rows, dropped (call, peer))] of a fleet: random peers (clients and media
    server views `P@janus`, some calls with views only) and kinds, absent fields, calls
    ending, peers leaving, comebacks after silence, samples late, stamped ahead, at the
    window's edges and repeated."""
    peers_of = {}
    for index in range(calls):
        clients = [f"p{n}" for n in range(rng.randint(0, 3))]
        views = [f"p{n}@janus" for n in range(rng.randint(0, 2))] + (["janus-9"] if rng.random() < 0.1 else [])
        peers_of[f"c{index}"] = (clients + views) or ["p0"]
    silent = {}
    out = []
    now = MS
    for tick in range(ticks):
        now += 1000
        rows, dropped = [], []
        for call, peers in peers_of.items():
            if silent.get(call, 0) > tick:
                continue
            if rng.random() < 0.03:  # silent for a while, then back
                silent[call] = tick + rng.randint(3, 15)
            for peer in peers:
                if rng.random() < 0.5:
                    continue
                samples = []
                for kind in rng.sample(KINDS, rng.randint(1, 3)):
                    for _ in range(rng.randint(1, 3)):
                        offset = rng.choice((0, -1, -500, -1999, -WINDOW_MS, -WINDOW_MS - 1, 1, 1500, 30_000))
                        us = (now + offset) * 1000 + rng.choice((0, 0, 7))
                        samples.append((kind, us * 1000, encode_feed_values(random_values(rng))))
                rows.append((call, peer, encode_samples(samples, now), now))
                if rng.random() < 0.05:
                    rows.append(rows[-1])  # read twice (the feed's overlap)
            if rng.random() < 0.02:
                dropped.append((call, rng.choice(peers)))
        out.append((now, rows, dropped))
    return out


def assert_same_quality(found, expected):
    assert (found.mos, found.verdict, found.problems, found.worst_peer, found.at) == (
        expected.mos, expected.verdict, expected.problems, expected.worst_peer, expected.at)
    assert found.peers.keys() == expected.peers.keys()
    for peer, window in expected.peers.items():
        assert found.peers[peer].keys() == window.keys()
        for name, value in window.items():
            assert found.peers[peer][name] == (None if value is None else pytest.approx(value, rel=1e-9)), (peer, name)
    if expected.worst is None:
        assert found.worst is None
    else:
        assert found.worst is found.peers[expected.worst_peer or ""]


@pytest.mark.parametrize("seed", range(6))
def test_the_columnar_qualities_and_buckets_equal_the_reference(seed):
    rng = random.Random(seed)
    recent, expected = RecentSamples(), reference.Samples()
    judged = 0
    for now, rows, dropped in random_fleet_ticks(rng, ticks=25, calls=60):
        recent.add(runs(*rows))
        expected.add(decoded(rows))
        for call, peer in dropped:
            recent.drop(call, peer)
            expected.drop(call, peer)
        recent.settle(now - WINDOW_MS)
        live = {call for call in expected.calls if rng.random() < 0.9} | {"never-sent"}
        rows_now, row_peers = recent.window_rows(now - WINDOW_MS, now)
        found = fleet.judge(rows_now, row_peers, recent.peers(), live, now)
        wanted = reference.qualities(expected.windows(live, now - WINDOW_MS, now)[0], live, now)
        assert found.keys() == wanted.keys() == live
        for call in live:
            assert_same_quality(found[call], wanted[call])
        judged += sum(1 for call in live if wanted[call].mos is not None)
        calls = sorted(live)
        for field, rate in (("rtt", False), ("packetsLost", True), ("availableBandwidth", False)):
            series = recent.metric_series(field, calls, now - 8000, now, 2000, rate=rate).as_dict()
            assert series == {call: [(ms, pytest.approx(value, rel=1e-9)) for ms, value in points]
                              for call, points in expected.metric_series(field, calls, now - 8000, now, 2000,
                                                                         rate=rate).items()}
    assert judged > 500  # the fleets judged something


def test_the_store_rows_are_judged_as_the_samples_are():
    """fleet.call_qualities (rows of Store.quality_window) and the samples' path agree."""
    rng = random.Random(11)
    recent = RecentSamples()
    now, rows, _ = random_fleet_ticks(rng, ticks=1, calls=80)[0]
    recent.add(runs(*rows))
    recent.settle(now - WINDOW_MS)
    window_rows, row_peers = recent.window_rows(now - WINDOW_MS, now)
    calls, names, call_names, _ = recent.peers()
    store_rows = [(call_names[calls[peer]], names[peer], "kind",
                   {name: value for name, value in zip(fleet.WINDOW_NAMES, values) if not np.isnan(value)})
                  for values, peer in zip(window_rows.tolist(), row_peers.tolist())]
    live = set(call_names) - {None}
    from_samples = fleet.judge(window_rows, row_peers, recent.peers(), live, now)
    from_rows = fleet.call_qualities(store_rows, live, now)
    for call in live:
        assert_same_quality(from_rows[call], from_samples[call])
