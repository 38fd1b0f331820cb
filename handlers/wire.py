"""Websocket connections served from a bare asyncio Protocol once tornado has upgraded them.

tornado's handler does the HTTP side: routing, the key, origin and limit checks
(a refusal keeps its JSON/HTTP answer) and the 101. Then the socket leaves
tornado's IOStream, which costs a Future and a coroutine resume per read and
about 100 objects the garbage collector tracks per connection (15 here), for an
asyncio Transport feeding
`FrameProtocol.data_received`: every whole frame of a read is parsed there,
unmasked by tornado's C `_websocket_mask`, and answers go to `transport.write`.

RFC 6455 as a server needs it: client frames must be masked; pings are answered
(a client that does not read its answers is not read either: reading pauses
while the transport's buffer is over its high-water mark); fragmented messages,
control frames between their fragments; the close handshake (a client's close
is echoed with its code, a server's close waits `CLOSE_WAIT_SECONDS` for the
echo); a protocol error closes with 1002, a message over `max_message_size`
with 1009 as soon as a frame header says so.
One read is at most the transport's read size (256 KiB), and every connection
gets one read per loop iteration: a client flooding frames cannot starve others.
"""
import asyncio
import logging
import struct

from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13

log = logging.getLogger("rtcscope.ws")

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009
CLOSE_WAIT_SECONDS = 5  # how long a server's close frame waits for the client's (tornado's too)
PING = b"\x89\x00"
FIN, RSV, OPCODE = 0x80, 0x70, 0x0F
TEXT, BINARY, CONTINUATION, CLOSE, PING_OPCODE, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def server_frame(opcode, payload):
    """One final, unmasked frame (RFC 6455 5.2)."""
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", FIN | opcode, length) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", FIN | opcode, 126, length) + payload
    return struct.pack("!BBQ", FIN | opcode, 127, length) + payload


def frame_head(data, offset):
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


