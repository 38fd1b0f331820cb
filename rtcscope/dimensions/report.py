"""A peer's route and codecs from a raw getStats() report (SPEC §15).

The route is the selected candidate pair's local candidate, the pair chosen
as the registry chooses it for the connection's metrics
(`registry.selected_pair`): `candidate_type`, `relay_protocol` and
`turn_server` (only when relayed), `transport`, `network_type`. The codecs
are those each outbound RTP stream names (`audio_codec`, `video_codec`: the
mimeType without its `audio/` or `video/`).

Whenever the local candidate of the selected pair is known, every connection
dimension is in the answer, None for those that do not apply (a direct route
has no TURN server) or that the browser does not tell: the route is replaced
as a whole, and a peer that moved from a relay to a direct route loses its
TURN server (`peer.Dimensions.update`). Codecs are in the answer only when a
stream names one. Ids, addresses and ports are read to follow the links and
never come out.
"""
from collections.abc import Iterable

from .. import registry
from . import CONNECTION_DIMENSIONS, MAX_VALUE

CANDIDATE_TYPES = {"host": "host", "srflx": "srflx", "prflx": "prflx", "relay": "relay",
                   # Firefox before the names were settled (until version 62).
                   "serverreflexive": "srflx", "peerreflexive": "prflx", "relayed": "relay"}
RELAY_PROTOCOLS = frozenset({"udp", "tcp", "tls"})
TRANSPORTS = frozenset({"udp", "tcp"})
# RTCNetworkType; its "unknown" is no answer.
NETWORK_TYPES = frozenset({"bluetooth", "cellular", "ethernet", "wifi", "wimax", "vpn"})
# TURN's default ports (RFC 7065): a `url` without one uses these.
TURN_PORTS = {"turn": "3478", "turns": "5349"}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_CODEC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_")
_MEDIA_KINDS = ("audio", "video")
_READ_TYPES = frozenset({"transport", "candidate-pair", "local-candidate", "outbound-rtp", "codec"})

# The fields read here, per stats type: a holder of reports that keeps only what
# it reads (reports.PeerReports, registry.REPORT_FIELDS) must keep these too.
DIMENSION_FIELDS: dict[str, frozenset[str]] = {
    "transport": frozenset({"selectedCandidatePairId"}),
    "candidate-pair": frozenset({"localCandidateId", "selected", "nominated", "state", "bytesSent", "bytesReceived"}),
    "local-candidate": frozenset({"candidateType", "relayProtocol", "url", "protocol", "networkType"}),
    "outbound-rtp": frozenset({"kind", "mediaType", "codecId", "bytesSent"}),
    "codec": frozenset({"mimeType"}),
}


# Per stats type, the fields that can change the route or the codecs (a stat of such a type
# that comes or goes can too); the traffic that weighs several selected pairs or streams
# against each other is not among them.
ROUTE_FIELDS: dict[str, frozenset[str]] = {
    stat_type: fields - {"bytesSent", "bytesReceived"} for stat_type, fields in DIMENSION_FIELDS.items()}
# What `ReportReading` compares of each stat a settled answer read: its id (a browser's ids
# say the type) and its ROUTE_FIELDS, but a pair's flags, which choose among several
# candidate pairs only (a settled answer has one transport's).
_MARKED_FIELDS = {stat_type: ("id", *sorted(fields - {"selected", "nominated", "state"}))
                  for stat_type, fields in ROUTE_FIELDS.items()}


def report_dimensions(report: list | dict) -> dict[str, str | None]:
    """The route and codecs of one report (the array getStats() returned, or a
    map of stat id to stat); {} when it tells neither."""
    return read_connections([report])[0]


def read_connections(reports: Iterable[list | dict]) -> tuple[dict[str, str | None], bool]:
    """`report_dimensions` of one endpoint with several peer connections (an rtcstats peer):
    the route of the busiest selected pair among them (the registry's rule for several
    transports), each codec from the busiest stream of its kind; and whether the answer
    is settled: no traffic weighed in it (one transport's selected pair among all the
    reports, one codec per kind), so it changes only when a ROUTE_FIELDS field of a stat
    it read changes or such a stat comes or goes."""
    found, settled, _ = _read_connections(reports)
    return found, settled


def _read_connections(reports):
    """(`read_connections`' answer, settled, the stats the answer read)."""
    routes = {}
    codecs = {}  # kind -> (bytes sent, codec)
    names = {}  # kind -> the codecs its streams name
    read = []
    for report in reports:
        if isinstance(report, dict):
            report = report.values()
        elif not isinstance(report, (list, tuple)):
            continue
        route = _read(report, codecs, names, read)
        if route is not None:
            routes[str(len(routes))] = route
    found = {}
    if routes:
        found.update(_route(registry.selected_pair(routes, list(routes))["local"]))
    for kind, (_, codec) in codecs.items():
        found[f"{kind}_codec"] = codec
    settled = (len(routes) == 1 and routes["0"]["settled"]
               and all(len(kind_names) == 1 for kind_names in names.values()))
    return found, settled, read


