"""Base handlers: JSON in and out, JSON errors, never a traceback."""
import http.client
import re
from urllib.parse import urlencode

import orjson
import tornado.web
import tornado.websocket

from rtcscope import registry
from rtcscope.dimensions import known_dimensions
from rtcscope.ingest.limits import client_key
from rtcscope.storage.schema import FIELD_RE, IDENTIFIER_CHARS, IDENTIFIER_MAX
from rtcscope.storage.store import StoreError
from rtcscope.timeparse import parse_duration, parse_time_ms

MAX_RANGE_SECONDS = 400 * 86400
# How far back the call and alert lists look without `since`: the window of the detector's ended-call index.
DEFAULT_SINCE = "24h"
# Call ids in URL paths: tornado matches routes on the raw path, so
# decode_path_ids() turns %-escapes of identifier characters into the
# characters before routing (/v1/calls/room%3A1/ is the call room:1), and
# the routes match the identifier itself. "." stays encoded: a decoded
# "%2E%2E" would be a path step. An escape of anything else cannot be part
# of a call id and leaves the path unmatched: a 404, as for an unknown call.
CALL_PATTERN = f"(?P<call>[{IDENTIFIER_CHARS}]{{1,{IDENTIFIER_MAX}}})"
_ENCODED_ID_CHARACTER = re.compile(r"%(3[0-9A]|40|[46][1-9A-F]|[57][0-9A]|2D|5F|7[BD])", re.IGNORECASE)


def decode_path_ids(path):
    """`path` with %-escapes of identifier characters decoded."""
    if "%" not in path:
        return path
    return _ENCODED_ID_CHARACTER.sub(lambda match: chr(int(match.group(1), 16)), path)


async def find_metric(store, name):
    """A registry metric (name or alias) or a field clients stored; None otherwise.
    The REST queries, the graph websocket and the pages resolve names alike."""
    if not FIELD_RE.fullmatch(name):
        return None
    metric = registry.lookup(name)
    if metric is None and name in await store.field_names():
        metric = registry.stored_field(name)
    return metric


# What every /v1/* answer carries, and every answer at all (SecurityHeaders).
API_HEADERS = (("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store"),
               ("X-Content-Type-Options", "nosniff"))
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("X-Frame-Options", "DENY"))


