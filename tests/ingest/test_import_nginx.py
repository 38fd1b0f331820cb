"""Importing a dump through conf/nginx.conf as shipped: a body above the
ingest limit of nginx reaches the server, streamed, and the answers stay
the server's JSON."""
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.data import dumps

pytestmark = pytest.mark.nginx


def post_dump(url, call, body):
    request = urllib.request.Request(f"{url}/v1/import/webrtc-internals?call={call}", data=body, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_dump_above_nginx_ingest_limit_is_imported_through_it(deployment):
    nginx, _, _ = deployment
    base = dumps.load(dumps.AUDIO_VIDEO)
    last = time.time() * 1000 - 60_000
    body = json.dumps(dumps.long_dump(base, 1000, 2, last)).encode()
    assert len(body) > 4 << 20  # above the 2 MiB nginx takes elsewhere
    status, answer = post_dump(nginx.url, "through-nginx", body)
    assert status == 200, answer
    assert answer["peers"] == ["0-1", "1-1"] and answer["to"] == int(last + 0.5)
    status, answer = post_dump(nginx.url, "broken", b'{"PeerConnections": ')
    assert status == 400 and "not valid JSON" in answer["error"]["message"]
