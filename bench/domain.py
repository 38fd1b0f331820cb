"""The ingest domain work of one websocket frame, in process: a frame of two
rtcscope.js deltas (fixture reports) through StatsConnection.receive and
commit, for 200 connections with a live feed: orjson parse, delta rebuild,
extraction, line encoding, the collector and the feed row. No socket, no
InfluxDB: the socket layer and storing are measured by bench/fleet.py.

    python -m bench.domain                  # this tree against main, alternated
    python -m bench.domain --base HEAD~1 --rounds 9 --profile

Each round runs the subject and the baseline (`rtcscope/` of --base) in
fresh processes, in alternating order so that load from other processes
hits both alike; it prints the medians of CPU µs per frame (from /proc) and
of wall µs per frame, the median of the per-round CPU ratios, and whether
both trees made the same lines (they should, unless behaviour changed).
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONNECTIONS = 200
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds():
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def worker(rounds, profile):
    """Time `rounds` rounds of one frame per connection; print one JSON line."""
    from bench.fleetload import clean_reports, delta
    from rtcscope.ingest import formats
    from rtcscope.ingest.connection import StatsConnection

    reports = clean_reports()["caller"]
    full = json.dumps(reports[0], separators=(",", ":")).encode()
    deltas = [delta(reports[i], reports[i + 1]) for i in range(len(reports) - 1)]
    limits = formats.Limits(feed=formats.Feed("n1"))
    connections = [StatsConnection(f"c{i}", "caller", limits) for i in range(CONNECTIONS)]
    now_ns = 1_795_536_130_000 * 1_000_000
    ms = now_ns // 1_000_000
    for connection in connections:
        connection.commit(connection.receive(b'[{"ts":%d,"report":%s}]' % (ms, full), now_ns))
    frames = [b'[{"ts":%d,%s},{"ts":%d,%s}]' % (ms, deltas[2 * k], ms + 1000, deltas[2 * k + 1])
              for k in range(len(deltas) // 2)]
    digest = hashlib.sha256()

    def run(count, keep=False):
        for index in range(count):
            frame_bytes = frames[index % len(frames)]
            for connection in connections:
                frame = connection.receive(frame_bytes, now_ns)
                connection.commit(frame)
                if keep:
                    digest.update(b"\n".join(frame.parsed.lines))

    run(len(frames), keep=True)  # warm, and what the lines were
    cpu, wall = _cpu_seconds(), time.perf_counter()
    run(rounds)
    cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    frames_run = rounds * CONNECTIONS
    print(json.dumps({"cpu_us": cpu / frames_run * 1e6, "wall_us": wall / frames_run * 1e6,
                      "lines": digest.hexdigest()}))
    if profile:
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        profiler.runcall(run, 10)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)


def _measure(tree, frames, profile=False):
    argv = [sys.executable, os.path.join(ROOT, "bench", "domain.py"), "--worker", "--root", tree, "--frames", str(frames)]
    if profile:
        argv.append("--profile")
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=None if profile else subprocess.PIPE,
                         text=True, timeout=600)
    return json.loads(out.stdout.splitlines()[-1])


def compare(base, rounds, frames, profile):
    with tempfile.TemporaryDirectory(prefix="domain-base-") as tree:
        archive = subprocess.run(["git", "-C", ROOT, "archive", base, "rtcscope"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        with open("/proc/loadavg") as loadavg:
            load_before = loadavg.read().split()[:3]
        results = {"subject": [], "baseline": []}
        for index in range(rounds):
            order = [("subject", ROOT), ("baseline", tree)]
            for name, path in order if index % 2 else order[::-1]:
                results[name].append(_measure(path, frames))
        with open("/proc/loadavg") as loadavg:
            load_after = loadavg.read().split()[:3]
        if profile:
            _measure(ROOT, frames, profile=True)
    medians = {name: {key: statistics.median(run[key] for run in runs) for key in ("cpu_us", "wall_us")}
               for name, runs in results.items()}
    ratios = [subject["cpu_us"] / baseline["cpu_us"] for subject, baseline in zip(results["subject"], results["baseline"])]
    same = {run["lines"] for run in results["subject"] + results["baseline"]}
    print(f"base {base}, {rounds} rounds of {frames} frames x {CONNECTIONS} connections; "
          f"load {' '.join(load_before)} -> {' '.join(load_after)}")
    for name, values in medians.items():
        runs = ", ".join(f"{run['cpu_us']:.1f}" for run in results[name])
        print(f"  {name:8} {values['cpu_us']:6.1f} CPU µs/frame  {values['wall_us']:6.1f} wall µs/frame  (CPU runs {runs})")
    print(f"  subject/baseline CPU: median {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}); "
          f"lines {'identical' if len(same) == 1 else 'DIFFER'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision of the baseline")
    parser.add_argument("--rounds", type=int, default=7, help="subject/baseline pairs")
    parser.add_argument("--frames", type=int, default=50, help="frames per connection in one timed run")
    parser.add_argument("--profile", action="store_true", help="then a cProfile of the subject, on stderr")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path[:1] = [args.root, ROOT]  # rtcscope from the tree under test; the fixture reader from here
        worker(args.frames, args.profile)
    else:
        compare(args.base, args.rounds, args.frames, args.profile)


if __name__ == "__main__":
    main()
