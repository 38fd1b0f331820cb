"""Importing files people already have: chrome://webrtc-internals dumps.

POST /v1/import/webrtc-internals?call=ID takes a dump (plain or gzip) of up
to --max-import bytes. The body is spooled to a temporary file as it
arrives and parsed once from there, in a worker thread so that ingest keeps
being answered meanwhile; nothing is buffered unless the whole dump is good.
The read token guards both routes (Application.find_handler); ingest keys
do not apply: importing is an operator's action. The new-call limits of
ingest (rtcscope/ingest/limits.py) do: without a read token anyone may
import."""
import tempfile
import time

import tornado.ioloop
import tornado.web

from rtcscope.ingest.formats import IngestError
from rtcscope.ingest.webrtc_internals import parse_dump
from rtcscope.storage.schema import IDENTIFIER_RE, IDENTIFIER_RULE

from .base import APIHandler, ingest_client
from .ingest import REFUSAL_MESSAGES
from .pages import PageHandler

# A 64 MiB upload on a slow link takes minutes; the server's body timeout is for ingest posts.
IMPORT_BODY_TIMEOUT_S = 600
# How long the ended-call index waits for an import to reach it; meanwhile /v1/calls/ asks InfluxDB.
IMPORT_LISTED_WITHIN_MS = 30_000


@tornado.web.stream_request_body
class WebRTCInternalsImportHandler(APIHandler):
    def initialize(self):
        self._spool = None
        self._size = 0
        self._too_large = False
        self._holds_slot = False
        self._parsing = False

    def prepare(self):
        """The call id, the size, the new-call limits and a free import slot are checked before the body is read."""
        if self.request.method != "POST":
            return
        app = self.application
        max_import = app.config.max_import
        call = self.argument("call")
        if not call:
            return self.refuse(400, "missing_call", "parameter call (the id to import the dump as) is required")
        if not IDENTIFIER_RE.fullmatch(call):
            return self.refuse(400, "bad_call", f"call must be {IDENTIFIER_RULE}")
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_import:
            return self.fail_too_large()
        refusal = app.admission.admit(ingest_client(self.request), {call})
        if refusal:  # the new-call limits of every ingest path, before the body is read
            retry = {"Retry_After": str(refusal.retry_after)} if refusal.retry_after else {}
            return self.refuse(refusal.status, refusal.code, refusal.message, **retry)
        if app.imports_running >= app.config.max_imports:
            return self.refuse(503, "imports_busy", "other imports are being read; retry shortly", Retry_After="5")
        app.imports_running += 1
        self._holds_slot = True
        # A body without Content-Length found too large while read is read on and dropped, then
        # answered with a 413 (as ingest does, up to 4 times the limit); beyond that Tornado cuts it off.
        self.request.connection.set_max_body_size(4 * max_import)
        self.request.connection.set_body_timeout(IMPORT_BODY_TIMEOUT_S)
        self._spool = tempfile.TemporaryFile(prefix="rtcscope-import-")

    def on_finish(self):
        self._release()

    def on_connection_close(self):
        if not self._parsing:  # the worker thread still reads the spool; post() releases it after
            self._release()

    def _release(self):
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._holds_slot:
            self._holds_slot = False
            self.application.imports_running -= 1

    def data_received(self, chunk):
        if self._too_large or self._spool is None:
            return
        self._size += len(chunk)
        if self._size > self.application.config.max_import:
            self._too_large = True
            self._spool.truncate(0)
        else:
            self._spool.write(chunk)

    def refuse(self, status, code, message, **headers):
        """Answer an error, counted in /metrics with ingest's refusals: nothing of this dump is stored."""
        self.application.telemetry.inc("rtcscope_ingest_refused_total", reason=code)
        self.fail(status, code, message, **headers)

    def fail_too_large(self):
        self.refuse(413, "dump_too_large", f"the dump is larger than {self.application.config.max_import} bytes "
                                         "(--max-import)")

    async def post(self):
        app = self.application
        if self._too_large:
            return self.fail_too_large()
        if not self._size:
            return self.refuse(400, "empty_body", "empty body: send the dump that chrome://webrtc-internals saved")
        retention_s = app.config.retention_limit
        now_ms = int(time.time() * 1000)
        self._spool.seek(0)
        self._parsing = True
        try:
            imported = await tornado.ioloop.IOLoop.current().run_in_executor(
                None, parse_dump, self._spool, self.argument("call"), now_ms,
                retention_s * 1000 if retention_s else None, app.ingest_limits.max_skew_ns // 1_000_000,
                app.config.max_import)
        except IngestError as exc:
            return self.refuse(exc.status, exc.code, exc.message)
        finally:
            self._parsing = False
            self._release()
        lines = imported.parsed.lines
        if len(lines) > app.writer.max_buffer:
            return self.refuse(413, "dump_too_many_points", f"the dump makes {len(lines)} points, more than the "
                             f"write buffer holds ({app.writer.max_buffer}, --max-buffer)")
        # The peers' dimensions: the dump's User-Agent and routes (no country: the importer is not the caller).
        lines += imported.dimension_lines(self.argument("call"), app.dimensions.client(imported.user_agent, None))
        # Last, so InfluxDB has the call's points when a detector reads it: every process lists it as ended.
        lines.append(app.ingest_limits.feed.imported(self.argument("call"), time.time_ns()))
        if app.detector is not None:  # an ingest-only process lists no calls; the feed row tells those that do
            app.detector.ended_calls.expect_import(self.argument("call"),
                                                   int(time.time() * 1000) + IMPORT_LISTED_WITHIN_MS)
        if not app.writer.submit(lines):
            return self.refuse(503, app.writer.refusal_code, REFUSAL_MESSAGES[app.writer.refusal_code], Retry_After="5")
        if not await app.writer.durable():  # --wal-fsync=always: answered once on disk
            return self.refuse(503, "wal_unavailable", REFUSAL_MESSAGES["wal_unavailable"], Retry_After="5")
        app.telemetry.inc("rtcscope_samples_accepted_total", imported.parsed.accepted)
        self.write_json({"call": self.argument("call"), "peers": imported.peers, "samples": imported.parsed.accepted,
                         "from": imported.first_ms, "to": imported.last_ms})


class ImportPageHandler(PageHandler):
    def get(self):
        self.page("import.html", "import", max_import=self.application.config.max_import)


default_handlers = [
    (r"/v1/import/webrtc-internals/?", WebRTCInternalsImportHandler),
    (r"/import/?", ImportPageHandler),
]
