"""The dimensions every ingest path extracts, with one object per server process."""
from collections.abc import Mapping

from ..storage.schema import NOT_IDENTIFIER_RE
from . import APP_DIMENSION, MAX_VALUE
from .geoip import GeoIP
from .report import connections_dimensions, report_dimensions
from .tags import DEFAULT_PEER_TAGS, check_tags, parse_peer_tags, query_tags
from .useragent import UserAgents


class Extractor:
    """The User-Agent parser, the address databases and the tag allow-list of
    the process, built from its options at start (the parser's rules load in a
    few hundred ms, a bad --geoip-db or --peer-tags stops the start)."""

    def __init__(self, peer_tags=DEFAULT_PEER_TAGS, geoip=None, user_agents=None):
        self.peer_tags = tuple(peer_tags)
        self.geoip = geoip if geoip is not None else GeoIP()
        self.user_agents = user_agents if user_agents is not None else UserAgents()

    @classmethod
    def from_options(cls, peer_tags: str, geoip_db: str = ""):
        """From --peer-tags and --geoip-db; ValueError (GeoIPError) for a bad one."""
        return cls(parse_peer_tags(peer_tags), GeoIP.from_option(geoip_db))

    def client(self, user_agent: str | None, address: str | None) -> dict[str, str]:
        """What a request or a websocket upgrade tells of its client: browser and
        OS from its User-Agent, country and asn from its address (None for an
        import: the importer is not the caller)."""
        found = self.user_agents.parse(user_agent)
        if address:
            found.update(self.geoip.lookup(address))
        return found

    def tags(self, tags, where: str) -> dict[str, str]:
        """The allowed tags of a JSON object's `tags` member (tags.check_tags)."""
        return check_tags(tags, self.peer_tags, where)

    def query_tags(self, arguments: Mapping[str, list], where: str = "query") -> dict[str, str]:
        """The allowed `tag.<name>=` arguments of a websocket ingest URL (tags.query_tags)."""
        return query_tags(arguments, self.peer_tags, where)

    report = staticmethod(report_dimensions)
    connections = staticmethod(connections_dimensions)

    @staticmethod
    def app(application_name) -> dict[str, str]:
        """rtcstats' identity `applicationName` as the `app` dimension, in identifier characters."""
        if not isinstance(application_name, str) or not application_name:
            return {}
        return {APP_DIMENSION: NOT_IDENTIFIER_RE.sub("-", application_name)[:MAX_VALUE]}
