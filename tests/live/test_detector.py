"""The call detector against a real influxd, one tick at a time.

The periodic callback is slowed to an hour so each test runs the ticks it
wants with `run_tick()`; viewers are plain recorders of what the detector
hands them."""
import asyncio
import time

import pytest
import tornado.ioloop

from rtcscope import registry
from rtcscope.live.detector import CallDetector
from rtcscope.live.graphs import BUCKET_MS, KEPT_METRICS
from rtcscope.storage.store import StoreError
from tests.support.samples import now_ms, send
from tests.support.websockets import Recorder

pytestmark = pytest.mark.app_config(tick=3600.0, call_timeout=3.0)


async def watching(app, metric):
    """The detector after its first tick, and a viewer of `metric` on it."""
    viewer = Recorder()
    await app.detector.run_tick()
    await app.detector.watch(registry.lookup(metric), viewer)
    return app.detector, viewer


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
    await send(http_client, base_url, samples("old", start - 1000, 2, rtt=5.0) + [{"call": "old", "event": "end"}], flushed=app)
    await send(http_client, base_url, samples("live", start, 5, rtt=10.0), flushed=app)
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
    assert viewer.messages == [{"type": "snapshot", "metric": "rtt", "bucket_ms": BUCKET_MS, "mode": "lines",
                                "drawn": [], "calls": {}}]
    start = now_ms() - 3000
    await send(http_client, base_url, samples("c-1", start, 3, rtt=40.0) + samples("c-1", start, 3, peer="bob", rtt=60.0),
               flushed=app)
    await detector.run_tick()
    started, drawn, points = viewer.messages[1:4]
    assert started == {"type": "call_started", "call": "c-1", "at": start}
    assert drawn == {"type": "drawn", "metric": "rtt", "drawn": ["c-1"], "calls": {}, "left": []}
    assert points["type"] == "points" and points["metric"] == "rtt" and list(points["calls"]) == ["c-1"]
    assert all(ms % BUCKET_MS == 0 and value == 50.0 for ms, value in points["calls"]["c-1"])  # mean of both peers
    viewer.clear()

    await detector.run_tick()
    assert viewer.messages == []  # no new sample, nothing re-sent

    end_at = now_ms()
    await send(http_client, base_url, [{"call": "c-1", "peer": "alice", "event": "end", "ts": end_at - 500}], flushed=app)
    await detector.run_tick()
    assert viewer.events() == [] and detector.live_calls == ["c-1"]  # bob is still in the call
    await send(http_client, base_url, [{"call": "c-1", "peer": "bob", "event": "end", "ts": end_at}], flushed=app)
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
    await send(http_client, base_url, samples("c-2", start, 8, step=500, packetsLost=(0.0, 5.0)), flushed=app)
    viewer = Recorder()
    await detector.run_tick()
    await detector.watch(registry.lookup("packetsLost"), viewer)
    snapshot = viewer.messages[0]
    assert snapshot["metric"] == "packetsLost"
    assert snapshot["calls"]["c-2"] == [[start + BUCKET_MS, pytest.approx(10.0)]]
    # 10 more every 500 ms in the third bucket: 35 -> 75, 20 packets/s; the second bucket is not re-sent
    await send(http_client, base_url, samples("c-2", start + 2 * BUCKET_MS, 4, step=500, packetsLost=(45.0, 10.0)), flushed=app)
    await detector.run_tick()
    [points] = viewer.of_type("points")
    assert points["calls"]["c-2"] == [[start + 2 * BUCKET_MS, pytest.approx(20.0)]]


