"""country and asn from the client's address.

By default the country comes from iptocc, whose wheel embeds the five
Regional Internet Registries' allocations (refreshed nightly, MIT/Apache-2.0,
under 2 MB, a fraction of a µs per lookup): the country a block is assigned
to, which agrees with geolocation databases for about 95 % of IPv4 addresses.
No maintained package ships an address-to-AS-number table, so `asn` needs a
database the operator keeps: `--geoip-db` takes MaxMind-format files
(GeoLite2/GeoIP2 Country, City or ASN, DB-IP lite, IPinfo lite; several
separated by commas, the first that knows a dimension answers), and then
replaces the embedded table.

Private, loopback and other non-public addresses are in no public database,
so they give nothing. An operator's own file decides for itself (it may map
the office networks). The address is only looked up, never kept.
"""
import re

import iptocc
import maxminddb

_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_ASN_RE = re.compile(r"AS[0-9]{1,10}")
_MAPPED_V4 = "::ffff:"


class GeoIPError(ValueError):
    """A --geoip-db file that cannot be read as a MaxMind database."""


class GeoIP:
    """Looks up an address in the operator's databases, else in the embedded one."""

    def __init__(self, paths=()):
        self.readers = []
        for path in paths:
            try:
                self.readers.append(maxminddb.open_database(path))
            except (OSError, maxminddb.InvalidDatabaseError) as exc:
                self.close()
                raise GeoIPError(f"--geoip-db {path}: {exc}") from None

    @classmethod
    def from_option(cls, text):
        """The --geoip-db value: comma-separated paths, or empty for the embedded table."""
        return cls([path.strip() for path in (text or "").split(",") if path.strip()])

    def lookup(self, address: str | None) -> dict[str, str]:
        """{"country": "DE", "asn": "AS3320"}, each only when known."""
        if not address:
            return {}
        if address.startswith(_MAPPED_V4) and "." in address:  # a dual-stack socket's IPv4 client
            address = address[len(_MAPPED_V4):]
        if not self.readers:
            try:
                country = iptocc.country_code(address)
            except (TypeError, ValueError):
                return {}
            return {"country": country} if country.__class__ is str and len(country) == 2 else {}
        found = {}
        for reader in self.readers:
            try:
                record = reader.get(address)
            except ValueError:  # not an address
                return {}
            if isinstance(record, dict):
                for name, value in _record_dimensions(record):
                    found.setdefault(name, value)
            if len(found) == 2:
                break
        return found

    def close(self):
        for reader in self.readers:
            reader.close()
        self.readers = []


def _record_dimensions(record):
    """(name, value) of a record in any of the common layouts: MaxMind's and DB-IP's
    (`country.iso_code`, `autonomous_system_number`) and IPinfo's (`country_code`, `asn`).
    Only the country the address is in; the one its block is registered to would be a guess."""
    country = record.get("country")
    country = country.get("iso_code") if isinstance(country, dict) else record.get("country_code")
    if isinstance(country, str) and _COUNTRY_RE.fullmatch(country):
        yield "country", country
    number = record.get("autonomous_system_number")
    if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 2**32:
        yield "asn", f"AS{number}"
    else:
        asn = record.get("asn")
        if isinstance(asn, str) and _ASN_RE.fullmatch(asn):
            yield "asn", asn
