"""Per-call summary: every metric's min/mean/max/p95 and the quality verdict."""
from collections import defaultdict

from . import quality, registry
from .timeparse import bucket_for


def percentile(sorted_values, fraction):
    """Nearest-rank percentile, as InfluxDB's percentile() computes it."""
    if not sorted_values:
        return None
    rank = max(1, nearest_rank(len(sorted_values), fraction))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def nearest_rank(count, fraction):
    """The 1-based rank of the `fraction` percentile among `count` sorted values (at least 1
    of them, fraction above 0), as InfluxDB ranks them; `count` may be a numpy array of counts."""
    return -(-int(fraction * 100) * count // 100)


def series_values(metric, rows):
    """One series' (ms, value) points: gauges as stored, counters as per-second rates."""
    column = "mean_" + metric.source_field
    points = [(row["time"], row[column]) for row in rows if row.get(column) is not None]
    if metric.type != "counter":
        return [(ms, value * metric.scale) for ms, value in points]
    pairs = list(zip(points, points[1:]))
    # A series' first and last buckets may hold fewer samples than the others
    # (the call started or ended inside them): their means then sit off the
    # buckets' middles, and a rate against them shows a jump or a drop.
    counts = [row.get("count_" + metric.source_field) or 0 for row in rows if row.get(column) is not None]
    if len(pairs) > 2:
        typical = sorted(counts)[len(counts) // 2]
        pairs = pairs[counts[0] < typical:len(pairs) - (counts[-1] < typical)]
    rates = []
    for (t0, v0), (t1, v1) in pairs:
        if t1 > t0 and v1 >= v0:
            rates.append((t1, (v1 - v0) * 1000.0 / (t1 - t0) * metric.scale))
    return rates


def summarize(state, buckets, bucket_s):
    """`buckets`: [(tags, rows)] of mean(*) and count(*) per (peer, kind) over the call."""
    stored = set()
    for _, rows in buckets:
        if rows:
            stored.update(name[5:] for name in rows[0] if name.startswith("mean_"))
    metrics = [m for m in registry.all_metrics() if m.source_field in stored]
    known = {m.source_field for m in metrics if m.field is None}
    metrics += [registry.stored_field(name) for name in sorted(stored - known)]
    voters = set(quality.voting_peers({tags.get("peer", "") for tags, _ in buckets}))
    summary, timelines, views = {}, {}, {}  # the call's quality is its voting peers' (quality.voting_peers)
    for metric in metrics:
        per_time, view_time = defaultdict(list), defaultdict(list)
        values = []
        for tags, rows in buckets:
            judged = per_time if tags.get("peer", "") in voters else view_time
            for ms, value in series_values(metric, rows):
                judged[ms].append(value)
                values.append(value)
        if not values:
            continue
        values.sort()
        summary[metric.name] = {
            "unit": metric.display_unit, "type": metric.type,
            "min": values[0], "mean": sum(values) / len(values), "max": values[-1],
            "p95": percentile(values, 0.95), "count": len(values),
        }
        if per_time:
            timelines[metric.name] = combined_timeline(metric, per_time)
        if view_time:
            views[metric.name] = combined_timeline(metric, view_time)
    document = state.as_json()
    document["duration"] = ((state.ended or state.last_seen) - state.started) / 1000.0
    document["bucket_seconds"] = bucket_s
    document["metrics"] = summary
    document["quality"] = quality.summarize_quality(timelines, views)
    document["quality"]["peers"] = peer_qualities(metrics, buckets)
    return document


def combined_timeline(metric, per_time):
    """One line from several series' values per time: counters' rates add up, gauges take the worst."""
    combine = sum if metric.type == "counter" else max
    return sorted((ms, combine(values)) for ms, values in per_time.items())


def peer_qualities(metrics, buckets):
    """Each peer's MOS, verdict, problem codes and MOS timeline over the call, with the call's rules
    applied to that peer's series alone: which side of the call has the problem."""
    by_peer = defaultdict(list)
    for tags, rows in buckets:
        by_peer[tags.get("peer", "")].append(rows)
    peers = {}
    for peer, peer_rows in sorted(by_peer.items()):
        timelines = {}
        for metric in metrics:
            per_time = defaultdict(list)
            for rows in peer_rows:
                for ms, value in series_values(metric, rows):
                    per_time[ms].append(value)
            if per_time:
                timelines[metric.name] = combined_timeline(metric, per_time)
        found = quality.summarize_quality(timelines)
        peers[peer] = {"mos": found["mos"], "verdict": found["verdict"],
                       "problems": sorted({problem["problem"] for problem in found["problems"]}),
                       "timeline": found["timeline"]}
    return peers


SUMMARY_MAX_BUCKETS = 720


async def load_summary(store, state):
    """The summary of a call as stored: the query is fixed by the call's state, so every
    process that summarises one call reads the same buckets and gets the same values."""
    bucket_s = bucket_for(state.span_seconds, SUMMARY_MAX_BUCKETS)
    buckets = await store.call_buckets(state.call, state.started - 1000, state.last_seen + 1000, bucket_s)
    return summarize(state, buckets, bucket_s)


def history_fields(summary):
    """An ended call's rtc_call_summaries fields (floats): duration, peers, the mean and
    lowest MOS of its timeline, its problems (a count and their codes as bits) and
    whether it was poor."""
    timeline = [mos for _, mos in summary["quality"]["timeline"] if mos is not None]
    codes = {problem["problem"] for problem in summary["quality"]["problems"]}
    fields = {"duration_s": float(summary["duration"]), "peers": float(len(summary["peers"])),
              "problems": float(len(codes)),
              "problem_mask": quality.problem_mask(codes)}
    if timeline:
        mos_mean = sum(timeline) / len(timeline)
        fields.update(mos_mean=mos_mean, mos_min=min(timeline))
        fields["poor"] = 1.0 if quality.verdict_of(mos_mean) == "poor" else 0.0
    else:
        fields["poor"] = 0.0
    return fields
