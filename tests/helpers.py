"""Small helpers the tests share: real HTTP requests and waiting on InfluxDB."""
import asyncio
import json
import os
import pathlib
import time

from tornado.httpclient import HTTPRequest

# Real Chromium getStats() output, shared with the contract (RTCSCOPE_FIXTURE: where it is, when elsewhere).
CHROMIUM_FIXTURE = pathlib.Path(os.environ.get("RTCSCOPE_FIXTURE") or pathlib.Path(__file__).resolve().parents[2]
                                / "shared" / "fixtures" / "chromium-loopback-audio-video.json")


async def post(http_client, url, body, content_type="application/json", headers=None):
    """POST and return (status, decoded JSON body, response)."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    request = HTTPRequest(url, method="POST", body=body,
                          headers={"Content-Type": content_type, **(headers or {})})
    response = await http_client.fetch(request, raise_error=False)
    return response.code, _json(response), response


async def get(http_client, url, headers=None):
    response = await http_client.fetch(url, raise_error=False, headers=headers)
    return response.code, _json(response), response


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


def _json(response):
    try:
        return json.loads(response.body)
    except (TypeError, ValueError):
        return None


async def eventually(check, timeout=10.0, interval=0.05):
    """Await until `check()` returns a truthy value; return it, or fail with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


def count_points(influxd, database, measurement="rtc_stats", field=None):
    """Points in a measurement: all rows, or (cheaper for big counts) those with `field`."""
    if field is None:
        return len(influxd.rows(f'SELECT * FROM "{measurement}" WHERE time > 0', database))
    rows = influxd.rows(f'SELECT count("{field}") FROM "{measurement}" WHERE time > 0', database)
    return rows[0]["count"] if rows else 0


def assert_error(status, document, expected_status, code=None):
    assert status == expected_status, document
    assert set(document) == {"error"}, document
    assert isinstance(document["error"]["message"], str) and document["error"]["message"]
    if code:
        assert document["error"]["code"] == code, document


def high_rtt_rules(hold="1s"):
    """An alert rules file (TOML) with one rule: rtt above 400 ms held for `hold`."""
    return f"""
[[rule]]
name = "high_rtt"
metric = "rtt"
op = ">"
threshold = 400
for = "{hold}"
severity = "critical"
"""
