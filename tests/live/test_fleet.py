"""The fleet view (SPEC §10) against a real influxd: each live call's quality,
worst first, in /v1/calls/ and on /ws/calls, with the fleet's aggregates.

The periodic callback is slowed to an hour; each test runs the ticks it wants."""
import asyncio
import json
import math
import socket
import struct

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from rtcscope.live import fleet
from rtcscope.quality import FAIR_MOS, GOOD_MOS, estimate_mos
from tests.support.api import assert_error, get
from tests.support.samples import FLEET, call_samples, now_ms, send
from tests.support.waits import eventually
from tests.support.websockets import raw_viewer, read_frames

pytestmark = pytest.mark.app_config(**FLEET)

def expected_mos(rtt, jitter, loss):
    return round(estimate_mos(rtt, jitter, loss), 2)


def nearest_rank(values, fraction):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


class CallsViewer:
    """A real websocket client of /ws/calls, reading in the background."""

    def __init__(self, connection):
        self.connection = connection
        self.messages = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, base_url, headers=None):
        url = base_url.replace("http://", "ws://") + "/ws/calls"
        return cls(await websocket_connect(HTTPRequest(url, headers=headers or {})))

    async def _read(self):
        while True:
            message = await self.connection.read_message()
            if message is None:
                return
            self.messages.append(json.loads(message))

    async def wait(self, count):
        await eventually(lambda: len(self.messages) >= count, timeout=10)
        return self.messages[count - 1]

    def close(self):
        self.connection.close()


# 60 good calls (rtt from 40 to 99 ms, no loss), three bad ones and one with nothing to score.
GOOD = {f"good-{i:02d}": (40.0 + i, 5.0, 0.0) for i in range(60)}
BAD = {"bad-rtt": (700.0, 10.0, 0.0), "bad-loss": (80.0, 10.0, 0.10), "bad-both": (650.0, 40.0, 0.08)}


async def fleet_of_calls(http_client, base_url, app):
    start = now_ms() - 6000
    body = []
    for call, (rtt, jitter, loss) in {**GOOD, **BAD}.items():
        body += call_samples(call, start, rtt, jitter, loss)
    body += call_samples("bad-both", start, 90.0, 5.0, 0.0, peer="bob")  # bob is fine: alice is the worst peer
    body.append({"call": "silent", "peer": "carol", "kind": "video", "ts": start, "stats": {"framesPerSecond": 30.0}})
    await send(http_client, base_url, body, flushed=app)
    return start


def worst_first(values):
    """Call ids ordered like sort=worst: lowest MOS first, unknown last, then more problems, then id."""
    return sorted(values, key=lambda item: (item[1] is None, item[1] or 0, -item[2], item[0]))


@pytest.mark.gen_test(timeout=60)
async def test_live_calls_come_out_worst_first_with_their_quality(http_client, base_url, app):
    await fleet_of_calls(http_client, base_url, app)
    await app.detector.run_tick()
    status, document, _ = await get(http_client, base_url + "/v1/calls/?state=live&sort=worst&limit=1000")
    assert status == 200, document
    assert document["count"] == 64 and document["next"] is None
    listed = document["calls"]
    tick = app.detector.last_tick_ms
    by_call = {c["call"]: c["quality"] for c in listed}
    assert by_call["bad-rtt"] == {"mos": expected_mos(700, 10, 0), "verdict": "poor", "problems": ["high_rtt"],
                                  "worst_peer": "alice", "at": tick}
    assert by_call["bad-loss"]["problems"] == ["high_loss"]
    assert by_call["bad-loss"]["mos"] == expected_mos(80, 10, 0.10)
    assert by_call["bad-both"] == {"mos": expected_mos(650, 40, 0.08), "verdict": "poor",
                                   "problems": ["high_loss", "high_rtt", "high_jitter"], "worst_peer": "alice",
                                   "at": tick}
    assert by_call["good-00"] == {"mos": expected_mos(40, 5, 0), "verdict": "good", "problems": [],
                                  "worst_peer": "alice", "at": tick}
    assert by_call["silent"] == {"mos": None, "verdict": "unknown", "problems": [], "worst_peer": None, "at": tick}
    expected = worst_first([(call, expected_mos(*values), 0) for call, values in GOOD.items()]
                           + [(call, expected_mos(*values), 0) for call, values in BAD.items()] + [("silent", None, 0)])
    # bad-both has three problems, the others none or one: only MOS ties could reorder, and there are none
    assert [c["call"] for c in listed] == [call for call, _, _ in expected]
    assert [c["call"] for c in listed[:3]] == ["bad-both", "bad-rtt", "bad-loss"]
    assert all(c["state"] == "live" and c["end_reason"] is None for c in listed)

    status, document, _ = await get(http_client, base_url + "/v1/calls/?state=live&sort=worst&q=bad&limit=2")
    assert [c["call"] for c in document["calls"]] == ["bad-both", "bad-rtt"] and document["count"] == 3
    assert document["next"]


