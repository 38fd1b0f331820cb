"""Real Chromium getStats() reports (tests/data/README.md): as the browser gave them,
as rtcscope.js sends them (full and as deltas), and the points they are stored as; a
call relayed through a real TURN server as rtcscope.js sent it; and the report of a peer
relayed through TURN written out by hand, with the shapes of other browsers and networks."""
import copy
import json
import pathlib

from rtcscope.registry import extract

CHROMIUM_FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "data" / "chromium-loopback-audio-video.json"
RELAY_TCP_CAPTURE = CHROMIUM_FIXTURE.with_name("chromium-relay-tcp.json")
# What rtcscope.js takes out of every report before it leaves the page (of a local relay
# candidate's `url` it keeps the TURN server's host:port; the loopback capture has none).
PRIVATE_FIELDS = {"address", "ip", "port", "relatedAddress", "relatedPort", "url", "usernameFragment"}


def chromium_reports():
    """The capture's polls, one a second: [{"caller": report, "callee": report}, ...]."""
    return json.loads(CHROMIUM_FIXTURE.read_text())["reports"]


REPORTS = [poll["caller"] for poll in chromium_reports()]  # the caller's reports, whole
HEADLESS_CHROMIUM = json.loads(CHROMIUM_FIXTURE.read_text())["userAgent"]  # the User-Agent of the captures' browser


def relay_tcp_capture():
    """The call relayed over TCP: {"userAgent", "intervalMs", "turnServer", "relayProtocol",
    "reports": [{"caller": report, "callee": report}, ...]}, the reports as rtcscope.js sent them."""
    return json.loads(RELAY_TCP_CAPTURE.read_text())


def clean_reports():
    """{role: [report, ...]} as rtcscope.js sends them (no certificates, no addresses)."""
    return {role: [[{k: v for k, v in stat.items() if k not in PRIVATE_FIELDS}
                    for stat in poll[role] if stat.get("type") != "certificate"] for poll in chromium_reports()]
            for role in ("caller", "callee")}


def report_delta(previous, report):
    """rtcscope.js's delta message of `report` after `previous` (getStats() arrays), without its ts."""
    before = {stat["id"]: stat for stat in previous}
    after = {stat["id"]: stat for stat in report}
    changed = {}
    for stat_id, stat in after.items():
        old = before.get(stat_id)
        if old is None:
            changed[stat_id] = stat
            continue
        fields = {name: value for name, value in stat.items() if old.get(name) != value}
        fields.update({name: None for name in old if name not in stat})
        if fields:
            changed[stat_id] = fields
    return {"delta": changed, "removed": [stat_id for stat_id in before if stat_id not in after]}


def rtcstats_delta(previous, report):
    """@jitsi/rtcstats' entry of `report` (a getStats() map, {id: stat}) after `previous` (its
    deltaCompression): each stat's id deleted, fields equal (===) to the previous report's
    deleted, stats that are gone omitted, `timestamp: 0` on stats whose time is the entry's."""
    delta = copy.deepcopy(report)
    for stat_id, stat in delta.items():
        del stat["id"]
        old = previous.get(stat_id)
        if old is None:
            continue
        for name in list(stat):
            # JavaScript's === : objects and arrays parsed afresh are never equal.
            if not isinstance(stat[name], (dict, list)) and name in old and stat[name] == old[name]:
                del stat[name]
    newest = max((stat["timestamp"] for stat in delta.values() if "timestamp" in stat), default=None)
    for stat in delta.values():
        if stat.get("timestamp") == newest:
            stat["timestamp"] = 0
    delta["timestamp"] = newest
    return delta


def stored(influxd, database, call):
    """{(time ms, kind): fields} of a call's rtc_stats points."""
    rows = influxd.rows(f"SELECT * FROM rtc_stats WHERE call = '{call}'", database)
    return {(round(row.pop("time")), row.pop("kind")): {k: v for k, v in row.items()
                                                        if v is not None and k not in ("call", "peer")}
            for row in rows}


def expected(samples):
    """{(time ms, kind): fields} the registry extracts from (time ms, report) pairs: what `stored` should find."""
    return {(ts, kind): fields for ts, report in samples for kind, fields in extract(report).items()}


def relayed(relay_protocol="tcp", url="turn:turn-2.example.com:443?transport=tcp", network_type="wifi",
            pair_id="CPrelay", transport=True, bytes_sent=200_000):
    """A Chromium report of a peer relayed through a TURN server, with Opus and VP9 sent."""
    local = {"id": "Irelay", "type": "local-candidate", "transportId": "T01", "address": "203.0.113.40",
             "port": 50123, "protocol": "udp", "candidateType": "relay", "priority": 41885439,
             "relayProtocol": relay_protocol, "relatedAddress": "198.51.100.3", "relatedPort": 61000,
             "usernameFragment": "a1B2", "foundation": "3211", "isRemote": False, "networkType": network_type}
    if url is not None:
        local["url"] = url
    if network_type is None:
        del local["networkType"]
    report = [
        {"id": "COT01_111", "type": "codec", "mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000},
        {"id": "COT01_98", "type": "codec", "mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000},
        {"id": "COT01_100", "type": "codec", "mimeType": "video/H264", "payloadType": 100},
        {"id": "CPhost", "type": "candidate-pair", "localCandidateId": "Ihost", "remoteCandidateId": "Iremote",
         "state": "failed", "nominated": False, "bytesSent": 0, "bytesReceived": 0},
        {"id": pair_id, "type": "candidate-pair", "localCandidateId": "Irelay", "remoteCandidateId": "Iremote",
         "state": "succeeded", "nominated": True, "bytesSent": bytes_sent, "bytesReceived": bytes_sent // 2,
         "currentRoundTripTime": 0.18, "availableOutgoingBitrate": 900_000},
        {"id": "Ihost", "type": "local-candidate", "address": "192.168.1.20", "port": 50000, "protocol": "udp",
         "candidateType": "host", "networkType": "ethernet"},
        local,
        {"id": "Iremote", "type": "remote-candidate", "address": "198.51.100.99", "port": 3478, "protocol": "udp",
         "candidateType": "srflx"},
        {"id": "OT01A1", "type": "outbound-rtp", "kind": "audio", "codecId": "COT01_111", "ssrc": 1,
         "bytesSent": 40_000, "packetsSent": 500},
        {"id": "OT01V2", "type": "outbound-rtp", "kind": "video", "codecId": "COT01_98", "ssrc": 2,
         "bytesSent": 150_000, "packetsSent": 300},
        # An inactive simulcast layer of another codec: the busiest stream names the codec.
        {"id": "OT01V3", "type": "outbound-rtp", "kind": "video", "codecId": "COT01_100", "ssrc": 3, "bytesSent": 0},
        {"id": "IT01V4", "type": "inbound-rtp", "kind": "video", "codecId": "COT01_100", "bytesReceived": 9},
        {"id": "CFcert", "type": "certificate", "fingerprint": "AB:CD", "base64Certificate": "MIIB"},
    ]
    if transport:
        report.append({"id": "T01", "type": "transport", "selectedCandidatePairId": pair_id, "dtlsState": "connected"})
    return report
