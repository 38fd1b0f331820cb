"""WebSocket /v1/stats/ws?call=C&peer=P[&key=K]: rtcscope.js's default transport.

The protocol lives in rtcscope/ingest/connection.py; this handler checks the
key and origin like POST ingest, admits the call through the same limits,
stores a frame's points through the same writer (a frame is all or nothing
for the writer: its `busy` says which message to send again) and answers
each frame with its refusals and one `ack`. One connection per peer; the
client sends a frame every sendInterval (2 s), several reports per frame,
and waits for its answer before it sends the next."""
import asyncio
import struct
import time

import orjson
import tornado.iostream
import tornado.websocket
from tornado.util import _websocket_mask

from rtcscope.ingest.connection import FrameError, StatsConnection
from rtcscope.ingest.formats import IDENTIFIER_RE

from .base import IngestSocket, ingest_client, ingest_key_refusal, is_websocket
from .ws import text_frame

CLOSE_INVALID = 1007  # a frame that is not JSON: its messages cannot be numbered
CLOSE_IDLE = 4001
# A page going away closes with 1001 after it sent its end by sendBeacon (rtcscope.js on pagehide):
# a disconnect marker then could land after that end and override it.
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
READ_SIZE = 65536
YIELD_BYTES = 256 * 1024  # a client flooding frames lets the others' reads in this often


class FrameReader(tornado.websocket.WebSocketProtocol13):
    """RFC 6455 frames read a whole socket read at a time: tornado's own reader
    awaits a read per header field, mask and payload (four per frame) and
    decodes each text frame into a str; here one read yields every frame it
    holds, unmasked by tornado's C `_websocket_mask`, and a text frame's bytes
    go to `on_message` as they are (orjson checks their UTF-8). Control
    frames, fragments and the close handshake go through tornado's code."""

    async def _receive_frame_loop(self):
        stream = self.stream
        pending, work = b"", 0
        try:
            while not self.client_terminated:
                data = await stream.read_bytes(READ_SIZE, partial=True)
                data = pending + data if pending else data
                offset = 0
                while not self.client_terminated:
                    head = _frame_head(data, offset)
                    if head is None:
                        break
                    first, masked, start, length = head
                    if not self._acceptable(first, length):
                        return self._abort()
                    stop = start + length
                    if stop > len(data):  # the rest of a long frame: read exactly that
                        data = data[offset:] + await stream.read_bytes(stop - len(data))
                        start, stop, offset = start - offset, stop - offset, 0
                    payload = data[start:stop]
                    if masked:
                        payload = _websocket_mask(data[start - 4:start], payload)
                    work += stop - offset + 1024
                    offset = stop
                    handled = self._frame(first, payload)
                    if handled is not None:
                        await handled
                pending = data[offset:]
                if work >= YIELD_BYTES:
                    work = 0
                    await asyncio.sleep(0)
        except tornado.iostream.StreamClosedError:
            self._abort()
        finally:
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    def _acceptable(self, first, length):
        """Reserved bits, a long or fragmented control frame: the connection is aborted (as
        tornado does); a message over --max-body is closed with 1009 first."""
        if first & self.RSV_MASK or (first & 0x08 and (length >= 126 or not first & self.FIN)):
            return False
        fragments = self._fragmented_message_buffer
        if length + (len(fragments) if fragments is not None else 0) > self.params.max_message_size:
            self.close(CLOSE_TOO_BIG, "message too big")
            return False
        return True

    def _frame(self, first, payload):
        """One frame's payload: a whole text message goes to on_message, the rest to tornado's handling."""
        opcode = first & self.OPCODE_MASK
        final = first & self.FIN
        if opcode == 0x1 and final and self._fragmented_message_buffer is None:
            self._message_bytes_in += len(payload)
            return self._run_callback(self.handler.on_message, payload)
        if opcode & 0x08:
            return self._handle_message(opcode, payload)
        if opcode == 0:
            if self._fragmented_message_buffer is None:
                return self._abort()
            self._fragmented_message_buffer.extend(payload)
            if not final:
                return None
            opcode, payload = self._fragmented_message_opcode, bytes(self._fragmented_message_buffer)
            self._fragmented_message_buffer = None
            return self._handle_message(opcode, payload)
        if self._fragmented_message_buffer is not None:
            return self._abort()
        if not final:
            self._fragmented_message_opcode, self._fragmented_message_buffer = opcode, bytearray(payload)
            return None
        return self._handle_message(opcode, payload)


def _frame_head(data, offset):
    """(first byte, masked, payload start, payload length) of the frame at `offset`, None if incomplete."""
    available = len(data) - offset
    if available < 2:
        return None
    first, second = data[offset], data[offset + 1]
    length, start = second & 0x7F, offset + 2
    if length == 126:
        if available < 4:
            return None
        length, start = struct.unpack_from("!H", data, start)[0], start + 2
    elif length == 127:
        if available < 10:
            return None
        length, start = struct.unpack_from("!Q", data, start)[0], start + 8
    masked = second & 0x80
    if masked:
        start += 4
    return (first, masked, start, length) if start <= len(data) else None


