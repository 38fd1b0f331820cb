"""Prometheus Alertmanager as a receiver: `alertmanager+http(s)://HOST:PORT` in --alert-webhooks.

Alertmanager's API (POST /api/v2/alerts: a JSON array of postableAlert, each with
`labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`) keeps an alert
active until its `endsAt`, and forgets what it holds when it restarts; a source
therefore posts a firing alert again and again, each time with an `endsAt` a
little ahead, and a resolution once with `endsAt` its time.

An event (firing, resolution) goes through the same queue, retries and recorded
outcome as any webhook (webhooks.py), so it reaches Alertmanager once the sender
can and survives a restart. The re-sends are this receiver's worker's own: every
`resend` it posts, in batches, the alerts that fire now (the sender's view of
rtc_alerts), between two deliveries of its queue, so a re-send never overtakes
a resolution; a new sender carries the re-sends on. See docs/alerts.md.
"""
import asyncio
import contextlib
import datetime
import logging
import time
import urllib.parse

import orjson

from ..storage.alerts import receiver_field
from .delivery import Receiver, WebhookError, Worker, _show, now_ms

log = logging.getLogger("rtcscope.alertmanager")

PREFIX = "alertmanager+"
API_PATH = "/api/v2/alerts"
# A firing alert's endsAt is this many re-sends ahead: Alertmanager keeps it active
# through a few lost re-sends, and resolves it by itself when its source is gone.
ENDS_AHEAD = 4
MAX_BATCH = 500  # alerts in one re-send request


def rfc3339(ms):
    """A Unix ms time as the API's date-time (RFC 3339, UTC)."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cohort_url(public_url, dimension, value):
    """The dashboard filtered to a cohort's calls."""
    return f"{public_url.rstrip('/')}/dashboard?{urllib.parse.urlencode({dimension: value})}"


def labels(alert):
    """What identifies the alert to Alertmanager (its routes, silences and grouping match
    these): the rule, severity, scope and the call and peer, or a cohort's dimension and value."""
    scope = alert.get("scope") or "peer"
    found = {"alertname": alert["rule"], "severity": alert["severity"], "scope": scope}
    if scope == "cohort":
        found.update(dimension=alert["dimension"], value=str(alert["value"]))
    else:
        found["call"] = alert["call"]
        if alert.get("peer"):
            found["peer"] = alert["peer"]
    return found


def annotations(alert):
    """A sentence for the summary, the event for the description, and rtcscope's id."""
    if (alert.get("scope") or "peer") == "cohort":
        where = f"peers with {alert['dimension']}={alert['value']}"
        poor, peers = alert.get("poor"), alert.get("peers")
        measure = f"{poor} of {peers} live peers are poor" if poor is not None and peers is not None else "poor share"
        summary = f"{alert['rule']} on {where}: {measure} (threshold {_show(alert.get('threshold'))})."
    else:
        where = f"call {alert['call']}" + (f", peer {alert['peer']}" if alert.get("peer") else "")
        summary = f"{alert['rule']} on {where}: {_show(alert.get('value'))} (threshold {_show(alert.get('threshold'))})."
    if alert["state"] == "firing":
        event = f"firing since {rfc3339(alert['since'])}"
    else:
        event = f"held from {rfc3339(alert['since'])}, resolved at {rfc3339(alert['at'])}"
    description = f"rtcscope rule {alert['rule']} ({alert['severity']}) on {where}, {event}."
    return {"summary": summary, "description": description, "rtcscope_id": alert["id"]}


def postable(alert, sent_ms, resend_ms, public_url):
    """Alertmanager's postableAlert of an rtcscope alert (the webhook object), sent at
    `sent_ms`: a firing one ends ENDS_AHEAD re-sends ahead, a resolved one at its time."""
    if (alert.get("scope") or "peer") == "cohort":
        url = cohort_url(public_url, alert["dimension"], str(alert["value"]))
    else:
        url = alert["url"]
    ends = sent_ms + ENDS_AHEAD * resend_ms if alert["state"] == "firing" else alert["at"]
    return {"labels": labels(alert), "annotations": annotations(alert), "startsAt": rfc3339(alert["since"]),
            "endsAt": rfc3339(ends), "generatorURL": url}


class AlertmanagerReceiver(Receiver):
    """`alertmanager+http(s)://HOST:PORT[/prefix]`: posts to the API at that base URL."""

    def __init__(self, spec, *, resend_ms, public_url):
        self.spec = spec
        base = spec[len(PREFIX):].rstrip("/")
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise WebhookError(f"alert webhook {spec!r}: give Alertmanager's base URL, "
                               "alertmanager+http://HOST:PORT (or alertmanager+https://)")
        if resend_ms < 1000:
            raise WebhookError(f"--alertmanager-resend must be at least 1s, got {resend_ms / 1000:g}s")
        self.url = base + API_PATH
        self.key = receiver_field(spec)
        self.resend_ms = resend_ms
        self.public_url = public_url

    def make_worker(self, hub):
        return AlertmanagerWorker(hub, self)

    def body(self, alert):
        return orjson.dumps([postable(alert, now_ms(), self.resend_ms, self.public_url)])

    def bodies(self, alerts):
        """The re-send of the alerts that fire now: one request per MAX_BATCH of them."""
        sent = now_ms()
        for start in range(0, len(alerts), MAX_BATCH):
            batch = alerts[start:start + MAX_BATCH]
            yield len(batch), orjson.dumps([postable(alert, sent, self.resend_ms, self.public_url)
                                            for alert in batch])


def make_receiver(spec, *, resend_ms, public_url):
    """The receiver a configured URL names: Alertmanager's API for alertmanager+..., else a webhook."""
    if spec.startswith(PREFIX):
        return AlertmanagerReceiver(spec, resend_ms=resend_ms, public_url=public_url)
    return Receiver(spec)


class AlertmanagerWorker(Worker):
    """Delivers the receiver's queue as any worker does, and between two deliveries
    re-sends the firing alerts every `resend_ms`, on time even while the queue is
    empty. The first re-send is a period after the start: a new sender's alerts
    were re-sent by the previous one with endsAt several periods ahead, and by then
    its ticks have resolved those of the calls that ended during the hand-over."""

    def __init__(self, hub, receiver):
        super().__init__(hub, receiver)
        self.next_resend = time.monotonic() + receiver.resend_ms / 1000

    async def between(self):
        if time.monotonic() < self.next_resend:
            return
        self.next_resend = time.monotonic() + self.receiver.resend_ms / 1000
        firing = self.hub.firing() if self.hub.firing is not None else []
        for count, body in self.receiver.bodies(firing):
            problem = await self.post(body)
            for _ in range(count):
                self.hub.report(None, self.receiver, "resent" if problem is None else "failed")
            if problem is not None:  # the next re-send tries again; endsAt covers a few lost ones
                log.warning("alertmanager %s: firing alerts not re-sent (%s); next try in %.0fs",
                            self.receiver.url, problem, self.receiver.resend_ms / 1000)
                return

    async def idle(self):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), max(0.0, self.next_resend - time.monotonic()))
