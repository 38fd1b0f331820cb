"""The floors under the websocket ingest, for the fleet benchmark: servers that
take the same frames from bench/fleetload.py and do only the work every
such server must do, parse each frame's JSON and answer one ack per frame.

    python -m bench.wsfloor asyncio|tornado PORT

`asyncio`: a bare asyncio Protocol (the frame read by hand, unmasked with
tornado's C `_websocket_mask`, a prebuilt ack written to the transport):
the floor of Python and its event loop here. `tornado`: a bare
`WebSocketHandler` whose `on_message` parses and answers with
`write_message`: what tornado's websocket costs before any ingest work.
Both answer GET /healthz with 200 so the bench can wait for them.
"""
import asyncio
import base64
import hashlib
import struct
import sys

import orjson
import tornado.web
import tornado.websocket
from tornado.util import _websocket_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"


def ack(seq):
    body = b'{"type":"ack","seq":%d}' % seq
    return struct.pack("!BB", 0x81, len(body)) + body


class BareAsyncio(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer, self.upgraded, self.seq = transport, b"", False, 0

    def data_received(self, data):
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            key = next((line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                        if line.lower().startswith(b"sec-websocket-key:")), None)
            if key is None:
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                return self.transport.close()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept)
            self.upgraded = True
        offset, answers = 0, b""
        while len(buffer) - offset >= 2:
            length, start = buffer[offset + 1] & 0x7F, offset + 2
            if length == 126:
                length, start = struct.unpack_from("!H", buffer, start)[0], start + 2
            elif length == 127:
                length, start = struct.unpack_from("!Q", buffer, start)[0], start + 8
            stop = start + 4 + length
            if stop > len(buffer):
                break
            message = orjson.loads(_websocket_mask(buffer[start:start + 4], buffer[start + 4:stop]))
            self.seq += len(message) if isinstance(message, list) else 1
            answers += ack(self.seq)
            offset = stop
        self.buffer = buffer[offset:]
        if answers:
            self.transport.write(answers)


class BareSocket(tornado.websocket.WebSocketHandler):
    def open(self):
        self.seq = 0

    def on_message(self, message):
        document = orjson.loads(message)
        self.seq += len(document) if isinstance(document, list) else 1
        self.write_message(f'{{"type":"ack","seq":{self.seq}}}')


class Health(tornado.web.RequestHandler):
    def get(self):
        self.finish(b"ok")


async def main(kind, port):
    if kind == "asyncio":
        await asyncio.get_running_loop().create_server(BareAsyncio, "127.0.0.1", port)
    else:
        tornado.web.Application([(r"/healthz", Health), (r"/v1/stats/ws", BareSocket)]).listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
