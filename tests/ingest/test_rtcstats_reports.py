"""Reports rebuilt from @jitsi/rtcstats deltas give what the full reports give.

The deltas are made from real Chromium getStats() output the way the client
does it (rtcstats.js deltaCompression): each stat's id deleted, fields equal
(===) to the previous full report deleted, stats that are gone omitted, and
`timestamp: 0` on stats whose time equals the entry's top-level timestamp."""
import copy
import json

import pytest

from rtcscope.ingest.reports import STALE_MS, PeerReports, ReportError
from rtcscope.registry import extract, extract_connections
from tests.support.reports import chromium_reports, rtcstats_delta


def as_map(report):
    return {stat["id"]: stat for stat in report}


@pytest.fixture(scope="module")
def polls():
    return chromium_reports()


def deltas(polls, side):
    previous = {}
    for poll in polls:
        now = as_map(poll[side])
        yield poll[side], rtcstats_delta(previous, now)
        previous = now


def test_compression_is_the_clients(polls):
    """The fixture's deltas do what the client's do: smaller, ids gone, times zeroed."""
    full, first = next(deltas(polls, "caller"))
    assert all("id" not in stat for key, stat in first.items() if key != "timestamp")
    assert first["timestamp"] == max(stat["timestamp"] for stat in full)
    later = list(deltas(polls, "caller"))[-1][1]
    assert len(json.dumps(later)) < len(json.dumps(polls[-1]["caller"])) / 2
    assert any(stat.get("timestamp") == 0 for key, stat in later.items() if key != "timestamp")


def conveyed(previous, report):
    """What a delta can tell of `report`: a field the browser left out this
    time (Chromium omits roundTripTime in an interval without a measurement)
    keeps its last value, as the client never sends a removal."""
    return [{**previous.get(stat["id"], {}), **stat} for stat in report]


@pytest.mark.parametrize("side", ["caller", "callee"])
def test_every_rebuilt_report_extracts_as_the_full_one(polls, side):
    peer, previous, differed = PeerReports(), {}, 0
    for number, (full, delta) in enumerate(deltas(polls, side)):
        report, untyped, _ = peer.rebuild_rtcstats("PC_0", delta)
        assert untyped == 0
        expected = conveyed(previous, full)
        assert peer.extract({"PC_0": report}) == extract(expected), number
        differed += extract(expected) != extract(full)
        peer.commit({"PC_0": report}, at_ms=number * 1000)
        previous = as_map(expected)
    assert peer.extract() == extract(polls[-1][side])
    assert differed == {"caller": 0, "callee": 1}[side]  # poll 3: the callee's video rtt is the last one measured


def test_two_peer_connections_are_one_peer(polls):
    """Both sides of the loopback as two peer connections of one endpoint: the
    union of their latest reports, with the registry's rules for several streams."""
    peer = PeerReports()
    for number, ((_, caller), (_, callee)) in enumerate(zip(deltas(polls, "caller"), deltas(polls, "callee"))):
        for pc_id, delta in (("PC_0", caller), ("PC_1", callee)):
            report, _, _ = peer.rebuild_rtcstats(pc_id, delta)
            peer.commit({pc_id: report}, at_ms=number * 1000)
    expected = extract_connections([polls[-1]["caller"], polls[-1]["callee"]])
    assert peer.extract() == expected
    caller, callee = extract(polls[-1]["caller"]), extract(polls[-1]["callee"])
    # Counters summed, delays the worst, capacities the largest.
    assert expected["video"]["bytesSent"] == caller["video"]["bytesSent"] + callee["video"].get("bytesSent", 0)
    assert expected["video"]["rtt"] == max(caller["video"]["rtt"], callee["video"]["rtt"])
    assert expected["connection"]["availableBandwidth"] == max(
        caller["connection"]["availableBandwidth"], callee["connection"].get("availableBandwidth", 0))
    peer.discard("PC_1")
    assert peer.extract() == caller


def test_rebuild_leaves_the_held_report_until_committed(polls):
    peer = PeerReports()
    entries = list(deltas(polls, "caller"))
    first, _, _ = peer.rebuild_rtcstats("PC_0", entries[0][1])
    peer.commit({"PC_0": first}, at_ms=0)
    held = copy.deepcopy(peer.reports)
    second, _, _ = peer.rebuild_rtcstats("PC_0", entries[1][1])
    assert peer.reports == held  # not stored: the resent entry applies to the same state
    again, _, _ = peer.rebuild_rtcstats("PC_0", entries[1][1])
    assert again == second


