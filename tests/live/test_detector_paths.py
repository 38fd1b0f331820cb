"""The detector's two ways of reading: the live feed since the previous tick (what servers run)
and the whole window with grouped queries over rtc_stats every tick (what bench 6c compares it
with, `incremental=False`) tell viewers the same, tick by tick, over a small fleet of real
Chromium reports: calls that start, send, end, time out and start later."""
import asyncio

import pytest

from rtcscope import registry
from rtcscope.live.detector import CallDetector
from tests.support.reports import chromium_reports
from tests.support.samples import now_ms, send
from tests.support.websockets import Recorder

pytestmark = pytest.mark.app_config(tick=3600.0, call_timeout=3.0)

REPORTS = chromium_reports()
METRICS = ("rtt", "packetsLost", "framesPerSecond")  # a gauge and a counter the feed carries, one it does not


def rounded(value):
    """Floats to 9 significant digits: InfluxDB and Python add the same samples in their own order."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def reports(call, indexes, now):
    """Both peers' getStats() reports `indexes` of the fixture, one a second up to `now`."""
    return [{"call": call, "peer": peer, "ts": now - (len(indexes) - 1 - n) * 1000, "report": REPORTS[index][peer]}
            for n, index in enumerate(indexes) for peer in ("caller", "callee")]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_the_feed_and_the_whole_window_tell_viewers_the_same(http_client, base_url, app):
    time = [0]
    detectors = [CallDetector(app.store, timeout_ms=3000, tick_ms=1000, incremental=incremental,
                              clock=lambda: time[0]) for incremental in (True, False)]
    viewers = [[Recorder() for _ in METRICS + ("calls",)] for _ in detectors]

    async def tick_both():
        time[0] = now_ms()
        for detector in detectors:
            await detector.run_tick()
        assert [detector.failures for detector in detectors] == [0, 0]
        feed, whole = detectors
        assert feed.live_calls == whole.live_calls
        assert {call: rounded([quality.as_json(), quality.peers]) for call, quality in feed.qualities.items()} == \
            {call: rounded([quality.as_json(), quality.peers]) for call, quality in whole.qualities.items()}
        told = [[rounded(viewer.messages) for viewer in each] for each in viewers]
        assert told[0] == told[1]
        return feed.live_calls

    try:
        await follow_a_fleet(http_client, base_url, app, detectors, viewers, tick_both)
    finally:
        for detector in detectors:
            await detector.stop()


async def follow_a_fleet(http_client, base_url, app, detectors, viewers, tick_both):
    now = now_ms()
    await send(http_client, base_url, [item for call in ("a", "b", "c") for item in reports(call, [0, 1, 2], now)], flushed=app)
    assert await tick_both() == ["a", "b", "c"]
    for detector, each in zip(detectors, viewers):
        for metric, viewer in zip(METRICS, each):
            await detector.watch(registry.lookup(metric), viewer)
        await detector.watch_calls(each[-1])
    now = now_ms()
    await send(http_client, base_url, reports("a", [3, 4], now) + reports("b", [3], now) + reports("d", [0, 1], now)
               + [{"call": "b", "peer": peer, "event": "end", "reason": "leave"} for peer in ("caller", "callee")], flushed=app)
    assert await tick_both() == ["a", "c", "d"]
    await asyncio.sleep(3.2)  # c sends nothing for longer than the timeout
    now = now_ms()
    await send(http_client, base_url, reports("a", [5], now) + reports("d", [2, 3], now), flushed=app)
    assert await tick_both() == ["a", "d"]
    await send(http_client, base_url, reports("d", [4, 5], now_ms()) + [{"call": "a", "event": "end"}], flushed=app)
    assert await tick_both() == ["d"]
    # What they agreed on: every event, points of the calls that sent, the call list's changes.
    told = viewers[0]
    for viewer in told[:-1]:
        assert [(m["type"], m["call"], m.get("reason")) for m in viewer.messages if "call" in m] == [
            ("call_started", "d", None), ("call_ended", "b", "explicit"), ("call_ended", "c", "timeout"),
            ("call_ended", "a", "explicit")]
    rtt_drawn = {call for message in told[0].messages if message["type"] == "points" for call in message["calls"]}
    assert rtt_drawn == {"a", "d"}
    snapshot, *changes = told[-1].messages
    assert sorted(entry["call"] for entry in snapshot["calls"]) == ["a", "b", "c"]
    assert [entry["call"] for m in changes for entry in m["started"]] == ["d"]
    assert [(entry["call"], entry["reason"]) for m in changes for entry in m["ended"]] == [
        ("b", "explicit"), ("c", "timeout"), ("a", "explicit")]
    assert {m["fleet"]["live"] for m in changes} == {1, 2, 3}
