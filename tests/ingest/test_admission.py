"""The call limits through the POST API, against a real influxd: too many
calls in one request, a client's budget of new calls, the fleet's cap, and
live graphs that keep their tick while one client or many flood ingest."""
import asyncio
import json
import time

import pytest
from tornado.httpclient import HTTPRequest

from tests.support.api import assert_error, get, post
from tests.support.metrics import exposed
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import Viewer


def write_url(base_url):
    return base_url + "/v1/stats/write/"


def junk(prefix, count, ts=None):
    """`count` samples of `count` made-up calls."""
    ts = ts or now_ms()
    return [{"call": f"{prefix}-{n}", "peer": "p", "ts": ts, "stats": {"rtt": 1.0}} for n in range(count)]


def stored_calls(influxd, database):
    """Distinct call ids InfluxDB holds: in samples, in presence rows and in end events."""
    calls = set()
    for measurement in ("rtc_stats", "rtc_calls", "rtc_events"):
        rows = influxd.rows(f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "call"', database)
        calls.update(row["value"] for row in rows)
    return calls





def assert_retry_after(response):
    """Every 429 says when to come back: whole seconds, at least one."""
    value = response.headers.get("Retry-After")
    assert value is not None and value.isdigit() and int(value) >= 1, dict(response.headers)
    return int(value)


@pytest.mark.gen_test(timeout=30)
async def test_too_many_calls_in_one_request_is_413_and_nothing_is_stored(
        http_client, base_url, app, influxd, database):
    ts = now_ms()
    status, body, _ = await post(http_client, write_url(base_url), junk("wide", 11, ts))
    assert_error(status, body, 413, "too_many_calls")
    assert "10" in body["error"]["message"]
    lines = "\n".join(f"rtc_stats,call=line-{n} rtt=1 {ts * 1_000_000}" for n in range(11))
    status, body, _ = await post(http_client, write_url(base_url), lines, "text/plain")
    assert_error(status, body, 413, "too_many_calls")
    # End events count as calls too.
    status, body, _ = await post(http_client, write_url(base_url),
                                 [{"call": f"end-{n}", "event": "end"} for n in range(11)])
    assert_error(status, body, 413, "too_many_calls")
    # Ten calls are fine; they are all that is ever stored.
    status, body, _ = await post(http_client, write_url(base_url), junk("ten", 10, ts))
    assert (status, body["accepted"]) == (200, 10)
    await eventually(lambda: len(stored_calls(influxd, database)) >= 10)
    await asyncio.sleep(0.3)  # a few more flush intervals: anything else would have landed
    assert stored_calls(influxd, database) == {f"ten-{n}" for n in range(10)}
    _, _, response = await get(http_client, base_url + "/metrics")
    assert exposed(response.body.decode(), "rtcscope_ingest_refused_total", reason="too_many_calls") == 3


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(max_new_calls=4, new_calls_window=2.0)
async def test_new_calls_budget_refuses_with_retry_after_and_refills(http_client, base_url, app, influxd, database):
    """Four new calls per 2 s: two tokens a second."""
    status, _, _ = await post(http_client, write_url(base_url), junk("first", 4))
    assert status == 200
    status, body, response = await post(http_client, write_url(base_url), junk("more", 2))
    assert_error(status, body, 429, "too_many_new_calls")
    wait_s = assert_retry_after(response)
    assert wait_s == 1  # two tokens back within a second
    # Calls the server knows carry on while their client is over its budget.
    status, _, _ = await post(http_client, write_url(base_url), junk("first", 4))
    assert status == 200
    await asyncio.sleep(wait_s)
    status, body, _ = await post(http_client, write_url(base_url), junk("more", 2))
    assert status == 200, body
    await eventually(lambda: len(stored_calls(influxd, database)) >= 6)
    assert stored_calls(influxd, database) == {"first-0", "first-1", "first-2", "first-3", "more-0", "more-1"}
    _, _, response = await get(http_client, base_url + "/metrics")
    assert exposed(response.body.decode(), "rtcscope_ingest_refused_total", reason="too_many_new_calls") == 1


@pytest.mark.gen_test(timeout=30)
async def test_ingest_keys_do_not_change_who_the_client_is(http_client, start_server, app_config, tmp_path):
    """A key is shared by every user of a site: another key buys no budget of its own."""
    keys = tmp_path / "keys"
    keys.write_text("site-a-key\nsite-b-key\n")
    application = await start_server(**{**app_config, "ingest_keys": str(keys), "max_new_calls": 1})
    url = write_url(application.base_url)
    status, _, _ = await post(http_client, url, junk("site-a", 1), headers={"Authorization": "Bearer site-a-key"})
    assert status == 200
    status, body, response = await post(http_client, url + "?key=site-b-key", junk("site-b", 1))
    assert_error(status, body, 429, "too_many_new_calls")
    assert assert_retry_after(response) == 60  # one token a minute


class Arrivals(list):
    """Messages, with when each arrived."""

    def __init__(self):
        super().__init__()
        self.times = []

    def append(self, message):
        self.times.append(time.monotonic())
        super().append(message)


class TimedViewer(Viewer):
    def __init__(self, connection):
        super().__init__(connection)
        self.messages = Arrivals()  # before the reader's first message: it starts on the next loop turn

    def points_times(self, call, since):
        return [at for at, message in zip(self.messages.times, self.messages)
                if at >= since and message["type"] == "points" and call in message["calls"]]


async def keep_posting(http_client, url, call, period, statuses):
    """One real call posting a changing rtt every `period` seconds."""
    value = 0.0
    while True:
        value += 1
        status, _, _ = await post(http_client, url, {"call": call, "peer": "alice", "ts": now_ms(),
                                                     "stats": {"rtt": value}})
        statuses.append(status)
        await asyncio.sleep(period)


async def flood(http_client, url, prefix, seconds, workers=6, headers=None):
    """Requests of ten made-up calls each, as fast as `workers` can send them, for `seconds`.
    Returns [(status, retry_after or None, calls of the request, error code or None)]."""
    answers = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker():
        while time.monotonic() < deadline:
            n = next(counter)
            body = junk(f"{prefix}{n}", 10)
            request = HTTPRequest(url, method="POST", body=json.dumps(body),
                                  headers={"Content-Type": "application/json", **(headers(n) if headers else {})})
            response = await http_client.fetch(request, raise_error=False)
            code = json.loads(response.body)["error"]["code"] if response.code != 200 else None
            answers.append((response.code, response.headers.get("Retry-After"), {s["call"] for s in body}, code))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return answers


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_a_flood_of_junk_calls_from_one_client_is_bounded_and_live_graphs_keep_their_tick(
        http_client, servers, influxd, database):
    # the default budget: 120 new calls a minute
    # Every call a line (not the band beyond --graph-lines), so the real call's own points show the tick.
    server = servers(flush_interval="0.1s", tick="0.25s", call_timeout="5s", graph_lines=1000).wait_ready(30)
    viewer = await TimedViewer.open(server.url, "/ws/graph/rtt", origin=server.url)
    real_statuses = []
    posting = asyncio.ensure_future(keep_posting(http_client, write_url(server.url), "real-call", 0.2, real_statuses))
    try:
        await viewer.next("points", "real-call", timeout=20)
        started = time.monotonic()
        answers = await flood(http_client, write_url(server.url), "junk", seconds=6)
        flood_seconds = time.monotonic() - started
        ended = time.monotonic()
        await asyncio.sleep(1)
    finally:
        posting.cancel()
        viewer.close()

    admitted = set().union(*(calls for status, _, calls, _ in answers if status == 200))
    refused = [(retry_after, code) for status, retry_after, _, code in answers if status != 200]
    assert {status for status, _, _, _ in answers} == {200, 429}, answers[:5]
    assert len(refused) > len(admitted) / 10, (len(refused), len(admitted))  # most requests were refused
    assert {code for _, code in refused} == {"too_many_new_calls"}
    assert all(retry_after and retry_after.isdigit() and int(retry_after) >= 1 for retry_after, _ in refused)
    # The bucket: 120 at once (the real call took one), then two a second, ten per request.
    assert 110 <= len(admitted) <= 120 + 2 * flood_seconds + 10, len(admitted)

    # InfluxDB holds the admitted calls and the real one: nothing of a refused request.
    await asyncio.sleep(0.5)
    assert stored_calls(influxd, database) == admitted | {"real-call"}
    series = influxd.rows('SHOW SERIES CARDINALITY FROM "rtc_stats"', database)
    assert sum(row["count"] for row in series) == len(admitted) + 1

    # The real call was never refused, and its graph moved every tick during the flood.
    assert set(real_statuses) == {200}, real_statuses
    times = viewer.points_times("real-call", started)
    times = [at for at in times if at <= ended]
    gaps = [later - earlier for earlier, later in zip([started] + times, times + [ended])]
    assert len(times) >= flood_seconds / 0.25 / 2, (len(times), flood_seconds)
    assert max(gaps) < 1.5, gaps  # generous: six ticks, on a shared machine


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_many_client_addresses_are_bounded_by_the_fleet_cap(http_client, servers, influxd, database):
    """Through --xheaders (nginx's X-Real-IP), every request another client, IPv4 and IPv6:
    each has its own budget, the fleet's cap of 30 live calls holds them all."""
    server = servers(flush_interval="0.1s", xheaders="true", tick="0.25s", call_timeout="20s", max_new_calls=3,
                     max_live_calls=30).wait_ready(30)
    url = write_url(server.url)

    def address(n):
        return {"X-Real-IP": f"198.51.100.{n}" if n % 2 else f"2001:db8:0:{n:x}::1"}

    # Ten clients start three calls each: the fleet is full.
    for n in range(10):
        status, body, _ = await post(http_client, url, junk(f"early{n}", 3), headers=address(n))
        assert status == 200, body
    early = {f"early{n}-{k}" for n in range(10) for k in range(3)}

    async def live_count():
        status, body, _ = await get(http_client, server.url + "/v1/calls/?state=live")
        return status == 200 and body["count"]
    async def all_live():  # the detector lists them over a tick or two: wait for all, not the first few
        return await live_count() == 30
    assert await eventually(all_live, timeout=20)

    # A flood from a hundred more addresses: each within its own budget, every new call refused.
    answers = await flood(http_client, url, "late", seconds=2, headers=lambda n: address(100 + n % 100))
    assert answers and {(status, code) for status, _, _, code in answers} == {(429, "too_many_live_calls")}
    assert all(retry_after and int(retry_after) >= 1 for _, retry_after, _, _ in answers)
    # The calls already live carry on, whoever posts them.
    for n in range(10):
        status, body, _ = await post(http_client, url, junk(f"early{n}", 3), headers=address(200 + n))
        assert status == 200, body
    await asyncio.sleep(0.5)
    assert stored_calls(influxd, database) == early
    assert await live_count() == 30
    _, _, response = await get(http_client, server.url + "/metrics")
    assert exposed(response.body.decode(), "rtcscope_ingest_refused_total", reason="too_many_live_calls") == len(answers)
