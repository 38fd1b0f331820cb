"""A real Janus (Debian's janus, janus-demos) with its sample event handler posting to the
server, and real headless Chromium calls through it with Debian's janus.js, each page also
sending its own getStats() with rtcscope.js: each peer shows up as itself and as Janus
sees it (`<peer>@janus`)."""
import contextlib
import time

import pytest
import tornado.httpserver
from playwright.async_api import async_playwright
from tornado.testing import bind_unused_port

from tests.support.api import get
from tests.support.browser import CALL_ARGS
from tests.support.janus import Janus, host_address, page_application
from tests.support.samples import now_ms
from tests.support.waits import eventually

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(host_address() is None, reason="Janus gathers ICE candidates on no loopback "
                                                                  "interface, and this machine has no other")]

KEY = "janus-key"
CALL = "room-1"


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "ingest-keys"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture
def page_origin(io_loop):
    """Where the application's page is served: another origin than Janus's and the server's."""
    sock, port = bind_unused_port()
    server = tornado.httpserver.HTTPServer(page_application())
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def janus_server(start_server, app_config, key_file, janus_for):
    """A server with an ingest key and a Janus posting to it: (application, janus)."""
    async def start(**janus_options):
        application = await start_server(**{**app_config, "ingest_keys": str(key_file)})
        await application.store.setup()
        return application, janus_for(application, **janus_options)
    return start


@pytest.fixture
def janus_for(tmp_path):
    """Start a Janus whose event handler posts to a server's Janus endpoint (with the ingest key)."""
    started = []

    def start(application, **options):
        instance = Janus(application.base_url + f"/v1/integrations/janus/?key={KEY}", base_dir=str(tmp_path / "janus"),
                         **options)
        started.append(instance)
        return instance.start()

    yield start
    for instance in started:
        instance.cleanup()


@contextlib.asynccontextmanager
async def browser():
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CALL_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def join(chromium, page_origin, janus, plugin, peer, server=None):
    """A page of the application joining the call as `peer` (opaqueId "<call>/<peer>");
    with `server`, it sends its own stats there too."""
    page = await chromium.new_page()
    page.on("pageerror", lambda error: print("page error:", error))
    await page.goto(page_origin + "/call")
    options = {"janus": janus.url, "call": CALL, "peer": peer, "server": server, "key": KEY}
    if peer:
        options["opaqueId"] = f"{CALL}/{peer}"
    await page.evaluate(f"(options) => {plugin}(options)", options)
    return page


def sfu_rows(influxd, database, peer, kind):
    return influxd.rows(f"SELECT * FROM rtc_stats WHERE \"peer\" = '{peer}@janus' AND \"kind\" = '{kind}' "
                        f"AND time > 0", database)


