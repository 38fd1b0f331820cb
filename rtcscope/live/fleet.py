"""The fleet view: every live call's current quality, and the fleet's aggregates.

Each tick the detector has every live call's window per call, peer and kind
(`window_row` over the samples the live feed brought, rtcscope/live/recent.py;
or `Store.quality_window`, the same row from rtc_stats) and this module turns
those rows into each call's quality with the call summary's rules
(rtcscope/quality.py): the E-model MOS of the window's mean rtt, mean jitter
and loss ratio, the problems active in the window, the verdict band. See
docs/live.md.
"""
import base64
import binascii
import math

import orjson

from .. import quality
from ..storage.schema import FEED_INDEX
from ..summary import percentile

VERDICTS = ("good", "fair", "poor", "unknown")
# A call is listed as changed when its MOS moved at least this much (or its verdict, problems or worst peer changed).
MOS_STEP = 0.1
WINDOW_GAUGES = ("rtt", "jitter", "fractionLost")
WINDOW_LAST = ("qualityLimitationReason", "iceState")
WINDOW_COUNTERS = ("packetsLost", "packetsReceived", "packetsSent", "freezeCount")
# A window row: one series' values in this order (a tuple; None for a name without a value). A
# peer's kinds combine by position: the gauges and the last take the worst (as a summary's
# timelines do), the counters add up.
WINDOW_NAMES = WINDOW_GAUGES + WINDOW_LAST + WINDOW_COUNTERS
_GAUGE_INDEXES = tuple(FEED_INDEX[name] for name in WINDOW_GAUGES)
_LAST_INDEXES = tuple(FEED_INDEX[name] for name in WINDOW_LAST)
_COUNTER_INDEXES = tuple(FEED_INDEX[name] for name in WINDOW_COUNTERS)


def window_row(inside):
    """One series' window row from its samples in the window, oldest first (an iterable of
    values in FEED_FIELDS order, as decode_samples gives them): what Store.quality_window answers for
    it (the mean of WINDOW_GAUGES, the last of WINDOW_LAST, the spread of WINDOW_COUNTERS),
    as a tuple in WINDOW_NAMES order. None when no sample of the window has any of them."""
    columns = tuple(zip(*inside))
    row = []
    for index in _GAUGE_INDEXES:
        present = _present(columns[index])
        row.append(None if present is None else sum(present) / len(present))
    for index in _LAST_INDEXES:
        present = _present(columns[index])
        row.append(None if present is None else present[-1])
    for index in _COUNTER_INDEXES:
        present = _present(columns[index])
        row.append(None if present is None else max(present) - min(present))
    return None if row.count(None) == len(row) else tuple(row)


def _present(column):
    """A column's values without its absent ones, None when it has none (most columns hold all or none)."""
    absent = column.count(None)
    if absent == len(column):
        return None
    return column if not absent else [value for value in column if value is not None]


def row_of(values):
    """A window row from {name: value} (Store.quality_window's shape)."""
    return tuple(values.get(name) for name in WINDOW_NAMES)


def peer_window(rows):
    """One peer's window values from its kinds' rows: rtt, jitter (means), loss ratio,
    freezes (the freeze count's increase), the latest quality-limitation code and ICE state."""
    if len(rows) == 1:  # one kind: its row is the peer's
        rtt, jitter, fraction, limitation, ice, lost, received, sent, freezes = rows[0]
    else:  # unrolled: a tick combines some 40,000 peers' rows
        rtt = jitter = fraction = limitation = ice = lost = received = sent = freezes = None
        for k_rtt, k_jitter, k_fraction, k_limitation, k_ice, k_lost, k_received, k_sent, k_freezes in rows:
            if k_rtt is not None and (rtt is None or k_rtt > rtt):
                rtt = k_rtt
            if k_jitter is not None and (jitter is None or k_jitter > jitter):
                jitter = k_jitter
            if k_fraction is not None and (fraction is None or k_fraction > fraction):
                fraction = k_fraction
            if k_limitation is not None and (limitation is None or k_limitation > limitation):
                limitation = k_limitation
            if k_ice is not None and (ice is None or k_ice > ice):  # failed is the highest code
                ice = k_ice
            if k_lost is not None:
                lost = k_lost if lost is None else lost + k_lost
            if k_received is not None:
                received = k_received if received is None else received + k_received
            if k_sent is not None:
                sent = k_sent if sent is None else sent + k_sent
            if k_freezes is not None:
                freezes = k_freezes if freezes is None else freezes + k_freezes
    loss = None
    if lost is not None:
        loss = quality.loss_ratio(lost, received or 0.0, sent or 0.0)
    if loss is None:
        loss = fraction
    return {"rtt": rtt, "jitter": jitter, "loss": loss, "freezes": freezes, "qualityLimitationReason": limitation,
            "iceState": ice}


