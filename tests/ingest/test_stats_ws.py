"""/v1/stats/ws (rtcscope.js's websocket ingest) against a real server and a real influxd:
full reports and deltas land as registry.extract of the reports they stand for; acks,
refusals, back-pressure, limits, keys, origins, ends and disconnects."""
import asyncio
import json

import pytest
from tornado.httpclient import HTTPClientError

from rtcscope.registry import extract
from tests.support.api import get
from tests.support.influxd import count_points
from tests.support.reports import REPORTS, expected, stored
from tests.support.reports import report_delta as delta
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import Peer, Viewer, client_frame, raw_socket, server_frames


@pytest.mark.gen_test(timeout=60)
async def test_full_report_then_deltas_store_what_the_reports_say(http_client, base_url, app, influxd, database):
    peer = await Peer(base_url, "ws-c1", "alice").connect()
    start = now_ms() - 6000
    messages = [{"ts": start, "report": REPORTS[0]}]
    messages += [dict(delta(REPORTS[i - 1], REPORTS[i]), ts=start + 1000 * i) for i in range(1, 6)]
    await peer.send(messages[:2])
    assert await peer.answers() == [{"type": "ack", "seq": 2}]
    await peer.send(messages[2:])
    assert await peer.answers() == [{"type": "ack", "seq": 6}]
    want = expected([(start + 1000 * i, REPORTS[i]) for i in range(6)])
    await eventually(lambda: len(stored(influxd, database, "ws-c1")) == len(want))
    assert stored(influxd, database, "ws-c1") == want
    rows = influxd.rows("SELECT * FROM rtc_calls WHERE call = 'ws-c1'", database)
    assert rows and {row["peer"] for row in rows} == {"alice"}  # presence: the call is live


@pytest.mark.gen_test(timeout=60)
async def test_refused_messages_are_numbered_and_the_rest_of_the_frame_is_stored(http_client, base_url, app, influxd, database):
    peer = await Peer(base_url, "ws-c2", "bob").connect()
    ts = now_ms()
    await peer.send([dict(delta(REPORTS[0], REPORTS[1]), ts=ts)])
    answers = await peer.answers()
    assert answers[0]["type"] == "error" and answers[0]["seq"] == 1
    assert answers[0]["error"]["code"] == "need_full_report"
    assert answers[1:] == [{"type": "ack", "seq": 1}]

    await peer.send([
        {"ts": ts, "report": REPORTS[0]},
        {"ts": ts + 1, "kind": "audio", "stats": {"rtt": "slow"}},  # not a number
        {"ts": ts + 2, "kind": "audio", "stats": {"mosHint": 4.0}},
        {"ts": ts + 3, "delta": "nonsense"},  # a bad delta: the report state is dropped
        dict(delta(REPORTS[0], REPORTS[1]), ts=ts + 4),  # so this one cannot be applied
        {"ts": ts + 5, "report": REPORTS[2]},
        dict(delta(REPORTS[2], REPORTS[3]), ts=ts + 6),
        7,
    ])
    answers = await peer.answers()
    errors = {a["seq"]: a["error"]["code"] for a in answers if a["type"] == "error"}
    assert errors == {3: "bad_request", 5: "bad_report", 6: "need_full_report", 9: "bad_request"}
    assert answers[-1] == {"type": "ack", "seq": 9}
    want = expected([(ts, REPORTS[0]), (ts + 5, REPORTS[2]), (ts + 6, REPORTS[3])])
    want[(ts + 2, "audio")] = {"mosHint": 4.0}
    await eventually(lambda: len(stored(influxd, database, "ws-c2")) == len(want))
    assert stored(influxd, database, "ws-c2") == want


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(wal_dir="", max_buffer=1)
async def test_busy_leaves_the_delta_state_as_before_and_the_resend_applies(http_client, base_url, app, influxd, database):
    peer = await Peer(base_url, "ws-c3", "carol").connect()
    ts = now_ms()
    first = [{"ts": ts, "report": REPORTS[0]}, dict(delta(REPORTS[0], REPORTS[1]), ts=ts + 1000)]
    await peer.send(first)
    (busy,) = await peer.answers(until="busy")
    assert busy["seq"] == 1 and busy["retry_after"] >= 1
    app.writer.max_buffer = 10_000  # room again
    await peer.send(first)
    assert await peer.answers() == [{"type": "ack", "seq": 2}]
    app.writer.max_buffer = 1
    later = [dict(delta(REPORTS[1], REPORTS[2]), ts=ts + 2000)]
    await peer.send(later)
    assert (await peer.answers(until="busy"))[0]["seq"] == 3
    app.writer.max_buffer = 10_000
    await peer.send(later)
    assert await peer.answers() == [{"type": "ack", "seq": 3}]
    want = expected([(ts, REPORTS[0]), (ts + 1000, REPORTS[1]), (ts + 2000, REPORTS[2])])
    await eventually(lambda: len(stored(influxd, database, "ws-c3")) == len(want))
    assert stored(influxd, database, "ws-c3") == want


