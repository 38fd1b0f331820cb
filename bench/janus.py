"""Janus's media statistics against JSON samples of the same metrics: the server's CPU per sample.

A Janus with 1,000 handles and `stats_period = 1` posts about 2,000 media
statistics events a second (audio and video per handle), grouped by its sample
event handler in posts of up to 100. Both sides here post bodies of 100 samples
over 10 calls of 5 peers to one server process, alternating round by round:
Janus's posts (real events captured from Janus 1.1.2, tests/data/janus/, one per
handle and medium) and the JSON samples that parsing those posts gives (the same
calls, peers, kinds, times and values).
"""
import copy
import json
import os
import pathlib
import statistics
import time

from rtcscope.ingest import formats, janus
from rtcscope.ingest.formats import Limits
from rtcscope.storage.feed import Feed

from . import harness
from .harness import cpu_meter, wrk
from .ingest import _alternating, _body_file, _checked, buffer_empty
from .report import median_ratio, spread

CAPTURE = pathlib.Path(harness.ROOT) / "tests" / "data" / "janus" / "echotest.jsonl"
HANDLES_PER_POST = 50  # two events each (audio, video): Janus's most per post
PEERS_PER_CALL = 5
JANUS_PATH = "/v1/integrations/janus/"
JSON_PATH = "/v1/stats/write/"


def _templates():
    """The last captured media statistics event of each medium."""
    found = {}
    for line in CAPTURE.read_bytes().splitlines():
        document = json.loads(line)
        for event in document if isinstance(document, list) else [document]:
            if event["type"] == 32 and event.get("subtype") == 3:
                found[event["event"]["media"]] = event
    return found["audio"], found["video"]


def janus_body(now_us):
    """One grouped post: 100 media statistics events of 50 handles over 10 calls."""
    events = []
    for number in range(HANDLES_PER_POST):
        for template in _templates():
            event = copy.deepcopy(template)
            event.update(timestamp=now_us + number, session_id=10_000 + number, handle_id=20_000 + number,
                         opaque_id=f"bench-{number // PEERS_PER_CALL}/p{number % PEERS_PER_CALL}")
            events.append(event)
    return json.dumps(events).encode()  # `json = "plain"`, as the captures


def json_body(body):
    """The JSON samples that parsing the Janus post gives: the same metrics, one object each."""
    outcome = janus.parse(body, time.time_ns(), Limits(), janus.JanusPeers())
    samples = []
    for line in outcome.parsed.lines:
        series, fields, stamp = line.decode().split(" ")
        measurement, *tags = series.split(",")
        if measurement != "rtc_stats":
            continue
        tags = dict(tag.split("=") for tag in tags)
        stats = {name: float(value) for name, value in (field.split("=") for field in fields.split(","))}
        samples.append({"call": tags["call"], "peer": tags["peer"], "kind": tags["kind"], "ts": int(stamp) / 1e6,
                        "stats": stats})
    return json.dumps(samples).encode(), len(samples)


def janus_events(ctx, section):
    now_us = time.time_ns() // 1000
    body = janus_body(now_us)
    baseline_body, samples = json_body(body)
    paths = {"janus": (JANUS_PATH, _body_file(ctx, "janus.json", body)),
             "json": (JSON_PATH, _body_file(ctx, "janus-samples.json", baseline_body))}
    server = harness.start_server(ctx.influxd, ctx.database("janus"), ctx.log_dir, name="server-janus")
    runs = {"janus": [], "json": []}
    try:
        for side, _ in _alternating(ctx.mode.rounds, ("janus", None), ("json", None)):
            path, body_path = paths[side]
            server.check_alive()
            harness.wait_quiet(server.pid)
            with cpu_meter({"server": server}) as cpu:  # until what it acknowledged is written
                summary = wrk(server.url + path, ["file", body_path, "application/json"], seconds=ctx.mode.seconds)
                harness.wait_until(lambda: buffer_empty(server), 60, "the buffer to drain")
            summary["cpu"] = cpu["server"]
            runs[side].append(_checked(summary, f"{side} posts"))
    finally:
        server.stop()
    per_sample = {side: [run["cpu"] / (run["requests"] * samples) * 1e6 for run in side_runs]
                  for side, side_runs in runs.items()}
    pairs = list(zip(per_sample["janus"], per_sample["json"]))
    ratio = median_ratio(pairs)
    section.add("server CPU per sample, Janus media statistics (grouped posts)",
                statistics.median(per_sample["janus"]), "µs", "a JSON sample of the same metrics, POST",
                statistics.median(per_sample["json"]), target="≤ 1.0× JSON", met=ratio <= 1.0, ratio_override=ratio)
    parse_janus, parse_json = parse_costs(body, baseline_body, samples)
    section.add("CPU per sample of parsing alone, in this process: Janus post", statistics.median(parse_janus), "µs",
                "the JSON body", statistics.median(parse_json),
                ratio_override=median_ratio(list(zip(parse_janus, parse_json))))
    section.add("requests/s, Janus posts of 100 events", statistics.median(run["rps"] for run in runs["janus"]),
                "req/s", "JSON bodies of 100 samples", statistics.median(run["rps"] for run in runs["json"]))
    section.note(f"{ctx.mode.rounds} rounds of {ctx.mode.seconds} s each side, alternating, 50 keep-alive "
                 f"connections, one server process (spread {spread(pairs)}). A Janus post: {len(body):,} bytes, "
                 f"100 events of 50 handles (one per peer, audio and video) over 10 calls, each event a real one "
                 f"captured from Janus 1.1.2; the JSON body: {len(baseline_body):,} bytes, its {samples} samples "
                 f"of {len(json.loads(baseline_body)[0]['stats'])} fields. Each side posts its one body over and "
                 "over (the same points written again), so only the server's own work differs; CPU is the server "
                 "process's, per acknowledged sample, until its buffer is written to InfluxDB, "
                 f"on {os.cpu_count()} shared cores.")


def parse_costs(body, baseline_body, samples, rounds=30, repeat=10):
    """CPU µs per sample of turning each body into its points (janus.parse, formats.parse), alternating."""
    peers, limits = janus.JanusPeers(), Limits(feed=Feed("bench"))

    def cost(parse):
        started = time.process_time()
        for _ in range(repeat):
            parse()
        return (time.process_time() - started) / repeat / samples * 1e6
    sides = ([], [])
    for _ in range(rounds):
        sides[0].append(cost(lambda: janus.parse(body, time.time_ns(), limits, peers)))
        sides[1].append(cost(lambda: formats.parse(baseline_body, time.time_ns(), limits)))
    return sides
