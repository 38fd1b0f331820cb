"""/rtcstats/<meeting> against real servers and a real influxd, with a real
websocket client that speaks as @jitsi/rtcstats 9.7.1 does (trace-ws.js)."""
import asyncio
import json

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

from rtcscope.ingest.rtcstats import PROTOCOL
from tests.support.api import get
from tests.support.metrics import exposed
from tests.support.processes import ServerProcess
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import RtcstatsClient, Viewer

SECRETS = ("Alice Example", "alice@example.com", "LOCAL-ID-7", "UNIQUE-MEETING-9", "198.51.100.4")


def rows(influxd, database, measurement, where="time > 0"):
    return influxd.rows(f'SELECT * FROM "{measurement}" WHERE {where}', database)


def stored_sequence(influxd, database, session):
    return [int(row["sn"]) for row in rows(influxd, database, "rtc_rtcstats_sessions", f"session = '{session}'")]


async def join(client, sent=(10, 20, 30)):
    """Identity, then one getstats per value: sequence numbers 1..len(sent)+1, all acknowledged."""
    assert await client.connect() == 0
    await client.identity(1, confName="standup", endpointId="ep1", displayName=SECRETS[0], email=SECRETS[1],
                          localId=SECRETS[2], meetingUniqueId=SECRETS[3], p2p={"iceServers": [{"urls": SECRETS[4]}]})
    for sn, value in enumerate(sent, 2):
        await client.getstats(sn, value)
    assert await client.acked(len(sent) + 1) == len(sent) + 1


@pytest.mark.gen_test(timeout=60)
async def test_a_session_is_stored_as_its_call_and_endpoint(http_client, base_url, app, influxd, database):
    """A trailing slash in the configured endpoint gives `//`: accepted."""
    client = RtcstatsClient(base_url, "s-one", meeting="standup", endpoint="/rtcstats/")
    assert "/rtcstats//standup?" in client.url
    await join(client)
    assert [m["body"]["value"] for m in client.messages] == [0, 1, 2, 3, 4]
    await eventually(lambda: len(rows(influxd, database, "rtc_stats")) == 3)
    samples = rows(influxd, database, "rtc_stats")
    assert {(row["call"], row["peer"], row["kind"]) for row in samples} == {("standup", "ep1", "audio")}
    assert sorted(row["packetsSent"] for row in samples) == [10, 20, 30]
    assert {row["rtt"] for row in samples} == {40.0}
    await eventually(lambda: stored_sequence(influxd, database, "s-one") == [2, 3, 4])
    status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=live")
    assert status == 200 and [(c["call"], c["peers"]) for c in listed["calls"]] == [("standup", ["ep1"])]
    # Nothing else of identity is anywhere in the database.
    everything = json.dumps([rows(influxd, database, m["name"]) for m in
                             influxd.rows("SHOW MEASUREMENTS", database)])
    everything += json.dumps(influxd.query("SHOW TAG VALUES WITH KEY =~ /.*/", database))
    for secret in SECRETS:
        assert secret not in everything


@pytest.mark.gen_test(timeout=60)
async def test_a_reconnect_continues_where_storage_stopped(http_client, base_url, app, influxd, database):
    client = RtcstatsClient(base_url, "s-two")
    await join(client)
    client.drop()
    await eventually(lambda: rows(influxd, database, "rtc_events"))
    [marker] = rows(influxd, database, "rtc_events")
    assert (marker["call"], marker["peer"], marker["reason"], marker.get("end"), marker.get("at")) == (
        "standup", "ep1", 3.0, None, None)
    again = RtcstatsClient(base_url, "s-two", reconnect=True)
    assert await again.connect() == 4
    # The client resends what it still holds (its buffer was trimmed to 3); 4 is a duplicate.
    for sn, value in ((4, 30), (5, 40), (6, 50)):
        await again.getstats(sn, value)
    assert await again.acked(6) == 6
    await eventually(lambda: len(stored_sequence(influxd, database, "s-two")) == 5)
    assert stored_sequence(influxd, database, "s-two") == [2, 3, 4, 5, 6]
    assert sorted(row["packetsSent"] for row in rows(influxd, database, "rtc_stats")) == [10, 20, 30, 40, 50]
    status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=live")
    assert [c["call"] for c in listed["calls"]] == ["standup"]  # the marker did not end it


