"""Call ids with `:`, `@`, `{`, `}` in every URL, %-encoded or not (SPEC §12c)."""
import pytest

from tests.support.api import assert_error, get, post
from tests.support.samples import now_ms
from tests.support.waits import eventually

CALLS = {"room:1": ("room%3A1", "room:1"), "a@b{c}": ("a%40b%7Bc%7D", "a@b{c}")}


@pytest.mark.gen_test(timeout=30)
async def test_call_ids_work_encoded_or_not_in_the_api_and_the_pages(http_client, base_url, app):
    start = now_ms() - 3000
    body = [{"call": call, "peer": "p", "kind": "audio", "ts": start + i * 1000, "stats": {"rtt": 40.0 + i}}
            for call in CALLS for i in range(3)]
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200, result
    await eventually(lambda: app.writer.depth == 0)
    for call, spellings in CALLS.items():
        for spelled in spellings:
            status, summary, _ = await get(http_client, f"{base_url}/v1/calls/{spelled}/")
            assert status == 200, (spelled, summary)
            assert summary["call"] == call and summary["peers"] == ["p"]
            status, points, _ = await get(http_client, f"{base_url}/v1/stats/{spelled}/?type=rtt")
            assert status == 200 and [p["mean"] for p in points if p["mean"] is not None] == [40.0, 41.0, 42.0]
            response = await http_client.fetch(f"{base_url}/calls/{spelled}/", raise_error=False)
            assert response.code == 200 and response.headers["Content-Type"].startswith("text/html")
            assert call.encode() in response.body or spelled.encode() in response.body


@pytest.mark.gen_test(timeout=30)
async def test_ids_no_call_can_have_and_unknown_ones_are_404(http_client, base_url, app):
    for path in ("/v1/calls/a%20b/", "/v1/calls/%2E%2E%2Fx/", "/v1/stats/a%27b/?type=rtt", "/v1/calls/" + "x" * 129 + "/",
                 "/v1/calls/room%3A2/"):
        status, document, _ = await get(http_client, base_url + path)
        assert_error(status, document, 404, "not_found")
    response = await http_client.fetch(base_url + "/calls/a%20b/", raise_error=False)
    assert response.code == 404
