"""Jitsi Meet's own rtcstats client (npm @jitsi/rtcstats 9.7.1, bundled here with
esbuild as Jitsi bundles it) in a real headless Chromium, on a page of another
origin that sets it up as lib-jitsi-meet does, runs a loopback call (two
RTCPeerConnections, fake camera and microphone) and talks to a real server
and influxd."""
import asyncio
import contextlib
import json
import pathlib
import subprocess

import pytest
import tornado.httpserver
import tornado.web
from playwright.async_api import async_playwright
from tornado.testing import bind_unused_port

from tests.support.api import get
from tests.support.browser import CALL_ARGS
from tests.support.waits import eventually
from tests.support.websockets import Viewer

pytestmark = pytest.mark.browser

JS_DIR = pathlib.Path(__file__).resolve().parent / "js"
BUNDLE_ENTRY = """
import rtcstatsInit from '@jitsi/rtcstats/rtcstats';
import traceInit from '@jitsi/rtcstats/trace-ws';
window.jitsiRtcstats = { rtcstatsInit, traceInit };
"""
# What lib-jitsi-meet's RTCStats module does on CONFERENCE_JOINED: the proxy
# (rtcstatsInit) wraps RTCPeerConnection, the trace connects and sends the
# identity, and leaving the conference calls trace.close(). The page records
# what goes over the socket. Math.random is fixed so that the client's
# reconnect backoff is its 1 s minimum, not up to 11 s.
PAGE = """<!doctype html>
<script>Math.random = () => 0;</script>
<script src="/rtcstats-bundle.js"></script>
<script>
window.record = {urls: [], sent: [], received: [], closes: []};
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    record.urls.push(url);
    this.addEventListener("message", (event) => record.received.push(JSON.parse(event.data)));
  }
  send(data) { record.sent.push(JSON.parse(data)); super.send(data); }
};
window.join = async function ({endpoint, room, endpointId}) {
  const {rtcstatsInit, traceInit} = window.jitsiRtcstats;
  rtcstatsInit({statsEntry: (...args) => window.trace.statsEntry(...args)}, {pollInterval: 1000});
  window.trace = traceInit({endpoint, meetingFqn: room, onCloseCallback: (event) => record.closes.push(event)});
  trace.connect(false);
  trace.identity("identity", null, {confName: room, endpointId, displayName: "Alice Example",
    email: "alice@example.com", localId: "LOCAL-ID-7", meetingUniqueId: "UNIQUE-MEETING-9",
    hosts: {domain: "meet.test"}, p2p: {stunServers: [{urls: "stun:198.51.100.4:3478"}]}});
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const caller = new RTCPeerConnection(), callee = new RTCPeerConnection();
  window.peerConnections = [caller, callee];
  caller.onicecandidate = (e) => e.candidate && callee.addIceCandidate(e.candidate);
  callee.onicecandidate = (e) => e.candidate && caller.addIceCandidate(e.candidate);
  stream.getTracks().forEach((track) => caller.addTrack(track, stream));
  callee.ontrack = (e) => { const video = document.createElement("video"); video.autoplay = true;
    video.muted = true; video.srcObject = e.streams[0]; document.body.append(video); };
  await caller.setLocalDescription(await caller.createOffer());
  await callee.setRemoteDescription(caller.localDescription);
  await callee.setLocalDescription(await callee.createAnswer());
  await caller.setRemoteDescription(callee.localDescription);
  trace.identity("identity", null, {meetingUniqueId: "UNIQUE-MEETING-9"});
  return new URL(record.urls[0]).searchParams.get("statsSessionId");
};
// Leaving a conference: CONFERENCE_LEFT makes lib-jitsi-meet close the trace (RTCStats.reset(): close(3001)).
window.leave = () => window.trace.close();
window.closePeerConnections = () => peerConnections.forEach((pc) => pc.close());
</script>
"""
SECRETS = ("Alice Example", "alice@example.com", "LOCAL-ID-7", "UNIQUE-MEETING-9", "198.51.100.4", "meet.test")


@pytest.fixture(scope="module")
def bundle():
    """The package as installed by `make install` (npm ci in tests/js), bundled for the page."""
    esbuild = JS_DIR / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "tests/js has no node_modules: run make install"
    built = subprocess.run([str(esbuild), "--bundle", "--format=iife", "--target=chrome100", "--log-level=warning"],
                           input=BUNDLE_ENTRY, cwd=JS_DIR, capture_output=True, text=True, check=True)
    return built.stdout


class _Resource(tornado.web.RequestHandler):
    def initialize(self, body, content_type):
        self.body, self.content_type = body, content_type

    def get(self):
        self.set_header("Content-Type", self.content_type)
        self.finish(self.body)


