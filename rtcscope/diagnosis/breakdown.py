"""One dimension's breakdown (SPEC §15): each value's peers, poor peers, poor share,
median MOS and lift, the peers without the dimension under the value None."""
from ..summary import percentile
from . import POOR


def value_counts(peers, dimensions):
    """{dimension: {value: [peers, poor, [mos...]]}} of live peers (call, peer, values,
    verdict, mos), in one pass; the peers without a dimension under the value None."""
    counts = {dimension: {} for dimension in dimensions}
    for _call, _peer, values, verdict, mos in peers:
        poor = verdict == POOR
        for dimension, found in counts.items():
            value = values.get(dimension)
            entry = found.get(value)
            if entry is None:
                entry = found[value] = [0, 0, []]
            entry[0] += 1
            if poor:
                entry[1] += 1
            if mos is not None:
                entry[2].append(mos)
    return counts


def live_rows(peers, by):
    """[(value, peers, poor, mos_p50)] of dimension `by` over live peers; mos_p50 is the
    nearest-rank median, as InfluxDB's percentile() gives it for ended peers."""
    return [(value, peers, poor, percentile(sorted(scores), 0.5))
            for value, (peers, poor, scores) in value_counts(peers, (by,))[by].items()]


def breakdown(by, state, rows):
    """The breakdown document of `rows` [(value, peers, poor, mos_p50)]: live_rows' or
    a history query's; sorted by poor peers, then peers, both descending."""
    rows = [(value, int(peers), int(poor), mos) for value, peers, poor, mos in rows if peers]
    total, poor_total = sum(row[1] for row in rows), sum(row[2] for row in rows)
    values = [{"value": value, "peers": peers, "poor": poor, "poor_share": round(poor / peers, 4),
               "mos_p50": None if mos is None else round(mos, 2), "lift": lift(poor, peers, poor_total, total)}
              for value, peers, poor, mos in rows]
    values.sort(key=lambda found: (-found["poor"], -found["peers"], found["value"] is None, found["value"] or ""))
    return {"by": by, "state": state, "peers": total, "poor": poor_total, "values": values}


def lift(poor, peers, poor_total, total):
    """(poor / peers) / (poor_total / total): how many times the fleet's poor share a
    value has, rounded to 2 decimals; None when the fleet has no poor peer."""
    if not poor_total or not peers:
        return None
    return round(poor * total / (peers * poor_total), 2)