@pytest.mark.gen_test(timeout=60)
async def test_paging_walks_every_call_once(http_client, base_url, app):
    await fleet_of_calls(http_client, base_url, app)
    await app.detector.run_tick()
    for sort in ("worst", "recent"):
        _, whole, _ = await get(http_client, base_url + f"/v1/calls/?sort={sort}&limit=1000")
        walked, cursor, pages = [], None, 0
        while True:
            url = base_url + f"/v1/calls/?sort={sort}&limit=7" + (f"&cursor={cursor}" if cursor else "")
            status, page, _ = await get(http_client, url)
            assert status == 200, page
            assert page["count"] == 64 and len(page["calls"]) <= 7
            walked += [c["call"] for c in page["calls"]]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert pages == 10  # 64 calls, 7 a page
        assert walked == [c["call"] for c in whole["calls"]]
        assert len(set(walked)) == 64


@pytest.mark.gen_test(timeout=30)
async def test_bad_list_parameters_are_400(http_client, base_url, app):
    await app.detector.run_tick()
    _, worst_page, _ = await get(http_client, base_url + "/v1/calls/?sort=worst&limit=1")
    for query in ("sort=best", "limit=0", "limit=1001", "limit=ten", "cursor=notours", "q=a%20b",
                  "q=" + "a" * 129, "sort=recent&cursor=W1sid29yc3QiXQ", "limit=1&limit=2"):
        status, document, _ = await get(http_client, base_url + "/v1/calls/?" + query)
        assert_error(status, document, 400)


