"""The metric registry: the one place that knows every metric rtcscope stores.

Handlers, queries, the detector and the pages read names, units and
gauge/counter semantics from here instead of hard-coding them, and raw
``getStats()`` reports are turned into stored fields by ``extract``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

GAUGE = "gauge"
COUNTER = "counter"


@dataclass(frozen=True)
class Metric:
    """A metric as stored in InfluxDB and as shown to people."""

    name: str
    unit: str
    type: str
    description: str
    aliases: tuple[str, ...] = ()
    field: str | None = None
    scale: float = 1.0
    rate_unit: str | None = None
    # Aliases whose values the registry can convert, with the factor to this
    # metric's unit: a sample sent under one of them is stored under this name.
    conversions: tuple[tuple[str, float], ...] = ()

    @property
    def source_field(self) -> str:
        """The InfluxDB field to query: derived metrics read another field."""
        return self.field or self.name

    @property
    def display_unit(self) -> str:
        """Counters are shown as per-second rates, gauges as stored."""
        if self.type == COUNTER and self.rate_unit:
            return self.rate_unit
        return self.unit

    def as_json(self) -> dict:
        """The shape served by ``GET /v1/metrics/``; ``field`` is the field to query."""
        return {
            "name": self.name,
            "unit": self.unit,
            "display_unit": self.display_unit,
            "type": self.type,
            "description": self.description,
            "aliases": list(self.aliases),
            "field": self.source_field,
            "scale": self.scale,
        }


QUALITY_LIMITATION_CODES: dict[str, float] = {"none": 0.0, "cpu": 1.0, "bandwidth": 2.0, "other": 3.0}
# A media server's view of a peer's ICE state (`iceState`): libnice's component states, as Janus names them.
ICE_STATE_CODES: dict[str, float] = {"disconnected": 0.0, "gathering": 1.0, "connecting": 2.0, "connected": 3.0,
                                     "ready": 4.0, "failed": 5.0}

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        # The 2015 seed's four graphs first: its pages and clients use these names.
        Metric(
            "availableBandwidth", "bit/s", GAUGE,
            "Estimated available send bandwidth (selected candidate pair's availableOutgoingBitrate).",
            aliases=("googAvailableSendBandwidth", "availableOutgoingBitrate"),
            conversions=(("googAvailableSendBandwidth", 1.0), ("availableOutgoingBitrate", 1.0)),
        ),
        Metric(
            "rtt", "ms", GAUGE,
            "Round-trip time: RTCP-measured per media kind (remote-inbound-rtp.roundTripTime when sending, "
            "remote-outbound-rtp.roundTripTime when receiving), STUN-measured for the connection "
            "(candidate-pair.currentRoundTripTime).",
            aliases=("googRtt", "roundTripTime", "currentRoundTripTime"),
            conversions=(("googRtt", 1.0), ("roundTripTime", 1000.0), ("currentRoundTripTime", 1000.0)),
        ),
        Metric(
            "inputLevel", "1", GAUGE,
            "Microphone level 0-1 (media-source.audioLevel). The 2015 legacy audioInputLevel was 0-32767.",
            aliases=("audioInputLevel", "audioLevel"),
            conversions=(("audioLevel", 1.0), ("audioInputLevel", 1 / 32767)),
        ),
        Metric(
            "packetsLost", "packets", COUNTER,
            "Packets lost, both what this peer lost receiving (inbound-rtp) and what the remote "
            "reported lost of what it sent (remote-inbound-rtp).",
            rate_unit="packets/s",
        ),
        Metric(
            "fractionLost", "1", GAUGE,
            "Fraction 0-1 of sent packets the remote lost in its last RTCP interval (remote-inbound-rtp).",
        ),
        Metric(
            "jitter", "ms", GAUGE,
            "Packet interarrival jitter, worst of received (inbound-rtp) and remotely reported (remote-inbound-rtp).",
            aliases=("googJitterReceived",), conversions=(("googJitterReceived", 1.0),),
        ),
        Metric(
            "jitterBufferDelay", "ms", GAUGE,
            "Average time a sample or frame spent in the jitter buffer "
            "(inbound-rtp.jitterBufferDelay / jitterBufferEmittedCount).",
            aliases=("googJitterBufferMs",), conversions=(("googJitterBufferMs", 1.0),),
        ),
        Metric(
            "bitrate", "bit", COUNTER,
            "Send bitrate, the rate of bytesSent times 8.",
            aliases=("googTransmitBitrate",), field="bytesSent", scale=8.0, rate_unit="bit/s",
        ),
        Metric(
            "bitrateReceived", "bit", COUNTER,
            "Receive bitrate, the rate of bytesReceived times 8.",
            field="bytesReceived", scale=8.0, rate_unit="bit/s",
        ),
        Metric(
            "availableIncomingBitrate", "bit/s", GAUGE,
            "Estimated available receive bandwidth (selected candidate pair; few browsers report it).",
            aliases=("googAvailableReceiveBandwidth",), conversions=(("googAvailableReceiveBandwidth", 1.0),),
        ),
        Metric("targetBitrate", "bit/s", GAUGE, "Encoder target bitrate (outbound-rtp).",
               aliases=("googTargetEncBitrate",), conversions=(("googTargetEncBitrate", 1.0),)),
        Metric("packetsSent", "packets", COUNTER, "RTP packets sent (outbound-rtp); all packets for the connection.",
               rate_unit="packets/s"),
        Metric("packetsReceived", "packets", COUNTER,
               "RTP packets received (inbound-rtp); all packets for the connection.", rate_unit="packets/s"),
        Metric("bytesSent", "bytes", COUNTER, "Payload bytes sent (outbound-rtp); all bytes for the connection.",
               rate_unit="bytes/s"),
        Metric("bytesReceived", "bytes", COUNTER,
               "Payload bytes received (inbound-rtp); all bytes for the connection.", rate_unit="bytes/s"),
        Metric("retransmittedPacketsSent", "packets", COUNTER, "Packets retransmitted (outbound-rtp).",
               rate_unit="packets/s"),
        Metric("framesPerSecond", "fps", GAUGE,
               "Frame rate: received (inbound-rtp) if this peer receives video, else sent, else captured.",
               aliases=("googFrameRateReceived", "googFrameRateSent")),
        Metric("frameWidth", "px", GAUGE, "Frame width, preferring received over sent over captured video.",
               aliases=("googFrameWidthReceived", "googFrameWidthSent")),
        Metric("frameHeight", "px", GAUGE, "Frame height, preferring received over sent over captured video.",
               aliases=("googFrameHeightReceived", "googFrameHeightSent")),
        Metric("framesDropped", "count", COUNTER, "Received frames dropped before decoding (inbound-rtp).",
               rate_unit="frames/s"),
        Metric("freezeCount", "count", COUNTER, "Video freezes seen by the receiver (inbound-rtp).",
               rate_unit="freezes/s"),
        Metric("totalFreezesDuration", "s", COUNTER,
               "Total time received video was frozen, in seconds, not ms (inbound-rtp).", rate_unit="s/s"),
        Metric("pauseCount", "count", COUNTER,
               "Received video paused: no frame for over 5 s, usually the sender stopped (inbound-rtp).",
               rate_unit="pauses/s"),
        Metric("totalPausesDuration", "s", COUNTER,
               "Total time received video was paused, in seconds (inbound-rtp).", rate_unit="s/s"),
        Metric("nackCount", "count", COUNTER, "NACKs sent (inbound-rtp) plus NACKs received (outbound-rtp).",
               aliases=("googNacksSent", "googNacksReceived"), rate_unit="count/s"),
        Metric("pliCount", "count", COUNTER, "PLIs sent (inbound-rtp) plus PLIs received (outbound-rtp).",
               aliases=("googPlisSent", "googPlisReceived"), rate_unit="count/s"),
        Metric("firCount", "count", COUNTER, "FIRs sent (inbound-rtp) plus FIRs received (outbound-rtp).",
               aliases=("googFirsSent", "googFirsReceived"), rate_unit="count/s"),
        Metric("concealedSamples", "count", COUNTER,
               "Audio samples concealed because packets were lost or late (inbound-rtp).", rate_unit="samples/s"),
        Metric("concealmentEvents", "count", COUNTER,
               "Audible glitches: runs of concealed audio samples (inbound-rtp).", rate_unit="events/s"),
        Metric("packetsDiscarded", "packets", COUNTER,
               "Packets the jitter buffer threw away because they came too late or too early (inbound-rtp).",
               rate_unit="packets/s"),
        Metric(
            "qualityLimitationReason", "code", GAUGE,
            "Why the video encoder limits quality (outbound-rtp): 0 none, 1 cpu, 2 bandwidth, 3 other; "
            "the highest code when several streams differ.",
        ),
    )
}

_BY_ALIAS: dict[str, Metric] = {alias: metric for metric in METRICS.values() for alias in metric.aliases}


_CONVERSIONS: dict[str, tuple[str, float]] = {
    alias: (metric.name, factor) for metric in METRICS.values() for alias, factor in metric.conversions}


def storage_plan(names: tuple[str, ...]) -> tuple[tuple[str | None, float], ...] | None:
    """How to store a sample with these field names: None when every name is stored
    as sent, else per name its stored name (None: not stored) and the factor to it.

    An alias is stored under its metric's name when the registry knows the
    conversion; an alias it cannot convert (a computed metric such as bitrate's
    googTransmitBitrate) keeps its own name. The canonical name wins over an
    alias in the same sample, and the first of two aliases over the second."""
    if not any(name in _CONVERSIONS for name in names):
        return None
    taken = {name for name in names if name not in _CONVERSIONS}
    plan = []
    for name in names:
        target, factor = _CONVERSIONS.get(name, (name, 1.0))
        if name in _CONVERSIONS:
            if target in taken:
                target = None
            else:
                taken.add(target)
        plan.append((target, factor))
    return tuple(plan)


def apply_storage_plan(plan: tuple[tuple[str | None, float], ...], stats: dict) -> dict:
    """`stats` renamed and converted by `storage_plan(tuple(stats))`; values that
    are not numbers are passed on unchanged for the caller to judge."""
    stored = {}
    for (target, factor), value in zip(plan, stats.values()):
        if target is not None:
            stored[target] = value * factor if factor != 1.0 and value.__class__ in (int, float) else value
    return stored


def lookup(name: str) -> Metric | None:
    """Resolve a canonical name or an alias (case-sensitive)."""
    return METRICS.get(name) or _BY_ALIAS.get(name)


def stored_field(name: str) -> Metric:
    """A field a client stored that the registry does not know: shown as a plain gauge."""
    return Metric(name, "", GAUGE, "a field stored by a client; not in the registry")


def all_metrics() -> list[Metric]:
    """Every metric, in display order."""
    return list(METRICS.values())


# --- Extraction of a raw getStats() report -------------------------------------------------

_MS_PER_S = 1000.0

# Feedback counts and frame figures, under the same names on both sides of an RTP stream.
_FEEDBACK_AND_FRAMES: tuple[tuple[str, str, float], ...] = tuple(
    (name, name, 1.0) for name in ("nackCount", "pliCount", "firCount", "framesPerSecond", "frameWidth", "frameHeight"))

# Per-stream stats type -> (getStats field, metric, multiplier to the metric's unit).
_STREAM_FIELDS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "outbound-rtp": (
        ("packetsSent", "packetsSent", 1.0),
        ("bytesSent", "bytesSent", 1.0),
        ("retransmittedPacketsSent", "retransmittedPacketsSent", 1.0),
        ("targetBitrate", "targetBitrate", 1.0),
    ) + _FEEDBACK_AND_FRAMES,
    "inbound-rtp": (
        ("packetsReceived", "packetsReceived", 1.0),
        ("bytesReceived", "bytesReceived", 1.0),
        ("packetsLost", "packetsLost", 1.0),
        ("jitter", "jitter", _MS_PER_S),
    ) + _FEEDBACK_AND_FRAMES + (
        ("framesDropped", "framesDropped", 1.0),
        ("freezeCount", "freezeCount", 1.0),
        ("totalFreezesDuration", "totalFreezesDuration", 1.0),
        ("pauseCount", "pauseCount", 1.0),
        ("totalPausesDuration", "totalPausesDuration", 1.0),
        ("concealedSamples", "concealedSamples", 1.0),
        ("concealmentEvents", "concealmentEvents", 1.0),
        ("packetsDiscarded", "packetsDiscarded", 1.0),
    ),
    "remote-inbound-rtp": (
        ("packetsLost", "packetsLost", 1.0),
        ("jitter", "jitter", _MS_PER_S),
        ("fractionLost", "fractionLost", 1.0),
        ("roundTripTime", "rtt", _MS_PER_S),
    ),
    # The receiving side's RTCP round trip (sender reports + DLRR); its counters are the remote's, not ours.
    "remote-outbound-rtp": (
        ("roundTripTime", "rtt", _MS_PER_S),
    ),
    "media-source": (
        ("audioLevel", "inputLevel", 1.0),
        ("framesPerSecond", "framesPerSecond", 1.0),
        ("width", "frameWidth", 1.0),
        ("height", "frameHeight", 1.0),
    ),
}

# Only gauges: the pair's byte and packet counters repeat the media streams'
# (plus ICE and DTLS), and a call's rate graphs sum every kind of a peer.
_CONNECTION_FIELDS: tuple[tuple[str, str, float], ...] = (
    ("availableOutgoingBitrate", "availableBandwidth", 1.0),
    ("availableIncomingBitrate", "availableIncomingBitrate", 1.0),
    ("currentRoundTripTime", "rtt", _MS_PER_S),
)

# What the peer shows (received video) beats what it sends, which beats what it captures.
_PREFERRED_METRICS = frozenset({"framesPerSecond", "frameWidth", "frameHeight"})
_PREFERENCE_RANK = {"inbound-rtp": 0, "outbound-rtp": 1, "media-source": 2}

# Counters add up across streams; so do simulcast layers' target bitrates. Other gauges take the worst.
_SUMMED_METRICS = frozenset(m.name for m in METRICS.values() if m.type == COUNTER) | {"targetBitrate"}

_MEDIA_KINDS = ("audio", "video")


def _number(value: object) -> float | None:
    """A finite float, or None for anything a browser may put where a number belongs."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class _KindValues:
    """Combines the values of several streams of one kind into one sample."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.ranks: dict[str, int] = {}

    def add(self, metric: str, value: float, rank: int = 0) -> None:
        current = self.values.get(metric)
        if current is None:
            self.values[metric] = value
            self.ranks[metric] = rank
        elif metric in _PREFERRED_METRICS:
            if rank < self.ranks[metric] or (rank == self.ranks[metric] and value > current):
                self.values[metric] = value
                self.ranks[metric] = rank
        elif metric in _SUMMED_METRICS:
            self.values[metric] = current + value
        else:
            self.values[metric] = max(current, value)

    def add_fields(self, stat: dict, fields: tuple[tuple[str, str, float], ...], rank: int = 0) -> None:
        """The hot loop of extraction: plain floats and ints (nearly every value) are taken
        without `_number`'s checks (x - x is 0 only for a finite x; bool is neither class)."""
        get, add, values, ranks = stat.get, self.add, self.values, self.ranks
        for stat_field, metric, multiplier in fields:
            value = get(stat_field)
            if value is None:
                continue
            kind = value.__class__
            if kind is float:
                if value - value != 0.0:
                    continue
            elif kind is int:
                try:
                    value = float(value)
                except OverflowError:
                    continue
            else:
                value = _number(value)
                if value is None:
                    continue
            if metric in values:
                add(metric, value * multiplier, rank)
            else:  # the first stream of its kind with this metric, as `add` would take it
                values[metric] = value * multiplier
                ranks[metric] = rank

    def finite(self) -> dict[str, float]:
        """Drop values that overflowed while scaling or summing (nearly never: checked in C first)."""
        if all(map(math.isfinite, self.values.values())):
            return self.values
        return {metric: value for metric, value in self.values.items() if math.isfinite(value)}


