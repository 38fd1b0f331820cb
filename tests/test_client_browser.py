"""rtcscope.js in a real headless Chromium, with real WebRTC calls (fake camera and microphone):
the /demo page end to end, back-off on 503 and on network errors, the closing beacon."""
import asyncio
import contextlib
import itertools
import pathlib
import re
import socket

import pytest
from playwright.async_api import async_playwright
from tornado.httpserver import HTTPServer

import server
from rtcscope.registry import extract
from tests.support.api import get, post
from tests.support.browser import CALL_ARGS
from tests.support.processes import ServerProcess
from tests.support.waits import eventually

CLIENT_JS = pathlib.Path(__file__).resolve().parents[1] / "static" / "rtcscope.js"

# A loopback call like /demo's, whose monitors keep every sample they take (window.samples) and
# every error they report (window.errors), so a test can tell exactly what must have landed. They
# start once the call is connected, so that every sample has something to store.
LOOPBACK_PAGE = """<!doctype html>
<script src="/rtcscope.js"></script>
<script>
window.samples = [];
window.errors = [];
window.numbered = false;  // true: each sample also carries stats {seq: n}, n counting from 1 per peer
const counts = {};
window.startCall = async function (options) {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const caller = new RTCPeerConnection(), callee = new RTCPeerConnection();
  caller.onicecandidate = (e) => e.candidate && callee.addIceCandidate(e.candidate);
  callee.onicecandidate = (e) => e.candidate && caller.addIceCandidate(e.candidate);
  stream.getTracks().forEach((track) => caller.addTrack(track, stream));
  const connected = new Promise((resolve) => {
    const check = () => caller.connectionState === "connected" && callee.connectionState === "connected" && resolve();
    caller.addEventListener("connectionstatechange", check);
    callee.addEventListener("connectionstatechange", check);
  });
  await caller.setLocalDescription(await caller.createOffer());
  await callee.setRemoteDescription(caller.localDescription);
  await callee.setLocalDescription(await callee.createAnswer());
  await caller.setRemoteDescription(callee.localDescription);
  await connected;
  window.monitors = {};
  for (const [peer, pc] of [["caller", caller], ["callee", callee]]) {
    window.monitors[peer] = RTCScope.monitor(pc, Object.assign({
      peer: peer,
      onsample: (sample) => {
        samples.push(sample);
        if (numbered) {
          counts[peer] = (counts[peer] || 0) + 1;
          sample.stats = {seq: counts[peer]};
        }
      },
      onerror: (message) => errors.push(peer + ": " + message)
    }, options));
  }
};
window.monitorStats = () => Object.fromEntries(Object.entries(monitors).map(
  ([peer, monitor]) => [peer, Object.assign({queued: monitor.queued, transport: monitor.transport}, monitor.stats)]));
window.stopAll = () => Promise.all(Object.values(monitors).map((monitor) => monitor.stop()));
</script>
"""


@contextlib.asynccontextmanager
async def chromium_page():
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CALL_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda error: print("page error:", error))
            yield page
        finally:
            await browser.close()


async def open_loopback_page(page, origin, serve_client=False):
    """The test page at `origin`/client-test (rtcscope.js too, when no server answers there yet)."""
    await page.route(origin + "/client-test", lambda route: route.fulfill(
        content_type="text/html", body=LOOPBACK_PAGE))
    if serve_client:
        await page.route(origin + "/rtcscope.js", lambda route: route.fulfill(
            content_type="text/javascript", body=CLIENT_JS.read_text()))
    await page.goto(origin + "/client-test")


def stored_samples(influxd, database, call):
    """{(peer, ts, kind): {field: value}} of a call's rtc_stats points, read from InfluxDB itself."""
    stored = {}
    for row in influxd.rows(f"SELECT * FROM rtc_stats WHERE call = '{call}'", database):
        key = (row.pop("peer"), row.pop("time"), row.pop("kind"))
        row.pop("call")
        assert key not in stored, key
        stored[key] = {field: value for field, value in row.items() if value is not None}
    return stored


def expected_samples(samples):
    """What the server must have stored of the samples a page took: registry.extract of each report."""
    expected = {}
    for sample in samples:
        extracted = extract(sample["report"])
        assert extracted, sample  # a connected call always has something to store
        for kind, fields in extracted.items():
            expected[(sample["peer"], sample["ts"], kind)] = fields
    return expected


