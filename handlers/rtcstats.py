"""WebSocket /rtcstats/<meeting path>: Jitsi Meet's rtcstats client, as it is.

The protocol lives in rtcscope/ingest/rtcstats.py; this handler checks the
key and origin like POST ingest, stores what a message makes through the
same writer, and acknowledges it once the writer took it."""
import logging
import time

import orjson

from rtcscope.ingest.rtcstats import (
    CONFERENCE_LEFT,
    Refused,
    check_subprotocol,
    choose_subprotocol,
    connection_arguments,
)
from rtcscope.storage.schema import IDENTIFIER_RE, IDENTIFIER_RULE
from rtcscope.storage.store import StoreError

from .base import IngestSocket, client_dimensions, ingest_client, ingest_key_refusal

log = logging.getLogger("rtcscope.rtcstats")

# Close codes: the client reconnects after these (with backoff), except 3001/3002.
CLOSE_TRY_LATER = 1013
CLOSE_REPLACED = 3002  # a newer connection of the same session took over: this one must not come back


def now_ms():
    return time.time() * 1000


class RtcstatsSocket(IngestSocket):
    """One rtcstats client connection (one statsSessionId at a time). Pinged
    like every websocket here (the application's websocket_ping_* settings)."""

    quiet_success = True  # counted in /metrics, not logged per connection

    @property
    def max_message_size(self):
        return self.application.config.max_body

    @property
    def telemetry(self):
        return self.application.telemetry

    def initialize(self):
        self.session = None
        self.refusing = False

    def prepare(self):
        """Before the upgrade: the ingest key (?key=) and the session id; a refusal is a JSON 4xx."""
        self.meeting, self.arguments = connection_arguments(self.path_kwargs.get("meeting") or "",
                                                            self.request.query_arguments)
        if "key" in self.arguments:  # the key as taken apart from the rest of the query
            self.request.query_arguments["key"] = [self.arguments["key"].encode()]
        refusal = ingest_key_refusal(self.application, self.request)
        session_id = self.arguments.get("statsSessionId", "")
        if refusal is None and not IDENTIFIER_RE.fullmatch(session_id):
            refusal = (400, "bad_request", f"statsSessionId must be {IDENTIFIER_RULE}")
        if refusal:
            self.refuse_upgrade(*refusal)

    def select_subprotocol(self, subprotocols):
        return choose_subprotocol(subprotocols)

    async def open(self, meeting):  # the meeting as taken apart in prepare
        try:
            check_subprotocol(self.selected_subprotocol)
        except Refused as refused:
            self.telemetry.inc("rtcscope_ingest_refused_total", reason="unsupported_protocol")
            return self.close(refused.code, refused.reason)
        sessions = self.application.rtcstats_sessions
        session_id = self.arguments["statsSessionId"]
        is_reconnect = self.arguments.get("isReconnect") == "true"
        try:
            session, previous = await sessions.attach(session_id, self.meeting, is_reconnect, self, now_ms())
        except StoreError as exc:
            return self.close(CLOSE_TRY_LATER, f"InfluxDB is unavailable ({exc}); reconnect later"[:120])
        if self.ws_connection is None:  # the client left while InfluxDB was asked
            sessions.detach(session, self, now_ms())
            return
        self.session = session
        session.extractor, session.client = self.application.dimensions, client_dimensions(self)
        if previous is not None:
            previous.close(CLOSE_REPLACED, "a newer connection of this session took over")
        self.write_message(orjson.dumps({"type": "sn", "body": {"value": session.sn, "state": "initial"}}))

    def on_message(self, message):
        if self.session is None or self.refusing:
            return
        self.telemetry.inc("rtcscope_rtcstats_messages_total")
        outcome = self.session.receive(message, now_ms())
        if outcome.dropped:
            self.telemetry.inc("rtcscope_rtcstats_dropped_total", reason=outcome.dropped)
        if outcome.untyped:
            self.telemetry.inc("rtcscope_rtcstats_stats_incomplete_total", outcome.untyped)
        if outcome.lines:
            refusal = outcome.parsed and self.application.admission.admit(ingest_client(self.request),
                                                                          outcome.parsed.calls)
            if refusal:
                # Not acknowledged (nothing stored): the client comes back after its backoff and resends it.
                self.application.ingest_limits.feed.forget(outcome.parsed.sent_dimensions)
                self.refusing = True
                self.telemetry.inc("rtcscope_ingest_refused_total", reason=refusal.code)
                return self.close(CLOSE_TRY_LATER, refusal.message[:120])
            if not self.application.writer.submit(outcome.lines):
                # Not acknowledged: the client resends it, and what follows, once reconnected.
                if outcome.parsed:
                    self.application.ingest_limits.feed.forget(outcome.parsed.sent_dimensions)
                self.refusing = True
                self.telemetry.inc("rtcscope_ingest_refused_total", reason=self.application.writer.refusal_code)
                return self.close(CLOSE_TRY_LATER, "the write-ahead log is full; reconnect later")
            if outcome.parsed and outcome.parsed.accepted:
                self.telemetry.inc("rtcscope_samples_accepted_total", outcome.parsed.accepted)
        self.session.commit(outcome)
        if outcome.sn is not None:
            if self.application.writer.sync_each:  # --wal-fsync=always: acknowledged once on disk
                return self._acknowledge_when_durable()
            self._acknowledge()

    async def _acknowledge_when_durable(self):
        """Tornado reads the next message only once this returns, so acks stay in order."""
        if await self.application.writer.durable():
            self._acknowledge()

    def _acknowledge(self):
        if self.ws_connection is not None:
            self.write_message(orjson.dumps({"type": "sn", "body": {"value": self.session.sn, "state": "ongoing"}}))

    def on_close(self):
        session = self.session
        if session is None or not self.application.rtcstats_sessions.detach(session, self, now_ms()):
            return
        code = self.close_code
        lines = session.closed_lines(code, now_ms())
        writer = self.application.writer
        if lines and not writer.submit(lines):
            if not writer.stopping:
                log.warning("session %s closed (%s) while the write-ahead log was full: its end or disconnect "
                            "marker is not stored", session.session_id, code)
        elif lines and code == CONFERENCE_LEFT:
            session.ended = True
        if code == CONFERENCE_LEFT:
            self.application.rtcstats_sessions.finish(session)


default_handlers = [
    # Jitsi appends "/<meeting>" to the configured endpoint: a trailing slash there gives "//",
    # a key there (?key=K) leaves the path at /rtcstats.
    (r"/rtcstats(?P<meeting>(?:/.*)?)", RtcstatsSocket),
]
