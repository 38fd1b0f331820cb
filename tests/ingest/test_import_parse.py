"""Reading chrome://webrtc-internals dumps (the captured ones under tests/data/
and broken variants of them) into ingest points, without a server."""
import gzip
import io
import json
import time

import pytest

from rtcscope.ingest.formats import IngestError
from rtcscope.ingest.webrtc_internals import parse_dump, peer_name
from tests.data import dumps

DAY_MS = 86_400_000
RETENTION_MS = 30 * DAY_MS


def now_ms():
    return int(time.time() * 1000)


def read(document, call="c-1", now=None, retention_ms=RETENTION_MS, max_bytes=64 << 20):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_dump(io.BytesIO(body), call, now or now_ms(), retention_ms, 300_000, max_bytes)


def recent(path, ago_ms=60_000):
    return dumps.shifted(dumps.load(path), now_ms() - ago_ms)


def samples(result):
    """[(measurement, tags, fields, ts ns)] of the encoded points."""
    out = []
    for line in result.parsed.lines:
        series, fields, ts = line.decode().split(" ")
        measurement, *tags = series.split(",")
        out.append((measurement, dict(tag.split("=") for tag in tags),
                    {name: float(value) for name, value in (pair.split("=") for pair in fields.split(","))}, int(ts)))
    return out


def stats_points(result, kind=None):
    return [(tags, fields, ts) for measurement, tags, fields, ts in samples(result)
            if measurement == "rtc_stats" and (kind is None or tags.get("kind") == kind)]


@pytest.mark.parametrize("path", dumps.ALL_DUMPS, ids=lambda path: path.stem)
def test_captured_dumps_keep_their_peers_and_times(path):
    dump = recent(path)
    result = read(dump)
    assert result.peers == sorted(dump["PeerConnections"])
    report_times = dumps.timestamps(dump)
    assert result.first_ms == int(min(min(times) for times in report_times.values()))
    assert result.last_ms == int(dumps.last_time(dump))
    for key, times in report_times.items():
        stamped = sorted({ts for tags, _, ts in stats_points(result) if tags["peer"] == key})
        assert stamped == sorted({round(t * 1000) * 1000 for t in times}), key  # one sample time per poll
    assert result.parsed.accepted == len(stats_points(result))


@pytest.mark.parametrize("path", dumps.ALL_DUMPS, ids=lambda path: path.stem)
def test_captured_dumps_give_the_registry_metrics(path):
    result = read(recent(path))
    by_kind = {}
    for tags, fields, _ in stats_points(result):
        by_kind.setdefault(tags["kind"], {}).update(fields)
    assert 0 <= by_kind["connection"]["rtt"] < 100
    assert by_kind["connection"]["availableBandwidth"] > 10_000
    assert 0 < by_kind["audio"]["rtt"] < 100  # remote-inbound-rtp, placed in the poll that reported it
    assert by_kind["audio"]["bytesSent"] > 10_000 and by_kind["audio"]["bytesReceived"] > 10_000
    if "video" in path.name:
        video = by_kind["video"]
        assert 5 <= video["framesPerSecond"] <= 60
        assert (video["frameWidth"], video["frameHeight"]) == (640, 360)
        assert video["bytesSent"] > 100_000
    else:
        assert "video" not in by_kind


def test_samples_are_those_of_each_poll_report():
    """The sender's audio sample of a poll holds that poll's outbound-rtp
    counters, lined up by the stat's timestamp series."""
    dump = recent(dumps.AUDIO_ONLY)
    stats = dump["PeerConnections"]["8-1"]["stats"]
    outbound = next(key.rpartition("-")[0] for key, series in stats.items() if series["statsType"] == "outbound-rtp")
    sent = json.loads(stats[f"{outbound}-bytesSent"]["values"])
    times = json.loads(stats[f"{outbound}-timestamp"]["values"])
    points = {ts: fields for tags, fields, ts in stats_points(read(dump), "audio") if tags["peer"] == "8-1"}
    assert [points[round(t * 1000) * 1000]["bytesSent"] for t in times] == sent


def test_presence_and_end_carry_the_dumps_own_times():
    dump = recent(dumps.AUDIO_VIDEO, ago_ms=3_600_000)
    result = read(dump)
    last_ns = result.last_ms * 1_000_000
    presence = [point for point in samples(result) if point[0] == "rtc_calls"]
    ends = [point for point in samples(result) if point[0] == "rtc_events"]
    assert sorted(tags["peer"] for _, tags, _, _ in presence) == result.peers
    assert all(ts == last_ns and fields["recv"] == result.last_ms for _, _, fields, ts in presence)
    assert sorted(tags["peer"] for _, tags, _, _ in ends) == result.peers
    assert all(ts == last_ns and fields["end"] == 1.0 for _, _, fields, ts in ends)
    assert all(abs(fields["at"] - result.last_ms) < 2_000 for _, _, fields, _ in ends)  # each peer's own last


def test_a_compressed_dump_is_read_like_the_plain_one():
    dump = recent(dumps.AUDIO_ONLY_GZIP)
    result = read(gzip.compress(json.dumps(dump).encode()))
    assert result.peers == ["8-1", "8-2"]
    assert result.parsed.accepted == read(dump).parsed.accepted > 0


def test_the_committed_compressed_dump_is_gzip():
    assert dumps.AUDIO_ONLY_GZIP.read_bytes()[:2] == b"\x1f\x8b"


def test_a_decompression_bomb_is_refused():
    body = gzip.compress(json.dumps(recent(dumps.AUDIO_ONLY)).encode())
    with pytest.raises(IngestError) as error:
        read(body, max_bytes=10_000)
    assert error.value.status == 413 and "decompressed" in error.value.message