def values(rows, field):
    return [row[field] for row in rows if row.get(field) is not None]


@pytest.mark.gen_test(timeout=30)
async def test_client_script_is_served_as_javascript_cached_and_importable_from_anywhere(http_client, base_url, app):
    status, _, response = await get(http_client, base_url + "/rtcscope.js")
    assert status == 200
    assert response.body == CLIENT_JS.read_bytes()
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    etag = response.headers["Etag"]
    status, _, response = await get(http_client, base_url + "/rtcscope.js", headers={"If-None-Match": etag})
    assert status == 304 and not response.body

    status, _, response = await get(http_client, base_url + "/demo")
    assert status == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.body.decode()
    assert '<script src="/static/rtcscope.js?v=' in page and '<script src="/static/demo.js?v=' in page


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
@pytest.mark.app_config(call_timeout=120.0)
async def test_demo_call_lands_in_influxdb_with_units_and_ends_when_the_page_closes(
        http_client, http_port, app, influxd, database):
    origin = f"http://127.0.0.1:{http_port}"
    async with chromium_page() as page:
        await page.goto(origin + "/demo")
        call = await page.evaluate("demo.call")
        assert await page.text_content("#call-id") == call
        assert await page.get_attribute("#call-link", "href") == f"/calls/{call}/"
        # About 8 s of call: both ends have delivered 7 samples (the first comes at once).
        await page.wait_for_function(
            "demo.monitors.caller && demo.monitors.caller.stats.delivered >= 7"
            " && demo.monitors.callee.stats.delivered >= 7", timeout=60_000)
        assert await page.get_attribute("#call-state", "data-state") == "live"
        assert await page.evaluate("[demo.monitors.caller.transport, demo.monitors.callee.transport]") == \
            ["websocket", "websocket"]

        status, live, _ = await get(http_client, origin + "/v1/calls/?state=live")
        assert status == 200
        (listed,) = [c for c in live["calls"] if c["call"] == call]
        assert listed["state"] == "live" and listed["peers"] == ["callee", "caller"] and listed["ended"] is None

        # Straight from InfluxDB: plausible values in the registry's units.
        rows = influxd.rows(f"SELECT * FROM rtc_stats WHERE call = '{call}'", database)
        caller_video = [r for r in rows if r["peer"] == "caller" and r["kind"] == "video"]
        callee_video = [r for r in rows if r["peer"] == "callee" and r["kind"] == "video"]
        rtts = values(rows, "rtt")
        assert rtts and all(0 <= rtt < 500 for rtt in rtts)
        assert max(rtts) >= 0.5  # milliseconds: a loopback RTT in seconds would be ~0.001
        jitters = values(caller_video + callee_video, "jitter")
        assert jitters and all(0 <= jitter < 100 for jitter in jitters) and max(jitters) > 0.05  # ms, not s
        sent = values(caller_video, "bytesSent")
        assert sent == sorted(sent) and sent[-1] > sent[0]
        span_s = (caller_video[-1]["time"] - caller_video[0]["time"]) / 1000
        assert 50_000 < (sent[-1] - sent[0]) * 8 / span_s < 20_000_000  # bit/s of a 640x480 stream
        fps = values(callee_video, "framesPerSecond")
        assert fps and 5 <= max(fps) <= 61
        lost = values(caller_video, "packetsLost") + values(callee_video, "packetsLost")
        assert lost and all(0 <= value < 100 for value in lost)
        assert not any(key in row for row in rows for key in ("address", "ip", "port", "candidateType"))

        # Through the REST API, with the registry's units.
        status, summary, _ = await get(http_client, origin + f"/v1/calls/{call}/")
        assert status == 200, summary
        metrics = summary["metrics"]
        assert metrics["rtt"]["unit"] == "ms" and 0.5 <= metrics["rtt"]["max"] < 500
        assert metrics["jitter"]["unit"] == "ms" and metrics["jitter"]["max"] < 100
        assert metrics["bitrate"]["unit"] == "bit/s" and 50_000 < metrics["bitrate"]["max"] < 20_000_000
        assert metrics["framesPerSecond"]["unit"] == "fps" and 5 <= metrics["framesPerSecond"]["max"] <= 61
        assert metrics["packetsLost"]["unit"] == "packets/s" and 0 <= metrics["packetsLost"]["max"] < 100
        quality = summary["quality"]  # a loopback: no loss, RTT of a few ms (a busy machine may freeze a frame)
        assert quality["verdict"] == "good" and 4.0 < quality["mos"] <= 4.5
        assert not [p for p in quality["problems"] if p["problem"] in ("high_loss", "high_rtt")]
        assert quality["timeline"] and all(4.0 < mos <= 4.5 for _, mos in quality["timeline"])
        status, rtt_points, _ = await get(http_client, origin + f"/v1/stats/{call}/?type=rtt")
        assert status == 200 and [p for p in rtt_points if p["mean"] is not None]
        assert all(0 <= p["mean"] < 500 for p in rtt_points if p["mean"] is not None)

        await page.close()  # pagehide: each monitor sends its end event with sendBeacon

    # --call-timeout is 120 s, so only the end events can end the call this soon.
    async def ended():
        _, calls, _ = await get(http_client, origin + "/v1/calls/?state=ended")
        return [c for c in calls["calls"] if c["call"] == call]
    (finished,) = await eventually(ended, timeout=20)
    assert finished["state"] == "ended" and finished["peers"] == ["callee", "caller"]
    assert finished["ended"] >= finished["last_seen"] - 2000
    events = influxd.rows(f"SELECT * FROM rtc_events WHERE call = '{call}'", database)
    assert {e["peer"] for e in events} == {"callee", "caller"}  # the end goes by websocket and by beacon
    assert all(e["end"] == 1.0 for e in events)  # and no disconnect marker: the page closed as it said
    assert all(e["detail"] == 1.0 for e in events)  # the page closed: "pagehide"
    assert (finished["end_reason"], finished["end_detail"]) == ("explicit", "pagehide")


