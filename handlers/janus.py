"""POST /v1/integrations/janus/: what Janus's sample event handler posts (docs/integrations.md).

The flow is POST ingest's (handlers/ingest.py), a stored post answered by its
StoredWrite as there: the whole body is read first, the abuse limits apply to the
Janus instance as to any client (its address), and a 200 is sent once the points
are in the write-ahead log. Janus resends a post only when it could not connect;
a 4xx or 5xx answer loses that post.
"""
import base64
import binascii
import zlib

import tornado.web

from rtcscope.ingest import janus
from rtcscope.ingest.formats import IngestError

from .base import ingest_key_refusal
from .ingest import WriteHandler, count

# Janus groups at most 100 events in one post (janus_sampleevh.c), so at most 100
# calls: it cannot split a post, and refusing one loses it.
MAX_CALLS_PER_POST = 100


def basic_password(request):
    """The password of `Authorization: Basic`, which Janus sends with backend_user/backend_pwd."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def gunzip(body, limit):
    """A body Janus compressed (`compress = true`), of at most `limit` bytes once decompressed."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        text = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise IngestError(f"body is not valid gzip: {exc}") from None
    if len(text) > limit:
        raise IngestError(f"body larger than {limit} bytes once decompressed", 413, "body_too_large")
    return text


@tornado.web.stream_request_body
class JanusEventsHandler(WriteHandler):
    max_calls = MAX_CALLS_PER_POST
    paths = frozenset({"/v1/integrations/janus", "/v1/integrations/janus/"})

    @staticmethod
    def key_refusal_of(application, request):
        return ingest_key_refusal(application, request, basic_password(request))

    @staticmethod
    def read(post, body, now_ns):
        app = post.application
        if post.request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gunzip(body, app.config.max_body)
        outcome = janus.parse(body, now_ns, app.ingest_limits, app.janus_peers)
        return outcome.parsed, outcome

    @staticmethod
    def answer(telemetry, outcome):
        for name, events in outcome.types.items():
            telemetry.inc("rtcscope_janus_events_total", events, type=name)
        for reason, events in outcome.skipped.items():
            telemetry.inc("rtcscope_janus_events_skipped_total", events, reason=reason)
        parsed = outcome.parsed
        count(telemetry, parsed)
        return {"success": True, "accepted": parsed.accepted, "restamped": parsed.restamped, "ends": parsed.events,
                "events": sum(outcome.types.values()), "skipped": sum(outcome.skipped.values())}


default_handlers = [
    (r"/v1/integrations/janus/?", JanusEventsHandler),
]
