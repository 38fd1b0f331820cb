"""Start a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port."""
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from tests.support.influxd import free_port, terminate
from tests.support.waits import wait_for_http

# One receiver that notifies nobody: the tests read what Alertmanager holds through its API.
CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


class Alertmanager:
    """One alertmanager process, clustering off; `stop()` then `start()` keeps its port
    (the alerts it held are gone, as in a real restart)."""

    def __init__(self, config=CONFIG):
        self.dir = tempfile.mkdtemp(prefix="rtcscope-alertmanager-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = os.path.join(self.dir, "alertmanager.yml")
        with open(self.config_path, "w") as out:
            out.write(config)
        self.process = None

    def start(self, timeout=30):
        binary = shutil.which("prometheus-alertmanager")
        if binary is None:
            raise RuntimeError("prometheus-alertmanager not found: install Debian's prometheus-alertmanager "
                               "package (make install)")
        self.log = open(os.path.join(self.dir, "alertmanager.log"), "ab")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.config_path}", f"--storage.path={os.path.join(self.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_http(self.process, self.url + "/-/ready", timeout, lambda: f"alertmanager (see {self.dir})")
        return self

    def stop(self):
        terminate(self.process)
        self.process = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def alerts(self, *matchers):
        """GET /api/v2/alerts: the alerts it holds that have not ended, filtered by matchers
        such as 'alertname="high_rtt"'."""
        query = urllib.parse.urlencode([("filter", matcher) for matcher in matchers])
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=10) as response:
            return json.loads(response.read())

    def post(self, alerts):
        """POST /api/v2/alerts: (status, body)."""
        request = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
