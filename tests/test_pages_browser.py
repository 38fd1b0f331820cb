"""The pages: served by a real server, driven in a real headless Chromium.

The dashboard must show a call arrive, its graph grow and the call leave with
no reload; the call and graph pages must draw what REST and the websocket say."""
import json

import pytest
from tornado.websocket import websocket_connect

from tests.support.api import get, post
from tests.support.browser import WAIT_MS, browser_page, wait_for_text
from tests.support.janus import posts
from tests.support.samples import now_ms
from tests.support.waits import eventually


async def write(http_client, base_url, body):
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200, result


def samples(call, times, rtt=40.0, peer="alice"):
    return [{"call": call, "peer": peer, "kind": "audio", "ts": ts, "stats": {"rtt": rtt + i, "packetsLost": 2.0 * i}}
            for i, ts in enumerate(times)]


async def points_of(page, metric):
    return int(await page.get_attribute(f'.chart-body[data-metric="{metric}"]', "data-points") or 0)


async def wait_for_chart(page, metric, attribute, at_least=None, equals=None):
    """Until the chart's data-points / data-calls reaches a value (functions, not strings: the CSP forbids eval)."""
    await page.wait_for_function(
        """([metric, attribute, atLeast, equals]) => {
             const value = Number(document.querySelector(`.chart-body[data-metric="${metric}"]`).dataset[attribute]);
             return equals === null ? value >= atLeast : value === equals;
           }""", arg=[metric, attribute, at_least, equals], timeout=WAIT_MS)


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(call_timeout=60.0)
async def test_dashboard_shows_a_call_arrive_grow_and_leave_without_reload(http_client, base_url, app):
    async with browser_page() as page:
        await page.goto(base_url + "/dashboard?metrics=rtt,packetsLost")
        await page.evaluate("window.marker = 'same page'")
        await page.wait_for_selector('#feed-status[data-state="live"]', timeout=WAIT_MS)
        assert await page.get_attribute("#live-calls", "data-count") == "0"
        assert await points_of(page, "rtt") == 0

        start = now_ms() - 4000
        await write(http_client, base_url, samples("browser-call", [start, start + 2000]))
        row = await page.wait_for_selector('#live-calls tr[data-call="browser-call"]', timeout=WAIT_MS)
        assert await row.eval_on_selector("a", "a => a.getAttribute('href')") == "/calls/browser-call/"
        await wait_for_chart(page, "rtt", "points", at_least=2)
        before = await points_of(page, "rtt")
        legend = await page.text_content('.chart-body[data-metric="rtt"] .chart-legend')
        assert "browser-call" in legend and "ms" in legend

        # more samples, in later buckets: the line grows where it is
        await write(http_client, base_url, samples("browser-call", [start + 4000, start + 6000], rtt=50.0))
        await wait_for_chart(page, "rtt", "points", at_least=before + 1)
        await wait_for_chart(page, "packetsLost", "points", at_least=1)  # the counter, as a rate

        await write(http_client, base_url, {"call": "browser-call", "event": "end"})
        await page.wait_for_selector('#ended-calls li[data-call="browser-call"]', timeout=WAIT_MS)
        assert await page.query_selector('#live-calls tr[data-call="browser-call"]') is None
        await wait_for_chart(page, "rtt", "calls", equals=0)
        assert await page.evaluate("window.marker") == "same page"
        assert len(page.loads) == 1  # the first load only


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(call_timeout=60.0)
async def test_call_page_summary_quality_and_end_while_open(http_client, base_url, app):
    start = now_ms() - 30_000
    times = [start + i * 1000 for i in range(30)]
    await write(http_client, base_url, samples("page-call", times) + samples("page-call", times, rtt=400.0, peer="bob"))
    await eventually(lambda: app.detector.live_calls == ["page-call"])
    async with browser_page() as page:
        await page.goto(base_url + "/calls/page-call/")
        await page.wait_for_selector('#summary tr[data-metric="rtt"]', timeout=WAIT_MS)
        assert await page.text_content("#call-state") == "live"
        assert await page.text_content("#call-peers") == "alice, bob"
        cells = await page.eval_on_selector_all('#summary tr[data-metric="rtt"] td', "tds => tds.map(td => td.textContent)")
        assert cells[:2] == ["rtt", "ms"] and float(cells[2]) > 0
        # bob's 400 ms round trips are a sustained problem, shown with when it happened
        problem = await page.wait_for_selector('#problems li[data-problem="high_rtt"]', timeout=WAIT_MS)
        assert "threshold 300 ms" in await problem.text_content()
        assert await page.text_content("#call-mos") not in ("", "–")
        await wait_for_chart(page, "rtt", "points", at_least=21)
        assert await points_of(page, "packetsLost") > 20
        await wait_for_chart(page, "mos", "points", at_least=20)  # the MOS of each moment of the call

        await write(http_client, base_url, {"call": "page-call", "event": "end"})
        await wait_for_text(page, "#call-state", "ended")
        assert len(page.loads) == 1


