"""The fleet list: GET /v1/calls/ with 10,000 calls in its window, half live
(scored by the detector each tick), half ended (with their rtc_call_summaries).

One server process on the shared influxd; the rows are written straight to
InfluxDB as ingest and the detector would have written them. Each round asks
the baseline (1,000 calls, another database on the same influxd, the plain
most-recent-first page, or the query path: `since=25h`, longer than the
ended-call index covers) and the subject back to back."""
import statistics
import time
import urllib.parse

import orjson

from rtcscope.storage.feed import Feed, encode_feed_values
from rtcscope.storage.schema import FEED_RETENTION, FEED_RETENTION_POLICY

from . import harness
from .harness import BenchError
from .report import median_ratio, spread

CALLS = 10_000
BASELINE_CALLS = 1_000
PRESENCE_ROWS = 5  # per call: one request every 2 s over the last 10 s
# The live calls are written once and kept live by a long call timeout, so the
# detector's window holds every call; a slower tick keeps its own queries
# from crowding the requests measured here (its cost is the "ticks" bench's),
# and a long quality window keeps the written samples in it.
TICK_SECONDS = 5


def _lines(count, now_ms):
    """(lines, the live feed's lines) of `count` calls: presence, samples and, for the ended
    half, end events and summaries; and the feed's rows, with the samples the detector
    scores the calls from."""
    lines, fed = [], []
    feed = Feed("bench")
    for index in range(count):
        call = f"c-{index:05d}"
        ended = index % 2 == 1
        last = now_ms - (60_000 if ended else 1000) - index % 7 * 100
        for row in range(PRESENCE_ROWS):
            at = last - (PRESENCE_ROWS - 1 - row) * 2000
            lines.append(f"rtc_calls,call={call},peer=a first={float(at - 2000)},last={float(at)},recv={float(at)} "
                         f"{at * 1_000_000}")
            samples = []
            if not ended:
                rtt, loss = 40.0 + index % 400, float(index % 13)
                lines.append(f"rtc_stats,call={call},kind=audio,peer=a rtt={rtt},jitter=5.0,"
                             f"packetsLost={loss * row},packetsReceived={100.0 * row} {at * 1_000_000}")
                values = {"rtt": rtt, "jitter": 5.0, "packetsLost": loss * row, "packetsReceived": 100.0 * row}
                samples.append(("audio", at * 1_000_000, encode_feed_values(values)))
            fed.append(feed.presence(call, "a", at - 2000, at, at * 1_000_000, samples).decode())
        if ended:
            lines.append(f"rtc_events,call={call},peer=a end=1.0,at={float(last)} {last * 1_000_000}")
            mos = 4.4 - index % 30 * 0.05
            lines.append(f"rtc_call_summaries,call={call} duration_s=10.0,peers=1.0,mos_mean={mos},mos_min={mos - 0.2},"
                         f"problems=0.0,problem_mask=0.0,poor={float(mos < 3.6)} {last * 1_000_000}")
    return lines, fed