@pytest.mark.gen_test(timeout=60)
async def test_calls_websocket_snapshot_then_diffs(http_client, base_url, app):
    start = await fleet_of_calls(http_client, base_url, app)
    detector = app.detector
    await detector.run_tick()
    viewer = await CallsViewer.open(base_url)
    snapshot = await viewer.wait(1)
    assert snapshot["type"] == "snapshot"
    _, listed, _ = await get(http_client, base_url + "/v1/calls/?state=live&sort=worst&limit=1000")
    assert [c["call"] for c in snapshot["calls"]] == [c["call"] for c in listed["calls"]]
    first = snapshot["calls"][0]
    assert set(first) == {"call", "peers", "started", "quality"}
    assert first["call"] == "bad-both" and first["peers"] == ["alice", "bob"] and first["started"] == start
    assert first["quality"]["problems"] == ["high_loss", "high_rtt", "high_jitter"]

    # fleet aggregates, computed here by hand: each call by its worst peer
    scored = {call: values for call, values in {**GOOD, **BAD}.items()}
    mos = [expected_mos(*values) for values in scored.values()]
    fleet = snapshot["fleet"]
    assert fleet["live"] == 64 and fleet["peers"] == 65
    assert fleet["verdicts"] == {"good": sum(m >= GOOD_MOS for m in mos), "fair": sum(FAIR_MOS <= m < GOOD_MOS for m in mos),
                                 "poor": sum(m < FAIR_MOS for m in mos), "unknown": 1}
    assert fleet["verdicts"]["poor"] == 3
    percentiles = fleet["percentiles"]
    assert percentiles["mos"] == {"p5": nearest_rank(mos, 0.05), "p50": nearest_rank(mos, 0.5)}
    assert percentiles["rtt"] == {"p50": nearest_rank([v[0] for v in scored.values()], 0.5),
                                  "p95": nearest_rank([v[0] for v in scored.values()], 0.95)}
    assert percentiles["jitter"] == {"p50": nearest_rank([v[1] for v in scored.values()], 0.5),
                                     "p95": nearest_rank([v[1] for v in scored.values()], 0.95)}
    assert percentiles["loss"] == {"p50": 0.0, "p95": nearest_rank([v[2] for v in scored.values()], 0.95)}

    # nothing changed: no message
    await detector.run_tick()
    await asyncio.sleep(0.3)
    assert len(viewer.messages) == 1

    # good-05 goes bad, bad-rtt ends, a new call starts
    now = now_ms()
    await send(http_client, base_url, call_samples("good-05", now - 1500, 3000.0, 5.0, 0.0, count=2)  # window mean over 300 ms
               + call_samples("new-1", now - 2000, 60.0, 5.0, 0.0, count=2)
               + [{"call": "bad-rtt", "event": "end", "ts": now - 100}], flushed=app)
    await detector.run_tick()
    message = await viewer.wait(2)
    assert message["type"] == "calls"
    assert [entry["call"] for entry in message["started"]] == ["new-1"]
    assert message["started"][0]["quality"]["verdict"] == "good"
    assert set(message["started"][0]) == {"call", "peers", "started", "quality"}
    assert message["ended"] == [{"call": "bad-rtt", "at": now - 100, "reason": "explicit"}]
    changed = {entry["call"]: entry["quality"] for entry in message["changed"]}
    assert "good-05" in changed and "high_rtt" in changed["good-05"]["problems"]
    assert message["fleet"]["live"] == 64
    viewer.close()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_a_timed_out_call_ends_with_reason_timeout(http_client, base_url, app):
    await app.detector.run_tick()
    await send(http_client, base_url, call_samples("quiet", now_ms() - 1000, 50.0, 5.0, 0.0, count=2), flushed=app)
    await app.detector.run_tick()
    viewer = await CallsViewer.open(base_url)
    await viewer.wait(1)
    await asyncio.sleep(3.2)
    await app.detector.run_tick()
    message = await viewer.wait(2)
    assert [(e["call"], e["reason"]) for e in message["ended"]] == [("quiet", "timeout")]
    _, document, _ = await get(http_client, base_url + "/v1/calls/?state=ended")
    assert [(c["call"], c["end_reason"]) for c in document["calls"]] == [("quiet", "timeout")]
    viewer.close()


@pytest.mark.gen_test(timeout=60)
async def test_queries_per_tick_do_not_grow_with_calls_or_viewers(http_client, base_url, app):
    detector, store, alerts = app.detector, app.store, app.alerts
    await detector.run_tick()

    async def per_tick():
        before, counted, of_alerts = store.queries, detector.queries, alerts.queries
        for _ in range(3):
            await detector.run_tick()
        await alerts._task  # the alert rules' own queries (docs/alerts.md) are counted apart
        made = store.queries - before - (alerts.queries - of_alerts)
        assert detector.queries - counted == made  # the detector counts every query it makes
        return made / 3

    await send(http_client, base_url, call_samples("one", now_ms() - 3000, 50.0, 5.0, 0.0, count=3), flushed=app)
    await detector.run_tick()
    viewers = [await CallsViewer.open(base_url)]
    few = await per_tick()
    await fleet_of_calls(http_client, base_url, app)
    await detector.run_tick()
    viewers += [await CallsViewer.open(base_url) for _ in range(9)]
    await asyncio.gather(*(viewer.wait(1) for viewer in viewers))
    assert len(detector.live_calls) == 65
    assert await per_tick() == few == 1  # the feed since the previous tick, which carries the quality window's samples
    for viewer in viewers:
        viewer.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(**FLEET, read_token="s3cret", ws_origins=["https://ops.example"])