def _add_derived(values: _KindValues, stat_type: str, stat: dict) -> None:
    """Metrics that are not a plain copy of one getStats field."""
    if stat_type == "inbound-rtp":
        delay = _number(stat.get("jitterBufferDelay"))
        emitted = _number(stat.get("jitterBufferEmittedCount"))
        if delay is not None and emitted is not None and emitted > 0:
            values.add("jitterBufferDelay", delay / emitted * _MS_PER_S)
    elif stat_type == "outbound-rtp":
        reason = stat.get("qualityLimitationReason")
        if isinstance(reason, str) and reason in QUALITY_LIMITATION_CODES:
            values.add("qualityLimitationReason", QUALITY_LIMITATION_CODES[reason])


# Per stream stats type: (its fields, its preference rank, whether `_add_derived` reads it).
_STREAM_PLANS: dict[str, tuple[tuple[tuple[str, str, float], ...], int, bool]] = {
    stat_type: (fields, _PREFERENCE_RANK.get(stat_type, 0), stat_type in ("inbound-rtp", "outbound-rtp"))
    for stat_type, fields in _STREAM_FIELDS.items()}


def _traffic(pair: dict) -> float:
    return (_number(pair.get("bytesSent")) or 0.0) + (_number(pair.get("bytesReceived")) or 0.0)