@pytest.mark.gen_test(timeout=60)
async def test_end_event_and_disconnect_marker(http_client, base_url, app, influxd, database):
    ended = await Peer(base_url, "ws-c4", "dave").connect()
    await ended.send([{"ts": now_ms(), "report": REPORTS[0]}, {"event": "end", "reason": "stop"}])
    assert await ended.answers() == [{"type": "ack", "seq": 2}]
    ended.connection.close()
    gone = await Peer(base_url, "ws-c4", "erin").connect()
    await gone.send({"ts": now_ms(), "report": REPORTS[0]})
    assert await gone.answers() == [{"type": "ack", "seq": 1}]
    gone.connection.close()

    def events():
        return {row["peer"]: row for row in influxd.rows("SELECT * FROM rtc_events WHERE call = 'ws-c4'", database)}
    await eventually(lambda: len(events()) == 2)
    rows = events()
    assert rows["dave"]["end"] == 1.0 and rows["dave"]["reason"] == 1.0 and rows["dave"]["detail"] == 2.0  # stop
    assert rows["erin"]["end"] is None and rows["erin"]["reason"] == 3.0  # disconnect
    assert rows["erin"]["disconnected"] > 0


@pytest.mark.gen_test(timeout=60)
async def test_stat_ids_per_connection_are_bounded(http_client, base_url, app, influxd, database):
    peer = await Peer(base_url, "ws-c5", "frank").connect()
    many = [{"id": f"S{i}", "type": "inbound-rtp", "kind": "audio", "packetsLost": i} for i in range(1001)]
    await peer.send({"ts": now_ms(), "report": many})
    answers = await peer.answers()
    assert answers[0]["type"] == "error" and answers[0]["error"]["code"] == "too_many_stats"
    assert answers[1] == {"type": "ack", "seq": 1}
    await peer.send({"ts": now_ms(), "report": many[:1000]})
    assert await peer.answers() == [{"type": "ack", "seq": 2}]


