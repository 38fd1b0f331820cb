"""What sets the poor peers apart (SPEC §15 explain; docs/diagnosis.md: The statistic).

A value is a finding when it has at least `min_poor` poor peers, a lift of at
least 2, and more poor peers than chance gives (a one-sided binomial test at
the fleet's poor share, corrected for the number of values tested). Findings
are ranked by score = poor peers × lift at its lower confidence bound
(Wilson's), and one whose poor peers are mostly a better finding's, without a
higher lift, is left out: it names the same peers less well.
"""
import math
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from statistics import NormalDist

from ..dimensions import OTHER
from . import POOR
from .breakdown import lift

MIN_LIFT = 2
MAX_FINDINGS = 10
# The chance, over all the values tested, that a fleet where nothing stands out gives a finding.
FAMILY_ALPHA = 0.01
# A finding whose poor peers are at least this share of a better one's is the same finding, less well named.
NESTED_SHARE = 0.8
# Ties (every TCP relay goes through turn-2: two values, the same peers): the more specific dimension is named.
SPECIFIC_FIRST = ("turn_server", "relay_protocol", "candidate_type", "asn", "country",
                  "browser_version", "browser", "os_version", "os")
_SPECIFICITY = {name: rank for rank, name in enumerate(SPECIFIC_FIRST)}


class Tally:
    """One fleet's counts: its peers and poor peers, per (dimension, value) too, and
    the dimension values of its poor peers (which findings cover the same ones)."""

    __slots__ = ("peers", "poor", "counts", "poor_counts", "poor_groups")

    def __init__(self, peers, poor, counts, poor_counts, poor_groups):
        self.peers = peers
        self.poor = poor
        self.counts = counts  # (dimension, value) -> peers
        self.poor_counts = poor_counts  # (dimension, value) -> poor peers
        self.poor_groups = poor_groups  # [(values, poor peers)]

    @classmethod
    def of_live(cls, peers):
        """From live peers (call, peer, values, verdict, mos), in one pass."""
        everyone, poor = [], []
        for _call, _peer, values, verdict, _mos in peers:
            everyone.append(values)
            if verdict == POOR:
                poor.append(values)
        return cls(len(everyone), len(poor), _items(everyone), _items(poor), [(values, 1) for values in poor])

    @classmethod
    def of_history(cls, peers, counts, poor_groups):
        """From ended peers as InfluxDB groups them: `peers` in all, `counts`
        {(dimension, value): peers} (GROUP BY each dimension), `poor_groups`
        [(values, poor peers)] of the poor peers with the same values (GROUP BY *)."""
        poor_counts = Counter()
        for values, poor in poor_groups:
            for item in values.items():
                poor_counts[item] += poor
        return cls(peers, sum(poor for _, poor in poor_groups), Counter(counts), poor_counts, poor_groups)


def _items(many_values):
    """Peers per (dimension, value): one C-level count over every peer's items."""
    return Counter(chain.from_iterable(map(dict.items, many_values)))


@dataclass(frozen=True, slots=True)
class Candidate:
    dimension: str
    value: str
    peers: int
    poor: int
    lift: float  # (poor / peers) / (the fleet's poor / peers)
    lift_low: float  # the same with the poor share at its lower confidence bound

    @property
    def score(self):
        return self.poor * self.lift_low


def wilson_lower(successes, trials, z):
    """Wilson's score interval's lower bound of the proportion successes / trials."""
    share = successes / trials
    z2 = z * z
    centre = share + z2 / (2 * trials)
    margin = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - margin) / (1 + z2 / trials))


def log_binomial_tail(successes, trials, rate):
    """log P(X >= successes) for X ~ Binomial(trials, rate), 0 < rate < 1, summed from
    `successes` up. Above twice the mean (a lift of 2) each term is less than half
    the one before, so a few dozen terms reach double precision."""
    log_term = (math.lgamma(trials + 1) - math.lgamma(successes + 1) - math.lgamma(trials - successes + 1)
                + successes * math.log(rate) + (trials - successes) * math.log1p(-rate))
    odds = rate / (1 - rate)
    total = term = 1.0
    for k in range(successes, trials):
        term *= (trials - k) / (k + 1) * odds
        total += term
        if term < 1e-17 * total:
            break
    return log_term + math.log(total)


def candidates(tally, min_poor):
    """The values that pass the rules, best first."""
    total, poor_total = tally.peers, tally.poor
    if not poor_total or poor_total >= total:
        return []
    tested = [(item, poor) for item, poor in tally.poor_counts.items() if poor >= min_poor and item[1] != OTHER]
    if not tested:
        return []
    rate = poor_total / total
    level = FAMILY_ALPHA / len(tested)
    log_level, z = math.log(level), NormalDist().inv_cdf(1 - level)
    found = []
    for (dimension, value), poor in tested:
        peers = tally.counts[(dimension, value)]
        if poor * total < MIN_LIFT * poor_total * peers:
            continue
        if log_binomial_tail(poor, peers, rate) > log_level:  # chance gives it often enough
            continue
        found.append(Candidate(dimension, value, peers, poor, poor / peers / rate, wilson_lower(poor, peers, z) / rate))
    found.sort(key=lambda c: (-c.score, _SPECIFICITY.get(c.dimension, len(_SPECIFICITY)), c.dimension, c.value))
    return found


def explain(tally, min_poor):
    """The explain document: at most MAX_FINDINGS findings, best first; none when
    nothing stands out."""
    findings = []
    ranked = candidates(tally, min_poor)
    members = _members(ranked, tally.poor_groups) if len(ranked) > 1 else {}
    for candidate in ranked:
        if any(_nested(candidate, better, members, tally.poor_groups) for better in findings):
            continue
        findings.append(candidate)
        if len(findings) == MAX_FINDINGS:
            break
    return {"peers": tally.peers, "poor": tally.poor, "findings": [
        {"dimension": c.dimension, "value": c.value, "peers": c.peers, "poor": c.poor,
         "poor_share": round(c.poor / c.peers, 4), "share_of_poor": round(c.poor / tally.poor, 4),
         "lift": lift(c.poor, c.peers, tally.poor, tally.peers)} for c in findings]}


def _members(ranked, poor_groups):
    """{(dimension, value): indexes of the poor groups having it} of the candidates, looking
    only at the candidates' dimensions of each group."""
    members = {(c.dimension, c.value): set() for c in ranked}
    dimensions = tuple({c.dimension for c in ranked})
    for index, (values, _poor) in enumerate(poor_groups):
        for dimension in dimensions:
            found = members.get((dimension, values.get(dimension)))
            if found is not None:
                found.add(index)
    return members


def _nested(candidate, better, members, poor_groups):
    """Whether most of `candidate`'s poor peers are `better`'s and its lift is no higher."""
    if candidate.lift > better.lift:
        return False
    shared = members[(candidate.dimension, candidate.value)] & members[(better.dimension, better.value)]
    return sum(poor_groups[index][1] for index in shared) >= NESTED_SHARE * candidate.poor