class FrameProtocol(asyncio.Protocol):
    """The frames of one upgraded connection. Subclasses take whole messages in
    `on_message` (bytes) and the end in `on_closed`; `hold()` and `release()`
    stop and restart reading while an answer is pending (frames are answered in order)."""

    __slots__ = ("max_message_size", "transport", "rest", "wanted", "pieces", "fragments", "held", "write_blocked",
                 "sent_code", "close_code", "pong_due", "draining", "_close_timer")

    def __init__(self, max_message_size, early=b""):
        self.max_message_size = max_message_size
        self.transport = None
        self.rest = early  # bytes of a frame not yet whole (at first: what tornado read past the upgrade)
        self.wanted = 0  # bytes `rest` must grow by before it is parsed again
        self.pieces = []  # reads since, joined once `wanted` is reached (a long frame is copied once)
        self.fragments = None  # a fragmented message so far: [opcode, bytearray]
        self.held = False  # an answer is pending: frames after it wait
        self.write_blocked = False  # the transport's buffer is over its high-water mark
        self.sent_code = None  # the code of the close frame sent
        self.close_code = None  # the client's, from its close frame
        self.pong_due = False  # a ping was sent and no pong has come since
        self.draining = False  # failed: what the client still sends is read and dropped until it closes
        self._close_timer = None

    def connection_made(self, transport):
        self.transport = transport
        if self.rest:
            rest, self.rest = self.rest, b""
            self.data_received(rest)

    def data_received(self, data):
        if self.draining:
            return
        if self.rest:
            self.pieces.append(data)
            self.wanted -= len(data)
            if self.wanted > 0 or self.held:
                return
            data = self.rest + b"".join(self.pieces)
            self.rest, self.pieces = b"", []
        self._read(data)

    def _read(self, data):
        """Handle every whole frame of `data`; keep the rest until more arrives."""
        offset, end = 0, len(data)
        while offset < end:
            if self.held or self.transport is None or self.transport.is_closing():
                break
            head = frame_head(data, offset)
            if head is None:  # a header cut short: parsed again with the next read
                self.rest, self.wanted = data[offset:], 1
                return
            first, masked, start, length = head
            if not masked or first & RSV:
                return self.fail(CLOSE_PROTOCOL_ERROR, "client frames must be masked, with no extension bits")
            fragments = self.fragments
            if length + (len(fragments[1]) if fragments else 0) > self.max_message_size:
                return self.fail(CLOSE_TOO_BIG, "message too big")
            stop = start + length
            if stop > end:
                self.rest, self.wanted = data[offset:], stop - end
                return
            payload = _websocket_mask(data[start - 4:start], data[start:stop]) if length else b""
            offset = stop
            self._frame(first, payload)
        if offset < end:  # held: read again on release()
            self.rest, self.wanted = data[offset:], 0

    def _frame(self, first, payload):
        opcode, final = first & OPCODE, first & FIN
        fragments = self.fragments
        if opcode & 0x8:
            if not final or len(payload) > 125:
                return self.fail(CLOSE_PROTOCOL_ERROR, "control frames are short and never fragmented")
            return self._control(opcode, payload)
        if opcode == CONTINUATION:
            if fragments is None:
                return self.fail(CLOSE_PROTOCOL_ERROR, "a continuation without a message to continue")
            fragments[1] += payload
            if final:
                self.fragments = None
                self._message(bytes(fragments[1]))
            return
        if opcode not in (TEXT, BINARY) or fragments is not None:
            return self.fail(CLOSE_PROTOCOL_ERROR, "unknown opcode, or a new message inside a fragmented one")
        if final:
            return self._message(payload)
        self.fragments = [opcode, bytearray(payload)]

    def _message(self, payload):
        if self.sent_code is None:  # after a close, only the client's close matters
            self.on_message(payload)

    def _control(self, opcode, payload):
        if opcode == PING_OPCODE:
            if self.sent_code is None:
                self.transport.write(server_frame(PONG, payload))
        elif opcode == PONG:
            self.pong_due = False
        elif opcode == CLOSE:
            if len(payload) == 1:
                return self.fail(CLOSE_PROTOCOL_ERROR, "a close frame's code is two bytes")
            if payload:
                self.close_code = struct.unpack_from("!H", payload)[0]
            if self.sent_code is None:  # echo the client's code (RFC 6455 5.5.1)
                self.sent_code = self.close_code or CLOSE_NORMAL
                self.transport.write(server_frame(CLOSE, payload[:2]))
            self.transport.close()
        else:
            self.fail(CLOSE_PROTOCOL_ERROR, "unknown control opcode")

    def on_message(self, payload):
        raise NotImplementedError

    def on_closed(self):
        """The connection is gone (closed either way, or dropped)."""

    def send(self, frames):
        """Prebuilt server frames; nothing after a close."""
        if self.sent_code is None and self.transport is not None:
            self.transport.write(frames)

    def ping(self):
        """A ping; `pong_due` stays True until the client answers."""
        if self.sent_code is None and self.transport is not None:
            self.pong_due = True
            self.transport.write(PING)

    def close(self, code, reason):
        """Start the close handshake: the client echoes it, or the connection is dropped after a while."""
        if self.sent_code is not None or self.transport is None:
            return
        self._send_close(code, reason)
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_WAIT_SECONDS, self.transport.abort)

    def fail(self, code, reason):
        """Close without reading another frame: the client broke the protocol, or the server goes away.
        The close frame is followed by a FIN, and what the client still sends is read and dropped
        until it closes (at most CLOSE_WAIT_SECONDS): closing a socket with unread bytes would
        reset the connection, and the client could lose the close frame."""
        if self.transport is None or self.draining:
            return
        self.close(code, reason)
        self.draining = True
        self.rest, self.pieces, self.fragments = b"", [], None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._update_reading()

    def _send_close(self, code, reason):
        self.sent_code = code
        self.transport.write(server_frame(CLOSE, struct.pack("!H", code) + reason.encode()[:123]))

    def hold(self):
        """Frames after the one being handled wait until `release()`."""
        self.held = True
        self._update_reading()

    def release(self):
        self.held = False
        self._update_reading()
        if self.rest and not self.wanted > 0 and self.transport is not None:
            rest, self.rest = self.rest + b"".join(self.pieces), b""
            self.pieces = []
            self._read(rest)

    def pause_writing(self):
        self.write_blocked = True
        self._update_reading()

    def resume_writing(self):
        self.write_blocked = False
        self._update_reading()

    def _update_reading(self):
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if (self.held or self.write_blocked) and not self.draining:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def eof_received(self):
        return False  # the transport closes

    def connection_lost(self, exc):
        if self._close_timer is not None:
            self._close_timer.cancel()
        self.transport = None
        self.on_closed()


class Handover(WebSocketProtocol13):
    """tornado's side of an upgrade: it checks the websocket headers and writes the 101
    (through the handler, so the headers every answer carries are there); then the
    socket leaves tornado for the FrameProtocol `handler.frame_protocol(early bytes)` makes.
    The server speaks plain HTTP (TLS ends at the proxy), so the socket carries the frames as they are."""

    def start_pinging(self):
        """The FrameProtocol's owner pings (tornado would start a coroutine per connection)."""

    async def _receive_frame_loop(self):
        try:
            taken = await take_socket(self.stream)
            if taken is not None:
                sock, early = taken
                protocol = self.handler.frame_protocol(early)
                await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock)
        except OSError as exc:
            log.debug("a websocket went away during its hand-over: %s", exc)
        finally:
            # tornado's own loop ends so: the handler and this object are released (the socket is not theirs)
            self.handler.on_ws_connection_close()


async def take_socket(stream):
    """(socket, bytes read past the upgrade request) of a detached IOStream, or None if the
    client left. The 101 is flushed first, TCP_NODELAY set; the stream is then closed on a duplicate of
    the descriptor, so tornado drops its registration and the connection stays open."""
    if stream.writing():
        await stream.write(b"")
    read = stream.read_bytes(65536, partial=True)  # what tornado buffered, or a non-blocking read
    if stream.closed():
        return None
    early = read.result() if read.done() else b""
    stream.set_nodelay(True)  # answers are small and awaited: never held back (Nagle)
    sock = stream.socket.dup()
    stream.close()
    return sock, early
