"""The detector's memory of the last seconds' samples on its own (rtcscope/live/recent.py):
rows in and out of order, merges of one point, trimming, the window's rows and bounds,
and buckets, on values in FEED_FIELDS order as decode_samples gives them."""
from rtcscope.live import fleet
from rtcscope.live.recent import RecentSamples
from rtcscope.storage.feed import decode_samples, encode_feed_values, encode_samples
from rtcscope.storage.schema import FEED_FIELDS, FEED_INDEX

MS = 1_800_000_000_000


def row(call, peer, *samples):
    """A feed row's samples [(kind, ms, {name: value})], through the feed's own encoding."""
    last = max(ms for _, ms, _ in samples)
    text = encode_samples([(kind, ms * 1_000_000, encode_feed_values(values)) for kind, ms, values in samples], last)
    return call, peer, decode_samples(text, last)


def named(values):
    return {name: value for name, value in zip(FEED_FIELDS, values) if value is not None}


def test_rows_out_of_order_and_one_point_twice_keep_the_series_in_time_order():
    recent = RecentSamples()
    recent.add([row("c", "p", ("audio", MS + 2000, {"rtt": 40.0}), ("audio", MS + 3000, {"rtt": 41.0}))])
    recent.add([row("c", "p", ("audio", MS + 1000, {"rtt": 39.0}))])  # late
    recent.add([row("c", "p", ("audio", MS + 3000, {"jitter": 2.0, "rtt": 45.0}))])  # the same point again
    recent.add([row("c", "p", ("audio", MS + 4000, {"rtt": 42.0}))])
    series = recent.calls["c"]["p"]["audio"]
    assert list(series) == [(MS + 1000) * 1000, (MS + 2000) * 1000, (MS + 3000) * 1000, (MS + 4000) * 1000]
    assert named(series[(MS + 3000) * 1000]) == {"rtt": 45.0, "jitter": 2.0}  # fields of both, the later's where they meet
    assert recent.touched == {"c": (MS + 1000) * 1000}  # the earliest sample that came in


def test_trim_forgets_only_the_given_calls_older_samples():
    recent = RecentSamples()
    for call in ("a", "b"):
        recent.add([row(call, "p", *(("audio", MS + i * 1000, {"rtt": float(i)}) for i in range(5)))])
    recent.trim(MS + 3000, {"a"})
    assert [us // 1000 - MS for us in recent.calls["a"]["p"]["audio"]] == [3000, 4000]
    assert len(recent.calls["b"]["p"]["audio"]) == 5


def test_the_window_row_of_a_slice_and_how_long_it_holds():
    recent = RecentSamples()
    recent.add([row("c", "p", *(("audio", MS + i * 1000, {"rtt": 10.0 * i, "packetsLost": float(i * i)})
                               for i in range(8)),
                    ("video", MS + 2500, {"qualityLimitationReason": 1.0, "freezeCount": 3.0}),
                    ("video", MS + 4500, {"qualityLimitationReason": 2.0, "freezeCount": 5.0}),
                    ("connection", MS + 3000, {"iceState": 4.0}), ("connection", MS + 4800, {"iceState": 5.0}))])
    by_call, until = recent.windows(["c", "none"], MS + 2000, MS + 5000)  # samples at 2..5 s inside
    audio, video, connection = (dict(zip(fleet.WINDOW_NAMES, row)) for row in by_call["c"]["p"])  # in WINDOW_NAMES order
    assert audio == {"rtt": 35.0, "jitter": None, "fractionLost": None, "qualityLimitationReason": None,
                     "iceState": None, "packetsLost": 25.0 - 4.0, "packetsReceived": None, "packetsSent": None,
                     "freezeCount": None}
    assert (video["qualityLimitationReason"], video["freezeCount"], video["rtt"]) == (2.0, 2.0, None)
    assert (connection["iceState"], connection["rtt"]) == (5.0, None)  # the latest state
    # The window slides with the clock: its oldest sample (2 s) leaves after 5 s, before the
    # one stamped at 6 s enters; until then it has the same samples.
    assert until == {"c": MS + 5000}
    assert "none" not in by_call


def test_buckets_of_a_gauge_and_of_a_counters_rate():
    recent = RecentSamples()
    recent.add([row("c", "p", *(("audio", MS + i * 500, {"rtt": 20.0 + i, "packetsLost": [0, 2, 4, 6, 1, 3][i]})
                               for i in range(6)))])
    gauge = recent.metric_series("rtt", ["c"], MS, MS + 3000, 1000, rate=False)
    assert gauge == {"c": [(MS, 20.5), (MS + 1000, 22.5), (MS + 2000, 24.5)]}
    rates = recent.metric_series("packetsLost", ["c"], MS, MS + 3000, 1000, rate=True)
    assert rates == {"c": [(MS + 1000, 4.0)]}  # last per bucket 2, 6, 3: +4 a second, then a reset (none)
    assert FEED_INDEX["packetsLost"] == FEED_FIELDS.index("packetsLost")


def test_a_gauges_buckets_from_the_earliest_new_sample_only():
    recent = RecentSamples()
    recent.add([row("c", "p", *(("audio", MS + i * 1000, {"rtt": 10.0 * i}) for i in range(6)))])
    recent.touched = {}
    recent.add([row("c", "p", ("audio", MS + 4500, {"rtt": 100.0}))])  # late into the bucket at 4 s
    whole = recent.metric_series("rtt", ["c"], MS, MS + 6000, 2000, rate=False)
    assert whole == {"c": [(MS, 5.0), (MS + 2000, 25.0), (MS + 4000, 190.0 / 3)]}
    fresh = recent.metric_series("rtt", ["c"], MS, MS + 6000, 2000, rate=False, changed=recent.touched)
    assert fresh == {"c": [(MS + 4000, 190.0 / 3)]}  # the buckets before it got nothing new
    recent.drop("c", "other")
    assert recent.touched == {"c": 0}  # a dropped peer changes every bucket
