"""Graceful under load: with 500 live-graph viewers connected and InfluxDB
answering slowly (a delaying proxy in between), ingest still answers every
request with 200 and every viewer still gets the live updates."""
import asyncio
import json

import pytest

from tests.support.api import get
from tests.support.influxd import SlowProxy, count_points
from tests.support.processes import ServerProcess
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import Viewer

pytestmark = pytest.mark.slow

VIEWERS = 500
DELAY_SECONDS = 0.25


@pytest.mark.gen_test(timeout=240)
async def test_ingest_answers_with_500_viewers_and_a_slow_influxdb(influxd, tmp_path, http_client):
    proxy = await SlowProxy(influxd.http_port, DELAY_SECONDS).start()
    database = "load"
    server = ServerProcess(str(tmp_path), influxdb_url=f"http://127.0.0.1:{proxy.port}", database=database,
                           spool_dir=tmp_path / "spool", flush_interval="0.2s", tick="0.5s", call_timeout="30s")
    await asyncio.get_running_loop().run_in_executor(None, server.start)
    viewers = []
    try:
        await eventually(lambda: _ready(http_client, server.url), timeout=30, interval=0.2)
        for start in range(0, VIEWERS, 50):  # connect in waves, as pages reconnecting after a deploy would
            viewers += await asyncio.gather(*[Viewer.open(server.url, "/ws/graph/rtt", origin=server.url)
                                              for _ in range(start, min(start + 50, VIEWERS))])
        await asyncio.gather(*[viewer.next("snapshot", timeout=60) for viewer in viewers])
        status, body, _ = await get(http_client, server.url + "/metrics")
        assert status == 200

        call, first = f"load-{now_ms()}", now_ms() - 1000
        statuses = []

        async def client(worker):
            for i in range(10):
                samples = [{"call": call, "peer": f"p{worker}", "ts": first + i * 10 + n, "stats": {"rtt": 20.0 + n}}
                           for n in range(10)]
                response = await http_client.fetch(server.url + "/v1/stats/write/", method="POST",
                                                   body=json.dumps(samples), raise_error=False,
                                                   request_timeout=60)
                statuses.append(response.code)

        await asyncio.gather(*[client(worker) for worker in range(10)])
        assert statuses == [200] * 100

        await asyncio.gather(*[viewer.next("call_started", call, timeout=90) for viewer in viewers])
        await asyncio.gather(*[viewer.next("points", call, timeout=90) for viewer in viewers])
        assert all(viewer.connection.close_code is None for viewer in viewers)
        status, body, _ = await get(http_client, server.url + "/healthz")
        assert (status, body) == (200, {"status": "ok"})
        await eventually(lambda: count_points(influxd, database, field="rtt") == 1000, timeout=60, interval=0.5)
        assert proxy.connections > 0  # the server really went through the slow path
    finally:
        for viewer in viewers:
            viewer.close()
        server.stop()
        await proxy.close()
    assert server.process.returncode == 0, server.log()[-3000:]


async def _ready(http_client, url):
    status, _, _ = await get(http_client, url + "/readyz")
    return status == 200
