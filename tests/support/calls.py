"""Real WebRTC calls in headless Chromium, both ends of each monitored by the
shipped rtcscope.js: direct, or forced through a TURN server (turn.py)
with `iceTransportPolicy: "relay"`. Several calls can run on one page, each
two RTCPeerConnections ("caller", "callee") that both send audio and video,
each with its own monitor."""
import contextlib
import pathlib

from playwright.async_api import async_playwright

from tests.support.browser import CALL_ARGS

CLIENT_JS = pathlib.Path(__file__).resolve().parents[2] / "static" / "rtcscope.js"
# The TURN server's TLS listener has a self-signed certificate.
TURN_CALL_ARGS = CALL_ARGS + ["--ignore-certificate-errors"]
PEERS = ("caller", "callee")
# Route name -> the relay protocol it is forced through (None: direct).
ROUTES = {"direct": None, "relay-udp": "udp", "relay-tcp": "tcp", "relay-tls": "tls"}

# Each call keeps the samples its monitors took (rtcscope.js's cleaned reports, as sent) for the test.
CALLS_PAGE = """<!doctype html>
<script src="/rtcscope.js"></script>
<script>
window.calls = {};
window.startCall = async function (call, config, options) {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
  const pcs = {caller: new RTCPeerConnection(config), callee: new RTCPeerConnection(config)};
  pcs.caller.onicecandidate = (e) => e.candidate && pcs.callee.addIceCandidate(e.candidate);
  pcs.callee.onicecandidate = (e) => e.candidate && pcs.caller.addIceCandidate(e.candidate);
  // Both ends send audio and video (the callee's tracks answer the caller's m-lines).
  stream.getTracks().forEach((track) => Object.values(pcs).forEach((pc) => pc.addTrack(track, stream)));
  const connected = new Promise((resolve, reject) => {
    const check = () => {
      const states = [pcs.caller.connectionState, pcs.callee.connectionState];
      if (states.every((state) => state === "connected")) resolve();
      if (states.includes("failed")) reject(new Error(call + ": connection failed"));
    };
    pcs.caller.addEventListener("connectionstatechange", check);
    pcs.callee.addEventListener("connectionstatechange", check);
  });
  await pcs.caller.setLocalDescription(await pcs.caller.createOffer());
  await pcs.callee.setRemoteDescription(pcs.caller.localDescription);
  await pcs.callee.setLocalDescription(await pcs.callee.createAnswer());
  await pcs.caller.setRemoteDescription(pcs.callee.localDescription);
  await connected;
  const samples = [], errors = [], monitors = {};
  for (const [peer, pc] of Object.entries(pcs)) {
    monitors[peer] = RTCScope.monitor(pc, Object.assign({
      call: call, peer: peer,
      onsample: (sample) => samples.push(sample),
      onerror: (message) => errors.push(peer + ": " + message)
    }, options));
  }
  calls[call] = {pcs, stream, monitors, samples, errors};
};
window.monitorStats = (call) => Object.fromEntries(Object.entries(calls[call].monitors).map(
  ([peer, monitor]) => [peer, Object.assign({transport: monitor.transport}, monitor.stats)]));
window.rawReport = async (call, peer) => {
  const report = [];
  (await calls[call].pcs[peer].getStats()).forEach((stat) => report.push(stat));
  return report;
};
window.stopCall = async (call) => {
  const {pcs, stream, monitors} = calls[call];
  await Promise.all(Object.values(monitors).map((monitor) => monitor.stop()));
  Object.values(pcs).forEach((pc) => pc.close());
  stream.getTracks().forEach((track) => track.stop());
};
</script>
"""


def rtc_configuration(turn, relay_protocol):
    """The RTCConfiguration of a route: forced through `turn` over `relay_protocol`, or direct (None)."""
    if relay_protocol is None:
        return {}
    return {"iceServers": [turn.ice_server(relay_protocol)], "iceTransportPolicy": "relay"}


@contextlib.asynccontextmanager
async def chromium_page(args=CALL_ARGS):
    """A page of a headless Chromium that can make calls (fake camera and microphone)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = await (await browser.new_context()).new_page()
            page.on("pageerror", lambda error: print("page error:", error))
            yield page
        finally:
            await browser.close()


async def open_test_page(page, origin, path, html, serve_client=False):
    """`html` as the page at `origin` + `path`, and rtcscope.js at `origin`/rtcscope.js served from
    the file when `serve_client` (no server answers there yet)."""
    await page.route(origin + path, lambda route: route.fulfill(content_type="text/html", body=html))
    if serve_client:
        await page.route(origin + "/rtcscope.js", lambda route: route.fulfill(
            content_type="text/javascript", body=CLIENT_JS.read_text()))
    await page.goto(origin + path)


@contextlib.asynccontextmanager
async def calls_page(origin, serve_client=False):
    """The calls page at `origin`/calls-test (see `open_test_page`), in a Chromium that accepts the
    TURN server's certificate."""
    async with chromium_page(TURN_CALL_ARGS) as page:
        await open_test_page(page, origin, "/calls-test", CALLS_PAGE, serve_client)
        yield page


async def start_call(page, call, configuration, **options):
    """Connect a call with `configuration` (RTCConfiguration), then monitor both ends with `options`."""
    await page.evaluate("([call, configuration, options]) => startCall(call, configuration, options)",
                        [call, configuration, options])


async def wait_delivered(page, call, count, timeout=60):
    """Wait until both monitors of `call` have had `count` samples acknowledged; their stats."""
    try:
        met = await page.wait_for_function(
            "([call, count]) => { const stats = monitorStats(call);"
            " return Object.values(stats).every((s) => s.delivered >= count) && stats; }",
            arg=[call, count], timeout=timeout * 1000, polling=200)
    except Exception:
        state = await page.evaluate("(call) => [monitorStats(call), calls[call].errors]", call)
        raise AssertionError(f"{call}: monitors never delivered {count} samples: {state}") from None
    return await met.json_value()


async def samples(page, call):
    """The samples `call`'s monitors took, as rtcscope.js sent them."""
    return await page.evaluate("(call) => calls[call].samples", call)


async def raw_report(page, call, peer):
    """`peer`'s getStats() now, whole (addresses, candidate ids, TURN urls)."""
    return await page.evaluate("([call, peer]) => rawReport(call, peer)", [call, peer])


async def stop_call(page, call):
    """Stop both monitors (their end events sent) and close the call."""
    await page.evaluate("(call) => stopCall(call)", call)