def janus_view_of_alice(now_us):
    """What Janus posted of alice in the echotest capture (call c-1), up to before her hang-up, moved to end now."""
    events = [event for body in posts("echotest") for event in json.loads(body) if event.get("opaque_id") == "c-1/alice"]
    events = [event for event in events if not (event["type"] == 2 and event["event"]["name"] == "detached")
              and event["event"].get("connection") != "hangup"]
    last = max(event["timestamp"] for event in events)
    return [{**event, "timestamp": event["timestamp"] - last + now_us} for event in events]


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(call_timeout=60.0)
async def test_call_page_names_a_peers_client_and_sfu_views_alike_everywhere(http_client, base_url, app):
    """§16: a peer's own getStats() is its "client" view, alice@janus its "SFU · Janus" view, in the peers' table,
    the cards and every graph's legend; a peer without an SFU view is named alone; the media server once."""
    start = now_ms() - 20_000
    times = [start + i * 1000 for i in range(21)]
    await write(http_client, base_url, samples("c-1", times) + samples("c-1", times, rtt=90.0, peer="bob"))
    status, result, _ = await post(http_client, base_url + "/v1/integrations/janus/", janus_view_of_alice(now_ms() * 1000))
    assert status == 200 and result["accepted"] > 0, result
    expected = {"alice": ["alice", "client"], "alice@janus": ["alice", "SFU · Janus"], "bob": ["bob", None]}
    names = "items => items.map((item) => [item.dataset.series || item.dataset.peer, item.querySelector('.peer-name, " \
            ".legend-label').firstChild.textContent, (item.querySelector('.view-label') || {}).textContent || null])"
    async with browser_page() as page:
        await page.goto(base_url + "/calls/c-1/")
        await page.wait_for_selector("#peer-quality tbody tr:nth-child(3)", timeout=WAIT_MS)
        await page.wait_for_function("() => document.querySelectorAll('.chart-body[data-metric=\"rtt\"] .legend-item')"
                                     ".length === 3", timeout=WAIT_MS)
        table = await page.eval_on_selector_all("#peer-quality tbody tr", names)
        cards = await page.eval_on_selector_all("#peer-dims .peer-card", names)
        legend = await page.eval_on_selector_all('.chart-body[data-metric="rtt"] .legend-item', names)
        for shown in (table, cards, legend):
            assert {peer: [name, label] for peer, name, label in shown} == expected
        assert [peer for peer, _, _ in table].index("alice@janus") == [peer for peer, _, _ in table].index("alice") + 1
        media_server = await page.eval_on_selector_all("#peer-dims dd[data-line='emitter']",
                                                       "dds => dds.map((dd) => dd.closest('.peer-card').dataset.peer)")
        assert media_server == ["alice@janus"]  # not a dash on every client's card
        assert await page.text_content("#peer-dims .peer-card[data-peer='alice@janus'] dd[data-line='emitter']") == "janus-test"


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(call_timeout=60.0)
async def test_graph_page_and_ranges_draw_rest_series(http_client, base_url, app):
    start = now_ms() - 120_000
    await write(http_client, base_url, samples("range-call", [start + i * 5000 for i in range(20)]))
    await eventually(lambda: app.detector.live_calls == ["range-call"])
    async with browser_page() as page:
        await page.goto(base_url + "/graph/rtt/")
        row = await page.wait_for_selector('#graph-calls tr[data-call="range-call"]', timeout=WAIT_MS)
        assert "ms" in await row.text_content()
        await page.click('button[data-range="10m"]')
        await wait_for_text(page, ".chart-note", "Last 10 min")
        assert await page.evaluate("location.search") == "?range=10m"
        assert await points_of(page, "rtt") == 20
        assert len(page.loads) == 1


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(call_timeout=60.0, quality_window=60.0, max_calls_per_request=20)
async def test_graph_page_of_a_fleet_draws_the_band_and_the_five_worst_the_server_sends(http_client, base_url, app):
    start = now_ms() - 20_000
    body = [{"call": f"fleet-{i:02d}", "peer": "alice", "kind": "audio", "ts": start + k * 2000,
             "stats": {"rtt": 20.0 + 60 * i}} for i in range(20) for k in range(10)]
    await write(http_client, base_url, body)
    await eventually(lambda: len(app.detector.qualities) == 20)
    worst = [f"fleet-{i:02d}" for i in (19, 18, 17, 16, 15)]
    async with browser_page() as page:
        await page.goto(base_url + "/graph/rtt/")
        for range_button in (None, "10m"):  # live, then a range from /v1/series/?band=true
            if range_button:
                await page.click(f'button[data-range="{range_button}"]')
                await wait_for_text(page, ".chart-note", "Last 10 min")
            await page.wait_for_function(
                "() => { const c = document.querySelector('#chart-panel .chart-body').seriesChart;"
                " return c.plot && c.mode === 'band' && c.plot.series.length === 8; }", timeout=WAIT_MS)
            labels = await page.eval_on_selector("#chart-panel .chart-body",
                                                 "el => el.seriesChart.plot.series.slice(1).map(s => s.label)")
            assert labels == ["fleet p50", "fleet p95"] + worst
            legend = await page.text_content("#chart-panel .chart-legend")
            assert "20 calls in the band" in legend
            await page.wait_for_function(
                "n => document.querySelectorAll('#graph-calls tbody tr').length === n", arg=5, timeout=WAIT_MS)
            rows = await page.eval_on_selector_all("#graph-calls tbody tr", "trs => trs.map(tr => tr.dataset.call)")
            assert rows == worst
            assert "The 5 worst of 20 calls" in await page.text_content("#graph-more")
        assert len(page.loads) == 1


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(call_timeout=60.0)
async def test_pages_fit_a_phone(http_client, base_url, app):
    await write(http_client, base_url, samples("phone-call", [now_ms() - 2000, now_ms()]))
    async with browser_page(390, 844) as page:
        for path in ("/dashboard", "/graph/rtt/", "/calls/phone-call/"):
            await page.goto(base_url + path)
            await page.wait_for_selector('#feed-status[data-state="live"]', timeout=WAIT_MS)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390, path


