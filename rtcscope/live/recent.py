"""The samples of the last seconds, kept by the call detector from the live feed, in columns.

Every presence row of the feed (rtc_feed) carries the FEED_FIELDS of its samples
(docs/storage.md). The detector keeps them for the look-back it needs and computes from
them, in memory and for every series at once, what it would otherwise ask InfluxDB over
rtc_stats every tick, in the shapes those queries answer and with their aggregates:

- the quality window (`Store.quality_window`): per (call, peer, kind) the mean of the
  gauges, the last of the limitation code and ICE state, the spread of the counters
  (`window_rows`, which fleet.judge turns into qualities);
- a watched metric's newest buckets (`Store.metric_series`): per call the mean of a gauge
  over its peers and kinds, or the sum over them of each series' non-negative per-second
  derivative of its last value per bucket.

The samples are flat arrays sorted by (series, time): a series index, the time (µs) and
one float64 column per FEED_FIELDS name, NaN where absent. Folding a feed row is Python
work per row (a few list extends); the arrays are brought up to date once per tick
(`settle`), where new samples are merged in, samples at one time of one series become one
point (as InfluxDB keys a point: the fields of both, the later one's where they meet, so
rows read twice change nothing) and the old ones are dropped. Aggregates are taken over
the whole fleet with reduceat over the series-sorted rows: tens of milliseconds for
120,000 series, where a loop per series took most of a second. Only the detector's tick
changes these arrays (`settle` runs in a worker thread while the loop serves requests; the
arrays are replaced, never changed in place).
"""
import itertools
import math

import numpy as np

from ..quality import is_view
from ..storage.schema import FEED_FIELDS, FEED_INDEX
from . import fleet

# A sample's time is kept relative to the oldest one kept, in this many bits of the
# series-and-time sort key: samples stamped more than 12 days ahead of the oldest are not kept.
_TIME_BITS = 40
_WIDTH = len(FEED_FIELDS)
_WINDOW_COLUMNS = np.array([FEED_INDEX[name] for name in fleet.WINDOW_NAMES])
_GAUGES = len(fleet.WINDOW_GAUGES)
_LASTS = _GAUGES + len(fleet.WINDOW_LAST)


class _Slots:
    """Indexes of keys, reused once freed: series, peers and calls are numbered so that
    numpy can group by them; a call that ends gives its numbers back."""

    def __init__(self):
        self.index = {}  # key -> its number
        self.keys = []  # number -> key (None: free)
        self.free = []

    def add(self, key):
        number = self.free.pop() if self.free else len(self.keys)
        if number == len(self.keys):
            self.keys.append(key)
        else:
            self.keys[number] = key
        self.index[key] = number
        return number

    def remove(self, key):
        number = self.index.pop(key)
        self.keys[number] = None
        return number