class CallQuality:
    """A live call's quality now (`as_json`, the shape every listing carries) and
    its worst peer's window values, which the fleet's percentiles read. `at` is the
    tick it holds as of: the detector moves it on while the call's window is unchanged."""

    __slots__ = ("mos", "verdict", "problems", "worst_peer", "at", "worst", "peers")

    def __init__(self, peers, at):
        """`peers`: {peer: window values} of the call's peers that sent samples in the window.
        The call is judged by its voting peers (quality.voting_peers); the others have their
        MOS too, and add only their SFU_PROBLEMS."""
        self.at = at
        self.worst = None
        self.worst_peer = None
        self.peers = peers  # each peer's window values, with its unrounded "mos": what alert rules read
        problems = set()
        lowest = None
        voters = peers if len(peers) < 2 else set(quality.voting_peers(peers))
        for peer in sorted(peers) if len(peers) > 1 else peers:
            window = peers[peer]
            mos = window["mos"] = quality.estimate_mos(window["rtt"], window["jitter"], window["loss"])
            if peer not in voters:
                problems.update(quality.SFU_PROBLEMS.intersection(quality.current_problems(window)))
                continue
            problems.update(quality.current_problems(window))
            if mos is not None and (lowest is None or mos < lowest):
                lowest, self.worst, self.worst_peer = mos, window, peer or None
        self.mos = None if lowest is None else round(lowest, 2)
        self.verdict = quality.verdict_of(self.mos) or "unknown"
        self.problems = [code for code in quality.PROBLEM_CODES if code in problems] if problems else []

    def as_json(self):
        return {"mos": self.mos, "verdict": self.verdict, "problems": self.problems,
                "worst_peer": self.worst_peer, "at": self.at}

    def differs_from(self, other):
        """Worth telling viewers: a new verdict, problems or worst peer, or the MOS moved by MOS_STEP."""
        if other is None or (self.verdict, self.problems, self.worst_peer) != (
                other.verdict, other.problems, other.worst_peer):
            return True
        if (self.mos is None) != (other.mos is None):
            return True
        return self.mos is not None and abs(self.mos - other.mos) >= MOS_STEP - 1e-9


def call_qualities(rows, live_calls, at):
    """{call: CallQuality} for every live call; `rows`: [(call, peer, kind, {name: value})] of
    the window, as Store.quality_window answers. A live call with no sample in the window is unknown."""
    by_call = {}
    for call, peer, _, row in rows:
        if call in live_calls:
            by_call.setdefault(call, {}).setdefault(peer, []).append(row_of(row))
    return qualities_of(by_call, live_calls, at)


def qualities_of(by_call, live_calls, at):
    """call_qualities from the window's rows (window_row's tuples) grouped {call: {peer: [row of each kind]}}."""
    empty = {}
    return {call: CallQuality({peer: peer_window(kinds) for peer, kinds in by_call.get(call, empty).items()}, at)
            for call in live_calls}


