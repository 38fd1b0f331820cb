"""Re-capture the chrome://webrtc-internals dumps under tests/data/.

Runs Debian's headless Chromium (fake camera and microphone) through
playwright: chrome://webrtc-internals?keepRemovedConnections is opened in one
tab before the call (without that flag Chromium forgets closed connections),
a loopback call of two RTCPeerConnections runs in another tab, and the dump
is downloaded from the internals tab's "Create a WebRTC-Internals dump"
section with "Compress result" unticked (ticked with --compressed). The
files under tests/data/ come from:

    .venv/bin/python scripts/capture-webrtc-internals.py    # every shape, plain
    .venv/bin/python scripts/capture-webrtc-internals.py audio-only --compressed --seconds 4

Shapes: audio-only (hung up before the dump), audio-video (hung up), and
audio-video-open (dumped while the call is still up). Each call lasts about
12 s, so each file stays small.
"""
import argparse
import asyncio
import pathlib

from playwright.async_api import async_playwright

DATA = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
ORIGIN = "http://127.0.0.1:9"  # answered by playwright's router, never reached on the network
CALL_PAGE = """<!doctype html>
<script>
window.startCall = async function (constraints) {
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  const caller = new RTCPeerConnection(), callee = new RTCPeerConnection();
  caller.onicecandidate = (e) => e.candidate && callee.addIceCandidate(e.candidate);
  callee.onicecandidate = (e) => e.candidate && caller.addIceCandidate(e.candidate);
  callee.ontrack = (e) => {
    const element = document.createElement(e.track.kind);
    element.srcObject = e.streams[0];
    element.muted = true;
    element.play();
    document.body.append(element);
  };
  stream.getTracks().forEach((track) => caller.addTrack(track, stream));
  await caller.setLocalDescription(await caller.createOffer());
  await callee.setRemoteDescription(caller.localDescription);
  await callee.setLocalDescription(await callee.createAnswer());
  await caller.setRemoteDescription(callee.localDescription);
  window.hangUp = () => { caller.close(); callee.close(); stream.getTracks().forEach((t) => t.stop()); };
};
</script>
"""
SHAPES = {
    "audio-only": ({"audio": True}, True),
    "audio-video": ({"audio": True, "video": {"width": 640, "height": 360}}, True),
    "audio-video-open": ({"audio": True, "video": {"width": 640, "height": 360}}, False),
}


async def capture(browser, name, constraints, hang_up, seconds, compressed):
    context = await browser.new_context(accept_downloads=True)
    internals = await context.new_page()
    await internals.goto("chrome://webrtc-internals?keepRemovedConnections")
    call = await context.new_page()
    await call.route(ORIGIN + "/call", lambda route: route.fulfill(content_type="text/html", body=CALL_PAGE))
    await call.goto(ORIGIN + "/call")
    await call.evaluate("(constraints) => startCall(constraints)", constraints)
    await call.wait_for_timeout(seconds * 1000)
    if hang_up:
        await call.evaluate("hangUp()")
        await call.wait_for_timeout(1500)
    await internals.bring_to_front()
    await internals.click("summary:has-text('Create a WebRTC-Internals dump')")
    checkbox = internals.locator("#dump-checkbox")
    if await checkbox.is_checked() != compressed:
        await checkbox.click()
    async with internals.expect_download() as download_info:
        await internals.click("#dump-click-target")
    download = await download_info.value
    target = DATA / f"webrtc-internals-{name}.json{'.gz' if compressed else ''}"
    await download.save_as(target)
    await context.close()
    print(f"{target.relative_to(DATA.parents[1])}: {target.stat().st_size} bytes")


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", metavar="shape", help=f"{', '.join(SHAPES)} (default: all)")
    parser.add_argument("--seconds", type=int, default=12, help="length of each call")
    parser.add_argument("--compressed", action="store_true", help="tick 'Compress result' (a .json.gz file)")
    arguments = parser.parse_args()
    unknown = set(arguments.shapes) - SHAPES.keys()
    if unknown:
        parser.error(f"unknown shape {', '.join(sorted(unknown))}; known: {', '.join(SHAPES)}")
    DATA.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            for name in arguments.shapes or SHAPES:
                constraints, hang_up = SHAPES[name]
                await capture(browser, name, constraints, hang_up, arguments.seconds, arguments.compressed)
        finally:
            await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
