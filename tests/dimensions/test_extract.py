"""The per-process extractor, as an ingest path calls it."""
import pytest

from rtcscope.dimensions.extract import Extractor
from rtcscope.dimensions.geoip import GeoIPError
from rtcscope.ingest.formats import IngestError
from tests.data.make_geoip_db import COMBINED
from tests.support.reports import HEADLESS_CHROMIUM, clean_reports, relay_tcp_capture, relayed


@pytest.fixture(scope="module")
def extractor():
    return Extractor.from_options("region,app_version", str(COMBINED))


def test_a_request_from_loopback(extractor):
    assert extractor.client(HEADLESS_CHROMIUM, "127.0.0.1") == {
        "browser": "HeadlessChrome", "browser_version": "156", "os": "Linux", "country": "NZ", "asn": "AS64512"}


def test_an_import_has_no_address(extractor):
    assert extractor.client(HEADLESS_CHROMIUM, None) == {"browser": "HeadlessChrome", "browser_version": "156",
                                                         "os": "Linux"}
    assert extractor.client(None, None) == {}


def test_a_client_seen_before_is_one_shared_answer(extractor):
    """A peer's requests repeat their User-Agent and address: the answer is looked up, not built."""
    found = extractor.client(HEADLESS_CHROMIUM, "127.0.0.1")
    assert extractor.client(HEADLESS_CHROMIUM, "127.0.0.1") is found
    assert extractor.client(HEADLESS_CHROMIUM, None) is not found
    assert extractor.client(HEADLESS_CHROMIUM, None)["browser"] == "HeadlessChrome"


def test_tags_by_the_options_allow_list(extractor):
    assert extractor.tags({"region": "eu", "media_server": "jvb-1"}, "body") == {"region": "eu"}
    assert extractor.query_tags({"tag.app_version": [b"5.2"], "tag.media_server": [b"jvb-1"]}) == {"app_version": "5.2"}
    with pytest.raises(IngestError):
        extractor.tags({"region": "e u"}, "body")


def test_report(extractor):
    assert extractor.report(relayed())["turn_server"] == "turn-2.example.com:443"
    assert extractor.connections([relayed()]) == (extractor.report(relayed()), False)  # two video codecs


def test_the_same_tags_are_one_shared_answer(extractor):
    found = extractor.tags({"region": "eu", "app_version": "5.2"}, "body")
    assert extractor.tags({"region": "eu", "app_version": "5.2"}, "body") is found == {"region": "eu",
                                                                                      "app_version": "5.2"}
    assert extractor.tags({"region": "us", "app_version": "5.2"}, "body") == {"region": "us", "app_version": "5.2"}
    # Values under names not listed are not looked at, even those that cannot be a key.
    assert extractor.tags({"region": "eu", "other": [1, {"a": 2}]}, "body") == {"region": "eu"}
    with pytest.raises(IngestError):
        extractor.tags({"region": "e u"}, "body")
    with pytest.raises(IngestError):
        extractor.tags({"region": "e u"}, "body")  # a refusal is never kept as an answer


def test_the_tags_kept_are_bounded():
    extractor = Extractor(("region",))
    extractor.TAGS_KEPT = 8
    answers = [extractor.tags({"region": f"r{n}"}, "body") for n in range(20)]
    assert len(extractor._tags) <= 8 and [answer["region"] for answer in answers] == [f"r{n}" for n in range(20)]


def test_a_peers_unchanged_requests_are_one_shared_answer(extractor):
    """Client, tags and route as the previous request of the peer had them: the same dict, which
    the live feed knows at once; each part that changes is in the next answer."""
    client = extractor.client(HEADLESS_CHROMIUM, "127.0.0.1")
    tags = extractor.tags({"region": "eu"}, "body")
    reports = clean_reports()["caller"]
    first = extractor.peer(("c", "p"), client, tags, reports[-2])
    assert first == {**client, **tags, **extractor.report(reports[-2])}
    assert extractor.peer(("c", "p"), client, extractor.tags({"region": "eu"}, "body"), reports[-1]) is first
    assert extractor.peer(("c", "q"), client, tags, reports[-1]) is not first  # another peer
    relay = relay_tcp_capture()["reports"][-1]["caller"]
    assert extractor.peer(("c", "p"), client, tags, relay) == {**client, **tags, **extractor.report(relay)}
    assert extractor.peer(("c", "p"), client, tags, reports[-1]) == first  # relayed and back, request by request
    other = extractor.tags({"region": "us"}, "body")
    assert extractor.peer(("c", "p"), client, other, reports[-1])["region"] == "us"
    assert "country" not in extractor.peer(("c", "p"), extractor.client(HEADLESS_CHROMIUM, None), other, reports[-1])
    assert extractor.peer(("c", "p"), client) is client  # nothing but the client: its answer as it is


def test_the_peers_kept_are_bounded():
    extractor = Extractor(())
    extractor.PEERS_KEPT = 5
    report = clean_reports()["caller"][-1]
    for n in range(12):
        assert extractor.peer(("c", f"p{n}"), {}, None, report) == extractor.report(report)
    assert len(extractor._peers) == 5 and ("c", "p11") in extractor._peers and ("c", "p0") not in extractor._peers


@pytest.mark.parametrize("name, app", [("Jitsi Meet", "Jitsi-Meet"), ("meet.example.com", "meet.example.com"),
                                       ("a" * 100, "a" * 64), ("", None), (None, None), (7, None)])
def test_rtcstats_application_name(name, app):
    assert Extractor.app(name) == ({} if app is None else {"app": app})


def test_bad_options_stop_the_start(tmp_path):
    with pytest.raises(ValueError, match="is taken"):
        Extractor.from_options("region,browser")
    with pytest.raises(GeoIPError):
        Extractor.from_options("region", str(tmp_path / "missing.mmdb"))
