"""/metrics: valid Prometheus text exposition, typed families, values that move."""
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import now_ms
from tests.helpers import count_points, eventually, get, post
from tests.influxd import free_port
from tests.live.test_ws import Viewer

SAMPLE_LINE = re.compile(
    r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? '
    r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)')


def parse_exposition(text):
    """Check the text format's rules and return {family: (type, {(sample, labels): value})}."""
    assert text.endswith("\n")
    typed = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in typed, f"TYPE twice for {name}"
            typed[name] = kind
        elif line.startswith("# HELP ") or not line:
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
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_exposition(response.body.decode())


def value(families, family, sample=None, **labels):
    return families[family][1].get((sample or family, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.gen_test(timeout=60)
async def test_metrics_are_typed_and_move_with_ingest(http_client, base_url, app, influxd, database):
    before = await scrape(http_client, base_url)
    types = {name: kind for name, (kind, _) in before.items()}
    assert types["rtcscope_samples_accepted"] == "counter"
    assert types["rtcscope_flushes"] == "counter"
    assert types["rtcscope_flush_failures"] == "counter"
    assert types["rtcscope_buffer_depth"] == "gauge"
    assert types["rtcscope_wal_bytes"] == "gauge"
    assert types["rtcscope_points_rejected"] == "counter"
    assert types["rtcscope_flush_seconds"] == "histogram"

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
    buckets = sorted((float(labels[0][1]), v) for (name, labels), v in after["rtcscope_flush_seconds"][1].items()
                     if name.endswith("_bucket"))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert value(after, "rtcscope_flush_seconds", "rtcscope_flush_seconds_sum") > 0
    assert value(after, "rtcscope_buffer_depth") == 0
    assert value(after, "rtcscope_influxdb_up") == 1


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
    assert value(families, "rtcscope_buffer_depth") == 11  # 10 samples + 1 presence point
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
