"""/rtcstats/ through conf/nginx.conf as shipped, in front of two server processes:
a session's reconnects reach the process that holds its delta state."""
import pytest

from tests.support.metrics import metric
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import RtcstatsClient

pytestmark = pytest.mark.nginx


def connections(servers):
    return [metric(server, "rtcscope_rtcstats_connections") for server in servers]


@pytest.mark.gen_test(timeout=120)
async def test_reconnects_reach_the_same_process(deployment):
    nginx, servers, _ = deployment
    homes = {}
    for number in range(12):
        session = f"nginx-session-{number}"
        # Both forms of the endpoint: with a trailing slash, and with a (here unchecked) key on it.
        endpoint = "/rtcstats/" if number % 2 else "/rtcstats?key=k1"
        client = RtcstatsClient(nginx.url, session, meeting="via-nginx", endpoint=endpoint)
        assert await client.connect() == 0
        await client.getstats(1, 10)
        assert await client.acked(1) == 1
        counts = connections(servers)
        assert sorted(counts) == [0, 1], counts
        homes[session] = counts.index(1)
        for sn in (2, 3):
            client.drop()
            await eventually(lambda: connections(servers) == [0, 0], timeout=10)
            client = RtcstatsClient(nginx.url, session, meeting="via-nginx", reconnect=True, endpoint=endpoint)
            # The process it reached holds the session: it knows the last entry, and the delta applies.
            assert await client.connect() == sn - 1
            assert connections(servers)[homes[session]] == 1
            await client.entry("getstats", "PC_0", {"OT01A": {"packetsSent": 10 * sn}, "RI01A": {},
                                                    "timestamp": now_ms()}, sn)
            assert await client.acked(sn) == sn
        client.connection.close(3001)
        await client.closed()
    # The sessions are spread over both processes, in both forms.
    assert {homes[f"nginx-session-{n}"] for n in range(0, 12, 2)} == {0, 1}
    assert {homes[f"nginx-session-{n}"] for n in range(1, 12, 2)} == {0, 1}
    assert sum(metric(server, "rtcscope_rtcstats_stats_incomplete_total") for server in servers) == 0