async def test_calls_websocket_needs_the_read_token_and_an_allowed_origin(http_client, base_url, app):
    await app.detector.run_tick()
    url = base_url.replace("http://", "ws://") + "/ws/calls"
    for headers, code in (({}, 401), ({"Authorization": "Bearer wrong"}, 403),
                          ({"Authorization": "Bearer s3cret", "Origin": "https://evil.example"}, 403)):
        with pytest.raises(Exception) as refused:
            await websocket_connect(HTTPRequest(url, headers=headers))
        assert getattr(refused.value, "code", None) == code
    viewer = await CallsViewer.open(base_url, {"Authorization": "Bearer s3cret", "Origin": "https://ops.example"})
    snapshot = await viewer.wait(1)
    assert snapshot["type"] == "snapshot" and snapshot["calls"] == [] and snapshot["fleet"]["live"] == 0
    viewer.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(**{**FLEET, "call_timeout": 60.0})
async def test_a_long_call_keeps_its_start_beyond_the_look_back_window(http_client, base_url, app):
    detector = app.detector
    detector.activity.window_ms = 20_000  # shorter than the call has lasted
    now = now_ms()
    lines = [f"rtc_calls,call=long,peer=a first={float(at)},last={float(at)},recv={float(at)} {at * 1_000_000}"
             for at in (now - 40_000, now - 1000)]
    await app.store.write("\n".join(lines).encode())
    await detector.run_tick()  # this process's first tick: the start comes from the last day
    assert detector.live_states()["long"].started == now - 40_000
    await detector.run_tick()
    viewer = await CallsViewer.open(base_url)
    snapshot = await viewer.wait(1)
    assert [(c["call"], c["started"]) for c in snapshot["calls"]] == [("long", now - 40_000)]
    _, listed, _ = await get(http_client, base_url + "/v1/calls/?state=live")
    assert [(c["call"], c["started"]) for c in listed["calls"]] == [("long", now - 40_000)]
    viewer.close()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(**FLEET, ws_max_pending=2000)
async def test_a_calls_viewer_that_does_not_read_is_dropped(http_client, base_url, app):
    detector = app.detector
    await fleet_of_calls(http_client, base_url, app)
    await detector.run_tick()
    good = await CallsViewer.open(base_url)
    await good.wait(1)
    reader, writer = await raw_viewer(base_url, "/ws/calls")
    await eventually(lambda: len(detector.call_list.viewers) == 2)
    port = writer.get_extra_info("sockname")[1]
    [slow] = [v for v in detector.call_list.viewers if v.request.connection.context.address[1] == port]
    slow.ws_connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for tick in range(30):  # 40 calls start every tick: a message of several kB every tick
        await send(http_client, base_url, [sample for n in range(40) for sample in call_samples(
            f"more-{tick}-{n:02d}", now_ms() - 1000, 50.0, 5.0, 0.0, count=2)], flushed=app)
        await detector.run_tick()
        if len(detector.call_list.viewers) == 1:
            break
    assert len(detector.call_list.viewers) == 1 and slow not in detector.call_list.viewers
    await eventually(lambda: any(entry["call"] == f"more-{tick}-00" for entry in good.messages[-1].get("started", ())))
    frames = await asyncio.wait_for(read_frames(reader), 30)
    writer.close()
    assert json.loads(frames[0][1])["type"] == "snapshot"
    opcode, payload = frames[-1]
    assert opcode == 0x8 and struct.unpack(">H", payload[:2])[0] == 4008
    good.close()


