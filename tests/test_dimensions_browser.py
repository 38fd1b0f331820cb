"""Every peer's dimensions from a real browser (SPEC §15): Chromium calls direct and forced
through a real TURN server on loopback (coturn) over UDP, TCP and TLS, both ends monitored by
the shipped rtcscope.js sending to a real server, over its websocket and by POST."""
import json
import re
import subprocess

import pytest

from rtcscope.dimensions.report import report_dimensions
from rtcscope.dimensions.useragent import UserAgents
from tests.support import calls
from tests.support.calls import PEERS, ROUTES
from tests.support.reports import PRIVATE_FIELDS
from tests.support.turn import Coturn

# Fields of the raw report that say where a person is; rtcscope.js never sends them.
ADDRESS_FIELDS = PRIVATE_FIELDS - {"url"}
TAGS = {"region": "eu-west", "app_version": "5.2"}


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


def local_candidates(report):
    return [stat for stat in report if stat["type"] == "local-candidate"]


async def make_calls(page, turn, routes, **options):
    """Each route's call, one after the other: connected, both ends' samples acknowledged twice, then
    stopped; {route: (the samples sent, {peer: getStats() whole at the end})}."""
    made = {}
    for route in routes:
        await calls.start_call(page, route, calls.rtc_configuration(turn, ROUTES[route]), **options)
        await calls.wait_delivered(page, route, 2)
        raw = {peer: await calls.raw_report(page, route, peer) for peer in PEERS}
        made[route] = (await calls.samples(page, route), raw)
        await calls.stop_call(page, route)
    return made


def assert_sent_route(turn, route, sent, raw):
    """The reports rtcscope.js sent give the route of the real call, as the whole report does, and
    carry no address: of the local relay candidate's TURN url, host:port alone."""
    relay_protocol = ROUTES[route]
    expected = route_dimensions(turn, relay_protocol)
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


@pytest.mark.browser
@pytest.mark.gen_test(timeout=240)
async def test_route_codecs_browser_and_tags_of_real_calls_over_the_websocket(start_server, app_config, turn):
    application = await start_server(**{**app_config, "call_timeout": 120.0})
    await application.store.setup()
    async with calls.calls_page(application.base_url) as page:
        user_agent = await page.evaluate("navigator.userAgent")
        made = await make_calls(page, turn, ROUTES, tags={**TAGS, "customer": "acme", "build": 77})
        ws_urls = await page.evaluate("Object.values(calls).map((c) => c.monitors.caller.wsUrl)")
        transports = await page.evaluate("Object.values(calls).flatMap((c) => Object.values(c.monitors))"
                                         ".map((m) => m.transport)")

    assert transports == ["websocket"] * 2 * len(ROUTES)
    for route, (sent, raw) in made.items():
        assert_sent_route(turn, route, sent, raw)
        # The tags go as strings on every sample (for POST) and as tag.<name>= on the websocket URL.
        assert all(sample["tags"] == {**TAGS, "customer": "acme", "build": "77"} for sample in sent)
    assert all(url.endswith("&tag.region=eu-west&tag.app_version=5.2&tag.customer=acme&tag.build=77")
               for url in ws_urls), ws_urls
    assert UserAgents().parse(user_agent) == {"browser": "HeadlessChrome", "browser_version": chromium_major(),
                                              "os": "Linux"}


@pytest.mark.browser
@pytest.mark.gen_test(timeout=180)
async def test_route_of_a_call_relayed_over_tcp_sent_by_post(start_server, app_config, turn):
    application = await start_server(**{**app_config, "call_timeout": 120.0})
    await application.store.setup()
    async with calls.calls_page(application.base_url) as page:
        made = await make_calls(page, turn, ["relay-tcp"], transport="post", tags=TAGS)
        transports = await page.evaluate("Object.values(calls['relay-tcp'].monitors).map((m) => m.transport)")
    assert transports == ["post", "post"]
    sent, raw = made["relay-tcp"]
    assert_sent_route(turn, "relay-tcp", sent, raw)
    assert all(sample["tags"] == TAGS for sample in sent)