def test_stats_left_out_of_an_entry_are_gone_and_times_restored():
    peer = PeerReports()
    report, _, _ = peer.rebuild_rtcstats("PC_0", {
        "OT1": {"type": "outbound-rtp", "kind": "audio", "packetsSent": 5, "timestamp": 0},
        "OT2": {"type": "outbound-rtp", "kind": "video", "packetsSent": 9, "timestamp": 1000.5},
        "timestamp": 2000.25})
    assert report["OT1"]["timestamp"] == 2000.25 and report["OT2"]["timestamp"] == 1000.5
    peer.commit({"PC_0": report}, at_ms=0)
    report, _, _ = peer.rebuild_rtcstats("PC_0", {"OT2": {"packetsSent": 12, "timestamp": 0}, "timestamp": 3000})
    assert set(report) == {"OT2"}
    assert report["OT2"] == {"id": "OT2", "type": "outbound-rtp", "kind": "video", "packetsSent": 12,
                             "timestamp": 3000}
    assert peer.extract({"PC_0": report}) == {"video": {"packetsSent": 12.0}}


def test_only_what_extraction_reads_is_held():
    """Addresses, ports, certificates and codec parameters never stay in memory; what the
    peer's dimensions read (the route's candidate, the codecs) does."""
    peer = PeerReports()
    report, _, _ = peer.rebuild_rtcstats("PC_0", {
        "C1": {"type": "local-candidate", "address": "192.0.2.7", "port": 5000, "timestamp": 0,
               "candidateType": "relay", "url": "turn:turn.example.com"},
        "K1": {"type": "codec", "mimeType": "audio/opus", "sdpFmtpLine": "minptime=10", "timestamp": 0},
        "CF": {"type": "certificate", "base64Certificate": "MIIB", "timestamp": 0},
        "P1": {"type": "candidate-pair", "currentRoundTripTime": 0.02, "localCandidateId": "C1", "timestamp": 0},
        "timestamp": 1})
    assert report["C1"] == {"id": "C1", "type": "local-candidate", "candidateType": "relay",
                            "url": "turn:turn.example.com"}
    assert report["K1"] == {"id": "K1", "type": "codec", "mimeType": "audio/opus"}
    assert report["CF"] == {"type": "certificate"}
    assert report["P1"] == {"id": "P1", "type": "candidate-pair", "currentRoundTripTime": 0.02, "localCandidateId": "C1",
                            "timestamp": 1}
    assert "192.0.2.7" not in json.dumps(report)
    report, _, _ = peer.rebuild_rtcstats("PC_0", {
        "O": {"type": "outbound-rtp", "kind": "v" * 300, "packetsSent": 5, "targetBitrate": [1, 2]}, "timestamp": 1})
    assert report["O"] == {"id": "O", "type": "outbound-rtp", "packetsSent": 5}


def test_after_the_state_is_lost_what_can_be_extracted_is_kept(polls):
    """A process that restarted gets deltas without the fields that never change."""
    entries = list(deltas(polls, "caller"))
    report, untyped, _ = PeerReports().rebuild_rtcstats("PC_0", entries[-1][1])
    assert untyped == len([key for key in entries[-1][1] if key != "timestamp"])
    assert extract_connections([report]) == {}


def test_bad_entries_and_too_many_stats_are_refused():
    peer = PeerReports(max_stats=3)
    for entry in ([], {"A": 5}, "x"):
        with pytest.raises(ReportError) as refused:
            peer.rebuild_rtcstats("PC_0", entry)
        assert refused.value.code == "bad_report"
    report, _, _ = peer.rebuild_rtcstats("PC_0", {"A": {"type": "codec"}, "B": {"type": "codec"}, "timestamp": 1})
    peer.commit({"PC_0": report}, at_ms=0)
    with pytest.raises(ReportError) as refused:
        peer.rebuild_rtcstats("PC_1", {"C": {"type": "codec"}, "D": {"type": "codec"}, "timestamp": 1})
    assert refused.value.code == "too_many_stats"
    assert peer.rebuild_rtcstats("PC_0", {"C": {"type": "certificate"}, "timestamp": 2})[0] == {"C": {"type": "certificate"}}