@pytest.mark.slow
@pytest.mark.gen_test(timeout=30)
async def test_timeout_end_at_last_sample_and_restart_starts_again(http_client, base_url, app):
    detector, viewer = await watching(app, "rtt")
    first = now_ms() - 1000
    await send(http_client, base_url, samples("c-3", first, 2, rtt=20.0), flushed=app)
    await detector.run_tick()
    assert viewer.events() == [("call_started", "c-3", first)]
    await asyncio.sleep(3.2)  # --call-timeout
    await detector.run_tick()
    assert viewer.events()[1:] == [("call_ended", "c-3", first + 1000)]
    viewer.clear()

    again = now_ms()
    await send(http_client, base_url, samples("c-3", again, 1, rtt=30.0), flushed=app)
    await detector.run_tick()
    # the old part is still in the look-back window; the start is the first sample after it
    assert viewer.events() == [("call_started", "c-3", again)]
    assert viewer.of_type("points")[0]["calls"]["c-3"][-1][1] == 30.0


@pytest.mark.gen_test(timeout=30)
async def test_a_call_between_two_ticks_starts_and_ends(http_client, base_url, app):
    detector, viewer = await watching(app, "rtt")
    start = now_ms() - 2000
    await send(http_client, base_url, samples("flash", start, 2, rtt=1.0) +
               [{"call": "flash", "event": "end", "ts": start + 1500}], flushed=app)
    await detector.run_tick()
    assert viewer.events() == [("call_started", "flash", start), ("call_ended", "flash", start + 1500)]


@pytest.mark.gen_test(timeout=30)
async def test_queries_per_tick_do_not_grow_with_viewers(http_client, base_url, app):
    detector = app.detector
    await detector.run_tick()
    await send(http_client, base_url, samples("c-4", now_ms() - 2000, 2, rtt=1.0, jitter=2.0, framesPerSecond=30.0), flushed=app)
    await detector.run_tick()

    async def queries_per_tick(viewers):
        before = detector.queries
        for _ in range(3):
            await detector.run_tick()
        return (detector.queries - before) / 3

    rtt, jitter, fps = registry.lookup("rtt"), registry.lookup("jitter"), registry.lookup("framesPerSecond")
    one = Recorder()
    await detector.watch(rtt, one)
    assert await queries_per_tick(1) == 1  # the feed since the last tick: quality and rtt come with it
    before = detector.queries
    many = [Recorder() for _ in range(20)]
    for viewer in many:
        await detector.watch(rtt, viewer)
    assert detector.queries == before  # the snapshot of a watched metric is shared
    assert all([m["type"] for m in v.messages] == ["snapshot"] and list(v.messages[0]["calls"]) == ["c-4"]
               for v in many)
    assert await queries_per_tick(21) == 1
    await detector.watch(jitter, Recorder())
    assert await queries_per_tick(22) == 1  # the feed carries jitter too
    framerate = Recorder()
    await detector.watch(fps, framerate)
    assert await queries_per_tick(23) == 2  # one more per watched metric the feed does not carry
    for viewer in [one, *many, framerate]:
        detector.unwatch(viewer)
    # the dashboard's default graphs are followed, watched or not; framesPerSecond no longer
    assert sorted(detector.graphs.watches) == sorted(KEPT_METRICS) and detector.graphs.watched_count == 1
    assert await queries_per_tick(1) == 1
    # New rows: the overlap read by key, then the rows from the first one not read whole before.
    await send(http_client, base_url, samples("c-4", now_ms() - 1000, 1, rtt=2.0), flushed=app)
    made, counted, of_alerts = app.store.queries, detector.queries, app.alerts.queries
    await detector.run_tick()
    await app.alerts._task
    assert (app.store.queries - made - (app.alerts.queries - of_alerts), detector.queries - counted) == (2, 2)


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


