"""Base handlers: JSON in and out, JSON errors, never a traceback."""
import http.client

import orjson
import tornado.web

from rtcscope import registry
from rtcscope.ingest import FIELD_RE
from rtcscope.store import StoreError



async def find_metric(store, name):
    """A registry metric (name or alias) or a field clients stored; None otherwise.
    The REST queries, the graph websocket and the pages resolve names alike."""
    if not FIELD_RE.fullmatch(name):
        return None
    metric = registry.lookup(name)
    if metric is None and name in await store.field_names():
        metric = registry.stored_field(name)
    return metric


class APIHandler(tornado.web.RequestHandler):
    """Every /v1/* answer is JSON, errors included: {"error": {"code", "message"}}."""

    @property
    def store(self):
        return self.application.store

    @property
    def writer(self):
        return self.application.writer

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

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