@pytest.mark.gen_test(timeout=30)
async def test_page_routes_and_html_404s(http_client, base_url, app):
    for metric in ("availableBandwidth", "rtt", "inputLevel", "packetsLost", "framesPerSecond", "googRtt"):
        status, _, response = await get(http_client, base_url + f"/graph/{metric}/")
        assert status == 200 and b"/ws/graph/" not in response.body  # the page's script opens the socket
        assert response.headers["Content-Type"].startswith("text/html")
    status, _, response = await get(http_client, base_url + "/graph/googRtt/")
    assert b'data-metric="rtt"' in response.body
    status, _, response = await get(http_client, base_url + "/graph/%3Cscript%3E/")
    assert status == 404 and response.headers["Content-Type"].startswith("text/html")
    assert b"There is no metric called &lt;script&gt;" in response.body
    status, _, response = await get(http_client, base_url + "/calls/nobody/")
    assert status == 404 and b"No call nobody" in response.body
    status, _, response = await get(http_client, base_url + "/dashboard")
    assert status == 200 and b'id="live-calls"' in response.body
    response = await http_client.fetch(base_url + "/", follow_redirects=False, raise_error=False)
    assert response.code == 302 and response.headers["Location"] == "/dashboard"


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(call_timeout=2.0)
async def test_a_dropped_connection_shows_as_such_on_the_dashboard_and_the_call_page(http_client, base_url, app):
    async with browser_page() as page:
        await page.goto(base_url + "/dashboard")
        await page.wait_for_selector('#feed-status[data-state="live"]', timeout=WAIT_MS)
        url = base_url.replace("http://", "ws://") + "/v1/stats/ws?call=dropped-call&peer=alice"
        connection = await websocket_connect(url)
        await connection.write_message(json.dumps({"ts": now_ms(), "kind": "audio", "stats": {"rtt": 41.0}}))
        assert json.loads(await connection.read_message()) == {"type": "ack", "seq": 1}
        await page.wait_for_selector('#live-calls tr[data-call="dropped-call"]', timeout=WAIT_MS)
        connection.stream.close()  # no close frame, no end
        row = await page.wait_for_selector('#ended-calls li[data-call="dropped-call"][data-end-reason="disconnect"]',
                                           timeout=WAIT_MS)
        assert "connection dropped" in await row.text_content()
        await page.goto(base_url + "/calls/dropped-call/")
        await wait_for_text(page, "#call-state", "ended")
        assert await page.get_attribute("#call-state", "data-end-reason") == "disconnect"
        assert "connection dropped" in await page.text_content("#call-facts")