def _fill(ctx, database, count):
    """Before the server starts: its detector's first tick takes these calls as
    they are (ended ones are history, not news to summarise)."""
    for statement in (f'CREATE DATABASE "{database}"', f'CREATE RETENTION POLICY "rtcscope" ON "{database}" '
                      'DURATION 30d REPLICATION 1 SHARD DURATION 1d DEFAULT',
                      f'CREATE RETENTION POLICY "{FEED_RETENTION_POLICY}" ON "{database}" DURATION {FEED_RETENTION} '
                      f'REPLICATION 1 SHARD DURATION {FEED_RETENTION}'):
        query = urllib.parse.urlencode({"q": statement}).encode()
        status, body = harness.http("POST", ctx.influxd.url + "/query", query, timeout=60,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise BenchError(f"influxd refused {statement}: {status} {body[:200]!r}")
    lines, fed = _lines(count, int(time.time() * 1000))
    for policy, rows in (("rtcscope", lines), (FEED_RETENTION_POLICY, fed)):
        url = harness.influx_write_url(ctx.influxd, database) + f"&rp={policy}"
        for start in range(0, len(rows), 20_000):
            status, body = harness.http("POST", url, "\n".join(rows[start:start + 20_000]).encode(), timeout=60)
            if status != 204:
                raise BenchError(f"influxd refused the bench's rows: {status} {body[:200]!r}")


def _server(ctx, database, count):
    _fill(ctx, database, count)
    server = harness.start_server(ctx.influxd, database, ctx.log_dir, name=f"server-calls{count}",
                                  call_timeout="600s", tick=f"{TICK_SECONDS}s", quality_window="120s")

    def scored():
        status, body = harness.http("GET", server.url + "/v1/calls/?state=live&sort=worst&limit=1")
        document = orjson.loads(body) if status == 200 else {}
        return document.get("count") == count // 2 and document["calls"][0]["quality"]["mos"] is not None
    harness.wait_until(scored, 60, f"{count // 2} live calls scored by the detector")
    harness.wait_until(lambda: _metric(server, "rtcscope_ended_calls_ready") == 1, 60, "the ended-call index loaded")
    return server


def _metric(server, name):
    status, body = harness.http("GET", server.url + "/metrics")
    for line in body.decode().splitlines() if status == 200 else ():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _request(ctx, server, query, repeat=1):
    """(wall s, server CPU s, influxd CPU s) of one GET /v1/calls/ (the mean of
    `repeat` back to back: /proc counts CPU in 10 ms ticks) and its document."""
    server_cpu, influx_cpu = server.cpu_seconds(), harness.cpu_seconds(ctx.influxd.process.pid)
    wall = time.perf_counter()
    for _ in range(repeat):
        status, body = harness.http("GET", f"{server.url}/v1/calls/?{query}", timeout=60)
        if status != 200:
            raise BenchError(f"/v1/calls/?{query} answered {status}: {body[:200]!r}")
    wall = time.perf_counter() - wall
    used = (wall, server.cpu_seconds() - server_cpu, harness.cpu_seconds(ctx.influxd.process.pid) - influx_cpu)
    return tuple(value / repeat for value in used), orjson.loads(body)


def _walk(ctx, server, query, limit):
    """Every page of the list, following `next`: (wall s, pages, calls seen)."""
    seen, cursor, pages, wall = [], None, 0, 0.0
    base = query
    while True:
        query = f"{base}&limit={limit}" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        (spent, _, _), document = _request(ctx, server, query)
        wall += spent
        pages += 1
        seen += [call["call"] for call in document["calls"]]
        cursor = document["next"]
        if cursor is None:
            return wall, pages, seen


def _without_tick_times(document):
    """A page without its live calls' quality `at`: a tick between two requests moves it on."""
    return {**document, "calls": [{**call, "quality": {**call["quality"], "at": None}} if call.get("quality") else call
                                  for call in document["calls"]]}


def _median(runs, column):
    return statistics.median(run[column] for run in runs)


def fleet_list(ctx, section):
    big = _server(ctx, ctx.database("calls10k"), CALLS)
    small = _server(ctx, ctx.database("calls1k"), BASELINE_CALLS)
    try:
        rounds = max(5, ctx.mode.rounds * 5)
        runs = {"live": [], "live_small": [], "worst": [], "recent": [], "all_queried": [], "ended": [],
                "ended_queried": []}
        for index in range(rounds):
            runs["live"].append(_request(ctx, big, "state=live&sort=worst&limit=100", repeat=10)[0])
            runs["live_small"].append(_request(ctx, small, "state=live&sort=worst&limit=100", repeat=10)[0])
            # the index's answer and the query path's, in alternating order
            for name, query in (("worst", "state=all&sort=worst&limit=100"),
                                ("all_queried", "state=all&sort=worst&limit=100&since=25h"))[::1 if index % 2 else -1]:
                runs[name].append(_request(ctx, big, query, repeat=1 if name == "all_queried" else 10)[0])
            runs["recent"].append(_request(ctx, big, "state=all&sort=recent&limit=100", repeat=10)[0])
            runs["ended"].append(_request(ctx, big, "state=ended&sort=worst&limit=100", repeat=10)[0])
            runs["ended_queried"].append(_request(ctx, big, "state=ended&sort=worst&limit=100&since=25h")[0])
        _, indexed = _request(ctx, big, "state=all&sort=worst&limit=1000")
        _, queried = _request(ctx, big, "state=all&sort=worst&limit=1000&since=25h")
        if _without_tick_times(indexed) != _without_tick_times(queried):
            raise BenchError("the ended-call index and the query path gave different pages")
        cpu = {name: [run[1] + run[2] for run in values] for name, values in runs.items()}
        pairs = list(zip(cpu["live"], cpu["live_small"]))
        figure = section.add(f"CPU (server + influxd) per page, state=live sort=worst, {CALLS // 2:,} live calls",
                             statistics.median(cpu["live"]) * 1000, "ms", f"{BASELINE_CALLS // 2:,} live calls",
                             statistics.median(cpu["live_small"]) * 1000, ratio_override=median_ratio(pairs))
        figure.target, figure.met = "≤ 10 (at most linear in the calls)", figure.ratio <= 10
        section.note(f"Per-round ratios {spread(pairs)}.")
        for subject, baseline, what in (("worst", "all_queried", "state=all"), ("ended", "ended_queried", "state=ended")):
            pairs = list(zip(cpu[subject], cpu[baseline]))
            figure = section.add(f"CPU (server + influxd) per page, {what} sort=worst, {CALLS:,} calls, ended ones "
                                 "from the index", statistics.median(cpu[subject]) * 1000, "ms",
                                 "the query path (since=25h), same calls", statistics.median(cpu[baseline]) * 1000,
                                 ratio_override=median_ratio(pairs))
            figure.target, figure.met = "≤ 0.1 (no InfluxDB query)", figure.ratio <= 0.1
            section.note(f"Per-round ratios {spread(pairs)}.")
        pairs = list(zip(cpu["worst"], cpu["recent"]))
        figure = section.add(f"CPU (server + influxd) per page, state=all sort=worst, {CALLS:,} calls",
                             statistics.median(cpu["worst"]) * 1000, "ms", "sort=recent, same calls",
                             statistics.median(cpu["recent"]) * 1000, ratio_override=median_ratio(pairs))
        figure.target, figure.met = "≤ 1.2 (ordering by quality is cheap)", figure.ratio <= 1.2
        section.note(f"Per-round ratios {spread(pairs)}.")
        for name, query in (("live", "state=live&sort=worst"), ("worst", "state=all&sort=worst"),
                            ("all_queried", "state=all&sort=worst&since=25h"), ("recent", "state=all&sort=recent"),
                            ("ended", "state=ended&sort=worst"), ("ended_queried", "state=ended&sort=worst&since=25h")):
            section.note(f"{query}&limit=100, {CALLS:,} calls, median of {rounds}: {_median(runs[name], 0) * 1000:.0f} ms "
                         f"wall, server CPU {_median(runs[name], 1) * 1000:.0f} ms, influxd CPU "
                         f"{_median(runs[name], 2) * 1000:.0f} ms.")
        live = CALLS // 2
        wall, pages, seen = _walk(ctx, big, "state=live&sort=worst", 100)
        if len(seen) != live or len(set(seen)) != live:
            raise BenchError(f"walking the pages saw {len(seen)} calls, {len(set(seen))} distinct, of {live}")
        section.add(f"walking all {pages} pages of 100, state=live sort=worst, {live:,} live calls", wall * 1000, "ms")
        wall, pages, seen = _walk(ctx, big, "state=ended&sort=worst", 100)
        if len(seen) != live or len(set(seen)) != live:
            raise BenchError(f"walking the ended pages saw {len(seen)} calls, {len(set(seen))} distinct, of {live}")
        section.add(f"walking all {pages} pages of 100, state=ended sort=worst, {live:,} ended calls", wall * 1000, "ms")
        memory = _metric(big, "rtcscope_ended_calls")
        section.note(f"{CALLS // 2:,} live calls (the list is the detector's last tick with its quality: no query) and "
                     f"{CALLS // 2:,} ended ones (the detector's ended-call index, {memory:,.0f} entries, loaded at start "
                     "with their rtc_call_summaries quality: no query), "
                     f"{PRESENCE_ROWS} presence rows each; the walks saw every call once, and a page of 1,000 from the "
                     "index equals the query path's. The query path (`since=25h`, beyond the index's 24 h) costs the "
                     "presence query over `since` for every call in it, most of it influxd's, plus one query for the "
                     "summary points.")
    finally:
        big.stop()
        small.stop()
