"""The private tornado API handlers/wire.py is built on, checked by itself.

wire.py unmasks frames with `tornado.util._websocket_mask` and subclasses
WebSocketProtocol13 (Handover) to take the socket once tornado has written the
101: it overrides `_receive_frame_loop` and `start_pinging` and reads the
protocol's `handler`, `stream` and `params`. None of that is public, so
pyproject.toml allows one tornado minor version and requirements.txt pins one
release. These checks say which part a new tornado changed, before the
websocket ingest's tests fail for reasons harder to read."""
import inspect

import tornado
import tornado.util
from tornado.iostream import IOStream
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

import handlers.wire


def changed(what):
    return (f"handlers/wire.py relies on tornado's private API, and tornado {tornado.version} changed it: {what}. "
            "Adapt handlers/wire.py (its tests: tests/ingest/test_stats_ws_frames.py) before moving the tornado "
            "pin in pyproject.toml and requirements.txt.")


def uses(function, *attributes):
    """Whether `function`'s code stores, reads or calls each of these names."""
    return set(attributes) <= set(function.__code__.co_names)


def test_the_frame_unmasker_is_there_and_xors_with_the_four_byte_key():
    unmask = getattr(tornado.util, "_websocket_mask", None)
    assert callable(unmask), changed("tornado.util._websocket_mask is gone")
    assert handlers.wire._websocket_mask is unmask
    key = b"\x37\xfa\x21\x3d"
    for length in (1, 3, 4, 5, 125, 126, 70_000):
        data = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
        expected = bytes(byte ^ key[index % 4] for index, byte in enumerate(data))
        assert unmask(key, data) == expected, changed(f"_websocket_mask(key, {length} bytes) no longer unmasks")
        assert unmask(key, expected) == data, changed("_websocket_mask is no longer its own inverse")
    assert unmask(key, b"") == b"", changed("_websocket_mask of nothing")


def test_the_accept_path_ends_in_the_frame_loop_wire_replaces():
    own = vars(WebSocketProtocol13)  # Handover overrides these: they must be WebSocketProtocol13's own
    loop = own.get("_receive_frame_loop")
    assert loop is not None, changed("WebSocketProtocol13._receive_frame_loop is gone")
    assert inspect.iscoroutinefunction(loop), changed("_receive_frame_loop is no longer a coroutine function")
    assert callable(own.get("start_pinging")), changed("WebSocketProtocol13.start_pinging is gone")
    assert not inspect.iscoroutinefunction(own["start_pinging"]), changed("start_pinging is a coroutine")
    accept = own.get("_accept_connection")
    assert accept is not None, changed("WebSocketProtocol13._accept_connection is gone")
    # The 101 is written and the stream detached before the frame loop starts: wire.py takes the socket there.
    steps = ("finish", "_detach_stream", "start_pinging", "open", "_receive_frame_loop")
    assert uses(accept, *steps), changed(f"_accept_connection no longer does each of {steps}")
    order = [accept.__code__.co_names.index(step) for step in steps]  # names are listed by first use
    assert order == sorted(order), changed(f"_accept_connection no longer does {steps} in that order")


def test_the_protocol_attributes_and_constructor_wire_reads():
    parameters = list(inspect.signature(WebSocketProtocol13.__init__).parameters)
    assert parameters[:4] == ["self", "handler", "mask_outgoing", "params"], \
        changed(f"WebSocketProtocol13's constructor is now {parameters} (StatsSocket builds a Handover with it)")
    assert uses(WebSocketProtocol.__init__, "handler", "stream"), changed("the protocol's handler and stream")
    assert uses(WebSocketProtocol13.__init__, "params"), changed("WebSocketProtocol13.params")
    assert uses(WebSocketHandler.get_websocket_protocol, "WebSocketProtocol13"), \
        changed("get_websocket_protocol no longer makes a WebSocketProtocol13 (StatsSocket reuses its params)")
    assert callable(getattr(WebSocketHandler, "on_ws_connection_close", None)), \
        changed("WebSocketHandler.on_ws_connection_close is gone (Handover releases the handler with it)")
    assert uses(IOStream.__init__, "socket"), changed("IOStream.socket (take_socket duplicates it)")
    for name in ("writing", "write", "read_bytes", "closed", "set_nodelay", "close"):
        assert callable(getattr(IOStream, name, None)), changed(f"IOStream.{name} is gone (take_socket uses it)")
    assert "partial" in inspect.signature(IOStream.read_bytes).parameters, changed("IOStream.read_bytes(partial=)")
