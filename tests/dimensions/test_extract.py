"""The per-process extractor, as an ingest path calls it."""
import pytest

from rtcscope.dimensions.extract import Extractor
from rtcscope.dimensions.geoip import GeoIPError
from rtcscope.ingest.formats import IngestError
from tests.data.make_geoip_db import COMBINED
from tests.support.reports import HEADLESS_CHROMIUM, relayed


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
    assert extractor.connections([relayed()]) == extractor.report(relayed())


@pytest.mark.parametrize("name, app", [("Jitsi Meet", "Jitsi-Meet"), ("meet.example.com", "meet.example.com"),
                                       ("a" * 100, "a" * 64), ("", None), (None, None), (7, None)])
def test_rtcstats_application_name(name, app):
    assert Extractor.app(name) == ({} if app is None else {"app": app})


def test_bad_options_stop_the_start(tmp_path):
    with pytest.raises(ValueError, match="is taken"):
        Extractor.from_options("region,browser")
    with pytest.raises(GeoIPError):
        Extractor.from_options("region", str(tmp_path / "missing.mmdb"))
