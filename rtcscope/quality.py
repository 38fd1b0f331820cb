"""Call quality: an estimated MOS and the sustained problems an operator should look at.

Inputs are per-metric time series ``[(unix_ms, value), ...]`` for one call, with
counters already turned into per-second rates and gauges as stored (see the
registry for units).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable

import numpy as np

from rtcscope.registry import ICE_STATE_CODES, QUALITY_LIMITATION_CODES
from rtcscope.storage.schema import SFU_SUFFIX

# Thresholds of a problem. RTT 300 ms is the ITU-T G.114 one-way 150 ms limit, both ways.
LOSS_THRESHOLD = 0.03
RTT_THRESHOLD_MS = 300.0
JITTER_THRESHOLD_MS = 30.0
FREEZE_THRESHOLD = 0.0
# A condition is sustained when it holds this many consecutive points, or this long.
SUSTAINED_POINTS = 3
SUSTAINED_MS = 3000

# Simplified ITU-T G.107 E-model (Cole & Rosenbluth, "Voice over IP performance
# monitoring", ACM SIGCOMM CCR 31(2), 2001). Codec: G.711 with packet-loss
# concealment (ITU-T G.113 Appendix I: Ie = 0, Bpl = 25.1) under random loss;
# Opus with FEC tolerates loss better, so the estimate errs on the cautious side.
_R_DEFAULT = 93.2
_CODEC_IE = 0.0
_CODEC_BPL = 25.1
_BURST_RATIO = 1.0
_CODEC_DELAY_MS = 10.0
_ID_KNEE_MS = 177.3


def _positive(value):
    """max(value, 0) with operators alone, exact, for floats and arrays alike (+ 0.0: a
    negative value times False is -0.0)."""
    return value * (value > 0) + 0.0


def _at_most(value, top):
    """min(value, top) with operators alone, exact, for floats and arrays alike."""
    return value * (value <= top) + top * (value > top)


def _mos_from_r(r):
    """ITU-T G.107 Annex B mapping of the R factor to MOS: 1 at R = 0 and 4.5 at R = 100,
    exactly, so R clipped to 0..100 is the mapping's clamp of the MOS to 1..4.5."""
    r = _at_most(_positive(r), 100.0)
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


def _mos(rtt_ms, jitter_ms, loss_ratio):
    """The simplified E-model (estimate_mos) of values all present, floats or arrays alike:
    the one formula both estimate_mos and estimate_mos_array use."""
    delay = _positive(rtt_ms) / 2 + 2 * _positive(jitter_ms) + _CODEC_DELAY_MS
    delay_impairment = 0.024 * delay + 0.11 * _positive(delay - _ID_KNEE_MS)
    loss_percent = _at_most(_positive(loss_ratio), 1.0) * 100
    loss_impairment = _CODEC_IE + (95 - _CODEC_IE) * loss_percent / (loss_percent / _BURST_RATIO + _CODEC_BPL)
    return _mos_from_r(_R_DEFAULT - delay_impairment - loss_impairment)


# G.107 user-satisfaction bands: R >= 80 "satisfied", R >= 70 "some users dissatisfied".
GOOD_MOS = _mos_from_r(80.0)
FAIR_MOS = _mos_from_r(70.0)


def estimate_mos(rtt_ms: float | None, jitter_ms: float | None, loss_ratio: float | None) -> float | None:
    """Estimated listening MOS (1..4.5) from network figures, by the simplified E-model.

    effective latency d = rtt/2 + 2*jitter + 10 ms
    Id    = 0.024*d + 0.11*(d - 177.3)*H(d - 177.3)        (H: step function)
    Ieeff = Ie + (95 - Ie) * Ppl / (Ppl/BurstR + Bpl)      (Ppl: loss in %)
    R     = 93.2 - Id - Ieeff
    MOS   = 1 + 0.035*R + 7e-6*R*(R - 60)*(100 - R), clamped to 1..4.5

    A missing input counts as perfect; None when neither rtt nor loss is known,
    since jitter alone says too little about a call.
    """
    if rtt_ms is None and loss_ratio is None:
        return None
    return _mos(rtt_ms or 0.0, jitter_ms or 0.0, loss_ratio or 0.0)


