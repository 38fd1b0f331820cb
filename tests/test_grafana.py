"""The Grafana provisioning: every InfluxQL query of the dashboards, with
Grafana's macros and variables filled in, run against a real influxd holding
calls written through the server, returns the values its panel shows (so a
renamed field, tag or measurement breaks this test, not an operator's dashboard)."""
import importlib.util
import json
import pathlib
import time

import pytest
import yaml

from rtcscope import registry
from rtcscope.dimensions import known_dimensions
from rtcscope.dimensions.tags import DEFAULT_PEER_TAGS
from rtcscope.storage.schema import PEER_SUMMARIES_MEASUREMENT, RETENTION_POLICY
from rtcscope.storage.summaries import peer_summary_line
from tests.support.api import get, post
from tests.support.fleets import TURN_2, fleet, relayed_over_tcp_through_turn_2
from tests.support.influxd import count_points
from tests.support.samples import now_ms
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
# The fleet dashboard's breakdown of ended peers by the dimension its variable chooses.
BREAKDOWN = "Ended peers by $dimension"
POOR_SHARE_OVER_TIME = "Poor share of ended peers by $dimension"
# What SPEC §15 names, the default --peer-tags included: the breakdown must offer at least these.
SPEC_DIMENSIONS = {"browser", "browser_version", "os", "os_version", "candidate_type", "relay_protocol", "turn_server",
                   "transport", "network_type", "audio_codec", "video_codec", "country", "asn", "app", "emitter",
                   "region", "app_version", "media_server"}


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


def with_macros(query, start_ms, end_ms, call, dimension):
    """What Grafana sends: its macros and the $call and $dimension variables replaced."""
    sent = (query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
            .replace("$__interval_ms", str(INTERVAL_S * 1000)).replace("$__interval", f"{INTERVAL_S}s")
            .replace("$call", call).replace("$dimension", dimension))
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


def run_all(influxd, database, queries, start_ms, call="g-a", dimension="browser"):
    """Every query's rows (tags as columns) over the minute of samples up to now (the presence
    points carry the receive time)."""
    end_ms = int(time.time() * 1000) + 1000
    return {key: influxd.rows(with_macros(query, start_ms, end_ms, call, dimension), database)
            for key, query in queries.items()}


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
                            ("Calls ended per hour", "A"), ("Poor calls per hour", "A"), ("Median MOS per hour", "A"),
                            (BREAKDOWN, "A"), (POOR_SHARE_OVER_TIME, "A")}

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
    assert results[BREAKDOWN, "A"] == results[POOR_SHARE_OVER_TIME, "A"] == []  # no peer has ended