# What a monitor reports when the server says "wait", by transport: a 503 or 429 with Retry-After
# to a POST, a busy answer with retry_after on the websocket.
WAITED = {"post": r"server answered {status}; retrying in (\d+) ms",
          "websocket": r"server busy \({code}\); retrying in (\d+) ms"}


@pytest.mark.browser
@pytest.mark.gen_test(timeout=150)
@pytest.mark.parametrize("transport", ["websocket", "post"])
async def test_client_backs_off_on_503_and_everything_lands_exactly_once(
        start_server, own_influxd, tmp_path, transport):
    """InfluxDB goes down, the server's small write-ahead log fills and ingest answers 503 with
    Retry-After (busy on the websocket); the client waits as told, keeps its samples, and when
    InfluxDB is back every sample it took is stored once, with the values the registry extracts
    from it."""
    application = await start_server(influxdb_url=own_influxd.url, database="backoff", max_buffer=40,
                                      max_wal=8 * 1024, flush_interval=0.1, call_timeout=120.0,
                                      spool_dir=str(tmp_path / "spool"))
    application.writer.retry_max = 0.5
    await application.store.setup()
    async with chromium_page() as page:
        await open_loopback_page(page, application.base_url)
        await page.evaluate(f"startCall({{call: 'backoff', transport: '{transport}'}})")

        await wait_for_monitors(page, "s.delivered >= 2", timeout=30)

        own_influxd.stop()
        await wait_for_monitors(page, "s.backoffs >= 2", timeout=60)
        assert application.writer.failures > 0 and application.writer.depth > 0  # held while InfluxDB is down
        own_influxd.start()
        await wait_for_monitors(page, "s.queued <= 2", timeout=60)
        await page.evaluate("stopAll()")
        samples = await page.evaluate("samples")
        errors = await page.evaluate("errors")
        final = await page.evaluate("monitorStats()")

    # Retry-After (1 s at this flush interval) was honoured rather than the client's own backoff.
    waited = re.compile(WAITED[transport].format(status=503, code="wal_full"))
    for peer in ("caller", "callee"):
        assert [e for e in errors if e.startswith(peer) and (m := waited.search(e)) and m.group(1) == "1000"], errors
        assert final[peer]["dropped"] == 0 and final[peer]["rejected"] == 0, final
        assert final[peer]["polled"] == sum(1 for s in samples if s["peer"] == peer)
    expected = expected_samples(samples)
    assert len(expected) > 30
    await assert_stored(own_influxd, "backoff", "backoff", expected)


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("transport", ["websocket", "post"])
async def test_client_waits_out_a_429_as_told_and_everything_lands_exactly_once(
        http_client, start_server, app_config, influxd, database, transport):
    """The page's address has used up its new calls (one per 6 s here): its first posts get 429
    with Retry-After; the monitors wait as told, not their own backoff, keep their samples, and
    deliver every one once a call is allowed."""
    application = await start_server(**{**app_config, "max_new_calls": 1, "new_calls_window": 6.0,
                                        "call_timeout": 120.0})
    await application.store.setup()
    url = application.base_url + "/v1/stats/write/"
    calls = itertools.count()
    draining = True

    async def use_up_the_budget():  # from 127.0.0.1, the page's own address
        while draining:
            await post(http_client, url, {"call": f"other-{next(calls)}", "stats": {"rtt": 1.0}})
            await asyncio.sleep(0.05)

    drain = asyncio.ensure_future(use_up_the_budget())
    async with chromium_page() as page:
        try:
            await open_loopback_page(page, application.base_url)
            await page.evaluate(f"startCall({{call: 'quota', transport: '{transport}'}})")
            await wait_for_monitors(page, "s.backoffs >= 1", timeout=30)
        finally:
            draining = False
            await drain
        await wait_for_monitors(page, "s.delivered >= 2 && s.queued <= 2", timeout=30)
        await page.evaluate("stopAll()")
        samples = await page.evaluate("samples")
        errors = await page.evaluate("errors")
        final = await page.evaluate("monitorStats()")

    waited = WAITED[transport].format(status=429, code="too_many_new_calls")
    waits = [int(ms) for ms in re.findall(waited, "\n".join(errors))]
    assert len(waits) >= 2, errors
    assert all(ms % 1000 == 0 and 1000 <= ms <= 6000 for ms in waits), errors  # Retry-After, whole seconds
    for peer in ("caller", "callee"):
        assert final[peer]["dropped"] == 0 and final[peer]["rejected"] == 0, final
    await assert_stored(influxd, database, "quota", expected_samples(samples))


