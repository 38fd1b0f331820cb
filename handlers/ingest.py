"""POST /v1/stats/write/: every client format, validated whole, then buffered.

A post that is stored is answered by `StoredWrite`, below tornado's RequestHandler;
every other answer (a refusal of any kind, OPTIONS, a body that is too large or
streamed without a length, --wal-fsync=always) by `WriteHandler`. The rules
(`store`, the headers, the answer) are one implementation that both use, as are
those of the other ingest posts (handlers/janus.py): a WriteHandler subclass says
how its posts are read and answered, and StoredWrite stores them the same way.
"""
import functools
import logging
import time

import orjson
import tornado
import tornado.web
from tornado import httputil
from tornado.log import access_log

from rtcscope.ingest.formats import IngestError, parse

from .base import API_HEADERS, SECURITY_HEADERS, APIHandler, client_dimensions, ingest_client, ingest_key_refusal

REFUSAL_MESSAGES = {
    "shutting_down": "the server is shutting down; retry later",
    "wal_full": "the write-ahead log is full (InfluxDB is slow or down); retry later",
    "buffer_full": "the write buffer is full; retry later",
    "wal_unavailable": "the write-ahead log could not be synced; retry later",
}
SERVER_HEADER = ("Server", f"TornadoServer/{tornado.version}")  # what RequestHandler sends
OK = httputil.ResponseStartLine("HTTP/1.1", 200, "OK")


@functools.lru_cache(maxsize=2)
def http_date(second):
    """The Date header for a Unix time in whole seconds: formatting it (email.utils) takes
    longer than writing all the other headers of an answer, so once a second."""
    return httputil.format_timestamp(second)


def cors_headers(allowed, origin):
    """An ingest answer's CORS headers, for the allow-list `allowed` (--cors-origins) and the
    request's Origin. Clients on other origins must read Retry-After to back off as told."""
    if "*" in allowed:
        headers = [("Access-Control-Allow-Origin", "*")]
    elif origin in allowed:
        headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    else:
        headers = []
    headers.append(("Access-Control-Expose-Headers", "Retry-After"))
    return headers


def origin_refusal(allowed, origin):
    """With an allow-list, a browser on another origin may not post at all:
    sendBeacon's text/plain posts need no preflight, so CORS alone would
    let them through."""
    if "*" in allowed or origin is None or origin in allowed:
        return None
    return 403, "origin_not_allowed", f"origin {origin[:100]} may not post stats here"


def parse_post(handler, body, now_ns):
    """A post's points (a formats.Parsed), its peers' dimensions with them; IngestError for a body to
    refuse. `handler`: a WriteHandler or a StoredWrite (its application and request)."""
    precision = handler.request.query_arguments.get("precision", (b"ns",))
    if len(precision) > 1:
        raise IngestError("parameter precision given more than once")
    application = handler.application
    return parse(body, now_ns, application.ingest_limits, precision[0].decode("utf-8", "replace").strip(),
                 application.dimensions, client_dimensions(handler))


def store(post, body, route):
    """Parse, admit and log one request's body: (what `route.read` read of it, None) once its
    points are in the write-ahead log, else (None, (status, code, message, headers)) with
    nothing of it stored. `post`: a WriteHandler or a StoredWrite (its application and
    request); `route`: the WriteHandler class whose posts these are."""
    application, request = post.application, post.request
    now_ns = time.time_ns() // 1000 * 1000
    try:
        parsed, read = route.read(post, body, now_ns)
    except IngestError as exc:
        return None, (exc.status, exc.code, exc.message, {})
    refusal = application.admission.admit(ingest_client(request), parsed.calls, route.max_calls)
    if refusal:
        application.ingest_limits.feed.forget(parsed.sent_dimensions)
        return None, (refusal.status, refusal.code, refusal.message,
                      {"Retry_After": str(refusal.retry_after)} if refusal.retry_after else {})
    writer = application.writer
    if not writer.submit(parsed.lines):
        application.ingest_limits.feed.forget(parsed.sent_dimensions)
        return None, (503, writer.refusal_code, REFUSAL_MESSAGES[writer.refusal_code],
                      {"Retry_After": str(max(1, round(application.config.flush_interval * 2)))})
    return read, None


def count(telemetry, parsed):
    for counter, amount in (("rtcscope_samples_accepted_total", parsed.accepted),
                            ("rtcscope_values_dropped_total", parsed.dropped),
                            ("rtcscope_samples_restamped_total", parsed.restamped)):
        if amount:  # usually only the first: a counter update costs about a microsecond
            telemetry.inc(counter, amount)


