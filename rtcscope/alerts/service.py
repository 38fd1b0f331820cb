"""The alerts of every process: rules evaluated every detector tick, events kept in InfluxDB.

Every process evaluates the rules (rules.py) on what they read each tick
(inputs.py) through their state machines (state.py), and follows rtc_alerts
(rtcscope/storage/alerts.py); the sender the processes elect (election.py)
records the events there and delivers them (delivery.py). See docs/alerts.md.
"""
import asyncio
import collections
import logging
import secrets
import time
import urllib.parse

import aiohttp

from .. import registry
from ..storage import alerts as stored
from ..storage.schema import ALERTS_MEASUREMENT
from ..storage.store import InfluxDBError, StoreError
from ..storage.writer import WriteRejected
from ..tasks import cancel_and_wait
from .alertmanager import cohort_url
from .delivery import Outgoing
from .election import Election
from .inputs import ended_of, extra_metrics, extra_windows, peer_windows
from .state import AlertEngine, event_of

log = logging.getLogger("rtcscope.alerts")

# Firing alerts a new sender takes over, and what /v1/alerts/ looks back over by default.
LOOKBACK_MS = 24 * 3600_000
# Events every process reads back each tick (for /ws/calls and its firing count): an
# event's time is its `at`, which for an end is the call's end, up to a call timeout back.
FOLLOW_MS = 120_000
MAX_UNWRITTEN = 10_000


