"""rtcscope-server: collects WebRTC getStats() metrics into InfluxDB, answers
REST queries over them and pushes live graphs to dashboard pages.

    python server.py --config=conf/rtcscope.conf
"""
import asyncio
import datetime
import functools
import gc
import logging
import os
import signal
import sys
import time
from secrets import token_hex

import tornado.httpserver
import tornado.ioloop
import tornado.web
from tornado.log import access_log
from tornado.options import define, options, parse_command_line, parse_config_file

from handlers import (
    alerts,
    base,
    calls,
    client,
    fleet,
    health,
    imports,
    ingest,
    janus,
    pages,
    rtcstats,
    series,
    stats,
    statsws,
    ws,
)
from rtcscope.alerts.alertmanager import make_receiver
from rtcscope.alerts.delivery import WebhookError, Webhooks
from rtcscope.alerts.rules import RulesError, load_rules
from rtcscope.alerts.service import AlertService
from rtcscope.credentials import Secrets
from rtcscope.diagnosis.live import LiveDiagnosis
from rtcscope.dimensions import known_dimensions
from rtcscope.dimensions.extract import Extractor
from rtcscope.dimensions.geoip import GeoIP, GeoIPError
from rtcscope.dimensions.peer import DEFAULT_MAX_VALUES
from rtcscope.dimensions.tags import DEFAULT_PEER_TAGS
from rtcscope.ingest.formats import Limits
from rtcscope.ingest.janus import JanusPeers
from rtcscope.ingest.limits import CallAdmission
from rtcscope.ingest.rtcstats import Sessions
from rtcscope.live.calls import load_calls
from rtcscope.live.detector import CallDetector
from rtcscope.live.graphs import dumps
from rtcscope.live.history import MAX_ENDED_CALLS
from rtcscope.retry import Backoff
from rtcscope.settings import Settings, SettingsError
from rtcscope.storage.feed import Feed
from rtcscope.storage.store import Store
from rtcscope.storage.wal import WALError, WriteAheadLog
from rtcscope.storage.writer import BatchWriter
from rtcscope.telemetry import Telemetry
from rtcscope.timeparse import parse_duration

log = logging.getLogger("rtcscope")

ROOT = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(__file__)))
HANDLER_MODULES = (ingest, statsws, imports, rtcstats, janus, stats, calls, fleet, alerts, health, series, ws, client, pages)
# The posts answered below RequestHandler when they can be (ingest.StoredWrite), by path.
STORED_ROUTES = ingest.stored_routes(ingest.WriteHandler, janus.JanusEventsHandler)

define("config", type=str, help="config file (Python syntax, option = value); command-line options win")
define("address", default="127.0.0.1", help="address to listen on")
define("port", default=8080, help="port to listen on")
define("influxdb_url", default="http://127.0.0.1:8086", help="InfluxDB 1.x API URL (user:pass@ allowed)")
define("database", default="rtcscope", help="InfluxDB database, created at start if missing")
define("retention", default="30d", help="retention of the database's default policy (e.g. 30d, inf)")
define("tick", default=datetime.timedelta(seconds=1), type=datetime.timedelta,
       help="call detector period")
define("detector", default=True,
       help="run the call detector here (live calls, graphs, the call list, alerts); false: an ingest-only "
            "process, for a fleet whose ingest takes several (see docs/deploying.md)")
define("flush_interval", default=datetime.timedelta(seconds=0.5), type=datetime.timedelta,
       help="longest time an acknowledged sample waits in the buffer")
define("batch_size", default=20_000, help="points per InfluxDB write; a full batch is flushed at once")
define("call_timeout", default=datetime.timedelta(seconds=15), type=datetime.timedelta,
       help="a call with no samples for this long has ended")
define("quality_window", default=datetime.timedelta(seconds=10), type=datetime.timedelta,
       help="the fleet view's quality of a live call is that of its samples of this last stretch")
define("max_skew", default=datetime.timedelta(minutes=5), type=datetime.timedelta,
       help="client timestamps further than this from the server clock are replaced")
define("max_body", default=1024 * 1024, help="largest ingest body in bytes (413 beyond)")
define("max_import", default=64 * 1024 * 1024,
       help="largest chrome://webrtc-internals dump POST /v1/import/webrtc-internals takes, in bytes (413 beyond)")
