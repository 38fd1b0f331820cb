"""The graph websocket's protocol (SPEC §5) against real servers and a real influxd."""
import asyncio
import json
import socket
import struct

import pytest
from tornado.httpclient import HTTPClientError

from rtcscope.live.graphs import BUCKET_MS
from tests.support.samples import now_ms, send
from tests.support.waits import eventually
from tests.support.websockets import raw_viewer, read_frames


def sample(call, ts, peer="alice", **stats):
    return {"call": call, "peer": peer, "kind": "audio", "ts": ts, "stats": stats}


@pytest.mark.gen_test(timeout=60)
async def test_snapshot_then_started_points_and_explicit_end(http_client, base_url, app, viewers):
    viewer = await viewers(base_url)
    _, snapshot = await viewer.next("snapshot")
    assert snapshot == {"type": "snapshot", "metric": "rtt", "bucket_ms": 2000, "mode": "lines", "drawn": [], "calls": {}}
    first = now_ms() - 1000
    await send(http_client, base_url, [sample("c-ws", first, rtt=41.0), sample("c-ws", first + 1000, rtt=43.0)])
    started_at, started = await viewer.next("call_started", "c-ws")
    assert started == {"type": "call_started", "call": "c-ws", "at": first}
    points_at, points = await viewer.next("points", "c-ws")
    assert points_at > started_at and points["metric"] == "rtt"
    assert all(ms % BUCKET_MS == 0 and first - BUCKET_MS < ms <= first + 1000 for ms, _ in points["calls"]["c-ws"])
    assert {value for _, value in points["calls"]["c-ws"]} <= {41.0, 43.0, 42.0}
    assert viewer.messages[0]["type"] == "snapshot"

    end_at = now_ms()
    await send(http_client, base_url, {"call": "c-ws", "event": "end", "ts": end_at})
    _, ended = await viewer.next("call_ended", "c-ws")
    assert ended == {"type": "call_ended", "call": "c-ws", "at": end_at, "reason": "explicit"}
    assert viewer.events("c-ws") == [("call_started", first), ("call_ended", end_at)]


