"""Where the server's CPU goes: py-spy sampling a real server process under
the same loads as the benchmarks (in runs of their own, not the measured ones).

For each load: the share of samples by component (the file the sampled
frame was executing in) and the functions with the most samples of their
own. py-spy comes from bench/requirements.txt (`make bench` installs it).
"""
import collections
import os
import shutil
import signal
import subprocess
import sys
import time

from . import harness, ingest, live
from .harness import BenchError, wrk

RATE = 250  # samples per second
TOP = 8
# Leaf-frame file → component; the first match wins.
COMPONENTS = [
    ("rtcscope/ingest/", "parse and validate"),
    ("rtcscope/registry.py", "parse and validate"),
    ("rtcscope/storage/lines.py", "parse and validate"),
    ("rtcscope/storage/feed.py", "parse and validate"),
    ("rtcscope/storage/", "batching writer + InfluxDB client"),
    ("aioinflux/", "batching writer + InfluxDB client"),
    ("aiohttp/", "batching writer + InfluxDB client"),
    ("rtcscope/live/", "detector"),
    ("rtcscope/alerts/", "detector"),  # evaluated in the detector's tick
    ("handlers/ws.py", "websocket fan-out"),
    ("tornado/websocket.py", "websocket fan-out"),
    ("handlers/", "handlers (ingest, base)"),
    ("rtcscope/telemetry.py", "telemetry"),
    ("prometheus_client/", "telemetry"),
    ("server.py", "handlers (ingest, base)"),
    ("tornado/web.py", "tornado RequestHandler"),
    ("tornado/http1connection.py", "tornado HTTP/1.1 + sockets"),
    ("tornado/iostream.py", "tornado HTTP/1.1 + sockets"),
    ("tornado/httputil.py", "tornado HTTP/1.1 + sockets"),
    ("tornado/httpserver.py", "tornado HTTP/1.1 + sockets"),
    ("tornado/routing.py", "tornado RequestHandler"),
    ("tornado/", "tornado IOLoop and futures"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("logging/", "logging"),
]


def py_spy():
    return shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))


class Sampler:
    """py-spy attached to a process until stopped; raw folded stacks in `path`."""

    def __init__(self, pid, path):
        self.path = path
        self.process = subprocess.Popen([py_spy(), "record", "-p", str(pid), "-r", str(RATE), "-f", "raw",
                                         "-o", path, "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if not os.path.exists(self.path):
            raise BenchError(f"py-spy wrote no profile: {self.process.stderr.read().decode()[-300:]}")


def summarize(path):
    """(samples, [(component, share)], [(function, self share)])."""
    components, functions, total = collections.Counter(), collections.Counter(), 0
    with open(path) as folded:
        for line in folded:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            count = int(count)
            total += count
            leaf = stack.split(";")[-1]
            name, _, location = leaf.partition(" (")
            filename = location.rsplit(":", 1)[0]
            components[next((label for key, label in COMPONENTS if key in filename), "other")] += count
            functions[f"{name} ({_short(filename)})"] += count
    if not total:
        raise BenchError("the profile has no samples")
    return (total, [(label, count / total) for label, count in components.most_common()],
            [(name, count / total) for name, count in functions.most_common(TOP)])


def _short(filename):
    for marker in ("site-packages/", "python3.11/", harness.ROOT + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _describe(section, load, path):
    total, components, functions = summarize(path)
    section.note(f"**{load}** ({total:,} samples): " +
                 ", ".join(f"{label} {share:.0%}" for label, share in components if share >= 0.01) + ".")
    section.note("Most samples of their own: " + ", ".join(f"`{name}` {share:.1%}" for name, share in functions) + ".")


def _profiled(ctx, section, load, pid, run):
    """Sample `pid` while `run()` loads it; a profile that cannot be taken
    (py-spy refused, say) is noted, not an error: it is not a measured figure."""
    path = os.path.join(ctx.work_dir, f"profile-{len(section.notes)}.txt")
    try:
        sampler = Sampler(pid, path)
        try:
            run()
        finally:
            sampler.stop()
        _describe(section, load, path)
    except BenchError as exc:
        section.note(f"**{load}**: no profile ({exc}).")


def profile(ctx, section):
    if not py_spy():
        section.note("py-spy is not installed (pip install -r bench/requirements.txt): no profile taken.")
        return
    body_path = os.path.join(ctx.work_dir, "profile-single.json")
    with open(body_path, "wb") as out:
        out.write(ingest.SINGLE_BODY)
    loads = [("one JSON sample per request", ["file", body_path, "application/json"]),
             ("100-sample batches", ["batch", "json", ingest.BATCH_SAMPLES, ingest.BATCH_CALLS, None])]
    for load, args in loads:
        server = harness.start_server(ctx.influxd, ctx.database("profile"), ctx.log_dir, name="server-profile")
        args = [int(time.time() * 1e6) if arg is None else arg for arg in args]
        try:
            _profiled(ctx, section, load, server.pid,
                      lambda: wrk(server.url + ingest.WRITE_PATH, args, seconds=ctx.mode.seconds + 2))
        finally:
            server.stop()
    with live.fed_server(ctx, "profile-live") as (server, tick_log, ws_url):
        process, result_path = live.run_viewers(ctx, ws_url, ctx.mode.viewers, ctx.mode.seconds + 2, "profile")
        live.wait_ready(process, 150)
        _profiled(ctx, section, f"{ctx.mode.viewers:,} viewers, {live.LIVE_CALLS} live calls", server.pid,
                  lambda: live.finish_viewers(process, result_path, ctx.mode.seconds + 120))
    section.note(f"py-spy at {RATE} Hz on the server process, in runs separate from the measured ones; "
                 "shares are of the samples in which the process was running Python (idle time excluded).")