def estimate_mos_array(rtt_ms: np.ndarray, jitter_ms: np.ndarray, loss_ratio: np.ndarray) -> np.ndarray:
    """estimate_mos over arrays, NaN for a missing input (and for the MOS where it is None):
    the fleet's peers at once."""
    mos = _mos(np.nan_to_num(rtt_ms), np.nan_to_num(jitter_ms), np.nan_to_num(loss_ratio))
    return np.where(np.isnan(rtt_ms) & np.isnan(loss_ratio), np.nan, mos)


def verdict_of(mos: float | None) -> str | None:
    """The G.107 band of a MOS: "good" from R = 80, "fair" from R = 70, else "poor"; None without a MOS."""
    if mos is None:
        return None
    if mos >= GOOD_MOS:
        return "good"
    if mos >= FAIR_MOS:
        return "fair"
    return "poor"


def loss_ratio(lost: float, received: float, sent: float) -> float | None:
    """Packets lost over packets carried (rates or increments alike); None when nothing was carried.

    packetsSent, when given, joins packetsReceived in the denominator: packetsLost
    also counts what the remote lost of what this peer sent, so a send-only peer
    would otherwise read as 100 % loss.
    """
    lost, total = _carried(lost, received, sent)
    return lost / total if total > 0 else None


def loss_ratio_array(lost: np.ndarray, received: np.ndarray, sent: np.ndarray) -> np.ndarray:
    """loss_ratio over arrays: NaN where nothing was carried or `lost` is NaN (received and
    sent NaN count as none)."""
    lost, total = _carried(lost, np.nan_to_num(received), np.nan_to_num(sent))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, lost / total, np.nan)


def _carried(lost, received, sent):
    """(packets lost, packets carried), negatives counted as none: loss_ratio's rule, for
    floats and arrays alike."""
    lost = _positive(lost)
    return lost, lost + _positive(received) + _positive(sent)


# Problem codes, in the order they are listed (and their bits in problem_mask: new ones go at
# the end); each with the metric it is judged on.
PROBLEM_CODES = ("high_loss", "high_rtt", "high_jitter", "freezes", "cpu_limited", "bandwidth_limited", "ice_failed")
# Problems that are a state code, not a value over a threshold.
_STATE_CODES = {"cpu_limited": QUALITY_LIMITATION_CODES["cpu"],
                "bandwidth_limited": QUALITY_LIMITATION_CODES["bandwidth"], "ice_failed": ICE_STATE_CODES["failed"]}
_THRESHOLDS = {"high_loss": LOSS_THRESHOLD, "high_rtt": RTT_THRESHOLD_MS, "high_jitter": JITTER_THRESHOLD_MS,
               "freezes": FREEZE_THRESHOLD, **_STATE_CODES}
# Which window value (current_problems) shows each problem, in PROBLEM_CODES order.
_PROBLEM_INPUTS = tuple(zip(PROBLEM_CODES, ("loss", "rtt", "jitter", "freezes", "qualityLimitationReason",
                                            "qualityLimitationReason", "iceState")))
# Problems shown by one point, without sustaining: a freeze is already a long stall, a failed ICE a lost connection.
_UNSUSTAINED = frozenset({"freezes", "ice_failed"})
# What only a media server sees of a peer: its problem, even where the media server's view does not vote.
SFU_PROBLEMS = frozenset({"ice_failed"})


def is_view(peer: str) -> bool:
    """Whether a peer is a media server's view of one (`P@janus`), not a client."""
    return peer.endswith(SFU_SUFFIX)


def voting_peers(peers: Iterable[str]) -> list[str]:
    """The peers whose figures judge a call: its clients. A media server's view of a peer
    (`P@janus`) explains, it does not vote, unless the call has nothing else."""
    peers = list(peers)
    clients = [peer for peer in peers if not is_view(peer)]
    return clients or peers


