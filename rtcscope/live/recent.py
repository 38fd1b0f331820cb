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

The samples are flat arrays sorted by (series, time): a sort key per sample (the series
number and the time, µs) and a float64 row of its FEED_FIELDS values, NaN where absent.
Folding a chunk of the feed's rows is Python work per kind of a row (its series' number),
none per sample: the feed decodes their values into arrays (feed.decode_sample_runs). The
arrays are brought up to date once per tick (`settle`): the new samples are sorted among
themselves and each put where it goes among the others, found by binary search (one pass
over the table, not a sort of it); samples at one time of one series become one point (as
InfluxDB keys a point: the fields of both, the later one's where they meet, so rows read
twice change nothing); the old ones go once they are a quarter of the table. Aggregates are
taken over the whole fleet with reduceat over the series-sorted rows: tens of milliseconds
for 120,000 series, where a loop per series took most of a second. Only the detector's tick
changes these arrays (`settle` runs in a worker thread while the loop serves requests; the
arrays are replaced, never changed in place).
"""
import numpy as np

from ..quality import is_view
from ..storage.schema import FEED_FIELDS, FEED_INDEX
from . import fleet
from .buckets import Buckets

# A sample's time is kept relative to the oldest one kept, in this many bits of the
# series-and-time sort key: samples stamped more than 12 days ahead of the oldest are not kept.
_TIME_BITS = 40
_TIME_MASK = (1 << _TIME_BITS) - 1
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
        self._peer_names = []  # peer number -> the peer's name (None: free)
        self._views = np.zeros(0, bool)  # peer number -> whether it is a media server's view
        self._kinds = {}  # peer number -> its series numbers
        self._peer_count = {}  # call number -> its peers
        self._freed = []  # series numbers dropped since the last settle: their samples go then
        self._freed_peers, self._freed_calls = [], []
        # The samples in (series, time) order: their sort keys (the series number above
        # _TIME_BITS, the time since `_base` µs below) and their FEED_FIELDS values (NaN: absent).
        self._keys = np.zeros(0, np.int64)
        self._rows = np.zeros((0, _WIDTH))
        self._base = None
        self._derived = None  # what _sampled works out of them
        self._pending = []  # folded, not settled: (series numbers, times, values) arrays
        # Calls with samples added or dropped since the detector last cleared it -> the earliest
        # time (µs) that changed (0: a peer's samples were dropped).
        self.touched = {}

    @property
    def series(self):
        """Each sample's series number, in (series, time) order."""
        return self._keys >> _TIME_BITS

    @property
    def times(self):
        """Each sample's time (µs), in (series, time) order."""
        return (self._keys & _TIME_MASK) + (self._base or 0)

    @property
    def values(self):
        """Each sample's values (FEED_FIELDS columns), in (series, time) order."""
        return self._rows

    def add(self, runs):
        """Fold the samples of feed rows in, a feed.SampleRuns (settled at the next `settle`):
        Python work per run (its series' number, its call's earliest time), none per sample."""
        touched, index = self.touched, self._series.index
        numbers = []
        sampled = runs.counts > 0
        firsts = np.zeros(len(runs.keys), np.int64)
        if sampled.any():
            firsts[sampled] = np.minimum.reduceat(runs.times, (np.cumsum(runs.counts) - runs.counts)[sampled])
        for key, count, first in zip(runs.keys, runs.counts.tolist(), firsts.tolist()):
            number = index.get(key)
            if number is None:
                number = self._new_series(*key)
            numbers.append(number)
            if count:
                call = key[0]
                earliest = touched.get(call)
                if earliest is None or first < earliest:
                    touched[call] = first
        self._pending.append((np.repeat(np.array(numbers, np.int64), runs.counts), runs.times, runs.values))

    def _new_series(self, call, peer, kind):
        peer_number = self._peers.index.get((call, peer))
        if peer_number is None:
            peer_number = self._peers.add((call, peer))
            if peer_number == len(self._peer_names):
                self._peer_names.append(peer)
            else:
                self._peer_names[peer_number] = peer
            self._views = _set(self._views, peer_number, is_view(peer))
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
        self._peer_names[peer_number] = None
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
        dropped for reuse only once their samples are gone.

        The new samples are sorted among themselves and each put where it goes among the
        others, found by a binary search of the sorted keys: one pass over the table, not
        a sort of it."""
        cutoff = int(cutoff_ms * 1000)  # a clock may give fractions of a millisecond
        dropped = None
        if self._freed:
            dropped = np.zeros(len(self._series.keys), bool)
            dropped[self._freed] = True
        # Old samples only cost memory: they go once they are a quarter of the table (a copy of it).
        if (dropped is not None or self._base is None or cutoff < self._base
                or np.count_nonzero((self._keys & _TIME_MASK) < cutoff - self._base) * 4 > len(self._keys)):
            self._compact(cutoff, dropped)
        self._merge(cutoff, dropped)
        self._derived = None
        self._series.free += self._freed
        self._peers.free += self._freed_peers
        self._calls.free += self._freed_calls
        self._freed, self._freed_peers, self._freed_calls = [], [], []

    def _compact(self, cutoff, dropped):
        """Keep only the samples from `cutoff` (µs) of the series not dropped, their keys
        counted from it."""
        series, times = self.series, self.times
        keep = (times >= cutoff) & (times - cutoff < 1 << _TIME_BITS)
        if dropped is not None:
            keep &= ~dropped[series]
        self._keys = (series[keep] << _TIME_BITS) | (times[keep] - cutoff)
        self._rows = self._rows[keep]
        self._base = cutoff

    def _merge(self, cutoff, dropped):
        pending, self._pending = self._pending, []
        if not pending:
            return
        series, times, values = (np.concatenate(parts) for parts in zip(*pending))
        offsets = times - self._base
        keep = (offsets >= cutoff - self._base) & (offsets < 1 << _TIME_BITS)
        if dropped is not None:
            keep &= ~dropped[series]
        new = np.flatnonzero(keep)
        if not len(new):
            return
        keys = (series[new] << _TIME_BITS) | offsets[new]
        order = np.argsort(keys, kind="stable")  # arrival order among equal keys
        keys, new = keys[order], new[order]
        # Where each new sample goes among the others: after an equal one (it came later).
        at = np.searchsorted(self._keys, keys, side="right") + np.arange(len(keys))
        merged_keys = np.empty(len(self._keys) + len(keys), np.int64)
        merged_rows = np.empty((len(merged_keys), _WIDTH))
        old = np.ones(len(merged_keys), bool)
        old[at] = False
        merged_keys[at], merged_keys[old] = keys, self._keys
        merged_rows[at], merged_rows[old] = values[new], self._rows
        repeated = np.flatnonzero(merged_keys[1:] == merged_keys[:-1]) + 1
        if len(repeated):  # one point: a row read twice, or a partly written one read again
            for at in repeated.tolist():  # in order: each merges into the one before, merged already
                merged_rows[at] = np.where(np.isnan(merged_rows[at]), merged_rows[at - 1], merged_rows[at])
            last = np.ones(len(merged_keys), bool)
            last[repeated - 1] = False
            merged_keys, merged_rows = merged_keys[last], merged_rows[last]
        self._keys, self._rows = merged_keys, merged_rows

    def window_rows(self, start_ms, end_ms):
        """The window rows over [start_ms, end_ms] of every series with a value in it, as
        Store.quality_window answers them: (rows, peer of each row), rows an array of
        fleet.WINDOW_NAMES columns (NaN: none in the window)."""
        inside = self._inside(start_ms * 1000, (end_ms + 1) * 1000)
        series = self._keys[inside] >> _TIME_BITS
        values = np.take(self._rows[inside], _WINDOW_COLUMNS, axis=1)  # (a list index on axis 1 is ten times dearer)
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

    def _sampled(self):
        """Each sample's series, time (µs) and call number, worked out once per settle for
        every reader of the tick."""
        if self._derived is None:
            series = self.series
            self._derived = series, self.times, self._call_of[self._peer_of[series]]
        return self._derived

    def _inside(self, start, end):
        """The positions, in (series, time) order, of the samples in [start, end) µs."""
        if self._base is None:
            return np.zeros(0, np.int64)
        offsets = self._keys & _TIME_MASK
        return np.flatnonzero((offsets >= start - self._base) & (offsets < end - self._base))

    def peers(self):
        """(call of each peer number, peer names, call names, whether each peer is a media
        server's view): what fleet.judge groups the rows by."""
        count = len(self._peer_names)
        return self._call_of[:count], self._peer_names, self._calls.keys, self._views[:count]

    def metric_series(self, field, calls, start_ms, end_ms, bucket_ms, *, rate, scale=1.0, changed=None):
        """buckets.Buckets of `calls` over [start_ms, end_ms], what Store.metric_series answers
        for the field: a gauge's mean per bucket over the call's samples; a counter's
        rate, per series the non-negative derivative (per second) of its last value per bucket,
        summed over the call's series. With `changed` ({call: µs}, as `touched`), a gauge's
        buckets only from the one holding that time: the earlier ones got no sample."""
        bucket_us = bucket_ms * 1000
        first_bucket = start_ms * 1000 - start_ms * 1000 % bucket_us
        buckets = (end_ms * 1000 - first_bucket) // bucket_us + 1
        call_index = self._calls.index
        numbers = [call_index[call] for call in calls if call in call_index]
        if not numbers or not len(self._keys):
            return Buckets.of({})
        low = np.full(len(self._calls.keys), np.iinfo(np.int64).max)
        low[numbers] = start_ms * 1000
        if changed is not None and not rate:
            low[numbers] = [max(start_ms * 1000, changed[call] - changed[call] % bucket_us)
                            for call in calls if call in call_index]
        series, times, sample_calls = self._sampled()
        column = self._rows[:, FEED_INDEX[field]]
        inside = np.flatnonzero((times >= low[sample_calls]) & (times < (end_ms + 1) * 1000) & ~np.isnan(column))
        times, sample_calls, column, series = times[inside], sample_calls[inside], column[inside], series[inside]
        slot = (times - first_bucket) // bucket_us
        if rate:
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
        found = np.flatnonzero(counts)  # by call, then bucket
        numbers, slots = np.divmod(found, buckets)
        called, per_call = np.unique(numbers, return_counts=True)
        names = self._calls.keys
        return Buckets([names[number] for number in called.tolist()], per_call,
                       (first_bucket + slots * bucket_us) // 1000, totals[found] * scale)


def _set(array, index, value):
    """array[index] = value, the array grown (doubled) when it is too short."""
    if index >= len(array):
        array = np.concatenate((array, np.zeros(max(index + 1, 2 * len(array)) - len(array), array.dtype)))
    array[index] = value
    return array
