"""Clients of the server's websockets, as real ones speak: graph viewers (/ws/graph/),
rtcscope.js's ingest connection (/v1/stats/ws), Jitsi's rtcstats client (/rtcstats/),
and raw sockets for what a library client would not send or read."""
import asyncio
import json
import socket
import struct
from urllib.parse import quote

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from rtcscope.ingest.rtcstats import PROTOCOL
from tests.support.samples import now_ms


class Viewer:
    """A websocket viewer that reads in the background and keeps every message."""

    def __init__(self, connection):
        self.connection = connection
        self.messages = []
        self._reader = asyncio.ensure_future(self._read())
        self._arrived = asyncio.Event()

    @classmethod
    async def open(cls, base_url, path, origin=None):
        url = base_url.replace("http://", "ws://") + path
        headers = {"Origin": origin} if origin else {}
        return cls(await websocket_connect(HTTPRequest(url, headers=headers)))

    async def _read(self):
        while True:
            message = await self.connection.read_message()
            if message is None:
                self._arrived.set()
                return
            self.messages.append(json.loads(message))
            self._arrived.set()

    async def next(self, kind, call=None, after=0, timeout=15):
        """The first message of `kind` (for `call`) at index >= `after`, waiting for it."""
        async def found():
            while True:
                for index, message in enumerate(self.messages[after:], after):
                    if message["type"] == kind and (call is None or message.get("call") == call
                                                    or call in message.get("calls", {})):
                        return index, message
                if self._reader.done():
                    raise AssertionError(f"closed ({self.connection.close_code}) before a {kind} message")
                self._arrived.clear()
                await self._arrived.wait()
        return await asyncio.wait_for(found(), timeout)

    async def closed(self, timeout=15):
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.connection.close_code, self.connection.close_reason

    def events(self, call):
        return [(m["type"], m["at"]) for m in self.messages
                if m["type"] in ("call_started", "call_ended") and m["call"] == call]

    def close(self):
        self.connection.close()
        self._reader.cancel()


async def raw_viewer(base_url, path):
    """A viewer that shakes hands and then never reads, with a tiny receive window."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    return reader, writer


async def read_frames(reader):
    """(opcode, payload) of every server frame until the connection ends."""
    await reader.readuntil(b"\r\n\r\n")
    frames = []
    while True:
        try:
            head = await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            return frames
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", await reader.readexactly(8))[0]
        frames.append((head[0] & 0x0F, await reader.readexactly(length)))


class Peer:
    """One rtcscope.js-like connection, reading every answer."""

    def __init__(self, base_url, call, peer, query="", origin=None):
        self.url = f"{base_url.replace('http://', 'ws://')}/v1/stats/ws?call={call}&peer={peer}{query}"
        self.origin = origin

    async def connect(self):
        headers = {"Origin": self.origin} if self.origin else {}
        self.connection = await websocket_connect(HTTPRequest(self.url, headers=headers))
        return self

    async def send(self, messages):
        await self.connection.write_message(json.dumps(messages))

    async def answers(self, until="ack", timeout=10):
        """Answers up to and including the first of type `until`."""
        got = []
        while True:
            text = await asyncio.wait_for(self.connection.read_message(), timeout)
            assert text is not None, (self.connection.close_code, self.connection.close_reason)
            got.append(json.loads(text))
            if got[-1]["type"] == until:
                return got


def client_frame(payload, opcode=0x1, final=True, mask=b"\x37\xfa\x21\x3d"):
    """A masked client frame (RFC 6455 5.2), as a browser sends it."""
    length = len(payload)
    head = bytes([(0x80 if final else 0) | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + length.to_bytes(8, "big")
    return head + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


async def raw_socket(base_url, call, peer):
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"GET /v1/stats/ws?call={call}&peer={peer} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def server_frames(reader, count):
    """The next `count` server frames as (opcode, payload)."""
    frames = []
    for _ in range(count):
        first, length = await asyncio.wait_for(reader.readexactly(2), 10)
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        frames.append((first & 0x0F, await reader.readexactly(length)))
    return frames


class RtcstatsClient:
    """One rtcstats client connection, speaking as @jitsi/rtcstats 9.7.1 does (trace-ws.js):
    the handshake, entries, acknowledgements."""

    def __init__(self, base_url, session, meeting="standup", reconnect=False, protocol=PROTOCOL, query="",
                 origin=None, endpoint="/rtcstats"):
        # A browser sends the meeting name percent-encoded (a space as %20).
        self.url = (f"{base_url.replace('http://', 'ws://')}{endpoint}/{quote(meeting)}?statsSessionId={session}"
                    f"&isReconnect={'true' if reconnect else 'false'}{query}")
        self.session, self.protocol, self.origin = session, protocol, origin
        self.messages = []

    async def connect(self):
        """Open and wait for the `sn` the client waits for; returns its value."""
        headers = {"Origin": self.origin} if self.origin else {}
        self.connection = await websocket_connect(HTTPRequest(self.url, headers=headers),
                                                  subprotocols=[self.protocol])
        first = await self.read()
        assert first["type"] == "sn" and first["body"]["state"] == "initial", first
        return first["body"]["value"]

    async def read(self, timeout=10):
        message = await asyncio.wait_for(self.connection.read_message(), timeout)
        if message is None:
            return None
        self.messages.append(json.loads(message))
        return self.messages[-1]

    async def acked(self, sn):
        """Read acknowledgements until `sn` is acknowledged."""
        while True:
            message = await self.read()
            assert message is not None, (self.connection.close_code, self.connection.close_reason)
            assert message["type"] == "sn" and message["body"]["state"] == "ongoing", message
            if message["body"]["value"] >= sn:
                return message["body"]["value"]

    def send(self, message):
        return self.connection.write_message(message)

    def identity(self, sn, ts=None, **fields):
        return self.send(json.dumps({"statsSessionId": self.session, "type": "identity",
                                     "data": ["identity", None, fields, ts or now_ms(), sn]}))

    def entry(self, method, pc_id, value, sn, ts=None):
        return self.send(json.dumps({"statsSessionId": self.session, "type": "stats-entry",
                                     "data": json.dumps([method, pc_id, value, ts or now_ms(), sn])}))

    def getstats(self, sn, sent, pc_id="PC_0", ts=None):
        """A full report; polls a second apart (samples of one series at one time would be one point)."""
        ts = ts or now_ms() - 60_000 + sn * 1000
        return self.entry("getstats", pc_id, {
            "OT01A": {"type": "outbound-rtp", "kind": "audio", "packetsSent": sent, "timestamp": 0},
            "RI01A": {"type": "remote-inbound-rtp", "kind": "audio", "roundTripTime": 0.04, "timestamp": 0},
            "timestamp": ts}, sn, ts)

    def drop(self):
        """The network goes away: no close frame."""
        self.connection.stream.close()

    async def closed(self, timeout=10):
        while await self.read(timeout) is not None:
            pass
        return self.connection.close_code, self.connection.close_reason


class Recorder:
    """A viewer the detector writes to directly, no socket between: keeps every message it is sent."""

    def __init__(self):
        self.messages = []
        self.closed = None

    def send(self, data):
        self.messages.append(json.loads(data))

    def close(self, code, reason):
        self.closed = (code, reason)

    def of_type(self, kind):
        return [m for m in self.messages if m["type"] == kind]

    def events(self):
        return [(m["type"], m["call"], m["at"]) for m in self.messages if m["type"] in ("call_started", "call_ended")]

    def clear(self):
        self.messages.clear()
