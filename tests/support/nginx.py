"""nginx in front of server processes, with conf/nginx.conf as shipped (only its ports changed)."""
import os
import re
import shutil
import socket
import subprocess
import time

from tests.support.influxd import free_port
from tests.support.processes import ROOT

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

MAIN_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/rtcscope.conf;
}}
"""


def site_config(listen_port, upstream_ports, ingest_limit=True, ingest_ports=None):
    """The shipped file with only its ports changed: loopback and free ones, the
    ingest upstreams' `ingest_ports` (default: the same processes), and, for load
    generators that are one address, without its per-address ingest limit."""
    with open(os.path.join(ROOT, "conf", "nginx.conf")) as shipped:
        text = shipped.read()
    upstream_lines = re.findall(r"^ *server 127\.0\.0\.1:\d+;$", text, re.M)
    assert len(upstream_lines) == 4 * len(upstream_ports), upstream_lines  # the main, ingest, rtcstats, janus upstreams
    ingest_ports = ingest_ports or upstream_ports
    for line, port in zip(upstream_lines, upstream_ports + ingest_ports * 3):
        text = text.replace(line, re.sub(r":\d+;", f":{port};", line), 1)
    text, listens = re.subn(r"^( *)listen 80;$", rf"\1listen 127.0.0.1:{listen_port};", text, flags=re.M)
    assert listens == 1
    if not ingest_limit:
        text, limits = re.subn(r"^ *limit_req zone=rtcscope_ingest .*\n", "", text, flags=re.M)
        assert limits == 3  # /rtcstats, /v1/stats/ws, /v1/stats/write
    return text


class Nginx:
    def __init__(self, prefix, upstream_ports, ingest_limit=True, ingest_ports=None):
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        os.makedirs(prefix, exist_ok=True)
        with open(os.path.join(prefix, "rtcscope.conf"), "w") as site:
            site.write(site_config(self.port, upstream_ports, ingest_limit, ingest_ports))
        with open(os.path.join(prefix, "nginx.conf"), "w") as main:
            main.write(MAIN_CONF.format(prefix=prefix))
        self.process = None

    def start(self):
        args = [NGINX, "-p", self.prefix, "-c", os.path.join(self.prefix, "nginx.conf"),
                "-e", os.path.join(self.prefix, "error.log")]
        check = subprocess.run(args + ["-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + self.error_log())

    def error_log(self):
        with open(os.path.join(self.prefix, "error.log"), errors="replace") as log:
            return log.read()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
