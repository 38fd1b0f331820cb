"""The live feed's `d`: sent on change and every 10 s, nulls for what became unknown, forgotten
for a refused request; rtc_dimensions' line beside it on change."""
import json

from rtcscope.dimensions.extract import Extractor
from rtcscope.ingest.formats import Limits, parse
from rtcscope.storage.feed import Feed, apply_dimensions, decode_dimensions
from rtcscope.storage.schema import FEED_DIMENSIONS_EVERY_NS

NOW = 1_795_536_000_000_000_000
ROUTE = {"candidate_type": "relay", "relay_protocol": "tcp", "turn_server": "turn.example.com:443"}


def test_sent_on_change_and_every_ten_seconds():
    feed = Feed("n1")
    d, changed = feed.dimensions("c", "p", {"browser": "Chrome", **ROUTE}, NOW)
    assert changed and json.loads(d) == {"browser": "Chrome", **ROUTE}
    assert feed.dimensions("c", "p", {"browser": "Chrome", **ROUTE}, NOW + 1) == (None, False)
    # A request that tells less keeps what is known.
    assert feed.dimensions("c", "p", {"browser": "Chrome"}, NOW + 2) == (None, False)
    d, changed = feed.dimensions("c", "p", {"browser": "Chrome"}, NOW + FEED_DIMENSIONS_EVERY_NS + 3)
    assert not changed and json.loads(d) == {"browser": "Chrome", **ROUTE}
    # A direct route: the relay's dimensions are gone, said with nulls.
    direct = {"candidate_type": "host", "relay_protocol": None, "turn_server": None}
    d, changed = feed.dimensions("c", "p", direct, NOW + FEED_DIMENSIONS_EVERY_NS + 4)
    assert changed and json.loads(d) == {"browser": "Chrome", "candidate_type": "host", "relay_protocol": None,
                                         "turn_server": None}
    assert feed.dimensions("c", "p", direct, NOW + FEED_DIMENSIONS_EVERY_NS + 5) == (None, False)
    feed.forget([("c", "p")])
    assert feed.dimensions("c", "p", direct, NOW + FEED_DIMENSIONS_EVERY_NS + 6)[1]


def test_nothing_known_sends_nothing_and_the_memory_is_bounded():
    feed = Feed("n1", dimensions_kept=2)
    assert feed.dimensions("c", "p", {"turn_server": None}, NOW) == (None, False)
    for peer in ("a", "b", "c"):
        assert feed.dimensions("c", peer, {"os": "iOS"}, NOW)[1]
    assert feed.dimensions("c", "a", {"os": "iOS"}, NOW + 1)[1]  # the oldest was let go


def test_apply_and_decode():
    assert apply_dimensions({"os": "iOS"}, {"os": "iOS", "turn_server": None}) is None
    values, d = apply_dimensions({"os": "iOS", "network_type": "wifi"}, {"network_type": "cellular"})
    assert values == {"os": "iOS", "network_type": "cellular"} and json.loads(d) == values
    assert decode_dimensions('{"os":"iOS","x":null,"n":3}') == {"os": "iOS", "x": None}
    assert decode_dimensions("not json") == {} and decode_dimensions("[1]") == {}


def test_a_request_writes_d_and_rtc_dimensions_on_change_only():
    limits = Limits(feed=Feed("n1"))
    body = json.dumps([{"call": "c", "peer": "p", "stats": {"rtt": 1.0}, "tags": {"region": "eu", "x": "y"}},
                       {"call": "c", "stats": {"rtt": 2.0}}]).encode()
    parsed = parse(body, NOW, limits, "ns", Extractor(peer_tags=("region",)), {"os": 'Quote"d\\OS'})
    dimensions = [line for line in parsed.lines if line.startswith(b"rtc_dimensions,")]
    assert dimensions == [b'rtc_dimensions,call=c,peer=p d="{\\"os\\":\\"Quote\\\\\\"d\\\\\\\\OS\\",\\"region\\":\\"eu\\"}" '
                          + str(NOW).encode()]
    feed_rows = [line for line in parsed.lines if line.startswith(b"rtc_feed,")]
    assert [b',d="' in row for row in feed_rows] == [True, False]  # the peerless presence has none
    assert parsed.sent_dimensions == [("c", "p")]
    again = parse(body, NOW + 1000, limits, "ns", Extractor(peer_tags=("region",)), {"os": 'Quote"d\\OS'})
    assert not [line for line in again.lines if line.startswith(b"rtc_dimensions,") or b',d="' in line]