@pytest.fixture
def ended_peers(io_loop, app, influxd, database):
    """A fleet's ended peers, 90 % of those relayed over TCP through turn-2 poor, their MOS spread
    (a median is then not any middle value), and two peers with no dimension and no MOS; half
    ended six minutes ago, half three: their rtc_peer_summaries points made and written as the
    detector does (the summary line, the batch writer). [(dimension values, poor, mos, ended ms)]."""
    first_ms = (now_ms() // 60_000 - 6) * 60_000
    peers = [(values, verdict == "poor", round(mos + 0.05 * (index % 5), 2)) for index, (_, _, values, verdict, mos)
             in enumerate(fleet(peers=240, bad=relayed_over_tcp_through_turn_2, seed=3))]
    peers += [({}, False, None)] * 2
    ended = [(values, poor, mos, first_ms + 180_000 * (index % 2)) for index, (values, poor, mos) in enumerate(peers)]
    lines = [peer_summary_line(f"e-{index // 2}", f"p-{index % 2}", values,
                               {"duration_s": 60.0, "poor": float(poor), **({} if mos is None else {"mos_mean": mos})},
                               ended_ms)
             for index, (values, poor, mos, ended_ms) in enumerate(ended)]

    async def write():
        assert app.writer.submit(lines)
        await eventually(lambda: count_points(influxd, database, PEER_SUMMARIES_MEASUREMENT, field="poor") == len(lines))

    io_loop.run_sync(write, timeout=30)
    return ended


def by_hand(ended, dimension, key=lambda ended_ms: None):
    """{(value, key(end)): (peers, poor peers, poor share, median MOS by nearest rank)}; "": without the dimension."""
    groups = {}
    for values, poor, mos, ended_ms in ended:
        groups.setdefault((values.get(dimension, ""), key(ended_ms)), []).append((poor, mos))
    counted = {}
    for group, peers in groups.items():
        poor, scores = sum(poor for poor, _ in peers), sorted(mos for _, mos in peers if mos is not None)
        counted[group] = (len(peers), poor, round(poor / len(peers), 6), scores[(len(scores) + 1) // 2 - 1] if scores else None)
    return counted


def test_fleet_dashboard_breaks_ended_peers_down_by_every_dimension(ended_peers, influxd, database, io_loop,
                                                                     http_client, base_url):
    document = dashboard("rtcscope-fleet.json")
    (variable,) = [variable for variable in document["templating"]["list"] if variable["name"] == "dimension"]
    offered = [option["value"] for option in variable["options"]]
    assert variable["query"].split(",") == offered == list(known_dimensions(DEFAULT_PEER_TAGS))
    assert set(offered) >= SPEC_DIMENSIONS and variable["current"]["value"] in offered
    queries = influxql(document)
    queries = {key: queries[key] for key in ((BREAKDOWN, "A"), (POOR_SHARE_OVER_TIME, "A"))}
    panels = {panel["title"]: panel for panel in document["panels"]}
    (sort,) = panels[BREAKDOWN]["options"]["sortBy"]
    (alias,) = [target["alias"] for target in panels[POOR_SHARE_OVER_TIME]["targets"]]
    start_ms = ended_peers[0][3] - 60_000

    for dimension in offered:
        results = run_all(influxd, database, queries, start_ms, dimension=dimension)
        table = {(row[dimension], None): (row["ended peers"], row["poor peers"], round(row["poor share"], 6),
                                          row["median MOS"]) for row in results[BREAKDOWN, "A"]}
        assert table == by_hand(ended_peers, dimension), dimension
        over_time = {(row[dimension], row["time"]): round(row["poor share"], 6)
                     for row in results[POOR_SHARE_OVER_TIME, "A"]}
        assert over_time == {group: counted[2] for group, counted in
                             by_hand(ended_peers, dimension, key=lambda ended_ms: ended_ms).items()}, dimension
        assert alias.replace("${dimension}", dimension) == f"$tag_{dimension}"  # a line per value, named by it

        # The server's own breakdown of the same hour says the same.
        status, body, _ = io_loop.run_sync(
            lambda: get(http_client, f"{base_url}/v1/fleet/breakdown/?by={dimension}&state=ended&duration=1h"))
        assert status == 200, body
        assert {(found["value"] or "", None): (found["peers"], found["poor"], found["poor_share"], found["mos_p50"])
                for found in body["values"]} == {group: (peers, poor, round(share, 4), mos)
                                                 for group, (peers, poor, share, mos) in table.items()}, dimension

        if dimension == "turn_server":  # the table's first row, as it sorts: the bad cohort
            top = sorted(results[BREAKDOWN, "A"], key=lambda row: row[sort["displayName"]], reverse=sort["desc"])[0]
            assert top["turn_server"] == TURN_2 and top["poor share"] > 0.5, top


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
            [variable["datasource"] for variable in document["templating"]["list"] if variable["type"] == "query"]
        assert {(s["type"], s["uid"]) for s in sources} == {("influxdb", source["uid"])}
        # Queries name the retention policy the server writes to, not whatever the database's default is.
        for query in influxql(document).values():
            assert f'FROM "{RETENTION_POLICY}".' in query or "FROM (" in query, query
