"""The client library at /rtcscope.js and the /demo loopback call that uses it."""
import tornado.web

from .pages import PageHandler

CLIENT_SCRIPT = "rtcscope.js"
CLIENT_CACHE_SECONDS = 3600


class ClientScriptHandler(tornado.web.StaticFileHandler):
    """static/rtcscope.js at the short URL other sites embed.

    The URL carries no version, so caches keep it an hour and then revalidate
    with its ETag; `Access-Control-Allow-Origin: *` lets pages on other
    origins import it as an ES module."""

    def initialize(self):
        super().initialize(path=self.settings["static_path"])

    async def get(self, include_body=True):
        await super().get(CLIENT_SCRIPT, include_body)

    async def head(self):
        await self.get(include_body=False)

    def get_content_type(self):
        return "text/javascript; charset=utf-8"

    def get_cache_time(self, path, modified, mime_type):
        return CLIENT_CACHE_SECONDS

    def set_extra_headers(self, path):
        self.set_header("Cache-Control", f"public, max-age={CLIENT_CACHE_SECONDS}")
        self.set_header("Access-Control-Allow-Origin", "*")


class DemoHandler(PageHandler):
    """A WebRTC loopback call in one page, monitored with the client library."""

    def get(self):
        self.page("demo.html", page_name="demo")


default_handlers = [
    (r"/rtcscope\.js", ClientScriptHandler),
    (r"/demo/?", DemoHandler),
]
