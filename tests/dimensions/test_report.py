"""Route and codecs from raw getStats() reports: Chromium's own captures, and relayed
routes built from the shapes browsers report (SPEC §15); a peer's successive reports
read whole only when they may have moved."""
import copy
import json

import pytest

from rtcscope.dimensions import CONNECTION_DIMENSIONS
from rtcscope.dimensions.report import (
    DIMENSION_FIELDS,
    ReportReading,
    read_connections,
    report_dimensions,
    turn_server,
)
from tests.data import dumps
from tests.support.reports import PRIVATE_FIELDS, chromium_reports, clean_reports, relay_tcp_capture, relayed

DIRECT = {"candidate_type": "host", "relay_protocol": None, "turn_server": None, "transport": "udp",
          "network_type": "ethernet"}


def last_polls(path):
    """The last poll of each PeerConnection of a webrtc-internals dump, as the report getStats() gave."""
    reports = {}
    for key, connection in dumps.load(path)["PeerConnections"].items():
        report = []
        for series_key, series in connection["stats"].items():
            stat_id, _, field = series_key.rpartition("-")
            if field.endswith("]"):
                continue
            stat = next((s for s in report if s["id"] == stat_id), None)
            if stat is None:
                stat = {"id": stat_id, "type": series["statsType"]}
                report.append(stat)
            stat[field] = json.loads(series["values"])[-1]
        reports[key] = report
    return reports


def test_chromium_capture():
    """The caller sends Opus and VP8 over a direct host pair; the callee receives only."""
    for report in chromium_reports():
        assert report_dimensions(report["caller"]) == {**DIRECT, "audio_codec": "opus", "video_codec": "VP8"}
        assert report_dimensions(report["callee"]) == DIRECT


def test_chromium_relayed_over_tcp_as_rtcscope_js_sends_it():
    """Both ends of a call through coturn over TCP, stripped by rtcscope.js (tests/data/README.md):
    the whole route, the TURN server from the host:port the client keeps, and nothing identifying."""
    capture = relay_tcp_capture()
    relayed_tcp = {"candidate_type": "relay", "relay_protocol": "tcp", "turn_server": capture["turnServer"],
                   "transport": "udp", "network_type": "ethernet", "audio_codec": "opus", "video_codec": "VP8"}
    assert len(capture["reports"]) == 3
    for poll in capture["reports"]:
        assert set(poll) == {"caller", "callee"}
        for report in poll.values():
            assert report_dimensions(report) == relayed_tcp
            assert not [stat for stat in report if stat["type"] == "certificate"
                        or set(stat) & (PRIVATE_FIELDS - {"url"})]
            assert [stat["url"] for stat in report if "url" in stat] == [capture["turnServer"]]


@pytest.mark.parametrize("path, sender_codecs", [
    (dumps.AUDIO_ONLY, {"audio_codec": "opus"}),
    (dumps.AUDIO_VIDEO, {"audio_codec": "opus", "video_codec": "VP8"}),
    (dumps.AUDIO_VIDEO_OPEN, {"audio_codec": "opus", "video_codec": "VP8"}),
])
def test_chromium_dumps(path, sender_codecs):
    sender, receiver = last_polls(path).values()
    assert report_dimensions(sender) == {**DIRECT, **sender_codecs}
    assert report_dimensions(receiver) == DIRECT


@pytest.mark.parametrize("relay_protocol, url, server", [
    ("udp", "turn:turn-1.example.com:3478?transport=udp", "turn-1.example.com:3478"),
    ("tcp", "turn:turn-2.example.com:443?transport=tcp", "turn-2.example.com:443"),
    ("tls", "turns:turn-3.example.com:443?transport=tcp", "turn-3.example.com:443"),
    ("udp", "turn:127.0.0.1:3478?transport=udp", "127.0.0.1:3478"),
])
def test_relayed(relay_protocol, url, server):
    assert report_dimensions(relayed(relay_protocol, url)) == {
        "candidate_type": "relay", "relay_protocol": relay_protocol, "turn_server": server, "transport": "udp",
        "network_type": "wifi", "audio_codec": "opus", "video_codec": "VP9"}


def test_a_map_of_stats_as_well():
    report = {stat["id"]: stat for stat in relayed()}
    assert report_dimensions(report) == report_dimensions(relayed())


def test_without_transport_the_nominated_succeeded_pair():
    """Firefox has no transport stats and no networkType; its relay candidates carry no url."""
    report = relayed(url=None, network_type=None, transport=False)
    assert report_dimensions(report) == {
        "candidate_type": "relay", "relay_protocol": "tcp", "turn_server": None, "transport": "udp",
        "network_type": None, "audio_codec": "opus", "video_codec": "VP9"}


