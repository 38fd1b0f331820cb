"""Why calls are poor, over HTTP against a real influxd and an in-process server: a known
fleet posted as clients post it (JSON samples with their browser's User-Agent, tags and a
raw getStats() report), its breakdown and explanation live and once ended, and the live
list filtered by dimension, paged (SPEC §15); with Janus's views of some of its peers (§16)."""
import pytest

from rtcscope.quality import estimate_mos
from tests.support.api import assert_error, get, post
from tests.support.janus import view_events
from tests.support.reports import REPORTS, relayed
from tests.support.samples import FLEET, call_samples, now_ms
from tests.support.waits import eventually

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
          "Safari/605.1.15")
CLIENTS = (CHROME, FIREFOX, SAFARI)
TURN_2 = "turn-2.example.com:443"
DIRECT = REPORTS[-1]  # a real Chromium's report: host candidate on ethernet, Opus and VP8
THROUGH_TURN_1 = relayed(relay_protocol="udp", url="turn:turn-1.example.com:3478?transport=udp")
THROUGH_TURN_2 = relayed()  # over TCP to turn-2.example.com:443
BAD = (700.0, 30.0, 0.08)  # rtt, jitter, loss
GOOD = (40.0, 3.0, 0.0)
CALLS = 30


def peer_of(index, peer):
    """(User-Agent, report, region, quality) of one peer of call `index`: alice is relayed over
    TCP through turn-2 in calls 0-7, where she is poor, and over UDP through turn-1 in calls
    8-13; everyone else is direct; two direct peers are poor besides."""
    user_agent = CLIENTS[(index + (peer == "bob")) % 3]
    region = "eu-west" if index % 2 else "us-east"
    if peer == "alice" and index < 8:
        return user_agent, THROUGH_TURN_2, region, BAD
    if peer == "alice" and index < 14:
        return user_agent, THROUGH_TURN_1, region, GOOD
    return user_agent, DIRECT, region, BAD if peer == "bob" and index in (20, 21) else GOOD


def call_id(index):
    return f"c-{index:02d}"


async def post_fleet(http_client, base_url, calls=range(CALLS)):
    """Each peer's samples and raw report in a request of its own, with its browser's User-Agent."""
    start = now_ms() - 6000
    for index in calls:
        for peer in ("alice", "bob"):
            user_agent, report, region, (rtt, jitter, loss) = peer_of(index, peer)
            body = call_samples(call_id(index), start, rtt, jitter, loss, peer=peer)
            body.append({"call": call_id(index), "peer": peer, "report": report, "tags": {"region": region}})
            status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body,
                                           headers={"User-Agent": user_agent})
            assert status == 200, result


async def live_fleet(http_client, base_url, app):
    await post_fleet(http_client, base_url)
    await eventually(lambda: app.writer.depth == 0)
    await app.detector.run_tick()
    assert sum(1 for _ in app.detector.live_peers()) == 2 * CALLS


async def get_ok(http_client, url):
    status, document, _ = await get(http_client, url)
    assert status == 200, document
    return document


def calls_of(document):
    return [found["call"] for found in document["calls"]]


BAD_MOS = round(estimate_mos(*BAD), 2)
TURN_2_FINDING = {"dimension": "turn_server", "value": TURN_2, "peers": 8, "poor": 8, "poor_share": 1.0,
                  "share_of_poor": 0.8, "lift": 6.0}


