"""The samples of the last seconds, kept by the call detector from the live feed.

Every presence row of the feed (rtc_feed) carries the FEED_FIELDS of its
samples (docs/storage.md). The detector keeps them per (call, peer, kind) for
the look-back it needs and computes from them, in memory, what it would
otherwise ask InfluxDB over rtc_stats every tick, in the shapes those queries
answer and with their aggregates:

- the quality window (`Store.quality_window`): per (call, peer, kind) the mean
  of the gauges, the last of the limitation code, the spread of the counters;
- a watched metric's newest buckets (`Store.metric_series`): per call the mean
  of a gauge over its peers and kinds, or the sum over them of each series'
  non-negative per-second derivative of its last value per bucket.

A sample is keyed by its time (µs) within its series, as InfluxDB keys a
point (samples at one time merge their fields), so rows read twice (the
feed's overlap) change nothing; its values are a list in FEED_FIELDS order
(storage.feed.decode_samples), and each series is kept in time order, so a window
is a slice found by bisection and its aggregates are taken column by column.
"""
from bisect import bisect_left
from itertools import islice

from ..storage.feed import merge_values
from ..storage.schema import FEED_INDEX
from . import fleet


class RecentSamples:
    def __init__(self):
        self.calls = {}  # call -> {peer: {kind: {time µs: values}}}, each series in time order
        # Calls with samples added or dropped since the detector last cleared it -> the earliest
        # time (µs) that changed (0: a peer's samples were dropped).
        self.touched = {}

    def add(self, rows):
        """Fold feed rows [(call, peer, {kind: {time µs: values}})] in. A row's samples mostly
        come after the series' newest: they are appended; otherwise merged and put in order."""
        calls, touched = self.calls, self.touched
        for call, peer, kinds in rows:
            earliest = touched.get(call)
            for samples in kinds.values():
                first = next(iter(samples), None)
                if first is not None and (earliest is None or first < earliest):
                    earliest = first
            if earliest is not None:
                touched[call] = earliest
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

    def clear(self):
        self.calls = {}
        self.touched = {}

    def drop(self, call, peer):
        peers = self.calls.get(call)
        if peers is not None:
            self.touched[call] = 0
            peers.pop(peer, None)
            if not peers:
                del self.calls[call]

    def trim(self, cutoff_ms, calls):
        """Forget the samples of `calls` older than `cutoff_ms` (bounded memory, not correctness:
        readers select by time). The detector trims the calls that got samples: a call that
        sends no more keeps its last ones until it leaves the window."""
        cutoff = cutoff_ms * 1000
        for call in calls:
            for kinds in self.calls.get(call, {}).values():
                for samples in kinds.values():
                    first = next(iter(samples), cutoff)
                    while first < cutoff:  # in time order: the oldest go first
                        del samples[first]
                        first = next(iter(samples), cutoff)

    def windows(self, calls, start_ms, end_ms):
        """({call: {peer: [row of each kind]}}, {call: until ms}) of `calls` over [start_ms, end_ms]:
        the rows Store.quality_window answers with fleet's WINDOW_GAUGES, WINDOW_LAST and
        WINDOW_COUNTERS (as fleet.window_row's tuples), grouped as fleet.qualities_of takes them; and for each call the
        time until which a window sliding with the clock keeps the same samples (its oldest
        one leaves, or one stamped ahead enters), barring new ones."""
        start, end = start_ms * 1000, (end_ms + 1) * 1000
        length = end_ms - start_ms
        window_row = fleet.window_row
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
