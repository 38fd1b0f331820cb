"""Run the benchmarks, print the table and write the Markdown report.

    python -m bench                 # quick (CI-size), report in bench/results/
    python -m bench --full          # longer runs, report in docs/PERFORMANCE.md
    python -m bench --only single,batched

Exit status 1 when a benchmark could not measure (a process died, requests
failed, acknowledged samples went missing); with --strict also when a
target was missed.
"""
import argparse
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

from . import (
    alerts,
    calls,
    counters,
    diagnosis,
    dimensions,
    fleet,
    graphs,
    harness,
    ingest,
    janus,
    jsonlibs,
    live,
    onetick,
    partitions,
    pinned,
    profile,
    scaling,
    wal,
    writes,
)
from .harness import BenchError
from .report import Section, markdown, text_table, update_document


@dataclass(frozen=True)
class Mode:
    name: str
    seconds: int  # one load run
    rounds: int  # subject/baseline pairs per comparison
    viewers: int  # websocket viewers in the fan-out benchmark
    ticks: int  # seconds each viewer phase watches
    probes: int  # calls whose start and end are timed
    tick_calls: tuple  # live calls at which a detector tick is timed
    tick_rounds: int  # ticks timed at each
    write_points: int  # points per InfluxDB write measurement
    write_rounds: int  # each write variant right after its baseline, this many times
    tick_baseline: int = 1000  # per-call tick cost of this many calls is the baseline
    feed_calls: tuple = (1000, 5000, 20000)  # live calls at which incremental and whole-window ticks are compared
    feed_ticks: int = 4  # ticks of each compared at each
    realtime_calls: tuple = (5000, 10000)  # the detector on its 1 s schedule, arrivals beside it: (baseline, largest)
    realtime_target: int = 20000  # live calls of the detector's tick alone (more than the machine writes in real time)
    realtime_seconds: int = 20  # measured at each
    tick_target: int = 20000  # real calls of the detector's targets (onetick's driver)
    tick_target_ticks: int = 3  # ticks timed there


MODES = {
    "quick": Mode("quick", seconds=3, rounds=2, viewers=1000, ticks=10, probes=6,
                  tick_calls=(10, 100, 1000, 5000), tick_rounds=3, write_points=120_000, write_rounds=2),
    "full": Mode("full", seconds=10, rounds=4, viewers=1000, ticks=30, probes=12,
                 tick_calls=(10, 50, 100, 500, 1000, 2000, 5000), tick_rounds=5, write_points=200_000, write_rounds=3,
                 feed_ticks=8, tick_target_ticks=5),
}

# key, section titles, function(ctx, *sections)
BENCHMARKS = [
    ("single", ["1. Ingest, one JSON sample per request, 50 keep-alive connections"], ingest.single),
    ("batched", [f"2. Ingest, batched bodies ({ingest.BATCH_SAMPLES} samples per request), end to end into InfluxDB"],
     ingest.batched),
    ("prototype", ["3. The 2015 Flask prototype's write path (historical baseline)"], ingest.prototype),
    ("pinned", [f"3b. Ingest paths against the pinned version {pinned.PINNED_COMMIT}: more than 10 % dearer is "
                "flagged"], pinned.pinned),
    ("live", ["4. Fan-out: 1,000 websocket viewers of one metric, 50 live calls",
              "5. Detection latency: call start and end at a viewer"], live.live),
    ("fleet", ["8. Fleet ingest: the shipped client over the websocket against POST, one report per peer-second"],
     fleet.fleet),
    ("janus", ["Janus: server CPU per media statistics event against a JSON sample of the same metrics"],
     janus.janus_events),
    ("wal", ["Write-ahead log: cost per ingest request against memory only"], wal.wal_cost),
    ("writes", ["Writer: batch size, concurrent writes and gzip to InfluxDB"], writes.write_batching),
    ("nginx", ["6a. Scaling: batched ingest through nginx, 1 and 2 server processes"], scaling.processes),
    ("ticks", ["6b. Scaling: detector tick cost per live call, 10 to 5,000 live calls"], scaling.detector_curve),
    ("feed", ["6c. Detector at fleet scale: incremental feed reads against whole-window reads, 1,000 to 20,000 "
              "live calls"], scaling.detector_feed),
    ("realtime", ["6d. Detector in real time: its 1 s schedule with arrivals written beside it; its tick at 20,000 live calls"],
     scaling.detector_realtime),
    ("tick", ["6e. The detector's targets at 20,000 real calls: a tick's CPU, the loop's longest hold, the "
              "columnar quality against the per-call path"], onetick.detector_tick),
    ("calls", ["7. Fleet list: GET /v1/calls/ with 10,000 calls, worst first, paged"], calls.fleet_list),
    ("graphs", ["9. Live graphs at 20,000 live calls: the first viewer's snapshot, its queries, the followed graphs' "
                "cost per tick"], graphs.graphs),
    ("partitions", ["10. Past one detector: the feed read of one partition of four against the whole feed, "
                    "20,000 live calls"], partitions.partitions),
    ("alerts", ["Alert rules: CPU of one tick's evaluation, 20,000 live peers"], alerts.alert_rules),
    ("json", ["Parsing and JSON libraries on the server's real bodies and messages"], jsonlibs.json_libraries),
    ("dimensions", ["Dimensions: cost per ingest request, with them and without (§15)"], dimensions.dimensions),
    ("diagnosis", ["Diagnosis: breakdown and explain over 10,000 live calls"], diagnosis.diagnosis),
    ("counters", ["/metrics counters on the ingest hot path"], counters.counters),
    ("profile", ["Profile: where a server process spends its CPU"], profile.profile),
]