class RecentSamples:
    def __init__(self):
        self.clear()

    def clear(self):
        self._series = _Slots()  # (call, peer, kind) -> series number
        self._peers = _Slots()  # (call, peer) -> peer number
        self._calls = _Slots()  # call -> call number
        self._peer_of = np.zeros(0, np.int64)  # series number -> peer number
        self._call_of = np.zeros(0, np.int64)  # peer number -> call number
        self._kinds = {}  # peer number -> its series numbers
        self._peer_count = {}  # call number -> its peers
        self._freed = []  # series numbers dropped since the last settle: their samples go then
        self._freed_peers, self._freed_calls = [], []
        self.series = np.zeros(0, np.int64)  # each sample's series number, sorted with time
        self.times = np.zeros(0, np.int64)  # µs
        self.values = np.zeros((0, _WIDTH))  # FEED_FIELDS order, NaN: absent
        self._pending = ([], [], [])  # folded, not settled: series numbers, times, values lists
        # Calls with samples added or dropped since the detector last cleared it -> the earliest
        # time (µs) that changed (0: a peer's samples were dropped).
        self.touched = {}

    def add(self, rows):
        """Fold feed rows [(call, peer, {kind: {time µs: values}})] in (settled at the next `settle`)."""
        touched, index = self.touched, self._series.index
        numbers, times, values = self._pending
        for call, peer, kinds in rows:
            earliest = touched.get(call)
            for kind, samples in kinds.items():
                if not samples:
                    continue
                first = next(iter(samples))
                if earliest is None or first < earliest:
                    earliest = first
                number = index.get((call, peer, kind))
                if number is None:
                    number = self._new_series(call, peer, kind)
                numbers.append((number, len(samples)))
                times.extend(samples)
                values.extend(samples.values())
            if earliest is not None:
                touched[call] = earliest

    def _new_series(self, call, peer, kind):
        peer_number = self._peers.index.get((call, peer))
        if peer_number is None:
            peer_number = self._peers.add((call, peer))
            call_number = self._calls.index.get(call)
            if call_number is None:
                call_number = self._calls.add(call)
            self._peer_count[call_number] = self._peer_count.get(call_number, 0) + 1
            self._call_of = _set(self._call_of, peer_number, call_number)
            self._kinds[peer_number] = []
        number = self._series.add((call, peer, kind))
        self._peer_of = _set(self._peer_of, number, peer_number)
        self._kinds[peer_number].append(number)
        return number

    def drop(self, call, peer):
        """Forget a peer's samples (at the next settle; until then they are not selected)."""
        peer_number = self._peers.index.get((call, peer))
        if peer_number is None:
            return
        self.touched[call] = 0
        for number in self._kinds.pop(peer_number):
            self._series.remove(self._series.keys[number])
            self._freed.append(number)
        self._peers.remove((call, peer))
        self._freed_peers.append(peer_number)
        call_number = self._call_of[peer_number]
        self._peer_count[call_number] -= 1
        if not self._peer_count[call_number]:
            del self._peer_count[call_number]
            self._calls.remove(call)
            self._freed_calls.append(int(call_number))

    def settle(self, cutoff_ms):
        """Merge the folded samples in, drop those of dropped peers and those older than
        `cutoff_ms` (bounded memory, not correctness: readers select by time). Runs in the
        tick's worker thread: it replaces the arrays, and frees the numbers of what was
        dropped for reuse only once their samples are gone."""
        numbers, times, values = self._pending
        self._pending = ([], [], [])
        series, stamps, table = self.series, self.times, self.values
        if numbers:
            counts = [count for _, count in numbers]
            new_series = np.repeat(np.fromiter((number for number, _ in numbers), np.int64, len(numbers)), counts)
            new_values = np.fromiter((math.nan if value is None else value for value in itertools.chain.from_iterable(
                values)), np.float64, len(values) * _WIDTH).reshape(len(values), _WIDTH)
            series = np.concatenate((series, new_series))
            stamps = np.concatenate((stamps, np.fromiter(times, np.int64, len(times))))
            table = np.concatenate((table, new_values))
        # Old samples only cost memory: they go once they are a quarter of the arrays (a copy
        # of them all); dropped peers' at once, and those too far ahead for the sort key.
        keep = stamps >= cutoff_ms * 1000
        far = stamps - (stamps.min() if len(stamps) else 0) >= 1 << _TIME_BITS
        if self._freed or far.any() or np.count_nonzero(~keep) * 4 > len(keep):
            keep &= ~far
            if self._freed:
                dropped = np.zeros(len(self._series.keys), bool)
                dropped[self._freed] = True
                keep &= ~dropped[series]
            series, stamps, table = series[keep], stamps[keep], table[keep]
        if numbers and len(stamps):
            key = (series << _TIME_BITS) | (stamps - stamps.min())
            order = np.argsort(key, kind="stable")  # the old run and the new one: near linear
            series, stamps, table, key = series[order], stamps[order], table[order], key[order]
            repeated = np.flatnonzero(key[1:] == key[:-1]) + 1
            if len(repeated):  # one point: a row read twice, or a partly written one read again
                for at in repeated.tolist():  # in order: each merges into the one before, merged already
                    table[at] = np.where(np.isnan(table[at]), table[at - 1], table[at])
                last = np.ones(len(key), bool)
                last[repeated - 1] = False
                series, stamps, table = series[last], stamps[last], table[last]
        self.series, self.times, self.values = series, stamps, table
        self._series.free += self._freed
        self._peers.free += self._freed_peers
        self._calls.free += self._freed_calls
        self._freed, self._freed_peers, self._freed_calls = [], [], []

    def window_rows(self, start_ms, end_ms):
        """The window rows over [start_ms, end_ms] of every series with a value in it, as
        Store.quality_window answers them: (rows, peer of each row), rows an array of
        fleet.WINDOW_NAMES columns (NaN: none in the window)."""
        inside = np.flatnonzero((self.times >= start_ms * 1000) & (self.times < (end_ms + 1) * 1000))
        series = self.series[inside]
        values = self.values[inside][:, _WINDOW_COLUMNS]
        if not len(series):
            return np.zeros((0, len(_WINDOW_COLUMNS))), np.zeros(0, np.int64)
        starts = np.concatenate(([0], np.flatnonzero(series[1:] != series[:-1]) + 1))
        present = ~np.isnan(values)
        rows = np.empty((len(starts), values.shape[1]))
        with np.errstate(invalid="ignore"):
            gauges = present[:, :_GAUGES]
            rows[:, :_GAUGES] = (np.add.reduceat(np.where(gauges, values[:, :_GAUGES], 0.0), starts)
                                 / np.add.reduceat(gauges, starts))
        positions = np.where(present[:, _GAUGES:_LASTS], np.arange(len(series))[:, None], -1)
        lasts = np.maximum.reduceat(positions, starts)
        rows[:, _GAUGES:_LASTS] = np.where(lasts >= 0, values[lasts, np.arange(_GAUGES, _LASTS)], np.nan)
        counters = values[:, _LASTS:]
        rows[:, _LASTS:] = np.fmax.reduceat(counters, starts) - np.fmin.reduceat(counters, starts)
        some = ~np.isnan(rows).all(axis=1)
        return rows[some], self._peer_of[series[starts[some]]]

    def peers(self):
        """(call of each peer number, peer names, call names, whether each peer is a media
        server's view): what fleet.judge groups the rows by."""
        names = [None if key is None else key[1] for key in self._peers.keys]
        views = np.fromiter((name is not None and is_view(name) for name in names), bool, len(names))
        return self._call_of[:len(names)], names, self._calls.keys, views

    def metric_series(self, field, calls, start_ms, end_ms, bucket_ms, *, rate, scale=1.0, changed=None):
        """{call: [(bucket ms, value)]} of `calls` over [start_ms, end_ms], as Store.metric_series
        answers for the field: a gauge's mean per bucket over the call's samples; a counter's
        rate, per series the non-negative derivative (per second) of its last value per bucket,
        summed over the call's series. With `changed` ({call: µs}, as `touched`), a gauge's
        buckets only from the one holding that time: the earlier ones got no sample."""
        bucket_us = bucket_ms * 1000
        first_bucket = start_ms * 1000 - start_ms * 1000 % bucket_us
        buckets = (end_ms * 1000 - first_bucket) // bucket_us + 1
        call_index = self._calls.index
        numbers = [call_index[call] for call in calls if call in call_index]
        if not numbers or not len(self.times):
            return {}
        low = np.full(len(self._calls.keys), np.iinfo(np.int64).max)
        low[numbers] = start_ms * 1000
        if changed is not None and not rate:
            low[numbers] = [max(start_ms * 1000, changed[call] - changed[call] % bucket_us)
                            for call in calls if call in call_index]
        column = self.values[:, FEED_INDEX[field]]
        sample_calls = self._call_of[self._peer_of[self.series]]
        inside = np.flatnonzero((self.times >= low[sample_calls]) & (self.times < (end_ms + 1) * 1000)
                                & ~np.isnan(column))
        times, sample_calls, column = self.times[inside], sample_calls[inside], column[inside]
        slot = (times - first_bucket) // bucket_us
        if rate:
            series = self.series[inside]
            # The last sample of each (series, bucket): sorted by series then time, the one before a change.
            last = np.ones(len(times), bool)
            last[:-1] = (series[1:] != series[:-1]) | (slot[1:] != slot[:-1])
            series, slot, sample_calls, column = series[last], slot[last], sample_calls[last], column[last]
            follows = np.flatnonzero(series[1:] == series[:-1]) + 1  # a bucket after one of the same series
            increase = (column[follows] - column[follows - 1]) * 1_000_000 / ((slot[follows] - slot[follows - 1])
                                                                            * bucket_us)
            rising = increase >= 0
            keys = sample_calls[follows][rising] * buckets + slot[follows][rising]
            totals = np.bincount(keys, increase[rising], minlength=1)
            counts = np.bincount(keys, minlength=1)
        else:
            keys = sample_calls * buckets + slot
            counts = np.bincount(keys, minlength=1)
            totals = np.bincount(keys, column, minlength=1)
            with np.errstate(invalid="ignore"):
                totals = totals / counts
        found = np.flatnonzero(counts)
        result = {}
        names = self._calls.keys
        for key, value in zip(found.tolist(), (totals[found] * scale).tolist()):
            call, at = divmod(key, buckets)
            point = ((first_bucket + at * bucket_us) // 1000, value)
            points = result.get(names[call])
            if points is None:
                result[names[call]] = [point]
            else:
                points.append(point)
        return result


def _set(array, index, value):
    """array[index] = value, the array grown (doubled) when it is too short."""
    if index >= len(array):
        array = np.concatenate((array, np.zeros(max(index + 1, 2 * len(array)) - len(array), array.dtype)))
    array[index] = value
    return array
