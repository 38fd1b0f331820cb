"""WebSocket /v1/stats/ws?call=C&peer=P[&key=K][&tag.<name>=V...]: rtcscope.js's default transport.

The protocol lives in rtcscope/ingest/connection.py; the handler checks the
key, origin and `tag.<name>=` arguments like POST ingest before the upgrade
(and reads the peer's dimensions from them, its User-Agent and address, once); then the socket leaves
tornado (handlers/wire.py) and StatsWire admits the call through the same
limits, stores a frame's points through the same writer (a frame is all or
nothing for the writer: its `busy` says which message to send again) and
answers each frame with its refusals and one `ack`. One connection per peer; the
client sends a frame every sendInterval (2 s), several reports per frame,
and waits for its answer before it sends the next."""
import asyncio
import time

import orjson

from rtcscope.ingest.connection import FrameError, StatsConnection
from rtcscope.ingest.formats import IngestError
from rtcscope.storage.schema import IDENTIFIER_RE, IDENTIFIER_RULE

from .base import IngestSocket, client_dimensions, ingest_client, ingest_key_refusal, is_websocket
from .wire import TEXT, FrameProtocol, Handover, server_frame

CLOSE_INVALID = 1007  # a frame that is not JSON: its messages cannot be numbered
CLOSE_IDLE = 4001
CLOSE_PING_TIMEOUT = 1000  # no pong within the ping interval (tornado's code and reason for it)
# A page going away closes with 1001 after it sent its end by sendBeacon (rtcscope.js on pagehide):
# a disconnect marker then could land after that end and override it.
CLOSE_GOING_AWAY = 1001
CLOSE_RESTART = 1012  # the server is stopping: the client reconnects (here once restarted, or elsewhere)


class StatsSocket(IngestSocket):
    """The upgrade of one monitored peer's connection: refusals are JSON 4xx/503 answers;
    once upgraded, the connection is a StatsWire."""

    quiet_success = True  # counted in /metrics, not logged per connection

    @property
    def max_message_size(self):
        return self.application.config.max_body

    def get_websocket_protocol(self):
        protocol = super().get_websocket_protocol()
        return protocol and Handover(self, False, protocol.params)

    def prepare(self):
        """Before the upgrade: the ingest key and the ids; a refusal is a JSON 4xx."""
        refusal = None if is_websocket(self.request) else (
            400, "websocket_required", "/v1/stats/ws takes a websocket; POST samples to /v1/stats/write/")
        refusal = refusal or ingest_key_refusal(self.application, self.request)
        call, peer = self.get_query_argument("call", ""), self.get_query_argument("peer", "")
        if refusal is None and not self.application.config.stats_ws:
            refusal = (503, "websocket_off", "websocket ingest is off on this server: POST /v1/stats/write/")
        if refusal is None and not (IDENTIFIER_RE.fullmatch(call) and IDENTIFIER_RE.fullmatch(peer)):
            refusal = (400, "bad_request", f"call and peer must be {IDENTIFIER_RULE}")
        if refusal is None:
            try:  # the peer's dimensions, once for the connection
                tags = self.application.dimensions.query_tags(self.request.query_arguments)
            except IngestError as exc:
                refusal = (exc.status, exc.code, exc.message)
            else:
                self.peer_dimensions = {**client_dimensions(self), **tags}
        if refusal:
            self.refuse_upgrade(*refusal)

    def frame_protocol(self, early):
        """Called by Handover once the 101 is sent."""
        connection = StatsConnection(self.get_query_argument("call"), self.get_query_argument("peer"),
                                     self.application.ingest_limits, extractor=self.application.dimensions,
                                     client=self.peer_dimensions)
        return StatsWire(self.application, connection, ingest_client(self.request), self.max_message_size, early)


