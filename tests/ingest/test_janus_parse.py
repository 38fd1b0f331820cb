"""Janus's event posts (real ones, tests/data/janus/) into points: the SFU's view of each peer."""
import json
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcscope.dimensions import BUILTIN_DIMENSIONS
from rtcscope.ingest import formats, janus
from rtcscope.ingest.formats import IngestError, Limits
from rtcscope.storage.feed import Feed
from rtcscope.storage.schema import END_REASON_CODES, FEED_FIELDS
from tests.support.janus import posts

NOW_NS = 1_796_671_800_000_000_000  # just after the captures
KEEP_TIMES = dict(max_skew_ns=2**62)  # the captured events keep their own times


def events(name):
    for body in posts(name):
        document = json.loads(body)
        yield from document if isinstance(document, list) else [document]


def replay(name, peers=None, feed=True):
    """Every post of a capture through one JanusPeers: [Outcome]."""
    peers = peers or janus.JanusPeers()
    limits = Limits(feed=Feed("n1") if feed else None, **KEEP_TIMES)
    return [janus.parse(body, NOW_NS + index * 1000, limits, peers) for index, body in enumerate(posts(name))]


def points(outcomes, measurement=b"rtc_stats"):
    """[(tags, fields, time ns)] of one measurement's lines."""
    found = []
    for outcome in outcomes:
        for line in outcome.parsed.lines:
            series, fields, stamp = line.rsplit(b" ", 2) if line.count(b" ") == 2 else (*line.split(b" ", 1), b"0")
            name, _, tags = series.partition(b",")
            if name == measurement:
                found.append((dict(tag.split(b"=") for tag in tags.split(b",")),
                               dict(field.split(b"=", 1) for field in fields.split(b",")), int(stamp)))
    return found


def samples(outcomes, peer, kind):
    return [({name.decode(): float(value) for name, value in fields.items()}, stamp)
            for tags, fields, stamp in points(outcomes)
            if tags[b"peer"] == peer.encode() and tags.get(b"kind") == kind.encode()]


def stats_events(name, opaque_id):
    return [event for event in events(name)
            if event["type"] == 32 and event.get("subtype") == 3 and event.get("opaque_id") == opaque_id]


def test_an_echotest_peer_is_its_sfu_view_with_the_registry_metrics():
    outcomes = replay("echotest")
    for kind in ("audio", "video"):
        raw = [event for event in stats_events("echotest", "c-1/alice") if event["event"]["media"] == kind]
        got = samples(outcomes, "alice@janus", kind)
        assert len(got) == len(raw) >= 3
        for (values, stamp), event in zip(got, raw):
            stats = event["event"]
            assert stamp == event["timestamp"] * 1000  # Janus's own time, µs
            assert values["packetsReceived"] == stats["packets-received"]
            assert values["packetsSent"] == stats["packets-sent"]
            assert values["bytesReceived"] == stats["bytes-received"]
            assert values["bytesSent"] == stats["bytes-sent"]
            assert values["packetsLost"] == stats["lost"] + stats["lost-by-remote"]
            assert values["uplinkPacketsLost"] == stats["lost"]
            assert values["downlinkPacketsLost"] == stats["lost-by-remote"]
            assert values["nackCount"] == stats["nacks-received"] + stats["nacks-sent"]
            # Janus gives jitter in ms already (rtcp.c divides by the clock rate `base`).
            assert values["uplinkJitter"] == stats["jitter-local"]
            assert values["downlinkJitter"] == stats["jitter-remote"]
            assert values["jitter"] == max(stats["jitter-local"], stats["jitter-remote"])
            if stats["rtt"]:
                assert values["rtt"] == stats["rtt"]
            else:  # 0: no receiver report yet, not a round trip of 0 ms
                assert "rtt" not in values
            assert values.get("uplinkQuality") == (stats["in-link-quality"] or None)
            assert values.get("downlinkQuality") == (stats["out-link-quality"] or None)


