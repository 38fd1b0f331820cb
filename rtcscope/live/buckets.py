"""The live graphs' memory at fleet scale: five minutes of one metric's 2 s buckets for every
live call, columnar (a numpy row per call, a column per bucket of a ring), the fleet's p50–p95
band of each bucket across the calls, and the calls a graph draws as lines (docs/live.md).

A graph of more live calls than `--graph-lines` draws the band and the five worst calls: the
band of a bucket is a sort of one column, a call's line a slice of one row, so neither costs
anything per call beyond the bucket's values themselves."""
import heapq
import itertools
from typing import NamedTuple

import numpy as np

from ..summary import percentile
from . import fleet

BUCKET_MS = 2000
SNAPSHOT_MS = 5 * 60 * 1000
# The buckets of five minutes, both ends included: a bucket's column is its number modulo this.
RING = SNAPSHOT_MS // BUCKET_MS + 1
# The band: these percentiles across calls (nearest rank, summary.percentile), in this order.
BAND = (("p50", 0.5), ("p95", 0.95))
# Calls drawn as lines over the band.
WORST_LINES = 5


class Buckets(NamedTuple):
    """Calls' bucket values in columns, what a tick merges into a graph's memory: `calls`
    [name], `counts` (how many buckets each has), then each bucket's time (`ms`, int64) and
    value (float64, NaN: none), call after call, each call's oldest first. Arrays, not
    lists of tuples: 20,000 calls' buckets are hundreds of thousands of them, each for
    the collector to look at once."""

    calls: list
    counts: np.ndarray
    ms: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, series):
        """From {call: [(ms, value or None)]}, as Store.metric_series answers."""
        flat = np.array(list(itertools.chain.from_iterable(series.values())), np.float64).reshape(-1, 2)
        return cls(list(series), np.array([len(points) for points in series.values()], np.int64),
                   flat[:, 0].astype(np.int64), flat[:, 1])

    def as_dict(self):
        """{call: [(ms, value)]}."""
        points = list(zip(self.ms.tolist(), self.values.tolist()))
        ends = np.cumsum(self.counts).tolist()
        return {call: points[end - count:end] for call, count, end in zip(self.calls, self.counts.tolist(), ends)}

    def select(self, first, end, calls=None):
        """The calls first..end (by position), of them only those in `calls` when given."""
        end = min(end, len(self.calls))
        offsets = np.concatenate(([0], np.cumsum(self.counts)))
        names, counts = self.calls[first:end], self.counts[first:end]
        ms, values = (column[offsets[first]:offsets[end]] for column in (self.ms, self.values))
        if calls is not None:
            kept = np.array([name in calls for name in names], bool)
            if not kept.all():
                entries = np.repeat(kept, counts)
                names, counts, ms, values = ([name for name, keep in zip(names, kept) if keep], counts[kept],
                                             ms[entries], values[entries])
        return Buckets(names, counts, ms, values)


