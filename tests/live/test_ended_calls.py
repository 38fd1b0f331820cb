"""The ended-call index against a real influxd and real servers: GET /v1/calls/?state=ended|all
answers from the detector's memory (no InfluxDB query), agrees with the query path, follows
calls that come back, and is the same in a server started after the calls ended.

The periodic callback is slowed to an hour; each test runs the ticks it wants."""
import asyncio

import pytest

from rtcscope.live import fleet
from tests.data import dumps
from tests.support.api import get, post
from tests.support.detector import settled, tick
from tests.support.samples import FLEET, call_samples, now_ms, send
from tests.support.waits import eventually

pytestmark = pytest.mark.app_config(**FLEET)

# call -> (rtt, jitter, loss) and how it ends: an end event (with the client's reason) or the timeout
ENDING = {"e-good": (40.0, 5.0, 0.0, "leave"), "e-slow": (900.0, 5.0, 0.0, "pagehide"),
          "e-lossy": (80.0, 5.0, 0.12, None), "e-quiet": (60.0, 5.0, 0.0, "timeout")}


async def listed_without_a_query(http_client, app, query):
    """GET /v1/calls/?<query> and check that it asked InfluxDB nothing."""
    await settled(app)
    before = app.store.queries
    status, document, _ = await get(http_client, f"{app.base_url}/v1/calls/?{query}")
    assert status == 200, document
    assert app.store.queries == before, f"{query} was answered with {app.store.queries - before} InfluxDB queries"
    return document


async def listed_from_influxdb(http_client, app, query):
    before = app.store.queries
    status, document, _ = await get(http_client, f"{app.base_url}/v1/calls/?{query}")
    assert status == 200, document
    assert app.store.queries > before  # the query path
    return document


async def end_calls(http_client, app, calls):
    """Send each call's samples, see them live, end them (explicitly or by the timeout), see them end."""
    start = now_ms() - 6000
    body = []
    for call, (rtt, jitter, loss, _) in calls.items():
        body += call_samples(call, start, rtt, jitter, loss)
    await send(http_client, app.base_url, body, flushed=app)
    await tick(app)
    assert set(calls) <= set(app.detector.live_calls)
    ends = [{"call": call, "event": "end", "ts": now_ms(), **({"reason": how} if how else {})}
            for call, (_, _, _, how) in calls.items() if how != "timeout"]
    await send(http_client, app.base_url, ends, flushed=app)
    if any(how == "timeout" for *_, how in calls.values()):
        await asyncio.sleep(3.3)  # --call-timeout
    await tick(app)
    assert not set(calls) & set(app.detector.live_calls)


async def summarised(app, count):
    """Tick until the detector has written `count` summaries (each 5 s after its call's end)."""
    async def written():
        await tick(app)
        return app.detector.summaries.written >= count
    await eventually(written, timeout=20, interval=0.5)
    await eventually(lambda: app.writer.depth == 0)  # the points in InfluxDB


@pytest.fixture
def served(app, base_url):
    app.base_url = base_url
    return app


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_ended_calls_are_listed_with_reason_and_quality_without_a_query(http_client, served, influxd, database):
    app = served
    await tick(app)  # the first tick, then the index's load
    assert app.detector.ended_calls.ready
    await end_calls(http_client, app, ENDING)
    document = await listed_without_a_query(http_client, app, "state=ended")
    assert {c["call"]: (c["end_reason"], c["end_detail"]) for c in document["calls"]} == {
        "e-good": ("explicit", "leave"), "e-slow": ("explicit", "pagehide"), "e-lossy": ("explicit", None),
        "e-quiet": ("timeout", None)}
    assert all(c["state"] == "ended" and c["peers"] == ["alice"] and c["quality"] is None for c in document["calls"])

    await summarised(app, len(ENDING))
    points = {row["call"]: row for row in influxd.rows("SELECT * FROM rtc_call_summaries WHERE time > 0", database)}
    assert sorted(points) == sorted(ENDING)
    worst = await listed_without_a_query(http_client, app, "state=ended&sort=worst")
    assert {c["call"]: c["quality"] for c in worst["calls"]} == {
        call: fleet.summary_quality(point) for call, point in points.items()}
    assert worst["calls"][0]["call"] == "e-slow" and worst["calls"][0]["quality"]["verdict"] == "poor"
    assert "high_loss" in {c["call"]: c for c in worst["calls"]}["e-lossy"]["quality"]["problems"]
    # the same answer as the query path gives (a since longer than the index's 24 h takes it)
    for query in ("state=ended&sort=worst", "state=ended&sort=recent", "state=all&sort=worst&q=e-"):
        indexed = await listed_without_a_query(http_client, app, query)
        assert indexed == await listed_from_influxdb(http_client, app, query + "&since=25h")
        assert indexed["count"] == len(ENDING)
    short = await listed_without_a_query(http_client, app, "state=ended&since=1m&q=slow")
    assert [c["call"] for c in short["calls"]] == ["e-slow"]


