"""The fleet view: every live call's current quality, and the fleet's aggregates.

Each tick the detector has every live call's window per call, peer and kind
(`RecentSamples.window_rows` over the samples the live feed brought,
rtcscope/live/recent.py; or `Store.quality_window`, the same rows from
rtc_stats) and this module turns those rows into each call's quality with the
call summary's rules (rtcscope/quality.py, the reference; `judge` applies them
to the whole fleet at once in arrays): the E-model MOS of the window's mean
rtt, mean jitter and loss ratio, the problems active in the window, the
verdict band. See docs/live.md.
"""
import base64
import binascii
import math

import numpy as np
import orjson

from .. import quality
from ..summary import percentile

VERDICTS = ("good", "fair", "poor", "unknown")
# A call is listed as changed when its MOS moved at least this much (or its verdict, problems or worst peer changed).
MOS_STEP = 0.1
WINDOW_GAUGES = ("rtt", "jitter", "fractionLost")
WINDOW_LAST = ("qualityLimitationReason", "iceState")
WINDOW_COUNTERS = ("packetsLost", "packetsReceived", "packetsSent", "freezeCount")
# A window row: one series' values in this order (NaN for a name without a value). A peer's
# kinds combine by position: the gauges and the last take the worst (as a summary's
# timelines do), the counters add up.
WINDOW_NAMES = WINDOW_GAUGES + WINDOW_LAST + WINDOW_COUNTERS
_COUNTERS = len(WINDOW_GAUGES) + len(WINDOW_LAST)
# A peer's window values, in the order its dict has them ("mos" last).
PEER_NAMES = ("rtt", "jitter", "loss", "freezes", "qualityLimitationReason", "iceState", "mos")
_SFU_BITS = int(quality.problem_mask(quality.SFU_PROBLEMS))


class CallQuality:
    """A live call's quality now (`as_json`, the shape every listing carries) and
    its worst peer's window values, which the fleet's percentiles read. `at` is the
    tick it holds as of. `peers`: {peer: window values} of the call's peers that sent
    samples in the window, each with its unrounded "mos": what alert rules read. A tick
    judges 20,000 calls: their peers' dicts are built when first read (`rows`: the
    tick's _Peers, the call's range in it and its worst peer's row), not for every call every tick."""

    __slots__ = ("mos", "verdict", "problems", "worst_peer", "at", "worst", "_peers", "_rows")

    def __init__(self, mos, verdict, problems, worst_peer, at, worst, peers, rows=None):
        self.mos, self.verdict, self.problems, self.worst_peer = mos, verdict, problems, worst_peer
        self.at, self.worst, self._peers, self._rows = at, worst, peers, rows

    @property
    def peers(self):
        if self._peers is None:
            table, first, end, worst_row = self._rows
            self._peers = table.windows(first, end, worst_row, self.worst)
            self._rows = None
        return self._peers

    def as_json(self):
        return {"mos": self.mos, "verdict": self.verdict, "problems": self.problems,
                "worst_peer": self.worst_peer, "at": self.at}

    def worst_key(self, call):
        """worst_key of the call with this quality, without its JSON."""
        return _worst_key(call, self.mos, len(self.problems))

    def differs_from(self, other):
        """Worth telling viewers: a new verdict, problems or worst peer, or the MOS moved by MOS_STEP."""
        if other is None or (self.verdict, self.problems, self.worst_peer) != (
                other.verdict, other.problems, other.worst_peer):
            return True
        if (self.mos is None) != (other.mos is None):
            return True
        return self.mos is not None and abs(self.mos - other.mos) >= MOS_STEP - 1e-9


def judge(rows, row_peers, peers, live, at):
    """{call: CallQuality} of every live call, all at once: `rows` the window rows of the
    fleet's series (an array of WINDOW_NAMES columns, NaN: none), `row_peers` the peer
    number of each; `peers`: (the call number of each peer number, peer names, call names,
    whether each peer is a media server's view), as recent.RecentSamples.peers gives them.

    The summary's rules (rtcscope/quality.py) over arrays: a peer's kinds combine as the
    worst of the gauges and the last, the counters summed, the loss ratio from packets
    else fractionLost; its E-model MOS and problems; a call is judged by its voting peers
    (quality.voting_peers: its clients, or its media server's views when it has nothing
    else), its MOS the lowest of theirs (`worst_peer`: that peer, the first by name of
    equals), its problems theirs and the others' SFU_PROBLEMS, in PROBLEM_CODES order. A
    live call without a row is unknown. Python work only to hand each call its object."""
    qualities = {}
    if len(rows):
        qualities = _judged(rows, row_peers, peers, live, at)
    for call in live:
        if call not in qualities:
            qualities[call] = unknown_quality(at)
    return qualities


