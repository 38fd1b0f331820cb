"""Samples as clients send them: times on the server's clock, request-sized groups."""
import time


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