define("max_imports", default=2, help="dumps one process reads at once (503 with Retry-After beyond)")
define("max_samples", default=10_000, help="most samples in one ingest request (413 beyond)")
define("max_buffer", default=200_000,
       help="points held in memory for the next writes; beyond, they wait in the write-ahead log "
            "(without a log, ingest answers 503 beyond)")
define("wal_dir", default="var/wal",
       help="write-ahead log: a 200 means the points are in it (one directory per process; empty: memory only, "
            "lost on a crash)")
define("wal_fsync", default="1s", help="fsync the log every interval (e.g. 1s, 200ms), or 'always' before every answer")
define("max_wal", default=1024 ** 3, help="bytes the write-ahead log may hold while InfluxDB is slow or down (503 beyond)")
define("spool_dir", default="var/spool",
       help="shutdown spool of versions before the write-ahead log: its files are moved into the log once at start")
define("shutdown_timeout", default=datetime.timedelta(seconds=10), type=datetime.timedelta,
       help="how long shutdown may spend flushing; what is left stays in the write-ahead log")
define("ingest_keys", default="", help="file of accepted ingest keys, one per line (empty: no keys)")
define("cors_origins", default=["*"], multiple=True, help="origins allowed to POST stats (* for any)")
define("ws_origins", default=[], multiple=True, help="extra origins allowed to open graph websockets")
define("ws_max_pending", default=2 * 1024 * 1024,
       help="bytes a graph websocket viewer may leave unread before it is dropped (it reconnects)")
define("graph_lines", default=12,
       help="a live graph of more live calls than this draws the fleet's p50-p95 band and the five worst calls")
define("xheaders", default=False, help="trust X-Forwarded-* / X-Real-Ip from a reverse proxy")
define("max_new_calls", default=120,
       help="new calls one client (an IPv4 address, an IPv6 /64) may start per --new-calls-window (429 beyond)")
define("new_calls_window", default=datetime.timedelta(minutes=1), type=datetime.timedelta,
       help="the period of --max-new-calls: a client's budget refills over it")
define("max_calls_per_request", default=10, help="most distinct calls in one ingest request or message (413 beyond)")
define("max_live_calls", default=50_000,
       help="most live calls in the fleet (as the detector counts them); new calls beyond get 429")
define("max_ended_calls", default=MAX_ENDED_CALLS,
       help="ended calls of the last 24 h held in memory for /v1/calls/ (about 0.6 KB each); "
            "beyond, lists reaching before the oldest held are read from InfluxDB")
define("client_timeout", default=datetime.timedelta(seconds=60), type=datetime.timedelta,
       help="a connection idle this long, or a request body not received within it, is closed")
define("stats_ws", default=True,
       help="accept rtcscope.js's websocket ingest (/v1/stats/ws); off: upgrades are refused and clients POST")
define("event_loop", default="asyncio",
       help="asyncio or uvloop (installed separately; see docs/PERFORMANCE.md for what it changes)")
define("read_token", default="", help="token required to read: pages, REST queries, websockets (empty: open)")
define("read_token_file", default="", help="file of read tokens, one per line, re-read when it changes")
define("protect_metrics", default=False, help="require the read token for /metrics too")
define("alert_rules", default="", help="TOML file of alert rules (empty: the built-in rules; see docs/alerts.md)")
define("alert_webhooks", default=[], multiple=True,
       help="URLs every alert firing and resolution is POSTed to (comma-separated; slack+https://... for Slack)")
define("alert_secret", default="", help="secret of the X-Rtcscope-Signature HMAC-SHA256 of webhook bodies")
define("alert_retry", default=datetime.timedelta(minutes=10), type=datetime.timedelta,
       help="how long an alert's delivery to a receiver is retried")
define("alertmanager_resend", default=datetime.timedelta(minutes=1), type=datetime.timedelta,
       help="how often a firing alert is posted again to alertmanager+http(s):// receivers (its endsAt is "
            "4 of these ahead)")
define("public_url", default="",
       help="the URL people reach this server at, for the call links in alerts (default http://address:port)")
define("peer_tags", default=",".join(DEFAULT_PEER_TAGS),
       help="application tags kept as peer dimensions (a JSON object's \"tags\", tag.<name>= on the websocket "
            "URL), comma-separated; others are dropped (see docs/diagnosis.md)")
