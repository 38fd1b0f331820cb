"""A peer's dimensions as they change, and the bound on distinct values."""
import pytest

from rtcscope.dimensions import OTHER
from rtcscope.dimensions.peer import MAX_CHANGES, Change, Dimensions, ValueBound, people_values, person_values
from rtcscope.dimensions.report import report_dimensions
from tests.support.reports import relayed

WIFI_DIRECT = {"candidate_type": "srflx", "relay_protocol": None, "turn_server": None, "transport": "udp",
               "network_type": "wifi"}


def test_learnt_from_every_piece_of_data():
    peer = Dimensions()
    assert peer.update({"browser": "Chrome", "browser_version": "131", "os": "Windows"}, 1000)
    assert peer.update(WIFI_DIRECT, 2000)
    assert peer.update({"region": "eu-west"}, 3000)
    assert peer.as_json() == {"browser": "Chrome", "browser_version": "131", "os": "Windows",
                              "candidate_type": "srflx", "transport": "udp", "network_type": "wifi",
                              "region": "eu-west"}
    assert peer.changes == []  # learning is no change


def test_what_newer_data_does_not_say_is_kept():
    peer = Dimensions()
    peer.update({"browser": "Chrome", "audio_codec": "opus", "video_codec": "VP8"}, 1000)
    assert not peer.update({}, 2000)
    assert not peer.update({"audio_codec": "opus"}, 3000)  # the camera went off: VP8 stays
    assert peer.values == {"browser": "Chrome", "audio_codec": "opus", "video_codec": "VP8"}


def test_wifi_to_cellular_and_on_to_a_relay():
    peer = Dimensions()
    peer.update(WIFI_DIRECT, 1_000)
    peer.update({**WIFI_DIRECT, "network_type": "cellular"}, 60_000)
    peer.update(report_dimensions(relayed("tcp", network_type="cellular")), 90_000)
    assert peer.values["candidate_type"] == "relay"
    assert peer.values["turn_server"] == "turn-2.example.com:443"
    assert [change.as_json() for change in peer.changes] == [
        {"at": 60_000, "dimension": "network_type", "from": "wifi", "to": "cellular"},
        {"at": 90_000, "dimension": "candidate_type", "from": "srflx", "to": "relay"},
    ]


def test_back_to_a_direct_route_forgets_the_turn_server():
    peer = Dimensions()
    peer.update(report_dimensions(relayed("tcp")), 1_000)
    peer.update(WIFI_DIRECT, 5_000)
    assert "turn_server" not in peer.values and "relay_protocol" not in peer.values
    assert Change(5_000, "turn_server", "turn-2.example.com:443", None) in peer.changes
    assert Change(5_000, "candidate_type", "relay", "srflx") in peer.changes


def test_older_data_only_fills_what_is_unknown():
    """A report resent after a reconnect, minutes old, does not undo a newer change."""
    peer = Dimensions()
    peer.update({"network_type": "cellular"}, 10_000)
    assert peer.update({"network_type": "wifi", "country": "DE"}, 4_000)
    assert peer.values == {"network_type": "cellular", "country": "DE"}
    assert not peer.update({"network_type": None}, 5_000)
    assert peer.values["network_type"] == "cellular"
    assert peer.changes == []


def test_the_version_counts_the_updates_that_changed_the_values():
    peer = Dimensions()
    assert peer.version == 0
    peer.update({"browser": "Chrome"}, 1000)
    peer.update({"browser": "Chrome"}, 2000)  # nothing new
    assert peer.version == 1
    peer.update({"country": "DE"}, 500)  # older, fills what is unknown
    peer.update({"browser": "Firefox"}, 500)  # older, changes nothing
    assert peer.version == 2
    peer.update({"browser": None}, 3000)
    assert peer.version == 3 and peer.values == {"country": "DE"}


def test_a_persons_values_are_its_clients_and_what_only_its_view_knows():
    client = {"browser": "Chrome", "candidate_type": "relay", "audio_codec": "opus"}
    view = {"emitter": "janus-eu-1", "candidate_type": "srflx", "transport": "udp", "audio_codec": "opus"}
    assert person_values(client, view) == {"browser": "Chrome", "candidate_type": "relay", "audio_codec": "opus",
                                           "emitter": "janus-eu-1", "transport": "udp"}
    assert person_values(client, None) is client and person_values(client, {}) is client
    assert person_values(None, view) is view
    assert person_values(None, None) == {}
    assert people_values({"alice": client, "alice@janus": view, "bob": {"browser": "Safari"}, "x@janus": view}) == {
        "alice": person_values(client, view), "bob": {"browser": "Safari"}}
    assert people_values({"carol@janus": view}) == {"carol@janus": view}


def test_changes_are_bounded():
    peer = Dimensions()
    for second in range(100):
        peer.update({"network_type": ("wifi", "cellular")[second % 2]}, second * 1000)
    assert len(peer.changes) == MAX_CHANGES
    assert peer.changes[-1] == Change(99_000, "network_type", "wifi", "cellular")


def test_bound_past_the_limit_is_other():
    bound = ValueBound(max_values=3)
    assert [bound.admit("app_version", f"5.{n}", 0) for n in range(5)] == ["5.0", "5.1", "5.2", OTHER, OTHER]
    assert bound.admit("app_version", "5.1", 1) == "5.1"  # a known value keeps its place
    assert bound.admit("region", "eu", 1) == "eu"  # each dimension has its own places


def test_bound_is_bounded_memory():
    bound = ValueBound(max_values=10)
    for n in range(10_000):
        bound.admit("browser", f"b{n}", n)
    assert len(bound._seen["browser"]) == 10


def test_bound_forgets_values_unseen_for_long():
    bound = ValueBound(max_values=2, forget_after_s=100)
    bound.admit("app_version", "1", 0)
    bound.admit("app_version", "2", 50)
    assert bound.admit("app_version", "3", 99) == OTHER  # "1" was seen 99 s ago: still in the place
    bound.admit("app_version", "1", 120)  # seen again: "2" is now the least recently seen
    assert bound.admit("app_version", "3", 149) == OTHER
    assert bound.admit("app_version", "3", 151) == "3"  # "2" unseen for 101 s gives its place
    assert bound.admit("app_version", "2", 152) == OTHER
    assert set(bound._seen["app_version"]) == {"1", "3"}


def test_bound_a_mapping():
    bound = ValueBound(max_values=1)
    bound.admit("turn_server", "turn-1.example.com:3478", 0)
    assert bound.bound({"turn_server": "turn-9.example.com:443", "relay_protocol": None, "transport": "udp"}, 1) \
        == {"turn_server": OTHER, "relay_protocol": None, "transport": "udp"}


@pytest.mark.parametrize("max_values", [1, 1000])
def test_default_and_small_bounds(max_values):
    bound = ValueBound(max_values=max_values)
    values = [bound.admit("asn", f"AS{n}", 0) for n in range(max_values + 5)]
    assert values.count(OTHER) == 5
