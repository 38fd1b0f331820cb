"""The ended-call list across real server processes on one InfluxDB: a process started
after calls ended lists them as the one that saw them end does, from its own memory,
and both list the calls that end afterwards alike."""
import json
import time
import urllib.request

import pytest

from tests.support.metrics import metric
from tests.support.waits import wait

pytestmark = pytest.mark.slow

# A short tick, flush and call timeout: calls end and are summarised within seconds.
OPTIONS = {"tick": "0.2s", "flush_interval": "0.1s", "call_timeout": "2s"}


def post(server, body):
    request = urllib.request.Request(server.url + "/v1/stats/write/", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def run_calls(server, calls):
    """Each call sends samples for 3 s (rtt as given), then ends with the reason given (None: it times out)."""
    start = int(time.time() * 1000) - 3000
    post(server, [{"call": call, "peer": peer, "kind": "audio", "ts": start + i * 1000,
                   "stats": {"rtt": rtt, "jitter": 5.0, "packetsLost": 0.0, "packetsReceived": 100.0 * i}}
                  for call, (rtt, _) in calls.items() for peer in ("alice", "bob") for i in range(4)])
    wait(lambda: set(calls) <= {c["call"] for c in server.get_json("/v1/calls/?state=live")[1]["calls"]}, 30)
    post(server, [{"call": call, "event": "end", "reason": reason} for call, (_, reason) in calls.items() if reason])


def ended_list(server, query="state=ended&sort=worst"):
    status, document = server.get_json("/v1/calls/?" + query)
    assert status == 200, document
    return document


def summarised(server, calls):
    """Every one of `calls` listed as ended with its summary's quality."""
    listed = {c["call"]: c for c in ended_list(server)["calls"]}
    return set(calls) <= set(listed) and all(listed[call]["quality"] for call in calls)


def test_a_process_started_later_lists_the_same_ended_calls(servers):
    one = servers("one", **OPTIONS)
    early = {"r-good": (40.0, "leave"), "r-slow": (800.0, "stop"), "r-quiet": (60.0, None)}
    run_calls(one, early)
    wait(lambda: summarised(one, early), 60)

    two = servers("two", **OPTIONS)
    wait(lambda: metric(two, "rtcscope_ended_calls_ready") == 1, 60)
    assert metric(two, "rtcscope_ended_calls") == len(early)  # its load found what ended before it started
    first = ended_list(one)
    assert first == ended_list(two)
    assert [c["call"] for c in first["calls"]] == ["r-slow", "r-quiet", "r-good"]  # worst first: rtt 800, 60, 40
    assert {c["call"]: (c["end_reason"], c["end_detail"]) for c in first["calls"]} == {
        "r-good": ("explicit", "leave"), "r-slow": ("explicit", "stop"), "r-quiet": ("timeout", None)}
    assert all(c["peers"] == ["alice", "bob"] for c in first["calls"])

    late = {"r-late": (120.0, "pagehide")}
    run_calls(two, late)
    wait(lambda: summarised(one, late) and summarised(two, late), 60)
    for query in ("state=ended&sort=worst", "state=ended&sort=recent&limit=2", "state=all&q=r-"):
        assert ended_list(one, query) == ended_list(two, query)
    assert metric(one, "rtcscope_ended_calls") == metric(two, "rtcscope_ended_calls") == 4