@pytest.mark.gen_test(timeout=60)
async def test_a_reconnect_to_a_restarted_process(http_client, start_server, app_config, influxd, database):
    first = await start_server(**app_config)
    client = RtcstatsClient(first.base_url, "s-three")
    await join(client)
    await eventually(lambda: stored_sequence(influxd, database, "s-three") == [2, 3, 4])
    client.drop()
    second = await start_server(**app_config)  # another process, or this one restarted: no state in memory
    again = RtcstatsClient(second.base_url, "s-three", reconnect=True)
    assert await again.connect() == 4
    # Its delta state is gone: a report with its type is still taken, under the same call and peer.
    # Resent entries keep their own time, beyond --max-skew (5 min) up to 15 minutes old.
    old = now_ms() - 8 * 60_000
    await again.getstats(5, 40, ts=old)
    await again.entry("getstats", "PC_0", {"OT01A": {"packetsSent": 50}, "RI01A": {}, "timestamp": now_ms()}, 6)
    await again.getstats(7, 60, ts=now_ms() - 16 * 60_000)  # too old: dropped, still acknowledged
    assert await again.acked(7) == 7
    await eventually(lambda: len(rows(influxd, database, "rtc_stats")) == 5)
    assert {(row["call"], row["peer"]) for row in rows(influxd, database, "rtc_stats")} == {("standup", "ep1")}
    [resent] = [row for row in rows(influxd, database, "rtc_stats") if row["packetsSent"] == 40]
    assert abs(resent["time"] - old) < 1000  # the stored clock offset of the session: the client's is right here
    assert stored_sequence(influxd, database, "s-three") == [2, 3, 4, 5, 6]  # 7 stored nothing


@pytest.mark.gen_test(timeout=60)
async def test_leaving_the_conference_ends_the_peer_at_once(http_client, base_url, app, influxd, database):
    client = RtcstatsClient(base_url, "s-four")
    await join(client)
    client.connection.close(3001)
    await eventually(lambda: rows(influxd, database, "rtc_events"))
    [end] = rows(influxd, database, "rtc_events")
    assert (end["end"], end["reason"], end["detail"]) == (1.0, 1.0, 3.0)

    async def ended():
        status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=ended")
        return [c["call"] for c in listed["calls"]] == ["standup"]
    await eventually(ended, timeout=2)  # well within --call-timeout (3 s here)


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_a_dropped_peer_ends_as_disconnect_after_the_call_timeout(http_client, base_url, app, influxd, database):
    graph = await Viewer.open(base_url, "/ws/graph/rtt", origin=base_url)
    calls = await Viewer.open(base_url, "/ws/calls", origin=base_url)
    await graph.next("snapshot")
    client = RtcstatsClient(base_url, "s-five")
    await join(client)
    await graph.next("call_started", "standup")
    dropped_at = now_ms()
    client.drop()
    await eventually(lambda: rows(influxd, database, "rtc_events"))
    assert rows(influxd, database, "rtc_events")[0]["reason"] == 3.0

    async def state():
        status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=all")
        return {c["call"]: c["state"] for c in listed["calls"]}
    assert (await state()) == {"standup": "live"}
    _, ended = await graph.next("call_ended", "standup")
    assert now_ms() - dropped_at >= 2500  # --call-timeout is 3 s here, counted from the marker
    last_sample = max(row["time"] for row in rows(influxd, database, "rtc_stats"))
    assert ended == {"type": "call_ended", "call": "standup", "at": last_sample, "reason": "disconnect"}
    status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=ended")
    assert [(c["call"], c["ended"], c["end_reason"], c["end_detail"]) for c in listed["calls"]] == [
        ("standup", last_sample, "disconnect", None)]
    status, summary, _ = await get(http_client, base_url + "/v1/calls/standup/")
    assert (status, summary["end_reason"]) == (200, "disconnect")
    _, message = await calls.next("calls")
    while not message["ended"]:
        _, message = await calls.next("calls", after=calls.messages.index(message) + 1)
    assert message["ended"] == [{"call": "standup", "at": last_sample, "reason": "disconnect"}]
    graph.close()
    calls.close()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_a_reconnect_within_the_call_timeout_keeps_the_peer_live(http_client, base_url, app, influxd, database):
    graph = await Viewer.open(base_url, "/ws/graph/rtt", origin=base_url)
    await graph.next("snapshot")
    client = RtcstatsClient(base_url, "s-eight")
    await join(client)
    await graph.next("call_started", "standup")
    client.drop()
    await eventually(lambda: rows(influxd, database, "rtc_events"))
    await asyncio.sleep(1.5)
    again = RtcstatsClient(base_url, "s-eight", reconnect=True)
    assert await again.connect() == 4
    for sn in range(5, 15):  # 5 s of stats: past --call-timeout (3 s) after the marker
        await again.getstats(sn, sn * 10, ts=now_ms())
        assert await again.acked(sn) == sn
        await asyncio.sleep(0.5)
    status, listed, _ = await get(http_client, base_url + "/v1/calls/?state=all")
    assert [(c["call"], c["state"], c["end_reason"]) for c in listed["calls"]] == [("standup", "live", None)]
    assert graph.events("standup")[1:] == []  # started once, never ended
    graph.close()


