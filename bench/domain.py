"""The ingest domain work of one websocket frame, in process: a frame of two
rtcscope.js deltas (fixture reports) through StatsConnection.receive and
commit, for 200 connections with a live feed: orjson parse, delta rebuild,
extraction, line encoding, the collector and the feed row. No socket, no
InfluxDB: the socket layer and storing are measured by bench/fleet.py.

    python -m bench.domain                  # this tree against main
    python -m bench.domain --base HEAD~1 --rounds 31 --profile
    python -m bench.domain --subject HEAD~1 --base HEAD~2   # one commit's step

The baseline is `rtcscope/` of --base (and with --subject, the subject is
that revision's), imported in the same process under another name (the
package imports itself relatively). Each round times one
frame per connection of the subject and of the baseline, in alternating
order, so that load from other processes hits both alike; printed are the
medians of CPU µs per frame (thread CPU clock) and of wall µs per frame, the
median of the per-round CPU ratios, the process's CPU seconds from /proc
with the wall time of the whole comparison, and whether both trees made the
same lines (they should, unless behaviour changed).
"""
import argparse
import hashlib
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.fleetload import delta
from tests.support.reports import clean_reports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONNECTIONS = 200
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NOW_NS = 1_795_536_130_000 * 1_000_000


def _proc_cpu_seconds():
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _load():
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def _feed_class(package):
    """A tree's live feed writer: in storage/feed.py, or in ingest/formats.py in trees before that module."""
    try:
        return importlib.import_module(f"{package}.storage.feed").Feed
    except ModuleNotFoundError:
        return importlib.import_module(f"{package}.ingest.formats").Feed


class Subject:
    """One tree's connections, primed with a full report, and the frames of deltas they get."""

    def __init__(self, package):
        formats = importlib.import_module(f"{package}.ingest.formats")
        connection = importlib.import_module(f"{package}.ingest.connection")
        reports = clean_reports()["caller"]
        full = json.dumps(reports[0], separators=(",", ":")).encode()
        deltas = [delta(reports[i], reports[i + 1]) for i in range(len(reports) - 1)]
        limits = formats.Limits(feed=_feed_class(package)("n1"))
        self.connections = [connection.StatsConnection(f"c{i}", "caller", limits) for i in range(CONNECTIONS)]
        ms = NOW_NS // 1_000_000
        for peer in self.connections:
            peer.commit(peer.receive(b'[{"ts":%d,"report":%s}]' % (ms, full), NOW_NS))
        self.frames = [b'[{"ts":%d,%s},{"ts":%d,%s}]' % (ms, deltas[2 * k], ms + 1000, deltas[2 * k + 1])
                       for k in range(len(deltas) // 2)]
        self.next = 0
        self.digest = hashlib.sha256()
        self.run(len(self.frames), keep=True)  # warm, and what the lines were

    def run(self, count, keep=False):
        for _ in range(count):
            frame_bytes = self.frames[self.next % len(self.frames)]
            self.next += 1
            for peer in self.connections:
                frame = peer.receive(frame_bytes, NOW_NS)
                peer.commit(frame)
                if keep:
                    self.digest.update(b"\n".join(frame.parsed.lines))

    def timed(self, count):
        """(CPU µs, wall µs) per frame of `count` frames per connection."""
        cpu, wall = time.thread_time(), time.perf_counter()
        self.run(count)
        frames = count * CONNECTIONS
        return (time.thread_time() - cpu) / frames * 1e6, (time.perf_counter() - wall) / frames * 1e6


def _package_of(revision, tree, name):
    """`rtcscope/` of `revision` as package `name` under `tree`."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision, "rtcscope"], check=True, capture_output=True).stdout
    unpacked = os.path.join(tree, f"{name}.src")
    os.makedirs(unpacked)
    subprocess.run(["tar", "-x", "-C", unpacked], input=archive, check=True)
    shutil.move(os.path.join(unpacked, "rtcscope"), os.path.join(tree, name))
    return name


def compare(base, subject, rounds, frames, profile):
    with tempfile.TemporaryDirectory(prefix="domain-") as tree:
        sys.path.insert(0, tree)
        subjects = {"subject": Subject("rtcscope" if subject is None else _package_of(subject, tree, "rtcscope_subject")),
                    "baseline": Subject(_package_of(base, tree, "rtcscope_base"))}
    load_before, proc_cpu, wall = _load(), _proc_cpu_seconds(), time.perf_counter()
    results = {"subject": [], "baseline": []}
    for index in range(rounds):
        for name in ("subject", "baseline") if index % 2 else ("baseline", "subject"):
            results[name].append(subjects[name].timed(frames))
    proc_cpu, wall = _proc_cpu_seconds() - proc_cpu, time.perf_counter() - wall
    ratios = [subject[0] / baseline[0] for subject, baseline in zip(results["subject"], results["baseline"])]
    print(f"{subject or 'this tree'} against {base}: {rounds} rounds of {frames} frames x {CONNECTIONS} connections each; "
          f"load {load_before} -> {_load()}; {proc_cpu:.1f} CPU s (/proc) in {wall:.1f} s wall")
    for name, runs in results.items():
        print(f"  {name:8} {statistics.median(run[0] for run in runs):6.1f} CPU µs/frame  "
              f"{statistics.median(run[1] for run in runs):6.1f} wall µs/frame")
    same = len({subject.digest.hexdigest() for subject in subjects.values()}) == 1
    print(f"  subject/baseline CPU: median {statistics.median(ratios):.3f} "
          f"(quartiles {' '.join(f'{q:.3f}' for q in statistics.quantiles(ratios))}); "
          f"lines {'identical' if same else 'DIFFER'}")
    if profile:
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.runcall(subjects["subject"].run, 10)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision of the baseline")
    parser.add_argument("--subject", help="git revision of the subject (default: this tree)")
    parser.add_argument("--rounds", type=int, default=31, help="subject/baseline pairs (at least 2)")
    parser.add_argument("--frames", type=int, default=4, help="frames per connection in one timed run")
    parser.add_argument("--profile", action="store_true", help="then a cProfile of the subject")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    compare(args.base, args.subject, args.rounds, args.frames, args.profile)


if __name__ == "__main__":
    main()
