"""The demo fleet's peers carry dimensions the extraction reads back: browsers, countries,
routes, codecs and tags, with the bad cohort where the demo puts it."""
import argparse
import collections
import importlib.util
import pathlib
import time

import pytest

from rtcscope.dimensions.extract import Extractor
from rtcscope.ingest.formats import Limits, parse

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "demo_fleet.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_fleet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def extractor():
    return Extractor()


def fleet(demo, **options):
    args = argparse.Namespace(server="http://127.0.0.1:9", calls=300, bad_every=17, interval=2.0, call_minutes=8.0,
                              duration=0, key="", seed=11, leave_live=False, allow_remote=False, xheaders=True,
                              no_bad_cohort=False)
    vars(args).update(options)
    return demo.Fleet(args)


def peer_dimensions(extractor, peer, call):
    """What the server would learn of one peer from one round of its samples."""
    found = dict(extractor.client(peer.client.user_agent, peer.client.address))  # the answer is shared
    for sample in peer.samples(call.name, time.time(), 2.0):
        found.update(extractor.tags(sample.get("tags"), "sample"))
        if "report" in sample:
            found.update(extractor.report(sample["report"]))
    return found


def test_every_peer_has_its_dimensions(demo, extractor):
    seen = collections.defaultdict(collections.Counter)
    for call in fleet(demo).calls:
        for peer in call.peers:
            found = peer_dimensions(extractor, peer, call)
            for name, value in found.items():
                seen[name][value] += 1
            assert {"browser", "os", "country", "candidate_type", "transport", "network_type", "audio_codec",
                    "region", "app_version", "media_server"} <= set(found)
            assert (found["turn_server"] is None) == (found["candidate_type"] != "relay")
    assert set(seen["browser"]) >= {"Chrome", "Edge", "Firefox", "Safari", "Mobile Safari", "Chrome Mobile"}
    assert set(seen["os"]) >= {"Windows", "Mac OS X", "iOS", "Android"}
    assert set(seen["country"]) == {"DE", "GB", "FR", "US", "BR", "JP", "IN"}
    assert set(seen["network_type"]) == {"wifi", "ethernet", "cellular"}
    assert set(seen["turn_server"]) == {None, "turn-1.example.com:3478", "turn-2.example.com:443",
                                        "turn-3.example.com:443"}
    assert set(seen["relay_protocol"]) == {None, "udp", "tcp", "tls"}
    assert set(seen["video_codec"]) == {"VP8", "VP9", "H264", "AV1"}


def test_the_bad_cohort(demo, extractor):
    """Every peer relayed over TCP through turn-2 is bad; few others are."""
    cohort = other = 0
    bad_in_cohort = bad_elsewhere = 0
    for call in fleet(demo).calls:
        for peer in call.peers:
            found = peer_dimensions(extractor, peer, call)
            if found["turn_server"] == "turn-2.example.com:443" and found["relay_protocol"] == "tcp":
                cohort += 1
                bad_in_cohort += peer.bad
            else:
                other += 1
                bad_elsewhere += peer.bad
    assert cohort >= 30 and bad_in_cohort == cohort
    assert bad_elsewhere / other < 0.05


def test_no_bad_cohort(demo):
    peers = [peer for call in fleet(demo, no_bad_cohort=True).calls for peer in call.peers]
    turn_2 = [peer for peer in peers if peer.client.turn == demo.BAD_TURN]
    assert len(turn_2) >= 30
    assert sum(peer.bad for peer in turn_2) < 0.2 * len(turn_2)
    assert sum(peer.bad for peer in peers) < 0.05 * len(peers)


def test_without_xheaders_no_address(demo):
    assert all(peer.client.address is None and "X-Real-IP" not in peer.client.headers()
               for call in fleet(demo, xheaders=False).calls for peer in call.peers)


def test_the_server_takes_the_samples(demo):
    """The samples the demo sends parse as before: the report's pair gives the connection's rtt."""
    call = fleet(demo).calls[0]
    samples = [sample for peer in call.peers for sample in peer.samples(call.name, time.time(), 2.0)]
    parsed = parse(demo.json.dumps(samples).encode(), time.time_ns(), Limits())
    kinds = collections.Counter(line.split(b",kind=")[1].split(b",")[0].split(b" ")[0] for line in parsed.lines
                                if b",kind=" in line)
    assert kinds[b"connection"] == len(call.peers)
    assert kinds[b"audio"] == len(call.peers)


def test_a_phone_moves_from_wifi_to_cellular(demo, extractor):
    movers = [(call, peer) for call in fleet(demo).calls for peer in call.peers if peer.client.moves_at is not None]
    assert movers
    call, peer = movers[0]
    before = peer_dimensions(extractor, peer, call)
    peer.client.moves_at = time.time() - 1
    after = peer_dimensions(extractor, peer, call)
    assert (before["network_type"], after["network_type"]) == ("wifi", "cellular")