@pytest.mark.app_config(**FLEET)
@pytest.mark.gen_test(timeout=120)
async def test_live_breakdown_and_explanation_of_a_known_fleet(http_client, base_url, app):
    await live_fleet(http_client, base_url, app)
    document = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=turn_server")
    good_mos = round(estimate_mos(*GOOD), 2)
    assert document == {"by": "turn_server", "state": "live", "peers": 60, "poor": 10, "values": [
        {"value": TURN_2, "peers": 8, "poor": 8, "poor_share": 1.0, "mos_p50": BAD_MOS, "lift": 6.0},
        {"value": None, "peers": 46, "poor": 2, "poor_share": 0.0435, "mos_p50": pytest.approx(good_mos, abs=0.3),
         "lift": 0.26},
        {"value": "turn-1.example.com:3478", "peers": 6, "poor": 0, "poor_share": 0.0,
         "mos_p50": pytest.approx(good_mos, abs=0.3), "lift": 0.0}]}
    by_browser = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=browser&state=live")
    assert {found["value"]: found["peers"] for found in by_browser["values"]} == {"Chrome": 20, "Firefox": 20,
                                                                                  "Safari": 20}
    by_region = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=region")  # a --peer-tags name
    assert {found["value"]: found["poor"] for found in by_region["values"]} == {"us-east": 5, "eu-west": 5}

    explained = await get_ok(http_client, base_url + "/v1/fleet/explain/")
    # The cohort once: relayed over TCP and relayed at all are the same poor peers, less well named.
    assert explained == {"peers": 60, "poor": 10, "findings": [TURN_2_FINDING]}
    assert await get_ok(http_client, base_url + "/v1/fleet/explain/?state=live") == explained


@pytest.mark.app_config(**FLEET)
@pytest.mark.gen_test(timeout=120)
async def test_the_live_list_filtered_by_dimension_and_paged(http_client, base_url, app):
    await live_fleet(http_client, base_url, app)
    url = base_url + f"/v1/calls/?state=live&sort=worst&limit=3&turn_server={TURN_2}"
    walked, cursor = [], None
    while True:
        page = await get_ok(http_client, url + (f"&cursor={cursor}" if cursor else ""))
        assert page["count"] == 8 and len(page["calls"]) <= 3
        assert all(found["quality"]["verdict"] == "poor" for found in page["calls"])
        walked += calls_of(page)
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(walked) == [call_id(i) for i in range(8)] and len(walked) == 8

    relayed_udp = await get_ok(http_client, base_url + "/v1/calls/?relay_protocol=udp&limit=100")
    assert sorted(calls_of(relayed_udp)) == [call_id(i) for i in range(8, 14)] and relayed_udp["count"] == 6
    # One peer has every value: alice is on Firefox in calls 1, 4 and 7; in call 0 bob is on
    # Firefox and alice relayed, which is two peers, not one.
    both = await get_ok(http_client, base_url + f"/v1/calls/?browser=Firefox&turn_server={TURN_2}")
    assert sorted(calls_of(both)) == ["c-01", "c-04", "c-07"] and both["count"] == 3
    by_tag = await get_ok(http_client, base_url + "/v1/calls/?region=eu-west&state=live&limit=1000")
    assert sorted(calls_of(by_tag)) == [call_id(i) for i in range(1, CALLS, 2)]
    nothing = await get_ok(http_client, base_url + "/v1/calls/?browser=Opera")
    assert nothing == {"calls": [], "count": 0, "next": None}
    everyone = await get_ok(http_client, base_url + "/v1/calls/?state=live&limit=1000&token=")
    assert everyone["count"] == CALLS


@pytest.mark.app_config(**FLEET)
@pytest.mark.gen_test(timeout=60)
async def test_bad_input_is_a_json_400_that_lists_the_known_dimensions(http_client, base_url, app):
    await app.detector.run_tick()
    for path in ("/v1/calls/?nope=1", "/v1/calls/?state=live&browser=Chrome&Browser=Chrome",
                 "/v1/fleet/breakdown/?by=nope", "/v1/fleet/breakdown/?by=", "/v1/fleet/breakdown/"):
        status, document, _ = await get(http_client, base_url + path)
        assert_error(status, document, 400, "bad_request")
        message = document["error"]["message"]
        assert "known: browser, browser_version, os" in message and "region, app_version, media_server" in message
    for path in ("/v1/calls/?browser=Chrome&browser=Safari", "/v1/fleet/breakdown/?by=os&state=gone",
                 "/v1/fleet/breakdown/?by=os&duration=1h", "/v1/fleet/explain/?state=ended&duration=soon",
                 "/v1/fleet/explain/?state=ended&duration=400d", "/v1/fleet/breakdown/?by=os&by=browser"):
        status, document, _ = await get(http_client, base_url + path)
        assert_error(status, document, 400, "bad_request")


