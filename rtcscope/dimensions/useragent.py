"""browser, browser_version, os and os_version from a User-Agent header.

Parsed by ua-parser with the rules of uap-core (the package
ua-parser-builtins, released with every update of the rules), so the families
are uap-core's: `Chrome`, `Firefox`, `Safari`, `Mobile Safari`, `Edge`,
`HeadlessChrome`, `Chrome Mobile`, ...; `Windows`, `Mac OS X`, `Linux`,
`Android`, `iOS`, .... Versions are the parser's major version alone.

A parse costs tens of µs with the google-re2 backend (over a millisecond in
pure Python), a fleet has few distinct User-Agents, and a peer sends the same
one with every request: the answers are kept per distinct string in a bounded
LRU, keyed by the string's hash so that no User-Agent is held.
"""
from collections import OrderedDict

import ua_parser
from ua_parser.core import Domain

from . import MAX_VALUE

# Distinct User-Agents whose answers are kept.
CACHE_SIZE = 4096
# Longer headers are cut before parsing: every browser token sits well before
# this, and a client cannot make the parser scan a 64 KB header.
MAX_USER_AGENT = 512
_DOMAINS = Domain.USER_AGENT | Domain.OS


class UserAgents:
    """The User-Agent parser with its cache; built once per process (loading
    the rules takes a few hundred ms)."""

    def __init__(self, cache_size=CACHE_SIZE):
        self._resolver = ua_parser.BestAvailableResolver(ua_parser.load_builtins())
        self._cache = OrderedDict()
        self.cache_size = cache_size

    def parse(self, user_agent: str | None) -> dict[str, str]:
        """The four dimensions the header tells, a new dict of them (empty for
        none, a missing header or one no rule knows)."""
        if not user_agent:
            return {}
        user_agent = user_agent[:MAX_USER_AGENT]
        key = hash(user_agent)
        cache = self._cache
        found = cache.get(key)
        if found is None:
            found = cache[key] = self.parse_uncached(user_agent)
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return found.copy()

    def parse_uncached(self, user_agent: str) -> dict[str, str]:
        parsed = self._resolver(user_agent, _DOMAINS)
        found = {}
        for result, family_name, version_name in ((parsed.user_agent, "browser", "browser_version"),
                                                  (parsed.os, "os", "os_version")):
            if result is None or not result.family:
                continue
            found[family_name] = result.family[:MAX_VALUE]
            if result.major:
                found[version_name] = result.major[:MAX_VALUE]
        return found
