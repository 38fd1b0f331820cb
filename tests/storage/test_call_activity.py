"""store.call_activity against a real influxd: the latest end and the latest
disconnect marker of each (call, peer), read in one statement."""
import pytest

from rtcscope.storage.lines import disconnect_line
from tests.support.samples import now_ms


def end_line(call, peer, at, received, detail=None, reason=1.0):
    peer_tag = f",peer={peer}" if peer else ""
    detail_field = f",detail={detail}" if detail is not None else ""
    return f"rtc_events,call={call}{peer_tag} end=1.0,at={float(at)},reason={reason}{detail_field} {received * 1_000_000}"


@pytest.mark.gen_test(timeout=30)
async def test_the_latest_end_keeps_its_own_time_detail_and_reason_beside_the_latest_marker(app, influxd, database):
    now = now_ms()
    influxd.write([
        end_line("c", "alice", now - 9000, now - 8900, detail=1.0),
        end_line("c", "dave@janus", now - 6000, now - 5900, reason=2.0),  # a media server's session timeout
        disconnect_line("c", "alice", (now - 7000) * 1_000_000).decode(),
        end_line("c", "alice", now - 5000, now - 4900),  # the latest end has no detail: none is borrowed
        disconnect_line("c", "alice", (now - 3000) * 1_000_000).decode(),
        disconnect_line("c", "bob", (now - 2000) * 1_000_000).decode(),  # a marker alone: no `at`
        end_line("c", "", now - 1000, now - 1000, detail=3.0),
        end_line("other", "carol", now - 500, now - 400, detail=2.0),
    ], database)
    presence, ends = await app.store.call_activity(now - 60_000, now)
    assert presence == []
    assert sorted(ends) == [
        ("c", "", {"time": now - 1000, "at": now - 1000, "detail": 3.0, "reason": 1.0, "disconnected": None}),
        ("c", "alice", {"time": now - 4900, "at": now - 5000, "detail": None, "reason": 1.0,
                        "disconnected": now - 3000}),
        ("c", "bob", {"time": None, "at": None, "detail": None, "reason": None, "disconnected": now - 2000}),
        ("c", "dave@janus", {"time": now - 5900, "at": now - 6000, "detail": None, "reason": 2.0,
                             "disconnected": None}),
        ("other", "carol", {"time": now - 400, "at": now - 500, "detail": 2.0, "reason": 1.0, "disconnected": None}),
    ]
    _, one_call = await app.store.call_activity(now - 60_000, now, call="other")
    assert one_call == [("other", "carol", {"time": now - 400, "at": now - 500, "detail": 2.0, "reason": 1.0,
                                            "disconnected": None})]
    _, recent = await app.store.call_activity(now - 3500, now)  # alice's ends are before the range, her last marker not
    assert sorted((call, peer, row["at"], row["disconnected"]) for call, peer, row in recent) == [
        ("c", "", now - 1000, None), ("c", "alice", None, now - 3000), ("c", "bob", None, now - 2000),
        ("other", "carol", now - 500, None)]
