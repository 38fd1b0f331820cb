"""The storage schema: every measurement, retention policy, tag and field name rtcscope writes, the
identifier rule its tags obey and the live feed's layout. The one place that names them (docs/storage.md)."""
import re

RETENTION_POLICY = "rtcscope"
# The live feed's own policy: the detector reads seconds of it, an hour is plenty to look at.
FEED_RETENTION_POLICY = "rtc_feed"
FEED_RETENTION = "1h"

MEASUREMENT = "rtc_stats"
EVENTS_MEASUREMENT = "rtc_events"
PRESENCE_MEASUREMENT = "rtc_calls"
SUMMARIES_MEASUREMENT = "rtc_call_summaries"
# One point per ended peer, its dimensions as tags: history breakdowns are GROUP BY a tag (docs/storage.md).
PEER_SUMMARIES_MEASUREMENT = "rtc_peer_summaries"
# A peer's dimensions each time they change (tags call, peer; string field `d`): the call page's.
DIMENSIONS_MEASUREMENT = "rtc_dimensions"
# The call detector's feed: what arrived, one series per server process (docs/live.md).
FEED_MEASUREMENT = "rtc_feed"
ALERTS_MEASUREMENT = "rtc_alerts"
NODES_MEASUREMENT = "rtc_nodes"
# Where an rtcstats session's sequence number is kept, so a reconnect resumes it.
SESSIONS_MEASUREMENT = "rtc_rtcstats_sessions"

# rtc_events: why a peer ended (`reason`) and what its client said (`detail`), as float codes (docs/storage.md).
END_REASON_CODES = {"explicit": 1.0, "timeout": 2.0, "disconnect": 3.0}
END_DETAIL_CODES = {"pagehide": 1.0, "stop": 2.0, "leave": 3.0, "closed": 4.0}
# What a client may say in its end event's "reason".
CLIENT_END_DETAILS = ("pagehide", "stop", "leave")

# Identifiers (call, peer, kind, ...) use characters that need no escaping in line protocol or URLs.
IDENTIFIER_PUNCTUATION = "_.:@{}-"
IDENTIFIER_CHARS = "A-Za-z0-9" + IDENTIFIER_PUNCTUATION
IDENTIFIER_MAX = 128
IDENTIFIER_RE = re.compile(f"[{IDENTIFIER_CHARS}]{{1,{IDENTIFIER_MAX}}}")
NOT_IDENTIFIER_RE = re.compile(f"[^{IDENTIFIER_CHARS}]")
IDENTIFIER_RULE = f"1-{IDENTIFIER_MAX} characters of [{IDENTIFIER_CHARS}]"
# A media server's view of peer P is stored as peer P + SFU_SUFFIX (rtcscope/ingest/janus.py).
SFU_SUFFIX = "@janus"
FIELD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
FIELD_RULE = "^[A-Za-z][A-Za-z0-9_]{0,63}$"

# What a presence row of the live feed carries of its samples (field `w`, docs/storage.md): the
# inputs of the fleet view's quality window (rtcscope/live/fleet.py) and the metrics the
# dashboard graphs by default, so the detector needs no query over rtc_stats for them.
# Positional in `w`: new names go at the end, never in between.
FEED_FIELDS = ("rtt", "jitter", "fractionLost", "qualityLimitationReason", "packetsLost", "packetsReceived",
               "packetsSent", "freezeCount", "availableBandwidth", "iceState")
FEED_INDEX = {name: index for index, name in enumerate(FEED_FIELDS)}
# A presence row carries at most this many samples (its newest): a bulk upload of one call
# must not make a feed row InfluxDB refuses (a string field holds at most 64 KB).
FEED_MAX_SAMPLES = 64
# A presence row carries its peer's dimensions (`d`) when they changed, and at least this often
# (ns) while they do not, so a detector that starts later learns them within its look-back window.
FEED_DIMENSIONS_EVERY_NS = 10_000_000_000
