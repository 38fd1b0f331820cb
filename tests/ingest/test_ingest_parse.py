"""The ingest parser on its own: formats, escapes, counters and limits, no HTTP."""
import orjson
import pytest

from rtcscope import registry
from rtcscope.ingest.connection import StatsConnection
from rtcscope.ingest.formats import IngestError, Limits, parse
from rtcscope.storage.feed import Feed
from rtcscope.storage.lines import SERIES_PREFIXES_LIMIT
from rtcscope.storage.schema import FEED_FIELDS, FEED_MAX_SAMPLES
from tests.support.reference import decode_samples
from tests.support.reports import clean_reports

NOW = 1_795_536_126_812_000_000


def lines(body, **kwargs):
    return parse(body.encode() if isinstance(body, str) else body, NOW, Limits(), **kwargs)


def test_line_protocol_encodes_floats_sorted_tags_and_presence():
    parsed = lines(f"rtc_stats,peer=bob,kind=audio,id=c1 rtt=41i,ok=T {NOW}")
    assert parsed.lines[0] == f"rtc_stats,call=c1,kind=audio,peer=bob rtt=41.0,ok=1.0 {NOW}".encode()
    assert parsed.lines[1] == (f"rtc_calls,call=c1,peer=bob first={NOW // 10**6}.0,last={NOW // 10**6}.0,"
                               f"recv={NOW // 10**6}.0 {NOW}").encode()
    assert (parsed.accepted, parsed.dropped, parsed.restamped) == (1, 0, 0)


def test_escaped_spaces_and_commas_in_tags_are_unescaped_then_validated():
    with pytest.raises(IngestError, match="call must be"):
        lines(r"rtc_stats,call=a\ b rtt=1")
    parsed = lines(r"rtc_stats,call=a,note=x\ y\,z rtt=1")  # unknown tags are ignored, escapes and all
    assert parsed.accepted == 1


def test_escaped_measurement_name_is_compared_unescaped():
    with pytest.raises(IngestError, match="measurement must be rtc_stats"):
        lines(r"rtc\ stats,call=a rtt=1")


def test_quoted_string_containing_separators_is_a_string_field_error():
    with pytest.raises(IngestError, match="string"):
        lines('rtc_stats,call=a note="a b,c=d",rtt=1')


def test_unterminated_string_is_an_error():
    with pytest.raises(IngestError, match="unterminated"):
        lines('rtc_stats,call=a note="abc rtt=1')


def test_missing_values_are_dropped_and_a_sample_of_only_missing_values_is_not_stored():
    parsed = lines("rtc_stats,call=a inputLevel=undefined,x=NaN,y=null,z=")
    assert (parsed.accepted, parsed.dropped) == (0, 4)
    assert parsed.lines == []


def test_unicode_and_invalid_utf8():
    with pytest.raises(IngestError, match="call must be"):
        lines("rtc_stats,call=ünïcode rtt=1")
    with pytest.raises(IngestError, match="UTF-8"):
        lines(b"rtc_stats,call=a rtt=1\xff")


def test_json_ms_timestamp_keeps_microseconds_and_sub_ms_fractions():
    parsed = lines('{"call": "a", "ts": 1795536126812.5, "stats": {"rtt": 1}}')
    assert parsed.lines[0].endswith(b" 1795536126812500000")


def test_server_stamps_are_spread_within_a_request():
    parsed = lines("rtc_stats,call=a rtt=1\nrtc_stats,call=a rtt=2")
    stamps = [int(line.rsplit(b" ", 1)[1]) for line in parsed.lines if line.startswith(b"rtc_stats")]
    assert stamps == [NOW + 1000, NOW + 2000]


def test_precision_scales_timestamps():
    parsed = lines(f"rtc_stats,call=a rtt=1 {NOW // 10**6}", precision="ms")
    assert parsed.lines[0].endswith(f" {NOW}".encode())


def test_deep_nesting_and_huge_numbers():
    with pytest.raises(IngestError):
        lines("[" * 5000 + "]" * 5000)
    parsed = lines('{"call": "a", "stats": {"big": 1e308, "bigger": 1e999, "int": 123456789012345678901234567890}}')
    assert parsed.accepted == 1 and parsed.dropped == 1
    assert b"big=1e+308" in parsed.lines[0] and b"int=1.2345678901234568e+29" in parsed.lines[0]


