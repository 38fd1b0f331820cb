"""The rtcstats protocol state machine (rtcscope/ingest/rtcstats.py), message by message.

Messages are shaped as @jitsi/rtcstats 9.7.1 sends them (trace-ws.js): a
stats-entry's `data` is a JSON string of [method, pc id, value, client time,
sequence number]; identity's `data` is the array itself."""
import json

import pytest

from rtcscope.dimensions.extract import Extractor
from rtcscope.ingest.formats import Limits
from rtcscope.ingest.rtcstats import (
    CONFERENCE_LEFT,
    DO_NOT_RECONNECT,
    MAX_AGE_MS,
    MAX_PEER_CONNECTIONS,
    PROTOCOL,
    Refused,
    Session,
    Stored,
    check_subprotocol,
    choose_subprotocol,
    connection_arguments,
    identifier,
)
from tests.support.reports import clean_reports, rtcstats_delta

SESSION = "0d3c5b8e-2f6a-4b41-9c9e-7a1f0e2d4c6b"
NOW = 1_795_536_000_000.0


def identity(sn, ts=NOW, **fields):
    return json.dumps({"statsSessionId": SESSION, "type": "identity", "data": ["identity", None, fields, ts, sn]})


def entry(method, pc_id, value, sn, ts=NOW):
    return json.dumps({"statsSessionId": SESSION, "type": "stats-entry",
                       "data": json.dumps([method, pc_id, value, ts, sn])})


def getstats(sn, sent, ts=NOW, pc_id="PC_0", rtt=0.05):
    return entry("getstats", pc_id, {
        "OT01A1": {"type": "outbound-rtp", "kind": "audio", "packetsSent": sent, "timestamp": 0},
        "RI01A1": {"type": "remote-inbound-rtp", "kind": "audio", "roundTripTime": rtt, "timestamp": 0},
        "timestamp": ts}, sn, ts)


def new_session(meeting="room", stored=None):
    return Session(SESSION, meeting, stored or Stored(), Limits(max_skew_ns=MAX_AGE_MS * 1_000_000))


def take(session, message, now=NOW):
    outcome = session.receive(message, now)
    session.commit(outcome)
    return outcome


def lines(outcome):
    return [line.decode() for line in outcome.lines]


def test_subprotocols():
    assert choose_subprotocol(["3.1_LEGACY", PROTOCOL]) == PROTOCOL
    check_subprotocol(PROTOCOL)
    for offered in (["3.1_LEGACY"], ["2.0_STANDARD"], []):
        with pytest.raises(Refused) as refused:
            check_subprotocol(choose_subprotocol(offered))
        assert refused.value.code == DO_NOT_RECONNECT
    with pytest.raises(Refused, match="rtcstatsUseLegacy"):
        check_subprotocol("3.1_LEGACY")


def test_identity_names_the_call_and_peer_and_nothing_else_is_kept():
    session = new_session("vpaas-magic/My Room")
    assert (session.call, session.peer) == ("vpaas-magic-My-Room", SESSION)
    outcome = take(session, identity(1, confName="team/daily standup", endpointId="a1b2c3d4",
                                     displayName="Alice Example", email="alice@example.com", localId="L-1",
                                     meetingUniqueId="M-1", iceServers=[{"urls": "turn:198.51.100.4"}]))
    assert outcome.lines == [] and outcome.dropped is None
    assert (session.call, session.peer, session.sn) == ("team-daily-standup", "a1b2c3d4", 1)
    # The meeting's unique id comes later, alone: the call does not split.
    take(session, identity(2, meetingUniqueId="M-2", confName="other"))
    assert session.call == "team-daily-standup"
    stored = "\n".join(lines(take(session, getstats(3, 10))))
    for secret in ("Alice", "alice@", "L-1", "M-1", "198.51.100.4"):
        assert secret not in stored
    assert identifier("x" * 200) == "x" * 128 and identifier("a b/c?d") == "a-b-c-d"


def test_without_identity_the_call_is_the_meeting_path():
    session = new_session("room:1@{x}")
    text = "\n".join(lines(take(session, getstats(1, 10))))
    assert f"call=room:1@{{x}},kind=audio,peer={SESSION} " in text
    assert new_session("").call == SESSION


def test_getstats_makes_samples_presence_and_the_session_point():
    session = new_session()
    take(session, identity(1, confName="room", endpointId="ep1"))
    outcome = take(session, getstats(2, 10, rtt=0.041))
    samples, presence, stored = lines(outcome)
    assert samples == f"rtc_stats,call=room,kind=audio,peer=ep1 packetsSent=10.0,rtt=41.0 {int(NOW) * 1_000_000}"
    assert presence.startswith("rtc_calls,call=room,peer=ep1 first=")
    assert stored == f"rtc_rtcstats_sessions,call=room,peer=ep1,session={SESSION} sn=2.0,offset=0.0 " \
                     f"{int(NOW) * 1_000_000}"
    # A delta: only what changed, the rest rebuilt from the held report.
    outcome = take(session, entry("getstats", "PC_0", {"OT01A1": {"packetsSent": 25}, "RI01A1": {},
                                                       "timestamp": NOW + 1000}, 3, NOW + 1000), now=NOW + 1000)
    assert lines(outcome)[0].startswith("rtc_stats,call=room,kind=audio,peer=ep1 packetsSent=25.0,rtt=41.0 ")


