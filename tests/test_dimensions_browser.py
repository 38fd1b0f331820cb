"""Every peer's dimensions from a real browser (SPEC §15): Chromium calls direct and forced
through a real TURN server on loopback (coturn) over UDP, TCP and TLS, both ends monitored by
the shipped rtcscope.js sending to a real server, over its websocket and by POST. What the
client sends gives the route the browser took; the call's API answer and its page have each
peer's browser, OS, place, route, TURN server, codecs and allowed tags; ended peers' summaries
carry them as tags; and nothing in InfluxDB says who or where the person is."""
import contextlib
import json
import re
import subprocess
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from rtcscope.dimensions.report import report_dimensions
from rtcscope.dimensions.useragent import UserAgents
from tests.support import calls
from tests.support.api import get
from tests.support.browser import WAIT_MS
from tests.support.calls import PEERS, ROUTES
from tests.support.reports import CHROMIUM_FIXTURE, PRIVATE_FIELDS
from tests.support.turn import Coturn
from tests.support.waits import eventually

# Fields of the raw report that say where a person is; rtcscope.js never sends them.
ADDRESS_FIELDS = PRIVATE_FIELDS - {"url"}
# The test database maps loopback, where the browser is, to a place.
GEOIP_DB = str(CHROMIUM_FIXTURE.with_name("geoip-test.mmdb"))
PLACE = {"country": "NZ", "asn": "AS64512"}
# The monitors' tags: --peer-tags (by default region, app_version, media_server) keeps the first two.
KEPT_TAGS = {"region": "eu-west", "app_version": "5.2"}
TAGS = {**KEPT_TAGS, "customer": "acme", "build": 77}
PEER_SUMMARY_FIELDS = {"time", "mos_mean", "poor", "duration_s"}


@pytest.fixture(scope="module")
def turn(tmp_path_factory):
    server = Coturn(str(tmp_path_factory.mktemp("coturn"))).start()
    yield server
    server.cleanup()


def chromium_major():
    version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=30).stdout
    return re.search(r"Chromium (\d+)\.", version).group(1)


def route_dimensions(turn, relay_protocol):
    """What a route of these calls is: loopback, every candidate over UDP on an "ethernet" network
    (the TURN client connection is what goes over TCP or TLS), Opus and VP8 sent both ways."""
    return {"candidate_type": "relay" if relay_protocol else "host", "relay_protocol": relay_protocol,
            "turn_server": turn.server(relay_protocol) if relay_protocol else None, "transport": "udp",
            "network_type": "ethernet", "audio_codec": "opus", "video_codec": "VP8"}


def peer_dimensions(turn, route):
    """A peer's dimensions as the server gives them: the known ones only."""
    known = {name: value for name, value in route_dimensions(turn, ROUTES[route]).items() if value is not None}
    return {"browser": "HeadlessChrome", "browser_version": chromium_major(), "os": "Linux", **PLACE, **known,
            **KEPT_TAGS}


def local_candidates(report):
    return [stat for stat in report if stat["type"] == "local-candidate"]


@contextlib.asynccontextmanager
async def made_calls(start_server, app_config, turn, routes, **options):
    """A server (call timeout long: only the end events end the calls), then each route's call, one
    after the other, on one page: connected, both ends' samples acknowledged twice, then stopped.
    Yields (the server, the page, its User-Agent, {route: {"sent": the samples rtcscope.js sent, "raw":
    {peer: getStats() whole}, "monitors": {peer: monitor stats}, "ws_url": the caller's}})."""
    application = await start_server(**{**app_config, "call_timeout": 120.0, "geoip_db": GEOIP_DB})
    await application.store.setup()
    made = {}
    async with calls.calls_page(application.base_url) as page:
        user_agent = await page.evaluate("navigator.userAgent")
        for route in routes:
            await calls.start_call(page, route, calls.rtc_configuration(turn, ROUTES[route]), tags=TAGS, **options)
            monitors = await calls.wait_delivered(page, route, 2)
            made[route] = {"raw": {peer: await calls.raw_report(page, route, peer) for peer in PEERS},
                           "monitors": monitors, "sent": await calls.samples(page, route),
                           "ws_url": await page.evaluate("(call) => calls[call].monitors.caller.wsUrl", route)}
            await calls.stop_call(page, route)
        yield application, page, user_agent, made


