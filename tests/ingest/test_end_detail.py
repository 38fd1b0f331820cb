"""An end event's reason (pagehide, stop, leave): validated, stored, and the call's end_detail."""
import pytest

from tests.support.api import assert_error, get, post
from tests.support.samples import now_ms
from tests.support.waits import eventually

pytestmark = pytest.mark.app_config(call_timeout=30.0)


async def ended(http_client, base_url, call):
    async def check():
        _, listed, _ = await get(http_client, base_url + "/v1/calls/?state=ended")
        return [c for c in listed["calls"] if c["call"] == call]
    (found,) = await eventually(check)
    return found


@pytest.mark.gen_test(timeout=30)
async def test_the_clients_reason_is_kept_as_end_detail(http_client, base_url, app, influxd, database):
    url = base_url + "/v1/stats/write/"
    for call, reason in (("c-stop", "stop"), ("c-leave", "leave"), ("c-plain", None)):
        end = {"call": call, "peer": "alice", "event": "end"}
        if reason:
            end["reason"] = reason
        body = [{"call": call, "peer": "alice", "ts": now_ms() - 500, "stats": {"rtt": 20}}, end]
        status, result, _ = await post(http_client, url, body)
        assert status == 200, result
    assert (await ended(http_client, base_url, "c-stop"))["end_detail"] == "stop"
    leave = await ended(http_client, base_url, "c-leave")
    assert (leave["end_reason"], leave["end_detail"]) == ("explicit", "leave")
    plain = await ended(http_client, base_url, "c-plain")
    assert (plain["end_reason"], plain["end_detail"]) == ("explicit", None)
    rows = influxd.rows("SELECT * FROM rtc_events WHERE time > 0", database)
    assert sorted((row["call"], row["reason"], row["detail"]) for row in rows) == [
        ("c-leave", 1.0, 3.0), ("c-plain", 1.0, None), ("c-stop", 1.0, 2.0)]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("item", [
    {"call": "c", "peer": "a", "event": "end", "reason": "crashed"},
    {"call": "c", "peer": "a", "event": "end", "reason": 1},
    {"call": "c", "peer": "a", "stats": {"rtt": 1}, "reason": "stop"},
])
async def test_a_bad_reason_is_a_400_and_nothing_is_stored(http_client, base_url, app, influxd, database, item):
    body = [{"call": "c", "peer": "a", "stats": {"rtt": 20}}, item]
    status, document, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert_error(status, document, 400)
    assert "reason" in document["error"]["message"] and "index 1" in document["error"]["message"]
    assert app.writer.depth == 0