@pytest.mark.app_config(call_timeout=30.0)
@pytest.mark.gen_test(timeout=180)
async def test_ended_peers_breakdown_explanation_and_list_from_the_history(http_client, base_url, app, influxd,
                                                                           database):
    await post_fleet(http_client, base_url)
    await eventually(lambda: sum(1 for _ in app.detector.live_peers()) == 2 * CALLS, timeout=30)
    ends = [{"call": call_id(index), "peer": peer, "event": "end"} for index in range(CALLS) for peer in ("alice", "bob")]
    for start in range(0, len(ends), 20):  # at most 10 calls a request
        status, result, _ = await post(http_client, base_url + "/v1/stats/write/", ends[start:start + 20])
        assert status == 200, result

    def summarised():
        rows = influxd.rows('SELECT count("poor") FROM rtc_peer_summaries WHERE time > 0', database)
        return rows and rows[0]["count"] == 2 * CALLS
    await eventually(summarised, timeout=60)

    document = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=turn_server&state=ended&duration=1h")
    assert (document["by"], document["state"], document["peers"], document["poor"]) == ("turn_server", "ended", 60, 10)
    assert [(v["value"], v["peers"], v["poor"], v["lift"]) for v in document["values"]] == [
        (TURN_2, 8, 8, 6.0), (None, 46, 2, 0.26), ("turn-1.example.com:3478", 6, 0, 0.0)]
    assert document["values"][0]["mos_p50"] < 3.6 < document["values"][1]["mos_p50"]
    assert (await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=turn_server&state=ended"))["peers"] == 60

    explained = await get_ok(http_client, base_url + "/v1/fleet/explain/?state=ended&duration=2h")
    assert explained == {"peers": 60, "poor": 10, "findings": [TURN_2_FINDING]}
    assert (await get_ok(http_client, base_url + "/v1/fleet/explain/"))["peers"] == 0  # none live now

    # The ended calls are filtered by their peers' stored dimensions.
    ended = await get_ok(http_client, base_url + f"/v1/calls/?state=ended&turn_server={TURN_2}")
    assert sorted(calls_of(ended)) == [call_id(i) for i in range(8)] and ended["count"] == 8
    firefox = await get_ok(http_client, base_url + "/v1/calls/?state=all&browser=Firefox&relay_protocol=udp")
    assert sorted(calls_of(firefox)) == ["c-10", "c-13"]  # alice on Firefox, through turn-1


async def post_views(http_client, base_url, views, start, detach=False):
    """Janus's posts of its views [(opaque id, emitter, rtt, loss)], each of a handle of its own."""
    for handle, (opaque_id, emitter, rtt, loss) in enumerate(views, 1):
        body = view_events(opaque_id, start, emitter=emitter, handle=handle, rtt=rtt, loss=loss, detach=detach)
        status, result, _ = await post(http_client, base_url + "/v1/integrations/janus/", body)
        assert status == 200, result


def counted(document):
    return {(found["value"], found["peers"], found["poor"]) for found in document["values"]}


@pytest.mark.app_config(**FLEET)
@pytest.mark.gen_test(timeout=120)
async def test_a_client_and_the_media_servers_view_of_it_are_one_peer(http_client, base_url, app):
    """Janus sees alice well in calls 0-13 (janus-eu-1) and bob in calls 20-21 (janus-eu-2): the
    clients' verdicts stand (alice is poor in 0-7, bob in 20-21) and the views add their Janus
    instance. Call j-1 has Janus's data alone: its views are its peers, carol poor. In c-25 Janus
    was told the call alone (peer janus-<handle>): a view of no client, no one."""
    await post_fleet(http_client, base_url)
    views = [(f"{call_id(i)}/alice", "janus-eu-1", 40.0, 0.0) for i in range(14)]
    views += [(f"{call_id(i)}/bob", "janus-eu-2", 40.0, 0.0) for i in (20, 21)]
    views += [("j-1/carol", "janus-us-1", 700.0, 0.08), ("j-1/dave", "janus-us-1", 40.0, 0.0),
              ("c-25", "janus-us-1", 700.0, 0.08)]
    await post_views(http_client, base_url, views, now_ms() - 7000)
    await eventually(lambda: app.writer.depth == 0)
    await app.detector.run_tick()
    assert app.detector.live_states()["c-00"].peers == ["alice", "alice@janus", "bob"]  # stored apart

    by_emitter = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=emitter")
    assert (by_emitter["peers"], by_emitter["poor"]) == (2 * CALLS + 2, 11)
    assert counted(by_emitter) == {("janus-eu-1", 14, 8), ("janus-eu-2", 2, 2), ("janus-us-1", 2, 1), (None, 44, 0)}
    by_turn = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=turn_server")
    assert counted(by_turn) == {(TURN_2, 8, 8), ("turn-1.example.com:3478", 6, 0), (None, 48, 3)}
    by_browser = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=browser")
    assert counted(by_browser) == {("Chrome", 20, 4), ("Firefox", 20, 4), ("Safari", 20, 2), (None, 2, 1)}
    explained = await get_ok(http_client, base_url + "/v1/fleet/explain/")
    assert explained == {"peers": 62, "poor": 11, "findings": [
        dict(TURN_2_FINDING, share_of_poor=round(8 / 11, 4), lift=round(62 / 11, 2))]}

    # One person has every value: alice's client is relayed through turn-2, her view is janus-eu-1's.
    both = await get_ok(http_client, base_url + f"/v1/calls/?state=live&emitter=janus-eu-1&turn_server={TURN_2}")
    assert sorted(calls_of(both)) == [call_id(i) for i in range(8)]
    us = await get_ok(http_client, base_url + "/v1/calls/?state=live&emitter=janus-us-1")
    assert calls_of(us) == ["j-1"]  # not c-25, whose view is no one
    chrome = await get_ok(http_client, base_url + "/v1/calls/?state=live&browser=Chrome&emitter=janus-eu-2")
    assert calls_of(chrome) == ["c-20"]  # bob is on Chrome in c-20, on Firefox in c-21


@pytest.mark.app_config(call_timeout=30.0)
@pytest.mark.gen_test(timeout=180)
async def test_ended_people_are_summarised_once_with_their_views_dimensions(http_client, base_url, app, influxd,
                                                                           database):
    """s-1: alice poor, Janus (janus-eu-1) seeing her well; bob fine, no view. s-2: Janus's data
    alone, carol poor (janus-us-1). Three ended people, not four."""
    start = now_ms() - 8000
    for peer, (rtt, jitter, loss) in (("alice", BAD), ("bob", GOOD)):
        body = call_samples("s-1", start, rtt, jitter, loss, peer=peer)
        status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body, headers={"User-Agent": CHROME})
        assert status == 200, result
    await post_views(http_client, base_url, [("s-1/alice", "janus-eu-1", 40.0, 0.0),
                                             ("s-2/carol", "janus-us-1", 700.0, 0.08)], start)
    await eventually(lambda: {call for call, *_ in app.detector.live_peers()} == {"s-1", "s-2"}, timeout=30)
    await post_views(http_client, base_url, [("s-1/alice", "janus-eu-1", 40.0, 0.0),
                                             ("s-2/carol", "janus-us-1", 700.0, 0.08)], start, detach=True)
    ends = [{"call": "s-1", "peer": peer, "event": "end"} for peer in ("alice", "bob")]
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", ends)
    assert status == 200, result

    def summarised():
        calls = influxd.rows('SELECT count("duration_s") FROM rtc_call_summaries WHERE time > 0', database)
        return calls and calls[0]["count"] == 2
    await eventually(summarised, timeout=60)
    rows = influxd.rows('SELECT * FROM rtc_peer_summaries WHERE time > 0', database)
    found = {(row.get("browser"), row.get("emitter"), row["poor"]) for row in rows}
    assert len(rows) == 3 and found == {(None, "janus-us-1", 1.0), ("Chrome", None, 0.0), ("Chrome", "janus-eu-1", 1.0)}

    document = await get_ok(http_client, base_url + "/v1/fleet/breakdown/?by=emitter&state=ended&duration=1h")
    assert (document["peers"], document["poor"]) == (3, 2)
    assert counted(document) == {("janus-eu-1", 1, 1), ("janus-us-1", 1, 1), (None, 1, 0)}
    ended = await get_ok(http_client, base_url + "/v1/calls/?state=ended&browser=Chrome&emitter=janus-eu-1")
    assert calls_of(ended) == ["s-1"]