def test_only_handles_with_a_call_in_their_opaque_id_are_stored():
    outcomes = replay("echotest")
    peers = {tags[b"peer"] for measurement in (b"rtc_stats", b"rtc_calls", b"rtc_events")
             for tags, _, _ in points(outcomes, measurement)}
    assert peers == {b"alice@janus"}
    assert {tags[b"call"] for tags, _, _ in points(outcomes, b"rtc_calls")} == {b"c-1"}
    skipped = sum((outcome.skipped for outcome in outcomes), Counter())
    assert skipped == {"no_opaque_id": 2, "invalid_opaque_id": 2}  # each handle's attach and detach


def test_every_event_type_is_counted():
    counted = sum((outcome.types for outcome in replay("echotest")), Counter())
    raw = Counter(janus.EVENT_TYPES[event["type"]] for event in events("echotest"))
    assert counted == raw
    assert set(raw) == {"core", "transports", "sessions", "handles", "jsep", "webrtc", "media", "plugins"}


def test_nothing_of_an_address_a_candidate_or_an_sdp_is_stored():
    stored = b"\n".join(line for name in ("echotest", "videoroom", "single")
                        for outcome in replay(name) for line in outcome.parsed.lines)
    for secret in (b"192.0.2.2", b"fd00::2", b"127.0.0.1", b"typ host", b"a=fingerprint", b"ufrag"):
        assert secret not in stored


def test_a_detach_ends_the_sfu_peer_explicitly():
    outcomes = replay("echotest")
    detach = next(event for event in events("echotest")
                  if event["type"] == 2 and event["event"]["name"] == "detached" and event.get("opaque_id") == "c-1/alice")
    ends = points(outcomes, b"rtc_events")
    assert len(ends) == 1
    tags, fields, _ = ends[0]
    assert tags == {b"call": b"c-1", b"peer": b"alice@janus"}
    assert float(fields[b"at"]) == detach["timestamp"] // 1000
    assert float(fields[b"reason"]) == END_REASON_CODES["explicit"]
    feed_ends = [line for outcome in outcomes for line in outcome.parsed.lines
                 if line.startswith(b"rtc_feed") and b"end=1.0" in line]
    assert len(feed_ends) == 1 and b'peer="alice@janus"' in feed_ends[0] and b"reason=" not in feed_ends[0]


def test_a_session_timeout_ends_its_peers_as_timed_out():
    outcomes = replay("timeout")
    presence = points(outcomes, b"rtc_calls")
    assert {(tags[b"call"], tags[b"peer"]) for tags, _, _ in presence} == {(b"c-2", b"carol@janus")}  # from the attach
    assert not points(outcomes)  # no media: no samples
    ends = points(outcomes, b"rtc_events")
    assert len(ends) == 1  # the detach that follows the timeout does not end it again
    assert float(ends[0][1][b"reason"]) == END_REASON_CODES["timeout"]
    feed_end = next(line for outcome in outcomes for line in outcome.parsed.lines
                    if line.startswith(b"rtc_feed") and b"end=1.0" in line)
    assert f"reason={END_REASON_CODES['timeout']!r}".encode() in feed_end


def test_a_detach_before_the_session_timeout_is_overtaken_by_it():
    """Janus detaches a timed-out session's handles from their own threads: the detach
    can come first. The timeout's end follows it, and the latest end is the peer's."""
    timeout, detach = (event for event in events("timeout") if event["type"] == 1 and event["event"]["name"] == "timeout"
                       or event["type"] == 2 and event["event"]["name"] == "detached")
    attach = next(event for event in events("timeout") if event["type"] == 2 and event["event"]["name"] == "attached")
    peers, limits = janus.JanusPeers(), Limits(**KEEP_TIMES)
    janus.parse(json.dumps([attach]).encode(), NOW_NS, limits, peers)
    first = janus.parse(json.dumps([detach]).encode(), NOW_NS, limits, peers)
    second = janus.parse(json.dumps([timeout]).encode(), NOW_NS + 1000, limits, peers)
    assert [float(fields[b"reason"]) for _, fields, _ in points([first, second], b"rtc_events")] == [
        END_REASON_CODES["explicit"], END_REASON_CODES["timeout"]]
    assert not peers.handles