async def wait_for_monitors(page, condition, timeout):
    """Wait until every monitor's stats (see monitorStats) meet `condition`, a JS expression on `s`;
    return the stats that met it, not a later reading (the monitors go on polling and sending)."""
    try:
        met = await page.wait_for_function(
            f"() => {{ const stats = monitorStats(); return Object.values(stats).every((s) => {condition}) && stats; }}",
            timeout=timeout * 1000, polling=200)
    except Exception:
        raise AssertionError(f"monitors never met {condition}: {await page.evaluate('monitorStats()')}") from None
    return await met.json_value()


async def assert_stored(influxd, database, call, expected):
    """Everything expected is stored, and nothing else (once InfluxDB has it all)."""
    with contextlib.suppress(AssertionError):
        await eventually(lambda: stored_samples(influxd, database, call) == expected, timeout=30)
    assert stored_samples(influxd, database, call) == expected


def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
async def test_client_survives_an_unreachable_server_keeping_the_newest_samples(app_config, influxd, database):
    """Nothing listens where the client sends: network errors, back-off, a bounded queue that drops
    the oldest samples. Then the server comes up there and the kept samples land, exactly those."""
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    application = server.make_app(**app_config)
    http_server = HTTPServer(application)
    started = False
    try:
        async with chromium_page() as page:
            await open_loopback_page(page, origin, serve_client=True)
            # Several monitors on one page get their own peer ids; the file also loads as an ES module;
            # closing a peer connection stops its monitor.
            ids = await page.evaluate("""async () => {
                await import('/rtcscope.js');
                const a = RTCScope.monitor(new RTCPeerConnection()), b = RTCScope.monitor(new RTCPeerConnection());
                await Promise.all([a.stop(), b.stop()]);
                const pc = new RTCPeerConnection(), closing = RTCScope.monitor(pc, {interval: 50});
                pc.close();
                await new Promise((resolve) => setTimeout(resolve, 500));
                return [a.peer, b.peer, a.call === b.call, closing.stopped];
            }""")
            assert ids[0] != ids[1] and ids[2] is False and ids[3] is True

            # The network is slow to refuse (half a second), so that polls land while a failing request
            # is in flight: the samples taken then are the newest, and the request's are dropped first.
            slow = True

            async def refuse_slowly(route):
                if slow:
                    await asyncio.sleep(0.5)
                await route.continue_()
            await page.route(re.compile(re.escape(origin + "/v1/stats/write/")), refuse_slowly)
            await page.evaluate("startCall({call: 'unreachable', maxQueue: 4, interval: 300, sendInterval: 600,"
                                " minBackoff: 200, maxBackoff: 800})")

            # Beside a request in flight, more than 4 may wait until it fails and the oldest go: read
            # at 4 or fewer, the samples dropped are exactly the oldest ones.
            down = await wait_for_monitors(page, "s.polled >= 10 && s.backoffs >= 2 && s.queued <= 4", timeout=30)
            for peer_stats in down.values():
                assert peer_stats["delivered"] == 0
                assert peer_stats["dropped"] == peer_stats["polled"] - peer_stats["queued"] >= 6
            assert any("network error" in error for error in await page.evaluate("errors"))

            await application.start()
            started = True
            await application.store.setup()
            slow = False
            http_server.listen(port, "127.0.0.1")
            await wait_for_monitors(page, "s.delivered >= 6 && s.queued <= 2", timeout=30)
            await page.evaluate("stopAll()")
            samples = await page.evaluate("samples")
            final = await page.evaluate("monitorStats()")
    finally:
        http_server.stop()
        if started:
            await application.stop()

    # Every sample kept is stored whole, with its extracted values; the dropped ones are not, and the
    # first drops, while nothing listened, were the oldest. (Once the server answers, a request slow
    # enough for more than 4 samples to queue beside it drops the oldest of those, newer than its own.)
    expected = expected_samples(samples)
    kept = sum(final[peer]["polled"] - final[peer]["dropped"] for peer in ("caller", "callee"))
    assert kept >= 12

    def landed():
        stored = stored_samples(influxd, database, "unreachable")
        return stored if len({key[:2] for key in stored}) >= kept else None
    with contextlib.suppress(AssertionError):
        await eventually(landed, timeout=30)
    stored = stored_samples(influxd, database, "unreachable")
    assert set(stored) <= set(expected)
    assert {key: expected[key] for key in stored} == stored
    stored_ids = {key[:2] for key in stored}
    assert len(stored_ids) == kept
    assert {key for key in expected if key[:2] in stored_ids} == set(stored)
    for peer in ("caller", "callee"):
        taken = [(peer, s["ts"]) for s in samples if s["peer"] == peer]
        oldest = taken[:down[peer]["dropped"]]
        assert oldest and not stored_ids & set(oldest)
        # No gaps: of the samples taken while nothing listened, those stored are the newest ones.
        stored_then = [sample in stored_ids for sample in taken[:down[peer]["polled"]]]
        assert stored_then == sorted(stored_then), (peer, stored_then)


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
async def test_ingest_key_goes_in_the_query_so_the_closing_beacon_is_accepted_too(
        http_client, start_server, app_config, influxd, database, tmp_path):
    """With --ingest-keys, /demo?key=K sends samples and, when closed, its end beacon with ?key=K
    (sendBeacon cannot set an Authorization header); a wrong key is refused and the page says so."""
    keys = tmp_path / "ingest-keys"
    keys.write_text("demo-key\n")
    application = await start_server(**{**app_config, "ingest_keys": str(keys), "call_timeout": 120.0})
    await application.store.setup()
    origin = application.base_url
    async with chromium_page() as page:
        refused = await page.context.new_page()
        await refused.goto(origin + "/demo?key=wrong")
        await refused.wait_for_selector("#notice:not([hidden])", timeout=30_000)
        assert "403" in await refused.text_content("#notice")
        assert await refused.evaluate("demo.monitors.caller.stats.rejected") > 0
        refused_call = await refused.evaluate("demo.call")
        await refused.close()

        await page.goto(origin + "/demo?key=demo-key")
        await page.wait_for_function("demo.monitors.caller && demo.monitors.caller.stats.delivered >= 2"
                                     " && demo.monitors.callee.stats.delivered >= 2", timeout=30_000)
        call = await page.evaluate("demo.call")
        await page.close()

    async def ended():
        _, calls, _ = await get(http_client, origin + "/v1/calls/?state=ended")
        return [c for c in calls["calls"] if c["call"] == call]
    (finished,) = await eventually(ended, timeout=20)
    assert finished["peers"] == ["callee", "caller"] and finished["ended"] is not None
    assert influxd.rows(f"SELECT * FROM rtc_events WHERE call = '{refused_call}'", database) == []
    assert influxd.rows(f"SELECT * FROM rtc_stats WHERE call = '{refused_call}'", database) == []


