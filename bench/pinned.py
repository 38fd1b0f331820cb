"""The ingest paths against a pinned older version of the server, in the same run.

The pinned commit's tree is exported from this checkout's git history
(`git archive`) into the bench's scratch directory, and its server.py runs
on this virtualenv against the same influxd with the same options. Each path
alternates the two servers round by round (A B, B A, ...; at least three
rounds, the mode's if more), and the ratio is the median of the per-round
ratios of server CPU (from /proc):

- one JSON sample per POST (wrk, 50 keep-alive connections): CPU per request;
- 100 samples per POST (fresh bodies from wrk), until the server has written
  every acknowledged sample to InfluxDB: CPU per sample;
- the shipped client's websocket (bench/fleetload.py: a full report, then
  deltas, two reports per frame, every 2 s per peer): CPU per peer-second.

A path more than 10 % dearer than the pinned version is flagged (its target is
missed, so `--strict` fails the run). Without git history (a tarball), or
without the pinned commit in it (a shallow clone), the section says so and
measures nothing. The pinned version must still run on this virtualenv: when
requirements.txt drops something it needs, the section reports its error.
"""
import os
import statistics
import subprocess

from . import fleet, harness, ingest
from .report import spread

# The version the ingest paths are held against: a landed commit of main. Move it forward
# when a change to the ingest paths' cost has landed and its figures are accepted (a faster
# path becomes the floor; a dearer one that a feature needs is explained in docs/PERFORMANCE.md):
# put that commit here (`git log --oneline main`), run `make bench`, and note the move there.
PINNED_COMMIT = "5b111cc"
DEARER = 1.10  # flagged beyond this ratio of CPU to the pinned version's
MIN_ROUNDS = 3  # a flag on two rounds of this shared machine would often be its noise
WS_SIZES = {"quick": {"peers": 500, "warmup": 3, "seconds": 6}, "full": {"peers": 1000, "warmup": 5, "seconds": 15}}


def export(ctx):
    """(the pinned tree's directory, None), or (None, why it cannot be had)."""
    found = subprocess.run(["git", "cat-file", "-e", f"{PINNED_COMMIT}^{{commit}}"], cwd=harness.ROOT,
                           capture_output=True, text=True, timeout=30)
    if found.returncode != 0:
        inside = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=harness.ROOT, capture_output=True, timeout=30)
        if inside.returncode != 0:
            return None, "this checkout has no git history (a tarball?)"
        return None, f"commit {PINNED_COMMIT} is not in this clone's history (a shallow clone?)"
    tree = os.path.join(ctx.work_dir, f"pinned-{PINNED_COMMIT}")
    os.makedirs(tree)
    archive = subprocess.run(["git", "archive", "--format=tar", PINNED_COMMIT], cwd=harness.ROOT,
                             capture_output=True, check=True, timeout=120)
    subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True, capture_output=True, timeout=120)
    return tree, None


def pinned(ctx, section):
    tree, missing = export(ctx)
    if tree is None:
        section.note(f"Skipped: {missing}; nothing to compare with.")
        return
    flagged = []
    for what, unit, (ours, theirs, detail) in (
            ("one JSON sample per POST: server CPU per request", "µs", one_sample(ctx, tree)),
            (f"{ingest.BATCH_SAMPLES} samples per POST, until written: server CPU per sample", "µs",
             batched(ctx, tree)),
            ("the shipped client's websocket (deltas, 2 reports a frame): server CPU per peer-second", "µs",
             websocket(ctx, tree))):
        ratio = statistics.median(o / t for o, t in zip(ours, theirs))
        section.add(what, statistics.median(ours), unit, f"pinned {PINNED_COMMIT}", statistics.median(theirs),
                    target=f"≤ {DEARER:.2f}× the pinned version", met=ratio <= DEARER, ratio_override=ratio)
        section.note(f"{what.split(':')[0]}: ratio per round {spread(list(zip(ours, theirs)))}; {detail}")
        if ratio > DEARER:
            flagged.append(f"{what.split(':')[0]} ({ratio:.2f}×)")
    if flagged:
        section.notes.insert(0, f"**DEARER THAN THE PINNED VERSION {PINNED_COMMIT} by more than "
                                f"{DEARER - 1:.0%}: {'; '.join(flagged)}.**")
    section.note(f"The pinned version is commit {PINNED_COMMIT} ({_subject()}), exported with git archive and run "
                 f"on this virtualenv with the same options; {rounds(ctx)} rounds per path, alternating which "
                 "server goes first. Ratio: this checkout's CPU over the pinned version's (below 1: cheaper). "
                 "The constant PINNED_COMMIT in bench/pinned.py says how to move it.")


