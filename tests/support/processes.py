"""Run the server as a real process (server.py or the built binary), as an
operator would: for signals, restarts, nginx in front and the binary."""
import contextlib
import os
import signal
import subprocess
import sys

from tests.support.api import get_json
from tests.support.influxd import free_port
from tests.support.waits import wait, wait_for_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ServerProcess:
    def __init__(self, log_dir, command=None, port=None, cwd=ROOT, **options):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = command or [sys.executable, os.path.join(ROOT, "server.py")]
        # Each process its own write-ahead log (a directory is locked by one process) unless told.
        self.options = {"address": "127.0.0.1", "port": self.port,
                        "wal_dir": os.path.join(log_dir, f"wal-{self.port}"), **options}
        self.log_path = os.path.join(log_dir, f"server-{self.port}.log")
        self.cwd = cwd
        self.process = None

    def start(self, timeout=60):
        args = [f"--{name}={value}" for name, value in self.options.items()]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command + args, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.cwd)
        wait_for_http(self.process, self.url + "/healthz", timeout, lambda: f"server\n{self.log()}\n")
        return self

    def signal(self, signum):
        self.process.send_signal(signum)

    def wait(self, timeout=60):
        return self.process.wait(timeout)

    def stop(self):
        """SIGTERM (the graceful path); SIGKILL only if it hangs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def get_json(self, path, headers=None):
        return get_json(self.url + path, headers)

    def wait_ready(self, timeout=60):
        """Until /readyz says 200: InfluxDB reachable, the write-ahead log not full."""
        wait(lambda: self.get_json("/readyz")[0] == 200, timeout)
        return self


@contextlib.contextmanager
def server_processes(directory, **common):
    """`start(name=None, **options)` runs a server process with `common` and `options`; unless
    told, its spool and write-ahead log are its name's (a number by default) under `directory`.
    Every one still running is stopped on leaving."""
    started = []

    def start(name=None, **options):
        name = len(started) if name is None else name
        server = ServerProcess(str(directory), **{"spool_dir": directory / f"spool-{name}",
                                                  "wal_dir": directory / f"wal-{name}", **common, **options})
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()