@pytest.mark.gen_test(timeout=60)
async def test_quality_comes_from_the_feed_rows_of_every_process_with_no_query_on_rtc_stats(
        http_client, base_url, app, app_config, start_server):
    other = await start_server(**app_config)
    await other.store.setup()
    detectors = [app.detector, other.detector]
    statements = []
    for store in (app.store, other.store):
        async def recording(statement, *args, real=store.answer):
            statements.append(statement)
            return await real(statement, *args)

        store.answer = recording
    for detector in detectors:
        await detector.run_tick()
    start = now_ms() - 6000
    # One call, a peer through each process: alice lossy, far and CPU-limited with freezes, bob fine.
    alice = call_samples("split", start, 350.0, 20.0, 0.06) + [
        {"call": "split", "peer": "alice", "kind": "video", "ts": start + i * 1000,
         "stats": {"freezeCount": float(i // 2), "qualityLimitationReason": 2.0 if i < 3 else 1.0}} for i in range(6)]
    await send(http_client, base_url, alice, flushed=app)
    await send(http_client, other.base_url, call_samples("split", start, 60.0, 4.0, 0.0, peer="bob"), flushed=other)
    statements.clear()
    for detector in detectors:
        await detector.run_tick()
    assert statements and not [statement for statement in statements if "rtc_stats" in statement]
    expected = {"mos": expected_mos(350.0, 20.0, 0.06), "verdict": "poor",
                "problems": ["high_loss", "high_rtt", "freezes", "cpu_limited"], "worst_peer": "alice"}
    for detector in detectors:
        found = detector.quality_of("split")
        assert {key: found[key] for key in expected} == expected
        assert detector.qualities["split"].peers["bob"]["mos"] == estimate_mos(60.0, 4.0, 0.0)
    # The same as the grouped window over rtc_stats gives, from the first tick's rebuild too.
    now = app.detector.last_tick_ms
    rows = await app.store.quality_window(now - app.detector.quality_window_ms, now, fleet.WINDOW_GAUGES,
                                          fleet.WINDOW_LAST, fleet.WINDOW_COUNTERS)
    assert app.detector.qualities["split"].peers == fleet.call_qualities(rows, {"split"}, now)["split"].peers
    other.detector.activity.read_whole_next()  # as after a failed tick: the window is rebuilt from the feed
    statements.clear()
    await other.detector.run_tick()
    assert other.detector.activity.full_reads == 2
    assert not [statement for statement in statements if "rtc_stats" in statement]
    assert other.detector.quality_of("split")["problems"] == expected["problems"]
    assert other.detector.qualities["split"].peers == app.detector.qualities["split"].peers


def judged(peers):
    """A call's quality from one window row per peer, {peer: (rtt, loss, ice state)}, through
    fleet.call_qualities (the rows Store.quality_window answers)."""
    rows = [("c", peer, "audio", {"rtt": rtt, "jitter": 5.0, "fractionLost": loss, "iceState": ice})
            for peer, (rtt, loss, ice) in peers.items()]
    return fleet.call_qualities(rows, {"c"}, 1)["c"]


def test_the_sfu_view_does_not_vote_but_its_failed_ice_is_the_calls_problem():
    found = judged({"alice": (40.0, 0.0, None), "bob": (120.0, 0.0, None), "alice@janus": (900.0, 0.2, 5.0)})
    assert (found.mos, found.worst_peer) == (round(estimate_mos(120.0, 5.0, 0.0), 2), "bob")
    assert found.verdict == "good" and found.problems == ["ice_failed"]  # not the view's high_loss nor high_rtt
    assert found.worst["rtt"] == 120.0  # what the fleet's percentiles read
    assert set(found.peers) == {"alice", "bob", "alice@janus"}  # every peer keeps its own MOS
    assert found.peers["alice@janus"]["mos"] == pytest.approx(estimate_mos(900.0, 5.0, 0.2))


def test_a_call_with_only_the_sfus_view_is_judged_on_it():
    found = judged({"alice@janus": (40.0, 0.0, None), "bob@janus": (900.0, 0.2, 5.0)})
    assert (found.mos, found.worst_peer) == (round(estimate_mos(900.0, 5.0, 0.2), 2), "bob@janus")
    assert found.verdict == "poor" and found.problems == ["high_loss", "high_rtt", "ice_failed"]
