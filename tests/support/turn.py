"""Start a real TURN server (Debian's `coturn`) on free loopback ports, for
calls forced through a relay (`iceTransportPolicy: "relay"`) over UDP, TCP
and TLS."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

from tests.support.influxd import free_port, terminate

USER = "rtcscope"
PASSWORD = "loopback-secret"
REALM = "rtcscope.test"


class Coturn:
    """One turnserver in the foreground: long-term credentials, a UDP and TCP
    listener and a TLS one (a self-signed certificate: the browser must be told
    to accept it) on 127.0.0.1, no DTLS, relaying on 127.0.0.1 to loopback
    peers, no CLI; its own directory holds its (empty) configuration, user
    database, certificate, pid file and log."""

    def __init__(self, directory=None):
        self.directory = directory or tempfile.mkdtemp(prefix="rtcscope-coturn-")
        os.makedirs(self.directory, exist_ok=True)
        self.port = free_tcp_and_udp_port()
        self.tls_port = free_port()
        self.process = None

    def server(self, relay_protocol):
        """`host:port` of the listener that `relay_protocol` ("udp", "tcp", "tls") reaches: what the
        route's `turn_server` dimension says."""
        return f"127.0.0.1:{self.tls_port if relay_protocol == 'tls' else self.port}"

    def ice_server(self, relay_protocol):
        """An RTCIceServer reaching it over `relay_protocol`."""
        scheme, transport = ("turns", "tcp") if relay_protocol == "tls" else ("turn", relay_protocol)
        return {"urls": f"{scheme}:{self.server(relay_protocol)}?transport={transport}",
                "username": USER, "credential": PASSWORD}

    def start(self, timeout=15):
        binary = shutil.which("turnserver")
        if binary is None:
            raise RuntimeError("turnserver not found: install Debian's coturn package (make install)")
        config = os.path.join(self.directory, "turnserver.conf")
        open(config, "w").close()  # not /etc/turnserver.conf
        cert, key = (os.path.join(self.directory, name) for name in ("cert.pem", "key.pem"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        self.log_path = os.path.join(self.directory, "turnserver.log")
        args = [binary, "-c", config, "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
                f"--listening-port={self.port}", f"--tls-listening-port={self.tls_port}", f"--cert={cert}",
                f"--pkey={key}", "--no-dtls", "--allow-loopback-peers", "--no-cli",
                "--lt-cred-mech", f"--user={USER}:{PASSWORD}", f"--realm={REALM}", "--fingerprint",
                f"--userdb={os.path.join(self.directory, 'turndb')}",
                f"--pidfile={os.path.join(self.directory, 'turnserver.pid')}",
                f"--log-file={self.log_path}", "--simple-log", "--no-stdout-log"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.process.returncode}:\n{self.log()}")
            try:
                for port in (self.port, self.tls_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"turnserver did not listen in time:\n{self.log()}") from None
                time.sleep(0.1)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def cleanup(self):
        terminate(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


def free_tcp_and_udp_port():
    """A loopback port free for TCP and for UDP (a TURN listener takes both)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