def selected_pair(pairs: dict[str, dict], selected_ids: list[str]) -> dict | None:
    """The transport's selected pair; else a nominated succeeded one (Firefox marks it ``selected``)."""
    candidates = [pairs[pair_id] for pair_id in selected_ids if pair_id in pairs]
    if len(candidates) == 1:  # one transport: nothing to weigh
        return candidates[0]
    if not candidates:
        candidates = [
            pair for pair in pairs.values()
            if pair.get("selected") is True or (pair.get("nominated") is True and pair.get("state") == "succeeded")
        ]
    return max(candidates, key=_traffic, default=None)


def extract(report: list[dict]) -> dict[str, dict[str, float]]:
    """Turn a raw ``getStats()`` array into ``{"audio"|"video"|"connection": {field: float}}``.

    Only numeric registry fields come out (never addresses, certificates or
    codec strings); missing or unusable stats are absent, kinds without values
    are omitted, and odd input is skipped rather than raised on. A dict (a
    serialised stats map, id -> stat) is accepted too.
    """
    return extract_connections([report])


def extract_connections(reports: Iterable[list[dict] | dict]) -> dict[str, dict[str, float]]:
    """``extract`` for one endpoint with several peer connections: the union of
    their reports, combined by the rules for several streams (counters summed,
    delays the worst, capacities such as available bandwidth the largest).
    Each report keeps its own stat ids and selected candidate pair: ids repeat
    across peer connections (every one has a transport ``T01``)."""
    by_kind = {kind: _KindValues() for kind in _MEDIA_KINDS}
    connection = _KindValues()
    for report in reports:
        pair = _add_report(report, by_kind)
        if pair is not None:
            connection.add_fields(pair, _CONNECTION_FIELDS)
    by_kind["connection"] = connection
    extracted = {kind: values.finite() for kind, values in by_kind.items()}
    return {kind: values for kind, values in extracted.items() if values}


