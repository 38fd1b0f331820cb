"""/v1/stats/ws on the wire (handlers/wire.py: the frames served from an asyncio Protocol
after tornado's upgrade), against a real in-process server with a raw socket client:
frames cut anywhere and batched, the first frame in the upgrade's own segment, pings
both ways, the close handshake and its codes, protocol errors, back-pressure, a flood
next to a quiet peer, --wal-fsync=always answered in order, and the server's shutdown."""
import asyncio
import json
import socket
import struct
import time

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

import server
from tests.support.reports import REPORTS, expected, stored
from tests.support.reports import report_delta as delta
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import client_frame, raw_socket, server_frames

CLOSE = 0x8


def close_frame(code, reason=b""):
    return client_frame(struct.pack("!H", code) + reason, opcode=CLOSE)


async def closed_with(reader):
    """The server's close frame (code, reason), then the end of the connection."""
    [(opcode, payload)] = await server_frames(reader, 1)
    assert opcode == CLOSE, (opcode, payload)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def wire_of(app, peer):
    """The server side of a connection, by its peer id."""
    [wire] = [wire for wire in app.stats_sockets if wire.connection.peer == peer]
    return wire


def nodelay(writer):
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@pytest.mark.gen_test(timeout=60)
async def test_a_frame_cut_into_single_bytes_then_many_frames_in_one_write(http_client, base_url, app, influxd, database):
    reader, writer = await raw_socket(base_url, "wire-cut", "alice")
    nodelay(writer)
    ts = now_ms() - 10_000
    first = client_frame(json.dumps([{"ts": ts, "report": REPORTS[0]}]).encode())
    assert len(first) > 1 << 16 or first[1] & 0x7F == 126  # a 16-bit length: the header itself is cut too
    for index in range(16):  # the header and the mask one byte per segment
        writer.write(first[index:index + 1])
        await writer.drain()
        await asyncio.sleep(0.005)
    for cut in range(16, len(first), 1000):
        writer.write(first[cut:cut + 1000])
        await writer.drain()
        await asyncio.sleep(0.002)
    assert await server_frames(reader, 1) == [(0x1, b'{"type":"ack","seq":1}')]

    count = len(REPORTS)
    batch = b"".join(client_frame(json.dumps(dict(delta(REPORTS[i - 1], REPORTS[i]), ts=ts + 1000 * i)).encode())
                     for i in range(1, count))
    writer.write(batch + client_frame(b"ping", opcode=0x9))  # every delta and a ping in one write
    answers = await server_frames(reader, count)
    assert answers == [(0x1, b'{"type":"ack","seq":%d}' % seq) for seq in range(2, count + 1)] + [(0xA, b"ping")]
    want = expected([(ts + 1000 * i, REPORTS[i]) for i in range(count)])
    await eventually(lambda: len(stored(influxd, database, "wire-cut")) == len(want))
    assert stored(influxd, database, "wire-cut") == want
    writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_first_frame_in_the_upgrade_requests_segment_is_read(http_client, base_url, app):
    """A client may send its first frame right behind the upgrade request: tornado has read it
    with the headers, and it is handed over with the socket."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /v1/stats/ws?call=wire-early&peer=alice HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                 + client_frame(json.dumps({"ts": now_ms(), "kind": "audio", "stats": {"rtt": 40.0}}).encode()))
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    assert await server_frames(reader, 1) == [(0x1, b'{"type":"ack","seq":1}')]
    writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_server_pings_and_closes_a_connection_that_never_pongs(http_client, base_url, app):
    reader, writer = await raw_socket(base_url, "wire-ping", "alice")
    await asyncio.sleep(0.1)
    wire = wire_of(app, "alice")
    wire.pinged_at -= 21  # 20 s since the last ping
    app.sweep_stats_sockets(60)
    assert await server_frames(reader, 1) == [(0x9, b"")]
    writer.write(client_frame(b"", opcode=0xA))
    await writer.drain()
    await eventually(lambda: not wire.pong_due)
    wire.pinged_at -= 21
    app.sweep_stats_sockets(60)  # answered: a new ping, not a close
    assert await server_frames(reader, 1) == [(0x9, b"")]
    wire.pinged_at -= 21
    app.sweep_stats_sockets(60)  # this one got no pong
    [(opcode, payload)] = await server_frames(reader, 1)
    assert (opcode, payload) == (CLOSE, struct.pack("!H", 1000) + b"ping timed out")
    writer.write(close_frame(1000))  # the client completes the handshake; the server closes the TCP connection
    assert await asyncio.wait_for(reader.read(), 10) == b""
    await eventually(lambda: not app.stats_sockets)


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(client_timeout=0.6)
async def test_an_idle_connection_is_closed_with_4001_and_ends_the_peer(http_client, base_url, app, influxd, database):
    reader, writer = await raw_socket(base_url, "wire-idle", "alice")
    writer.write(client_frame(json.dumps({"ts": now_ms(), "kind": "audio", "stats": {"rtt": 40.0}}).encode()))
    assert await server_frames(reader, 1) == [(0x1, b'{"type":"ack","seq":1}')]
    started = time.monotonic()
    [(opcode, payload)] = await server_frames(reader, 1)  # then nothing for longer than --client-timeout
    assert time.monotonic() - started >= 0.5
    assert (opcode, payload) == (CLOSE, struct.pack("!H", 4001) + b"idle for longer than --client-timeout")
    # A client that does not answer the close is dropped (after CLOSE_WAIT_SECONDS); the peer ends as a disconnect.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    await eventually(lambda: influxd.rows("SELECT * FROM rtc_events WHERE call = 'wire-idle'", database))
    [row] = influxd.rows("SELECT * FROM rtc_events WHERE call = 'wire-idle'", database)
    assert row["reason"] == 3.0 and row["disconnected"] > 0  # disconnect


@pytest.mark.gen_test(timeout=60)
async def test_a_clients_close_is_echoed_with_its_code_and_1001_stores_no_disconnect(http_client, base_url, app,
                                                                                     influxd, database):
    for peer, code in (("alice", 1000), ("bob", 1001)):
        reader, writer = await raw_socket(base_url, "wire-close", peer)
        writer.write(client_frame(json.dumps({"ts": now_ms(), "kind": "audio", "stats": {"rtt": 40.0}}).encode()))
        assert await server_frames(reader, 1) == [(0x1, b'{"type":"ack","seq":1}')]
        writer.write(close_frame(code, b"bye") + client_frame(b"{}"))  # a frame after the close is not read
        assert await closed_with(reader) == (code, "")
    await eventually(lambda: influxd.rows("SELECT * FROM rtc_events WHERE call = 'wire-close'", database))
    await asyncio.sleep(0.5)
    rows = influxd.rows("SELECT * FROM rtc_events WHERE call = 'wire-close'", database)
    assert [row["peer"] for row in rows] == ["alice"]  # bob's page went away (1001): its beacon carries the end
    assert app.stats_sockets == set()


@pytest.mark.gen_test(timeout=60)
async def test_not_json_closes_with_1007_and_the_handshake_completes(http_client, base_url, app):
    reader, writer = await raw_socket(base_url, "wire-json", "alice")
    writer.write(client_frame(b"{not json"))
    [(opcode, payload)] = await server_frames(reader, 1)
    assert opcode == CLOSE and payload[:2] == struct.pack("!H", 1007) and payload[2:].startswith(b"invalid JSON")
    writer.write(close_frame(1007))
    assert await asyncio.wait_for(reader.read(), 10) == b""


@pytest.mark.gen_test(timeout=60)
async def test_fragments_over_max_body_close_with_1009(http_client, base_url, app):
    reader, writer = await raw_socket(base_url, "wire-big", "alice")
    half = b"x" * (app.config.max_body // 2 + 1)
    writer.write(client_frame(b"[" + half, final=False))
    writer.write(client_frame(half, opcode=0x0, final=False))  # its header says the message is too big
    assert await closed_with(reader) == (1009, "message too big")


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("frames, what", [
    (bytes([0x81, 0x02]) + b"{}", "unmasked"),
    (client_frame(b"[]", opcode=0x0), "a continuation of nothing"),
    (client_frame(b"[", final=False) + client_frame(b"]"), "a new message inside a fragmented one"),
    (client_frame(b"", opcode=0x9, final=False), "a fragmented ping"),
    (client_frame(b"{}", opcode=0x3), "an unknown opcode"),
    (bytes([0xC1, 0x82]) + b"\0\0\0\0{}", "an extension bit"),
])
async def test_protocol_errors_close_with_1002(http_client, base_url, app, frames, what):
    reader, writer = await raw_socket(base_url, "wire-proto", "alice")
    writer.write(frames)
    code, _ = await closed_with(reader)
    assert code == 1002, what


@pytest.mark.gen_test(timeout=120)
async def test_a_client_that_does_not_read_is_not_read_and_does_not_starve_others(http_client, base_url, app):
    """Pings from a client that never reads its pongs: the server stops reading it once its
    socket is backed up, holding a bounded buffer, and another peer is answered meanwhile."""
    _, flood = await raw_socket(base_url, "wire-flood", "flood")
    quiet_reader, quiet = await raw_socket(base_url, "wire-quiet", "quiet")
    await asyncio.sleep(0.1)
    wire = wire_of(app, "flood")
    pings = client_frame(b"p" * 125, opcode=0x9) * 500
    deadline = time.monotonic() + 60
    while not wire.write_blocked and time.monotonic() < deadline:
        if flood.transport.get_write_buffer_size() < 1 << 20:  # the server may have stopped reading
            flood.write(pings)
        await asyncio.sleep(0.005)
    assert wire.write_blocked  # the server's socket took no more pongs: it stopped reading this client
    assert wire.transport.get_write_buffer_size() < 1 << 20
    for seq in (1, 2, 3):
        quiet.write(client_frame(json.dumps({"ts": now_ms(), "kind": "audio", "stats": {"rtt": 40.0}}).encode()))
        assert await server_frames(quiet_reader, 1) == [(0x1, b'{"type":"ack","seq":%d}' % seq)]
    flood.transport.abort()
    quiet.close()
    await eventually(lambda: not app.stats_sockets)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(wal_fsync="always")
async def test_frames_wait_for_the_previous_answer_when_each_is_fsynced(http_client, base_url, app, influxd, database):
    reader, writer = await raw_socket(base_url, "wire-fsync", "alice")
    ts = now_ms()
    writer.write(b"".join(client_frame(json.dumps({"ts": ts + i, "kind": "audio", "stats": {"rtt": 40.0 + i}}).encode())
                          for i in range(5)))
    assert await server_frames(reader, 5) == [(0x1, b'{"type":"ack","seq":%d}' % seq) for seq in range(1, 6)]
    await eventually(lambda: len(stored(influxd, database, "wire-fsync")) == 5)
    writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_servers_shutdown_closes_ingest_sockets_with_1012_and_stores_no_disconnect(app_config, influxd,
                                                                                              database):
    application = server.make_app(**app_config)
    await application.start()
    await application.store.setup()
    http_server = HTTPServer(application)
    sock, port = bind_unused_port()
    http_server.add_sockets([sock])
    stopped = False
    try:
        reader, writer = await raw_socket(f"http://127.0.0.1:{port}", "wire-stop", "alice")
        writer.write(client_frame(json.dumps({"ts": now_ms(), "kind": "audio", "stats": {"rtt": 40.0}}).encode()))
        assert await server_frames(reader, 1) == [(0x1, b'{"type":"ack","seq":1}')]
        http_server.stop()
        await application.stop()
        stopped = True
        assert await closed_with(reader) == (1012, "the server is restarting")
        writer.close()
        await eventually(lambda: not application.stats_sockets)
    finally:
        http_server.stop()
        if not stopped:
            await application.stop()
    await eventually(lambda: influxd.rows("SELECT * FROM rtc_stats WHERE call = 'wire-stop'", database))
    assert influxd.rows("SELECT * FROM rtc_events WHERE call = 'wire-stop'", database) == []


@pytest.mark.gen_test(timeout=60)
async def test_tornado_keeps_nothing_of_the_sockets_it_handed_over(http_client, base_url, app, io_loop):
    before = set(io_loop.handlers)
    peers = [await raw_socket(base_url, "wire-handover", f"p{index}") for index in range(5)]
    await eventually(lambda: len(app.stats_sockets) == 5)
    assert set(io_loop.handlers) == before  # no fd registered with tornado's loop for them
    for index, (reader, writer) in enumerate(peers):
        writer.write(client_frame(json.dumps({"ts": now_ms(), "kind": "audio", "stats": {"rtt": 40.0 + index}}).encode()))
        assert await server_frames(reader, 1) == [(0x1, b'{"type":"ack","seq":1}')]
        writer.close()
    await eventually(lambda: not app.stats_sockets)