@pytest.mark.gen_test(timeout=30)
async def test_legacy_and_unknown_protocols_are_refused_with_a_reason(http_server, base_url):
    for protocol in ("3.1_LEGACY", "2.0_STANDARD"):
        client = RtcstatsClient(base_url, "s-six", protocol=protocol)
        client.connection = await websocket_connect(client.url, subprotocols=[protocol])
        code, reason = await client.closed()
        assert code == 3002 and protocol in reason and PROTOCOL in reason, (code, reason)


@pytest.mark.gen_test(timeout=30)
async def test_bad_messages_are_dropped_and_counted_without_closing(http_client, base_url, app, influxd, database):
    client = RtcstatsClient(base_url, "s-seven")
    assert await client.connect() == 0
    for bad in ("{nope", json.dumps({"type": "stats-entry", "data": "[1]"}), json.dumps({"type": "what"})):
        await client.send(bad)
    await client.send(json.dumps({"statsSessionId": "s-seven", "type": "keepalive"}))
    await client.getstats(1, 10)
    assert await client.acked(1) == 1
    status, _, response = await get(http_client, base_url + "/metrics")
    text = response.body.decode()
    for reason in ("invalid_json", "invalid_entry", "unknown_type"):
        assert exposed(text, "rtcscope_rtcstats_dropped_total", reason=reason) == 1, reason
    assert exposed(text, "rtcscope_rtcstats_messages_total") == 5
    assert exposed(text, "rtcscope_rtcstats_connections") == 1