def test_a_videoroom_peer_is_the_union_of_its_handles():
    """A publisher handle (Janus receives) and a subscriber handle (Janus sends), one opaque_id:
    one peer whose counters are both handles' latest, summed, and never step back."""
    outcomes = replay("videoroom")
    raw = stats_events("videoroom", "c-1/alice")
    assert len({event["handle_id"] for event in raw}) == 2
    for kind in ("audio", "video"):
        got = samples(outcomes, "alice@janus", kind)
        assert got
        latest = {}
        for event in raw:
            if event["event"]["media"] == kind:
                latest[event["handle_id"]] = event["event"]
        values, _ = got[-1]
        assert values["packetsReceived"] == sum(stats["packets-received"] for stats in latest.values())
        assert values["packetsSent"] == sum(stats["packets-sent"] for stats in latest.values())
        assert min(stats["packets-sent"] for stats in latest.values()) == 0  # the publisher's: Janus only receives
        for counter in ("packetsReceived", "packetsSent", "bytesReceived", "bytesSent"):
            series = [values[counter] for values, _ in got]
            assert series == sorted(series), counter
        with_rtt = [values for values, _ in got if "rtt" in values]
        assert with_rtt and all(0 < values["rtt"] < 1000 for values in with_rtt)
    ends = points(outcomes, b"rtc_events")
    assert sorted(tags[b"peer"] for tags, _, _ in ends) == [b"alice@janus", b"bob@janus"]  # once each, at the last detach


def test_the_last_handles_detach_ends_the_peer_not_the_first():
    alice = [event for event in events("videoroom") if event.get("opaque_id") == "c-1/alice"]
    detaches = [event for event in alice if event["type"] == 2 and event["event"]["name"] == "detached"]
    peers, limits = janus.JanusPeers(), Limits(**KEEP_TIMES)
    janus.parse(json.dumps([event for event in alice if event not in detaches]).encode(), NOW_NS, limits, peers)
    first = janus.parse(json.dumps(detaches[:1]).encode(), NOW_NS, limits, peers)
    assert not first.parsed.events and peers.live_handles(("c-1", "alice@janus"))
    last = janus.parse(json.dumps(detaches[1:]).encode(), NOW_NS, limits, peers)
    assert last.parsed.events == 1 and not peers.handles


def test_ungrouped_posts_and_combined_media_statistics():
    outcomes = replay("single")
    assert all(isinstance(json.loads(body), dict) for body in posts("single"))
    combined = stats_events("single", "c-1/alice")
    assert combined and all(isinstance(event["event"], list) for event in combined)
    for kind in ("audio", "video"):
        got = samples(outcomes, "alice@janus", kind)
        assert len(got) == len(combined)
        last = next(info for info in combined[-1]["event"] if info["media"] == kind)
        assert got[-1][0]["packetsReceived"] == last["packets-received"]


def test_webrtc_states_are_connection_samples_and_the_pair_a_dimension():
    outcomes = replay("echotest")
    connection = samples(outcomes, "alice@janus", "connection")
    ice = [values["iceState"] for values, _ in connection if "iceState" in values]
    assert ice == [janus.ICE_STATE_CODES[name] for name in ("gathering", "connecting", "connected", "ready")]
    dtls = [values["dtlsState"] for values, _ in connection if "dtlsState" in values]
    assert dtls == [janus.DTLS_STATE_CODES["trying"], janus.DTLS_STATE_CODES["connected"]]
    dimensions = {}
    for outcome in outcomes:
        dimensions.update(outcome.dimensions.get(("c-1", "alice@janus"), {}))
    assert dimensions == {"emitter": "janus-test", "candidate_type": "host", "transport": "udp",
                          "audio_codec": "opus", "video_codec": "VP8"}
    assert set(dimensions) <= set(BUILTIN_DIMENSIONS)  # names §15's breakdowns know


