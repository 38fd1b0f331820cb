"""The fleet view's rules one call, one peer, one series at a time, in plain Python over
rtcscope/quality.py: what the detector computed per call before it computed the whole
fleet in arrays (recent.RecentSamples, fleet.judge), kept as the reference the columnar
results are held equal to, and what the benchmarks time the columnar path against."""
from rtcscope import quality
from rtcscope.live import fleet
from rtcscope.storage.feed import merge_values
from rtcscope.storage.schema import FEED_INDEX

_GAUGE_INDEXES = tuple(FEED_INDEX[name] for name in fleet.WINDOW_GAUGES)
_LAST_INDEXES = tuple(FEED_INDEX[name] for name in fleet.WINDOW_LAST)
_COUNTER_INDEXES = tuple(FEED_INDEX[name] for name in fleet.WINDOW_COUNTERS)


class Samples:
    """Feed samples kept per series as dicts: {call: {peer: {kind: {time µs: values}}}}."""

    def __init__(self):
        self.calls = {}

    def add(self, rows):
        for call, peer, kinds in rows:
            for kind, samples in kinds.items():
                found = self.calls.setdefault(call, {}).setdefault(peer, {}).setdefault(kind, {})
                for us, values in samples.items():
                    same = found.get(us)
                    found[us] = list(values) if same is None else merge_values(same, values)

    def drop(self, call, peer):
        peers = self.calls.get(call, {})
        peers.pop(peer, None)
        if not peers:
            self.calls.pop(call, None)

    def windows(self, start_ms, end_ms):
        """{call: {peer: [window row of each kind]}} over [start_ms, end_ms]."""
        start, end = start_ms * 1000, (end_ms + 1) * 1000
        by_call = {}
        for call, peers in self.calls.items():
            for peer, kinds in peers.items():
                for samples in kinds.values():
                    row = window_row([values for us, values in sorted(samples.items()) if start <= us < end])
                    if row is not None:
                        by_call.setdefault(call, {}).setdefault(peer, []).append(row)
        return by_call

    def metric_series(self, field, calls, start_ms, end_ms, bucket_ms, *, rate, scale=1.0):
        """Store.metric_series' answer for the field, series by series."""
        start, end, bucket_us, index = start_ms * 1000, (end_ms + 1) * 1000, bucket_ms * 1000, FEED_INDEX[field]
        result = {}
        for call in calls:
            buckets = {}
            for kinds in self.calls.get(call, {}).values():
                for samples in kinds.values():
                    inside = [(us, values[index]) for us, values in sorted(samples.items())
                              if start <= us < end and values[index] is not None]
                    if rate:
                        lasts = {us - us % bucket_us: value for us, value in inside}
                        previous = None
                        for bucket in sorted(lasts):
                            if previous is not None:
                                increase = (lasts[bucket] - previous[1]) * 1_000_000 / (bucket - previous[0])
                                if increase >= 0:
                                    buckets.setdefault(bucket, []).append(increase)
                            previous = (bucket, lasts[bucket])
                    else:
                        for us, value in inside:
                            buckets.setdefault(us - us % bucket_us, []).append(value)
            if buckets:
                result[call] = [(bucket // 1000, (sum(values) if rate else sum(values) / len(values)) * scale)
                                for bucket, values in sorted(buckets.items())]
        return result


def window_row(inside):
    """One series' window row from its samples in the window, oldest first: the mean of
    WINDOW_GAUGES, the last of WINDOW_LAST, the spread of WINDOW_COUNTERS (None: no value)."""
    columns = tuple(zip(*inside))
    if not columns:
        return None
    row = []
    for index in _GAUGE_INDEXES:
        present = [value for value in columns[index] if value is not None]
        row.append(sum(present) / len(present) if present else None)
    for index in _LAST_INDEXES:
        present = [value for value in columns[index] if value is not None]
        row.append(present[-1] if present else None)
    for index in _COUNTER_INDEXES:
        present = [value for value in columns[index] if value is not None]
        row.append(max(present) - min(present) if present else None)
    return None if row.count(None) == len(row) else tuple(row)


def peer_window(rows):
    """One peer's window values from its kinds' rows: the worst of the gauges and the last,
    the counters summed, the loss ratio from packets else fractionLost."""
    rtt, jitter, fraction, limitation, ice, lost, received, sent, freezes = (
        _combine([row[index] for row in rows], worst=index < len(fleet.WINDOW_GAUGES + fleet.WINDOW_LAST))
        for index in range(len(fleet.WINDOW_NAMES)))
    loss = None
    if lost is not None:
        loss = quality.loss_ratio(lost, received or 0.0, sent or 0.0)
    if loss is None:
        loss = fraction
    return {"rtt": rtt, "jitter": jitter, "loss": loss, "freezes": freezes, "qualityLimitationReason": limitation,
            "iceState": ice}


def _combine(values, worst):
    present = [value for value in values if value is not None]
    if not present:
        return None
    return max(present) if worst else sum(present)


def call_quality(peers, at):
    """A call's CallQuality from {peer: window values}, judged by its voting peers."""
    problems = set()
    lowest = worst = worst_peer = None
    voters = set(quality.voting_peers(peers))
    for peer in sorted(peers):
        window = peers[peer]
        mos = window["mos"] = quality.estimate_mos(window["rtt"], window["jitter"], window["loss"])
        if peer not in voters:
            problems.update(quality.SFU_PROBLEMS.intersection(quality.current_problems(window)))
            continue
        problems.update(quality.current_problems(window))
        if mos is not None and (lowest is None or mos < lowest):
            lowest, worst, worst_peer = mos, window, peer or None
    mos = None if lowest is None else round(lowest, 2)
    return fleet.CallQuality(mos, quality.verdict_of(mos) or "unknown",
                             [code for code in quality.PROBLEM_CODES if code in problems], worst_peer, at, worst, peers)


def qualities(by_call, live, at):
    """{call: CallQuality} of the live calls from Samples.windows' rows."""
    return {call: call_quality({peer: peer_window(rows) for peer, rows in by_call.get(call, {}).items()}, at)
            for call in live}
