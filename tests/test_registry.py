"""The registry and raw-report extraction, checked against real Chromium getStats() output."""

import json
import math

import pytest

from rtcscope.registry import (
    METRICS,
    QUALITY_LIMITATION_CODES,
    Metric,
    all_metrics,
    extract,
    lookup,
)
from tests.support.reports import chromium_reports


@pytest.fixture(scope="module")
def last_report():
    return chromium_reports()[-1]


@pytest.fixture(scope="module")
def caller(last_report):
    return extract(last_report["caller"])


@pytest.fixture(scope="module")
def callee(last_report):
    return extract(last_report["callee"])


def test_caller_connection_comes_from_the_selected_pair(caller):
    # Values of pair CP0OoIXUcI_/0zeC9Gq, not the other nominated pair CP2N4flNxa_bAwGLYBY.
    # The pair's byte/packet counters are left out: they repeat the media streams'.
    assert caller["connection"] == {"availableBandwidth": 3608000.0, "rtt": 1.0}


def test_caller_sends_audio_and_video(caller):
    video, audio = caller["video"], caller["audio"]
    assert video["rtt"] == 1.236
    assert video["jitter"] == 0.477
    assert video["frameWidth"] == 640.0
    assert video["frameHeight"] == 480.0
    assert video["framesPerSecond"] == 20.0
    assert video["bytesSent"] == 354058.0
    assert video["targetBitrate"] == 1700000.0
    assert video["qualityLimitationReason"] == QUALITY_LIMITATION_CODES["none"]
    assert "rtt" not in audio  # roundTripTimeMeasurements is 0: Chrome omits roundTripTime
    assert audio["inputLevel"] == 0.999969481490524
    assert audio["jitter"] == 0.208
    assert audio["packetsSent"] == 300.0
    assert audio["packetsLost"] == 0.0
    assert "packetsReceived" not in audio


def test_callee_receives_audio_and_video(callee):
    video, audio = callee["video"], callee["audio"]
    assert video["framesPerSecond"] == 20.0
    assert video["jitterBufferDelay"] == 0.58958 / 118 * 1000
    assert video["packetsReceived"] == 384.0
    assert video["freezeCount"] == 0.0
    # A receive-only peer has no remote-inbound-rtp; its RTT is the remote-outbound-rtp's, measured
    # from the sender's reports (added so that receivers have an rtt and a MOS too).
    assert video["rtt"] == 0.001419 * 1000
    assert audio["rtt"] == 1.0
    assert video["pauseCount"] == 0.0 and video["totalPausesDuration"] == 0.0
    assert audio["packetsDiscarded"] == 200.0  # late or early for the jitter buffer
    assert audio["concealmentEvents"] == 0.0
    assert "bytesSent" not in video  # remote-outbound-rtp's counters are the remote's, not ours
    assert "jitterBufferDelay" not in audio  # jitterBufferEmittedCount is 0
    assert "inputLevel" not in audio  # inbound audioLevel is the far end's voice, not ours
    assert callee["connection"]["availableBandwidth"] == 300000.0
    assert "bytesReceived" not in callee["connection"]


def test_every_report_gives_only_finite_floats_of_registry_fields():
    reports = chromium_reports()
    for report in reports:
        for stats in report.values():
            extracted = extract(stats)
            assert set(extracted) == {"audio", "video", "connection"}
            for values in extracted.values():
                for field, value in values.items():
                    assert any(metric.source_field == field for metric in METRICS.values()), field
                    assert type(value) is float and math.isfinite(value)


def test_no_address_or_candidate_data_leaks(last_report):
    for stats in last_report.values():
        text = json.dumps(extract(stats))
        for secret in ("192.0.2.2", "fd00::2", "address", "ip", "candidate", "Candidate", "fingerprint", "track"):
            assert secret not in text