@pytest.mark.parametrize("name", ["videoroom", "single"])
def test_hangups_are_kept_with_their_reason(name):
    raw = [(event["opaque_id"], event["event"]["reason"]) for event in events(name)
           if event["type"] == 16 and event["event"].get("connection") == "hangup"]
    assert raw  # the browser closed its peer connection before the detach: "DTLS alert"
    got = []
    for peer in {opaque_id.split("/")[1] for opaque_id, _ in raw}:
        got += [values["hangupReason"] for values, _ in samples(replay(name), peer + "@janus", "connection")
                if "hangupReason" in values]
    assert sorted(got) == sorted(janus.HANGUP_REASON_CODES[reason] for _, reason in raw)


def test_ice_failure_is_kept_as_state_and_hangup_reason():
    template = next(event for event in events("echotest") if event["type"] == 16 and event.get("subtype") == 1)
    failed = {**template, "event": {**template["event"], "ice": "failed"}}
    hangup = {**template, "subtype": 6, "event": {"connection": "hangup", "reason": "ICE failed"}}
    outcome = janus.parse(json.dumps([failed, hangup]).encode(), NOW_NS, Limits(**KEEP_TIMES), janus.JanusPeers())
    got = [values for values, _ in samples([outcome], "alice@janus", "connection")]
    assert got == [{"iceState": janus.ICE_STATE_CODES["failed"]}, {"hangupReason": janus.HANGUP_REASON_CODES["ICE failed"]}]


def test_the_points_are_those_of_the_json_path():
    """One implementation: an SFU sample is the line, presence and feed row that a JSON
    sample of the same values gives."""
    event = next(event for event in stats_events("echotest", "c-1/alice") if event["event"]["rtt"])
    fed = janus.parse(json.dumps(event).encode(), NOW_NS, Limits(feed=Feed("n1"), **KEEP_TIMES), janus.JanusPeers())
    (_, fields, stamp), = [point for point in points([fed]) if point[0].get(b"kind") == event["event"]["media"].encode()]
    values = {name.decode(): json.loads(value) for name, value in fields.items()}  # as written: Janus's integers too
    body = {"call": "c-1", "peer": "alice@janus", "kind": event["event"]["media"], "ts": stamp / 1e6, "stats": values}
    json_fed = formats.parse(json.dumps(body).encode(), NOW_NS, Limits(feed=Feed("n1"), **KEEP_TIMES))
    # Beside them, the SFU peer's dimensions (its emitter, which no JSON sample has): its rtc_dimensions
    # point and the feed row's `d`.
    dimensions = [line for line in fed.parsed.lines if line.startswith(b"rtc_dimensions,")]
    assert len(dimensions) == 1 and rb'\"emitter\":\"janus-test\"' in dimensions[0]
    lines = [re.sub(rb',d="(\\.|[^"\\])*"', b"", line) for line in fed.parsed.lines if line not in dimensions]
    assert lines == json_fed.lines
    assert [line[:8] for line in lines] == [b"rtc_stat", b"rtc_call", b"rtc_feed"]
    assert fed.parsed.accepted == json_fed.accepted == 1
    assert set(FEED_FIELDS) & set(values) == {"rtt", "jitter", "packetsLost", "packetsReceived", "packetsSent"}