def test_entries_at_or_below_the_stored_number_are_duplicates():
    session = new_session(stored=Stored(sn=7, call="room", peer="ep1"))
    assert (session.call, session.peer, session.sn) == ("room", "ep1", 7)
    for sn in (6, 7):
        outcome = take(session, getstats(sn, 10))
        assert outcome.dropped == "duplicate" and outcome.lines == [] and outcome.sn is None
    assert take(session, getstats(8, 10)).lines
    assert session.sn == 8


def test_an_outcome_not_committed_changes_nothing():
    """A message the writer could not take is resent and applies to the same state."""
    session = new_session()
    take(session, getstats(1, 10))
    delta = entry("getstats", "PC_0", {"OT01A1": {"packetsSent": 30}, "RI01A1": {}, "timestamp": NOW}, 2)
    first = session.receive(delta, NOW + 50)
    assert session.sn == 1
    again = session.receive(delta, NOW + 50)
    assert again.lines == first.lines
    session.commit(again)
    assert session.sn == 2 and session.receive(delta, NOW + 60).dropped == "duplicate"


def test_times_are_corrected_by_the_clock_offset_and_old_entries_keep_theirs():
    session = new_session()
    slow = NOW - 3_600_000  # the client's clock is an hour behind
    take(session, identity(1, ts=slow, confName="room", endpointId="ep"))
    live = take(session, getstats(2, 10, ts=slow + 1000), now=NOW + 1000)
    assert lines(live)[0].endswith(f" {int(NOW + 1000) * 1_000_000}")
    # Resent after a reconnect: five minutes old, kept at its own (corrected) time.
    resent = take(session, getstats(3, 20, ts=slow + 2000), now=NOW + 302_000)
    assert lines(resent)[0].endswith(f" {int(NOW + 2000) * 1_000_000}")
    too_old = take(session, getstats(4, 30, ts=slow + 3000), now=NOW + 3000 + MAX_AGE_MS + 1)
    assert too_old.dropped == "too_old" and too_old.lines == [] and session.sn == 4


def test_the_peer_ends_when_all_its_peer_connections_closed():
    session = new_session()
    take(session, identity(1, confName="room", endpointId="ep"))
    assert take(session, entry("close", "PC_9", {}, 2)).lines == []  # one never seen, before anything was stored
    take(session, entry("create", "PC_0", {"iceServers": []}, 3))
    take(session, getstats(4, 10, pc_id="PC_1"))
    assert take(session, entry("close", "PC_0", {}, 5)).lines == []
    ended = take(session, entry("close", "PC_1", {}, 6, ts=NOW + 500), now=NOW + 500)
    end, _ = lines(ended)
    assert end == f"rtc_events,call=room,peer=ep end=1.0,at={float(int(NOW + 500))},reason=1.0,detail=4.0 " \
                  f"{int(NOW + 500) * 1_000_000}"
    assert session.ended and session.closed_lines(CONFERENCE_LEFT, NOW + 600) == []
    # A poll that resolved after its connection closed does not bring the peer back.
    late = take(session, getstats(7, 20, pc_id="PC_1"))
    assert late.lines == [] and late.dropped is None and session.ended and session.sn == 7


def test_a_closed_connection_stores_an_end_or_a_disconnect_marker():
    session = new_session()
    assert session.closed_lines(1006, NOW) == []  # nothing stored yet: nothing to end
    take(session, identity(1, confName="room", endpointId="ep"))
    take(session, getstats(2, 10))
    left = session.closed_lines(CONFERENCE_LEFT, NOW + 10)[0].decode()
    assert left.startswith("rtc_events,call=room,peer=ep end=1.0,") and ",reason=1.0,detail=3.0 " in left
    dropped = session.closed_lines(1006, NOW + 10)[0].decode()
    assert dropped == f"rtc_events,call=room,peer=ep reason=3.0,disconnected={float(int(NOW + 10))} " \
                      f"{int(NOW + 10) * 1_000_000}"
    assert "end=" not in dropped and "at=" not in dropped  # a marker, not an end