def rounds(ctx):
    return max(MIN_ROUNDS, ctx.mode.rounds)


def _subject():
    done = subprocess.run(["git", "log", "-1", "--format=%ad, %s", "--date=short", PINNED_COMMIT], cwd=harness.ROOT,
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip()[:100]


def one_sample(ctx, tree):
    body_path = os.path.join(ctx.work_dir, "pinned-single.json")
    with open(body_path, "wb") as out:
        out.write(ingest.SINGLE_BODY)
    ours = harness.start_server(ctx.influxd, ctx.database("pin_single"), ctx.log_dir, name="server-pin-single")
    theirs = harness.start_server(ctx.influxd, ctx.database("pin_single"), ctx.log_dir, name="pinned-single",
                                  root=tree)
    try:
        mine, old = ingest.compare_keepalive(ctx, ("this", ours), ("pinned", theirs), body_path, "application/json",
                                             rounds(ctx))
    finally:
        ours.stop()
        theirs.stop()
    per_request = [[run["cpu"] / run["requests"] * 1e6 for run in runs] for runs in (mine, old)]
    p99 = [statistics.median(run["latency_us"]["p99"] / 1000 for run in runs) for runs in (mine, old)]
    rps = [statistics.median(run["rps"] for run in runs) for runs in (mine, old)]
    return (*per_request, f"{rps[0]:,.0f} against {rps[1]:,.0f} requests/s, p99 {p99[0]:.1f} against "
                          f"{p99[1]:.1f} ms (wrk, {ctx.mode.seconds} s a round).")


def batched(ctx, tree):
    per_sample = {"this": [], "pinned": []}
    refused = {"this": [], "pinned": []}
    for side, root in ingest._alternating(rounds(ctx), ("this", harness.ROOT), ("pinned", tree)):
        harness.wait_quiet(ctx.influxd.process.pid)
        database = ctx.database(f"pin_batch_{side}")
        server = harness.start_server(ctx.influxd, database, ctx.log_dir, name=f"server-pin-batch-{side}", root=root)
        try:
            rate, cores, backpressure = ingest.batched_load(ctx, server.url, [server], database, {"server": server})
        finally:
            server.stop()
        per_sample[side].append(cores["server"] / rate * 1e6)
        refused[side].append(backpressure)
    return (per_sample["this"], per_sample["pinned"],
            f"503 answers (buffer full) {', '.join(f'{share:.1%}' for share in refused['this'])} against "
            f"{', '.join(f'{share:.1%}' for share in refused['pinned'])}; their samples are not counted.")


def websocket(ctx, tree):
    sizes = WS_SIZES[ctx.mode.name]
    per_peer_second = {"this": [], "pinned": []}
    p99 = {"this": [], "pinned": []}
    for side, root in ingest._alternating(rounds(ctx), ("this", harness.ROOT), ("pinned", tree)):
        cpu, summary = fleet.run_load(ctx, f"ws_pin_{side}", {}, sizes["peers"], sizes, root)
        per_peer_second[side].append(cpu)
        p99[side].append(summary["p99_ms"])
    return (per_peer_second["this"], per_peer_second["pinned"],
            f"{sizes['peers']:,} peers, servers at their defaults (the detector beside the ingest); ack p99 "
            f"{statistics.median(p99['this']):.0f} against {statistics.median(p99['pinned']):.0f} ms.")