def people(peers: Collection[str]) -> tuple[Collection[str], dict[str, str]]:
    """The people of a call as the fleet's breakdowns count them, and {person: the media
    server's view of it} of those with one: each voting peer is a person, once; the view of
    client `P`, `P@janus`, joins it with its dimensions, its figures do not vote. A view of no
    voting peer (`janus-<handle>` beside clients: maybe one of them, under another name) is
    no one. Without a view among `peers` (most calls), the people are `peers` themselves."""
    for peer in peers:
        if peer.endswith(SFU_SUFFIX):
            break
    else:
        return peers, {}
    voters = voting_peers(peers)
    views = {}
    for peer in voters:
        view = peer + SFU_SUFFIX
        if view in peers:
            views[peer] = view
    return voters, views


def threshold_of(problem: str) -> float:
    return _THRESHOLDS[problem]


def holds(problem: str, value):
    """Whether one value shows the problem: over its threshold, or the state's code; for
    an array of values, whether each does (NaN: none).

    The values are a loss ratio (high_loss), rtt and jitter in ms, freezes
    counted (a count or a rate), qualityLimitationReason and iceState codes."""
    if problem in _STATE_CODES:
        return np.round(value) == _STATE_CODES[problem]
    return value > _THRESHOLDS[problem]


def problem_mask(codes: Iterable[str]) -> float:
    """Problem codes as the bits of one float (bit i: PROBLEM_CODES[i]), for storage."""
    codes = set(codes)
    return float(sum(1 << bit for bit, code in enumerate(PROBLEM_CODES) if code in codes))


def codes_of_mask(mask: float) -> list[str]:
    return [code for bit, code in enumerate(PROBLEM_CODES) if int(mask) & (1 << bit)]


def current_problems(window: dict[str, float | None]) -> list[str]:
    """The problems active in a window's values: {"loss", "rtt", "jitter", "freezes",
    "qualityLimitationReason", "iceState"} (a missing or None value shows none)."""
    return [problem for problem, name in _PROBLEM_INPUTS
            if window.get(name) is not None and holds(problem, window[name])]


def problem_mask_array(window: dict[str, np.ndarray]) -> np.ndarray:
    """current_problems over arrays of window values (NaN: none), as problem_mask's bits."""
    mask = np.zeros(len(window["rtt"]), np.int64)
    with np.errstate(invalid="ignore"):
        for bit, (problem, name) in enumerate(_PROBLEM_INPUTS):
            mask |= holds(problem, window[name]).astype(np.int64) << bit
    return mask


def _points(series: dict[str, list[tuple[int, float]]], metric: str) -> list[tuple[int, float]]:
    """The usable points of one metric, oldest first (empty buckets are None)."""
    return sorted(
        (time, float(value)) for time, value in series.get(metric) or ()
        if isinstance(value, (int, float)) and math.isfinite(value)
    )


def _packet_loss(series: dict[str, list[tuple[int, float]]]) -> list[tuple[int, float, float, float]]:
    """(time, lost/s, received/s, sent/s) from the counter rates, where packets were carried."""
    received = dict(_points(series, "packetsReceived"))
    sent = dict(_points(series, "packetsSent"))
    return [(time, lost, received.get(time, 0.0), sent.get(time, 0.0)) for time, lost in _points(series, "packetsLost")
            if loss_ratio(lost, received.get(time, 0.0), sent.get(time, 0.0)) is not None]


def _loss_ratio_points(series: dict[str, list[tuple[int, float]]]) -> tuple[str, list[tuple[int, float]]]:
    """Loss ratio over time, from packet rates when there are any, else from fractionLost."""
    packet_loss = _packet_loss(series)
    if packet_loss:
        return "packetsLost", [(time, loss_ratio(lost, received, sent)) for time, lost, received, sent in packet_loss]
    return "fractionLost", _points(series, "fractionLost")