def numbered_rows(influxd, database, call):
    """{peer: [seq values]} of the sequence-numbered samples stored for a call."""
    rows = influxd.rows(f"SELECT seq, peer FROM rtc_stats WHERE call = '{call}' AND seq > 0", database)
    by_peer = {}
    for row in rows:
        by_peer.setdefault(row["peer"], []).append(row["seq"])
    return {peer: sorted(seqs) for peer, seqs in by_peer.items()}


async def assert_every_sample_once(influxd, database, call, final):
    """Each monitor's samples 1..polled are stored, each once (nothing lost, nothing doubled)."""
    want = {peer: [float(n) for n in range(1, final[peer]["polled"] + 1)] for peer in ("caller", "callee")}
    with contextlib.suppress(AssertionError):
        await eventually(lambda: numbered_rows(influxd, database, call) == want, timeout=30)
    assert numbered_rows(influxd, database, call) == want
    for peer in ("caller", "callee"):
        assert final[peer]["dropped"] == 0 and final[peer]["rejected"] == 0, final


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
async def test_client_sends_by_post_where_no_websocket_can_be_opened(start_server, app_config, influxd, database):
    """A server that refuses websocket upgrades (--stats-ws=false; a proxy without websockets
    looks the same to a page): the monitors POST instead, and every sample lands once."""
    application = await start_server(**{**app_config, "stats_ws": False, "call_timeout": 120.0})
    await application.store.setup()
    async with chromium_page() as page:
        await open_loopback_page(page, application.base_url)
        await page.evaluate("numbered = true")
        await page.evaluate("startCall({call: 'no-websocket'})")
        await wait_for_monitors(page, "s.delivered >= 4 && s.transport === 'post'", timeout=60)
        await page.evaluate("stopAll()")
        final = await page.evaluate("monitorStats()")
        errors = await page.evaluate("errors")
    assert any("sending by POST" in error for error in errors), errors
    await assert_every_sample_once(influxd, database, "no-websocket", final)
    def events():
        return influxd.rows("SELECT * FROM rtc_events WHERE call = 'no-websocket'", database)
    await eventually(lambda: {e["peer"] for e in events()} == {"callee", "caller"})  # the beacons land
    assert all(e["end"] == 1.0 for e in events())