@pytest.mark.parametrize("body, message", [
    (b"{not json", "invalid JSON"),
    (b"42", "body must be a Janus event"),
    (b"[1]", "index 1: each event must be a JSON object"),
    (b'[{"type": "media"}]', "index 1: type must be"),
    (b'[{"type": 2, "handle_id": "7", "event": {"name": "attached"}}]', "index 1: handle_id must be an integer"),
    (b'[{"type": 2, "handle_id": 7, "event": []}]', "index 1: event must be an object"),
    (b'[{"type": 2, "handle_id": 7, "opaque_id": 5, "event": {"name": "attached"}}]', "opaque_id must be a string"),
    (b'[{"type": 16, "subtype": 1, "handle_id": 7, "opaque_id": "c/p", "event": {"ice": 3}}]', "event.ice must be a string"),
    (b'[{"type": 32, "subtype": 3, "handle_id": 7, "opaque_id": "c/p", "event": {"media": "audio", "lost": "2"}}]',
     "event.lost must be a number"),
    (b'[{"type": 32, "subtype": 3, "opaque_id": "c/p", "event": {"media": "audio"}}]', "needs its handle_id"),
])
def test_a_malformed_post_is_refused_whole(body, message):
    peers = janus.JanusPeers()
    good = next(event for event in events("echotest") if event["type"] == 2 and event.get("opaque_id") == "c-1/alice")
    mixed = b"[" + json.dumps(good).encode() + b"," + body.strip(b"[]") + b"]" if body.startswith(b"[") else body
    with pytest.raises(IngestError) as raised:
        janus.parse(mixed, NOW_NS, Limits(**KEEP_TIMES), peers)
    assert raised.value.status == 400 and message in raised.value.message
    assert not peers.handles  # the good event before it was not applied either


def test_more_events_than_samples_allowed_is_413():
    with pytest.raises(IngestError) as raised:
        janus.parse(b"[" + b",".join([b'{"type": 128}'] * 11) + b"]", NOW_NS, Limits(max_samples=10), janus.JanusPeers())
    assert raised.value.status == 413


@pytest.mark.parametrize("opaque_id, expected", [
    ("room-7/alice", ("room-7", "alice@janus")),
    ("room:7", ("room:7", "janus-42@janus")),
    ("room/", None),
    ("/alice", None),
    ("room 7/alice", None),
    ("room/al/ice", None),
    ("room/" + "a" * 123, None),  # with @janus beyond 128 characters
    ("room/" + "a" * 122, ("room", "a" * 122 + "@janus")),
])
def test_call_and_peer_from_the_opaque_id(opaque_id, expected):
    assert janus.JanusPeers().peer_of(opaque_id, 42) == expected


def test_an_idle_handle_is_forgotten_and_the_table_is_bounded():
    clock = [0.0]
    peers = janus.JanusPeers(idle_s=60, max_handles=3, clock=lambda: clock[0])
    limits = Limits(**KEEP_TIMES)
    for handle_id in range(5):
        janus.parse(json.dumps({"type": 2, "handle_id": handle_id, "session_id": 1, "opaque_id": f"c/p{handle_id}",
                                "event": {"name": "attached"}}).encode(), NOW_NS, limits, peers)
    assert list(peers.handles) == [2, 3, 4] and set(peers.peers) == {("c", f"p{n}@janus") for n in (2, 3, 4)}
    clock[0] = 61.0
    janus.parse(b'{"type": 256, "event": {}}', NOW_NS, limits, peers)
    assert not peers.handles and not peers.peers and not peers.sessions


def read_both_ways(body):
    """A post's (actions, events per type, skipped per reason) read as msgspec decodes it (None: left to the
    complete reading) and as orjson and `_read` read it, or the IngestError message either way gives."""
    def read(reader):
        types, skipped = {}, {}
        try:
            actions = reader(types, skipped)
        except IngestError as exc:
            return exc.message
        return None if actions is None else ([action for action in actions if action is not None], types, skipped)
    limits = Limits(max_samples=50)
    decoded = read(lambda types, skipped: janus._read_decoded(body, limits, types, skipped))
    complete = read(lambda types, skipped: [janus._read(event, index, types, skipped)
                                            for index, event in enumerate(janus._document(body, limits))])
    return decoded, complete