def assert_sent_route(turn, route, sent, raw):
    """The reports rtcscope.js sent give the route of the real call, as the whole report does, and
    carry no address: of the local relay candidate's TURN url, host:port alone. The tags go as
    strings on every sample (for POST)."""
    relay_protocol = ROUTES[route]
    expected = route_dimensions(turn, relay_protocol)
    assert all(sample["tags"] == {**TAGS, "build": "77"} for sample in sent)
    for peer in PEERS:
        reports = [sample["report"] for sample in sent if sample["peer"] == peer]
        assert len(reports) >= 2, (route, peer)
        assert report_dimensions(raw[peer]) == expected, (route, peer)
        assert report_dimensions(reports[-1]) == expected, (route, peer)
        addresses = {str(stat[name]) for stat in raw[peer] for name in ("address", "relatedAddress") if name in stat}
        assert addresses
        for report in reports:
            assert not [stat for stat in report if set(stat) & ADDRESS_FIELDS or stat["type"] == "certificate"]
            urls = [stat.pop("url") for stat in local_candidates(report) if "url" in stat]
            assert not [stat for stat in report if "url" in stat]
            assert urls == ([turn.server(relay_protocol)] if relay_protocol else [])
            text = json.dumps(report)
            assert not [address for address in addresses if address in text], (route, peer)
        raw_urls = [stat["url"] for stat in local_candidates(raw[peer]) if stat["candidateType"] == "relay"]
        assert raw_urls == ([turn.ice_server(relay_protocol)["urls"]] if relay_protocol else []), raw_urls


async def assert_call_dimensions(page, base_url, turn, route):
    """GET /v1/calls/<call>/ gives both peers the route's dimensions, and no change of them; the call
    page shows each peer's, and says how it connects."""
    expected = {peer: peer_dimensions(turn, route) for peer in PEERS}

    async def answered():
        status, summary, _ = await get(AsyncHTTPClient(), f"{base_url}/v1/calls/{route}/")
        return summary if status == 200 and summary["dimensions"] == expected else (status, summary)
    summary = await eventually(answered, timeout=20)
    assert summary["dimension_changes"] == []

    await page.goto(f"{base_url}/calls/{route}/")
    await page.wait_for_selector('#peer-dims[data-peers="2"] .dim', timeout=WAIT_MS)
    shown = await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll("#peer-dims .peer-card")]
        .map((card) => [card.dataset.peer, {
          values: Object.fromEntries([...card.querySelectorAll(".dim")].map((dim) =>
            [dim.dataset.dimension, dim.title.slice(dim.dataset.dimension.length + 3)])),
          route: card.querySelector('[data-line="route"]').textContent}]))""")
    assert {peer: card["values"] for peer, card in shown.items()} == expected
    relay_protocol = ROUTES[route]
    said = f"relayed over {relay_protocol.upper()} through {turn.server(relay_protocol)}" if relay_protocol else "direct"
    assert [card["route"] for card in shown.values()] == [said, said]


async def assert_peer_summaries(influxd, database, since_ms, turn, routes):
    """Each ended peer's rtc_peer_summaries point has its dimensions as tags, nothing else."""
    expected = sorted(json.dumps(peer_dimensions(turn, route), sort_keys=True) for route in routes
                       for _ in PEERS)

    def written():
        rows = influxd.rows(f"SELECT * FROM rtc_peer_summaries WHERE time >= {since_ms}ms", database)
        return sorted(json.dumps({name: value for name, value in row.items()
                                  if name not in PEER_SUMMARY_FIELDS and value is not None}, sort_keys=True)
                      for row in rows)
    await eventually(lambda: len(written()) >= len(expected), timeout=30)
    assert written() == expected


def stored_values(influxd, database, since_ms):
    """(measurement, column, value) of every point stored since `since_ms`, in every retention policy."""
    policies = [row["name"] for row in influxd.rows("SHOW RETENTION POLICIES", database)]
    measurements = [row["name"] for row in influxd.rows("SHOW MEASUREMENTS", database)]
    assert measurements
    for policy in policies:
        for measurement in measurements:
            statement = f'SELECT * FROM "{policy}"."{measurement}" WHERE time >= {since_ms}ms'
            for row in influxd.rows(statement, database):
                for column, value in row.items():
                    yield measurement, column, value