define("geoip_db", default="",
       help="MaxMind-format database(s) for country and asn, comma-separated (GeoLite2 Country/City/ASN, DB-IP, "
            "IPinfo); empty: the embedded country table, no asn")
define("max_dimension_values", default=DEFAULT_MAX_VALUES,
       help="distinct values kept per dimension; beyond, a value counts as 'other'")
define("explain_min_poor", default=5,
       help="poor peers a dimension value needs before /v1/fleet/explain/ names it")


class Application(tornado.web.Application):
    """The web application and the resources its handlers reach through it."""

    def __init__(self, store, writer, config, detector, telemetry, rtcstats_sessions, alerts, dimensions):
        self.store = store
        self.writer = writer
        self.detector = detector
        self.alerts = alerts
        # The peers' dimensions of every ingest path: the User-Agent parser, the address database, the tag allow-list.
        self.dimensions = dimensions
        # Breakdowns, explanations and cohort rules' counts of the live peers, once per detector tick.
        self.diagnosis = LiveDiagnosis(config.explain_min_poor)
        # Every ingest path asks this one object before storing a request's calls.
        self.admission = CallAdmission(
            (lambda: detector.live_calls) if detector else None, max_new_calls=config.max_new_calls,
            window=config.new_calls_window, max_calls_per_request=config.max_calls_per_request,
            max_live_calls=config.max_live_calls, call_timeout=config.call_timeout,
            tick=config.tick, flush_interval=config.flush_interval)
        self.config = config  # the Settings, built once from the options
        self.ingest_keys = Secrets(config.ingest_keys)
        self.read_tokens = Secrets(config.read_token_file, [config.read_token])
        self.rtcstats_sessions = rtcstats_sessions
        self.janus_peers = JanusPeers()  # the Janus handles that make each SFU peer (handlers/janus.py)
        # One live feed series per process: every ingest path writes it.
        self.ingest_limits = Limits(max_samples=config.max_samples, max_skew_ns=int(config.max_skew * 1e9),
                                    feed=rtcstats_sessions.limits.feed)
        self.telemetry = telemetry
        self.stats_sockets = set()  # open /v1/stats/ws connections (statsws.StatsWire), swept for pings and idle ones
        self.posts_reading = {}  # stored posts (ingest.StoredWrite) whose body is on its way -> since (monotonic)
        self.imports_running = 0  # dumps being received or read (handlers/imports.py), at most max_imports
        self.periodic_callbacks = [
            tornado.ioloop.PeriodicCallback(lambda: self.sweep_stats_sockets(config.client_timeout),
                                            min(config.client_timeout / 4, 5) * 1000),
            tornado.ioloop.PeriodicCallback(lambda: ingest.close_stalled_posts(self, config.client_timeout),
                                            min(config.client_timeout / 4, 5) * 1000),
            tornado.ioloop.PeriodicCallback(lambda: rtcstats_sessions.sweep(time.time() * 1000), 60_000),
        ]
        if detector:
            detector.tick_hooks.append(lambda now, qualities, calls, live: alerts.on_tick(
                now, qualities, calls, live,
                lambda dimensions: self.diagnosis.cohort_counts(detector.ticks, detector.live_people, dimensions)))
            alerts.listeners.append(lambda alert: detector.send_calls_viewers(dumps({"type": "alert", **alert})))
            self.periodic_callbacks.append(tornado.ioloop.PeriodicCallback(detector.tick, config.tick * 1000))
        handlers = [rule for module in HANDLER_MODULES for rule in module.default_handlers]
        handlers.append((r"/v1/.*", base.NotFoundHandler))
        settings = {
            "template_path": os.path.join(ROOT, "templates"),
            "static_path": os.path.join(ROOT, "static"),
            "websocket_ping_interval": ws.PING_INTERVAL_SECONDS,
            "websocket_ping_timeout": ws.PING_TIMEOUT_SECONDS,
            "xsrf_cookies": False,
        }
        super().__init__(handlers, transforms=[base.SecurityHeaders], **settings)

    def find_handler(self, request, **kwargs):
        """The read token guards every route but the open ones, whoever wrote the handler.
        Call ids are matched decoded: /v1/calls/room%3A1/ is the call room:1."""
        request.path = base.decode_path_ids(request.path)
        access = base.read_access(self, request)
        if access == "open" and (stored := ingest.stored_write(self, request, STORED_ROUTES)):
            return stored
        if access == "grant":
            return self.get_handler_delegate(request, base.TokenCookieHandler)
        if isinstance(access, tuple):
            status, code, message = access
            return self.get_handler_delegate(request, base.AccessDeniedHandler,
                                             {"status": status, "code": code, "message": message})
        delegate = super().find_handler(request, **kwargs)
        if self.detector is None and getattr(delegate.handler_class, "needs_detector", False):
            return self.get_handler_delegate(request, base.AccessDeniedHandler, base.NO_DETECTOR)
        return delegate

    def sweep_stats_sockets(self, timeout):
        now = time.monotonic()
        for socket in list(self.stats_sockets):
            socket.sweep(now, timeout, ws.PING_INTERVAL_SECONDS)

    def reload_secrets(self):
        """SIGHUP: re-read the ingest keys and read tokens now."""
        for secrets in (self.ingest_keys, self.read_tokens):
            if secrets.path:
                secrets.reload()

    async def start(self):
        """Set up InfluxDB (retrying in the background while it is down) and start the writer."""
        self.writer.start()
        self._setup_task = asyncio.ensure_future(self._setup_database())
        for callback in self.periodic_callbacks:
            callback.start()

    async def _setup_database(self):
        # Full jitter: processes started together against an InfluxDB that is down spread their retries.
        backoff = Backoff(0.5, 10, factor=2, jitter="full")
        while True:
            try:
                await self.store.setup()
                return
            except Exception as exc:
                delay = next(backoff)
                log.warning("InfluxDB set-up failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def stop(self):
        """Stop callbacks, flush within the shutdown timeout; the rest stays in the log."""
        for callback in self.periodic_callbacks:
            callback.stop()
        # Websocket ingest clients (rtcstats, rtcscope.js) reconnect after 1012 (here once restarted,
        # or to another process) and resend what was not stored.
        for session in list(self.rtcstats_sessions.by_id.values()):
            if session.connection is not None:
                session.connection.close(1012, "the server is restarting")
        for socket in list(self.stats_sockets):
            socket.stop()
        if self.detector:
            await self.detector.stop()
        await self.alerts.stop()
        self._setup_task.cancel()
        await self.writer.stop(self.config.shutdown_timeout)
        await self.store.close()

    async def load_calls(self, call=None, window_ms=None):
        now_ms = int(time.time() * 1000)
        if window_ms is None:
            window_ms = self.config.retention_seconds * 1000
        return await load_calls(self.store, now_ms, window_ms, self.config.call_timeout * 1000, call=call)

    def log_request(self, handler):
        """Count every request; log each one, except successes of handlers that
        set `quiet_success` (ingest: thousands a second, counted in /metrics)."""
        status = handler.get_status()
        self.count_request(type(handler).__name__, status)
        if status < 400 and getattr(handler, "quiet_success", False) and not access_log.isEnabledFor(logging.DEBUG):
            return
        super().log_request(handler)

    def count_request(self, route, status):
        """`route`: the name of the handler class that answered (ingest.StoredWrite answers as WriteHandler)."""
        self.telemetry.inc("rtcscope_http_requests_total", route=route, status=status)


def make_telemetry(writer, detector, rtcstats_sessions, alerts):
    """Every family /metrics shows, in this application's own registry: the
    handlers' counters here (they count into them), the rest declared by the
    components that own them."""
    telemetry = Telemetry()
    telemetry.counter("rtcscope_http_requests_total", "HTTP requests by route and status", labels=("route", "status"))
    telemetry.counter("rtcscope_samples_accepted_total", "samples acknowledged (buffered)")
    telemetry.counter("rtcscope_values_dropped_total", "null, NaN or missing values dropped from samples")
    telemetry.counter("rtcscope_samples_restamped_total", "samples whose timestamp was replaced (skew)")
    telemetry.counter("rtcscope_ingest_refused_total", "ingest requests refused, nothing stored, by reason",
                      labels=("reason",))
    writer.register_metrics(telemetry)
    telemetry.counter("rtcscope_graph_viewers_dropped_total", "graph viewers closed for falling behind")
    if detector:  # an ingest-only process has none
        detector.register_metrics(telemetry)
    alerts.register_metrics(telemetry, follows=detector is not None)
    rtcstats_sessions.register_metrics(telemetry)
    telemetry.counter("rtcscope_janus_events_total", "Janus events received, by Janus's event type",
                      labels=("type",))
    telemetry.counter("rtcscope_janus_events_skipped_total",
                      "Janus events of handles whose opaque_id names no call, by reason: not stored", labels=("reason",))
    return telemetry


def make_app(**overrides):
    """Build the application from the options, with `overrides` (tests use this)."""
    config = Settings.from_options({**options.as_dict(), **overrides})
    # A bad setting, rules file or webhook URL stops the start before anything is opened.
    rules = load_rules(config.alert_rules, known_dimensions(config.peer_tags))
    webhooks = None
    if config.alert_webhooks:
        receiver = functools.partial(make_receiver, resend_ms=int(config.alertmanager_resend * 1000),
                                     public_url=config.public_url)
        webhooks = Webhooks([url for url in config.alert_webhooks if url], secret=config.alert_secret,
                            retry_ms=config.alert_retry * 1000, backoff_max=max(1.0, min(60.0, config.alert_retry / 10)),
                            make_receiver=receiver)
    try:
        dimensions = Extractor(config.peer_tags, GeoIP.from_option(config.geoip_db))
    except GeoIPError as exc:
        raise SettingsError(str(exc)) from None
    store = Store(config.influxdb_url, config.database, config.retention)
    wal = None
    if config.wal_dir:
        wal = WriteAheadLog(str(config.wal_dir), config.database, max_bytes=config.max_wal,
                            fsync_interval=config.wal_fsync).open()
    writer = BatchWriter(store.write, wal=wal, max_buffer=config.max_buffer, batch_size=config.batch_size,
                         flush_interval=config.flush_interval, spool_dir=config.spool_dir or None)
    detector = None
    if config.detector:
        detector = CallDetector(store, timeout_ms=config.call_timeout * 1000, tick_ms=config.tick * 1000,
                                quality_window_ms=config.quality_window * 1000,
                                history_ms=config.retention_seconds * 1000, writer=writer,
                                ended_window_ms=parse_duration(base.DEFAULT_SINCE) * 1000,
                                max_ended_calls=config.max_ended_calls, graph_lines=config.graph_lines,
                                max_dimension_values=config.max_dimension_values)
    node = token_hex(8)  # this process among those sharing the database: its feed series, its alert events
    rtcstats_sessions = Sessions(store, config.max_samples, feed=Feed(node))
    alerts = AlertService(store, writer, rules, tick_ms=config.tick * 1000, public_url=config.public_url,
                          webhooks=webhooks, node=node, window_ms=config.quality_window * 1000)
    return Application(store, writer, config, detector, make_telemetry(writer, detector, rtcstats_sessions, alerts),
                       rtcstats_sessions, alerts, dimensions)


def http_server(app):
    """The HTTP server of `app`, as its options say (not listening yet)."""
    config = app.config
    return tornado.httpserver.HTTPServer(app, xheaders=config.xheaders, max_body_size=4 * config.max_body,
                                         idle_connection_timeout=config.client_timeout,
                                         body_timeout=config.client_timeout)


def parse_options():
    parse_command_line(final=False)
    if options.config:
        parse_config_file(options.config, final=False)
        parse_command_line(final=False)
    options.run_parse_callbacks()


# With thousands of ingest connections the process holds hundreds of thousands of
# long-lived objects; at the default thresholds a full collection walks them every
# few seconds (150-176 ms measured at 2,000 connections) and frees nothing.
GC_THRESHOLDS = (10_000, 50, 100)


async def main():
    parse_options()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        app = make_app()
    except (SettingsError, WALError, RulesError, WebhookError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)
    await app.start()
    config = app.config
    server = http_server(app)
    server.listen(config.port, config.address)
    log.info("rtcscope-server on http://%s:%d, InfluxDB %s database %s",
             config.address, config.port, config.influxdb_url, config.database)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, app.reload_secrets)
    await stopping.wait()
    log.info("shutting down: no new connections, flushing the buffer")
    server.stop()
    await app.stop()
    await server.close_all_connections()


def run():
    """The `rtcscope-server` console entry point."""
    parse_options()
    if options.event_loop == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


if __name__ == "__main__":
    run()
