"""Call liveness from presence rows and end events, without InfluxDB."""
import asyncio

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


def marker(call, peer, disconnected):
    return (call, peer, {"time": None, "at": None, "detail": None, "disconnected": disconnected})


def test_a_dropped_connection_ends_as_disconnect_once_the_timeout_after_it_has_passed():
    rows = [presence("c", "alice", NOW - 30_000, NOW - 10_500, NOW - 10_000)]
    dropped = [marker("c", "alice", NOW - 9000)]
    calls = build_calls(rows, dropped, NOW + 5000, TIMEOUT)  # the samples alone would have timed out
    assert (calls["c"].state, calls["c"].end_reason) == ("live", None)
    calls = build_calls(rows, dropped, NOW + 6001, TIMEOUT)
    assert (calls["c"].state, calls["c"].ended, calls["c"].end_reason) == ("ended", NOW - 10_500, "disconnect")
    assert calls["c"].peer_ends == {"alice": (NOW - 10_500, "disconnect")}


def test_samples_after_the_marker_void_it():
    rows = [presence("c", "alice", NOW - 30_000, NOW - 1500, NOW - 1000)]
    dropped = [marker("c", "alice", NOW - 9000)]  # a reconnect sent these samples
    assert build_calls(rows, dropped, NOW, TIMEOUT)["c"].state == "live"
    later = build_calls(rows, dropped, NOW + 14_500, TIMEOUT)["c"]
    assert (later.state, later.ended, later.end_reason) == ("ended", NOW - 1500, "timeout")


def test_an_end_after_the_marker_is_explicit():
    rows = [presence("c", "alice", NOW - 30_000, NOW - 10_500, NOW - 10_000)]
    events = [("c", "alice", {"time": NOW - 2000, "at": NOW - 2000, "detail": 3.0, "disconnected": NOW - 9000})]
    calls = build_calls(rows, events, NOW, TIMEOUT)
    assert (calls["c"].state, calls["c"].ended, calls["c"].end_reason, calls["c"].end_detail) == (
        "ended", NOW - 2000, "explicit", "leave")


def test_an_end_before_the_marker_stays_explicit():
    # the page sent its end by beacon, then its socket closed without a close frame
    rows = [presence("c", "alice", NOW - 30_000, NOW - 10_500, NOW - 10_000)]
    events = [("c", "alice", {"time": NOW - 9500, "at": NOW - 9500, "detail": 1.0, "disconnected": NOW - 9000})]
    calls = build_calls(rows, events, NOW, TIMEOUT)
    assert (calls["c"].state, calls["c"].ended, calls["c"].end_reason) == ("ended", NOW - 9500, "explicit")


def test_a_marker_stored_after_the_peer_timed_out_changes_nothing():
    # the connection stayed open, silent, until it was closed for idling: the peer had timed out
    rows = [presence("c", "alice", NOW - 60_000, NOW - 40_500, NOW - 40_000)]
    calls = build_calls(rows, [marker("c", "alice", NOW - 5000)], NOW, TIMEOUT)
    assert (calls["c"].state, calls["c"].ended, calls["c"].end_reason) == ("ended", NOW - 40_500, "timeout")


def test_the_call_takes_the_reason_of_the_peer_that_ended_last():
    rows = [presence("c", "alice", NOW - 60_000, NOW - 20_500, NOW - 20_000),
            presence("c", "bob", NOW - 60_000, NOW - 18_500, NOW - 18_000)]
    calls = build_calls(rows, [marker("c", "bob", NOW - 17_000)], NOW, TIMEOUT)
    assert (calls["c"].state, calls["c"].ended, calls["c"].end_reason) == ("ended", NOW - 18_500, "disconnect")
    assert calls["c"].peer_ends == {"alice": (NOW - 20_500, "timeout"), "bob": (NOW - 18_500, "disconnect")}
    calls = build_calls(rows, [marker("c", "alice", NOW - 19_500)], NOW, TIMEOUT)
    assert (calls["c"].ended, calls["c"].end_reason) == (NOW - 18_500, "timeout")


def test_incremental_states_equal_build_calls_over_the_same_rows():
    """The detector builds again only the calls whose rows changed or whose live peers may
    have timed out; after every tick of starts, ends, timeouts, disconnects and comebacks
    (rows repeated as the feed's overlap re-reads them, rows aged out of the window),
    its states are build_calls' over the rows it holds."""
    import random

    from rtcscope.live.activity import Activity

    activity = Activity(None, timeout_ms=TIMEOUT, tick_ms=1000, quality_window_ms=10_000)
    rng = random.Random(7)
    calls = [f"c{index}" for index in range(40)]
    seen_reasons, comebacks, was = set(), 0, {}
    for tick in range(120):
        now = NOW + tick * 1000
        presence_rows, ends, disconnects = [], [], []
        for index, call in enumerate(calls):
            mood, phase = rng.random(), (tick + index * 3) % 40
            if mood < 0.12 or (index % 2 == 0 and phase >= 20):  # quiet, for a tick or long enough to time out
                continue
            for peer in rng.sample(["alice", "bob", ""], rng.choice((1, 1, 2))):
                sent = now - rng.choice((0, 300, 2500))  # some arrive late, as the overlap re-reads them
                presence_rows.append((call, peer, {"first": sent - 2000, "last": sent, "recv": sent + 50}))
            if mood > 0.96:
                ends.append((call, rng.choice(["alice", "bob", ""]),
                             {"time": now + 10, "at": now + rng.choice((-5000, 5)), "detail": rng.choice((None, 1))}))
            elif mood > 0.93 or (index % 4 == 0 and phase == 19):  # a connection closed, before silence
                disconnects.append((call, rng.choice(["alice", "bob"]), {"time": now + 20, "disconnected": now + 20}))
        activity.merge(presence_rows, ends, disconnects)
        activity.forget_before(now - activity.window_ms)
        asyncio.run(activity.build(now))
        rows = [(call, peer, row) for (call, peer), row in activity.presence.items()]
        expected = build_calls(rows, [(call, peer, row) for (call, peer), row in activity.ends.items()], now, TIMEOUT)
        assert activity.call_states.states == expected, tick
        recv = {}
        for call, _, row in rows:
            recv[call] = max(recv.get(call, 0), row["recv"])
        assert activity.call_states.recv == recv
        for call, state in expected.items():
            seen_reasons.add(state.end_reason)
            if state.state == "live" and was.get(call) == "ended":
                comebacks += 1
            was[call] = state.state
    assert {"explicit", "timeout", "disconnect"} <= seen_reasons and comebacks > 5