@pytest.mark.gen_test(timeout=30)
async def test_deadlines_a_held_loop_passes_count_as_skipped():
    """A tick whose synchronous part holds the loop over the next deadlines: tornado's
    PeriodicCallback passes them without calling tick(), and they count as skipped."""
    detector = CallDetector(None, timeout_ms=3000, tick_ms=100)
    started = []

    async def holding_tick():
        started.append(time.monotonic())
        if len(started) == 3:
            time.sleep(0.45)  # the loop is held over four deadlines

    detector.run_tick = holding_tick
    schedule = tornado.ioloop.PeriodicCallback(detector.tick, 100)
    began = time.monotonic()
    schedule.start()
    await asyncio.sleep(1.5)
    schedule.stop()
    deadlines = (time.monotonic() - began) / 0.1
    assert detector.skipped >= 3
    assert abs(len(started) + detector.skipped - deadlines) <= 2  # every deadline either ticked or counted


def test_a_late_first_call_does_not_count_the_on_time_ones_after_it():
    detector = CallDetector(None, timeout_ms=3000, tick_ms=1000)
    calls = [100.6, 101.0, 102.0, 103.0, 105.2, 106.0, 107.0]  # 100.6 late; deadline 104 passed unserved
    assert [detector._deadlines_passed(now) for now in calls] == [0, 0, 0, 0, 1, 0, 0]


@pytest.mark.gen_test(timeout=60)
async def test_two_servers_agree_on_live_calls_and_their_events(http_client, base_url, app, app_config, start_server):
    other = await start_server(**app_config)
    await other.store.setup()
    detectors = [app.detector, other.detector]
    viewers = [Recorder(), Recorder()]
    for detector, viewer in zip(detectors, viewers):
        await detector.run_tick()
        await detector.watch(registry.lookup("rtt"), viewer)
    start = now_ms() - 2000
    await send(http_client, base_url, samples("on-a", start, 2, rtt=10.0), flushed=app)
    await send(http_client, other.base_url, samples("on-b", start + 100, 2, peer="bob", rtt=20.0), flushed=other)
    for detector in detectors:
        await detector.run_tick()
    assert [detector.live_calls for detector in detectors] == [["on-a", "on-b"]] * 2
    assert [detector.activity.full_reads for detector in detectors] == [1, 1]  # only the first tick read the window
    # a peer of on-a joins through the other server; the first peer leaves through this one
    await send(http_client, other.base_url, samples("on-a", now_ms() - 500, 1, peer="carol", rtt=30.0), flushed=other)
    end_at = now_ms()
    await send(http_client, base_url, [{"call": "on-a", "peer": "alice", "event": "end", "ts": end_at}], flushed=app)
    for detector in detectors:
        await detector.run_tick()
    assert [detector.live_states()["on-a"].peers for detector in detectors] == [["alice", "carol"]] * 2
    await send(http_client, other.base_url, [{"call": "on-a", "peer": "carol", "event": "end", "ts": end_at + 1}], flushed=other)
    await send(http_client, base_url, [{"call": "on-b", "event": "end", "ts": end_at + 2}], flushed=app)
    for detector in detectors:
        await detector.run_tick()
    assert [detector.live_calls for detector in detectors] == [[], []]
    expected = [("call_started", "on-a", start), ("call_started", "on-b", start + 100),
                ("call_ended", "on-a", end_at + 1), ("call_ended", "on-b", end_at + 2)]
    assert [viewer.events() for viewer in viewers] == [expected, expected]


