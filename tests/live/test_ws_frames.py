"""Graph messages are framed once by handlers/ws.text_frame and written as
raw bytes: a real websocket client must read every length class back intact
(7-bit, 16-bit and 64-bit payload lengths)."""
import pytest
import tornado.web
import tornado.websocket
from tornado.websocket import websocket_connect

from handlers.ws import text_frame

SIZES = (0, 125, 126, 65_535, 65_536, 200_000)


def message(size):
    return (b'{"type":"points","pad":"' + b"x" * size)[:size]


class FramedMessages(tornado.websocket.WebSocketHandler):
    def open(self):
        for size in SIZES:
            self.ws_connection.stream.write(text_frame(message(size)))


@pytest.fixture
def app():
    return tornado.web.Application([(r"/frames", FramedMessages)])


@pytest.mark.gen_test(timeout=20)
async def test_every_length_class_reads_back_intact(http_server, base_url):
    connection = await websocket_connect(base_url.replace("http", "ws", 1) + "/frames",
                                         max_message_size=1 << 20)
    received = [await connection.read_message() for _ in SIZES]
    connection.close()
    assert [len(text) for text in received] == list(SIZES)
    assert all(text == message(size).decode() for text, size in zip(received, SIZES))


def test_the_frame_is_built_once_per_message():
    body = message(300)
    assert text_frame(body) is text_frame(body)
    assert text_frame(body)[:4] == bytes([0x81, 126, 1, 44])  # FIN + text, 16-bit length 300