class AlertService:
    """Evaluates the rules every detector tick in every process; the elected sender
    records the events in rtc_alerts and delivers them. Every process follows
    rtc_alerts to tell its /ws/calls viewers and count what fires.

    Which process sends is the election's (election.py); taking over, the sender
    adopts the firing alerts InfluxDB holds and sends what is still undelivered."""

    def __init__(self, store, writer, rules, *, tick_ms, public_url, webhooks=None, lookback_ms=LOOKBACK_MS,
                 node=None, on_delivery=None, window_ms=10_000):
        self.store = store
        self.writer = writer
        self.engine = AlertEngine(list(rules))
        self.public_url = public_url.rstrip("/")
        self.webhooks = webhooks
        self.lookback_ms = lookback_ms
        self.window_ms = window_ms
        self.extra = extra_metrics(rules)
        self.extra_values = {}  # (call, peer) -> values of the extra metrics, as of the last tick
        self.node = node or secrets.token_hex(8)
        self.election = Election(store, self.node, tick_ms, take_over=self._take_over, step_down=self._stop_sending)
        self.on_delivery = on_delivery  # called with each delivery result (for /metrics)
        self.known = {}  # id -> latest firing event as InfluxDB holds it
        self.seen = {}  # (id, state) -> at: events already told to listeners
        self.listeners = []  # callables taking each new event (the webhook object)
        self.loaded = False
        self._seq = 0
        self._unwritten = collections.deque(maxlen=MAX_UNWRITTEN)
        self._task = None
        self.failures = 0
        self._queries = 0
        if webhooks is not None:
            webhooks.on_result = self._delivered
            webhooks.refill = self._refill
            webhooks.firing = lambda: list(self.known.values())  # what Alertmanager receivers re-send

    @property
    def firing_count(self):
        return len(self.known)

    @property
    def sending(self):
        """Whether this process is the one that records and sends."""
        return self.election.sending

    @property
    def queries(self):
        """InfluxDB queries of the alerts (2 per tick: nodes, new events; 3 with rules on other metrics)."""
        return self._queries + self.election.queries

    def register_metrics(self, telemetry, *, follows=True):
        """Show the alerts' families on /metrics and count the deliveries into them. `follows`:
        this process follows rtc_alerts each tick (it runs the detector); an ingest-only one
        does not know what fires, so it shows no firing count."""
        if follows:
            telemetry.gauge("rtcscope_alerts_firing", f"alerts firing now (as InfluxDB's {ALERTS_MEASUREMENT} holds them)",
                            lambda: self.firing_count)
        telemetry.counter("rtcscope_webhook_deliveries_total",
                          "webhook deliveries by result: delivered, failed (an attempt, retried), expired (given up), "
                          "dropped (queue full, still owed), resent (a firing alert posted again to Alertmanager)",
                          labels=("result",))
        telemetry.gauge("rtcscope_alerts_sender", "1 while this process is the one that records and sends alerts",
                        lambda: int(self.sending))
        self.on_delivery = lambda result: telemetry.inc("rtcscope_webhook_deliveries_total", result=result)

    def call_url(self, call):
        return f"{self.public_url}/calls/{urllib.parse.quote(call, safe='')}/"

    def url_of(self, event):
        """Where a person looks: the call's page, or the dashboard filtered to a cohort."""
        if event.scope == "cohort":
            return cohort_url(self.public_url, event.dimension, event.value)
        return self.call_url(event.call)

    # --- each tick ----------------------------------------------------------------

    def on_tick(self, now_ms, qualities, calls, live_calls, cohort_counts=None):
        """The detector's tick hook: the live calls' qualities (each peer's window), the calls,
        the live ones, and `cohort_counts(dimensions)`, called when cohort rules need it: the
        live people's {dimension: {value: (peers, poor, ...)}} (diagnosis.live.LiveDiagnosis)."""
        windows = peer_windows(qualities)
        for key, values in self.extra_values.items():
            if key[0] in live_calls:
                windows[key] = {**windows.get(key, {}), **values}  # the detector's windows are not ours to change
        events = self.engine.evaluate(now_ms, windows, ended_of(calls), live_calls)
        if self.engine.cohort_rules:
            events += self.engine.evaluate_cohorts(now_ms, cohort_counts(self.engine.cohort_dimensions))
        if self.sending:
            for event in events:
                self._record(event.as_json(self.url_of(event)))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._housekeep(now_ms))

    def _record(self, alert):
        self._seq = (self._seq + 1) % 1_000_000
        time_ns = stored.event_time_ns(alert["at"], self._seq)
        self._submit(stored.encode_event(alert, self.node, time_ns))
        if self.webhooks is not None:
            self.webhooks.send(Outgoing(alert, self.node, time_ns))
        self._tell(alert)

    def _submit(self, line):
        while self._unwritten and self.writer.submit([self._unwritten[0]]):
            self._unwritten.popleft()
        if self._unwritten or not self.writer.submit([line]):
            if len(self._unwritten) == self._unwritten.maxlen:
                log.warning("alert state cannot be written (buffer full); the oldest unwritten record is lost")
            self._unwritten.append(line)

    def _tell(self, alert):
        """Count and push an event once, whichever way it came (recorded here or read back)."""
        key = (alert["id"], alert["state"])
        if key in self.seen:
            return
        self.seen[key] = alert["at"]
        if alert["state"] == "firing":
            self.known[alert["id"]] = alert
        else:
            self.known.pop(alert["id"], None)
        for listener in self.listeners:
            try:
                listener(alert)
            except Exception:
                log.exception("an alert listener failed")

    async def _housekeep(self, now_ms):
        """Heartbeat, follow rtc_alerts, then take or give up the sender's role."""
        try:
            await self._beat(now_ms)
        except (StoreError, WriteRejected, TimeoutError, OSError, aiohttp.ClientError, InfluxDBError) as exc:
            self.failures += 1
            log.warning("alert heartbeat failed (%s): not sending until InfluxDB answers again", exc)
            await self.election.lost()
        except Exception:  # the next tick tries again; the detector's tick is not ours to break
            self.failures += 1
            log.exception("alert housekeeping failed")

    async def _beat(self, now_ms):
        """Write this process's heartbeat, read the others' and the new events, elect the sender."""
        heartbeats = await self.election.heartbeat(now_ms)
        if self.extra:
            self.extra_values = await self._extra_windows(now_ms)
        if not self.loaded:
            for alert in stored.latest_by_id(await self._events(now_ms - self.lookback_ms, now_ms)):
                self.seen[(alert["id"], alert["state"])] = alert["at"]
                if alert["state"] == "firing":
                    self.known[alert["id"]] = alert
            self.loaded = True
        else:
            for alert in sorted((a for a in map(stored.row_alert, await self._events(now_ms - FOLLOW_MS, now_ms)) if a),
                                key=lambda a: (a["at"], a["state"] == "resolved")):
                self._tell(alert)
            for key in [key for key, at in self.seen.items() if at < now_ms - 2 * FOLLOW_MS]:
                del self.seen[key]
        await self.election.decide(heartbeats, now_ms)

    async def _extra_windows(self, now_ms):
        """The window of the registry metrics only custom rules use: one grouped query."""
        metrics = self.extra.values()
        gauges = sorted({metric.source_field for metric in metrics if metric.type != registry.COUNTER})
        counters = sorted({metric.source_field for metric in metrics if metric.type == registry.COUNTER})
        self._queries += 1
        rows = await self.store.quality_window(now_ms - self.window_ms, now_ms, gauges, (), counters)
        return extra_windows(rows, self.extra, self.window_ms)

    async def _events(self, since_ms, until_ms):
        self._queries += 1
        return stored.rows_of(await self.store.query(stored.events_query(since_ms, until_ms)))

    async def _take_over(self, now_ms):
        """Become the sender: carry on the firing alerts InfluxDB holds, send what is owed."""
        rows = await self._events(now_ms - max(self.lookback_ms, self._retry_ms), now_ms + 60_000)
        self.engine.adopt([event_of(alert) for alert in stored.latest_by_id(rows) if alert["state"] == "firing"])
        if self.webhooks is not None:
            self.webhooks.start()
            self._send_owed(rows, now_ms)

    @property
    def _retry_ms(self):
        return self.webhooks.retry_ms if self.webhooks is not None else 0

    def _send_owed(self, rows, now_ms, receivers=None):
        """Queue, oldest first, every event of the retry period some receiver has not had."""
        owed = []
        for row in rows:
            alert = stored.row_alert(row)
            if alert is None or alert["at"] < now_ms - self._retry_ms or row.get("node") is None:
                continue
            time_ns = stored.row_time_ns(row)
            owed.append((time_ns, Outgoing(alert, row["node"], time_ns), stored.delivered_to(row)))
        for _, outgoing, delivered in sorted(owed, key=lambda item: item[0]):
            if receivers is None:
                self.webhooks.send(outgoing, delivered)
            else:
                for worker in receivers:
                    if worker.receiver.key not in delivered:
                        worker.put(outgoing)

    async def _stop_sending(self):
        if self.webhooks is not None:
            await self.webhooks.stop()

    def _delivered(self, outgoing, receiver, result):
        if self.on_delivery is not None:
            self.on_delivery(result)
        if result in ("delivered", "expired"):
            self._submit(stored.encode_delivery(outgoing.node, outgoing.time_ns, receiver.key, result == "delivered"))

    async def _refill(self, receiver):
        """A receiver's queue overflowed and drained: queue again what it is still owed."""
        now = int(time.time() * 1000)
        try:
            rows = await self._events(now - self._retry_ms, now + 60_000)
        except StoreError as exc:
            log.warning("cannot read owed alert deliveries (%s)", exc)
            return
        worker = self.webhooks.workers.get(receiver.key)
        if worker is not None:
            self._send_owed(rows, now, [worker])

    async def list_alerts(self, state, since_ms, now_ms, call=None, scope=None, dimension=None):
        """Alerts whose latest event is since `since_ms`, with that event ("firing" or "all");
        of one call when `call` is given, of one scope ("peer", "cohort"), of cohorts by
        one dimension."""
        rows = await self.store.query(stored.events_query(since_ms, now_ms + 60_000, call))
        alerts = [alert for alert in stored.latest_by_id(stored.rows_of(rows))
                  if (state != "firing" or alert["state"] == "firing") and scope in (None, alert["scope"])
                  and dimension in (None, alert.get("dimension"))]
        return sorted(alerts, key=lambda alert: (-alert["at"], alert["id"]))

    async def stop(self):
        await cancel_and_wait(self._task)
        await self.election.resign()
        for line in self._unwritten:
            self.writer.submit([line])
