"""/metrics: valid Prometheus text exposition, typed families, values that move."""
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import get, post
from tests.support.influxd import count_points, free_port
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import Viewer

SAMPLE_LINE = re.compile(
    r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? '
    r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)')


# Every family /metrics shows, with its type: dashboards and alerts are built on these names.
FAMILIES = {
    "rtcscope_http_requests": "counter",
    "rtcscope_samples_accepted": "counter",
    "rtcscope_values_dropped": "counter",
    "rtcscope_samples_restamped": "counter",
    "rtcscope_ingest_refused": "counter",
    "rtcscope_buffer_depth": "gauge",
    "rtcscope_buffer_capacity": "gauge",
    "rtcscope_flushes": "counter",
    "rtcscope_flush_failures": "counter",
    "rtcscope_flush_seconds": "histogram",
    "rtcscope_points_written": "counter",
    "rtcscope_points_rejected": "counter",
    "rtcscope_influxdb_up": "gauge",
    "rtcscope_buffer_memory_points": "gauge",
    "rtcscope_wal_bytes": "gauge",
    "rtcscope_wal_capacity_bytes": "gauge",
    "rtcscope_wal_full": "gauge",
    "rtcscope_wal_fsyncs": "counter",
    "rtcscope_wal_fsync_seconds": "counter",
    "rtcscope_wal_records_cut": "counter",
    "rtcscope_detector_ticks": "counter",
    "rtcscope_detector_queries": "counter",
    "rtcscope_detector_skipped_ticks": "counter",
    "rtcscope_detector_failures": "counter",
    "rtcscope_live_calls": "gauge",
    "rtcscope_graph_viewers": "gauge",
    "rtcscope_watched_metrics": "gauge",
    "rtcscope_graph_viewers_dropped": "counter",
    "rtcscope_calls_viewers": "gauge",
    "rtcscope_call_summaries_written": "counter",
    "rtcscope_ended_calls": "gauge",
    "rtcscope_ended_calls_ready": "gauge",
    "rtcscope_alerts_firing": "gauge",
    "rtcscope_alerts_sender": "gauge",
    "rtcscope_webhook_deliveries": "counter",
    "rtcscope_rtcstats_connections": "gauge",
    "rtcscope_rtcstats_sessions": "gauge",
    "rtcscope_rtcstats_messages": "counter",
    "rtcscope_rtcstats_dropped": "counter",
    "rtcscope_janus_events": "counter",
    "rtcscope_janus_events_skipped": "counter",
    "rtcscope_rtcstats_stats_incomplete": "counter",
}
FLUSH_BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"]


def parse_exposition(text):
    """Check the text format's rules and return {family: (type, {(sample, labels): value})}."""
    assert text.endswith("\n")
    typed, helped = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in typed, f"TYPE twice for {name}"
            assert name in helped, f"TYPE before HELP for {name}"
            typed[name] = kind
        elif line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP "):].partition(" ")
            assert help_text.strip(), f"no help text for {name}"
            helped.add(name)
        elif not line:
            continue
        else:
            assert SAMPLE_LINE.fullmatch(line), line
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group()
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
            assert family in typed, f"sample {name} before its TYPE line"
    families = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        families[family.name] = (family.type, samples)
    for name, kind in typed.items():
        if kind == "counter":
            assert name.endswith("_total"), name
    return families


async def scrape(http_client, base_url):
    status, _, response = await get(http_client, base_url + "/metrics")
    assert status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(response.body.decode())