@pytest.mark.gen_test(timeout=60)
async def test_snapshot_holds_the_last_five_minutes_of_live_calls_counters_as_rates(
        http_client, base_url, app, viewers):
    # within --max-skew (or they would be restamped); the last sample 12 s ago, its rate bucket settled
    start = (now_ms() - 290_000) // BUCKET_MS * BUCKET_MS
    body = [sample("long", start + i * 2000, rtt=float(i % 7), packetsLost=float(i * 4)) for i in range(140)]
    body.append(sample("gone", start, rtt=1.0))
    await send(http_client, base_url, body)
    await send(http_client, base_url, {"call": "gone", "event": "end"})
    await eventually(lambda: app.detector.live_calls == ["long"])
    rtt = await viewers(base_url, "/ws/graph/googRtt")  # an alias of rtt
    _, snapshot = await rtt.next("snapshot")
    assert snapshot["metric"] == "rtt" and list(snapshot["calls"]) == ["long"]
    points = snapshot["calls"]["long"]
    assert all(ms % BUCKET_MS == 0 for ms, _ in points) and [ms for ms, _ in points] == sorted(ms for ms, _ in points)
    assert points[0][0] == start and len(points) == 140
    assert all(value == float((ms - start) // 2000 % 7) for ms, value in points)
    lost = await viewers(base_url, "/ws/graph/packetsLost")
    _, snapshot = await lost.next("snapshot")
    # 4 packets per 2 s bucket; the first bucket has no rate (nothing before it)
    assert snapshot["calls"]["long"] == [[start + i * 2000, 2.0] for i in range(1, 140)]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(call_timeout=1.0)
async def test_silence_ends_a_call_at_its_last_sample_and_it_can_start_again(http_client, base_url, app, viewers):
    viewer = await viewers(base_url)
    await viewer.next("snapshot")
    first = now_ms() - 4000
    await send(http_client, base_url, [sample("c-t", first, rtt=1.0), sample("c-t", first + 500, rtt=2.0)])
    await viewer.next("call_started", "c-t")
    index, ended = await viewer.next("call_ended", "c-t")
    assert (ended["at"], ended["reason"]) == (first + 500, "timeout")

    again = now_ms()
    await send(http_client, base_url, [sample("c-t", again, rtt=3.0)])
    _, restarted = await viewer.next("call_started", "c-t", after=index)
    assert restarted["at"] == again
    _, points = await viewer.next("points", "c-t", after=index)
    assert points["calls"]["c-t"][-1] == [again // BUCKET_MS * BUCKET_MS, 3.0]
    assert [kind for kind, _ in viewer.events("c-t")] == ["call_started", "call_ended", "call_started"]


@pytest.mark.gen_test(timeout=60)
async def test_two_servers_on_one_database_agree(influxd, database, tmp_path, start_server, http_client, viewers):
    config = {"influxdb_url": influxd.url, "database": database, "flush_interval": 0.1, "tick": 0.2,
              "call_timeout": 3.0}
    one = await start_server(spool_dir=str(tmp_path / "one"), **config)
    two = await start_server(spool_dir=str(tmp_path / "two"), **config)
    await eventually(lambda: one.detector.ticks > 0 and two.detector.ticks > 0)
    on_one, on_two = await viewers(one.base_url), await viewers(two.base_url)
    first = now_ms() - 1000
    await send(http_client, one.base_url, [sample("common", first, rtt=10.0)])
    for viewer in (on_one, on_two):
        _, started = await viewer.next("call_started", "common")
        assert started["at"] == first
        await viewer.next("points", "common")
    assert one.detector.live_calls == two.detector.live_calls == ["common"]
    end_at = now_ms()
    await send(http_client, two.base_url, {"call": "common", "peer": "alice", "event": "end", "ts": end_at})
    for viewer in (on_one, on_two):
        await viewer.next("call_ended", "common")
    assert on_one.events("common") == on_two.events("common") == [("call_started", first), ("call_ended", end_at)]
    assert one.detector.live_calls == two.detector.live_calls == []


@pytest.mark.gen_test(timeout=60)
async def test_unknown_metric_is_closed_with_a_reason(http_client, base_url, app, viewers):
    viewer = await viewers(base_url, "/ws/graph/noSuchMetric")
    assert await viewer.closed() == (4404, "unknown metric noSuchMetric")
    assert viewer.messages == []
    injected = await viewers(base_url, "/ws/graph/rtt%22%20OR%201=1")
    assert (await injected.closed())[0] == 4404
    # a field a client stored, without a registry entry, is a metric like the others
    await send(http_client, base_url, [sample("c-f", now_ms(), customScore=7.0)])
    await eventually(lambda: app.writer.depth == 0)
    app.store._fields = (0.0, frozenset())  # do not wait for the field-name cache to expire
    custom = await viewers(base_url, "/ws/graph/customScore")
    _, snapshot = await custom.next("snapshot")
    assert snapshot["metric"] == "customScore"


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(ws_origins=["https://ops.example"])
async def test_cross_origin_viewers_need_the_allow_list(http_client, base_url, app, viewers):
    with pytest.raises(HTTPClientError) as refused:
        await viewers(base_url, origin="https://evil.example")
    assert refused.value.code == 403
    allowed = await viewers(base_url, origin="https://ops.example")
    await allowed.next("snapshot")
    same = await viewers(base_url, origin=base_url)
    await same.next("snapshot")


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(ws_max_pending=20_000, graph_lines=100)  # a line per call: a large snapshot
async def test_a_viewer_that_does_not_read_is_dropped_and_others_keep_receiving(
        http_client, base_url, app, viewers):
    start = (now_ms() - 290_000) // BUCKET_MS * BUCKET_MS
    # 60 live calls with five minutes of history: a snapshot of several hundred kB
    body = [sample(f"call-{c:02d}", start + i * 2000, rtt=float(c + i % 5)) for c in range(60) for i in range(145)]
    await send(http_client, base_url, body)
    await eventually(lambda: len(app.detector.live_calls) == 60)
    good = await viewers(base_url)
    await good.next("snapshot")
    reader, writer = await raw_viewer(base_url, "/ws/graph/rtt")
    await eventually(lambda: app.detector.graphs.viewer_count == 2)
    # A slow link: the kernel may buffer only a few kB for this viewer, so the rest waits in the server.
    port = writer.get_extra_info("sockname")[1]
    [slow] = [v for v in app.detector.graphs.watches["rtt"].viewers if v.request.connection.context.address[1] == port]
    slow.ws_connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def keep_posting():
        value = 0.0
        while True:
            value += 1
            await send(http_client, base_url, [sample(f"call-{c:02d}", now_ms(), rtt=value) for c in range(60)])
            await asyncio.sleep(0.2)

    posting = asyncio.ensure_future(keep_posting())
    try:
        await eventually(lambda: app.detector.graphs.viewer_count == 1, timeout=30)
        seen = len(good.messages)
        await good.next("points", after=seen)  # the reader that keeps up still gets every tick
    finally:
        posting.cancel()
    frames = await asyncio.wait_for(read_frames(reader), 30)
    writer.close()
    assert frames[0][0] == 0x1 and json.loads(frames[0][1])["type"] == "snapshot"
    opcode, payload = frames[-1]
    assert opcode == 0x8 and struct.unpack(">H", payload[:2])[0] == 4008
    assert b"too slow" in payload
    assert app.telemetry.value("rtcscope_graph_viewers_dropped_total") == 1


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(influxdb_url="http://127.0.0.1:9")
async def test_without_influxdb_viewers_are_told_to_come_back(http_client, base_url, app, viewers):
    viewer = await viewers(base_url)
    code, reason = await viewer.closed()
    assert code == 1011 and reason.startswith("live data unavailable")
    assert viewer.messages == [] and app.detector.failures > 0 and app.detector.graphs.viewer_count == 0