class APIHandler(tornado.web.RequestHandler):
    """Every /v1/* answer is JSON, errors included: {"error": {"code", "message"}}."""

    @property
    def store(self):
        return self.application.store

    @property
    def writer(self):
        return self.application.writer

    def set_default_headers(self):
        for name, value in API_HEADERS:
            self.set_header(name, value)

    def write_json(self, document, status=200):
        self.set_status(status)
        self.finish(orjson.dumps(document))

    def fail(self, status, code, message, **headers):
        """Answer an error the client caused (or must wait out)."""
        for name, value in headers.items():
            self.set_header(name.replace("_", "-"), value)
        self.write_json({"error": {"code": code, "message": message}}, status)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, StoreError):
            status_code = 503
            self.set_status(503)
            self.set_header("Retry-After", "5")
            message = f"InfluxDB is unavailable: {exc}"
            return self.finish(orjson.dumps({"error": {"code": "influxdb_unavailable", "message": message}}))
        message = http.client.responses.get(status_code, "error")
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                400: "bad_request"}.get(status_code, "server_error" if status_code >= 500 else "error")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(orjson.dumps({"error": {"code": code, "message": message}}))

    def argument(self, name, default=None):
        """A query argument as text; repeated arguments are a client error."""
        values = self.get_query_arguments(name)
        if len(values) > 1:
            raise tornado.web.HTTPError(400, "parameter %s given more than once", name)
        return values[0] if values else default

    def since_argument(self):
        """`since` (default DEFAULT_SINCE) in seconds: how far back a list looks."""
        since = parse_duration(self.argument("since", DEFAULT_SINCE))
        if not since:
            raise tornado.web.HTTPError(400, "since must be a duration like 30m, 24h or 7d")
        return since

    def range_arguments(self, now_ms):
        """`start` and `end` (default now) as Unix ms, start before end by at most 400 days."""
        start = parse_time_ms(self.argument("start"), now_ms)
        end = parse_time_ms(self.argument("end", "now"), now_ms)
        if start is None or end is None:
            raise tornado.web.HTTPError(400, "start and end must be RFC 3339, Unix ms or now")
        if not 0 < end - start <= MAX_RANGE_SECONDS * 1000:
            raise tornado.web.HTTPError(400, "end must be after start, by at most 400 days")
        return start, end

    async def metric_argument(self, parameter="type"):
        """A metric-name parameter as a registry metric, or a stored field; 400/404 otherwise."""
        name = self.argument(parameter)
        if not name:
            raise tornado.web.HTTPError(400, "parameter %s (a metric name) is required", parameter)
        if not FIELD_RE.fullmatch(name):
            raise tornado.web.HTTPError(400, "%s must be a metric name like rtt", parameter)
        metric = await find_metric(self.store, name)
        if metric is None:
            raise tornado.web.HTTPError(404, "unknown metric %s; see /v1/metrics/", name)
        return metric

    @property
    def known_dimensions(self):
        """The dimension names this server knows: the built-in ones and its --peer-tags."""
        return known_dimensions(self.application.config.peer_tags)

    def dimension_argument(self, parameter):
        """A required parameter naming a dimension; 400 listing the known ones otherwise."""
        name = self.argument(parameter)
        if name is None:
            raise tornado.web.HTTPError(400, "parameter %s (a dimension) is required; known: %s", parameter,
                                        ", ".join(self.known_dimensions))
        self.check_dimension(name)
        return name

    def check_dimension(self, name):
        if name not in self.known_dimensions:
            raise tornado.web.HTTPError(400, "unknown dimension %s; known: %s", name[:64],
                                        ", ".join(self.known_dimensions))

    async def known_call(self, call):
        """The call's current state, or a 404."""
        state = (await self.application.load_calls(call=call)).get(call)
        if state is None:
            raise tornado.web.HTTPError(404, "unknown call %s", call)
        return state


class NotFoundHandler(APIHandler):
    """JSON 404 for unknown /v1/ paths."""

    def prepare(self):
        self.fail(404, "not_found", f"no such endpoint: {self.request.path}")


# --- access: ingest keys, the read token, origins, security headers -------------

TOKEN_COOKIE = "rtcscope_token"
# Open without the read token: probes, ingest (it has its own keys; the
# rtcstats websocket too), the client library and its demo, and static
# assets (no data in them).
# Exact paths: a prefix would open /v1/stats/write<anything>/, a call's stats.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v1/stats/write", "/v1/stats/write/", "/rtcscope.js", "/demo",
                        "/demo/", "/favicon.ico", "/rtcstats", "/v1/integrations/janus", "/v1/integrations/janus/"})
OPEN_PREFIXES = ("/static/", "/rtcstats/")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def bearer_token(request):
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _query_value(request, name):
    values = request.query_arguments.get(name)
    return values[-1].decode("utf-8", "replace") if values else None


def ingest_key_refusal(application, request, key=None):
    """None when ingest is open or the request carries a valid key
    (`Authorization: Bearer K`, or `?key=K` for sendBeacon; `key` when the
    caller found one elsewhere); else (status, code, message)."""
    keys = application.ingest_keys
    if not keys.enabled:
        return None
    key = key or bearer_token(request) or _query_value(request, "key")
    if not key:
        return 401, "unauthorized", "an ingest key is required: Authorization: Bearer KEY or ?key=KEY"
    if not keys.matches(key):
        return 403, "forbidden", "the ingest key is not valid"
    return None


def ingest_client(request):
    """Who a request's new calls are counted against: its address (nginx's
    X-Real-IP with --xheaders), an IPv6 one per /64. Ingest keys do not
    change it: a browser key is shared by every user of a site."""
    return client_key(request.remote_ip or "")