class StatsWire(FrameProtocol):
    """One monitored peer's upgraded connection: each text frame is a StatsConnection frame."""

    __slots__ = ("app", "connection", "client", "last_message", "pinged_at", "answering")

    def __init__(self, app, connection, client, max_message_size, early):
        super().__init__(max_message_size, early)
        self.app = app
        self.connection = connection
        self.client = client
        self.last_message = self.pinged_at = time.monotonic()
        self.answering = None  # --wal-fsync=always: the task that answers once the frame is on disk

    def connection_made(self, transport):
        self.app.stats_sockets.add(self)
        super().connection_made(transport)

    def on_message(self, message):
        self.last_message = time.monotonic()
        app = self.app
        try:
            frame = self.connection.receive(message, time.time_ns() // 1000 * 1000)
        except FrameError as exc:
            app.telemetry.inc("rtcscope_ingest_refused_total", reason="invalid_frame")
            return self.close(CLOSE_INVALID, str(exc))
        parsed = frame.parsed
        if parsed.lines:
            refusal = app.admission.admit(self.client, parsed.calls)
            if refusal:
                app.ingest_limits.feed.forget(parsed.sent_dimensions)
                return self._busy(frame, refusal.code, refusal.retry_after or 1)
            writer = app.writer
            if not writer.submit(parsed.lines):
                app.ingest_limits.feed.forget(parsed.sent_dimensions)
                return self._busy(frame, writer.refusal_code, max(1, round(app.config.flush_interval * 2)))
            if writer.sync_each:  # --wal-fsync=always: answered once on disk, the frames after it wait
                self.hold()
                self.answering = asyncio.ensure_future(self._answer_when_durable(frame))
                return
        self._answer(frame)

    async def _answer_when_durable(self, frame):
        try:
            if await self.app.writer.durable():
                self._answer(frame)
            else:
                self._busy(frame, "wal_unavailable", 1)
        finally:
            self.answering = None
            self.release()

    def _answer(self, frame):
        """Commit the frame, then its refusals and one ack for all of it."""
        self.connection.commit(frame)
        telemetry = self.app.telemetry
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
            answer += server_frame(TEXT, orjson.dumps({"type": "error", "seq": number,
                                               "error": {"code": code, "message": message}}))
        self.send(answer + server_frame(TEXT, b'{"type":"ack","seq":%d}' % self.connection.handled))

    def _busy(self, frame, code, retry_after):
        """Nothing of the frame applied: the client sends it again from `seq` after `retry_after`."""
        self.app.telemetry.inc("rtcscope_ingest_refused_total", reason=code)
        self.send(server_frame(TEXT, b'{"type":"busy","seq":%d,"retry_after":%d,"code":"%s"}'
                             % (frame.first, retry_after, code.encode())))

    def sweep(self, now, idle_timeout, ping_interval):
        """The Application's periodic sweep: the idle close, then a ping every
        `ping_interval`, and a close when the previous one got no pong."""
        if now - self.last_message > idle_timeout:
            return self.close(CLOSE_IDLE, "idle for longer than --client-timeout")
        if now - self.pinged_at >= ping_interval:
            if self.pong_due:
                return self.close(CLOSE_PING_TIMEOUT, "ping timed out")
            self.pinged_at = now
            self.ping()

    def stop(self):
        """The server stops: the client reconnects (here once restarted, or to another process) and
        sends again what was not acknowledged; no disconnect marker, the peer did not go away."""
        self.fail(CLOSE_RESTART, "the server is restarting")

    def on_closed(self):
        app = self.app
        app.stats_sockets.discard(self)
        if self.close_code == CLOSE_GOING_AWAY or self.sent_code == CLOSE_RESTART:
            return
        lines = self.connection.closed_lines(time.time_ns() // 1000 * 1000)
        if lines:
            app.writer.submit(lines)  # best effort: a full log loses the marker, the peer then times out


default_handlers = [
    # Before /v1/stats/<call>/: `ws` is a reserved call id.
    (r"/v1/stats/ws/?", StatsSocket),
]