@pytest.mark.parametrize("name", ["echotest", "videoroom", "single", "timeout"])
def test_what_janus_posts_is_decoded_the_short_way_to_what_the_complete_reading_gives(name):
    for body in posts(name):
        decoded, complete = read_both_ways(body)
        assert decoded is not None  # Janus's own posts never need the complete reading
        assert decoded == complete


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.sampled_from(["data", "audio", "video", "video-sim1", "c-1/carol", "", "opus"])
    | st.just("x\ud800"),  # a lone surrogate: not UTF-8 once unescaped
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=4)
CAPTURED = [event for name in ("echotest", "videoroom", "single", "timeout") for event in events(name)]
NAMES = sorted({name for event in CAPTURED for body in [event, event.get("event")] if isinstance(body, dict) for name in body})
READ = ["type", "subtype", "handle_id", "session_id", "timestamp", "opaque_id", "emitter", "event", "media", "mid",
        "codec", "lost", "rtt", "packets-received", "jitter-remote", "name", "ice", "reason"]  # what is read, more often


@st.composite
def janus_posts(draw):
    """Captured events, some with a member changed, added or removed (at the top or in their `event`), as Janus
    would send them or with the text not ASCII, or not even UTF-8."""
    posted = []
    for event in draw(st.lists(st.sampled_from(CAPTURED), min_size=1, max_size=8)):
        event = json.loads(json.dumps(event))
        for _ in range(draw(st.integers(0, 2))):
            body = event.get("event")
            target = body[0] if isinstance(body, list) and body else body
            target = target if isinstance(target, dict) and draw(st.booleans()) else event
            name = draw(st.sampled_from(NAMES) | st.sampled_from(READ))
            if draw(st.integers(0, 4)):
                target[name] = draw(ANY_JSON)
            else:
                target.pop(name, None)
        posted.append(event)
    document = posted[0] if len(posted) == 1 and draw(st.booleans()) else posted
    ascii_only = draw(st.booleans())
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(janus_posts())
def test_a_post_decoded_the_short_way_reads_as_the_complete_reading_reads_it(body):
    decoded, complete = read_both_ways(body)
    assert decoded is None or decoded == complete


def variant(name, change):
    """The first media statistics event of capture `name`, changed by `change(event)`, as a post."""
    event = json.loads(json.dumps(next(event for event in events(name) if event["type"] == 32 and event["subtype"] == 3)))
    change(event)
    return json.dumps([event], ensure_ascii=False).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("body, decoded", [
    # With a data channel, combined statistics carry it too (media "data"): left out.
    (variant("single", lambda event: event["event"].append({"mid": "2", "media": "data", "bytes-received": 300})), True),
    (variant("echotest", lambda event: event.update(unread="caf\u00e9")), True),  # not ASCII, UTF-8
    (variant("echotest", lambda event: event.update(unread="x\ud800")), False),  # not UTF-8
    (variant("echotest", lambda event: event.update(handle_id=2**63)), False),  # beyond 64 bits signed: orjson's
    (variant("echotest", lambda event: event["event"].update(lost=True)), False),  # refused, as the complete reading says
    (variant("echotest", lambda event: event["event"].update(media="video-sim3")), False),  # a medium Janus does not name
    (variant("echotest", lambda event: event.update(type=512)), False),  # a type Janus does not have
    (variant("echotest", lambda event: event.pop("opaque_id")), True),  # skipped
    (variant("echotest", lambda event: event.update(opaque_id="")), True),  # skipped
    (variant("echotest", lambda event: event.pop("handle_id")), True),  # refused
])
def test_what_the_short_way_leaves_to_the_complete_reading(body, decoded):
    short, complete = read_both_ways(body)
    assert (short is not None) == decoded
    assert short is None or short == complete
    assert complete is not None


def test_the_sfu_peers_series_prefixes_are_kept_from_one_post_to_the_next_and_bounded(monkeypatch):
    def stored(peers):
        return [line for outcome in replay("videoroom", peers) for line in outcome.parsed.lines]
    expected = stored(janus.JanusPeers())
    kept = janus.JanusPeers()
    assert stored(kept) == expected
    assert ("c-1", "alice@janus", "audio") in kept.prefixes and ("c-1", "alice@janus") in kept.prefixes
    monkeypatch.setattr(janus, "MAX_SERIES", 3)
    few = janus.JanusPeers()
    assert stored(few) == expected and 0 < len(few.prefixes) <= 3
