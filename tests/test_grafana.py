"""The Grafana provisioning: every InfluxQL query of the dashboards, with
Grafana's macros filled in, run against a real influxd holding calls written
through the server, returns the values its panel shows (so a renamed field or
measurement breaks this test, not an operator's dashboard)."""
import importlib.util
import json
import pathlib
import time

import pytest
import yaml

from rtcscope import registry
from rtcscope.storage.schema import RETENTION_POLICY
from tests.support.api import post
from tests.support.influxd import count_points
from tests.support.waits import eventually

GRAFANA = pathlib.Path(__file__).resolve().parents[1] / "conf" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
INTERVAL_S = 10  # what $__interval becomes
SECONDS = 60  # each peer sends one sample a second for this long
# (call, peer, kind, factor): a peer's gauges are the base value times its factor,
# its counters grow by the base rate times its factor every second.
PEERS = [("g-a", "alice", "audio", 1), ("g-a", "bob", "video", 2), ("g-b", "carol", "audio", 3),
         ("g-c", "dave", "audio", 10)]
FIELDS = sorted({metric.source_field for metric in registry.all_metrics()})
BASE = {**{field: 1.5 * (index + 1) for index, field in enumerate(FIELDS)},
        "rtt": 40.0, "jitter": 3.0, "fractionLost": 0.01, "packetsLost": 1.0, "packetsReceived": 50.0,
        "packetsSent": 50.0}
# One rtc_call_summaries point per call, as the detector writes them when a call has ended.
SUMMARIES = {"g-a": {"duration_s": 60, "peers": 2, "mos_mean": 4.3, "mos_min": 4.1, "problems": 0, "poor": 0},
             "g-b": {"duration_s": 40, "peers": 1, "mos_mean": 3.8, "mos_min": 3.5, "problems": 1, "poor": 0},
             "g-c": {"duration_s": 50, "peers": 1, "mos_mean": 2.4, "mos_min": 1.9, "problems": 2, "poor": 1}}
# The calls stay live through each test: no summary of the detector's joins the ones written here.
pytestmark = pytest.mark.app_config(call_timeout=120.0)
COUNTERS = {metric.source_field for metric in registry.all_metrics() if metric.type == registry.COUNTER}


def builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard(name):
    return json.loads((PROVISIONING / "dashboards" / name).read_text())


def influxql(document):
    """{(panel title, refId) or ("$", variable): query}: every query the dashboard sends."""
    queries = {}

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))  # panels inside rows
            for target in panel.get("targets", []):
                assert target["rawQuery"] is True, panel["title"]
                key = (panel["title"], target["refId"])
                assert key not in queries, key
                queries[key] = target["query"]

    walk(document["panels"])
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries[("$", variable["name"])] = query["query"] if isinstance(query, dict) else query
    return queries


def with_macros(query, start_ms, end_ms, call):
    """What Grafana sends: its macros and the $call variable replaced."""
    sent = (query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
            .replace("$__interval_ms", str(INTERVAL_S * 1000)).replace("$__interval", f"{INTERVAL_S}s")
            .replace("$call", call))
    assert "$" not in sent, sent
    return sent


def column(rows, name):
    return [row[name] for row in rows if row[name] is not None]