@pytest.fixture
def meeting_site(bundle, io_loop):
    """The meeting page and the bundle on a server of their own: another origin, as
    Jitsi Meet is (the test's, never the product's)."""
    site = tornado.httpserver.HTTPServer(tornado.web.Application([
        (r"/meeting", _Resource, {"body": PAGE, "content_type": "text/html"}),
        (r"/rtcstats-bundle.js", _Resource, {"body": bundle, "content_type": "text/javascript"}),
    ]))
    sock, port = bind_unused_port()
    site.add_sockets([sock])
    yield f"http://127.0.0.1:{port}"
    site.stop()


@contextlib.asynccontextmanager
async def meeting_page(origin):
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CALL_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            await page.goto(origin + "/meeting")
            yield page
            assert page.errors == []
        finally:
            await browser.close()


async def join(page, application, room, endpoint_id):
    # The configured endpoint ends with a slash, as deployments often write it: the client opens //room.
    endpoint = application.base_url.replace("http://", "ws://") + "/rtcstats/"
    return await page.evaluate("(options) => join(options)",
                               {"endpoint": endpoint, "room": room, "endpointId": endpoint_id})


async def calls(http_client, application, state):
    status, listed, _ = await get(http_client, application.base_url + f"/v1/calls/?state={state}")
    assert status == 200, listed
    return {call["call"]: call for call in listed["calls"]}


def rows(influxd, database, measurement, where):
    return influxd.rows(f'SELECT * FROM "{measurement}" WHERE {where}', database)


@pytest.mark.gen_test(timeout=150)
async def test_a_jitsi_client_call_is_live_survives_a_reconnect_and_ends_when_it_leaves(
        meeting_site, http_client, start_server, app_config, influxd, database):
    application = await start_server(**{**app_config, "call_timeout": 10.0})
    room = "Team Standup"  # the call id: characters outside the id set become "-"
    call = "Team-Standup"
    rtt_viewer = await Viewer.open(application.base_url, "/ws/graph/rtt")
    fps_viewer = await Viewer.open(application.base_url, "/ws/graph/framesPerSecond")
    try:
        async with meeting_page(meeting_site) as page:
            session = await join(page, application, room, "a1b2c3d4")
            assert session
            await eventually(lambda: _live_with_peer(http_client, application, call, "a1b2c3d4"), timeout=30)
            _, points = await rtt_viewer.next("points", call, timeout=30)
            rtt = points["calls"][call][-1][1]
            assert 0 < rtt < 200, rtt  # loopback: a millisecond or so
            _, points = await fps_viewer.next("points", call, timeout=30)
            await eventually(lambda: _frame_rate(fps_viewer, call) >= 5, timeout=30)

            # The network drops under the client: it reconnects (isReconnect=true) and resends what
            # it holds after the server's sequence number.
            held = application.rtcstats_sessions.by_id[session]
            sn_at_drop = held.sn
            held.connection.ws_connection.stream.close()
            await eventually(lambda: _reconnected(page), timeout=30)
            await asyncio.sleep(3)
            urls = await page.evaluate("record.urls")
            assert len(urls) == 2 and "/rtcstats//Team Standup?statsSessionId=" in urls[0]
            assert urls[0].endswith("isReconnect=false") and urls[1].endswith("isReconnect=true")
            assert call in await calls(http_client, application, "live")  # it never ended

            await page.evaluate("leave()")
            await eventually(lambda: page.evaluate("record.closes.length === 2"), timeout=10)
            assert [close["code"] for close in await page.evaluate("record.closes")] == [1006, 3001]
            _, ended = await rtt_viewer.next("call_ended", call, timeout=10)
            ended_calls = await calls(http_client, application, "ended")
            assert call in ended_calls and ended_calls[call]["peers"] == ["a1b2c3d4"]
            # The drop left a disconnect marker; the leave, an explicit end (detail 3: leave).
            events = rows(influxd, database, "rtc_events", f"call = '{call}'")
            assert [(event.get("end"), event["reason"], event.get("detail")) for event in events] == [
                (None, 3.0, None), (1.0, 1.0, 3.0)]

            sent = await page.evaluate("record.sent")
            received = await page.evaluate("record.received")
        acknowledged = max(m["body"]["value"] for m in received if m["type"] == "sn")
    finally:
        rtt_viewer.close()
        fps_viewer.close()

    # Nothing lost, nothing twice: every getstats entry the client sent (once, or again after the
    # reconnect) and the server acknowledged is stored once.
    getstats = sorted({entry[4] for entry in (_data(m) for m in sent if m["type"] == "stats-entry")
                       if entry[0] == "getstats"})
    await eventually(lambda: _stored_sns(influxd, database, session) and
                     max(_stored_sns(influxd, database, session)) >= max(s for s in getstats if s <= acknowledged))
    stored = _stored_sns(influxd, database, session)
    assert len(stored) == len(set(stored)), stored
    first = min(stored)
    assert [s for s in stored if s <= acknowledged] == [s for s in getstats if first <= s <= acknowledged]
    assert first <= getstats[2]  # only the first polls, before media flows, may have nothing to store
    assert min(stored) < sn_at_drop < max(stored)  # entries from both sides of the reconnect

    samples = rows(influxd, database, "rtc_stats", f"call = '{call}' AND kind = 'video'")
    assert {row["peer"] for row in samples} == {"a1b2c3d4"}
    with_bytes = [row for row in samples if row.get("bytesSent") is not None]
    span_s = (with_bytes[-1]["time"] - with_bytes[0]["time"]) / 1000
    bitrate = (with_bytes[-1]["bytesSent"] - with_bytes[0]["bytesSent"]) * 8 / span_s
    assert 20_000 < bitrate < 50_000_000, bitrate
    assert 5 <= max(row["framesPerSecond"] for row in samples if row.get("framesPerSecond")) <= 61
    # One endpoint, two peer connections: what one sends and the other receives are both its own.
    assert any(row.get("bytesReceived") for row in samples)

    everything = str([rows(influxd, database, m["name"], "time > 0") for m in influxd.rows("SHOW MEASUREMENTS",
                                                                                           database)])
    everything += str(influxd.query("SHOW TAG VALUES WITH KEY =~ /.*/", database))
    for secret in SECRETS:
        assert secret not in everything, secret


