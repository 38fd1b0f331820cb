#!/usr/bin/env python3
"""Write the MaxMind-format test databases beside this file, for --geoip-db in tests:

    .venv/bin/python tests/data/make_geoip_db.py

geoip-test.mmdb maps loopback (127.0.0.0/8, ::1) to a country and an AS
number, so a server under test on 127.0.0.1 has both, and has networks in
each record layout the reader takes (MaxMind's, IPinfo's). geoip-test-asn.mmdb
is laid out as GeoLite2-ASN, for two files given together. The numbers are
private-use AS numbers; the networks are loopback, private and documentation
ones. The files are committed; tests check them against NETWORKS.
"""
import pathlib

from mmdb_writer import MMDBWriter
from netaddr import IPSet

HERE = pathlib.Path(__file__).resolve().parent
COMBINED = HERE / "geoip-test.mmdb"
ASN_ONLY = HERE / "geoip-test-asn.mmdb"

# file -> [(networks, record, the dimensions the record gives)]
NETWORKS = {
    COMBINED: [
        (["127.0.0.0/8", "::1/128"], {"country": {"iso_code": "NZ", "names": {"en": "New Zealand"}},
                                      "autonomous_system_number": 64512,
                                      "autonomous_system_organization": "rtcscope test loopback"},
         {"country": "NZ", "asn": "AS64512"}),
        (["10.0.0.0/8"], {"country": {"iso_code": "BR"}}, {"country": "BR"}),
        (["198.51.100.0/24"], {"autonomous_system_number": 64500}, {"asn": "AS64500"}),
        # IPinfo's layout.
        (["192.0.2.0/24", "2001:db8::/32"], {"country_code": "JP", "asn": "AS64501", "as_name": "test"},
         {"country": "JP", "asn": "AS64501"}),
        # Only the country a block is registered in: not where it is, so no country.
        (["203.0.113.0/24"], {"registered_country": {"iso_code": "FR"}}, {}),
    ],
    ASN_ONLY: [
        (["127.0.0.0/8"], {"autonomous_system_number": 64999}, {"asn": "AS64999"}),
        (["10.0.0.0/8"], {"autonomous_system_number": 64513, "autonomous_system_organization": "test"},
         {"asn": "AS64513"}),
    ],
}


def main():
    for path, networks in NETWORKS.items():
        writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=f"rtcscope-test-{path.stem}",
                            languages=["en"], description="rtcscope's test database")
        for cidrs, record, _ in networks:
            writer.insert_network(IPSet(cidrs), record)
        writer.to_db_file(str(path))
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