def test_firefox_like_report_omits_missing_stats():
    report = [
        {"id": "p", "type": "candidate-pair", "nominated": True, "state": "succeeded", "selected": True,
         "currentRoundTripTime": 0.02, "bytesSent": 10, "bytesReceived": 20},
        {"id": "s", "type": "media-source", "kind": "audio", "trackIdentifier": "x"},
        {"id": "o", "type": "outbound-rtp", "kind": "audio", "packetsSent": 5},
    ]
    extracted = extract(report)
    assert "availableBandwidth" not in extracted["connection"]
    assert extracted["connection"]["rtt"] == 20.0
    assert extracted["audio"] == {"packetsSent": 5.0}


def test_fallback_to_the_busiest_nominated_succeeded_pair():
    report = [
        {"id": "a", "type": "candidate-pair", "nominated": True, "state": "succeeded",
         "bytesSent": 10, "bytesReceived": 10, "availableOutgoingBitrate": 1},
        {"id": "b", "type": "candidate-pair", "nominated": True, "state": "succeeded",
         "bytesSent": 500, "bytesReceived": 10, "availableOutgoingBitrate": 2},
        {"id": "c", "type": "candidate-pair", "nominated": False, "state": "succeeded",
         "bytesSent": 9000, "availableOutgoingBitrate": 3},
        {"id": "d", "type": "candidate-pair", "nominated": True, "state": "in-progress",
         "bytesSent": 9000, "availableOutgoingBitrate": 4},
    ]
    assert extract(report)["connection"]["availableBandwidth"] == 2.0


def test_several_streams_of_one_kind_are_summed_or_worst_of():
    report = [
        {"type": "outbound-rtp", "kind": "video", "ssrc": 1, "bytesSent": 100, "packetsSent": 10,
         "framesPerSecond": 15, "frameWidth": 320, "qualityLimitationReason": "none"},
        {"type": "outbound-rtp", "mediaType": "video", "ssrc": 2, "bytesSent": 200, "packetsSent": 20,
         "framesPerSecond": 30, "frameWidth": 1280, "qualityLimitationReason": "bandwidth"},
        {"type": "remote-inbound-rtp", "kind": "video", "ssrc": 1, "roundTripTime": 0.05, "jitter": 0.01,
         "packetsLost": 3, "fractionLost": 0.1},
        {"type": "remote-inbound-rtp", "kind": "video", "ssrc": 2, "roundTripTime": 0.08, "jitter": 0.002,
         "packetsLost": 4, "fractionLost": 0.02},
        {"type": "inbound-rtp", "kind": "video", "ssrc": 3, "packetsLost": 5, "jitter": 0.03,
         "framesPerSecond": 24, "frameWidth": 640, "jitterBufferDelay": 1.0, "jitterBufferEmittedCount": 10},
        {"type": "inbound-rtp", "kind": "video", "ssrc": 4, "packetsLost": 1, "jitter": 0.001,
         "jitterBufferDelay": 4.0, "jitterBufferEmittedCount": 20},
        {"type": "media-source", "kind": "video", "framesPerSecond": 60, "width": 1920},
    ]
    video = extract(report)["video"]
    assert video["bytesSent"] == 300.0
    assert video["packetsSent"] == 30.0
    assert video["packetsLost"] == 13.0  # 3 + 4 remote-inbound, 5 + 1 inbound
    assert video["rtt"] == 80.0
    assert video["jitter"] == 30.0
    assert video["fractionLost"] == 0.1
    assert video["jitterBufferDelay"] == 200.0  # worst of 100 ms and 200 ms per frame
    assert video["framesPerSecond"] == 24.0  # received beats sent and captured
    assert video["frameWidth"] == 640.0
    assert video["qualityLimitationReason"] == QUALITY_LIMITATION_CODES["bandwidth"]


def test_sent_video_is_preferred_to_captured_when_nothing_is_received():
    report = [
        {"type": "media-source", "kind": "video", "framesPerSecond": 30, "width": 1280, "height": 720},
        {"type": "outbound-rtp", "kind": "video", "framesPerSecond": 25, "frameWidth": 640},
    ]
    video = extract(report)["video"]
    assert (video["framesPerSecond"], video["frameWidth"], video["frameHeight"]) == (25.0, 640.0, 720.0)