def test_firefox_before_62_candidate_names():
    report = relayed()
    next(stat for stat in report if stat["id"] == "Irelay")["candidateType"] = "relayed"
    assert report_dimensions(report)["candidate_type"] == "relay"


def test_what_rtcscope_js_sends_gives_the_whole_route():
    """rtcscope.js strips the addresses and keeps a local relay candidate's `url` as host:port."""
    stripped = [{name: value for name, value in stat.items() if name not in PRIVATE_FIELDS}
                for stat in relayed()]
    for stat in stripped:
        if stat["id"] == "Irelay":
            stat["url"] = "turn-2.example.com:443"
    assert report_dimensions(stripped) == report_dimensions(relayed())
    assert report_dimensions(stripped)["turn_server"] == "turn-2.example.com:443"


def test_the_fields_a_holder_keeps_are_enough():
    """A report cut to DIMENSION_FIELDS (what reports.PeerReports must hold) gives the same dimensions."""
    kept = [{name: value for name, value in stat.items()
             if name in ("id", "type") or name in DIMENSION_FIELDS.get(stat["type"], ())} for stat in relayed()]
    assert report_dimensions(kept) == report_dimensions(relayed())


def test_nothing_identifying_comes_out():
    values = set(report_dimensions(relayed()).values())
    for stat in relayed():
        for name in ("id", "address", "relatedAddress", "port", "relatedPort", "usernameFragment", "foundation"):
            assert stat.get(name) not in values


def test_several_peer_connections_the_busiest_route():
    """An rtcstats endpoint with a peer-to-peer connection and one through the bridge, both T01/CP ids."""
    quiet = relayed("udp", "turn:turn-1.example.com:3478", bytes_sent=1_000)
    busy = relayed("tcp", "turn:turn-2.example.com:443?transport=tcp", network_type="cellular", bytes_sent=900_000)
    for reports in ([quiet, busy], [busy, quiet]):
        found, _ = read_connections(reports)
        assert (found["relay_protocol"], found["turn_server"], found["network_type"]) == \
               ("tcp", "turn-2.example.com:443", "cellular")
    audio_only = [stat for stat in relayed() if stat["id"] not in ("OT01V2", "OT01V3")]
    assert read_connections([audio_only, busy])[0]["video_codec"] == "VP9"


@pytest.mark.parametrize("change", [
    lambda report: [stat for stat in report if stat["type"] != "local-candidate"],  # no candidate stats
    lambda report: [{**stat, "candidateType": "bogus"} if stat["id"] == "Irelay" else stat for stat in report],
    lambda report: [{**stat, "localCandidateId": "Iremote"} if stat["id"] == "CPrelay" else stat for stat in report],
    lambda report: [stat for stat in report if stat["type"] != "candidate-pair"],
])
def test_no_route_without_a_known_local_candidate(change):
    """No route is guessed: without the selected pair's local candidate, no connection dimension at all."""
    found = report_dimensions(change(relayed()))
    assert not set(CONNECTION_DIMENSIONS) & set(found)
    assert found == {"audio_codec": "opus", "video_codec": "VP9"}


@pytest.mark.parametrize("field, value", [
    ("relayProtocol", "sctp"), ("protocol", "quic"), ("networkType", "unknown"), ("networkType", "x" * 300),
    ("networkType", 7), ("url", "stun:stun.example.com:3478"), ("url", ["turn:x:1"]),
])
def test_values_outside_the_known_ones_are_not_known(field, value):
    report = [{**stat, field: value} if stat["id"] == "Irelay" else stat for stat in relayed()]
    name = {"relayProtocol": "relay_protocol", "protocol": "transport", "networkType": "network_type",
            "url": "turn_server"}[field]
    assert report_dimensions(report)[name] is None


@pytest.mark.parametrize("mime_type", ["video/opus", "audio", "audio/", "audio/op us", "audio/" + "x" * 65, 42])
def test_odd_codecs_are_skipped(mime_type):
    report = [{**stat, "mimeType": mime_type} if stat["id"] == "COT01_111" else stat for stat in relayed()]
    assert "audio_codec" not in report_dimensions(report)


@pytest.mark.parametrize("report", [[], {}, None, "text", [1, "x", None, []], [{"type": "transport"}],
                                    [{"id": 5, "type": "candidate-pair"}, {"id": "T", "type": "transport",
                                                                           "selectedCandidatePairId": 5}]])
def test_odd_reports_give_nothing(report):
    assert report_dimensions(report) == {}