@pytest.mark.gen_test(timeout=90)
async def test_closing_every_peer_connection_ends_the_peer(meeting_site, http_client, start_server, app_config,
                                                          influxd, database):
    """Before the trace closes, the peer connections do (lib-jitsi-meet ends its sessions first)."""
    application = await start_server(**{**app_config, "call_timeout": 10.0})
    async with meeting_page(meeting_site) as page:
        await join(page, application, "closing", "ep-closing")
        await eventually(lambda: _live_with_peer(http_client, application, "closing", "ep-closing"), timeout=30)
        await eventually(lambda: rows(influxd, database, "rtc_stats", "call = 'closing'"), timeout=30)
        await page.evaluate("closePeerConnections()")
        await eventually(lambda: _ended(http_client, application, "closing"), timeout=5)  # not the 10 s timeout
        [end] = rows(influxd, database, "rtc_events", "call = 'closing'")
        assert (end["end"], end["reason"], end["detail"]) == (1.0, 1.0, 4.0)
        assert await page.evaluate("record.closes") == []  # the socket is still open


@pytest.mark.gen_test(timeout=90)
async def test_a_client_that_just_goes_away_ends_as_a_disconnect(
        meeting_site, http_client, start_server, app_config, influxd, database):
    application = await start_server(**{**app_config, "call_timeout": 3.0})
    async with meeting_page(meeting_site) as page:
        await join(page, application, "gone", "ep-gone")
        await eventually(lambda: _live_with_peer(http_client, application, "gone", "ep-gone"), timeout=30)
        await eventually(lambda: rows(influxd, database, "rtc_stats", "call = 'gone'"), timeout=30)
    # The browser is gone without leaving the conference.
    await eventually(lambda: rows(influxd, database, "rtc_events", "call = 'gone'"), timeout=10)
    [marker] = rows(influxd, database, "rtc_events", "call = 'gone'")
    assert (marker["peer"], marker["reason"], marker.get("end")) == ("ep-gone", 3.0, None)
    assert "gone" in await calls(http_client, application, "live")
    await eventually(lambda: _ended(http_client, application, "gone"), timeout=15)
    ended = (await calls(http_client, application, "ended"))["gone"]
    last_sample = max(row["time"] for row in rows(influxd, database, "rtc_stats", "call = 'gone'"))
    assert (ended["end_reason"], ended["end_detail"], ended["ended"]) == ("disconnect", None, last_sample)


async def _live_with_peer(http_client, application, call, peer):
    live = await calls(http_client, application, "live")
    return call in live and live[call]["peers"] == [peer]


async def _ended(http_client, application, call):
    return call in await calls(http_client, application, "ended")


def _frame_rate(viewer, call):
    values = [value for message in viewer.messages if message["type"] in ("points", "snapshot")
              for ms, value in message["calls"].get(call, []) if value is not None]
    return max(values, default=0)


async def _reconnected(page):
    received = await page.evaluate("record.received")
    return len([m for m in received if m["type"] == "sn" and m["body"]["state"] == "initial"]) == 2


def _data(message):
    return json.loads(message["data"])


def _stored_sns(influxd, database, session):
    return [int(row["sn"]) for row in rows(influxd, database, "rtc_rtcstats_sessions", f"session = '{session}'")]