def client_dimensions(handler):
    """What an ingest request or websocket upgrade tells of its client's dimensions: browser
    and OS from its User-Agent, country and asn from its address as the abuse limits see it."""
    request = handler.request
    return handler.application.dimensions.client(request.headers.get("User-Agent"), request.remote_ip)


def is_websocket(request):
    return request.headers.get("Upgrade", "").lower() == "websocket"


def read_access(application, request):
    """How a request stands with the read token: "open", "granted", "grant"
    (a valid ?token= on a page: set the cookie), or (status, code, message)."""
    tokens = application.read_tokens
    path = request.path
    if not tokens.enabled or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or (
            path == "/metrics" and not application.config.protect_metrics):
        return "open"
    header, cookie = bearer_token(request), request.cookies.get(TOKEN_COOKIE)
    query = _query_value(request, "token")
    for source, candidate in (("header", header), ("cookie", cookie and cookie.value), ("query", query)):
        if candidate and tokens.matches(candidate):
            page_load = request.method in ("GET", "HEAD") and not is_websocket(request)
            return "grant" if source == "query" and page_load else "granted"
    if header or query or cookie:
        return 403, "forbidden", "the read token is not valid"
    return 401, "unauthorized", "a read token is required: open the page with ?token=TOKEN, " \
                                "or send Authorization: Bearer TOKEN"


# What an ingest-only process (--detector=false) answers on a route that needs the
# detector's memory (handlers with `needs_detector`): the request reached the wrong
# process, not a busy one, so there is nothing to retry here.
NO_DETECTOR = {"status": 421, "code": "no_detector",
               "message": "this process takes ingest only (--detector=false); live calls, graphs and the "
                          "call list are served by the processes that run the call detector"}


class AccessDeniedHandler(APIHandler):
    """Answers every method of a request this process refuses before routing it: no valid
    read token, or a route that needs the detector in a process without one."""

    def initialize(self, status, code, message):
        self.refusal = (status, code, message)

    def prepare(self):
        status, code, message = self.refusal
        if status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="rtcscope"')
        self.fail(status, code, message)


class TokenCookieHandler(tornado.web.RequestHandler):
    """A page opened with a valid ?token=: keep the token in an HttpOnly
    cookie and reload the page without it, so it stays out of the address
    bar, the history and Referer headers."""

    def prepare(self):
        token = _query_value(self.request, "token")
        self.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Lax",
                        secure=self.request.protocol == "https", expires_days=30)
        query = [(name, value) for name, values in self.request.query_arguments.items() if name != "token"
                 for value in values]
        self.redirect(self.request.path + ("?" + urlencode(query) if query else ""))


class SecurityHeaders(tornado.web.OutputTransform):
    """Headers every answer carries; pages get a Content-Security-Policy
    that allows only this origin's scripts, styles and connections. The
    client demo is a sample to copy onto other sites and shows no data: it
    is left without one."""

    def __init__(self, request):
        self.path = request.path

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        for name, value in SECURITY_HEADERS:
            headers.setdefault(name, value)
        if headers.get("Content-Type", "").startswith("text/html") and not self.path.startswith("/demo"):
            headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return status_code, headers, chunk


class IngestSocket(tornado.websocket.WebSocketHandler):
    """What the websocket ingest paths (rtcscope.js's, rtcstats) share: a refused
    upgrade answers JSON like POST ingest, and the ingest origin allow-list applies."""

    def refuse_upgrade(self, status, code, message):
        self.application.telemetry.inc("rtcscope_ingest_refused_total", reason=code)
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(orjson.dumps({"error": {"code": code, "message": message}}))

    def check_origin(self, origin):
        """Cross-origin pages are the normal case: the ingest allow-list (--cors-origins) decides."""
        allowed = self.application.config.cors_origins
        if "*" in allowed or origin in allowed:
            return True
        self.application.telemetry.inc("rtcscope_ingest_refused_total", reason="origin_not_allowed")
        return False
