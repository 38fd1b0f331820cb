"""The batching writer against a real influxd: batches, back-pressure, retries."""
import asyncio

import pytest

from rtcscope.storage.writer import classify_refusal
from tests.support.api import assert_error, post
from tests.support.influxd import count_points
from tests.support.samples import now_ms
from tests.support.waits import eventually


@pytest.mark.gen_test(timeout=60)
# No detector tick: each tick also writes the alert sender's heartbeat (docs/alerts.md), not a batch.
@pytest.mark.app_config(flush_interval=0.3, tick=3600.0)
async def test_influxdb_writes_are_batches_not_requests(http_client, base_url, app, influxd, database):
    before = influxd.write_requests()
    url = base_url + "/v1/stats/write/"
    requests = 200
    await asyncio.gather(*[post(http_client, url, {"call": f"c{i % 7}", "peer": "p", "stats": {"rtt": i}})
                           for i in range(requests)])
    await eventually(lambda: count_points(influxd, database, field="rtt") == requests)
    await eventually(lambda: app.writer.depth == 0)  # the last write's answer may still be on its way
    writes = influxd.write_requests() - before
    # A batch is two HTTP writes: its points, then its feed rows (another retention policy, another request).
    assert writes == 2 * app.writer.flushes, (writes, app.writer.flushes)
    assert app.writer.flushes <= requests // 10, app.writer.flushes


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(max_buffer=10, wal_dir="")
async def test_without_a_log_a_full_buffer_is_503_with_retry_after_and_nothing_buffered(http_client, base_url, app):
    app.writer._wake.clear()
    app.writer.flush_interval = 60  # nothing leaves the buffer during this test
    await asyncio.sleep(0)
    url = base_url + "/v1/stats/write/"
    status, body, _ = await post(http_client, url, [{"call": "a", "stats": {"rtt": i}} for i in range(8)])
    assert status == 200 and app.writer.depth == 10  # 8 samples + 1 presence point + its live feed row
    status, body, response = await post(http_client, url, [{"call": "a", "stats": {"rtt": i}} for i in range(2)])
    assert_error(status, body, 503, "buffer_full")
    assert int(response.headers["Retry-After"]) >= 1
    assert app.writer.depth == 10


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(max_buffer=50)
async def test_with_the_log_points_beyond_memory_wait_on_disk_and_all_arrive(http_client, base_url, app, influxd,
                                                                             database):
    """Memory holds --max-buffer points; the rest are read back from the log as the writer drains."""
    gate = asyncio.Event()  # InfluxDB "slow": no write completes until the test opens it
    write = app.writer._write

    async def held(data):
        await gate.wait()
        await write(data)

    app.writer._write = held
    app.writer.batch_size = 30
    url = base_url + "/v1/stats/write/"
    ts = now_ms()
    for request in range(20):
        status, body, _ = await post(http_client, url, [{"call": "big", "ts": ts + request * 100 + i,
                                                         "stats": {"rtt": i}} for i in range(20)])
        assert status == 200, body
    assert app.writer.depth == 20 * 22
    assert app.writer.in_memory <= 50
    assert app.writer.wal.unread_points == 20 * 22 - app.writer.in_memory
    gate.set()
    await eventually(lambda: app.writer.depth == 0, timeout=30)
    assert count_points(influxd, database, field="rtt") == 400
    assert app.writer.flushes >= 14  # memory was refilled from the log, 50 points at most at a time


@pytest.mark.gen_test(timeout=90)
async def test_acknowledged_samples_survive_an_influxdb_outage(http_client, start_server, own_influxd, tmp_path):
    """While InfluxDB is down ingest keeps acknowledging; when it is back everything arrives once."""
    influxd = own_influxd
    application = await start_server(influxdb_url=influxd.url, database="outage", flush_interval=0.1,
                                      spool_dir=str(tmp_path / "spool"))
    application.writer.retry_max = 0.5
    await application.store.setup()
    url = application.base_url + "/v1/stats/write/"
    ts = now_ms()
    status, _, _ = await post(http_client, url, [{"call": "o", "ts": ts + i, "stats": {"rtt": i}} for i in range(50)])
    assert status == 200
    await eventually(lambda: count_points(influxd, "outage", field="rtt") == 50)
    influxd.stop()
    for batch in range(5):
        status, body, _ = await post(http_client, url, [
            {"call": "o", "ts": ts + 1000 + batch * 100 + i, "stats": {"rtt": i}} for i in range(100)])
        assert status == 200, body
    await eventually(lambda: application.writer.failures >= 2)
    assert application.writer.depth >= 500
    influxd.start()
    await eventually(lambda: application.writer.depth == 0, timeout=30)
    await eventually(lambda: count_points(influxd, "outage", field="rtt") == 550, timeout=10)
    await asyncio.sleep(0.5)
    assert count_points(influxd, "outage", field="rtt") == 550


@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(wal_fsync="always")
async def test_fsync_always_answers_after_a_shared_fsync(http_client, base_url, app, influxd, database):
    url = base_url + "/v1/stats/write/"
    ts = now_ms()
    results = await asyncio.gather(*[post(http_client, url, {"call": "sync", "ts": ts + i, "stats": {"rtt": i}})
                                     for i in range(40)])
    assert [status for status, _, _ in results] == [200] * 40
    assert app.writer.wal._synced == app.writer.wal._appended == 40
    assert app.writer.wal.fsyncs < 40  # concurrent requests shared fsyncs
    await eventually(lambda: count_points(influxd, database, field="rtt") == 40)


@pytest.mark.parametrize("message, expected", [
    # InfluxDB 1.6's answers, as tests/storage/test_durability.py gets them from a real influxd
    ('partial write: field type conflict: input field "v" on measurement "m" is type float, '
     'already exists as type integer dropped=1', ("type_conflict", 1)),
    ("partial write: max-series-per-database limit exceeded: (5) dropped=16", ("max_series", 16)),
    ('partial write: max-values-per-tag limit exceeded (3/3): measurement="m" tag="c" value="s3" dropped=1',
     ("max_values_per_tag", 1)),
    ("unable to parse 'rtc_stats,call=x seq=': missing field value", ("other", None)),
])
def test_refusals_are_classified_from_influxdbs_answer(message, expected):
    assert classify_refusal(f"Error writing data (400 - Bad Request): {message}") == expected
