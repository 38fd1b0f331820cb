"""What the rules read each tick: the live peers' windows (the detector's, and the registry
metrics only custom rules use) and the peers and calls that ended."""
from .. import registry


def peer_windows(qualities):
    """{(call, peer): window values} of the live peers, from the detector's qualities of
    the tick (rtcscope/live/fleet.py: each peer's window and its MOS)."""
    return {(call, peer): window for call, found in qualities.items() for peer, window in found.peers.items()}


# Window values the detector's window rows carry (rtcscope/live/fleet.py); a rule on any
# other registry metric has it read by AlertService's own query.
WINDOW_VALUES = ("mos", "loss", "freezes", "rtt", "jitter", "qualityLimitationReason")


def extra_metrics(rules):
    """The registry metrics the per-peer rules need beyond the detector's window, by name."""
    return {rule.metric: registry.lookup(rule.metric) for rule in rules
            if rule.by is None and rule.metric not in WINDOW_VALUES}


def extra_windows(rows, metrics, window_ms):
    """{(call, peer): {metric: value}} from a window query of the extra metrics: gauges as
    (lowest, highest) mean over the peer's kinds, counters as the per-second rate of
    their increase over the window, summed over the kinds."""
    out = {}
    for call, peer, _kind, row in rows:
        values = out.setdefault((call, peer), {})
        for name, metric in metrics.items():
            value = row.get(metric.source_field)
            if value is None:
                continue
            if metric.type == registry.COUNTER:
                values[name] = values.get(name, 0.0) + value * metric.scale * 1000 / window_ms
            else:
                value *= metric.scale
                low, high = values.get(name, (value, value))
                values[name] = (min(low, value), max(high, value))
    return out


def ended_of(calls):
    """[(call, peer|None, at, reason)] of the ended calls and of the ended peers of live ones."""
    ended = []
    for state in calls.values():
        if state.state == "ended":
            ended.append((state.call, None, state.ended, state.end_reason))
        for peer, (at, reason) in getattr(state, "peer_ends", {}).items():
            ended.append((state.call, peer, at, reason))
    return ended