@pytest.mark.gen_test(timeout=120)
async def test_a_videoroom_call_shows_each_peers_own_and_sfu_view_live(http_client, janus_server, page_origin, influxd, database):
    application, janus = await janus_server()
    async with browser() as chromium:
        for peer in ("alice", "bob"):
            await join(chromium, page_origin, janus, "videoroom", peer, server=application.base_url)
        everyone = ["alice", "alice@janus", "bob", "bob@janus"]

        async def listed_live():
            status, answer, _ = await get(http_client, application.base_url + "/v1/calls/?state=live")
            assert status == 200
            found = [call for call in answer["calls"] if call["call"] == CALL]
            return found and found[0]["peers"] == everyone and found[0]
        await eventually(listed_live, timeout=30)
        status, call, _ = await get(http_client, application.base_url + f"/v1/calls/{CALL}/")
        assert status == 200 and call["state"] == "live" and call["peers"] == everyone

        # Janus's figures for each peer: a few seconds of both directions, round trips once receiver reports came.
        def rtts(peer):
            return [row["rtt"] for kind in ("audio", "video") for row in sfu_rows(influxd, database, peer, kind)
                    if row["rtt"] is not None]
        await eventually(lambda: all(len(sfu_rows(influxd, database, peer, "video")) >= 4 and rtts(peer)
                                     for peer in ("alice", "bob")), timeout=30)
        for peer in ("alice", "bob"):
            for kind in ("audio", "video"):
                rows = sfu_rows(influxd, database, peer, kind)
                received = [row["packetsReceived"] for row in rows]
                assert received == sorted(received) and received[-1] > 0  # what it publishes reaches Janus
                assert rows[-1]["packetsSent"] > 0  # and Janus sends it the other's media
                assert all(row["packetsLost"] >= 0 and row["uplinkPacketsLost"] >= 0 for row in rows)
                jitters = [row["jitter"] for row in rows if row["jitter"] is not None]
                assert jitters and all(0 <= jitter < 200 for jitter in jitters)  # ms, on this machine
            assert all(0 < rtt < 1000 for rtt in rtts(peer))
            # The client's own view of itself is there beside it.
            own = influxd.rows(f"SELECT * FROM rtc_stats WHERE \"peer\" = '{peer}' AND time > 0", database)
            assert own
        connection = sfu_rows(influxd, database, "alice", "connection")
        assert 4.0 in [row["iceState"] for row in connection]  # ICE ready
        assert 3.0 in [row["dtlsState"] for row in connection]  # DTLS connected
        assert application.telemetry.value("rtcscope_janus_events_total", type="media") > 0

        # The call page puts each peer's SFU view under its own row, and draws it dashed in the peer's colour.
        page = await chromium.new_page(viewport={"width": 1400, "height": 1800})
        await page.goto(application.base_url + f"/calls/{CALL}/")
        await page.wait_for_selector("#peer-quality tbody tr:nth-child(4)")
        rows = await page.eval_on_selector_all("#peer-quality tbody tr", "rows => rows.map((row) => "
                                               "[row.dataset.peer, row.className])")
        peers = [peer for peer, _ in rows]
        assert sorted(peers) == everyone
        for peer in ("alice", "bob"):
            assert peers.index(peer + "@janus") == peers.index(peer) + 1
        assert {peer: name for peer, name in rows} == {"alice": "", "bob": "", "alice@janus": "sfu-view",
                                                       "bob@janus": "sfu-view"}
        await page.wait_for_function('() => document.querySelectorAll(\'.chart-body[data-metric="packetsSent"] '
                                     '.legend-item\').length >= 4')
        legend = await page.eval_on_selector_all(
            '.chart-body[data-metric="packetsSent"] .legend-item',
            "items => items.map((item) => [item.dataset.series, item.querySelector('.legend-swatch').className, "
            "item.querySelector('.legend-swatch').style.color])")
        by_peer = {peer: (swatch, color) for peer, swatch, color in legend}
        assert "dashed" in by_peer["alice@janus"][0] and "dashed" not in by_peer["alice"][0]
        assert by_peer["alice@janus"][1] == by_peer["alice"][1] != by_peer["bob"][1]


@pytest.mark.gen_test(timeout=120)
async def test_a_client_hanging_up_ends_its_sfu_peer_explicitly(http_client, janus_server, page_origin, influxd, database):
    application, janus = await janus_server()
    async with browser() as chromium:
        page = await join(chromium, page_origin, janus, "echotest", "alice", server=application.base_url)
        await eventually(lambda: len(sfu_rows(influxd, database, "alice", "video")) >= 2, timeout=30)
        hung_up = now_ms()
        await page.evaluate("hangup()")  # the monitor's end, then janus.js detaches the handle

        async def ended():
            status, call, _ = await get(http_client, application.base_url + f"/v1/calls/{CALL}/")
            return status == 200 and call["state"] == "ended" and call
        call = await eventually(ended, timeout=20)
    assert call["peers"] == ["alice", "alice@janus"] and call["end_reason"] == "explicit"
    [end] = influxd.rows("SELECT * FROM rtc_events WHERE \"peer\" = 'alice@janus' AND time > 0", database)
    assert end["reason"] == 1.0 and hung_up - 1000 <= end["at"] <= now_ms()