@pytest.mark.parametrize("report", [
    None, 42, "report", b"\x00", [], {}, [None, 1, "x", [], {}],
    [{"type": ["outbound-rtp"]}, {"type": None}, {"type": "outbound-rtp", "kind": ["video"]}],
    [{"type": "outbound-rtp", "kind": "video", "bytesSent": "12", "packetsSent": None,
      "framesPerSecond": float("nan"), "frameWidth": float("inf"), "frameHeight": True,
      "nackCount": 10 ** 400, "qualityLimitationReason": ["cpu"]}],
    [{"type": "inbound-rtp", "kind": "audio", "jitterBufferDelay": 1, "jitterBufferEmittedCount": 0},
     {"type": "inbound-rtp", "kind": "audio", "jitterBufferDelay": "1", "jitterBufferEmittedCount": 5}],
    [{"type": "remote-inbound-rtp", "kind": "audio", "roundTripTime": 1e308}],
    [{"type": "transport", "selectedCandidatePairId": {"id": 1}},
     {"type": "candidate-pair", "id": ["x"], "nominated": True, "state": "succeeded"},
     {"type": "candidate-pair", "nominated": "yes", "state": "succeeded", "bytesSent": "lots"}],
    [{"type": "transport", "selectedCandidatePairId": "missing"},
     {"type": "candidate-pair", "id": "p", "nominated": True, "state": "succeeded", "bytesSent": "x"}],
])
def test_garbage_never_raises_and_yields_nothing_usable(report):
    extracted = extract(report)
    assert all(values for values in extracted.values())
    assert not any(values for kind, values in extracted.items() if kind != "connection")


def test_a_stats_map_serialised_as_an_object_is_accepted():
    assert extract({"o": {"type": "outbound-rtp", "kind": "audio", "packetsSent": 7}}) == {
        "audio": {"packetsSent": 7.0}
    }


def test_lookup_by_name_and_alias():
    assert lookup("rtt") is METRICS["rtt"]
    for alias in ("googRtt", "roundTripTime", "currentRoundTripTime"):
        assert lookup(alias).name == "rtt"
    assert lookup("googJitterReceived").name == "jitter"
    assert lookup("googAvailableSendBandwidth").name == "availableBandwidth"
    assert lookup("availableOutgoingBitrate").name == "availableBandwidth"
    assert lookup("audioInputLevel").name == "inputLevel"
    assert lookup("audioLevel").name == "inputLevel"
    assert lookup("RTT") is None
    assert lookup("nope") is None


def test_aliases_are_unambiguous():
    aliases = [alias for metric in all_metrics() for alias in metric.aliases]
    assert len(aliases) == len(set(aliases))
    assert not set(aliases) & set(METRICS)


def test_seed_metrics_come_first():
    assert [metric.name for metric in all_metrics()[:4]] == ["availableBandwidth", "rtt", "inputLevel", "packetsLost"]


def test_every_metric_is_fully_described():
    assert all_metrics() == list(METRICS.values())
    for name, metric in METRICS.items():
        assert metric.name == name
        assert metric.unit and metric.description
        assert metric.type in ("gauge", "counter")
        if metric.type == "counter":
            assert metric.rate_unit and metric.display_unit == metric.rate_unit
        else:
            assert metric.display_unit == metric.unit
        assert set(metric.as_json()) == {
            "name", "unit", "display_unit", "type", "description", "aliases", "field", "scale"
        }


def test_derived_bitrate_reads_bytes():
    bitrate = lookup("bitrate")
    assert (bitrate.source_field, bitrate.scale, bitrate.type, bitrate.display_unit) == (
        "bytesSent", 8.0, "counter", "bit/s"
    )
    assert lookup("bitrateReceived").source_field == "bytesReceived"
    assert METRICS["rtt"].source_field == "rtt"
    assert json.loads(json.dumps(bitrate.as_json()))["field"] == "bytesSent"


def test_metric_is_immutable():
    with pytest.raises(AttributeError):
        METRICS["rtt"].unit = "s"
    assert isinstance(METRICS["rtt"], Metric)


def test_quality_limitation_codes_are_documented():
    description = METRICS["qualityLimitationReason"].description
    for reason, code in QUALITY_LIMITATION_CODES.items():
        assert f"{code:g} {reason}" in description
