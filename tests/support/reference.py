"""The fleet view's rules one call, one peer, one series at a time, in plain Python over
rtcscope/quality.py: what the detector computed per call before it computed the whole
fleet in arrays (recent.RecentSamples, fleet.judge), kept as the reference the columnar
results are held equal to, and as the baseline the benchmarks time the columnar path
against on the same samples (bench/onetick.py --compare); and a feed row's samples read
back as dicts (decode_samples), the shape this path kept them in."""
from bisect import bisect_left
from itertools import islice

from rtcscope import quality
from rtcscope.live import fleet
from rtcscope.storage.feed import decode_sample_runs
from rtcscope.storage.schema import FEED_INDEX

_GAUGE_INDEXES = tuple(FEED_INDEX[name] for name in fleet.WINDOW_GAUGES)
_LAST_INDEXES = tuple(FEED_INDEX[name] for name in fleet.WINDOW_LAST)
_COUNTER_INDEXES = tuple(FEED_INDEX[name] for name in fleet.WINDOW_COUNTERS)


class Samples:
    """Feed samples kept per series in time order as dicts: {call: {peer: {kind: {time µs: values}}}}."""

    def __init__(self):
        self.calls = {}

    def add(self, rows):
        """Fold feed rows [(call, peer, {kind: {time µs: values}})] in: appended after a
        series' newest sample, otherwise merged and put in order."""
        calls = self.calls
        for call, peer, kinds in rows:
            kinds = {kind: dict(samples) for kind, samples in kinds.items()}
            peers = calls.get(call)
            if peers is None:
                calls[call] = {peer: kinds}
                continue
            known = peers.get(peer)
            if known is None:
                peers[peer] = kinds
                continue
            for kind, samples in kinds.items():
                found = known.get(kind)
                if not samples:
                    continue
                if not found:
                    known[kind] = samples
                elif next(iter(samples)) > next(reversed(found)):
                    found.update(samples)
                else:
                    for us, values in samples.items():
                        same = found.get(us)
                        found[us] = values if same is None else merge_values(same, values)
                    known[kind] = dict(sorted(found.items()))

    def drop(self, call, peer):
        peers = self.calls.get(call)
        if peers is not None:
            peers.pop(peer, None)
            if not peers:
                del self.calls[call]

    def windows(self, calls, start_ms, end_ms):
        """({call: {peer: [window_row of each kind]}}, {call: until ms}) of `calls` over
        [start_ms, end_ms]; and for each call the time until which a window sliding with the
        clock keeps the same samples (its oldest one leaves, or one stamped ahead enters)."""
        start, end = start_ms * 1000, (end_ms + 1) * 1000
        length = end_ms - start_ms
        by_call, until = {}, {}
        for call in calls:
            peers = self.calls.get(call)
            if peers is None:
                continue
            found = {}
            oldest = ahead = None
            for peer, kinds in peers.items():
                rows = []
                for samples in kinds.values():
                    earliest = next(iter(samples), None)
                    if earliest is None:
                        continue
                    if earliest >= start and next(reversed(samples)) < end:  # the usual case: all inside
                        inside = samples.values()
                    else:
                        times = list(samples)
                        first, last = bisect_left(times, start), bisect_left(times, end)
                        if last < len(times) and (ahead is None or times[last] < ahead):
                            ahead = times[last]
                        if first == last:
                            continue
                        earliest = times[first]
                        inside = islice(samples.values(), first, last)
                    if oldest is None or earliest < oldest:
                        oldest = earliest
                    row = window_row(inside)
                    if row is not None:
                        rows.append(row)
                if rows:
                    found[peer] = rows
            if found:
                by_call[call] = found
            bounds = [oldest / 1000 + length] if oldest is not None else []
            if ahead is not None:
                bounds.append(ahead / 1000 - 1)
            if bounds:
                until[call] = min(bounds)
        return by_call, until

    def metric_series(self, field, calls, start_ms, end_ms, bucket_ms, *, rate, scale=1.0, changed=None):
        """{call: [(bucket ms, value)]} of `calls` over [start_ms, end_ms], as Store.metric_series
        answers for the field: a gauge's mean per bucket over the call's samples; a counter's
        rate, per series the non-negative derivative (per second) of its last value per bucket,
        summed over the call's series. With `changed` ({call: µs}, as `touched`), a gauge's
        buckets only from the one holding that time: the earlier ones got no sample."""
        start, end = start_ms * 1000, (end_ms + 1) * 1000
        bucket_us = bucket_ms * 1000
        index = FEED_INDEX[field]
        result = {}
        for call in calls:
            buckets = {}
            low = start
            if changed is not None and not rate:
                low = max(start, changed[call] - changed[call] % bucket_us)
            for kinds in self.calls.get(call, {}).values():
                for samples in kinds.values():
                    if rate:
                        _add_rates(buckets, samples, index, start, end, bucket_us)
                        continue
                    for us, values in reversed(samples.items()):  # newest first: what came before `low` is passed by at once
                        if us < low:
                            break
                        value = values[index]
                        if value is not None and us < end:
                            found = buckets.get(us - us % bucket_us)
                            if found is None:
                                buckets[us - us % bucket_us] = [value, 1]
                            else:
                                found[0] += value
                                found[1] += 1
            if buckets:
                if rate:
                    result[call] = [(us // 1000, total * scale) for us, total in sorted(buckets.items())]
                else:
                    result[call] = [(us // 1000, total / count * scale) for us, (total, count) in sorted(buckets.items())]
        return result


def _add_rates(buckets, samples, index, start, end, bucket_us):
    """Add one series' rates to `buckets` {bucket µs: summed rate}: the last value of each
    bucket, and between consecutive buckets with a value, the increase per second."""
    lasts = {}
    for us, values in samples.items():
        value = values[index]
        if value is not None and start <= us < end:
            lasts[us - us % bucket_us] = value  # in time order: the bucket's last wins
    previous = None
    for bucket in sorted(lasts):
        value = lasts[bucket]
        if previous is not None:
            increase = (value - previous[1]) * 1_000_000 / (bucket - previous[0])
            if increase >= 0:
                buckets[bucket] = buckets.get(bucket, 0.0) + increase
        previous = (bucket, value)


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


def call_quality(peers, at):
    """A call's CallQuality from {peer: window values}, judged by its voting peers."""
    problems = set()
    lowest = worst = worst_peer = None
    voters = peers if len(peers) < 2 else set(quality.voting_peers(peers))
    for peer in sorted(peers) if len(peers) > 1 else peers:
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
                             [code for code in quality.PROBLEM_CODES if code in problems] if problems else [],
                             worst_peer, at, worst, peers)


def qualities(by_call, live, at):
    """{call: CallQuality} of the live calls from Samples.windows' rows."""
    empty = {}
    return {call: call_quality({peer: peer_window(kinds) for peer, kinds in by_call.get(call, empty).items()}, at)
            for call in live}


def decode_samples(text, last_ms):
    """`w` back as {kind: {time µs: values}}, each kind's samples in time order and a time's
    samples merged (merge_values), `values` a list in FEED_FIELDS order (FEED_INDEX; None:
    absent): decode_sample_runs of one row, as dicts."""
    runs = decode_sample_runs([(None, None, text, last_ms)])
    out = {}
    samples = iter(zip(runs.times.tolist(), runs.values.tolist()))
    for (_, _, kind), count in zip(runs.keys, runs.counts.tolist()):
        found = out.setdefault(kind, {})
        for us, values in islice(samples, count):
            values = [None if value != value else value for value in values]
            same = found.get(us)
            found[us] = values if same is None else merge_values(same, values)
    return {kind: dict(sorted(found.items())) for kind, found in out.items() if found}


def merge_values(older, newer):
    """Two samples of one series at one time are one point to InfluxDB: the fields of
    both, the newer one's where they meet."""
    return [old if new is None else new for old, new in zip(older, newer)]
