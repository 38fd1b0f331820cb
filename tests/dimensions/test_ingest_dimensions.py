"""Every ingest path gives its peers' dimensions, against a real influxd and an in-process
server: POST JSON and line protocol, the websocket ingest, rtcstats and a dump's import;
on the call page (GET /v1/calls/<call>/), with their changes, in the detector's memory
(without a query per peer) and in rtc_peer_summaries once the peers end. Nothing that
identifies a person is stored."""
import asyncio
import copy
import json
import pathlib

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from rtcscope.ingest.rtcstats import PROTOCOL
from tests.support.api import assert_error, get, post
from tests.support.influxd import count_points
from tests.support.reports import CHROMIUM_FIXTURE
from tests.support.samples import now_ms
from tests.support.waits import eventually

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
GEOIP_DB = str(DATA / "geoip-test.mmdb")
FIXTURE = json.loads(pathlib.Path(CHROMIUM_FIXTURE).read_text())
USER_AGENT = FIXTURE["userAgent"]  # HeadlessChrome 156 on Linux, the fixture's own browser
FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0"
REPORT = FIXTURE["reports"][-1]["caller"]
# What the fixture's browser and report say; the loopback address is NZ, AS64512 in the test database.
BROWSER = {"browser": "HeadlessChrome", "browser_version": "156", "os": "Linux"}
ROUTE = {"candidate_type": "host", "transport": "udp", "network_type": "ethernet", "audio_codec": "opus",
         "video_codec": "VP8"}
PLACE = {"country": "NZ", "asn": "AS64512"}

pytestmark = pytest.mark.app_config(geoip_db=GEOIP_DB)


def write_url(base_url):
    return base_url + "/v1/stats/write/"


def on_network(report, network_type):
    """The report with its local candidates on another network."""
    report = copy.deepcopy(report)
    for stat in report:
        if stat["type"] == "local-candidate":
            stat["networkType"] = network_type
    return report


def relayed(report, protocol="tcp", url="turn:turn-2.example.com:443?transport=tcp"):
    """The report with its selected pair's local candidate relayed through a TURN server."""
    report = copy.deepcopy(report)
    for stat in report:
        if stat["type"] == "local-candidate":
            stat.update(candidateType="relay", relayProtocol=protocol, url=url)
    return report


async def call_page(http_client, base_url, call, peers):
    """The call page once every one of `peers` has its dimensions on it."""
    async def ready():
        status, document, _ = await get(http_client, f"{base_url}/v1/calls/{call}/")
        return document if status == 200 and set(peers) <= set(document["dimensions"]) else None
    return await eventually(ready)


async def detector_knows(app, call, peer, expected):
    def known():
        found = {(c, p): values for c, p, values, _, _ in app.detector.live_peers()}
        values = found.get((call, peer))
        return values if values is not None and expected.items() <= values.items() else None
    return await eventually(known)


@pytest.mark.gen_test(timeout=60)
async def test_post_json_with_tags_and_a_raw_report(http_client, base_url, app, influxd, database):
    status, result, _ = await post(http_client, write_url(base_url), [
        {"call": "j1", "peer": "caller", "report": REPORT,
         "tags": {"region": "eu-west", "app_version": "5.2", "secret_tag": "x" * 10_000}},
        {"call": "j1", "peer": "callee", "kind": "audio", "stats": {"rtt": 30.0}}],
        headers={"User-Agent": USER_AGENT})
    assert status == 200, result
    document = await call_page(http_client, base_url, "j1", ["caller", "callee"])
    assert document["dimensions"]["caller"] == {**BROWSER, **ROUTE, **PLACE, "region": "eu-west",
                                                "app_version": "5.2"}
    # A peer without a report or tags has what its request tells.
    assert document["dimensions"]["callee"] == {**BROWSER, **PLACE}
    assert document["dimension_changes"] == []
    # The detector learns the same from the feed it reads.
    assert await detector_knows(app, "j1", "caller", {**BROWSER, **ROUTE, **PLACE, "region": "eu-west"})