def test_end_event_without_peer_ends_the_whole_call():
    parsed = lines('{"call": "a", "event": "end", "ts": 1795536126000}')
    assert parsed.events == 1
    assert parsed.lines == [f"rtc_events,call=a end=1.0,at=1795536126000.0,reason=1.0 {NOW}".encode()]


def test_sample_limit_counts_extracted_and_listed_samples():
    limits = Limits(max_samples=2)
    with pytest.raises(IngestError) as error:
        parse(b"rtc_stats,call=a x=1\nrtc_stats,call=a x=2\nrtc_stats,call=a x=3", NOW, limits)
    assert error.value.status == 413


def feed_row(parsed):
    """(fields of the request's one rtc_feed presence row, its `w` decoded)."""
    [row] = [line.decode() for line in parsed.lines if line.startswith(b"rtc_feed,")]
    fields = dict(pair.split("=", 1) for pair in row.split(" ")[1].split(",", 5))
    decoded = decode_samples(fields["w"][1:-1].replace('\\"', '"'), float(fields["last"]))  # a line-protocol string
    return fields, {kind: {us: {name: value for name, value in zip(FEED_FIELDS, values) if value is not None}
                           for us, values in samples.items()} for kind, samples in decoded.items()}


def test_the_feed_row_carries_its_samples_quality_and_graph_fields():
    ms = NOW // 10**6
    body = orjson.dumps([
        {"call": "c1", "peer": "bob", "kind": "audio", "ts": ms - 1000,
         "stats": {"rtt": 41, "jitter": 3.5, "packetsLost": 7, "audioLevel": 0.5, "rttVariance": 2.0}},
        {"call": "c1", "peer": "bob", "kind": "audio", "ts": ms - 0.5, "stats": {"rtt": 45.25}},
        {"call": "c1", "peer": "bob", "kind": "video", "ts": ms,
         "stats": {"availableOutgoingBitrate": 1e6, "qualityLimitationReason": 2, "freezeCount": 1, "framesPerSecond": 30}},
        {"call": "c1", "peer": "bob", "kind": "connection", "ts": ms, "stats": {"framesPerSecond": 30}},
    ])
    parsed = parse(body, NOW, Limits(feed=Feed("n1")))
    fields, samples = feed_row(parsed)
    assert (fields["call"], fields["peer"]) == ('"c1"', '"bob"')
    assert fields["w"].startswith('"{\\"') and fields["w"].endswith(']}"')  # JSON in a line-protocol string
    assert samples == {  # µs keys, FEED_FIELDS only; the alias stored as availableBandwidth; no kind without any
        "audio": {(ms - 1000) * 1000: {"rtt": 41.0, "jitter": 3.5, "packetsLost": 7.0}, ms * 1000 - 500: {"rtt": 45.25}},
        "video": {ms * 1000: {"availableBandwidth": 1e6, "qualityLimitationReason": 2.0, "freezeCount": 1.0}}}
    assert set(FEED_FIELDS) >= {"rtt", "jitter", "fractionLost", "qualityLimitationReason", "packetsLost",
                                "packetsReceived", "packetsSent", "freezeCount", "availableBandwidth"}


def test_a_feed_row_keeps_its_newest_samples_and_line_protocol_feeds_too():
    count = FEED_MAX_SAMPLES + 10
    body = "\n".join(f"rtc_stats,call=c2,peer=p,kind=audio rtt={i}.0 {NOW - (count - i) * 10**6}" for i in range(count))
    _, samples = feed_row(parse(body.encode(), NOW, Limits(feed=Feed("n1"))))
    assert sorted(values["rtt"] for values in samples["audio"].values()) == [float(i) for i in range(10, count)]
    _, none = feed_row(parse(b"rtc_stats,call=c3 framesPerSecond=30", NOW, Limits(feed=Feed("n1"))))
    assert none == {}  # a presence row without any carried field: an empty `w`


