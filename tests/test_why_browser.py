"""Why calls are bad, in a real headless Chromium against a real server and influxd: the dashboard's
why panel and breakdown, its list filtered to a cohort, and the call page's dimensions (SPEC §15)."""
import json

import pytest

from tests.support.api import get, post
from tests.support.browser import WAIT_MS, browser_page, wait_for_text
from tests.support.fleet import FLEET_CONFIG, Fleet, good_calls, wait_for_dataset
from tests.support.samples import now_ms, split_by_call
from tests.support.waits import eventually


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
async def test_a_server_without_the_explanation_says_so_and_the_list_still_works(http_client, base_url, app):
    """A server that does not answer /v1/fleet/explain/ or /v1/fleet/breakdown/ (one not upgraded yet
    behind the same address): the panels say so, the live list and its filter chip keep working."""
    fleet = Fleet(http_client, base_url)
    await fleet.write(good_calls(fleet, 3))
    async with browser_page(expected_statuses=(404,)) as page:
        missing = json.dumps({"error": {"code": 404, "message": "Not Found"}})
        for path in ("**/v1/fleet/explain/*", "**/v1/fleet/breakdown/*"):
            await page.route(path, lambda route: route.fulfill(status=404, content_type="application/json", body=missing))
        await page.goto(base_url + "/dashboard?metrics=rtt")
        await wait_for_dataset(page, "#live-calls", "total", 3)
        await wait_for_text(page, "#no-findings", "The explanation is not available on this server.")
        await wait_for_text(page, "#no-breakdown", "The breakdown is not available on this server.")
        assert await page.eval_on_selector_all("#findings li", "items => items.length") == 0
        assert await page.is_hidden("#filters")

        # a filter in the URL: the chip, the list from the server; its ✕ goes back to the whole live list
        await page.goto(base_url + "/dashboard?metrics=rtt&browser=Chrome")
        await wait_for_dataset(page, "#live-calls", "filtered", "loaded")
        assert await page.text_content("#filters .filter-chip") == "browser = Chrome✕"
        await page.click("#filters .filter-chip button")
        await wait_for_dataset(page, "#live-calls", "filtered", "")
        assert await page.is_hidden("#filters")
        assert await page.evaluate("location.search") == "?metrics=rtt"
        await wait_for_dataset(page, "#live-calls", "count", 3)


CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Safari/537.36")
FIREFOX_UBUNTU = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
BAD_TURN = "turn-2.example.com:443"
RELAY_CALLS = [f"relay-{i}" for i in range(6)]
OK_CALLS = [f"ok-{i:02d}" for i in range(14)]
COHORT_RULES = """
[[rule]]
name = "turn_server_poor"
by = "turn_server"
metric = "poor_share"
op = ">"
threshold = 0.5
for = "1s"
min_peers = 5
severity = "critical"
"""


@pytest.fixture
def cohort_rules(tmp_path):
    """A rules file with a cohort rule on TURN servers."""
    rules = tmp_path / "rules.toml"
    rules.write_text(COHORT_RULES)
    return str(rules)


@pytest.fixture
def app_config(app_config, request):
    """The fleet settings; the cohort rule for a test that asks for `cohort_rules`."""
    config = dict(app_config, **FLEET_CONFIG)
    if "cohort_rules" in request.fixturenames:
        config["alert_rules"] = request.getfixturevalue("cohort_rules")
    return config


def report(ts, candidate, candidate_type, network, turn=None, video_codec="VP8"):
    """The connection's part of a getStats() report: the selected pair's local candidate and the codecs sent."""
    local = {"id": candidate, "type": "local-candidate", "timestamp": ts, "candidateType": candidate_type,
             "protocol": "udp", "networkType": network}
    if turn:
        local.update(relayProtocol="tcp", url=f"turn:{turn}?transport=tcp")
    return [{"id": "T01", "type": "transport", "timestamp": ts, "selectedCandidatePairId": "CP1"},
            {"id": "CP1", "type": "candidate-pair", "timestamp": ts, "state": "succeeded", "nominated": True,
             "localCandidateId": candidate, "bytesSent": 1000, "bytesReceived": 1000},
            local,
            {"id": "CO111", "type": "codec", "timestamp": ts, "mimeType": "audio/opus"},
            {"id": "CO96", "type": "codec", "timestamp": ts, "mimeType": "video/" + video_codec},
            {"id": "OA1", "type": "outbound-rtp", "timestamp": ts, "kind": "audio", "codecId": "CO111", "bytesSent": 500},
            {"id": "OV1", "type": "outbound-rtp", "timestamp": ts, "kind": "video", "codecId": "CO96", "bytesSent": 500}]