def test_a_silent_peer_connection_leaves_the_metrics():
    peer = PeerReports()
    for pc_id, sent, at_ms in (("PC_0", 5, 0), ("PC_1", 7, STALE_MS)):
        report, _, _ = peer.rebuild_rtcstats(pc_id, {"O": {"type": "outbound-rtp", "kind": "audio", "packetsSent": sent},
                                                  "timestamp": at_ms})
        peer.commit({pc_id: report}, at_ms=at_ms)
    assert peer.extract(at_ms=STALE_MS) == {"audio": {"packetsSent": 12.0}}
    assert peer.extract(at_ms=STALE_MS + 1) == {"audio": {"packetsSent": 7.0}}


def test_a_delta_says_whether_the_route_or_codecs_may_have_moved():
    """Traffic moves every delta and is no move; a new local candidate, a new selected pair or a
    new codec is."""
    peer = PeerReports()
    full = peer.rebuild_full("pc", [
        {"id": "T", "type": "transport", "selectedCandidatePairId": "P1"},
        {"id": "P1", "type": "candidate-pair", "localCandidateId": "L1", "bytesSent": 10, "state": "succeeded"},
        {"id": "L1", "type": "local-candidate", "candidateType": "host", "networkType": "wifi"},
        {"id": "O", "type": "outbound-rtp", "kind": "audio", "codecId": "C", "bytesSent": 5, "packetsSent": 1},
        {"id": "C", "type": "codec", "mimeType": "audio/opus"},
        {"id": "R", "type": "remote-inbound-rtp", "kind": "audio", "roundTripTime": 0.1}])
    peer.commit({"pc": full}, 0)
    cases = [
        ({"P1": {"bytesSent": 20}, "O": {"bytesSent": 9, "packetsSent": 2}, "R": {"roundTripTime": 0.2}}, [], False),
        ({"R2": {"type": "remote-inbound-rtp", "kind": "video"}}, [], False),
        ({}, ["R"], False),
        ({"L2": {"type": "local-candidate", "candidateType": "host", "networkType": "cellular"}}, [], True),
        ({"T": {"selectedCandidatePairId": "P2"}}, [], True),
        ({"O": {"codecId": "C2"}}, [], True),
        ({}, ["L1"], True),
    ]
    for delta, removed, moved in cases:
        assert peer.rebuild_delta("pc", delta, removed)[1] is moved, (delta, removed)


def test_an_entry_says_whether_the_route_or_codecs_may_have_moved():
    """rtcstats leaves out the fields that did not change and the stats that are gone: traffic is
    no move; a new local candidate, a new selected pair, a new codec or a route stat gone is."""
    held = {"T": {"type": "transport", "selectedCandidatePairId": "P1"},
            "P1": {"type": "candidate-pair", "localCandidateId": "L1", "bytesSent": 10, "state": "succeeded"},
            "L1": {"type": "local-candidate", "candidateType": "host", "networkType": "wifi"},
            "O": {"type": "outbound-rtp", "kind": "audio", "codecId": "C", "bytesSent": 5, "packetsSent": 1},
            "C": {"type": "codec", "mimeType": "audio/opus"},
            "R": {"type": "remote-inbound-rtp", "kind": "audio", "roundTripTime": 0.1}}
    peer = PeerReports()
    first, _, moved = peer.rebuild_rtcstats("PC_0", {**held, "timestamp": 1})
    assert moved  # every stat is new
    peer.commit({"PC_0": first}, 0)
    unchanged = {stat_id: {} for stat_id in held}
    cases = [
        ({**unchanged, "P1": {"bytesSent": 20}, "O": {"bytesSent": 9, "packetsSent": 2}, "R": {"roundTripTime": 0.2}},
         False),
        ({**unchanged, "R2": {"type": "remote-inbound-rtp", "kind": "video"}}, False),
        ({stat_id: {} for stat_id in held if stat_id != "R"}, False),
        ({**unchanged, "L2": {"type": "local-candidate", "candidateType": "host", "networkType": "cellular"}}, True),
        ({**unchanged, "L1": {"networkType": "cellular"}}, True),
        ({**unchanged, "T": {"selectedCandidatePairId": "P2"}}, True),
        ({**unchanged, "O": {"codecId": "C2"}}, True),
        ({stat_id: {} for stat_id in held if stat_id != "L1"}, True),
    ]
    for entry, moved in cases:
        assert peer.rebuild_rtcstats("PC_0", {**entry, "timestamp": 2})[2] is moved, entry