def test_the_feed_carries_the_same_samples_from_a_report_its_stats_and_their_line_protocol():
    """`w` is made from the values each path extracted or parsed: the websocket's report, a JSON
    report, its extracted stats as JSON and as line protocol give the same samples."""
    report, ms = clean_reports()["caller"][2], NOW // 10**6
    extracted = registry.extract(report)
    connection = StatsConnection("c1", "bob", Limits(feed=Feed("n1")))
    socket_fields, socket_samples = feed_row(connection.receive(orjson.dumps({"ts": ms, "report": report}), NOW).parsed)
    json_report = feed_row(parse(orjson.dumps({"call": "c1", "peer": "bob", "ts": ms, "report": report}), NOW,
                                 Limits(feed=Feed("n1"))))
    json_stats = feed_row(parse(orjson.dumps([{"call": "c1", "peer": "bob", "ts": ms, "kind": kind, "stats": fields}
                                              for kind, fields in extracted.items()]), NOW, Limits(feed=Feed("n1"))))
    body = "\n".join(f"rtc_stats,call=c1,peer=bob,kind={kind} " + ",".join(f"{name}={value!r}" for name, value in fields.items())
                     + f" {NOW}" for kind, fields in extracted.items())
    _, line_samples = feed_row(parse(body.encode(), NOW, Limits(feed=Feed("n1"))))
    assert json_report[0]["w"] == socket_fields["w"] == json_stats[0]["w"]
    assert socket_samples == json_report[1] == json_stats[1] == line_samples == {
        kind: {ms * 1000: {name: value for name, value in fields.items() if name in FEED_FIELDS}}
        for kind, fields in extracted.items() if not set(FEED_FIELDS).isdisjoint(fields)}
    assert {"rtt", "jitter", "packetsLost", "qualityLimitationReason"} <= set(socket_samples["video"][ms * 1000])


def test_the_feed_carries_what_is_stored_of_a_sample_with_nulls_and_booleans():
    body = orjson.dumps({"call": "c1", "peer": "bob", "kind": "video", "ts": NOW // 10**6,
                         "stats": {"rtt": 41, "jitter": None, "freezeCount": True, "googRtt": 50, "framesPerSecond": 30}})
    parsed = parse(body, NOW, Limits(feed=Feed("n1")))
    assert parsed.dropped == 1
    assert parsed.lines[0].split(b" ")[1] == b"rtt=41.0,freezeCount=1.0,framesPerSecond=30.0"
    fields, samples = feed_row(parsed)
    assert fields["w"] == '"{\\"video\\":[[0,41.0,null,null,null,null,null,null,1.0,null,null]]}"'
    assert samples == {"video": {NOW // 1000: {"rtt": 41.0, "freezeCount": 1.0}}}


def test_feed_samples_of_other_writers_are_read_as_far_as_they_can_be():
    width = len(FEED_FIELDS)
    newer = orjson.dumps({"audio": [[2000, *range(width), 99.0], [0, 1.5]], "video": [[0, None, 2.0], "junk", [1.5, 3.0]]})
    assert decode_samples(newer.decode(), 10) == {  # names beyond ours cut, missing ones absent, the unreadable left out
        "audio": {8000: list(range(width)), 10000: [1.5] + [None] * (width - 1)},
        "video": {10000: [None, 2.0] + [None] * (width - 2)}}
    unordered = orjson.dumps({"audio": [[0, 2.0], [1000, 1.0], [0, None, 3.0]]}).decode()
    decoded = decode_samples(unordered, 10)
    assert list(decoded["audio"]) == [9000, 10000]  # time order, and one time's samples merged
    assert decoded["audio"][10000][:2] == [2.0, 3.0]
    assert decode_samples("audio;1000000:41.5,3.1|video;0:,,,2", 10) == {}  # a server before JSON: no samples
    assert decode_samples("", 10) == {} and decode_samples("[1, 2]", 10) == {}


def test_a_connections_series_prefixes_stay_right_and_bounded_across_frames():
    connection = StatsConnection("c1", "bob", Limits())
    ms = NOW // 10**6
    for index in range(3 * SERIES_PREFIXES_LIMIT):
        kind = "audio" if index % 2 else f"k{index}"
        frame = connection.receive(orjson.dumps({"ts": ms, "kind": kind, "stats": {"rtt": index + 0.5}}), NOW)
        connection.commit(frame)
        assert frame.parsed.lines[0] == f"rtc_stats,call=c1,kind={kind},peer=bob rtt={index}.5 {NOW}".encode()
        assert len(connection.prefixes) <= SERIES_PREFIXES_LIMIT
