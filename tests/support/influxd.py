"""Start a real influxd (Debian's `influxdb` package) on free loopback ports; put a slow link in front of it."""
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import urllib.request

from tests.support.waits import wait_for_http

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  index-version = "tsi1"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "1m"
[coordinator]
  log-queries-after = "0s"
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
"""


# An influxd given no data directory keeps its data, thrown away with it, in memory where the
# machine has a tmpfs: on disk, a test session's hundreds of small databases took 2.5 times as
# long to create and 45 s to delete at the end (ext4 mounted with discard).
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate(process, timeout=10):
    """SIGTERM a test's child process and wait; SIGKILL if it hangs (None and exited ones: nothing)."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Influxd:
    """One influxd process; `stop()`/`start()` again keeps its data (for outage tests).
    `data_options` override settings of its [data] section (e.g. a small
    max-series-per-database, which 1.x enforces with the inmem index only)."""

    def __init__(self, data_dir=None, data_options=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="rtcscope-influxd-", dir=SCRATCH)
        os.makedirs(self.data_dir, exist_ok=True)
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config_path = os.path.join(self.data_dir, "influxdb.conf")
        with open(self.config_path, "w") as config:
            text = CONFIG.format(data=self.data_dir, http_port=self.http_port, rpc_port=self.rpc_port)
            for name, value in (data_options or {}).items():
                text = re.sub(rf"(?m)^  {name} = .*\n", "", text)
                text = text.replace("[data]\n", f"[data]\n  {name} = {json.dumps(value)}\n", 1)
            config.write(text)
        self.process = None

    def start(self, timeout=30):
        binary = shutil.which("influxd")
        if binary is None:
            raise RuntimeError("influxd not found: install Debian's influxdb package (make install)")
        self.log = open(os.path.join(self.data_dir, "influxd.log"), "ab")
        self.process = subprocess.Popen([binary, "run", "-config", self.config_path],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_http(self.process, self.url + "/ping", timeout, lambda: f"influxd (see {self.data_dir})")
        return self

    def stop(self):
        terminate(self.process)
        self.process = None

    def query(self, statement, database=None):
        """Run InfluxQL over plain HTTP (independent of the server under test)."""
        params = {"q": statement, "epoch": "ms"}
        if database:
            params["db"] = database
        body = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(self.url + "/query", data=body, timeout=10) as response:
            return json.loads(response.read())

    def write(self, lines, database, retention_policy="rtcscope"):
        """Write line protocol straight to InfluxDB (points the server under test does not write)."""
        params = urllib.parse.urlencode({"db": database, "rp": retention_policy})
        body = "\n".join(lines).encode()
        with urllib.request.urlopen(f"{self.url}/write?{params}", data=body, timeout=10) as response:
            assert response.status == 204, response.status

    def rows(self, statement, database):
        """All rows of all series of one statement, as dicts with the series tags."""
        result = self.query(statement, database)["results"][0]
        if "error" in result:
            raise AssertionError(result["error"])
        out = []
        for series in result.get("series", []):
            for values in series["values"]:
                row = dict(zip(series["columns"], values))
                row.update(series.get("tags") or {})
                out.append(row)
        return out

    def has_database(self, name):
        """Whether `name` exists yet (a server process creates its database in the background)."""
        series = self.query("SHOW DATABASES")["results"][0].get("series", [])
        return any([name] in s.get("values", []) for s in series)

    def write_requests(self):
        """How many write requests influxd's HTTP service has received."""
        result = self.query("SHOW STATS FOR 'httpd'")["results"][0]
        for series in result.get("series", []):
            row = dict(zip(series["columns"], series["values"][0]))
            return row.get("writeReq", 0)
        return 0

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def count_points(influxd, database, measurement="rtc_stats", field=None):
    """Points in a measurement: all rows, or (cheaper for big counts) those with `field`."""
    if field is None:
        return len(influxd.rows(f'SELECT * FROM "{measurement}" WHERE time > 0', database))
    rows = influxd.rows(f'SELECT count("{field}") FROM "{measurement}" WHERE time > 0', database)
    return rows[0]["count"] if rows else 0


class SlowProxy:
    """TCP proxy to InfluxDB that holds every chunk of every answer for a while."""

    def __init__(self, target_port, delay):
        self.target_port = target_port
        self.delay = delay
        self.connections = 0
        self._handlers = set()

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, client_reader, client_writer):
        self.connections += 1
        self._handlers.add(asyncio.current_task())
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(client_reader, upstream_writer, 0),
                             self._pipe(upstream_reader, client_writer, self.delay), return_exceptions=True)

    @staticmethod
    async def _pipe(reader, writer, delay):
        try:
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def close(self):
        """Stop listening and drop the connections, answers still held included."""
        self.server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
