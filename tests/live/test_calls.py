"""Call liveness from presence rows and end events, without InfluxDB."""
from rtcscope.live.calls import build_calls

NOW = 1_795_536_200_000
TIMEOUT = 15_000


def presence(call, peer, first, last, recv):
    return (call, peer, {"first": first, "last": last, "recv": recv})


def end(call, peer, at, received):
    return (call, peer, {"time": received, "at": at})


def test_live_until_every_peer_has_ended_or_timed_out():
    rows = [presence("c", "alice", NOW - 9000, NOW - 1000, NOW - 900),
            presence("c", "bob", NOW - 8000, NOW - 20_000, NOW - 20_000)]
    calls = build_calls(rows, [], NOW, TIMEOUT)
    assert calls["c"].state == "live" and calls["c"].ended is None
    calls = build_calls(rows, [end("c", "alice", NOW - 500, NOW - 400)], NOW, TIMEOUT)
    assert calls["c"].state == "ended" and calls["c"].ended == NOW - 500
    assert calls["c"].peers == ["alice", "bob"]


def test_call_wide_end_ends_every_peer():
    rows = [presence("c", "alice", NOW - 5000, NOW - 100, NOW - 100),
            presence("c", "bob", NOW - 5000, NOW - 100, NOW - 100)]
    calls = build_calls(rows, [end("c", "", NOW - 50, NOW - 40)], NOW, TIMEOUT)
    assert calls["c"].state == "ended" and calls["c"].ended == NOW - 50


def test_samples_taken_after_the_end_bring_the_call_back():
    rows = [presence("c", "alice", NOW - 5000, NOW - 100, NOW - 100)]
    calls = build_calls(rows, [end("c", "alice", NOW - 3000, NOW - 2900)], NOW, TIMEOUT)
    assert calls["c"].state == "live"


def test_a_request_overtaken_by_the_end_beacon_does_not_revive_the_call():
    # the last stats (taken before the end) reached InfluxDB after the beacon did
    rows = [presence("c", "alice", NOW - 5000, NOW - 1200, NOW - 100)]
    calls = build_calls(rows, [end("c", "alice", NOW - 1000, NOW - 300)], NOW, TIMEOUT)
    assert calls["c"].state == "ended" and calls["c"].ended == NOW - 1000


def test_timeout_ends_at_the_last_sample():
    rows = [presence("c", "", NOW - 30_000, NOW - 16_500, NOW - 16_000)]
    calls = build_calls(rows, [], NOW, TIMEOUT)
    assert (calls["c"].state, calls["c"].ended, calls["c"].peers) == ("ended", NOW - 16_500, [])
