"""The dimensions every ingest path extracts, with one object per server process."""
from collections import OrderedDict
from collections.abc import Mapping

from ..storage.schema import NOT_IDENTIFIER_RE
from . import APP_DIMENSION, MAX_VALUE
from .geoip import GeoIP
from .report import ReportReading, read_connections, report_dimensions
from .tags import DEFAULT_PEER_TAGS, check_tags, parse_peer_tags, query_tags
from .useragent import UserAgents


class Extractor:
    """The User-Agent parser, the address databases and the tag allow-list of
    the process, built from its options at start (the parser's rules load in a
    few hundred ms, a bad --geoip-db or --peer-tags stops the start)."""

    # (User-Agent, address) pairs whose answers are kept: a client sends the same pair with every request.
    CLIENTS_KEPT = 4096
    # Distinct `tags` members whose allowed tags are kept: a peer sends the same ones with every object.
    TAGS_KEPT = 4096
    # Peers (call, peer) whose dimensions as their last request told them are kept (`peer`).
    PEERS_KEPT = 20_000

    def __init__(self, peer_tags=DEFAULT_PEER_TAGS, geoip=None, user_agents=None):
        self.peer_tags = tuple(peer_tags)
        self.geoip = geoip if geoip is not None else GeoIP()
        self.user_agents = user_agents if user_agents is not None else UserAgents()
        self._clients = OrderedDict()  # (hash of the User-Agent, address) -> `client`'s answer
        self._tags = {}  # the items of a `tags` member -> `tags`' answer (cleared when full)
        self._peers = OrderedDict()  # (call, peer) -> _Peer

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
        """The allowed tags of a JSON object's `tags` member (tags.check_tags). The same
        member gives the same dict, which is shared: read it, never change it."""
        try:
            key = tuple(tags.items()) if tags.__class__ is dict else None
            found = self._tags.get(key)
        except TypeError:  # a value that is a list or an object, under a name not listed
            key = found = None
        if found is None:
            found = check_tags(tags, self.peer_tags, where)
            if key is not None:
                if len(self._tags) >= self.TAGS_KEPT:
                    self._tags.clear()
                self._tags[key] = found
        return found

    def query_tags(self, arguments: Mapping[str, list], where: str = "query") -> dict[str, str]:
        """The allowed `tag.<name>=` arguments of a websocket ingest URL (tags.query_tags)."""
        return query_tags(arguments, self.peer_tags, where)

    report = staticmethod(report_dimensions)
    connections = staticmethod(read_connections)

    def peer(self, key: tuple, client: dict, tags: dict | None = None, report: list | None = None) -> dict:
        """What one request tells of peer `key`'s dimensions, as one dict: `client`'s, its
        `tags`' (answers of `client` and `tags`) and the route and codecs of its newest raw
        report (report.ReportReading). While none of them changed, the same dict as the
        peer's previous request gave, which the live feed knows at once (read it, never
        change it)."""
        if tags is None and report is None:
            return client
        peers = self._peers
        known = peers.get(key)
        if known is None:
            known = peers[key] = _Peer()
            if len(peers) > self.PEERS_KEPT:
                peers.popitem(last=False)
        else:
            peers.move_to_end(key)
        route = None if report is None else known.reading.read(report)
        parts = known.parts
        if parts is None or parts[0] is not client or parts[1] is not tags or parts[2] is not route:
            known.parts = (client, tags, route)
            known.update = {**client, **(tags or {}), **(route or {})}
        return known.update

    @staticmethod
    def app(application_name) -> dict[str, str]:
        """rtcstats' identity `applicationName` as the `app` dimension, in identifier characters."""
        if not isinstance(application_name, str) or not application_name:
            return {}
        return {APP_DIMENSION: NOT_IDENTIFIER_RE.sub("-", application_name)[:MAX_VALUE]}


class _Peer:
    """What `Extractor.peer` keeps of one peer: its reports' reading, the parts of its last
    answer and the answer."""

    __slots__ = ("reading", "parts", "update")

    def __init__(self):
        self.reading = ReportReading()
        self.parts = None
        self.update = None
