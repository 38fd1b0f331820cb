"""The pages: server-side templates whose scripts draw live graphs.

Templates carry what the server already knows (the metric registry, the page's
metric or call); the scripts in static/js/ fetch the data over REST and the
graph websocket, so a page keeps changing without a reload."""
import orjson
import tornado.web

from rtcscope import registry
from rtcscope.dimensions import BUILTIN_DIMENSIONS
from rtcscope.storage.schema import IDENTIFIER_CHARS, IDENTIFIER_MAX, IDENTIFIER_PUNCTUATION
from rtcscope.storage.store import StoreError

from .base import CALL_PATTERN, find_metric

# The identifier rule as the pages use it: the characters of a JavaScript RegExp class, and the
# whole rule for an HTML `pattern` attribute (compiled with the `v` flag, where {, } and - are syntax).
IDENTIFIER_RULE_FOR_PAGES = {
    "identifier_chars": IDENTIFIER_CHARS,
    "identifier_max": IDENTIFIER_MAX,
    "identifier_pattern": "[A-Za-z0-9" + "".join("\\" + c if c in "{}-" else c for c in IDENTIFIER_PUNCTUATION)
                          + f"]{{1,{IDENTIFIER_MAX}}}",
}


class PageHandler(tornado.web.RequestHandler):
    """HTML pages, and HTML error pages (a 404 for an unknown metric or call)."""

    def page(self, template, page_name="", **values):
        """Render with the registry embedded (units, descriptions) so scripts need not fetch it."""
        metrics = orjson.dumps([metric.as_json() for metric in registry.all_metrics()]).decode()
        self.render(template, page_name=page_name, metrics_json=metrics.replace("</", "<\\/"),
                    **IDENTIFIER_RULE_FOR_PAGES, **values)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = "Something went wrong on the server."
        if isinstance(exc, StoreError):
            status_code, message = 503, "InfluxDB is unavailable; try again in a moment."
            self.set_status(503)
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.page("error.html", status=status_code, message=message)


class RootHandler(PageHandler):
    def get(self):
        self.redirect("/dashboard")


class DashboardHandler(PageHandler):
    def get(self):
        """With the dimensions a filter or a breakdown can name: the built-in ones and the peer tags."""
        names = orjson.dumps(BUILTIN_DIMENSIONS + tuple(self.application.config.peer_tags)).decode()
        self.page("dashboard.html", "dashboard", dimensions_json=names)


class GraphPageHandler(PageHandler):
    async def get(self, metric):
        found = await find_metric(self.application.store, metric)
        if found is None:
            raise tornado.web.HTTPError(404, "There is no metric called %s.", metric)
        self.page("graph.html", "graph", metric=found.as_json())


class CallPageHandler(PageHandler):
    async def get(self, call):
        state = (await self.application.load_calls(call=call)).get(call)
        if state is None:
            raise tornado.web.HTTPError(404, "No call %s has been seen within the retention period.", call)
        self.page("call.html", "call", call=call)


default_handlers = [
    (r"/", RootHandler),
    (r"/dashboard/?", DashboardHandler),
    (r"/graph/(?P<metric>[^/]{1,128})/?", GraphPageHandler),
    (rf"/calls/{CALL_PATTERN}/?", CallPageHandler),
]