async def send_known_fleet(fleet, network="wifi"):
    """Twenty calls of two peers: alice on Firefox, direct; bob on Chrome, through NAT, except in the six
    relay-* calls, where bob is relayed over TCP through turn-2.example.com:443 and poor. Each client's
    requests carry its User-Agent, its tags and its raw report."""
    ts = now_ms()
    by_agent = {FIREFOX_UBUNTU: [], CHROME_WINDOWS: []}
    for call in RELAY_CALLS + OK_CALLS:
        relayed = call in RELAY_CALLS
        alice = fleet.samples(call, "alice", 30.0, 0.0) + [
            {"call": call, "peer": "alice", "ts": ts, "report": report(ts, "Ialice-" + network, "host", network)}]
        bob = fleet.samples(call, "bob", 450.0 if relayed else 40.0, 0.1 if relayed else 0.0) + [
            {"call": call, "peer": "bob", "ts": ts, "report": report(ts, "Ibob", "relay" if relayed else "srflx", "ethernet",
                                                                     turn=BAD_TURN if relayed else None, video_codec="VP9")}]
        by_agent[FIREFOX_UBUNTU] += [dict(s, tags={"region": "eu-west"}) for s in alice]
        by_agent[CHROME_WINDOWS] += [dict(s, tags={"region": "us-east", "app_version": "5.2"}) for s in bob]
    for agent, samples in by_agent.items():
        for body in split_by_call(samples):
            status, result, _ = await post(fleet.http_client, fleet.base_url + "/v1/stats/write/", body,
                                           headers={"User-Agent": agent})
            assert status == 200, result


async def listed(page):
    return sorted(await page.eval_on_selector_all("#live-calls tr", "trs => trs.map(tr => tr.dataset.call)"))


async def breakdown_rows(page):
    return await page.eval_on_selector_all("#breakdown-table tbody tr", """trs => trs.map(tr => [
        tr.dataset.value, Number(tr.dataset.peers), Number(tr.dataset.poor),
        tr.querySelector('.bar-fill').style.width])""")


