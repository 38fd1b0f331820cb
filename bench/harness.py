"""Processes under test and the load generator: a real influxd, server
processes, wrk, and what the kernel says about their CPU and memory.

Everything listens on 127.0.0.1 and every load run is bounded in time by
wrk's own duration and in waiting by explicit deadlines.
"""
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from tests.support.influxd import Influxd, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
WRK_SCRIPT = os.path.join(BENCH, "wrk", "ingest.lua")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The bench itself could not measure (a process died, a run had errors)."""


def http(method, url, body=None, timeout=10.0, headers=None):
    """(status, body bytes) of one request; never raises for HTTP statuses."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(check, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


_started = []


def stop_all():
    """Stop every process the bench started that is still running (after an error)."""
    for proc in _started:
        proc.stop()


class Proc:
    """A process started by the bench, with its CPU time and memory from /proc."""

    def __init__(self, name, argv, log_dir, env=None, cwd=ROOT):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd,
                                        env={**os.environ, **(env or {})})
        self.pid = self.process.pid
        _started.append(self)

    def check_alive(self):
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def rss_bytes(self):
        return rss_bytes(self.pid)

    def stop(self, timeout=15):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()


def cpu_seconds(pid):
    """User + system CPU seconds of a running process (threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_quiet(pid, busy=0.05, timeout=60.0):
    """Wait (at most `timeout` s) until process `pid` uses under `busy` of a core over a
    second: an influxd still compacting what an earlier benchmark wrote takes a core from
    the next one's measurement. Returns the share it used in its last second."""
    deadline = time.monotonic() + timeout
    while True:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        share = cpu_seconds(pid) - before
        if share < busy or time.monotonic() > deadline:
            return share


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class HTTPProc(Proc):
    """A process serving HTTP on 127.0.0.1:port, ready once `ready_path` answers 200."""

    def __init__(self, name, argv, log_dir, port, ready_path="/healthz", env=None, timeout=30):
        super().__init__(name, argv, log_dir, env=env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: self._ready(ready_path), timeout, f"{name} on {self.url}")

    def _ready(self, path):
        self.check_alive()
        try:
            return http("GET", self.url + path, timeout=1)[0] == 200
        except OSError:
            return False


def start_influxd(work_dir):
    return Influxd(data_dir=os.path.join(work_dir, "influxd")).start()


def start_server(influxd, database, log_dir, name="server", root=ROOT, **options):
    """A real rtcscope-server process against `influxd`; `options` are its --options. `root`:
    the tree whose server.py runs (another version's, exported by bench/pinned.py)."""
    port = free_port()
    argv = [sys.executable, os.path.join(root, "server.py"), f"--port={port}",
            f"--influxdb-url={influxd.url}", f"--database={database}",
            f"--spool-dir={os.path.join(log_dir, name + '-spool')}",
            f"--wal-dir={os.path.join(log_dir, f'{name}-{database}-wal')}"]
    argv += [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    server = HTTPProc(name, argv, log_dir, port)
    wait_until(lambda: database_exists(influxd, database), 30, f"database {database}")
    return server


def database_exists(influxd, database):
    result = influxd.query("SHOW DATABASES")["results"][0]
    return any(row[0] == database for series in result.get("series", []) for row in series.get("values", []))


def start_bare(log_dir):
    port = free_port()
    return HTTPProc("bare", [sys.executable, "-m", "bench.bare", str(port)], log_dir, port, ready_path="/")


def create_database(influxd, database):
    influxd.query(f'CREATE DATABASE "{database}"')


def count_samples(influxd, database, field="rtt"):
    rows = influxd.rows(f'SELECT count("{field}") FROM rtc_stats WHERE time > 0', database)
    return int(rows[0]["count"]) if rows else 0


def wrk(url, args, *, seconds, connections=50, threads=1, timeout="5s", backpressure_ok=False):
    """Run wrk with bench/wrk/ingest.lua for `seconds`; its JSON summary plus
    req/s, wrk's own CPU seconds and the error count. With `backpressure_ok`,
    answers are counted by status and 503s (a full buffer: "retry later") are
    reported as `backpressure`, not as errors."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found: install Debian's wrk package (make install)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout}",
            "-s", WRK_SCRIPT, url, "--", *[str(arg) for arg in args]]
    env = {**os.environ, "RTCSCOPE_WRK_STATUSES": "1"} if backpressure_ok else None
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = None
    for line in completed.stdout.splitlines():
        if line.startswith("{"):
            summary = json.loads(line)
    if completed.returncode != 0 or summary is None:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stdout[-400:]} {completed.stderr[-400:]}")
    summary["seconds"] = summary["duration_us"] / 1e6
    summary["rps"] = summary["requests"] / summary["seconds"]
    summary["backpressure"] = summary["statuses"].get("503", 0)
    summary["error_count"] = sum(summary["errors"].values()) - summary["backpressure"]
    summary["wrk_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return summary


@contextlib.contextmanager
def cpu_meter(procs):
    """CPU seconds each of `procs` (name -> Proc or pid) used inside the block."""
    pids = {name: getattr(proc, "pid", proc) for name, proc in procs.items()}
    start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    used = {}
    yield used
    for name, pid in pids.items():
        used[name] = cpu_seconds(pid) - start[name]


def influx_write_url(influxd, database):
    return f"{influxd.url}/write?" + urllib.parse.urlencode({"db": database})
