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


async def first_connection(nginx, servers, session, endpoint):
    """A new session's first report through nginx: the client, and the index of the process it reached."""
    client = RtcstatsClient(nginx.url, session, meeting="via-nginx", endpoint=endpoint)
    assert await client.connect() == 0
    await client.getstats(1, 10)
    assert await client.acked(1) == 1
    counts = connections(servers)
    assert sorted(counts) == [0, 1], counts
    return client, counts.index(1)


async def close(client, servers):
    client.connection.close(3001)
    await client.closed()
    await eventually(lambda: connections(servers) == [0, 0], timeout=10)


# Both forms of the endpoint: with a trailing slash, and with a (here unchecked) key on it.
ENDPOINTS = ("/rtcstats?key=k1", "/rtcstats/")


@pytest.mark.gen_test(timeout=180)
async def test_reconnects_reach_the_same_process(deployment):
    nginx, servers, _ = deployment
    for number in range(8):
        session = f"nginx-session-{number}"
        endpoint = ENDPOINTS[number % 2]
        client, home = await first_connection(nginx, servers, session, endpoint)
        for sn in (2, 3):
            client.drop()
            await eventually(lambda: connections(servers) == [0, 0], timeout=10)
            client = RtcstatsClient(nginx.url, session, meeting="via-nginx", reconnect=True, endpoint=endpoint)
            # The process it reached holds the session: it knows the last entry, and the delta applies.
            assert await client.connect() == sn - 1
            assert connections(servers)[home] == 1
            await client.entry("getstats", "PC_0", {"OT01A": {"packetsSent": 10 * sn}, "RI01A": {},
                                                    "timestamp": now_ms()}, sn)
            assert await client.acked(sn) == sn
        await close(client, servers)
    # Sessions are spread over both processes, in both forms. Where a session goes depends on the hash
    # of its id over the processes' addresses (new ports each run): up to 24 sessions a form make the
    # chance of seeing one process only under one in 10,000 with an even split, and small with an uneven one.
    for form, endpoint in enumerate(ENDPOINTS):
        homes = set()
        for number in range(24):
            client, home = await first_connection(nginx, servers, f"spread-{form}-{number}", endpoint)
            await close(client, servers)
            homes.add(home)
            if homes == {0, 1}:
                break
        assert homes == {0, 1}, endpoint
    assert sum(metric(server, "rtcscope_rtcstats_stats_incomplete_total") for server in servers) == 0
