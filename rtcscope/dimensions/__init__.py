"""Every peer's dimensions: who (browser, OS), where (country, network operator)
and through what (network, route, TURN server, codecs), plus the application's
own tags (docs/diagnosis.md).

Values are short strings; a dimension that is not known is absent, never
guessed. Each source has its module, all of them pure and cheap enough for an
ingest request (the User-Agent parse, the one costly step, is cached per
distinct string; a peer's reports are read whole only when they may have
moved its route or codecs: `report.ReportReading`, `extract.Extractor.peer`):

- `useragent.UserAgents`: browser, browser_version, os, os_version;
- `geoip.GeoIP`: country, asn, from the client's address;
- `report.report_dimensions`: the route and codecs of a raw getStats() report;
- `tags`: the allow-listed application tags of a JSON object or a websocket URL;
- `peer.Dimensions`: one peer's dimensions as they change; `peer.ValueBound`:
  the cap on distinct values per dimension;
- `extract.Extractor`: the parser, databases and allow-list of one server
  process, built from its options, with one method per source.

Nothing that identifies a person comes out of any of them: no address, no
User-Agent string, no candidate id or port.
"""

# Dimension names, exact (SPEC §15): what the API, the storage and the filters call them.
BROWSER_DIMENSIONS = ("browser", "browser_version", "os", "os_version")
CONNECTION_DIMENSIONS = ("candidate_type", "relay_protocol", "turn_server", "transport", "network_type")
CODEC_DIMENSIONS = ("audio_codec", "video_codec")
LOCATION_DIMENSIONS = ("country", "asn")
# rtcstats' identity `applicationName` (SPEC §12a).
APP_DIMENSION = "app"
# The media server instance that reported a peer's SFU view (Janus's `emitter`, SPEC §16).
EMITTER_DIMENSION = "emitter"
BUILTIN_DIMENSIONS = (BROWSER_DIMENSIONS + CONNECTION_DIMENSIONS + CODEC_DIMENSIONS + LOCATION_DIMENSIONS
                      + (APP_DIMENSION, EMITTER_DIMENSION))


def known_dimensions(peer_tags):
    """Every dimension name a server with these --peer-tags knows: the built-in ones, then the tags."""
    return BUILTIN_DIMENSIONS + tuple(peer_tags)


# The longest value of a built-in dimension; application tags have their own limit (tags.MAX_VALUE).
MAX_VALUE = 64
# What a value past the cardinality bound becomes (peer.ValueBound).
OTHER = "other"