@pytest.mark.gen_test(timeout=30)
async def test_ingest_keys_and_origins_apply(http_client, start_server, app_config, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("k-123\n")
    application = await start_server(**{**app_config, "ingest_keys": str(keys),
                                         "cors_origins": ["https://meet.example"]})
    for query, origin, status in (("", "https://meet.example", 401), ("&key=wrong", "https://meet.example", 403),
                                  ("&key=k-123", "https://evil.example", 403)):
        with pytest.raises(HTTPClientError) as refused:
            await RtcstatsClient(application.base_url, "s-eight", query=query, origin=origin).connect()
        assert refused.value.code == status, (query, origin)
    client = RtcstatsClient(application.base_url, "s-eight", query="&key=k-123", origin="https://meet.example")
    assert await client.connect() == 0
    # The read token guards reading, not ingest: the endpoint stays open with one configured.
    guarded = await start_server(**{**app_config, "read_token": "reader-secret"})
    assert await RtcstatsClient(guarded.base_url, "s-eight-r", endpoint="/rtcstats/").connect() == 0
    assert await RtcstatsClient(guarded.base_url, "s-eight-s", endpoint="/rtcstats?key=x").connect() == 0
    # The key on the configured endpoint itself: the client appends /<meeting>?statsSessionId=.. after it.
    client = RtcstatsClient(application.base_url, "s-eight-b", endpoint="/rtcstats?key=k-123", meeting="keyed room")
    assert "/rtcstats?key=k-123/keyed%20room?statsSessionId=s-eight-b&" in client.url
    assert await client.connect() == 0
    await client.getstats(1, 10)
    assert await client.acked(1) == 1
    assert application.rtcstats_sessions.by_id["s-eight-b"].call == "keyed-room"
    with pytest.raises(HTTPClientError) as refused:
        await RtcstatsClient(application.base_url, "s-eight-c", endpoint="/rtcstats?key=nope").connect()
    assert refused.value.code == 403


@pytest.mark.slow
@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(influxdb_url="http://127.0.0.1:9")
async def test_a_full_log_acknowledges_nothing_more_and_asks_for_a_reconnect(http_server, base_url, app):
    """With InfluxDB away the write-ahead log fills: the entry that does not
    fit is not acknowledged, the client is told to come back, and it is taken then."""
    wal = app.writer.wal
    empty = wal.size
    client = RtcstatsClient(base_url, "s-nine")
    assert await client.connect() == 0
    await client.getstats(1, 10)  # three points (sample, presence, session): one record
    assert await client.acked(1) == 1
    wal.max_bytes = wal.size + (wal.size - empty) * 3 // 2  # room for one more entry's record, not two
    await client.getstats(2, 20)
    await client.getstats(3, 30)
    assert await client.acked(2) == 2
    code, reason = await client.closed()
    assert code == 1013 and "log is full" in reason
    assert [m["body"]["value"] for m in client.messages] == [0, 1, 2]
    wal.max_bytes = 1024 ** 2
    again = RtcstatsClient(base_url, "s-nine", reconnect=True)
    assert await again.connect() == 2
    await again.getstats(3, 30)
    assert await again.acked(3) == 3


@pytest.mark.gen_test(timeout=30)
@pytest.mark.app_config(max_new_calls=1)
async def test_the_new_call_limit_applies(http_server, base_url, app):
    """One client, one new call a minute here: a second conference's entries are not taken."""
    client = RtcstatsClient(base_url, "s-ten", meeting="first-room")
    assert await client.connect() == 0
    await client.getstats(1, 10)
    assert await client.acked(1) == 1
    other = RtcstatsClient(base_url, "s-eleven", meeting="second-room")
    assert await other.connect() == 0
    await other.getstats(1, 10)
    code, reason = await other.closed()
    assert code == 1013 and "new calls" in reason, (code, reason)
    assert [m["body"]["value"] for m in other.messages] == [0]  # nothing acknowledged
    await client.getstats(2, 20)  # the call already admitted carries on
    assert await client.acked(2) == 2


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_a_server_that_stops_sends_its_clients_elsewhere_and_loses_nothing(influxd, database, tmp_path):
    """SIGTERM: the clients are told 1012 (they reconnect, with the same session), what they
    sent is stored, and the next process carries on from the stored sequence number."""
    options = {"influxdb_url": influxd.url, "database": database, "spool_dir": tmp_path / "spool",
               "flush_interval": "0.1s", "tick": "0.2s"}
    first = ServerProcess(str(tmp_path), **options).start()
    try:
        client = RtcstatsClient(first.url, "s-twelve")
        await join(client)
        first.stop()
        assert first.process.returncode == 0, first.log()
        code, reason = await client.closed()
        assert code == 1012 and "restarting" in reason
    finally:
        first.stop()
    assert stored_sequence(influxd, database, "s-twelve") == [2, 3, 4]
    second = ServerProcess(str(tmp_path), **options).start()
    try:
        again = RtcstatsClient(second.url, "s-twelve", reconnect=True)
        assert await again.connect() == 4
    finally:
        second.stop()