@pytest.mark.gen_test(timeout=120)
async def test_a_session_that_times_out_ends_its_sfu_peer_as_timed_out(http_client, janus_server, influxd, database):
    application, janus = await janus_server(session_timeout=3)
    session = janus.create_session()
    janus.attach(session, opaque_id=f"{CALL}/carol")  # and no keepalive after it
    await eventually(lambda: influxd.rows("SELECT * FROM rtc_events WHERE time > 0", database), timeout=20)
    [end] = influxd.rows("SELECT * FROM rtc_events WHERE time > 0", database)
    assert (end["call"], end["peer"], end["reason"]) == (CALL, "carol@janus", 2.0)
    [presence] = influxd.rows("SELECT * FROM rtc_calls WHERE time > 0", database)  # from the attach
    assert presence["peer"] == "carol@janus"
    status, call, _ = await get(http_client, application.base_url + f"/v1/calls/{CALL}/")
    assert status == 200 and (call["state"], call["end_reason"]) == ("ended", "timeout")


@pytest.mark.gen_test(timeout=120)
async def test_events_of_handles_without_an_opaque_id_store_nothing(janus_server, page_origin, influxd, database):
    application, janus = await janus_server()
    async with browser() as chromium:
        page = await join(chromium, page_origin, janus, "echotest", None)  # janus.js without opaqueId, no monitor
        await eventually(lambda: application.telemetry.value("rtcscope_janus_events_total", type="media") >= 6,
                         timeout=30)
        await page.evaluate("hangup()")
        await eventually(lambda: application.telemetry.value("rtcscope_janus_events_total", type="handles") >= 2)
    assert application.telemetry.value("rtcscope_janus_events_skipped_total", reason="no_opaque_id") >= 10
    time.sleep(1)  # longer than a flush
    for measurement in ("rtc_stats", "rtc_calls", "rtc_events"):
        assert influxd.rows(f"SELECT * FROM {measurement} WHERE time > 0", database) == []


@pytest.mark.gen_test(timeout=180)
async def test_janus_posting_while_influxdb_is_down_loses_nothing_it_was_answered_for(
        start_server, app_config, key_file, janus_for, page_origin, own_influxd):  # noqa: F811 (the imported fixture)
    database = "janus_outage"
    application = await start_server(**{**app_config, "influxdb_url": own_influxd.url, "database": database,
                                        "ingest_keys": str(key_file)})
    await application.store.setup()
    janus = janus_for(application)

    def accepted():  # only Janus posts here
        return application.telemetry.value("rtcscope_samples_accepted_total")
    async with browser() as chromium:
        page = await join(chromium, page_origin, janus, "echotest", "alice")  # Janus's view only: no monitor
        await eventually(lambda: accepted() >= 4, timeout=30)
        own_influxd.stop()
        down = now_ms()
        before = accepted()
        await eventually(lambda: accepted() >= before + 8, timeout=30)  # answered 200 while InfluxDB is down
        up = now_ms()
        own_influxd.start()
        await page.evaluate("hangup()")
        await eventually(lambda: application.telemetry.value("rtcscope_janus_events_total", type="handles") >= 2)
    total = accepted()

    def stored():
        return own_influxd.rows("SELECT * FROM rtc_stats WHERE time > 0", database)
    await eventually(lambda: len(stored()) >= total, timeout=60)
    rows = stored()
    assert len(rows) == total
    assert {row["peer"] for row in rows} == {"alice@janus"}
    during = [row for row in rows if down <= row["time"] <= up and row["kind"] in ("audio", "video")]
    assert len(during) >= 6  # a sample a second per kind while InfluxDB was down
    assert len(own_influxd.rows("SELECT * FROM rtc_events WHERE time > 0", database)) == 1