@pytest.mark.browser
@pytest.mark.gen_test(timeout=180)
async def test_the_why_panel_finds_the_bad_cohort_and_a_click_lists_exactly_its_calls(cohort_rules, http_client, base_url,
                                                                                      app):
    fleet = Fleet(http_client, base_url)
    await send_known_fleet(fleet)
    async with browser_page() as page:
        await page.goto(base_url + "/dashboard?metrics=rtt")
        await wait_for_dataset(page, "#live-calls", "total", 20)

        # the finding, in words: all six poor peers go through turn-2, 15 % of the 40 peers
        await page.wait_for_selector(f'#findings li[data-value="{BAD_TURN}"]', timeout=WAIT_MS)
        findings = await page.eval_on_selector_all(
            "#findings li", "lis => lis.map(li => [li.dataset.dimension, li.dataset.value])")
        assert findings == [["turn_server", BAD_TURN]]
        sentence = await page.text_content("#findings li .finding-text")
        assert sentence == f"6 of 6 poor peers are relayed through {BAD_TURN} — 15 % of all peers"
        assert "100 % of its 6 peers are poor, against 15 % of the fleet" in await page.text_content("#findings li")
        assert await page.text_content("#why-note") == "6 poor peers of 40 live"
        status, explained, _ = await get(http_client, base_url + "/v1/fleet/explain/?state=live")
        assert status == 200 and [(f["dimension"], f["value"], f["poor"]) for f in explained["findings"]] == [
            ("turn_server", BAD_TURN, 6)]

        # the cohort alert, with its link
        await page.wait_for_selector(f'#cohort-alerts li[data-value="{BAD_TURN}"]', timeout=WAIT_MS)
        alert = await page.text_content("#cohort-alerts li")
        assert "turn_server_poor" in alert and f"peers that are relayed through {BAD_TURN}" in alert
        assert "6 of 6 live peers poor" in alert
        href = await page.get_attribute("#cohort-alerts li a", "href")
        assert href == "/dashboard?metrics=rtt&turn_server=turn-2.example.com%3A443"

        # a click: exactly the cohort's calls, the filter in the URL and on a chip
        await page.click("#findings li .finding-text")
        await wait_for_dataset(page, "#live-calls", "filtered", "loaded")
        await wait_for_dataset(page, "#live-calls", "count", 6)
        assert await listed(page) == RELAY_CALLS
        assert await page.evaluate("location.search") == "?metrics=rtt&turn_server=turn-2.example.com%3A443"
        assert await page.text_content("#filters .filter-chip") == f"turn_server = {BAD_TURN}✕"
        assert await page.text_content("#calls-count") == "6 of 20"
        assert await page.get_attribute("#findings li .finding-text", "aria-current") == "true"
        status, document, _ = await get(http_client, base_url + "/v1/calls/?state=live&sort=worst&turn_server=" + BAD_TURN)
        assert status == 200 and [row[0] for row in await page.eval_on_selector_all(
            "#live-calls tr", "trs => trs.map(tr => [tr.dataset.call])")] == [c["call"] for c in document["calls"]]

        # the URL keeps it: a reload shows the same list; Back goes to the whole list
        await page.reload()
        await wait_for_dataset(page, "#live-calls", "filtered", "loaded")
        assert await listed(page) == RELAY_CALLS
        await page.go_back()
        await wait_for_dataset(page, "#live-calls", "filtered", "")
        await wait_for_dataset(page, "#live-calls", "count", 20)
        assert await page.get_attribute("#findings li .finding-text", "aria-current") is None

        # the breakdown by TURN server: the bad one on top with a full bar, the direct peers as unknown
        await page.wait_for_function("() => document.getElementById('breakdown-table').dataset.by === 'turn_server'",
                                     timeout=WAIT_MS)
        await page.wait_for_function("() => document.querySelectorAll('#breakdown-table tbody tr').length === 2",
                                     timeout=WAIT_MS)
        assert await breakdown_rows(page) == [[BAD_TURN, 6, 6, "100%"], ["", 34, 0, "0%"]]
        assert await page.text_content('#breakdown-table tr[data-value=""] .value') == "not relayed"
        assert await page.eval_on_selector_all('#breakdown-table tr[data-hot="1"]', "trs => trs.map(tr => tr.dataset.value)") == [
            BAD_TURN]

        # by browser: a value's click lists its calls, the choice and the filter in the URL
        await page.select_option("#breakdown-by", "browser")
        await page.wait_for_function("() => document.getElementById('breakdown-table').dataset.by === 'browser'",
                                     timeout=WAIT_MS)
        assert await breakdown_rows(page) == [["Chrome", 20, 6, "30%"], ["Firefox", 20, 0, "0%"]]
        await page.click('#breakdown-table tr[data-value="Firefox"] a')
        await wait_for_dataset(page, "#live-calls", "filtered", "loaded")
        await wait_for_dataset(page, "#live-calls", "count", 20)
        assert await page.evaluate("location.search") == "?metrics=rtt&by=browser&browser=Firefox"
        await page.goto(base_url + "/dashboard?metrics=rtt&by=os&browser=Chrome")
        await wait_for_dataset(page, "#live-calls", "filtered", "loaded")
        assert await page.eval_on_selector("#breakdown-by", "select => select.value") == "os"
        await page.wait_for_function("() => document.getElementById('breakdown-table').dataset.by === 'os'",
                                     timeout=WAIT_MS)
        assert [row[0] for row in await breakdown_rows(page)] == ["Windows", "Ubuntu"]
        assert len(page.loads) == 3


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
async def test_the_call_page_says_who_where_and_how_each_peer_connects(http_client, base_url, app):
    fleet = Fleet(http_client, base_url)
    await send_known_fleet(fleet)
    await eventually(lambda: "relay-0" in app.detector.live_calls)
    await send_known_fleet(fleet, network="cellular")  # alice leaves the Wi-Fi
    async with browser_page() as page:
        await page.goto(base_url + "/calls/relay-0/")
        await page.wait_for_selector('.peer-card[data-peer="bob"] dd[data-line="route"]', timeout=WAIT_MS)
        bob = '.peer-card[data-peer="bob"]'
        assert await page.text_content(f'{bob} dd[data-line="browser"]') == "Chrome 131 on Windows 10"
        assert await page.text_content(f'{bob} dd[data-line="route"]') == f"relayed over TCP through {BAD_TURN}"
        assert await page.text_content(f'{bob} dd[data-line="network"]') == "ethernet"
        assert await page.text_content(f'{bob} dd[data-line="codecs"]') == "opus · VP9"
        assert await page.text_content(f'{bob} dd[data-line="tags"]') == "app_version 5.2 · region us-east"
        assert await page.get_attribute(bob, "data-verdict") == "poor"
        alice = '.peer-card[data-peer="alice"]'
        assert await page.text_content(f'{alice} dd[data-line="browser"]') == "Firefox 133 on Ubuntu"
        assert await page.text_content(f'{alice} dd[data-line="route"]') == "direct"
        await wait_for_text(page, f'{alice} dd[data-line="network"]', "cellular")
        await wait_for_text(page, f"{alice} .dim-changes", "Network Wi-Fi → cellular")
        status, summary, _ = await get(http_client, base_url + "/v1/calls/relay-0/")
        assert status == 200
        assert summary["dimensions"]["bob"]["turn_server"] == BAD_TURN
        change = [c for c in summary["dimension_changes"] if c["peer"] == "alice" and c["dimension"] == "network_type"]
        assert [(c["from"], c["to"]) for c in change] == [("wifi", "cellular")]
        shown = await page.text_content(f"{alice} .dim-changes .change-when")
        assert shown == await page.evaluate("ms => new Date(ms).toTimeString().slice(0, 8)", change[0]["at"])


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
async def test_the_breakdown_over_the_peers_that_ended(http_client, base_url, app):
    fleet = Fleet(http_client, base_url)
    await send_known_fleet(fleet)
    await eventually(lambda: len(app.detector.live_calls) == 20)
    for call in RELAY_CALLS[:4] + OK_CALLS[:6]:
        status, result, _ = await post(http_client, base_url + "/v1/stats/write/", {"call": call, "event": "end"})
        assert status == 200, result

    async def ended_peers():
        status, document, _ = await get(http_client, base_url + "/v1/fleet/breakdown/?by=turn_server&state=ended&duration=24h")
        assert status == 200, document
        return document["peers"] == 20 and document

    ended = await eventually(ended_peers, timeout=30)
    async with browser_page() as page:
        await page.goto(base_url + "/dashboard?metrics=rtt&since=24h")
        await page.wait_for_function("() => document.getElementById('breakdown-table').dataset.state === 'ended'",
                                     timeout=WAIT_MS)
        assert await page.get_attribute("#breakdown-ranges button.active", "data-breakdown") == "24h"
        rows = await breakdown_rows(page)
        assert rows == [[BAD_TURN, 4, 4, "100%"], ["", 16, 0, "0%"]]
        assert [[v["value"] or "", v["peers"], v["poor"]] for v in ended["values"]] == [row[:3] for row in rows]
        assert await page.text_content("#breakdown-totals") == (
            "20 peers ended in the last 24 h · 20 % poor · the line marks the fleet's share")
        # back to live: the twenty peers of the ten calls still live
        await page.click('#breakdown-ranges button[data-breakdown="live"]')
        await page.wait_for_function("() => document.getElementById('breakdown-table').dataset.state === 'live'",
                                     timeout=WAIT_MS)
        assert await breakdown_rows(page) == [[BAD_TURN, 2, 2, "100%"], ["", 18, 0, "0%"]]
        assert await page.evaluate("location.search") == "?metrics=rtt"
