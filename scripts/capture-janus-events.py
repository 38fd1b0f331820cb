"""Re-capture the Janus event posts under tests/data/janus/ (see its README).

Runs Debian's Janus (tests/janus.py: its own configuration folder, HTTP transport
and sample event handler on free ports) with its event handler posting to a
recording backend, and headless Chromium pages (fake camera and microphone) that
join it with Debian's janus.js, as an application does. Each scenario's posts are
written one per line, each line a body exactly as Janus sent it:

    .venv/bin/python scripts/capture-janus-events.py            # every scenario
    .venv/bin/python scripts/capture-janus-events.py echotest   # one of them

Scenarios: echotest (grouped posts; one peer c-1/alice, plus a handle without an
opaque_id and one whose opaque_id is not a call id), videoroom (grouped; alice and
bob publish and subscribe to each other), single (grouping = false and
combine_media_stats = true), timeout (a session that stops sending keepalives).
"""
import argparse
import asyncio
import pathlib
import sys
import time

import tornado.httpserver
import tornado.web
from playwright.async_api import async_playwright
from tornado.testing import bind_unused_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.browser import CALL_ARGS  # noqa: E402
from tests.support.janus import Janus, page_application  # noqa: E402

DATA = ROOT / "tests" / "data" / "janus"
SCENARIOS = ("echotest", "videoroom", "single", "timeout")


class Recorder(tornado.web.RequestHandler):
    """The backend: keeps every body, answers 200 as rtcscope does."""

    def initialize(self, bodies):
        self.bodies = bodies

    def post(self):
        self.bodies.append(self.request.body)
        self.finish({"success": True})


class Stats(tornado.web.RequestHandler):
    """Stands in for the server rtcscope.js posts to: the client's own stats are not captured."""

    def set_default_headers(self):
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Access-Control-Allow-Headers", "Content-Type")

    def post(self):
        self.finish({"success": True})

    def options(self):
        self.set_status(204)
        self.finish()


async def call(browser, base, janus, kind, peers, seconds):
    pages = []
    for peer in peers:
        page = await browser.new_page()
        await page.goto(base + "/call")
        await page.evaluate(f"(options) => {kind}(options)",
                            {"janus": janus.url, "opaqueId": f"c-1/{peer}", "call": "c-1", "peer": peer, "server": base})
        pages.append(page)
    await asyncio.sleep(seconds)
    return pages


async def capture(scenario):
    bodies = []
    app = page_application((r"/events/", Recorder, {"bodies": bodies}), (r"/v1/stats/write/", Stats))
    sock, port = bind_unused_port()
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    base = f"http://127.0.0.1:{port}"
    options = {"single": {"grouping": False, "combine_media_stats": True},
               "timeout": {"session_timeout": 3}}.get(scenario, {})
    janus = Janus(base + "/events/?key=K", backend_user="janus", backend_pwd="K", **options).start()
    try:
        if scenario == "timeout":
            session = janus.create_session()
            janus.attach(session, opaque_id="c-2/carol")
            time.sleep(8)  # no keepalive: Janus times the session out after 3 s (its watchdog runs every 2 s)
        else:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CALL_ARGS)
                kind = "videoroom" if scenario == "videoroom" else "echotest"
                pages = await call(browser, base, janus, kind, ["alice", "bob"] if kind == "videoroom" else ["alice"], 4)
                if scenario == "echotest":
                    for opaque_id in (None, "not a call/x"):
                        session = janus.create_session()
                        handle = janus.attach(session, opaque_id=opaque_id)
                        janus.detach(session, handle)
                for page in pages:
                    await page.evaluate("hangup()")
                await asyncio.sleep(1.5)
                await browser.close()
        await asyncio.sleep(1)
    finally:
        janus.cleanup()
        server.stop()
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{scenario}.jsonl"
    path.write_bytes(b"".join(body.strip() + b"\n" for body in bodies))
    print(f"{path.relative_to(ROOT)}: {len(bodies)} posts")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    scenarios = parser.parse_args().scenarios or SCENARIOS
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}")
    for scenario in scenarios:
        asyncio.run(capture(scenario))


if __name__ == "__main__":
    main()