class FeedQualities:
    """Every live call's quality from the samples the feed brought (`recent`, a
    recent.RecentSamples), kept between ticks: a call whose window has neither gained nor
    lost a sample since it was last computed keeps its quality, as of this tick (at a 1 s
    tick with the client's 2 s sends, half the calls)."""

    def __init__(self, recent, window_ms):
        self.recent = recent
        self.window_ms = window_ms
        self._steady = {}  # live call -> (until when its window keeps its samples (ms), its CallQuality)

    def clear(self):
        """After a whole-window read: every call is computed again."""
        self._steady = {}

    def update(self, live, now):
        """({live call: CallQuality} as of `now`, the calls computed again)."""
        steady = self._steady
        touched = self.recent.touched
        stale = [call for call in live if call in touched or steady.get(call, (0, None))[0] < now]
        by_call, until = self.recent.windows(stale, now - self.window_ms, now)
        always = math.inf
        for call, found in qualities_of(by_call, stale, now).items():
            steady[call] = (until.get(call, always), found)
        for call in [call for call in steady if call not in live]:
            del steady[call]
        qualities = {}
        for call in live:
            found = steady[call][1]
            found.at = now
            qualities[call] = found
        return qualities, stale


def unknown_quality(at):
    return CallQuality({}, at)


def summary_quality(row):
    """An ended call's quality from its rtc_call_summaries point (None without one)."""
    if row is None:
        return None
    mos = row.get("mos_mean")
    mos = None if mos is None else round(mos, 2)
    return {"mos": mos, "verdict": quality.verdict_of(mos) or "unknown",
            "problems": quality.codes_of_mask(row.get("problem_mask") or 0),
            "worst_peer": None, "at": row.get("time")}


# --- the fleet ----------------------------------------------------------------------

def _round(value, digits):
    return None if value is None else round(value, digits)


def fleet_aggregates(states, qualities):
    """The `fleet` object: live calls, their peers, calls per verdict and percentiles
    (nearest rank) over the live calls, each by its worst peer's value; loss as a ratio."""
    verdicts = dict.fromkeys(VERDICTS, 0)
    columns = {"mos": [], "rtt": [], "jitter": [], "loss": []}
    peers = 0
    for call, state in states.items():
        peers += len(state.peers)
        found = qualities.get(call)
        verdicts[found.verdict if found else "unknown"] += 1
        if found is None or found.worst is None:
            continue
        columns["mos"].append(found.mos)
        for name in ("rtt", "jitter", "loss"):
            if found.worst[name] is not None:
                columns[name].append(found.worst[name])
    for values in columns.values():
        values.sort()
    digits = {"mos": 2, "rtt": 2, "jitter": 2, "loss": 4}
    wanted = {"mos": (("p5", 0.05), ("p50", 0.5))}
    spread = (("p50", 0.5), ("p95", 0.95))
    percentiles = {name: {label: _round(percentile(values, fraction), digits[name])
                          for label, fraction in wanted.get(name, spread)}
                   for name, values in columns.items()}
    return {"live": len(states), "peers": peers, "verdicts": verdicts, "percentiles": percentiles}


# --- listing order and paging ---------------------------------------------------------

def worst_key(call, found):
    """Lowest MOS first, unknown last; then more problems first, then the call id.
    `found` is a quality object (JSON shape) or None."""
    mos = found.get("mos") if found else None
    problems = len(found.get("problems") or ()) if found else 0
    return (mos is None, mos or 0.0, -problems, call)


def recent_key(state, last_seen, call):
    """Live calls first, the most recently seen first, then the call id."""
    return (state != "live", -last_seen, call)


class BadCursor(ValueError):
    pass


def encode_cursor(sort, key):
    return base64.urlsafe_b64encode(orjson.dumps([sort, list(key)])).decode().rstrip("=")


def decode_cursor(text, sort):
    """The sort key a cursor holds; BadCursor when it is not one of ours for this sort."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor_sort, key = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursor("cursor is not one this server gave") from None
    if cursor_sort != sort:
        raise BadCursor(f"cursor belongs to sort={cursor_sort}, not sort={sort}")
    shapes = {"worst": (bool, (int, float), int, str), "recent": (bool, int, str)}
    if not isinstance(key, list) or len(key) != len(shapes[sort]) or not all(
            isinstance(value, kind) for value, kind in zip(key, shapes[sort])):
        raise BadCursor("cursor is not one this server gave")
    return tuple(key)
