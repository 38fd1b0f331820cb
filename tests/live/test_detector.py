"""The call detector against a real influxd, one tick at a time.

The periodic callback is slowed to an hour so each test runs the ticks it
wants with `run_tick()`; viewers are plain recorders of what the detector
hands them."""
import asyncio
import json

import pytest

from rtcscope import registry
from rtcscope.live.detector import BUCKET_MS
from tests.conftest import now_ms
from tests.helpers import eventually, post

pytestmark = pytest.mark.app_config(tick=3600.0, call_timeout=3.0)


class Recorder:
    """A viewer: keeps every message it is sent."""

    def __init__(self):
        self.messages = []
        self.closed = None

    def send(self, data):
        self.messages.append(json.loads(data))

    def close(self, code, reason):
        self.closed = (code, reason)

    def of_type(self, kind):
        return [m for m in self.messages if m["type"] == kind]

    def events(self):
        return [(m["type"], m["call"], m["at"]) for m in self.messages if m["type"] in ("call_started", "call_ended")]

    def clear(self):
        self.messages.clear()


async def watching(app, metric):
    """The detector after its first tick, and a viewer of `metric` on it."""
    viewer = Recorder()
    await app.detector.run_tick()
    await app.detector.watch(registry.lookup(metric), viewer)
    return app.detector, viewer


async def send(http_client, base_url, app, body):
    """POST and wait until InfluxDB has it."""
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200, result
    await eventually(lambda: app.writer.depth == 0)


def samples(call, start, count, step=1000, peer="alice", **fields):
    """`count` samples from `start`; a field given as (first, increment) grows, a number stays."""
    body = []
    for i in range(count):
        stats = {name: (value[0] + value[1] * i if isinstance(value, tuple) else value)
                 for name, value in fields.items()}
        body.append({"call": call, "peer": peer, "kind": "audio", "ts": start + i * step, "stats": stats})
    return body


@pytest.mark.gen_test(timeout=30)
async def test_first_tick_learns_the_live_set_and_announces_nothing(http_client, base_url, app):
    start = now_ms() - 8000
    await send(http_client, base_url, app, samples("old", start - 1000, 2, rtt=5.0) + [{"call": "old", "event": "end"}])
    await send(http_client, base_url, app, samples("live", start, 5, rtt=10.0))
    detector = app.detector
    viewer = Recorder()
    watching = asyncio.ensure_future(detector.watch(registry.lookup("rtt"), viewer))
    await asyncio.sleep(0.1)
    assert viewer.messages == []  # a viewer waits for the first tick
    await detector.run_tick()
    await watching
    assert detector.live_calls == ["live"]
    [snapshot] = viewer.messages
    assert snapshot["type"] == "snapshot" and list(snapshot["calls"]) == ["live"]
    assert {value for _, value in snapshot["calls"]["live"]} == {10.0}
    await detector.run_tick()
    assert viewer.events() == []  # `old` ended before the server looked: history, not news


@pytest.mark.gen_test(timeout=30)
async def test_started_points_then_explicit_end_of_every_peer(http_client, base_url, app):
    detector, viewer = await watching(app, "rtt")
    assert viewer.messages == [{"type": "snapshot", "metric": "rtt", "bucket_ms": BUCKET_MS, "calls": {}}]
    start = now_ms() - 3000
    await send(http_client, base_url, app, samples("c-1", start, 3, rtt=40.0) + samples("c-1", start, 3, peer="bob", rtt=60.0))
    await detector.run_tick()
    started, points = viewer.messages[1:3]
    assert started == {"type": "call_started", "call": "c-1", "at": start}
    assert points["type"] == "points" and points["metric"] == "rtt" and list(points["calls"]) == ["c-1"]
    assert all(ms % BUCKET_MS == 0 and value == 50.0 for ms, value in points["calls"]["c-1"])  # mean of both peers
    viewer.clear()

    await detector.run_tick()
    assert viewer.messages == []  # no new sample, nothing re-sent

    end_at = now_ms()
    await send(http_client, base_url, app, [{"call": "c-1", "peer": "alice", "event": "end", "ts": end_at - 500}])
    await detector.run_tick()
    assert viewer.events() == [] and detector.live_calls == ["c-1"]  # bob is still in the call
    await send(http_client, base_url, app, [{"call": "c-1", "peer": "bob", "event": "end", "ts": end_at}])
    await detector.run_tick()
    assert viewer.events() == [("call_ended", "c-1", end_at)]
    assert detector.live_calls == []
    # a snapshot taken now no longer holds the call
    late = Recorder()
    await detector.watch(registry.lookup("rtt"), late)
    assert late.messages[0]["calls"] == {}


