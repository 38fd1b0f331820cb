"""The ended-call index's bookkeeping without InfluxDB: what it covers, the cap, expiry,
and a load that runs while ticks record ends."""
from rtcscope.live.calls import CallState
from rtcscope.live.history import EndedCalls

NOW = 1_795_536_200_000
WINDOW = 3_600_000


def quality(mos, *problems):
    return {"mos": mos, "verdict": "fair", "problems": list(problems), "worst_peer": None, "at": NOW}


def ended(call, recv, **fields):
    return CallState(call, "ended", peers=["a"], started=recv - 5000, last_seen=recv, ended=recv,
                     end_reason="explicit", recv=recv, **fields)


def test_it_answers_only_once_loaded_and_for_a_look_back_within_its_window():
    index = EndedCalls(WINDOW)
    assert not index.covers(60_000, NOW)
    index.begin_load()
    assert not index.covers(60_000, NOW)  # a load still running is never a partial answer
    index.finish_load(NOW, [ended("a", NOW - 10_000)], {"a": quality(4.1, "high_rtt")})
    assert index.covers(WINDOW, NOW) and index.covers(WINDOW, NOW + 5000) and not index.covers(WINDOW + 1, NOW)
    assert [(e.state.call, e.quality) for e in index.since(NOW - 60_000)] == [("a", {**quality(4.1), "problems": ("high_rtt",)})]
    assert index.since(NOW - 5000) == []
    index.invalidate()
    assert not index.covers(60_000, NOW)


def test_the_cap_drops_the_oldest_and_narrows_what_it_covers():
    index = EndedCalls(WINDOW, max_entries=2)
    index.begin_load()
    index.finish_load(NOW, [ended("old", NOW - 30_000), ended("mid", NOW - 20_000)], {})
    index.record(ended("new", NOW - 1000))
    assert [e.state.call for e in index.since(0)] == ["mid", "new"] and index.dropped == 1
    assert index.covers(29_999, NOW) and not index.covers(30_000, NOW)  # "old" would be missing from it


def test_entries_leave_with_the_window_and_a_comeback_is_forgotten():
    index = EndedCalls(WINDOW)
    index.begin_load()
    index.finish_load(NOW, [ended("a", NOW - 50_000), ended("b", NOW - 40_000), ended("c", NOW - 1000)], {})
    index.forget("b")
    index.expire(NOW + WINDOW - 45_000)
    assert [e.state.call for e in index.since(0)] == ["c"]


def test_what_ticks_record_during_a_load_wins_over_what_the_load_read():
    index = EndedCalls(WINDOW)
    index.begin_load()
    index.record(ended("again", NOW - 500), quality(3.0))  # ended again while the load ran
    index.forget("back")  # live again while the load ran
    index.finish_load(NOW - 2000, [ended("again", NOW - 9000), ended("back", NOW - 8000), ended("kept", NOW - 7000),
                                   ended("peers", NOW - 6000, peer_ends={"a": (NOW - 6000, "explicit")})], {})
    entries = {e.state.call: e for e in index.since(0)}
    assert sorted(entries) == ["again", "kept", "peers"]
    assert entries["again"].state.recv == NOW - 500 and entries["again"].quality["mos"] == 3.0
    assert entries["peers"].state.peer_ends == {}  # not kept for an ended call


def test_entries_with_the_same_problems_share_them():
    index = EndedCalls(WINDOW)
    index.record(ended("a", NOW), quality(3.0, "high_loss", "high_rtt"))
    index.record(ended("b", NOW), quality(3.2, "high_loss", "high_rtt"))
    a, b = (entry.quality["problems"] for entry in index.since(0))
    assert a == ("high_loss", "high_rtt") and a is b


def test_an_import_of_this_process_waits_for_the_detector():
    index = EndedCalls(WINDOW)
    index.begin_load()
    index.finish_load(NOW, [], {})
    index.expect_import("dump", NOW + 30_000)
    assert not index.covers(60_000, NOW)
    index.record(ended("dump", NOW - 100_000))
    assert index.covers(60_000, NOW)
    index.expect_import("lost", NOW + 30_000)
    assert not index.covers(60_000, NOW + 29_000) and index.covers(60_000, NOW + 30_000)  # it gives up waiting


def test_a_reload_keeps_a_quality_whose_summary_point_it_could_not_read_yet():
    index = EndedCalls(WINDOW)
    index.begin_load()
    index.finish_load(NOW, [], {})
    index.record(ended("a", NOW - 1000), quality(3.5))
    index.invalidate()  # a failed tick
    index.begin_load()
    index.finish_load(NOW, [ended("a", NOW - 1000)], {})
    assert [entry.quality["mos"] for entry in index.since(0)] == [3.5]