def _runs(points: Iterable[tuple[int, float]], condition: Callable[[float], bool]) -> list[list[tuple[int, float]]]:
    """Maximal stretches of consecutive points for which the condition holds."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for point in points:
        if condition(point[1]):
            current.append(point)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _is_sustained(run: list[tuple[int, float]]) -> bool:
    return len(run) >= SUSTAINED_POINTS or run[-1][0] - run[0][0] >= SUSTAINED_MS


def _merge_close(runs: list[list[tuple[int, float]]]) -> list[list[tuple[int, float]]]:
    """Runs less than the sustain time apart are one problem: a value hovering at
    a threshold is one long problem, not many short ones."""
    merged: list[list[tuple[int, float]]] = []
    for run in runs:
        if merged and run[0][0] - merged[-1][-1][0] < SUSTAINED_MS:
            merged[-1] = merged[-1] + run
        else:
            merged.append(run)
    return merged


def _problem(problem: str, metric: str, run: list[tuple[int, float]]) -> dict:
    return {
        "problem": problem,
        "metric": metric,
        "from": run[0][0],
        "to": run[-1][0],
        "worst": max(value for _, value in run),
        "threshold": threshold_of(problem),
    }


def find_problems(series: dict[str, list[tuple[int, float]]]) -> list[dict]:
    """Sustained loss, RTT, jitter and quality limitation, and every freeze and failed ICE, sorted by start.

    Freezes need no sustaining: the browser only counts a freeze after a long stall.
    Occurrences of one problem less than the sustain time apart are merged.
    """
    loss_metric, loss_points = _loss_ratio_points(series)
    limitation = _points(series, "qualityLimitationReason")
    inputs = {
        "high_loss": (loss_metric, loss_points),
        "high_rtt": ("rtt", _points(series, "rtt")),
        "high_jitter": ("jitter", _points(series, "jitter")),
        "freezes": ("freezeCount", _points(series, "freezeCount")),
        "cpu_limited": ("qualityLimitationReason", limitation),
        "bandwidth_limited": ("qualityLimitationReason", limitation),
        "ice_failed": ("iceState", _points(series, "iceState")),
    }
    problems = []
    for problem in PROBLEM_CODES:
        metric, points = inputs[problem]
        runs = _runs(points, lambda value, name=problem: holds(name, value))
        if problem not in _UNSUSTAINED:
            runs = [run for run in runs if _is_sustained(run)]
        problems.extend(_problem(problem, metric, run) for run in _merge_close(runs))
    return sorted(problems, key=lambda found: (found["from"], found["problem"]))


def _mean(series: dict[str, list[tuple[int, float]]], metric: str) -> float | None:
    values = [value for _, value in _points(series, metric)]
    return sum(values) / len(values) if values else None


def _mean_loss_ratio(series: dict[str, list[tuple[int, float]]]) -> float | None:
    """Packets lost over packets carried for the whole call, else the mean fractionLost."""
    packet_loss = _packet_loss(series)
    if packet_loss:
        return loss_ratio(*(sum(point[column] for point in packet_loss) for column in (1, 2, 3)))
    return _mean(series, "fractionLost")


def mos_timeline(series: dict[str, list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The MOS of every point in time that has an rtt or a loss ratio: where the call got worse."""
    rtt = dict(_points(series, "rtt"))
    jitter = dict(_points(series, "jitter"))
    loss = dict(_loss_ratio_points(series)[1])
    return [(time, estimate_mos(rtt.get(time), jitter.get(time), loss.get(time)))
            for time in sorted(rtt.keys() | loss.keys())]


def summarize_quality(series: dict[str, list[tuple[int, float]]],
                      views: dict[str, list[tuple[int, float]]] | None = None) -> dict:
    """MOS from the call's mean rtt, jitter and loss ratio, its verdict, the problems seen
    and the MOS over time. `views`: the series of the peers that do not vote (voting_peers),
    of which only the SFU_PROBLEMS count.

    Verdict: "good" from MOS 4.02 (R >= 80), "fair" from 3.60 (R >= 70), else "poor".
    """
    mos = estimate_mos(_mean(series, "rtt"), _mean(series, "jitter"), _mean_loss_ratio(series))
    verdict = verdict_of(mos)
    problems = find_problems(series)
    if views:
        problems = sorted(problems + [found for found in find_problems(views) if found["problem"] in SFU_PROBLEMS],
                          key=lambda found: (found["from"], found["problem"]))
    return {"mos": mos, "verdict": verdict, "problems": problems, "timeline": mos_timeline(series)}