@pytest.mark.gen_test(timeout=30)
async def test_counters_are_rates_and_only_changed_buckets_are_sent(http_client, base_url, app):
    detector = app.detector
    await detector.run_tick()
    start = (now_ms() - 8000) // BUCKET_MS * BUCKET_MS
    # 5 packets every 500 ms over two buckets: 10 packets/s, shown on the second
    # bucket (a rate needs the bucket before it)
    await send(http_client, base_url, app, samples("c-2", start, 8, step=500, packetsLost=(0.0, 5.0)))
    viewer = Recorder()
    await detector.run_tick()
    await detector.watch(registry.lookup("packetsLost"), viewer)
    snapshot = viewer.messages[0]
    assert snapshot["metric"] == "packetsLost"
    assert snapshot["calls"]["c-2"] == [[start + BUCKET_MS, pytest.approx(10.0)]]
    # 10 more every 500 ms in the third bucket: 35 -> 75, 20 packets/s; the second bucket is not re-sent
    await send(http_client, base_url, app, samples("c-2", start + 2 * BUCKET_MS, 4, step=500, packetsLost=(45.0, 10.0)))
    await detector.run_tick()
    [points] = viewer.of_type("points")
    assert points["calls"]["c-2"] == [[start + 2 * BUCKET_MS, pytest.approx(20.0)]]


@pytest.mark.gen_test(timeout=30)
async def test_timeout_end_at_last_sample_and_restart_starts_again(http_client, base_url, app):
    detector, viewer = await watching(app, "rtt")
    first = now_ms() - 1000
    await send(http_client, base_url, app, samples("c-3", first, 2, rtt=20.0))
    await detector.run_tick()
    assert viewer.events() == [("call_started", "c-3", first)]
    await asyncio.sleep(3.2)  # --call-timeout
    await detector.run_tick()
    assert viewer.events()[1:] == [("call_ended", "c-3", first + 1000)]
    viewer.clear()

    again = now_ms()
    await send(http_client, base_url, app, samples("c-3", again, 1, rtt=30.0))
    await detector.run_tick()
    # the old part is still in the look-back window; the start is the first sample after it
    assert viewer.events() == [("call_started", "c-3", again)]
    assert viewer.of_type("points")[0]["calls"]["c-3"][-1][1] == 30.0


@pytest.mark.gen_test(timeout=30)
async def test_a_call_between_two_ticks_starts_and_ends(http_client, base_url, app):
    detector, viewer = await watching(app, "rtt")
    start = now_ms() - 2000
    await send(http_client, base_url, app, samples("flash", start, 2, rtt=1.0) +
               [{"call": "flash", "event": "end", "ts": start + 1500}])
    await detector.run_tick()
    assert viewer.events() == [("call_started", "flash", start), ("call_ended", "flash", start + 1500)]


@pytest.mark.gen_test(timeout=30)
async def test_queries_per_tick_do_not_grow_with_viewers(http_client, base_url, app):
    detector = app.detector
    await detector.run_tick()
    await send(http_client, base_url, app, samples("c-4", now_ms() - 2000, 2, rtt=1.0, jitter=2.0))
    await detector.run_tick()

    async def queries_per_tick(viewers):
        before = detector.queries
        for _ in range(3):
            await detector.run_tick()
        return (detector.queries - before) / 3

    rtt, jitter = registry.lookup("rtt"), registry.lookup("jitter")
    one = Recorder()
    await detector.watch(rtt, one)
    assert await queries_per_tick(1) == 4  # presence + ends + quality window + rtt
    before = detector.queries
    many = [Recorder() for _ in range(20)]
    for viewer in many:
        await detector.watch(rtt, viewer)
    assert detector.queries == before  # the snapshot of a watched metric is shared
    assert all([m["type"] for m in v.messages] == ["snapshot"] and list(v.messages[0]["calls"]) == ["c-4"]
               for v in many)
    assert await queries_per_tick(21) == 4
    await detector.watch(jitter, Recorder())
    assert await queries_per_tick(22) == 5  # one more per watched metric
    for viewer in [one, *many]:
        detector.unwatch(viewer)
    assert list(detector.watches) == ["jitter"]
    assert await queries_per_tick(1) == 4


@pytest.mark.gen_test(timeout=30)
async def test_overlapping_ticks_are_skipped(app):
    detector = app.detector
    detector.tick()
    detector.tick()  # the first is still waiting for InfluxDB
    assert detector.skipped == 1
    await detector._task
    assert detector.ticks == 1
    detector.tick()
    await detector._task
    assert (detector.ticks, detector.skipped) == (2, 1)