@pytest.mark.gen_test(timeout=30)
async def test_feed_rows_are_one_series_per_process_and_partial_rows_wait(http_client, base_url, app):
    detector = app.detector
    await detector.run_tick()
    start = now_ms() - 1000
    await send(http_client, base_url, samples("fed", start, 2, rtt=10.0) + samples("fed", start, 1, peer="bob", rtt=1.0),
               flushed=app)
    series = await app.store.query('SHOW SERIES FROM "rtc_feed"."rtc_feed"')
    assert [row["key"] for s in series for row in s["rows"]] == [f"rtc_feed,node={app.rtcstats_sessions.limits.feed.node}"]
    rows = await app.store.query('SELECT * FROM "rtc_feed"."rtc_feed"')
    assert sorted((row["call"], row["peer"], row["first"], row["last"]) for s in rows for row in s["rows"]) == [
        ("fed", "alice", start, start + 1000), ("fed", "bob", start, start)]
    # A row seen only in part (InfluxDB still writing it): skipped, and the tick goes on.
    await app.store.write(f'rtc_feed,node=elsewhere call="half" {now_ms() * 1_000_000}'.encode())
    await app.store.write(f'rtc_feed,node=elsewhere call="half",peer="p",recv={float(now_ms())!r} '
                          f'{now_ms() * 1_000_000 + 1}'.encode())
    await detector.run_tick()
    assert detector.failures == 0 and detector.live_calls == ["fed"]
    # ... and read whole at a later tick, within the overlap.
    at = now_ms()
    await app.store.write(f'rtc_feed,node=elsewhere call="half",peer="p",first={at - 100}.0,last={at}.0,'
                          f'recv={float(at)!r} {at * 1_000_000 - 400_000_000}'.encode())
    await detector.run_tick()
    assert detector.live_calls == ["fed", "half"]


@pytest.mark.gen_test(timeout=30)
async def test_a_failed_tick_reads_the_whole_window_again(http_client, base_url, app):
    detector = app.detector
    await detector.run_tick()
    await send(http_client, base_url, samples("back", now_ms() - 1000, 2, rtt=10.0), flushed=app)
    real = app.store.feed_since

    async def failing(since_ms):
        raise StoreError("InfluxDB went away")

    app.store.feed_since = failing
    await detector.run_tick()
    assert detector.failures == 1 and detector.live_calls == []
    app.store.feed_since = real
    await detector.run_tick()
    assert detector.activity.full_reads == 2 and detector.live_calls == ["back"]


@pytest.mark.gen_test(timeout=30)
async def test_points_from_the_feed_are_what_the_grouped_query_over_rtc_stats_answers(http_client, base_url, app):
    """Gauges and rates computed from the feed's samples against Store.metric_series on the same
    samples: two peers, two kinds, a bucket without samples, a counter that resets."""
    detector = app.detector
    await detector.run_tick()
    # Within the detector's memory of samples (10 s) with seconds to spare: a slow second tick must not trim the first bucket.
    start = (now_ms() - 6000) // BUCKET_MS * BUCKET_MS
    body = [sample for sample in samples("eq", start, 7, rtt=(40.0, 3.5), packetsLost=(0.0, 4.0))
            if not start + 2 * BUCKET_MS <= sample["ts"] < start + 3 * BUCKET_MS]  # alice sends nothing in bucket 3
    body += samples("eq", start + 250, 7, peer="bob", rtt=(80.0, -2.0))
    body += [{"call": "eq", "peer": "bob", "kind": "audio", "ts": start + 250 + i * 1000,
              "stats": {"packetsLost": [100.0, 107.0, 115.0, 3.0, 9.0, 20.0, 22.0][i]}} for i in range(7)]
    body += [{"call": "eq", "peer": "alice", "kind": "video", "ts": start + 500 + i * 700,
              "stats": {"availableOutgoingBitrate": 1e6 + i * 1e5, "packetsLost": float(i * i)}} for i in range(9)]
    await send(http_client, base_url, body, flushed=app)
    await detector.run_tick()
    end = now_ms()
    for name in ("rtt", "packetsLost", "availableBandwidth", "jitter"):
        metric = registry.lookup(name)
        rate = metric.type == registry.COUNTER
        ours = detector.activity.recent.metric_series(metric.source_field, {"eq"}, start, end, BUCKET_MS,
                                                      rate=rate, scale=metric.scale).as_dict()
        theirs = await app.store.metric_series(metric, start, end, BUCKET_MS // 1000, rate=rate)
        theirs = {call: [(ms, pytest.approx(value)) for ms, value in points if value is not None]
                  for call, points in theirs.items()}
        assert ours == {call: points for call, points in theirs.items() if points}, name
        assert name == "jitter" or len(ours["eq"]) >= 3, name