@pytest.mark.parametrize("message, reason", [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_message"),
    (json.dumps({"type": "hello"}), "unknown_type"),
    (json.dumps({"type": "stats-entry", "data": "[\"getstats\", \"PC_0\", {}, 1]"}), "invalid_entry"),
    (json.dumps({"type": "stats-entry", "data": "[\"getstats\", 5, {}, 1, 2]"}), "invalid_entry"),
    (json.dumps({"type": "stats-entry", "data": "[\"getstats\", \"PC_0\", {}, \"now\", 2]"}), "invalid_entry"),
    (json.dumps({"type": "stats-entry", "data": "{bad"}), "invalid_json"),
    (json.dumps({"type": "stats-entry", "data": json.dumps(["getstats", "PC_0", [1], NOW, 2])}), "bad_report"),
    (json.dumps({"type": "identity", "data": ["identity", None, "x", NOW, 2]}), "invalid_entry"),
])
def test_bad_messages_are_dropped_with_a_reason(message, reason):
    session = new_session()
    outcome = take(session, message)
    assert outcome.dropped == reason and outcome.lines == []


def test_keepalives_carry_no_sequence_number():
    session = new_session()
    outcome = take(session, json.dumps({"statsSessionId": SESSION, "type": "keepalive"}))
    assert outcome.sn is None and outcome.dropped is None and session.sn == 0


def test_connection_arguments_with_the_key_on_the_endpoint():
    plain = {"statsSessionId": [b"S1"], "isReconnect": [b"true"], "key": [b"K"]}
    assert connection_arguments("//room:1", plain) == ("room:1", {"statsSessionId": "S1", "isReconnect": "true",
                                                                   "key": "K"})
    # wss://HOST/rtcstats?key=K + "/my room?statsSessionId=S2&isReconnect=false", as the query parser reads it.
    swallowed = {"key": [b"K/my room?statsSessionId=S2"], "isReconnect": [b"false"]}
    assert connection_arguments("", swallowed) == ("my room", {"key": "K", "statsSessionId": "S2",
                                                               "isReconnect": "false"})


def test_a_session_opens_a_bounded_number_of_peer_connections():
    session = new_session()
    for number in range(MAX_PEER_CONNECTIONS):
        assert take(session, entry("create", f"PC_{number}", {}, number + 1)).dropped is None
    outcome = take(session, getstats(MAX_PEER_CONNECTIONS + 1, 10, pc_id="PC_extra"))
    assert outcome.dropped == "too_many_peer_connections" and outcome.lines == []
    assert take(session, getstats(MAX_PEER_CONNECTIONS + 2, 10, pc_id="PC_0")).lines  # those it has go on
    assert take(session, entry("create", "P" * 65, {}, MAX_PEER_CONNECTIONS + 3)).dropped == "too_many_peer_connections"


def test_the_peers_dimensions_are_read_again_only_when_its_reports_may_have_moved_them():
    """Reports that leave the route and codecs as they were give the same dimensions, a dict the
    live feed knows at once; Wi-Fi to cellular, then a relay, mid-call, are the next message's."""
    def local_candidates(report, **fields):
        return [{**stat, **fields} if stat["type"] == "local-candidate" else stat for stat in report]
    polls = clean_reports()["caller"][2:]  # one layout
    cellular = local_candidates(polls[-1], networkType="cellular")
    relayed = local_candidates(cellular, candidateType="relay", relayProtocol="tcp", url="turn-2.example.com:443")
    session = new_session()
    session.extractor, session.client = Extractor(), {"browser": "Firefox"}
    take(session, identity(1, confName="room", endpointId="ep", applicationName="Jitsi Meet"))
    found, previous = [], {}
    for sn, report in enumerate([*polls, cellular, relayed], start=2):
        stats = {stat["id"]: stat for stat in report}
        at = NOW + sn * 1000
        outcome = take(session, entry("getstats", "PC_0", rtcstats_delta(previous, stats), sn, at), now=at)
        found.append(outcome.dimensions[2])
        previous = stats
    *unchanged, on_cellular, on_relay = found
    assert all(dimensions is unchanged[0] for dimensions in unchanged)
    assert unchanged[0] == {"browser": "Firefox", "app": "Jitsi-Meet", "candidate_type": "host", "relay_protocol": None,
                            "turn_server": None, "transport": "udp", "network_type": "ethernet", "audio_codec": "opus",
                            "video_codec": "VP8"}
    assert on_cellular == {**unchanged[0], "network_type": "cellular"}
    assert on_relay == {**on_cellular, "candidate_type": "relay", "relay_protocol": "tcp",
                        "turn_server": "turn-2.example.com:443"}
    # A new identity's application is read at the next message.
    take(session, identity(len(found) + 2, applicationName="Other App"))
    at = NOW + (len(found) + 3) * 1000
    outcome = take(session, entry("getstats", "PC_0", rtcstats_delta(previous, previous), len(found) + 3, at), now=at)
    assert outcome.dimensions[2] == {**on_relay, "app": "Other-App"}