@pytest.fixture
def calls(io_loop, http_client, base_url, app, influxd, database):
    """Four peers of three calls, a minute of samples each, posted in one request a few
    minutes ago (within --max-skew), and the three calls' summaries written directly."""
    start_ms = (int(time.time()) // 60 * 60 - 180) * 1000
    samples = []
    for second in range(SECONDS):
        for call, peer, kind, factor in PEERS:
            stats = {field: BASE[field] * factor * (second if field in COUNTERS else 1) for field in FIELDS}
            samples.append({"call": call, "peer": peer, "kind": kind, "ts": start_ms + second * 1000, "stats": stats})

    end_ms = start_ms + SECONDS * 1000
    influxd.write([f"rtc_call_summaries,call={call} " + ",".join(f"{key}={value}" for key, value in fields.items())
                   + f" {(end_ms + index) * 1_000_000}" for index, (call, fields) in enumerate(SUMMARIES.items())],
                  database)

    async def write():
        status, body, _ = await post(http_client, base_url + "/v1/stats/write/", samples)
        assert status == 200 and body["accepted"] == len(samples), body
        await eventually(lambda: count_points(influxd, database, field="rtt") == len(samples) and
                         count_points(influxd, database, "rtc_calls", field="recv") == len(PEERS))

    io_loop.run_sync(write, timeout=30)
    return start_ms


def run_all(influxd, database, queries, start_ms, call="g-a"):
    """Every query's rows (tags as columns) over the minute of samples up to now (the presence
    points carry the receive time)."""
    end_ms = int(time.time() * 1000) + 1000
    return {key: influxd.rows(with_macros(query, start_ms, end_ms, call), database) for key, query in queries.items()}


def full_buckets(rows, start_ms):
    """Rows of the intervals after the first (a rate needs the interval before it)."""
    inside = [row for row in rows if start_ms + INTERVAL_S * 1000 <= row["time"] < start_ms + SECONDS * 1000]
    assert len(inside) == SECONDS // INTERVAL_S - 1, rows
    return inside


def test_fleet_dashboard_queries_return_the_fleet(calls, influxd, database):
    start_ms = calls
    results = run_all(influxd, database, influxql(dashboard("rtcscope-fleet.json")), start_ms)
    assert set(results) == {("Live calls", "A"), ("Live peers", "A"), ("Calls sending stats", "A"),
                            ("Round-trip time across calls", "A"), ("Jitter across calls", "A"),
                            ("Loss across calls", "A"), ("Loss across calls", "B"), ("Worst ended calls", "A"),
                            ("Calls ended per hour", "A"), ("Poor calls per hour", "A"), ("Median MOS per hour", "A")}

    assert column(results["Live calls", "A"], "count") == [3]
    assert column(results["Live peers", "A"], "count") == [4]
    sending = column(results["Calls sending stats", "A"], "calls")
    assert max(sending) == sum(sending) == 3  # one request: every call in the interval it was received

    # Each call by its worst peer: g-a is bob (factor 2), g-b carol (3), g-c dave (10); nearest rank over 3.
    for title, field in (("Round-trip time across calls", "rtt"), ("Jitter across calls", "jitter"),
                         ("Loss across calls", "fractionLost")):
        rows = full_buckets(results[title, "A"], start_ms)
        assert [row["p50"] for row in rows] == pytest.approx([BASE[field] * 3] * len(rows)), title
        assert [row["p95"] for row in rows] == pytest.approx([BASE[field] * 10] * len(rows)), title
    rows = full_buckets(results["Loss across calls", "B"], start_ms)
    lost, carried = BASE["packetsLost"], BASE["packetsLost"] + BASE["packetsReceived"] + BASE["packetsSent"]
    assert [row["all packets"] for row in rows] == pytest.approx([lost / carried] * len(rows))

    worst = results["Worst ended calls", "A"]
    assert {row["call"]: (row["mos_mean"], row["mos_min"], row["problems"], row["peers"], row["duration_s"])
            for row in worst} == {call: (s["mos_mean"], s["mos_min"], s["problems"], s["peers"], s["duration_s"])
                                  for call, s in SUMMARIES.items()}
    hour = results["Calls ended per hour", "A"]
    assert [(row["calls"], row["minutes"]) for row in hour] == [(3, pytest.approx(150 / 60))]
    assert column(results["Poor calls per hour", "A"], "poor share") == [pytest.approx(1 / 3)]
    assert column(results["Median MOS per hour", "A"], "median MOS") == [3.8]


def expected_by_peer(metric):
    """{peer: value} the call page's panel shows for every interval of g-a."""
    return {peer: BASE[metric.source_field] * factor * metric.scale
            for call, peer, _, factor in PEERS if call == "g-a"}


def test_call_dashboard_shows_every_metric_by_peer(calls, influxd, database):
    start_ms = calls
    queries = influxql(dashboard("rtcscope-call.json"))
    metric_panels = {f"{m.name} (per second)" if m.type == registry.COUNTER else m.name: m
                     for m in registry.all_metrics()}
    assert set(queries) == {("$", "call"), ("Peers", "A"), ("Summary (once the call has ended)", "A")} | \
        {(title, "A") for title in metric_panels}
    results = run_all(influxd, database, queries, start_ms)

    assert sorted(row["value"] for row in results["$", "call"]) == ["g-a", "g-b", "g-c"]
    last_ms = start_ms + (SECONDS - 1) * 1000
    assert sorted((row["peer"], row["first sample"], row["last sample"], row["requests"])
                  for row in results["Peers", "A"]) == [("alice", start_ms, last_ms, 1), ("bob", start_ms, last_ms, 1)]
    summary = results["Summary (once the call has ended)", "A"]
    assert [{key: row[key] for key in SUMMARIES["g-a"]} for row in summary] == [SUMMARIES["g-a"]]

    for title, metric in metric_panels.items():
        expected = expected_by_peer(metric)
        assert {row["peer"] for row in results[title, "A"]} == set(expected), title
        for peer, value in expected.items():
            rows = full_buckets([row for row in results[title, "A"] if row["peer"] == peer], start_ms)
            assert [row[metric.name] for row in rows] == pytest.approx([value] * len(rows)), (title, peer)


def test_dashboards_are_built_from_the_registry():
    """The committed JSON is what conf/grafana/build_dashboards.py writes (edit that, then run it)."""
    for name, document in builder().build().items():
        assert dashboard(name) == json.loads(json.dumps(document)), f"{name}: run conf/grafana/build_dashboards.py"


def test_provisioning_points_grafana_at_the_database_and_the_dashboards():
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "rtcscope.yaml").read_text())["datasources"]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "InfluxQL"
    assert source["database"] == source["jsonData"]["dbName"] == "rtcscope"  # the --database default
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "rtcscope.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    # Mounted as /etc/grafana/provisioning, the provider's folder is the one holding the JSON.
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    for name in ("rtcscope-fleet.json", "rtcscope-call.json"):
        document = dashboard(name)
        targets = [target for panel in document["panels"] for target in panel["targets"]]
        sources = [panel["datasource"] for panel in document["panels"]] + [t["datasource"] for t in targets] + \
            [variable["datasource"] for variable in document["templating"]["list"]]
        assert {(s["type"], s["uid"]) for s in sources} == {("influxdb", source["uid"])}
        # Queries name the retention policy the server writes to, not whatever the database's default is.
        for query in influxql(document).values():
            assert f'FROM "{RETENTION_POLICY}".' in query or "FROM (" in query, query