@pytest.mark.gen_test(timeout=60)
async def test_a_peer_that_moves_from_wifi_to_cellular_and_to_a_relay(http_client, base_url, app):
    async def send(report):
        status, result, _ = await post(http_client, write_url(base_url), {"call": "m1", "peer": "phone",
                                                                          "report": report})
        assert status == 200, result

    await send(on_network(REPORT, "wifi"))
    await call_page(http_client, base_url, "m1", ["phone"])
    await send(on_network(REPORT, "cellular"))
    await send(relayed(on_network(REPORT, "cellular")))

    async def changed():
        _, document, _ = await get(http_client, f"{base_url}/v1/calls/m1/")
        return document if len(document["dimension_changes"]) >= 2 else None
    document = await eventually(changed)
    # Newly known values (the relay's protocol and server) are no change; a value that moves is.
    assert [(change["peer"], change["dimension"], change["from"], change["to"])
            for change in document["dimension_changes"]] == [
        ("phone", "network_type", "wifi", "cellular"), ("phone", "candidate_type", "host", "relay")]
    at = [change["at"] for change in document["dimension_changes"]]
    assert at[0] < at[1] <= now_ms()
    assert document["dimensions"]["phone"] == {**ROUTE, **PLACE, "network_type": "cellular", "candidate_type": "relay",
                                               "relay_protocol": "tcp", "turn_server": "turn-2.example.com:443"}


@pytest.mark.gen_test(timeout=60)
async def test_line_protocol_gets_the_request_client(http_client, base_url, app):
    status, result, _ = await post(http_client, write_url(base_url), f"rtc_stats,call=l1,peer=p1 rtt=12 {now_ms()}000000",
                                   "text/plain", headers={"User-Agent": FIREFOX})
    assert status == 200, result
    document = await call_page(http_client, base_url, "l1", ["p1"])
    assert document["dimensions"]["p1"] == {"browser": "Firefox", "browser_version": "128", "os": "Mac OS X",
                                            "os_version": "10", **PLACE}


@pytest.mark.gen_test(timeout=60)
async def test_bad_tags_refuse_the_request_and_store_nothing(http_client, base_url, app, influxd, database):
    stats = {"call": "bad", "peer": "p", "stats": {"rtt": 1.0}}
    for tags, message in (({"region": "x" * 10_000}, "10000 characters"), (["eu"], "object"),
                          ("eu-west", "object"), ({"app_version": "5 2"}, "app_version")):
        status, document, _ = await post(http_client, write_url(base_url), [stats, {**stats, "tags": tags}])
        assert_error(status, document, 400, "bad_tags")
        assert message in document["error"]["message"]
    status, _, _ = await post(http_client, write_url(base_url), {"call": "good", "stats": {"rtt": 1.0}})
    assert status == 200
    await eventually(lambda: count_points(influxd, database, "rtc_calls") == 1)
    await asyncio.sleep(0.3)
    assert {row["call"] for row in influxd.rows("SELECT * FROM rtc_stats WHERE time > 0", database)} == {"good"}
    assert count_points(influxd, database, "rtc_dimensions") == 0


class StatsPeer:
    """An rtcscope.js-like websocket ingest connection."""

    def __init__(self, base_url, call, peer, query=""):
        self.url = f"{base_url.replace('http://', 'ws://')}/v1/stats/ws?call={call}&peer={peer}{query}"

    async def connect(self):
        self.connection = await websocket_connect(HTTPRequest(self.url, headers={"User-Agent": FIREFOX}))
        return self

    async def send(self, messages):
        await self.connection.write_message(json.dumps(messages))
        while True:
            answer = json.loads(await asyncio.wait_for(self.connection.read_message(), 10))
            assert answer["type"] in ("ack", "error"), answer
            if answer["type"] == "ack":
                return