def first_bucket(start_ms):
    """The number of the first bucket that starts at or after `start_ms`."""
    return -(-start_ms // BUCKET_MS)


class CallBuckets:
    """One metric's buckets of the last five minutes: a row per live call, a column per bucket.
    A column is emptied when a newer bucket takes it, so nothing is trimmed; NaN is no value."""

    def __init__(self):
        self.rows = {}  # call -> its row
        self._free = []
        self._used = 0  # rows handed out, free ones included: the band sorts these
        self.values = np.full((64, RING), np.nan)
        self.held = np.full(RING, -1, dtype=np.int64)  # the bucket number each column holds
        self.band = np.full((len(BAND), RING), np.nan)  # each column's band, as last computed

    def __len__(self):
        return len(self.rows)

    def _row(self, call):
        row = self.rows.get(call)
        if row is None:
            if self._free:
                row = self._free.pop()
            else:
                row, self._used = self._used, self._used + 1
                if row == len(self.values):  # a quarter more: the slack stays a quarter of the calls at most
                    grown = np.full((max(len(self.values) + 1024, len(self.values) * 5 // 4), RING), np.nan)
                    grown[:row] = self.values
                    self.values = grown
            self.rows[call] = row
        return row

    def drop(self, call):
        row = self.rows.pop(call, None)
        if row is not None:
            self.values[row] = np.nan
            self._free.append(row)

    def _column(self, bucket):
        """The column of `bucket`, emptied if it held an older one; -1 for a bucket older than its column's."""
        column = bucket % RING
        held = self.held[column]
        if held != bucket:
            if held > bucket:
                return -1
            self.values[:, column] = np.nan
            self.band[:, column] = np.nan
            self.held[column] = bucket
        return column

    def merge(self, buckets, since_ms, until_ms, report=()):
        """Store the buckets in [since_ms, until_ms] of `buckets` (Buckets); return {call:
        [[ms, value]]} of the buckets that changed, for the calls in `report`. In arrays:
        Python work per call, not per bucket."""
        calls, values = buckets.calls, buckets.values
        if not calls:
            return {}
        owner = np.repeat(np.arange(len(calls)), buckets.counts)
        keep = ~np.isnan(values) & (buckets.ms >= since_ms) & (buckets.ms <= until_ms)  # NaN: no value
        owner, values = owner[keep], values[keep]
        numbers = buckets.ms[keep] // BUCKET_MS
        for bucket in np.unique(numbers).tolist():  # oldest first: a column is its newest bucket's
            self._column(bucket)
        columns = numbers % RING
        held = self.held[columns] == numbers
        owner, values, numbers, columns = owner[held], values[held], numbers[held], columns[held]
        if not len(owner):
            return {}
        used = np.unique(owner)
        row_of = np.zeros(len(calls), np.int64)
        row_of[used] = [self._row(calls[index]) for index in used.tolist()]  # may grow self.values
        rows = row_of[owner]
        changed = {}
        reported = [index for index in used.tolist() if calls[index] in report] if report else []
        if reported:
            differs = ~(self.values[rows, columns] == values)  # NaN: no value yet
            for index in reported:
                told = np.flatnonzero((owner == index) & differs)
                if len(told):
                    changed[calls[index]] = [[bucket * BUCKET_MS, value] for bucket, value in
                                             zip(numbers[told].tolist(), values[told].tolist())]
        self.values[rows, columns] = values
        return changed

    def _buckets(self, start_ms, end_ms):
        """The numbers and columns of the buckets in [start_ms, end_ms] the ring holds."""
        numbers = np.arange(first_bucket(start_ms), end_ms // BUCKET_MS + 1)
        columns = numbers % RING
        held = self.held[columns] == numbers
        return numbers[held], columns[held]

    def points(self, call, start_ms, end_ms):
        """A call's [[ms, value]] in [start_ms, end_ms], oldest first."""
        row = self.rows.get(call)
        if row is None:
            return []
        numbers, columns = self._buckets(start_ms, end_ms)
        values = self.values[row, columns]
        present = ~np.isnan(values)
        return [[number * BUCKET_MS, value]
                for number, value in zip(numbers[present].tolist(), values[present].tolist())]

    def update_band(self, start_ms, end_ms):
        """Compute the band of the buckets in [start_ms, end_ms] across the calls again; return
        {label: [[ms, value]]} of the values that changed. A bucket no call has a value in keeps
        the band it had."""
        numbers, columns = self._buckets(start_ms, end_ms)
        changed = {label: [] for label, _ in BAND}
        if not self._used or not len(columns):
            return changed
        ranked = np.sort(self.values[:self._used, columns], axis=0)  # NaN last
        counts = np.count_nonzero(~np.isnan(ranked), axis=0).tolist()
        for index, (number, column, count) in enumerate(zip(numbers.tolist(), columns.tolist(), counts)):
            if not count:
                continue
            for position, (label, fraction) in enumerate(BAND):
                value = float(ranked[percentile(range(count), fraction), index])
                if not self.band[position, column] == value:
                    self.band[position, column] = value
                    changed[label].append([number * BUCKET_MS, value])
        return changed

    def set_band(self, band):
        """Band values known from elsewhere (a query): {ms: [value of each BAND percentile]}."""
        for ms, values in band.items():
            column = self._column(ms // BUCKET_MS)
            if column >= 0:
                self.band[:, column] = [np.nan if value is None else value for value in values]

    def band_points(self, start_ms, end_ms):
        """{label: [[ms, value]]} of the band over [start_ms, end_ms], oldest first."""
        numbers, columns = self._buckets(start_ms, end_ms)
        found = {}
        for position, (label, _) in enumerate(BAND):
            values = self.band[position, columns]
            present = ~np.isnan(values)
            found[label] = [[number * BUCKET_MS, value]
                            for number, value in zip(numbers[present].tolist(), values[present].tolist())]
        return found


def band_of(series):
    """The band of per-call points {call: [[ms, value]]}: {label: [[ms, value]]} per bucket,
    across the calls with a value in it, as CallBuckets.update_band computes it."""
    by_bucket = {}
    for points in series.values():
        for ms, value in points:
            by_bucket.setdefault(ms, []).append(value)
    band = {label: [] for label, _ in BAND}
    for ms in sorted(by_bucket):
        values = sorted(by_bucket[ms])
        for label, fraction in BAND:
            band[label].append([ms, values[percentile(range(len(values)), fraction)]])
    return band


def worst_calls(calls, qualities, count=None):
    """`calls` worst first by their quality now ({call: fleet.CallQuality}), §10's order
    (fleet.worst_key): all of them, or the `count` worst."""
    def key(call):
        found = qualities.get(call)
        return fleet.worst_key(call, None) if found is None else found.worst_key(call)

    if count is None:
        return sorted(calls, key=key)
    return heapq.nsmallest(count, calls, key=key)