class ReportReading:
    """The route and codecs of one peer's successive reports as arrays (a POST's): a
    settled answer (`read_connections`) stays while the array has its length and every
    stat the answer read is in its place with the same id and ROUTE_FIELDS (a
    browser lists a report's stats in the same order from one poll to the next; a
    stat that comes or goes moves the others). Otherwise the report is read whole.
    Those values are compared by the hash of them all: a peer's data is in cache when
    its request is parsed, the values kept from its previous report no longer are."""

    __slots__ = ("answer", "length", "places", "seen")

    def __init__(self):
        self.answer = None
        self.length = -1
        self.places = None  # ((index, names), ...) of the stats the answer read; None: read the next whole
        self.seen = None  # the hash of their values then

    def read(self, report: list) -> dict[str, str | None]:
        """The route and codecs of `report`: the previous answer itself when it stands."""
        places = self.places
        if places is not None and len(report) == self.length:
            seen = _seen(report, places)
            if seen is not None and seen == self.seen:
                return self.answer
        self.answer, settled, read = _read_connections([report])
        self.length = len(report)
        self.places = self.seen = None
        if settled:
            index_of = {id(stat): index for index, stat in enumerate(report)}
            self.places = tuple((index_of[key], _MARKED_FIELDS[stat["type"]])
                                for key, stat in {id(stat): stat for stat in read}.items())
            self.seen = _seen(report, self.places)
        return self.answer


def _seen(report, places):
    """The hash of the values at `places` of `report` (None: one is not a stat, or cannot be hashed)."""
    values = []
    for index, names in places:
        stat = report[index]
        if stat.__class__ is not dict:
            return None
        values += map(stat.get, names)
    try:
        return hash(tuple(values))
    except TypeError:  # a list or an object where a string belongs
        return None


def _read(stats, codecs, names, read):
    """One report's selected pair with its local candidate (a stand-in for the pair,
    carrying its traffic, for `selected_pair` to weigh against other reports', and
    whether one transport selected it), None without one; adds its streams' codecs to
    `codecs` and `names`, and the stats the answer reads to `read`."""
    by_id = {}  # the local candidates and codecs, which the pairs and streams name
    pairs = {}
    transports = []
    outbound = []
    for stat in stats:
        if stat.__class__ is not dict:
            continue
        stat_type = stat.get("type")
        if stat_type not in _READ_TYPES:  # most of a report
            continue
        if stat_type == "local-candidate" or stat_type == "codec" or stat_type == "candidate-pair":
            stat_id = stat.get("id")
            if stat_id.__class__ is str:
                (pairs if stat_type == "candidate-pair" else by_id)[stat_id] = stat
        elif stat_type == "transport":
            transports.append(stat)
        elif stat_type == "outbound-rtp":
            outbound.append(stat)
    for stream in outbound:
        _add_codec(stream, by_id, codecs, names, read)
    selected_ids = [pair_id for transport in transports
                    if (pair_id := transport.get("selectedCandidatePairId")).__class__ is str]
    pair = registry.selected_pair(pairs, selected_ids)
    if pair is None:
        return None
    local = by_id.get(pair.get("localCandidateId"))
    if local is None or local.get("type") != "local-candidate" or local.get("candidateType") not in CANDIDATE_TYPES:
        return None
    read.extend(transports)
    read += (pair, local)
    return {"bytesSent": pair.get("bytesSent"), "bytesReceived": pair.get("bytesReceived"), "local": local,
            "settled": sum(pair_id in pairs for pair_id in selected_ids) == 1}


def _route(local):
    candidate_type = CANDIDATE_TYPES[local["candidateType"]]
    relayed = candidate_type == "relay"
    relay_protocol = local.get("relayProtocol") if relayed else None
    transport = local.get("protocol")
    network_type = local.get("networkType")
    return dict(zip(CONNECTION_DIMENSIONS, (
        candidate_type,
        relay_protocol if relay_protocol in RELAY_PROTOCOLS else None,
        turn_server(local.get("url")) if relayed else None,
        transport if transport in TRANSPORTS else None,
        network_type if network_type in NETWORK_TYPES else None,
    )))


def _add_codec(stream, by_id, codecs, names, read):
    kind = stream.get("kind") or stream.get("mediaType")
    if kind not in _MEDIA_KINDS:
        return
    read.append(stream)
    codec = by_id.get(stream.get("codecId"))
    mime_type = codec.get("mimeType") if codec is not None and codec.get("type") == "codec" else None
    if mime_type.__class__ is not str:
        return
    media, _, name = mime_type.partition("/")
    if media.lower() != kind or not name or len(name) > MAX_VALUE or not _CODEC_CHARS.issuperset(name):
        return
    read.append(codec)
    names.setdefault(kind, set()).add(name)
    sent = stream.get("bytesSent")
    sent = sent if sent.__class__ in (int, float) else 0
    if kind not in codecs or sent > codecs[kind][0]:
        codecs[kind] = (sent, name)


def turn_server(url) -> str | None:
    """`host:port` of a TURN `url` (`turn:host:port?transport=udp`, `turns:[::1]`,
    ...), without user name, credentials or parameters, or of the bare `host:port`
    rtcscope.js keeps of it (docs/client.md); None when it is neither."""
    if url.__class__ is not str or len(url) > 256:
        return None
    scheme, _, rest = url.partition(":")
    default_port = TURN_PORTS.get(scheme.lower())
    if default_port is None:
        rest, default_port = url, ""
    else:
        rest = rest.split("?", 1)[0].rsplit("@", 1)[-1].lstrip("/")
    if rest.startswith("["):
        host, bracket, port = rest[1:].partition("]")
        if not bracket or not host or not _IPV6_CHARS.issuperset(host) or port[:1] not in ("", ":"):
            return None
        shown_host, port = f"[{host}]", port[1:]
    else:
        host, _, port = rest.partition(":")
        if not host or not _HOST_CHARS.issuperset(host):
            return None
        shown_host = host.lower()
    port = port or default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    server = f"{shown_host}:{int(port)}"
    return server if len(server) <= MAX_VALUE else None