class Context:
    """What every benchmark shares: the mode, a scratch directory and one influxd."""

    def __init__(self, mode, work_dir):
        self.mode = mode
        self.work_dir = work_dir
        self.log_dir = os.path.join(work_dir, "logs")
        os.makedirs(self.log_dir)
        self.influxd = harness.start_influxd(work_dir)
        self._names = itertools.count()

    def database(self, label):
        return f"bench_{label}_{next(self._names)}"

    def close(self):
        self.influxd.cleanup()


def conditions(mode, started, load_before):
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    influxd = subprocess.run(["influxd", "version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=harness.ROOT).stdout.strip() or "?"
    load_after = os.getloadavg()
    return (f"Run: `{mode.name}` mode, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
            f"commit {commit}, {time.time() - started:.0f} s in all. Machine: {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, {influxd}, load average {load_before[0]:.1f} before and "
            f"{load_after[0]:.1f} after (the machine is shared, so absolute numbers move; the ratios are "
            "each against a baseline measured back to back in this run).")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="longer runs for docs/PERFORMANCE.md")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(b[0] for b in BENCHMARKS))
    parser.add_argument("--doc", help="Markdown report to update (default: docs/PERFORMANCE.md with --full, "
                                      "bench/results/PERFORMANCE-quick.md otherwise)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    mode = MODES["full" if args.full else "quick"]
    wanted = set(filter(None, args.only.split(",")))
    unknown = wanted - {key for key, _, _ in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    doc = args.doc or (os.path.join(harness.ROOT, "docs", "PERFORMANCE.md") if args.full
                       else os.path.join(harness.BENCH, "results", "PERFORMANCE-quick.md"))

    started, load_before = time.time(), os.getloadavg()
    work_dir = tempfile.mkdtemp(prefix="rtcscope-bench-")
    sections = []
    ctx = Context(mode, work_dir)
    try:
        for key, titles, run in BENCHMARKS:
            if wanted and key not in wanted:
                continue
            parts = [Section(title) for title in titles]
            began, load = time.monotonic(), os.getloadavg()[0]
            try:
                run(ctx, *parts)
            except Exception as exc:  # noqa: BLE001  (one broken benchmark must not hide the others)
                if not isinstance(exc, (BenchError, OSError, subprocess.SubprocessError)):
                    traceback.print_exc()
                for section in parts:
                    section.error = section.error or f"{type(exc).__name__}: {exc}"
            for section in parts:
                section.seconds = time.monotonic() - began
                section.note(f"Load average {load:.1f} when this started, {os.getloadavg()[0]:.1f} when it ended.")
            sections.extend(parts)
            print(text_table(parts), flush=True)
    finally:
        harness.stop_all()
        ctx.close()
    shutil.rmtree(work_dir, ignore_errors=True)

    update_document(doc, markdown(sections, conditions(mode, started, load_before)))
    errors = [s.title for s in sections if s.error]
    missed = [f"{s.title}: {f.what}" for s in sections for f in s.figures if f.met is False]
    print(f"\n{len(sections)} benchmarks in {time.time() - started:.0f} s; report: {os.path.relpath(doc)}")
    for what in missed:
        print(f"target missed: {what}")
    for title in errors:
        print(f"could not measure: {title}")
    return 1 if errors or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