def assert_nothing_identifying(influxd, database, since_ms, user_agent, made, turn):
    """Read straight from InfluxDB, every measurement, tag and field of the test's time: no address
    of the browser (127.0.0.1 only as a TURN server's host:port, under turn_server), no User-Agent
    string, no candidate or pair id, no field named after an address."""
    raws = [report for call in made.values() for report in call["raw"].values()]
    ids = {stat["id"] for report in raws for stat in report
           if stat["type"] in ("local-candidate", "remote-candidate", "candidate-pair")}
    addresses = {str(stat[name]) for report in raws for stat in report for name in ("address", "relatedAddress")
                 if name in stat}
    ufrags = {stat["usernameFragment"] for report in raws for stat in report if stat.get("usernameFragment")}
    turn_servers = {turn.server(protocol) for protocol in ("udp", "tcp", "tls")}
    assert "127.0.0.1" in addresses and ids and ufrags
    seen = set()
    for measurement, column, value in stored_values(influxd, database, since_ms):
        assert column not in ADDRESS_FIELDS, (measurement, column)
        if not isinstance(value, str):
            continue
        # The dimensions' JSON (`d` of rtc_feed and rtc_dimensions) is read value by value.
        found = json.loads(value).items() if column == "d" else [(column, value)]
        for name, text in found:
            if text is None:
                continue
            where = (measurement, name, text)
            seen.add(where)
            assert user_agent not in text and "Mozilla/" not in text and "AppleWebKit" not in text, where
            assert not [candidate_id for candidate_id in ids if candidate_id in text], where
            assert not [ufrag for ufrag in ufrags if len(ufrag) >= 4 and ufrag in text], where
            if any(address in text for address in addresses):
                assert name == "turn_server" and text in turn_servers, where
    # What was read is where the dimensions are: the check looked at them.
    for measurement in ("rtc_dimensions", "rtc_feed", "rtc_peer_summaries"):
        assert (measurement, "browser", "HeadlessChrome") in seen, measurement
    relayed = [route for route in made if ROUTES[route]]
    assert {text for measurement, name, text in seen if name == "turn_server"} == \
        {turn.server(ROUTES[route]) for route in relayed}


@pytest.mark.browser
@pytest.mark.gen_test(timeout=300)
async def test_real_calls_direct_and_relayed_over_udp_tcp_and_tls_over_the_websocket(
        start_server, app_config, influxd, database, turn):
    since_ms = int(time.time() * 1000) - 60_000
    async with made_calls(start_server, app_config, turn, ROUTES) as (application, page, user_agent, made):
        assert UserAgents().parse(user_agent) == {"browser": "HeadlessChrome", "browser_version": chromium_major(),
                                                  "os": "Linux"}
        for route, call in made.items():
            assert {stats["transport"] for stats in call["monitors"].values()} == {"websocket"}
            assert_sent_route(turn, route, call["sent"], call["raw"])
            # The tags go on the websocket URL; the server keeps the --peer-tags ones.
            assert call["ws_url"].endswith("&tag.region=eu-west&tag.app_version=5.2&tag.customer=acme&tag.build=77")
            await assert_call_dimensions(page, application.base_url, turn, route)
    await assert_peer_summaries(influxd, database, since_ms, turn, ROUTES)
    assert_nothing_identifying(influxd, database, since_ms, user_agent, made, turn)


@pytest.mark.browser
@pytest.mark.gen_test(timeout=200)
async def test_real_calls_direct_and_relayed_over_tcp_by_post(
        start_server, app_config, influxd, database, turn):
    since_ms = int(time.time() * 1000) - 60_000
    routes = ["direct", "relay-tcp"]
    async with made_calls(start_server, app_config, turn, routes, transport="post") as (
            application, page, user_agent, made):
        for route, call in made.items():
            assert {stats["transport"] for stats in call["monitors"].values()} == {"post"}
            assert_sent_route(turn, route, call["sent"], call["raw"])
            await assert_call_dimensions(page, application.base_url, turn, route)
    await assert_peer_summaries(influxd, database, since_ms, turn, routes)
    assert_nothing_identifying(influxd, database, since_ms, user_agent, made, turn)