@pytest.mark.gen_test(timeout=60)
async def test_websocket_ingest_with_tags_and_deltas(http_client, base_url, app):
    peer = await StatsPeer(base_url, "w1", "alice", "&tag.region=ap-south&tag.media_server=sfu-3&tag.other=x").connect()
    await peer.send({"ts": now_ms(), "report": on_network(REPORT, "wifi")})
    document = await call_page(http_client, base_url, "w1", ["alice"])
    assert document["dimensions"]["alice"] == {"browser": "Firefox", "browser_version": "128", "os": "Mac OS X",
                                               "os_version": "10", **PLACE, **ROUTE, "network_type": "wifi",
                                               "region": "ap-south", "media_server": "sfu-3"}
    # A delta that changes only the local candidates' network: the held report keeps what the route needs.
    delta = {stat["id"]: {"networkType": "cellular", "timestamp": stat["timestamp"] + 1000}
             for stat in REPORT if stat["type"] == "local-candidate"}
    await peer.send({"ts": now_ms(), "delta": delta, "removed": []})

    async def changed():
        _, document, _ = await get(http_client, f"{base_url}/v1/calls/w1/")
        return document["dimension_changes"] or None
    changes = await eventually(changed)
    assert [(c["peer"], c["dimension"], c["from"], c["to"]) for c in changes] == [
        ("alice", "network_type", "wifi", "cellular")]
    peer.connection.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_bad_tag_argument_refuses_the_upgrade(http_client, base_url, app):
    status, document, _ = await get(http_client, f"{base_url}/v1/stats/ws?call=w2&peer=p&tag.region=a%20b",
                                    headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                             "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert_error(status, document, 400, "bad_tags")


@pytest.mark.gen_test(timeout=60)
async def test_rtcstats_gives_the_upgrade_client_the_reports_and_the_app(http_client, base_url, app):
    url = f"{base_url.replace('http://', 'ws://')}/rtcstats/standup?statsSessionId=rs1&isReconnect=false"
    connection = await websocket_connect(HTTPRequest(url, headers={"User-Agent": USER_AGENT}),
                                         subprotocols=[PROTOCOL])
    assert json.loads(await connection.read_message())["body"]["state"] == "initial"

    def entry(kind, data):
        return json.dumps({"statsSessionId": "rs1", "type": kind, "data": data})
    await connection.write_message(entry("identity", ["identity", None, {
        "confName": "standup", "endpointId": "ep1", "applicationName": "Jitsi Meet", "displayName": "Alice"},
        now_ms(), 1]))
    stats = {stat["id"]: {key: value for key, value in stat.items() if key != "id"} for stat in relayed(REPORT, "udp")}
    stats["timestamp"] = now_ms()
    await connection.write_message(entry("stats-entry", json.dumps(["getstats", "PC_0", stats, now_ms(), 2])))
    while json.loads(await connection.read_message())["body"]["value"] < 2:
        pass
    document = await call_page(http_client, base_url, "standup", ["ep1"])
    assert document["dimensions"]["ep1"] == {**BROWSER, **PLACE, **ROUTE, "candidate_type": "relay",
                                             "relay_protocol": "udp", "turn_server": "turn-2.example.com:443",
                                             "app": "Jitsi-Meet"}
    connection.close()


@pytest.mark.gen_test(timeout=60)
async def test_an_import_gets_the_dumps_browser_and_routes_and_no_country(http_client, base_url, app):
    body = (DATA / "webrtc-internals-audio-video.json").read_bytes()
    status, result, _ = await post(http_client, f"{base_url}/v1/import/webrtc-internals?call=imp1", body)
    assert status == 200, result
    document = await call_page(http_client, base_url, "imp1", result["peers"])
    for peer in result["peers"]:
        values = document["dimensions"][peer]
        assert {key: values[key] for key in BROWSER} == BROWSER
        assert values["candidate_type"] == "host" and values["transport"] == "udp"
        assert values["network_type"] == "ethernet"
        assert "country" not in values and "asn" not in values
    assert {document["dimensions"][peer].get("audio_codec") for peer in result["peers"]} >= {"opus"}


@pytest.mark.app_config(geoip_db=GEOIP_DB, max_dimension_values=2)
@pytest.mark.gen_test(timeout=60)
async def test_values_beyond_the_bound_are_other(http_client, base_url, app):
    for index, region in enumerate(("eu-west", "us-east", "ap-south")):
        status, _, _ = await post(http_client, write_url(base_url), {
            "call": "b1", "peer": f"p{index}", "stats": {"rtt": 1.0}, "tags": {"region": region}})
        assert status == 200
        await detector_knows(app, "b1", f"p{index}", {})
    regions = {peer: values.get("region") for call, peer, values, _, _ in app.detector.live_peers() if call == "b1"}
    assert regions == {"p0": "eu-west", "p1": "us-east", "p2": "other"}
    # The call page shows what the peers said.
    document = await call_page(http_client, base_url, "b1", ["p2"])
    assert document["dimensions"]["p2"]["region"] == "ap-south"


@pytest.mark.gen_test(timeout=60)
async def test_live_peers_without_a_query_per_peer(http_client, base_url, app):
    calls = [f"q{index}" for index in range(20)]
    status, _, _ = await post(http_client, write_url(base_url), [
        {"call": call, "peer": peer, "kind": "audio", "stats": {"rtt": 500.0 if call == "q0" else 20.0,
                                                                 "jitter": 3.0}, "tags": {"region": "eu-west"}}
        for call in calls[:10] for peer in ("a", "b")], headers={"User-Agent": USER_AGENT})
    assert status == 200
    def learnt():
        peers = list(app.detector.live_peers())
        return len(peers) == 20 and all(values for _, _, values, _, _ in peers)
    await eventually(learnt)
    ticks, queries = app.detector.ticks, app.detector.queries
    await eventually(lambda: app.detector.ticks >= ticks + 3)
    ticks_run = app.detector.ticks - ticks
    # The feed alone (one or two queries a tick), whatever the number of peers.
    assert app.detector.queries - queries <= 2 * ticks_run + 4
    peers = list(app.detector.live_peers())
    assert len(peers) == 20
    for _, _, values, verdict, mos in peers:
        assert values["region"] == "eu-west" and values["browser"] == "HeadlessChrome"
        assert verdict in ("good", "fair", "poor", "unknown")
        assert (mos is None) == (verdict == "unknown")


@pytest.mark.gen_test(timeout=60)
async def test_nothing_that_identifies_a_person_is_stored(http_client, base_url, app, influxd, database):
    secret_agent = USER_AGENT + " SecretBuild/9.9.9"
    await post(http_client, write_url(base_url), {"call": "priv", "peer": "p", "report": relayed(REPORT),
                                                  "tags": {"region": "eu-west"}},
               headers={"User-Agent": secret_agent})
    await post(http_client, f"{base_url}/v1/import/webrtc-internals?call=priv-import",
               (DATA / "webrtc-internals-audio-video.json").read_bytes())
    await call_page(http_client, base_url, "priv", ["p"])
    await eventually(lambda: count_points(influxd, database, "rtc_dimensions") >= 3)
    measurements = {row["name"] for row in influxd.rows("SHOW MEASUREMENTS", database)}
    assert {"rtc_dimensions", "rtc_stats", "rtc_calls"} <= measurements
    texts = []
    for measurement in measurements:
        for policy in ("rtcscope", "rtc_feed"):
            texts += map(json.dumps, influxd.rows(f'SELECT * FROM "{policy}"."{measurement}" WHERE time > 0', database))
    stored = "\n".join(texts)
    addresses = {stat[key] for stat in REPORT if stat["type"].endswith("candidate") for key in ("address", "ip")}
    addresses |= {"127.0.0.1", "192.0.2.2", "fd00::2"}
    candidate_ids = {stat["id"] for stat in REPORT if stat["type"].endswith("candidate")}
    for secret in (*addresses, *candidate_ids, "SecretBuild", "Mozilla/5.0", "usernameFragment"):
        assert secret not in stored, secret
    assert '"d"' in stored and "turn-2.example.com:443" in stored


@pytest.mark.gen_test(timeout=90)
async def test_ended_peers_are_summarised_with_their_dimensions_as_tags(http_client, base_url, app, influxd, database):
    start = now_ms() - 10_000
    samples = [{"call": "s1", "peer": peer, "kind": "audio", "ts": start + second * 1000,
                "stats": {"rtt": rtt, "jitter": 2.0, "packetsLost": 0, "packetsReceived": 50 * second},
                "tags": {"region": region}}
               for peer, rtt, region in (("good", 20.0, "eu-west"), ("bad", 1500.0, "us-east")) for second in range(5)]
    status, result, _ = await post(http_client, write_url(base_url), samples, headers={"User-Agent": FIREFOX})
    assert status == 200, result
    await detector_knows(app, "s1", "bad", {"region": "us-east"})
    status, _, _ = await post(http_client, write_url(base_url), [{"call": "s1", "peer": peer, "event": "end"}
                                                                for peer in ("good", "bad")])
    assert status == 200

    def points():
        rows = influxd.rows('SELECT * FROM rtc_peer_summaries WHERE time > 0 GROUP BY *', database)
        return rows if len(rows) == 2 else None
    rows = {row["region"]: row for row in await eventually(points, timeout=30)}
    assert set(rows) == {"eu-west", "us-east"}
    for row in rows.values():
        assert (row["browser"], row["os"], row["country"], row["asn"]) == ("Firefox", "Mac OS X", "NZ", "AS64512")
        assert 3.9 <= row["duration_s"] <= 60
        assert "call" not in row and "peer" not in row
    assert rows["us-east"]["poor"] == 1.0 and rows["us-east"]["mos_mean"] < rows["eu-west"]["mos_mean"]
    assert rows["eu-west"]["poor"] == 0.0
    # History breakdowns are one GROUP BY.
    grouped = influxd.rows('SELECT count("poor") AS "peers", sum("poor") AS "poor" FROM rtc_peer_summaries '
                           'WHERE time > 0 GROUP BY "region"', database)
    assert {row["region"]: (row["peers"], row["poor"]) for row in grouped} == {"eu-west": (1, 0.0), "us-east": (1, 1.0)}
