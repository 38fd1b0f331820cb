"""Run the server as a real process (server.py or the built binary), as an
operator would: for signals, restarts, nginx in front and the binary."""
import contextlib
import os
import signal
import subprocess
import sys

from tests.support.api import get_json
from tests.support.influxd import free_port
from tests.support.waits import wait_for_http

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


@contextlib.contextmanager
def processes_on_one_database(tmp_path, influxdb_url, database, **common):
    """`start(name, **options)` runs a server process on the shared database with a short
    tick and flush and its own spool and log directories; all are stopped on leaving."""
    started = []

    def start(name, **extra):
        options = {"influxdb_url": influxdb_url, "database": database, "tick": "0.2s", "flush_interval": "0.1s",
                   "spool_dir": str(tmp_path / f"spool-{name}"), "wal_dir": str(tmp_path / f"wal-{name}"),
                   **common, **extra}
        server = ServerProcess(str(tmp_path), **options).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