def value(families, family, sample=None, **labels):
    return families[family][1].get((sample or family, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.gen_test(timeout=60)
async def test_metrics_are_typed_and_move_with_ingest(http_client, base_url, app, influxd, database):
    before = await scrape(http_client, base_url)
    assert {name: kind for name, (kind, _) in before.items()} == FAMILIES  # nothing renamed, missing or extra
    unlabelled = [name for name in FAMILIES if name not in ("rtcscope_http_requests", "rtcscope_ingest_refused",
                                                            "rtcscope_rtcstats_dropped", "rtcscope_webhook_deliveries",
                                                            "rtcscope_janus_events", "rtcscope_janus_events_skipped")]
    for name in unlabelled:  # shown from the start, at zero if nothing happened yet
        assert before[name][1], f"{name} has no sample"
    assert value(before, "rtcscope_buffer_capacity") == app.writer.max_buffer

    url = base_url + "/v1/stats/write/"
    ts = now_ms()
    status, body, _ = await post(http_client, url, [
        {"call": "m1", "ts": ts, "stats": {"rtt": 40, "jitter": None}},
        {"call": "m1", "ts": ts - 3_600_000, "stats": {"rtt": 41}},  # an hour off: restamped
    ])
    assert status == 200 and body["accepted"] == 2
    status, _, _ = await post(http_client, url, {"call": "bad id!", "stats": {"rtt": 1}})
    assert status == 400
    await eventually(lambda: count_points(influxd, database, field="rtt") == 2)
    await eventually(lambda: app.writer.depth == 0)

    after = await scrape(http_client, base_url)
    assert value(after, "rtcscope_samples_accepted", "rtcscope_samples_accepted_total") == \
        value(before, "rtcscope_samples_accepted", "rtcscope_samples_accepted_total") + 2
    assert value(after, "rtcscope_values_dropped", "rtcscope_values_dropped_total") == 1
    assert value(after, "rtcscope_samples_restamped", "rtcscope_samples_restamped_total") == 1
    assert value(after, "rtcscope_ingest_refused", "rtcscope_ingest_refused_total", reason="bad_request") == 1
    requests = "rtcscope_http_requests_total"
    assert value(after, "rtcscope_http_requests", requests, route="WriteHandler", status="200") == 1
    assert value(after, "rtcscope_http_requests", requests, route="WriteHandler", status="400") == 1
    assert value(after, "rtcscope_http_requests", requests, route="PrometheusHandler", status="200") == 1
    assert value(after, "rtcscope_flushes", "rtcscope_flushes_total") >= 1
    assert value(after, "rtcscope_points_written", "rtcscope_points_written_total") >= 3  # 2 samples + presence
    count = value(after, "rtcscope_flush_seconds", "rtcscope_flush_seconds_count")
    assert count == value(after, "rtcscope_flushes", "rtcscope_flushes_total")
    assert value(after, "rtcscope_flush_seconds", "rtcscope_flush_seconds_bucket", le="+Inf") == count
    buckets = [(labels[0][1], v) for (name, labels), v in after["rtcscope_flush_seconds"][1].items()
               if name.endswith("_bucket")]
    assert [le for le, _ in buckets] == FLUSH_BUCKETS
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert value(after, "rtcscope_flush_seconds", "rtcscope_flush_seconds_sum") > 0
    assert value(after, "rtcscope_buffer_depth") == 0
    assert value(after, "rtcscope_influxdb_up") == 1


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_outage_shows_in_depth_failures_and_the_log(http_client, start_server, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every write fails
    application = await start_server(influxdb_url=dead, database="nowhere", flush_interval=0.05,
                                      spool_dir=str(tmp_path / "spool"))
    application.writer.retry_max = 0.1
    base_url = application.base_url
    families = await scrape(http_client, base_url)
    empty_log = value(families, "rtcscope_wal_bytes")
    assert value(families, "rtcscope_wal_capacity_bytes") == 1024 ** 3
    for reason in ("type_conflict", "max_series", "other"):
        assert value(families, "rtcscope_points_rejected", "rtcscope_points_rejected_total", reason=reason) == 0
    status, _, _ = await post(http_client, base_url + "/v1/stats/write/",
                              [{"call": "m2", "stats": {"rtt": i}} for i in range(10)])
    assert status == 200
    await eventually(lambda: application.writer.failures >= 2)
    families = await scrape(http_client, base_url)
    assert value(families, "rtcscope_buffer_depth") == 12  # 10 samples + 1 presence point + its live feed row
    assert value(families, "rtcscope_flush_failures", "rtcscope_flush_failures_total") >= 2
    assert value(families, "rtcscope_influxdb_up") == 0
    assert value(families, "rtcscope_wal_bytes") > empty_log + 100
    assert value(families, "rtcscope_wal_full") == 0


@pytest.mark.gen_test(timeout=60)
async def test_live_calls_and_viewers(http_client, base_url, app):
    families = await scrape(http_client, base_url)
    assert families["rtcscope_live_calls"][0] == families["rtcscope_graph_viewers"][0] == "gauge"
    assert value(families, "rtcscope_live_calls") == value(families, "rtcscope_graph_viewers") == 0
    viewers = [await Viewer.open(base_url, "/ws/graph/rtt") for _ in range(3)]
    for viewer in viewers:
        await viewer.next("snapshot")
    status, _, _ = await post(http_client, base_url + "/v1/stats/write/",
                              [{"call": call, "ts": now_ms(), "stats": {"rtt": 1}} for call in ("m-a", "m-b")])
    assert status == 200
    await viewers[0].next("call_started", "m-b")

    async def gauges(live, watching):
        families = await scrape(http_client, base_url)
        return value(families, "rtcscope_live_calls") == live and \
            value(families, "rtcscope_graph_viewers") == watching

    await eventually(lambda: gauges(2, 3))
    viewers[0].close()
    await eventually(lambda: gauges(2, 2))
    for viewer in viewers[1:]:
        viewer.close()


@pytest.mark.gen_test(timeout=60)
async def test_each_application_counts_in_its_own_registry(http_client, base_url, app, start_server, app_config):
    """Several applications in one process (as here, and in tests) never share a count."""
    other = await start_server(**{**app_config, "spool_dir": app_config["spool_dir"] + "-other"})
    status, _, _ = await post(http_client, base_url + "/v1/stats/write/", {"call": "m3", "stats": {"rtt": 5}})
    assert status == 200
    status, _, _ = await post(http_client, other.base_url + "/v1/stats/write/", {"call": "bad id!", "stats": {}})
    assert status == 400
    mine, theirs = await scrape(http_client, base_url), await scrape(http_client, other.base_url)
    assert value(mine, "rtcscope_samples_accepted", "rtcscope_samples_accepted_total") == 1
    assert value(theirs, "rtcscope_samples_accepted", "rtcscope_samples_accepted_total") == 0
    assert value(mine, "rtcscope_ingest_refused", "rtcscope_ingest_refused_total", reason="bad_request") == 0
    assert value(theirs, "rtcscope_ingest_refused", "rtcscope_ingest_refused_total", reason="bad_request") == 1
    assert app.telemetry.value("rtcscope_samples_accepted_total") == 1
    assert other.telemetry.value("rtcscope_ingest_refused_total", reason="bad_request") == 1


@pytest.mark.gen_test(timeout=60)
async def test_detector_counters_are_read_when_scraped(http_client, base_url, app):
    first = await scrape(http_client, base_url)
    ticks = value(first, "rtcscope_detector_ticks", "rtcscope_detector_ticks_total")
    await eventually(lambda: app.detector.ticks >= ticks + 2)
    later = await scrape(http_client, base_url)
    ticked = value(later, "rtcscope_detector_ticks", "rtcscope_detector_ticks_total")
    assert ticked >= ticks + 2
    assert value(later, "rtcscope_detector_queries", "rtcscope_detector_queries_total") >= ticked  # some per tick
    assert value(later, "rtcscope_detector_failures", "rtcscope_detector_failures_total") == 0
