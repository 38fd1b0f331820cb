"""Webhook delivery of alert events: one worker per receiver, retried with jittered backoff.

Each receiver has its own bounded queue and its own task, so a receiver that
is down delays only itself. An event is retried until it is delivered or its
retry period (counted from the event's time) has passed. Whether an event
reached a receiver is recorded by the caller (AlertService writes it to
InfluxDB), which is what lets a restarted or another process send what is
still owed. See docs/alerts.md.
"""
import asyncio
import collections
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

import aiohttp
import orjson

from ..retry import Backoff
from ..storage.alerts import receiver_field
from ..tasks import cancel_and_wait

log = logging.getLogger("rtcscope.webhooks")

SLACK_PREFIX = "slack+"
SIGNATURE_HEADER = "X-Rtcscope-Signature"
MAX_QUEUE = 10_000
TIMEOUT_S = 10.0


def now_ms():
    return int(time.time() * 1000)


class WebhookError(ValueError):
    """A webhook URL that cannot be used."""


class Receiver:
    """A configured URL. `slack+https://...` sends Slack's {"text": ...} to https://...
    `key` names its delivered flag in rtc_alerts (a field name, the same in every process)."""

    def __init__(self, spec):
        self.spec = spec
        self.slack = spec.startswith(SLACK_PREFIX)
        self.url = spec[len(SLACK_PREFIX):] if self.slack else spec
        if not self.url.startswith(("http://", "https://")):
            raise WebhookError(f"alert webhook {spec!r} is not an http(s) URL (slack+https://... for Slack)")
        self.key = receiver_field(spec)

    def make_worker(self, hub):
        return Worker(hub, self)

    def body(self, alert):
        if not self.slack:
            return orjson.dumps(alert)
        if alert.get("scope") == "cohort":
            where, link = f"{alert['dimension']}={alert['value']}", "live calls"
            measure = f"{alert['poor']} of {alert['peers']} peers poor"
        else:
            where, link = alert["call"] + (f" / {alert['peer']}" if alert["peer"] else ""), "call page"
            measure = _show(alert["value"])
        if alert["state"] == "firing":
            text = (f":rotating_light: [{alert['severity']}] {alert['rule']} firing on {where}: "
                    f"{measure} (threshold {_show(alert['threshold'])}) <{alert['url']}|{link}>")
        else:
            text = f":white_check_mark: {alert['rule']} resolved on {where} <{alert['url']}|{link}>"
        return orjson.dumps({"text": text})


def _show(value):
    return "n/a" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class Outgoing:
    """An event to deliver: the webhook object, and where its rtc_alerts point is (its
    writer's node tag and time), to record the delivery on it."""
    alert: dict
    node: str
    time_ns: int


def signature(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Worker:
    """One receiver's queue, drained in order by one task."""

    def __init__(self, hub, receiver):
        self.hub = hub
        self.receiver = receiver
        self.queue = collections.deque()
        self.ids = set()  # (id, state) queued, so a rescan does not queue twice
        self.overflowed = False
        self.wake = asyncio.Event()
        self.task = None

    def put(self, record):
        key = (record.alert["id"], record.alert["state"])
        if key in self.ids:
            return
        if len(self.queue) >= self.hub.max_queue:
            self.overflowed = True  # it stays owed in InfluxDB; read back once the queue drains
            self.hub.report(record, self.receiver, "dropped")
            return
        self.queue.append(record)
        self.ids.add(key)
        self.wake.set()

    def clear(self):
        self.queue.clear()
        self.ids.clear()

    async def run(self):
        while True:
            await self.between()
            if not self.queue:
                if self.overflowed and self.hub.refill is not None:
                    self.overflowed = False
                    await self.hub.refill(self.receiver)
                    continue
                self.wake.clear()
                await self.idle()
                continue
            record = self.queue[0]
            delivered = await self._deliver(record)
            if self.queue and self.queue[0] is record:
                self.queue.popleft()
                self.ids.discard((record.alert["id"], record.alert["state"]))
            self.hub.report(record, self.receiver, "delivered" if delivered else "expired")

    async def between(self):
        """A receiver's own work between two deliveries (a webhook has none)."""

    async def idle(self):
        """Wait for an event to deliver."""
        await self.wake.wait()

    async def post(self, body):
        """One POST of a body: None when answered 2xx, else what went wrong."""
        headers = {"Content-Type": "application/json", "User-Agent": "rtcscope-server"}
        if self.hub.secret:
            headers[SIGNATURE_HEADER] = signature(self.hub.secret, body)
        try:
            async with self.hub.session.post(self.receiver.url, data=body, headers=headers) as response:
                await response.read()
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return str(exc) or type(exc).__name__

    async def _deliver(self, record):
        """POST until a 2xx or the event's retry period is over; True when delivered. The
        body is built for each attempt (an Alertmanager body holds the time it is sent)."""
        deadline = record.alert["at"] + self.hub.retry_ms
        backoff = Backoff(self.hub.backoff_initial, self.hub.backoff_max)
        while now_ms() < deadline:
            problem = await self.post(self.receiver.body(record.alert))
            if problem is None:
                return True
            self.hub.report(record, self.receiver, "failed")
            delay = next(backoff)
            log.warning("webhook %s: alert %s not delivered (%s); retrying in %.0fs",
                        self.receiver.url, record.alert["id"], problem, delay)
            await asyncio.sleep(min(delay, max(0.0, (deadline - now_ms()) / 1000)))
        return False


class Webhooks:
    """The receivers and their workers. `on_result(record, receiver, result)` is told
    every outcome: delivered, failed (an attempt; retried), expired (given up),
    dropped (queue full; still owed) or resent (a firing alert posted again, with
    record None: see alertmanager.py)."""

    def __init__(self, specs, *, secret="", retry_ms=600_000, on_result=None, refill=None,
                 max_queue=MAX_QUEUE, backoff_initial=1.0, backoff_max=60.0, make_receiver=Receiver):
        self.receivers = [make_receiver(spec) for spec in specs]
        self.secret = secret
        self.retry_ms = retry_ms
        self.on_result = on_result
        self.refill = refill
        self.firing = None  # () -> the webhook objects of the alerts firing now, for receivers that re-send them
        self.max_queue = max_queue
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.workers = {}
        self.session = None

    def start(self):
        if self.workers:
            return
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        for receiver in self.receivers:
            worker = self.workers[receiver.key] = receiver.make_worker(self)
            worker.task = asyncio.ensure_future(worker.run())

    async def stop(self):
        """Stop sending (what is not delivered stays owed in InfluxDB)."""
        workers, self.workers = list(self.workers.values()), {}
        await cancel_and_wait(*(worker.task for worker in workers))
        if self.session is not None:
            await self.session.close()
            self.session = None

    def send(self, record, delivered=()):
        """Queue an Outgoing event for every receiver not in `delivered` (receiver keys)."""
        for key, worker in self.workers.items():
            if key not in delivered:
                worker.put(record)

    def report(self, record, receiver, result):
        if self.on_result is not None:
            self.on_result(record, receiver, result)

    @property
    def queued(self):
        return sum(len(worker.queue) for worker in self.workers.values())
