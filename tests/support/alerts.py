"""Alerts from outside the server: a rules file, calls fed the rtt a rule is about, and a
real webhook receiver."""
import asyncio
import collections
import http.server
import json
import threading
import time
import urllib.request

from tests.support.api import post
from tests.support.influxd import free_port
from tests.support.metrics import metric
from tests.support.waits import eventually, wait


def cohort_rules(by="region", hold="1s", min_peers=3):
    """An alert rules file (TOML) with one cohort rule: more than half of a value's live peers
    poor, held for `hold`."""
    return f"""
[[rule]]
name = "{by}_poor"
by = "{by}"
metric = "poor_share"
op = ">"
threshold = 0.5
for = "{hold}"
min_peers = {min_peers}
severity = "critical"
"""


def cohort_events(alerts, value):
    """The states, in order, of the cohort alerts about `value` among webhook bodies."""
    return [alert["state"] for alert in alerts if alert.get("scope") == "cohort" and alert["value"] == value]


def high_rtt_rules(hold="1s"):
    """An alert rules file (TOML) with one rule: rtt above 400 ms held for `hold`."""
    return f"""
[[rule]]
name = "high_rtt"
metric = "rtt"
op = ">"
threshold = 400
for = "{hold}"
severity = "critical"
"""


class Receiver:
    """A webhook receiver on a free port, in a thread of its own (so in-process servers and server
    processes alike reach it), keeping every request; `down()` closes the port, `up()` reopens it."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received = []  # (monotonic time, headers, raw body)
        self.server = None
        self.up()

    def up(self):
        received = self.received

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((time.monotonic(), dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def alerts(self):
        return [json.loads(body) for _, _, body in list(self.received)]

    def events(self):
        return [(alert["call"], alert["rule"], alert["state"]) for alert in self.alerts()]

    def receipts(self):
        return collections.Counter((alert["id"], alert["state"]) for alert in self.alerts())

    def has(self, call, state):
        return any(alert["call"] == call and alert["state"] == state for alert in self.alerts())


async def sending(app):
    """Until `app` (in process) is the one that sends alerts."""
    await eventually(lambda: app.alerts.sending, timeout=15)


class Feeder:
    """A task posting one sample a call every 200 ms to an in-process server, with the rtt each call has
    now, and the call's `tags` ({call: {name: value}}) if it has some."""

    def __init__(self, http_client, base_url):
        self.http_client = http_client
        self.url = base_url + "/v1/stats/write/"
        self.rtt = {}
        self.tags = {}
        self.first_post = {}
        self.task = None

    async def run(self):
        while True:
            body = [{"call": call, "peer": "alice", "kind": "audio", "stats": {"rtt": rtt, "jitter": 2.0},
                     "tags": self.tags.get(call, {})} for call, rtt in self.rtt.items()]
            if body:
                status, result, _ = await post(self.http_client, self.url, body)
                assert status == 200, result
                for call in self.rtt:
                    self.first_post.setdefault(call, time.monotonic())
            await asyncio.sleep(0.2)

    def start(self):
        self.task = asyncio.ensure_future(self.run())

    async def stop(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


class ProcessFeeder:
    """A thread posting one sample a call every 200 ms to whichever server processes are given, in turn;
    with `tags` ({call: {name: value}}), each call's sample carries its tags."""

    def __init__(self, servers, rtt, tags=None):
        self.servers = servers
        self.rtt = rtt
        self.tags = tags or {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        turn = 0
        while not self.stopping.is_set():
            body = json.dumps([{"call": call, "peer": "alice", "stats": {"rtt": rtt}, "tags": self.tags.get(call, {})}
                               for call, rtt in self.rtt.items()]).encode()
            server = self.servers[turn % len(self.servers)]
            turn += 1
            try:
                urllib.request.urlopen(urllib.request.Request(server.url + "/v1/stats/write/", data=body), timeout=5)
            except OSError:
                pass  # a server being restarted; the next one takes it
            self.stopping.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(10)


def hand_over(feeder, a, b):
    """Once both processes hold the alert as firing, stop the one sending alerts and feed only the other,
    until it sends; returns it (the process that carries the alert on)."""
    wait(lambda: metric(a, "rtcscope_alerts_firing") == 1 and metric(b, "rtcscope_alerts_firing") == 1, timeout=30)
    sender, other = (a, b) if metric(a, "rtcscope_alerts_sender") == 1 else (b, a)
    feeder.servers = [other]
    sender.stop()
    wait(lambda: metric(other, "rtcscope_alerts_sender") == 1, timeout=30)
    return other
