"""country and asn from an address: the embedded table, and MaxMind-format files (--geoip-db)."""
import pytest

from rtcscope.dimensions.geoip import GeoIP, GeoIPError
from tests.data import make_geoip_db
from tests.data.make_geoip_db import ASN_ONLY, COMBINED


@pytest.fixture(scope="module")
def embedded():
    return GeoIP()


@pytest.fixture(scope="module")
def test_db():
    geoip = GeoIP([str(COMBINED)])
    yield geoip
    geoip.close()


@pytest.mark.parametrize("address, country", [
    ("91.64.1.1", "DE"),  # a German access network
    ("81.2.69.142", "GB"),
    ("8.8.8.8", "US"),
    ("2a02:8100::1", "DE"),
    ("::ffff:91.64.1.1", "DE"),  # an IPv4 client on a dual-stack socket
])
def test_embedded_country(embedded, address, country):
    assert embedded.lookup(address) == {"country": country}


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.20", "172.16.5.4", "100.64.0.1",
                                     "fe80::1", "fd00::2", "192.0.2.2", "198.51.100.7", "203.0.113.5",
                                     "not an address", "", None, "1.2.3.4.5"])
def test_no_public_address_no_answer(embedded, address):
    """Loopback, private, link-local, shared and documentation addresses are in no public table."""
    assert embedded.lookup(address) == {}


def test_embedded_has_no_asn(embedded):
    assert "asn" not in embedded.lookup("8.8.8.8")


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1", {"country": "NZ", "asn": "AS64512"}),
    ("127.200.3.4", {"country": "NZ", "asn": "AS64512"}),
    ("::1", {"country": "NZ", "asn": "AS64512"}),
    ("::ffff:127.0.0.1", {"country": "NZ", "asn": "AS64512"}),
    ("10.9.8.7", {"country": "BR"}),
    ("198.51.100.200", {"asn": "AS64500"}),
    ("192.0.2.1", {"country": "JP", "asn": "AS64501"}),  # IPinfo's layout
    ("2001:db8::7", {"country": "JP", "asn": "AS64501"}),
    ("203.0.113.1", {}),  # only the registered country: not where the address is
    ("8.8.8.8", {}),  # the operator's file replaces the embedded table
    ("bogus", {}),
])
def test_operator_database(test_db, address, expected):
    assert test_db.lookup(address) == expected


def test_committed_databases_match_their_script():
    """Every network of the generating script answers as the script says, in the committed files."""
    for path, networks in make_geoip_db.NETWORKS.items():
        geoip = GeoIP([str(path)])
        try:
            for cidrs, _, expected in networks:
                for cidr in cidrs:
                    assert geoip.lookup(cidr.split("/")[0]) == expected, (path.name, cidr)
        finally:
            geoip.close()


def test_several_files_first_that_knows_answers():
    geoip = GeoIP.from_option(f"{COMBINED}, {ASN_ONLY}")
    try:
        assert geoip.lookup("10.1.1.1") == {"country": "BR", "asn": "AS64513"}  # asn from the second
        assert geoip.lookup("127.0.0.1") == {"country": "NZ", "asn": "AS64512"}  # the first's asn wins
    finally:
        geoip.close()


def test_empty_option_is_the_embedded_table():
    assert GeoIP.from_option("").readers == []
    assert GeoIP.from_option(" , ").readers == []


@pytest.mark.parametrize("content", [None, b"", b"not a database at all" * 100])
def test_a_bad_file_stops_the_start(tmp_path, content):
    path = tmp_path / "db.mmdb"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GeoIPError, match=r"--geoip-db .*db\.mmdb"):
        GeoIP.from_option(f"{COMBINED},{path}")
