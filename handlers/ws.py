"""WebSockets /ws/graph/<metric> and /ws/calls: a snapshot, then every change.

The call detector produces each message once; these handlers only write it
and keep a slow viewer from holding unbounded memory."""
import functools
import logging

import tornado.iostream
import tornado.websocket

from rtcscope.live.detector import DetectorUnavailable
from rtcscope.storage.store import StoreError

from .base import find_metric
from .wire import TEXT, server_frame

log = logging.getLogger("rtcscope.ws")

# Close codes a page acts on: 4404 is final, the others mean "reconnect".
CLOSE_UNKNOWN_METRIC = 4404
CLOSE_TOO_SLOW = 4008
CLOSE_UNAVAILABLE = 1011
PING_INTERVAL_SECONDS = 20
PING_TIMEOUT_SECONDS = 20


@functools.lru_cache(maxsize=8)
def text_frame(message):
    """`message` as one text frame, built once and written to every viewer:
    tornado's write_message would frame it again per viewer and wrap each
    write in a Task. Valid because these sockets never negotiate compression
    (no get_compression_options)."""
    return server_frame(TEXT, message)


class LiveSocket(tornado.websocket.WebSocketHandler):
    """A viewer of the detector's messages. Viewers only listen; what they send is ignored."""

    needs_detector = True

    @property
    def ping_interval(self):
        return self.settings.get("websocket_ping_interval", PING_INTERVAL_SECONDS)

    @property
    def ping_timeout(self):
        return self.settings.get("websocket_ping_timeout", PING_TIMEOUT_SECONDS)

    def check_origin(self, origin):
        """Called only for cross-origin requests: those need the --ws-origins allow-list."""
        return origin in self.application.config.ws_origins

    def leave(self):
        """Stop getting the detector's messages."""
        raise NotImplementedError

    def start_pending(self):
        self.pending = 0
        self.max_pending = self.application.config.ws_max_pending  # bytes not yet taken by the socket

    def on_message(self, message):
        pass

    @property
    def closing(self):
        return self.ws_connection is None or self.ws_connection.is_closing()

    def send(self, message):
        """Queue one serialised message (a JSON text frame); drop a viewer that cannot keep up."""
        if self.closing:
            return
        if self.pending > self.max_pending:
            log.info("dropping a slow viewer of %s: %d bytes pending", self.request.path, self.pending)
            self.application.telemetry.inc("rtcscope_graph_viewers_dropped_total")
            return self.close(CLOSE_TOO_SLOW, "too slow: reconnect for a fresh snapshot")
        frame = text_frame(message)
        size = len(frame)
        self.pending += size
        try:
            written = self.ws_connection.stream.write(frame)
        except tornado.iostream.StreamClosedError:
            return
        written.add_done_callback(lambda future: self._written(future, size))

    def _written(self, future, size):
        self.pending -= size
        if not future.cancelled():
            future.exception()  # a closed connection is not an error worth logging

    def close(self, code=None, reason=None):
        self.leave()
        super().close(code, reason)

    def on_close(self):
        self.leave()


class GraphSocket(LiveSocket):
    """One viewer of one metric's live graph."""

    async def open(self, metric):
        self.start_pending()
        detector = self.application.detector
        try:
            found = await find_metric(self.application.store, metric)
        except StoreError:
            return self.close(CLOSE_UNAVAILABLE, "InfluxDB is unavailable")
        if found is None:
            return self.close(CLOSE_UNKNOWN_METRIC, f"unknown metric {metric}")
        try:
            await detector.watch(found, self)
        except (StoreError, DetectorUnavailable) as exc:
            return self.close(CLOSE_UNAVAILABLE, f"live data unavailable: {exc}"[:120])
        if self.closing:  # closed while the snapshot was loading
            detector.unwatch(self)

    def leave(self):
        self.application.detector.unwatch(self)


class CallsSocket(LiveSocket):
    """One viewer of the live call list with every call's quality (SPEC §10)."""

    async def open(self):
        self.start_pending()
        try:
            await self.application.detector.watch_calls(self)
        except DetectorUnavailable as exc:
            return self.close(CLOSE_UNAVAILABLE, f"live data unavailable: {exc}"[:120])
        if self.closing:
            self.leave()

    def leave(self):
        self.application.detector.unwatch_calls(self)


default_handlers = [
    (r"/ws/graph/(?P<metric>[^/]{1,128})/?", GraphSocket),
    (r"/ws/calls/?", CallsSocket),
]
