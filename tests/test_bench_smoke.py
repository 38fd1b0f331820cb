"""The benchmark harness itself (`make bench` is not part of the test run):
figures against baselines, the report block in a document, one short wrk run."""
import json
import os
import subprocess
import sys

import pytest

from bench import harness
from bench.ingest import SINGLE_BODY
from bench.report import BEGIN, END, Section, markdown, median_ratio, text_table, update_document


def test_figures_render_with_their_same_run_baseline_and_verdict():
    section = Section("1. Ingest")
    section.add("requests/s", 3000.0, "req/s", "bare", 4000.0, target="ratio ≥ 0.8", met=False)
    section.add("latency p99", 12.5, "ms", "bare", 10.0)
    section.note("2 rounds")
    text = text_table([section])
    assert "3,000 req/s" in text and "bare: 4,000 req/s" in text and "0.75" in text and "MISSED" in text
    document = markdown([section], "Run: test.")
    assert document.startswith(BEGIN) and document.endswith(END)
    assert "| requests/s | 3,000 req/s | bare: 4,000 req/s | 0.75 | ratio ≥ 0.8 | MISSED |" in document
    assert "| latency p99 | 12.5 ms | bare: 10.0 ms | 1.25 |  |  |" in document
    assert median_ratio([(3.0, 4.0), (1.0, 1.0), (2.0, 1.0)]) == 1.0


def test_the_generated_block_is_replaced_and_the_prose_around_it_kept(tmp_path):
    path = tmp_path / "PERFORMANCE.md"
    path.write_text(f"# Performance\n\nWritten by hand.\n\n{BEGIN}\nold figures\n{END}\n\n## After\n")
    update_document(str(path), f"{BEGIN}\nnew figures\n{END}")
    text = path.read_text()
    assert text == f"# Performance\n\nWritten by hand.\n\n{BEGIN}\nnew figures\n{END}\n\n## After\n"
    fresh = tmp_path / "new.md"
    update_document(str(fresh), f"{BEGIN}\nx\n{END}")
    assert fresh.read_text() == f"{BEGIN}\nx\n{END}\n"


@pytest.mark.slow
def test_a_short_wrk_run_against_the_bare_baseline(tmp_path):
    body = tmp_path / "body.json"
    body.write_bytes(SINGLE_BODY)
    bare = harness.start_bare(str(tmp_path))
    try:
        summary = harness.wrk(bare.url + "/v1/stats/write/", ["file", str(body), "application/json"],
                              seconds=1, connections=4)
    finally:
        bare.stop()
    assert summary["requests"] > 0 and summary["error_count"] == 0, summary
    assert 0 < summary["latency_us"]["p50"] <= summary["latency_us"]["p99"] <= summary["latency_us"]["max"]
    assert summary["rps"] == summary["requests"] / summary["seconds"]


@pytest.mark.slow
def test_the_fleet_load_is_answered_on_both_transports(influxd, database, tmp_path):
    """bench/fleetload.py against a real server: every frame (websocket) and request (POST) it
    sends in the measured window is answered, with no error, busy or lost connection."""
    server = harness.start_server(influxd, database, str(tmp_path), name="fleet-smoke",
                                  max_new_calls=1000)
    try:
        for mode in ("ws", "post", "rtcstats"):
            done = subprocess.run([sys.executable, "-m", "bench.fleetload", mode, server.url, "6", "1", "2.5"],
                                  cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
            lines = done.stdout.splitlines()
            assert lines[0] == "measuring", done.stderr
            summary = json.loads(lines[-1])
            assert summary["peers"] == 6 and summary["sent"] >= 6, summary
            assert summary["answered"] + summary["unanswered_at_end"] >= summary["sent"], summary
            assert (summary["errors"], summary["refused"], summary["lost"]) == (0, 0, 0), summary
    finally:
        server.stop()


@pytest.mark.slow
def test_the_floor_servers_answer_the_fleet_load_like_the_server(tmp_path):
    """bench/wsfloor.py's bare asyncio and bare tornado servers take the fleet's frames and
    answer each with an ack, so the floor runs measure the same exchange."""
    from bench.fleet import start_subject

    class Context:
        log_dir = str(tmp_path)

    for kind in ("asyncio", "tornado"):
        server = start_subject(Context(), f"floor-{kind}", kind)
        try:
            done = subprocess.run([sys.executable, "-m", "bench.fleetload", "ws", server.url, "6", "1", "2.5"],
                                  cwd=harness.ROOT, capture_output=True, text=True, timeout=60)
            summary = json.loads(done.stdout.splitlines()[-1])
            assert summary["sent"] >= 6 and summary["answered"] + summary["unanswered_at_end"] >= summary["sent"], summary
            assert (summary["errors"], summary["lost"]) == (0, 0), summary
        finally:
            server.stop()


def test_the_pinned_version_is_exported_and_a_tarball_says_it_has_none(tmp_path, monkeypatch):
    """bench/pinned.py runs the pinned commit's own server.py; without git history it skips, saying why."""
    from bench import pinned

    class Context:
        work_dir = str(tmp_path)

    tree, missing = pinned.export(Context)
    if missing and "shallow" in missing:
        pytest.skip(missing)
    assert missing is None and os.path.isfile(os.path.join(tree, "server.py"))
    assert os.path.isfile(os.path.join(tree, "handlers", "ingest.py"))
    tarball = tmp_path / "tarball"
    tarball.mkdir()
    monkeypatch.setattr(harness, "ROOT", str(tarball))
    Context.work_dir = str(tmp_path / "again")
    assert pinned.export(Context) == (None, "this checkout has no git history (a tarball?)")


@pytest.mark.slow
def test_the_detector_targets_are_measured_against_their_same_run_baselines(influxd, database):
    """`make bench`'s detector section (bench/onetick.py) at a small fleet: a tick's CPU
    against the per-call path's windows and qualities, the per-call cost against that
    path on the same samples, and the loop's longest hold against the documented budget."""
    from bench import onetick
    from rtcscope.live.detector import LOOP_BUDGET_MS

    class Mode:
        tick_target, tick_target_ticks, rounds = 60, 2, 1

    class Context:
        mode = Mode

        @staticmethod
        def database(label):
            return f"{database}_{label}"

    Context.influxd = influxd
    section = Section("6e")
    onetick.detector_tick(Context, section)
    cpu, wall, per_call, hold = section.figures
    assert cpu.value > 0 and cpu.baseline > 0 and cpu.met == (cpu.value <= 800) and wall.value > 0
    assert per_call.value > 0 and per_call.baseline > 0 and per_call.met == (per_call.baseline >= 3 * per_call.value)
    assert hold.baseline == LOOP_BUDGET_MS and hold.met == (hold.value <= LOOP_BUDGET_MS) and hold.value >= 0
    assert "2 alternating pairs" in section.notes[0]