class StatsSocket(IngestSocket):
    """One monitored peer's connection."""

    quiet_success = True  # counted in /metrics, not logged per connection

    @property
    def max_message_size(self):
        return self.settings["max_body"]

    def get_websocket_protocol(self):
        protocol = super().get_websocket_protocol()
        return protocol and FrameReader(self, False, protocol.params)

    def initialize(self):
        self.connection = None
        self.client = None
        self.last_message = time.monotonic()

    def prepare(self):
        """Before the upgrade: the ingest key and the ids; a refusal is a JSON 4xx."""
        refusal = None if is_websocket(self.request) else (
            400, "websocket_required", "/v1/stats/ws takes a websocket; POST samples to /v1/stats/write/")
        refusal = refusal or ingest_key_refusal(self.application, self.request)
        call, peer = self.get_query_argument("call", ""), self.get_query_argument("peer", "")
        if refusal is None and not self.settings["stats_ws_enabled"]:
            refusal = (503, "websocket_off", "websocket ingest is off on this server: POST /v1/stats/write/")
        if refusal is None and not (IDENTIFIER_RE.fullmatch(call) and IDENTIFIER_RE.fullmatch(peer)):
            refusal = (400, "bad_request", "call and peer must be 1-128 characters of [A-Za-z0-9_.:@{}-]")
        if refusal:
            self.refuse_upgrade(*refusal)

    def open(self):
        self.connection = StatsConnection(self.get_query_argument("call"), self.get_query_argument("peer"),
                                          self.settings["ingest_limits"])
        self.client = ingest_client(self.request)
        self.application.stats_sockets.add(self)
        self.set_nodelay(True)

    def on_message(self, message):
        """`message`: a text frame's bytes (FrameReader), or a str from a fragmented one."""
        self.last_message = time.monotonic()
        app = self.application
        connection = self.connection
        try:
            frame = connection.receive(message, time.time_ns() // 1000 * 1000)
        except FrameError as exc:
            app.telemetry.inc("rtcscope_ingest_refused_total", reason="invalid_frame")
            return self.close(CLOSE_INVALID, str(exc))
        parsed = frame.parsed
        if parsed.lines:
            refusal = app.admission.admit(self.client, parsed.calls)
            if refusal:
                return self._busy(frame, refusal.code, refusal.retry_after or 1)
            if not app.writer.submit(parsed.lines):
                return self._busy(frame, app.writer.refusal_code,
                                  max(1, round(self.settings["flush_interval"] * 2)))
        if app.writer.sync_each and parsed.lines:  # --wal-fsync=always: answered once on disk
            return self._answer_when_durable(frame)
        self._answer(frame)

    async def _answer_when_durable(self, frame):
        if not await self.application.writer.durable():
            return self._busy(frame, "wal_unavailable", 1)
        self._answer(frame)

    def _answer(self, frame):
        """Commit the frame, then its refusals and one ack for all of it."""
        self.connection.commit(frame)
        telemetry = self.application.telemetry
        parsed = frame.parsed
        if parsed.accepted:
            telemetry.inc("rtcscope_samples_accepted_total", parsed.accepted)
        if parsed.dropped:
            telemetry.inc("rtcscope_values_dropped_total", parsed.dropped)
        if parsed.restamped:
            telemetry.inc("rtcscope_samples_restamped_total", parsed.restamped)
        answer = b""
        for number, code, message in frame.errors:
            telemetry.inc("rtcscope_ingest_refused_total", reason=code)
            answer += text_frame(orjson.dumps({"type": "error", "seq": number,
                                               "error": {"code": code, "message": message}}))
        self._write(answer + text_frame(b'{"type":"ack","seq":%d}' % self.connection.handled))

    def _busy(self, frame, code, retry_after):
        """Nothing of the frame applied: the client sends it again from `seq` after `retry_after`."""
        self.application.telemetry.inc("rtcscope_ingest_refused_total", reason=code)
        self._write(text_frame(b'{"type":"busy","seq":%d,"retry_after":%d,"code":"%s"}'
                               % (frame.first, retry_after, code.encode())))

    def _write(self, frames):
        """Answers are written as prebuilt frames (handlers/ws.text_frame): write_message
        would build a Task per answer. These sockets never negotiate compression. With
        nothing queued before it, an answer goes straight to the socket (the common case:
        the client waits for it); what the socket does not take, and any error, is left to
        the stream, which queues, retries or closes."""
        stream = self.ws_connection and self.ws_connection.stream
        if stream is None or stream.closed():
            return
        if not stream.writing():
            try:
                sent = stream.socket.send(frames)
            except OSError:
                sent = 0
            if sent == len(frames):
                return
            frames = frames[sent:]
        stream.write(frames)

    def close_if_idle(self, now, timeout):
        if now - self.last_message > timeout:
            self.close(CLOSE_IDLE, "idle for longer than --client-timeout")

    def on_close(self):
        app = self.application
        app.stats_sockets.discard(self)
        if self.connection is None:
            return
        if self.close_code == CLOSE_GOING_AWAY:
            return
        lines = self.connection.closed_lines(time.time_ns() // 1000 * 1000)
        if lines:
            app.writer.submit(lines)  # best effort: a full log loses the marker, the peer then times out


default_handlers = [
    # Before /v1/stats/<call>/: `ws` is a reserved call id.
    (r"/v1/stats/ws/?", StatsSocket),
]
