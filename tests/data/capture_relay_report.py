#!/usr/bin/env python3
"""Capture chromium-relay-tcp.json beside this file: the reports rtcscope.js sends of a real
Chromium call relayed by a real TURN server over TCP (see README.md):

    .venv/bin/python tests/data/capture_relay_report.py

A loopback call (two RTCPeerConnections in one headless Chromium page) with
`iceTransportPolicy: "relay"` and `turn:127.0.0.1:PORT?transport=tcp` of a
coturn started by tests/support/turn.py; both ends monitored by static/rtcscope.js,
whose `onsample` hands over each report as it is sent (addresses, ports and
certificates stripped, the relay candidate's `url` kept as host:port). Nothing
has to answer where the monitors send.
"""
import asyncio
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.support import calls  # noqa: E402
from tests.support.turn import Coturn  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "chromium-relay-tcp.json"
POLLS = 3
INTERVAL_MS = 1000


async def capture():
    turn = Coturn().start()
    try:
        async with calls.calls_page("http://127.0.0.1:9", serve_client=True) as page:
            configuration = calls.rtc_configuration(turn, "tcp")
            await calls.start_call(page, "capture", configuration, interval=INTERVAL_MS)
            # The first polls of a fresh call lack bitrate and round trips: skip two.
            await page.wait_for_function(f"calls.capture.samples.length >= {2 * (POLLS + 2)}", timeout=60_000)
            taken = await calls.samples(page, "capture")
            user_agent = await page.evaluate("navigator.userAgent")
            await calls.stop_call(page, "capture")
    finally:
        turn.cleanup()
    by_peer = {peer: [sample["report"] for sample in taken if sample["peer"] == peer][2:2 + POLLS]
               for peer in calls.PEERS}
    return {"userAgent": user_agent, "intervalMs": INTERVAL_MS, "turnServer": turn.server("tcp"),
            "relayProtocol": "tcp", "reports": [dict(zip(by_peer, polls)) for polls in zip(*by_peer.values())]}


if __name__ == "__main__":
    OUT.write_text(json.dumps(asyncio.run(capture()), indent=1) + "\n")
    print(f"wrote {OUT}")