@tornado.web.stream_request_body
class WriteHandler(APIHandler):
    """Bodies are streamed so an oversized one gets a JSON 413, not a dropped connection."""

    quiet_success = True  # no access-log line per accepted post (see Application.log_request)
    max_calls = None  # calls one request may hold: --max-calls-per-request
    paths = frozenset({"/v1/stats/write", "/v1/stats/write/"})  # those of default_handlers, for `stored_write`

    # How this route's posts are read and answered, by WriteHandler and StoredWrite alike
    # (`post`: either, for its application and request).

    @staticmethod
    def key_refusal_of(application, request):
        return ingest_key_refusal(application, request)

    @staticmethod
    def read(post, body, now_ns):
        """(the post's points, a formats.Parsed; what `answer` tells of it); IngestError for a body to refuse."""
        parsed = parse_post(post, body, now_ns)
        return parsed, parsed

    @staticmethod
    def answer(telemetry, parsed):
        """The answer to a stored post, its counters counted."""
        count(telemetry, parsed)
        return {"success": True, "accepted": parsed.accepted, "dropped": parsed.dropped,
                "restamped": parsed.restamped, "events": parsed.events}

    def initialize(self, refusal=None):
        """`refusal`: what `store` answered StoredWrite, for this handler to send."""
        self._chunks = []
        self._size = 0
        self._too_large = False
        self._refusal = refusal

    def set_default_headers(self):
        super().set_default_headers()
        for name, value in cors_headers(self.application.config.cors_origins, self.request.headers.get("Origin")):
            self.set_header(name, value)

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
        return self.key_refusal_of(self.application, self.request)

    def origin_refusal(self):
        return origin_refusal(self.application.config.cors_origins, self.request.headers.get("Origin"))

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
        if self._too_large:
            return self.fail_too_large()
        refusal = self._refusal
        if refusal is None:
            read, refusal = store(self, b"".join(self._chunks), type(self))
        if refusal:
            status, code, message, headers = refusal
            return self.refuse(status, code, message, **headers)
        if self.application.writer.sync_each:  # --wal-fsync=always: answered once on disk (a coroutine only then)
            return self._answer_when_durable(read)
        self.write_json(self.answer(self.application.telemetry, read))

    async def _answer_when_durable(self, read):
        if not await self.application.writer.durable():
            return self.refuse(503, "wal_unavailable", REFUSAL_MESSAGES["wal_unavailable"], Retry_After="1")
        self.write_json(self.answer(self.application.telemetry, read))


class StoredWrite(httputil.HTTPMessageDelegate):
    """A post served below RequestHandler, whose per-request machinery (its headers object,
    output transforms, flush and finish chain, log) cost about as much as everything
    ingest does with a one-sample post (docs/PERFORMANCE.md). Taken only by posts that
    `stored_write` found eligible; the body is read whole, then `store`d as its route
    (WriteHandler or a subclass) reads it: stored, the 200 is written here, with the
    headers the route would send; refused, the request goes on to the route with the
    refusal to answer."""

    __slots__ = ("application", "request", "route", "start_line", "chunks")

    def __init__(self, application, request, route):
        self.application = application
        self.request = request
        self.route = route
        self.start_line = None
        self.chunks = []

    def headers_received(self, start_line, headers):
        self.start_line = start_line
        # Tornado would time the body with a Task and a timer of its own; `close_stalled_posts`
        # keeps the same deadline (--client-timeout) with one sweep for every post.
        self.request.connection.set_body_timeout(None)
        self.application.posts_reading[self] = time.monotonic()

    def data_received(self, chunk):
        self.chunks.append(chunk)

    def on_connection_close(self):
        self.application.posts_reading.pop(self, None)
        self.chunks = None

    def finish(self):
        application, request, route = self.application, self.request, self.route
        del application.posts_reading[self]
        try:
            read, refusal = store(self, b"".join(self.chunks), route)
        except Exception:  # a fault of the server's own, before anything was stored: the route meets it
            return self.hand_over(None)  # again and answers 500, as for any handler
        if refusal is not None:
            return self.hand_over(refusal)
        application.count_request(route.__name__, 200)
        body = orjson.dumps(route.answer(application.telemetry, read))
        headers = httputil.HTTPHeaders()
        # Later ones win, as in WriteHandler's answer, where SecurityHeaders only adds what is missing.
        for name, value in (*SECURITY_HEADERS, SERVER_HEADER, ("Date", http_date(int(time.time()))),
                            *API_HEADERS, *cors_headers(application.config.cors_origins, request.headers.get("Origin")),
                            ("Content-Length", str(len(body)))):
            headers[name] = value
        request.connection.write_headers(OK, headers, body)
        request.connection.finish()

    def hand_over(self, refusal):
        """The request goes on to its route, which answers `refusal` (None: it stores the body itself)."""
        handler = self.application.get_handler_delegate(self.request, self.route, {"refusal": refusal})
        handler.headers_received(self.start_line, self.request.headers)
        if refusal is None:
            handler.data_received(b"".join(self.chunks))
        handler.finish()


def close_stalled_posts(application, timeout):
    """Hang up on stored posts whose body has not all come within `timeout` s (--client-timeout),
    as Tornado does with the bodies it times: the oldest are first in `posts_reading`."""
    reading, stalled_since = application.posts_reading, time.monotonic() - timeout
    for post, since in list(reading.items()):
        if since > stalled_since:
            return
        del reading[post]
        post.request.connection.close()


def stored_routes(*routes):
    """{path: route} of the WriteHandler classes whose posts StoredWrite may answer."""
    return {path: route for route in routes for path in route.paths}


def stored_write(application, request, routes):
    """The StoredWrite for a request that can be answered by one, else None (it is routed to
    its handler): a post to one of `routes` (`stored_routes`) with its length given, within
    --max-body, from an allowed origin with a valid key where keys are needed, and no answer
    that must wait for the disk (--wal-fsync=always) nor an access-log line (logging at debug level)."""
    route = routes.get(request.path) if request.method == "POST" else None
    if route is None:
        return None
    length = request.headers.get("Content-Length")
    if length is None or not length.isdigit() or int(length) > application.config.max_body or \
            application.writer.sync_each or access_log.isEnabledFor(logging.DEBUG) or \
            origin_refusal(application.config.cors_origins, request.headers.get("Origin")) or \
            route.key_refusal_of(application, request):
        return None
    return StoredWrite(application, request, route)


default_handlers = [
    (r"/v1/stats/write/?", WriteHandler),
]