@pytest.mark.parametrize("url, server", [
    ("turn:turn.example.com", "turn.example.com:3478"),
    ("turns:turn.example.com?transport=tcp", "turn.example.com:5349"),
    ("TURN:Turn.Example.COM:80", "turn.example.com:80"),
    ("turn:[2001:db8::1]:3478?transport=udp", "[2001:db8::1]:3478"),
    ("turn:[::1]", "[::1]:3478"),
    ("turn:alice:secret@turn.example.com:3478", "turn.example.com:3478"),  # never credentials
    ("turn:turn.example.com:03478", "turn.example.com:3478"),
    ("stun:stun.example.com:3478", None),
    # The host:port rtcscope.js keeps of a TURN url.
    ("127.0.0.1:3478", "127.0.0.1:3478"), ("Turn-2.Example.com:443", "turn-2.example.com:443"),
    ("[2001:db8::1]:5349", "[2001:db8::1]:5349"), ("turn.example.com", None), ("turn.example.com:", None),
    ("127.0.0.1:99999", None), ("alice@turn.example.com:3478", None), ("[::1]", None),
    ("turn:", None), ("turn:host:0", None), ("turn:host:65536", None), ("turn:host:port", None),
    ("turn:ho st:1", None), ("turn:[::1", None), ("turn:[::1]x", None), ("turn:[g::1]:1", None),
    ("turn:" + "a" * 300, None), (None, None), (3478, None),
])
def test_turn_server(url, server):
    assert turn_server(url) == server


def test_settled_answers_change_only_with_the_stats_they_read():
    """One transport's selected pair and one codec per kind: traffic weighs in nothing."""
    assert read_connections([clean_reports()["caller"][-1]]) == (report_dimensions(clean_reports()["caller"][-1]), True)
    assert read_connections([relay_tcp_capture()["reports"][-1]["callee"]])[1] is True
    # Two video codecs (the busiest stream names it), no transport stats, several connections: weighed.
    assert read_connections([relayed()])[1] is False
    single_codec = [stat for stat in relayed() if stat["id"] != "OT01V3"]
    assert read_connections([single_codec])[1] is True
    assert read_connections([[stat for stat in single_codec if stat["type"] != "transport"]])[1] is False
    assert read_connections([single_codec, single_codec])[1] is False
    assert read_connections([[]]) == ({}, False)


def test_a_peers_successive_reports_are_one_answer():
    """A browser's polls keep their layout (the capture's gain a stat once, an RTCP report):
    while it stays, the answer stands, the same dict."""
    for role, reports in clean_reports().items():
        reading = ReportReading()
        previous = answer = None
        for report in reports:
            layout = [stat["id"] for stat in report]
            found = reading.read(copy.deepcopy(report))
            assert found == report_dimensions(report)
            assert (found is answer) == (layout == previous), role
            previous, answer = layout, found


def _changed(report, stat_id, **fields):
    return [{**stat, **fields} if stat["id"] == stat_id else stat for stat in report]


def test_a_route_that_moves_mid_call_is_read_at_the_next_report():
    """Wi-Fi to cellular, another selected pair, direct to a relay, another codec, a stat that
    comes or goes: each is the next report's answer, whatever stays in its place."""
    report = [stat for stat in relayed(relay_protocol="udp", url="turn:turn-1.example.com:3478")
              if stat["id"] != "OT01V3"]  # one codec per kind: settled
    on_host = _changed(report, "T01", selectedCandidatePairId="CPhost")
    on_host = _changed(on_host, "CPhost", state="succeeded", nominated=True)
    cellular = _changed(report, "Irelay", networkType="cellular")
    tcp = _changed(cellular, "Irelay", relayProtocol="tcp", url="turn-2.example.com:443")
    h264 = _changed(tcp, "OT01V2", codecId="COT01_100")
    vp9_again = [stat for stat in h264 if stat["id"] != "CFcert"] + [{"id": "S1", "type": "media-source"}]
    vp9_again = _changed(vp9_again, "OT01V2", codecId="COT01_98")
    gone = [stat for stat in tcp if stat["id"] != "OT01A1"]
    reading = ReportReading()
    for step in (report, cellular, on_host, report, tcp, h264, vp9_again, gone, tcp):
        assert reading.read(step) == report_dimensions(step)
    assert [reading.read(step)["network_type"] for step in (report, cellular)] == ["wifi", "cellular"]
    assert reading.read(on_host)["candidate_type"] == "host" and reading.read(report)["candidate_type"] == "relay"
    assert (reading.read(tcp)["turn_server"], reading.read(h264)["video_codec"]) == ("turn-2.example.com:443", "H264")
    assert "audio_codec" not in reading.read(gone)


def test_weighed_answers_are_read_whole_each_time():
    """Two video codecs: the busiest stream names it, and its traffic moves without its layout."""
    reading = ReportReading()
    assert reading.read(relayed())["video_codec"] == "VP9"
    busier = _changed(relayed(), "OT01V3", bytesSent=10_000_000)
    assert reading.read(busier)["video_codec"] == "H264"
    assert reading.read(relayed())["video_codec"] == "VP9"