def test_series_of_one_stat_are_lined_up_by_their_end():
    """A field that appeared later has fewer values: its first value belongs
    to a later poll, not to the first."""
    last = now_ms() - 10_000
    times = [last - 2000.0, last - 1000.0, float(last)]
    dump = {"PeerConnections": {"a": {"stats": series_of("OT1", "outbound-rtp", times, {
        "kind": ["audio"] * 3, "bytesSent": [100, 200, 300], "targetBitrate": [32000]})}}}
    points = stats_points(read(dump), "audio")
    assert [fields for _, fields, _ in points] == [
        {"bytesSent": 100.0}, {"bytesSent": 200.0}, {"bytesSent": 300.0, "targetBitrate": 32000.0}]
    assert [ts for _, _, ts in points] == [int(t) * 1_000_000 for t in times]


def test_computed_series_are_skipped():
    dump = recent(dumps.AUDIO_ONLY)
    for pc in dump["PeerConnections"].values():
        for key in [key for key in pc["stats"] if key.endswith("]")]:
            pc["stats"][key] = {"values": "not even JSON"}  # never looked at
    assert read(dump).parsed.accepted == read(recent(dumps.AUDIO_ONLY)).parsed.accepted


def test_peer_names_are_sanitised_and_kept_distinct():
    taken = set()
    assert [peer_name(key, taken) for key in ("8-1", "a b", "a/b", "x" * 200)] == ["8-1", "a-b", "a-b-2", "x" * 120]


def series_of(stat_id, stats_type, times, fields):
    series = {}
    for field, values in {**fields, "timestamp": times}.items():
        series[f"{stat_id}-{field}"] = {"startTime": dumps.iso(times[-len(values)]), "endTime": dumps.iso(times[-1]),
                                        "statsType": stats_type, "values": json.dumps(values)}
    return series


def broken(change):
    dump = recent(dumps.AUDIO_ONLY)
    change(dump["PeerConnections"]["8-1"]["stats"], dump)
    return dump


def _first(stats, field):
    return next(key for key in stats if key.endswith("-" + field) and not key.startswith(("RI", "RO")))


BAD_DUMPS = {
    "not json": (b'{"PeerConnections": {', "not valid JSON"),
    "not utf-8 or json": (b"\xff\xfe\x00garbage", "not valid"),
    "top level array": (b"[1, 2]", "top level must be a JSON object"),
    "no PeerConnections": ({"getUserMedia": [], "UserAgent": "x"}, "no PeerConnections"),
    "PeerConnections empty": ({"PeerConnections": {}}, "no PeerConnections"),
    "PeerConnections a list": ({"PeerConnections": []}, "PeerConnections must be an object"),
    "stats a list": ({"PeerConnections": {"a": {"stats": []}}}, "PeerConnections.a.stats must be an object"),
    "no stats at all": ({"PeerConnections": {"a": {"stats": {}}}}, "no stats a metric can be taken from"),
    "values not an array": (lambda stats, _: stats[_first(stats, "bytesSent")].update(values='{"a": 1}'),
                            "values must be a non-empty JSON-encoded array"),
    "values not JSON": (lambda stats, _: stats[_first(stats, "bytesSent")].update(values="[1, 2"),
                        "values must be a non-empty JSON-encoded array"),
    "values missing": (lambda stats, _: stats[_first(stats, "bytesSent")].pop("values"), "values is missing"),
    "values a real array": (lambda stats, _: stats[_first(stats, "bytesSent")].update(values=[1, 2]),
                            "must be a string"),
    "startTime missing": (lambda stats, _: stats[_first(stats, "bytesSent")].pop("startTime"),
                          "startTime is missing or not a time"),
    "endTime garbage": (lambda stats, _: stats[_first(stats, "bytesSent")].update(endTime="yesterday"),
                        "endTime is missing or not a time"),
    "statsType missing": (lambda stats, _: stats[_first(stats, "bytesSent")].pop("statsType"), "statsType is missing"),
    "timestamps not numbers": (lambda stats, _: stats[_first(stats, "timestamp")].update(values='["a", "b"]'),
                               "values must be a JSON array of Unix ms numbers"),
    "more values than timestamps": (
        lambda stats, _: stats[_first(stats, "bytesSent")].update(values=json.dumps(list(range(500)))),
        "has 500 values but the stat has only"),
}


@pytest.mark.parametrize("name", BAD_DUMPS)
def test_a_bad_dump_says_what_is_wrong(name):
    document, message = BAD_DUMPS[name]
    with pytest.raises(IngestError) as error:
        read(broken(document) if callable(document) else document)
    assert error.value.status == 400
    assert message in error.value.message, error.value.message


def test_a_bad_call_id_is_refused():
    with pytest.raises(IngestError) as error:
        read(recent(dumps.AUDIO_ONLY), call="a b")
    assert error.value.status == 400 and error.value.code == "bad_call"


def test_a_dump_older_than_the_retention_is_refused():
    old = dumps.shifted(dumps.load(dumps.AUDIO_ONLY), now_ms() - 31 * DAY_MS)
    with pytest.raises(IngestError) as error:
        read(old)
    assert error.value.status == 400 and error.value.code == "dump_too_old"
    assert "retention period (30 days)" in error.value.message
    assert read(old, retention_ms=None).parsed.accepted > 0  # retention inf keeps everything


def test_a_dump_from_the_future_is_refused():
    with pytest.raises(IngestError) as error:
        read(dumps.shifted(dumps.load(dumps.AUDIO_ONLY), now_ms() + DAY_MS))
    assert error.value.status == 400 and error.value.code == "dump_in_future"
