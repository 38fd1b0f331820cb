"""The dimensions every ingest path extracts, with one object per server process."""
from collections import OrderedDict
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

    # (User-Agent, address) pairs whose answers are kept: a client sends the same pair with every request.
    CLIENTS_KEPT = 4096

    def __init__(self, peer_tags=DEFAULT_PEER_TAGS, geoip=None, user_agents=None):
        self.peer_tags = tuple(peer_tags)
        self.geoip = geoip if geoip is not None else GeoIP()
        self.user_agents = user_agents if user_agents is not None else UserAgents()
        self._clients = OrderedDict()  # (hash of the User-Agent, address) -> `client`'s answer

    @classmethod
    def from_options(cls, peer_tags: str, geoip_db: str = ""):
        """From --peer-tags and --geoip-db; ValueError (GeoIPError) for a bad one."""
        return cls(parse_peer_tags(peer_tags), GeoIP.from_option(geoip_db))

    def client(self, user_agent: str | None, address: str | None) -> dict[str, str]:
        """What a request or a websocket upgrade tells of its client: browser and
        OS from its User-Agent, country and asn from its address (None for an
        import: the importer is not the caller). The same pair gives the same
        dict, which is shared: read it, never change it (the live feed then
        knows an unchanged peer at once)."""
        key = (hash(user_agent), address)
        clients = self._clients
        found = clients.get(key)
        if found is None:
            found = clients[key] = self.user_agents.parse(user_agent)
            if address:
                found.update(self.geoip.lookup(address))
            if len(clients) > self.CLIENTS_KEPT:
                clients.popitem(last=False)
        else:
            clients.move_to_end(key)
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