def _add_report(report: list[dict] | dict, by_kind: dict[str, _KindValues]) -> dict | None:
    """Add one report's streams to ``by_kind``; return its selected candidate pair."""
    if isinstance(report, dict):
        stats = report.values()
    elif isinstance(report, (list, tuple)):
        stats = report
    else:
        return None
    pairs: dict[str, dict] = {}
    selected_ids: list[str] = []
    for stat in stats:
        if not isinstance(stat, dict):
            continue
        stat_type = stat.get("type")
        if not isinstance(stat_type, str):
            continue
        plan = _STREAM_PLANS.get(stat_type)
        if plan is not None:
            kind = stat.get("kind") or stat.get("mediaType")
            if kind in _MEDIA_KINDS:
                values = by_kind[kind]
                fields, rank, derived = plan
                values.add_fields(stat, fields, rank)
                if derived:
                    _add_derived(values, stat_type, stat)
        elif stat_type == "candidate-pair":
            pair_id = stat.get("id")
            if isinstance(pair_id, str):
                pairs[pair_id] = stat
        elif stat_type == "transport":
            pair_id = stat.get("selectedCandidatePairId")
            if isinstance(pair_id, str):
                selected_ids.append(pair_id)
    return selected_pair(pairs, selected_ids)


# What extraction reads of each stats type: a holder of reports (deltas are
# rebuilt on the latest one) keeps these fields and drops the rest (addresses,
# certificates, codec strings).
_READ_BESIDES_FIELDS: dict[str, frozenset[str]] = {
    "inbound-rtp": frozenset({"jitterBufferDelay", "jitterBufferEmittedCount"}),
    "outbound-rtp": frozenset({"qualityLimitationReason"}),
    "candidate-pair": frozenset({"selected", "nominated", "state", "bytesSent", "bytesReceived"}),
    "transport": frozenset({"selectedCandidatePairId"}),
}
REPORT_FIELDS: dict[str, frozenset[str]] = {
    stat_type: frozenset({"id", "type", "timestamp", "kind", "mediaType"}) | {name for name, _, _ in fields}
    | _READ_BESIDES_FIELDS.get(stat_type, frozenset())
    for stat_type, fields in {**_STREAM_FIELDS, "candidate-pair": _CONNECTION_FIELDS, "transport": ()}.items()
}