@pytest.mark.browser
@pytest.mark.gen_test(timeout=180)
async def test_client_reconnects_after_a_server_restart_and_resends_what_was_not_acknowledged(
        influxd, database, tmp_path):
    """The server process is killed mid-call (SIGKILL) and started again on the same port and log:
    the monitors reconnect over the websocket, resend what had no ack (a full report first on the
    new connection), and every sample lands once."""
    process = ServerProcess(str(tmp_path), influxdb_url=influxd.url, database=database, call_timeout="120s",
                            flush_interval="0.1s")
    process.start()
    try:
        async with chromium_page() as page:
            await open_loopback_page(page, process.url)
            await page.evaluate("numbered = true")
            await page.evaluate("startCall({call: 'restart', minBackoff: 300, maxBackoff: 2000})")
            before = await wait_for_monitors(page, "s.delivered >= 3 && s.transport === 'websocket'", timeout=60)
            process.process.kill()
            process.wait()
            await wait_for_monitors(page, "s.backoffs >= 1", timeout=30)
            await asyncio.get_running_loop().run_in_executor(None, process.start)
            least = min(stats["polled"] for stats in before.values()) + 4
            await wait_for_monitors(page, f"s.delivered >= {least} && s.queued <= 2", timeout=60)
            await page.evaluate("stopAll()")
            final = await page.evaluate("monitorStats()")
            errors = await page.evaluate("errors")
    finally:
        process.stop()
    assert all(stats["transport"] == "websocket" for stats in final.values()), final
    assert any("websocket closed" in error for error in errors), errors
    await assert_every_sample_once(influxd, database, "restart", final)
