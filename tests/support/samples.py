"""Samples as clients send them: times on the server's clock, request-sized groups, calls of a
given quality, sent to the server under test."""
import time

from tests.support.api import post
from tests.support.waits import eventually

# An in-process server that follows hundreds of calls from one address, its ticks run by the test.
FLEET = {"tick": 3600.0, "call_timeout": 3.0, "max_new_calls": 100_000}


def now_ms():
    return int(time.time() * 1000)


def split_by_call(samples, calls_per_request=10):
    """JSON samples in request-sized groups, each call's samples in their order:
    the server takes at most --max-calls-per-request (10 by default) distinct
    calls per request."""
    by_call = {}
    for item in samples:
        by_call.setdefault(item["call"], []).append(item)
    calls = list(by_call)
    return [[item for call in calls[start:start + calls_per_request] for item in by_call[call]]
            for start in range(0, len(calls), calls_per_request)]


async def send(http_client, base_url, body, flushed=None):
    """POST samples to /v1/stats/write/ (a list, in requests of at most ten calls; or one object) and
    check each answer is a 200; with `flushed` (an in-process server), until its writer has written them."""
    for request in split_by_call(body) if isinstance(body, list) else [body]:
        status, result, _ = await post(http_client, base_url + "/v1/stats/write/", request)
        assert status == 200, result
    if flushed is not None:
        await eventually(lambda: flushed.writer.depth == 0)


def call_samples(call, start, rtt, jitter, loss, peer="alice", count=6, step=1000):
    """`count` audio samples a second apart: rtt/jitter constant, packet counters that
    lose `loss` of what they carry (100 packets a sample)."""
    lost_each = round(100 * loss)
    return [{"call": call, "peer": peer, "kind": "audio", "ts": start + i * step,
             "stats": {"rtt": rtt, "jitter": jitter, "packetsLost": float(lost_each * i),
                       "packetsReceived": float((100 - lost_each) * i)}}
            for i in range(count)]
