"""Alerts from outside the server: a rules file, and a real webhook receiver."""
import collections
import http.server
import json
import threading
import time

from tests.support.influxd import free_port


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
