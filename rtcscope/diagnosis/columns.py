"""The live people of one detector tick as columns: what the live answers are computed from.

Counting every (dimension, value) of every live person in Python is most of an
explanation's cost (274,000 pairs at 20,000 peers). Here each (dimension, value)
has an integer code, each person its codes as a numpy array, kept with its
dimensions from one read to the next while neither they nor its media server
view's change (dimensions.peer.Dimensions: `version`, `derived`): a read is one
pass over the live people, and the counts are numpy bincounts over the codes of
every person and of the poor ones. A breakdown is a few vector operations over
the codes of its dimension. The answers are those of the straightforward counts
over live_peers() (explain.Tally.of_live, breakdown.live_rows), which the tests
hold them to.
"""
import numpy as np

from ..dimensions.peer import person_values
from ..quality import verdict_of
from ..summary import nearest_rank, percentile
from . import POOR
from .explain import Tally

# Codes of (dimension, value) pairs no live person has any more are dropped when there
# are more of them than this, and more than those in use: values come and go (the bound
# forgets values unseen for the retention), the codes must not grow with them.
SPARE_CODES = 50_000
_NO_CODES = np.zeros(0, np.intp)
# A person of no known dimensions: (token, version, view, view's version, values, codes) as a kept one.
_NOBODY = (None, None, None, None, {}, _NO_CODES)


class PeopleCodes:
    """One process's codes: (dimension, value) -> code, and each live person's codes, kept
    with its Dimensions (`derived`, checked against their versions and this reader's codes)."""

    def __init__(self):
        self._names = []  # code -> (dimension, value)
        self._codes = {}  # (dimension, value) -> code
        self._token = object()  # the codes' own: a person's kept codes are of these when they carry it

    def read(self, live_people):
        """The tick's columns (LivePeople) of the detector's live_people()."""
        token = self._token
        codes, moses, poor = [], [], []
        for _call, _peer, known, view, mos in live_people:
            holder = view if known is None else known  # the person's own Dimensions
            if holder is None:
                found = _NOBODY
            else:
                found = holder.derived
                if (found is None or found[0] is not token or found[1] != (known and known.version)
                        or found[2] is not view or found[3] != (view and view.version)):
                    values = person_values(None if known is None else known.values,
                                           None if view is None else view.values)
                    found = holder.derived = (token, known and known.version, view, view and view.version, values,
                                              self._encode(values))
            codes.append(found[5])
            moses.append(mos)
            if verdict_of(mos) == POOR:
                poor.append((len(codes) - 1, found[4]))
        people = LivePeople(self._names, codes, moses, poor)
        if len(self._names) > SPARE_CODES + 2 * people.in_use:
            self._names, self._codes, self._token = [], {}, object()  # the next read codes every person again
        return people

    def _encode(self, values):
        names, codes = self._names, self._codes
        found = []
        for item in values.items():
            code = codes.get(item)
            if code is None:
                code = codes[item] = len(names)
                names.append(item)
            found.append(code)
        return np.array(found, np.intp) if found else _NO_CODES


class LivePeople:
    """One read's people: their codes one after the other (`items`), how many each has,
    their MOS (NaN: none) and which are poor, with the poor ones' dimension values."""

    def __init__(self, names, codes, moses, poor):
        self.names = names  # code -> (dimension, value); later codes are no one's here
        self.people = len(codes)
        self.lengths = np.fromiter(map(len, codes), np.intp, len(codes))
        self.items = np.concatenate(codes) if codes else _NO_CODES
        self.mos = np.array(moses, float)  # None is NaN
        self.poor = np.zeros(len(codes), bool)
        self.poor[[index for index, _ in poor]] = True
        self.poor_values = [values for _, values in poor]
        self.counts = np.bincount(self.items, minlength=len(names))
        self.in_use = int(np.count_nonzero(self.counts))

    def tally(self):
        """explain.Tally of the people: as Tally.of_live over the same people's live_peers()."""
        poor_counts = np.bincount(self.items[np.repeat(self.poor, self.lengths)], minlength=len(self.counts))
        return Tally(self.people, len(self.poor_values), self._named(self.counts), self._named(poor_counts),
                     [(values, 1) for values in self.poor_values])

    def _named(self, counts):
        """{(dimension, value): count} of the codes counted."""
        found = np.flatnonzero(counts)
        names = self.names
        return {names[code]: count for code, count in zip(found.tolist(), counts[found].tolist())}

    def rows(self, by):
        """[(value, peers, poor, mos_p50)] of dimension `by`: as breakdown.live_rows over the
        same people's live_peers(), the people without it under None."""
        names = self.names
        of_by = np.fromiter((name[0] == by for name in names[:len(self.counts)]), bool, len(self.counts))
        chosen = of_by[self.items]
        codes = self.items[chosen]
        owners = np.repeat(np.arange(self.people), self.lengths)[chosen]  # each person has one value at most
        peers = np.bincount(codes, minlength=len(of_by))
        poor = np.bincount(codes[self.poor[owners]], minlength=len(of_by))
        medians = _medians(codes, self.mos[owners])
        rows = [(names[code][1], peers[code], poor[code], medians.get(code)) for code in np.flatnonzero(peers).tolist()]
        without = np.ones(self.people, bool)
        without[owners] = False
        if without.any():
            scores = np.sort(self.mos[without])
            rows.append((None, int(without.sum()), int(self.poor[without].sum()),
                         percentile(scores[~np.isnan(scores)].tolist(), 0.5)))
        return [(value, int(count), int(bad), mos) for value, count, bad, mos in rows]


def _medians(codes, scores):
    """{code: the nearest-rank median of its people's MOS} of the codes with a MOS."""
    known = ~np.isnan(scores)
    codes, scores = codes[known], scores[known]
    order = np.lexsort((scores, codes))
    codes, scores = codes[order], scores[order]
    found, first, count = np.unique(codes, return_index=True, return_counts=True)
    return dict(zip(found.tolist(), scores[first + nearest_rank(count, 0.5) - 1].tolist()))