def _judged(rows, row_peers, peers, live, at):
    peer_call, peer_names, call_names, views = peers
    order = np.argsort(row_peers, kind="stable")
    rows, row_peers = rows[order], row_peers[order]
    starts = _starts(row_peers)
    numbers = row_peers[starts]
    worst = np.fmax.reduceat(rows[:, :_COUNTERS], starts)
    counters = rows[:, _COUNTERS:]
    present = ~np.isnan(counters)
    summed = np.where(np.add.reduceat(present, starts) > 0,
                      np.add.reduceat(np.where(present, counters, 0.0), starts), np.nan)
    lost, received, sent, freezes = summed.T
    loss = quality.loss_ratio_array(lost, received, sent)
    loss = np.where(np.isnan(loss), worst[:, 2], loss)  # nothing carried: fractionLost
    rtt, jitter, limitation, ice = worst[:, 0], worst[:, 1], worst[:, 3], worst[:, 4]
    mos = quality.estimate_mos_array(rtt, jitter, loss)
    masks = quality.problem_mask_array({"rtt": rtt, "jitter": jitter, "loss": loss, "freezes": freezes,
                                        "qualityLimitationReason": limitation, "iceState": ice})
    # By call: the voting peers, the lowest MOS, the problems.
    calls = peer_call[numbers]
    order = np.argsort(calls, kind="stable")
    calls, numbers, mos, masks = calls[order], numbers[order], mos[order], masks[order]
    windows = np.column_stack((rtt, jitter, loss, freezes, limitation, ice))[order]
    call_starts = _starts(calls)
    group = np.repeat(np.arange(len(call_starts)), np.diff(np.append(call_starts, len(calls))))
    is_view = views[numbers]
    votes = ~is_view | ~np.maximum.reduceat(~is_view, call_starts)[group]
    call_masks = np.bitwise_or.reduceat(np.where(votes, masks, masks & _SFU_BITS), call_starts)
    voting_mos = np.where(votes, mos, np.nan)
    lowest = np.fmin.reduceat(voting_mos, call_starts)
    # The worst peer: the lowest voting MOS, the first by name of equals (rare: a Python look).
    candidates = voting_mos == lowest[group]
    worst_rows = np.full(len(call_starts), -1)
    worst_rows[group[candidates]] = np.flatnonzero(candidates)
    table = _Peers(np.column_stack((windows, mos)), [peer_names[number] for number in numbers.tolist()])
    names = table.names
    tied = np.flatnonzero(np.add.reduceat(candidates, call_starts) > 1).tolist()
    for index in tied:
        rows = np.flatnonzero(candidates & (group == index)).tolist()
        worst_rows[index] = min(rows, key=names.__getitem__)
    bounds = call_starts.tolist() + [len(calls)]
    rounded = [None if low != low else round(low, 2) for low in lowest.tolist()]
    verdicts = [None if mos is None else quality.verdict_of(mos) for mos in rounded]
    codes, qualities = {}, {}
    worst_cells = table.cells(worst_rows)
    for index, (call_number, mask, worst_row) in enumerate(zip(calls[call_starts].tolist(), call_masks.tolist(),
                                                               worst_rows.tolist())):
        call = call_names[call_number]
        if call not in live:
            continue
        problems = codes.get(mask)
        if problems is None:
            problems = codes[mask] = quality.codes_of_mask(mask)
        if worst_row < 0:
            worst_peer = worst = None
        else:
            worst_peer, worst = names[worst_row] or None, dict(zip(PEER_NAMES, worst_cells[index]))
        qualities[call] = CallQuality(rounded[index], verdicts[index] or "unknown", problems, worst_peer, at, worst,
                                      None, (table, bounds[index], bounds[index + 1], worst_row))
    return qualities


class _Peers:
    """One tick's peer windows (an array of PEER_NAMES columns, NaN: none) and their names,
    in call order: what a CallQuality's `peers` are built from when read."""

    __slots__ = ("values", "names")

    def __init__(self, values, names):
        self.values, self.names = values, names

    def cells(self, rows):
        """The rows' values as lists, None for none."""
        values = self.values[rows]
        cells = values.astype(object)
        cells[np.isnan(values)] = None
        return cells.tolist()

    def windows(self, first, end, worst_row, worst):
        """{peer: window values} of rows first..end, that of `worst_row` being `worst` itself."""
        return {name: worst if row == worst_row else dict(zip(PEER_NAMES, cells))
                for row, name, cells in zip(range(first, end), self.names[first:end], self.cells(slice(first, end)))}


def _starts(sorted_numbers):
    """Where each run of equal numbers begins, in a sorted array."""
    return np.concatenate(([0], np.flatnonzero(sorted_numbers[1:] != sorted_numbers[:-1]) + 1))


def call_qualities(rows, live_calls, at):
    """{call: CallQuality} for every live call; `rows`: [(call, peer, kind, {name: value})] of
    the window, as Store.quality_window answers. A live call with no sample in the window is unknown."""
    peer_numbers, call_numbers, peer_call, peer_names, table, row_peers = {}, {}, [], [], [], []
    for call, peer, _, row in rows:
        if call not in live_calls:
            continue
        number = peer_numbers.get((call, peer))
        if number is None:
            number = peer_numbers[(call, peer)] = len(peer_names)
            peer_names.append(peer)
            peer_call.append(call_numbers.setdefault(call, len(call_numbers)))
        row_peers.append(number)
        table.append([math.nan if row.get(name) is None else row[name] for name in WINDOW_NAMES])
    views = np.array([quality.is_view(peer) for peer in peer_names], bool)
    return judge(np.array(table, np.float64).reshape(len(table), len(WINDOW_NAMES)), np.array(row_peers, np.int64),
                 (np.array(peer_call, np.int64), peer_names, list(call_numbers), views), live_calls, at)


def unknown_quality(at):
    return CallQuality(None, "unknown", [], None, at, None, {})


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
    return _worst_key(call, found.get("mos") if found else None, len(found.get("problems") or ()) if found else 0)


def _worst_key(call, mos, problems):
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