@pytest.mark.gen_test(timeout=60)
async def test_a_call_that_comes_back_moves_from_ended_to_live(http_client, served):
    app = served
    await tick(app)
    await end_calls(http_client, app, {"back": (50.0, 5.0, 0.0, "stop"), "gone": (50.0, 5.0, 0.0, "stop")})
    ended = await listed_without_a_query(http_client, app, "state=ended")
    assert sorted(c["call"] for c in ended["calls"]) == ["back", "gone"]
    await send(http_client, app.base_url, call_samples("back", now_ms() - 1000, 50.0, 5.0, 0.0, count=2), flushed=app)
    await tick(app)
    assert "back" in app.detector.live_calls
    ended = await listed_without_a_query(http_client, app, "state=ended")
    live = await listed_without_a_query(http_client, app, "state=live")
    every = await listed_without_a_query(http_client, app, "state=all")
    assert [c["call"] for c in ended["calls"]] == ["gone"]
    assert [c["call"] for c in live["calls"]] == ["back"]
    assert [(c["call"], c["state"]) for c in every["calls"]] == [("back", "live"), ("gone", "ended")]
    assert every["calls"][0]["quality"]["verdict"] == "good"  # a live call's quality of the tick

    await send(http_client, app.base_url, [{"call": "back", "event": "end", "ts": now_ms()}], flushed=app)
    await tick(app)
    ended = await listed_without_a_query(http_client, app, "state=ended")
    assert sorted(c["call"] for c in ended["calls"]) == ["back", "gone"]
    assert {c["call"]: c["end_detail"] for c in ended["calls"]} == {"back": None, "gone": "stop"}


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_a_server_started_later_lists_the_same_ended_calls(http_client, served, app_config, start_server):
    one = served
    await tick(one)
    await end_calls(http_client, one, ENDING)
    await summarised(one, len(ENDING))
    two = await start_server(**{**app_config, "wal_dir": None})
    await tick(two)  # its first tick, then its load: what ended before it started
    assert two.detector.ended_calls.ready
    for query in ("state=ended&sort=worst", "state=all&sort=recent"):
        assert await listed_without_a_query(http_client, two, query) == await listed_without_a_query(
            http_client, one, query)

    # calls that end while both run, seen by each in the shared feed
    later = {"l-one": (45.0, 5.0, 0.0, "leave"), "l-two": (700.0, 5.0, 0.0, None)}
    await end_calls(http_client, one, later)
    await tick(two)
    await summarised(one, len(ENDING) + len(later))
    await summarised(two, len(later))
    first = await listed_without_a_query(http_client, one, "state=ended&sort=worst")
    assert first["count"] == len(ENDING) + len(later)
    assert first == await listed_without_a_query(http_client, two, "state=ended&sort=worst")
    assert {c["call"]: c["quality"]["verdict"] for c in first["calls"]}["l-two"] == "poor"


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_paging_over_ended_calls_never_repeats_or_skips(http_client, served):
    app = served
    await tick(app)
    calls = {f"p-{i:02d}": (40.0 + 30 * (i % 9), 5.0, 0.02 * (i % 4), "leave") for i in range(23)}
    await end_calls(http_client, app, calls)
    await summarised(app, len(calls))
    await send(http_client, app.base_url, call_samples("p-live", now_ms() - 3000, 60.0, 5.0, 0.0, count=3), flushed=app)
    await tick(app)
    for query, total in (("state=ended&sort=worst", 23), ("state=ended&sort=recent", 23),
                         ("state=all&sort=worst", 24), ("state=all&sort=recent", 24)):
        whole = await listed_without_a_query(http_client, app, query + "&limit=1000")
        walked, cursor = [], None
        while True:
            page = await listed_without_a_query(
                http_client, app, f"{query}&limit=5" + (f"&cursor={cursor}" if cursor else ""))
            assert page["count"] == total and len(page["calls"]) <= 5
            walked += [c["call"] for c in page["calls"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert walked == [c["call"] for c in whole["calls"]] and len(set(walked)) == total
    worst = await listed_without_a_query(http_client, app, "state=ended&sort=worst&limit=1000")
    keys = [fleet.worst_key(c["call"], c["quality"]) for c in worst["calls"]]
    assert keys == sorted(keys) and worst["calls"][0]["quality"]["mos"] < worst["calls"][-1]["quality"]["mos"]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(**FLEET, max_ended_calls=3)
async def test_beyond_the_cap_or_before_the_load_the_list_is_read_from_influxdb(http_client, served):
    app = served
    before_first_tick = await listed_from_influxdb(http_client, app, "state=all")
    assert before_first_tick["count"] == 0
    await tick(app)
    calls = {f"c-{i}": (50.0, 5.0, 0.0, "leave") for i in range(5)}
    await end_calls(http_client, app, calls)
    assert len(app.detector.ended_calls) == 3  # the cap
    document = await listed_from_influxdb(http_client, app, "state=ended")
    assert sorted(c["call"] for c in document["calls"]) == sorted(calls) and document["count"] == 5


@pytest.mark.gen_test(timeout=60)
async def test_an_import_is_listed_by_every_server(http_client, served, app_config, start_server):
    one = served
    two = await start_server(**{**app_config, "wal_dir": None})
    await tick(one)
    await tick(two)
    status, answer, _ = await post(http_client, one.base_url + "/v1/import/webrtc-internals?call=imported-1",
                                   dumps.recent(dumps.AUDIO_ONLY))
    assert status == 200, answer
    await eventually(lambda: one.writer.depth == 0)
    # the importing server asks InfluxDB until its detector has read the import back
    assert "imported-1" in {c["call"] for c in (await listed_from_influxdb(http_client, one, "state=ended"))["calls"]}
    await tick(one)
    await tick(two)
    for server in (one, two):
        document = await listed_without_a_query(http_client, server, "state=ended")
        [listed] = document["calls"]
        assert (listed["call"], listed["peers"], listed["end_reason"]) == ("imported-1", answer["peers"], "explicit")
        assert (listed["started"], listed["last_seen"]) == (answer["from"], answer["to"])