@pytest.mark.gen_test(timeout=60)
async def test_a_frame_that_is_not_json_closes_the_connection(http_client, base_url, app):
    peer = await Peer(base_url, "ws-c6", "gina").connect()
    await peer.connection.write_message("{not json")
    assert await asyncio.wait_for(peer.connection.read_message(), 10) is None
    assert peer.connection.close_code == 1007


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(cors_origins=["https://app.example"], max_new_calls=1)
async def test_ids_origin_and_new_call_limit(http_client, base_url, app, influxd, database):
    with pytest.raises(HTTPClientError) as refused:
        await Peer(base_url, "bad id", "p").connect()
    assert refused.value.code == 400
    with pytest.raises(HTTPClientError) as refused:
        await Peer(base_url, "ws-c7", "p", origin="https://evil.example").connect()
    assert refused.value.code == 403
    first = await Peer(base_url, "ws-c7", "p", origin="https://app.example").connect()
    await first.send({"ts": now_ms(), "report": REPORTS[0]})
    assert await first.answers() == [{"type": "ack", "seq": 1}]
    second = await Peer(base_url, "ws-c8", "p", origin="https://app.example").connect()
    await second.send({"ts": now_ms(), "report": REPORTS[0]})
    (busy,) = await second.answers(until="busy")
    assert busy["seq"] == 1 and busy["code"] == "too_many_new_calls" and busy["retry_after"] >= 1
    await asyncio.sleep(0.5)
    assert count_points(influxd, database) == len(extract(REPORTS[0]))  # only the first call's


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_ingest_keys_apply(start_server, influxd, database, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("k-1\n")
    application = await start_server(influxdb_url=influxd.url, database=database, ingest_keys=str(keys),
                                     spool_dir=str(tmp_path / "spool"))
    base_url = application.base_url
    with pytest.raises(HTTPClientError) as refused:
        await Peer(base_url, "ws-c9", "p").connect()
    assert refused.value.code == 401
    with pytest.raises(HTTPClientError) as refused:
        await Peer(base_url, "ws-c9", "p", query="&key=nope").connect()
    assert refused.value.code == 403
    peer = await Peer(base_url, "ws-c9", "p", query="&key=k-1").connect()
    await peer.send({"ts": now_ms(), "report": REPORTS[0]})
    assert await peer.answers() == [{"type": "ack", "seq": 1}]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(stats_ws=False)
async def test_websocket_ingest_can_be_turned_off(http_client, base_url, app):
    with pytest.raises(HTTPClientError) as refused:
        await Peer(base_url, "ws-c10", "p").connect()
    assert refused.value.code == 503


@pytest.mark.gen_test(timeout=60)
async def test_ws_is_a_reserved_call_id_and_a_plain_get_gets_json(http_client, base_url, app):
    for path in ("/v1/stats/ws", "/v1/stats/ws/?type=rtt"):
        status, body, _ = await get(http_client, base_url + path)
        assert status == 400 and body["error"]["code"] == "websocket_required", (path, body)


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_a_dropped_connection_ends_the_peer_as_disconnect(http_client, base_url, app, influxd, database):
    graph = await Viewer.open(base_url, "/ws/graph/rtt", origin=base_url)
    await graph.next("snapshot")
    gone = await Peer(base_url, "ws-c9", "gina").connect()
    ts = now_ms()
    await gone.send([{"ts": ts, "report": REPORTS[0]}])
    assert await gone.answers() == [{"type": "ack", "seq": 1}]
    await graph.next("call_started", "ws-c9")
    gone.connection.stream.close()  # the network goes away: no close frame, no end
    _, ended = await graph.next("call_ended", "ws-c9")
    assert ended == {"type": "call_ended", "call": "ws-c9", "at": ts, "reason": "disconnect"}
    status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=ended")
    assert [(c["call"], c["ended"], c["end_reason"], c["end_detail"]) for c in listed["calls"]] == [
        ("ws-c9", ts, "disconnect", None)]
    graph.close()


@pytest.mark.gen_test(timeout=60)
async def test_frames_split_batched_fragmented_and_pinged_are_all_read(http_client, base_url, app, influxd, database):
    reader, writer = await raw_socket(base_url, "ws-frames", "alice")
    ts = now_ms()
    first = client_frame(json.dumps([{"ts": ts - 3000, "report": REPORTS[0]}]).encode())
    for cut in range(0, len(first), 700):  # one frame over many reads, the header cut too
        writer.write(first[cut:cut + 700])
        await writer.drain()
        await asyncio.sleep(0.01)
    assert await server_frames(reader, 1) == [(0x1, b'{"type":"ack","seq":1}')]
    second = json.dumps(dict(delta(REPORTS[0], REPORTS[1]), ts=ts - 2000)).encode()
    third = json.dumps(dict(delta(REPORTS[1], REPORTS[2]), ts=ts - 1000)).encode()
    # Two frames, a ping and a fragmented message (text, a ping between its parts, continuation) in one write.
    writer.write(client_frame(second) + client_frame(b"hi", opcode=0x9) + client_frame(third[:50], final=False)
                 + client_frame(b"", opcode=0x9) + client_frame(third[50:], opcode=0x0))
    assert await server_frames(reader, 4) == [(0x1, b'{"type":"ack","seq":2}'), (0xA, b"hi"), (0xA, b""),
                                              (0x1, b'{"type":"ack","seq":3}')]
    want = expected([(ts - 3000 + 1000 * i, REPORTS[i]) for i in range(3)])
    await eventually(lambda: len(stored(influxd, database, "ws-frames")) == len(want))
    assert stored(influxd, database, "ws-frames") == want
    writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_frame_over_max_body_is_closed_with_1009_before_it_is_read(http_client, base_url, app):
    reader, writer = await raw_socket(base_url, "ws-big", "alice")
    too_long = app.config.max_body + 1
    writer.write(bytes([0x81, 0x80 | 127]) + too_long.to_bytes(8, "big") + b"\0\0\0\0")  # the header alone
    [(opcode, payload)] = await server_frames(reader, 1)
    assert (opcode, payload[:2]) == (0x8, (1009).to_bytes(2, "big"))
    assert await asyncio.wait_for(reader.read(), 10) == b""  # and the connection is gone
    writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_text_that_is_not_utf8_closes_with_1007(http_client, base_url, app):
    reader, writer = await raw_socket(base_url, "ws-utf8", "alice")
    writer.write(client_frame(b'[{"event": "end", "reason": "\xff\xfe"}]'))
    [(opcode, payload)] = await server_frames(reader, 1)
    assert (opcode, payload[:2]) == (0x8, (1007).to_bytes(2, "big"))
    writer.close()
