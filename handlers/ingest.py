"""POST /v1/stats/write/: every client format, validated whole, then buffered."""
import time

import tornado.web

from rtcscope.ingest.formats import IngestError, parse

from .base import APIHandler, client_dimensions, ingest_client, ingest_key_refusal

REFUSAL_MESSAGES = {
    "shutting_down": "the server is shutting down; retry later",
    "wal_full": "the write-ahead log is full (InfluxDB is slow or down); retry later",
    "buffer_full": "the write buffer is full; retry later",
    "wal_unavailable": "the write-ahead log could not be synced; retry later",
}


@tornado.web.stream_request_body
class WriteHandler(APIHandler):
    """Bodies are streamed so an oversized one gets a JSON 413, not a dropped connection."""

    quiet_success = True  # no access-log line per accepted post (see Application.log_request)
    max_calls = None  # calls one request may hold: --max-calls-per-request

    def initialize(self):
        self._chunks = []
        self._size = 0
        self._too_large = False

    def set_default_headers(self):
        super().set_default_headers()
        allowed = self.application.config.cors_origins
        origin = self.request.headers.get("Origin")
        if "*" in allowed:
            self.set_header("Access-Control-Allow-Origin", "*")
        elif origin in allowed:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
        # Clients on other origins must read Retry-After to back off as told.
        self.set_header("Access-Control-Expose-Headers", "Retry-After")

    def prepare(self):
        """Keys and origin are checked before the body is read: a refused
        request costs its headers only."""
        refusal = self.origin_refusal() or (self.key_refusal() if self.request.method != "OPTIONS" else None)
        if refusal:
            if refusal[0] == 401:
                self.set_header("WWW-Authenticate", 'Bearer realm="rtcscope"')
            return self.refuse(*refusal)
        max_body = self.application.config.max_body
        readable = max(max_body, 1) * 4
        self.request.connection.set_max_body_size(readable)
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_body:
            if int(length) > readable:
                # Answered before the body is read; tornado then closes the connection.
                return self.fail_too_large()
            # Read and dropped, then answered: closing on a body still being
            # sent would reset the connection under the answer (a proxy then
            # reports a 502 instead of this 413), and keep-alive survives.
            self._too_large = True

    def data_received(self, chunk):
        if self._too_large:
            return
        self._size += len(chunk)
        if self._size > self.application.config.max_body:
            self._too_large = True
            self._chunks = []
        else:
            self._chunks.append(chunk)

    def key_refusal(self):
        return ingest_key_refusal(self.application, self.request)

    def origin_refusal(self):
        """With an allow-list, a browser on another origin may not post at all:
        sendBeacon's text/plain posts need no preflight, so CORS alone would
        let them through."""
        allowed = self.application.config.cors_origins
        origin = self.request.headers.get("Origin")
        if "*" in allowed or origin is None or origin in allowed:
            return None
        return 403, "origin_not_allowed", f"origin {origin[:100]} may not post stats here"

    def refuse(self, status, code, message, **headers):
        """Answer an error: nothing of this request is buffered."""
        self.application.telemetry.inc("rtcscope_ingest_refused_total", reason=code)
        self.fail(status, code, message, **headers)

    def fail_too_large(self):
        self.refuse(413, "body_too_large", f"body larger than {self.application.config.max_body} bytes")

    def options(self):
        self.set_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.set_header("Access-Control-Max-Age", "86400")
        self.set_status(204)
        self.finish()

    def post(self):
        app = self.application
        if self._too_large:
            return self.fail_too_large()
        now_ns = time.time_ns() // 1000 * 1000
        try:
            parsed = self.parse(b"".join(self._chunks), now_ns)
        except IngestError as exc:
            return self.refuse(exc.status, exc.code, exc.message)
        refusal = app.admission.admit(ingest_client(self.request), parsed.calls, self.max_calls)
        if refusal:
            app.ingest_limits.feed.forget(parsed.sent_dimensions)
            retry = {"Retry_After": str(refusal.retry_after)} if refusal.retry_after else {}
            return self.refuse(refusal.status, refusal.code, refusal.message, **retry)
        if not app.writer.submit(parsed.lines):
            app.ingest_limits.feed.forget(parsed.sent_dimensions)
            return self.refuse(503, app.writer.refusal_code, REFUSAL_MESSAGES[app.writer.refusal_code],
                               Retry_After=str(max(1, round(app.config.flush_interval * 2))))
        if app.writer.sync_each:  # --wal-fsync=always: answered once on disk (a coroutine only then)
            return self._answer_when_durable(parsed)
        self._answer(parsed)

    def parse(self, body, now_ns):
        """The request's points (a formats.Parsed), its peers' dimensions with them; IngestError for a body
        to refuse."""
        app = self.application
        return parse(body, now_ns, app.ingest_limits, self.argument("precision", "ns"), app.dimensions,
                     client_dimensions(self))

    async def _answer_when_durable(self, parsed):
        if not await self.application.writer.durable():
            return self.refuse(503, "wal_unavailable", REFUSAL_MESSAGES["wal_unavailable"], Retry_After="1")
        self._answer(parsed)

    def count(self, parsed):
        for counter, amount in (("rtcscope_samples_accepted_total", parsed.accepted),
                                ("rtcscope_values_dropped_total", parsed.dropped),
                                ("rtcscope_samples_restamped_total", parsed.restamped)):
            if amount:  # usually only the first: a counter update costs about a microsecond
                self.application.telemetry.inc(counter, amount)

    def _answer(self, parsed):
        self.count(parsed)
        self.write_json({"success": True, "accepted": parsed.accepted,
                         "dropped": parsed.dropped, "restamped": parsed.restamped,
                         "events": parsed.events})


default_handlers = [
    (r"/v1/stats/write/?", WriteHandler),
]
