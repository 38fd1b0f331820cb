"""Rule state: per (rule, call, peer), or per (rule, dimension, value) of a cohort
rule, when its condition began to hold and the alert it fired.

Pure and synchronous: each tick's windows and cohort counts in, the firings
and resolutions out (docs/alerts.md: Firing and resolving). Where the events
are kept and who sends them is the service's (rtcscope/alerts/service.py).
"""
import dataclasses
import hashlib
from dataclasses import dataclass, field

FIRE, RESOLVE = "fire", "resolve"


def alert_id(rule, call, peer, since_ms):
    """The same alert gets the same id in every process: it derives from what defines it."""
    key = f"{rule}\x00{call}\x00{peer or ''}\x00{int(since_ms)}".encode()
    return hashlib.sha256(key).hexdigest()[:20]


def cohort_alert_id(rule, dimension, value, since_ms):
    """A cohort alert's id, from its rule, dimension, value and since (never a per-peer alert's)."""
    key = f"cohort\x00{rule}\x00{dimension}\x00{value}\x00{int(since_ms)}".encode()
    return hashlib.sha256(key).hexdigest()[:20]


@dataclass
class AlertEvent:
    """One firing or resolution: the webhook object without its url."""
    id: str
    rule: str
    severity: str
    state: str  # "firing" or "resolved"
    call: str
    peer: str | None
    value: float | None
    threshold: float
    since: int
    at: int
    scope = "peer"

    def as_json(self, url):
        return {"id": self.id, "rule": self.rule, "severity": self.severity, "state": self.state, "scope": "peer",
                "call": self.call, "peer": self.peer, "value": self.value, "threshold": self.threshold,
                "since": self.since, "at": self.at, "url": url}


@dataclass
class CohortEvent:
    """One firing or resolution of a cohort rule: the live peers with `dimension` =
    `value`, and how many of them are poor, at the event."""
    id: str
    rule: str
    severity: str
    state: str
    dimension: str
    value: str
    peers: int
    poor: int
    threshold: float
    since: int
    at: int
    scope = "cohort"

    def as_json(self, url):
        return {"id": self.id, "rule": self.rule, "severity": self.severity, "state": self.state, "scope": "cohort",
                "dimension": self.dimension, "value": self.value, "peers": self.peers, "poor": self.poor,
                "threshold": self.threshold, "since": self.since, "at": self.at, "url": url}


@dataclass
class _Track:
    """One (rule, call, peer) or (rule, dimension, value): when its condition began to
    hold, and its alert if firing."""
    holding_since: int | None = None
    firing: AlertEvent | CohortEvent | None = None
    clear_since: int | None = None
    value: float | None = None  # the window's value at the last tick that had one
    evaluated: int | None = None  # the tick that last looked at it

    def advance(self, holds, now_ms, for_ms):
        """The state machine of every rule (docs/alerts.md: Firing and resolving), one
        tick: FIRE when the condition has held for `for_ms`, RESOLVE when the firing
        alert's condition has not held for `for_ms`, else None."""
        if holds:
            self.clear_since = None
            if self.holding_since is None:
                self.holding_since = now_ms
            if self.firing is None and now_ms - self.holding_since >= for_ms:
                return FIRE
        else:
            self.holding_since = None
            if self.firing is not None:
                if self.clear_since is None:
                    self.clear_since = now_ms
                if now_ms - self.clear_since >= for_ms:
                    return RESOLVE
        return None


@dataclass
class AlertEngine:
    """Per (rule, call, peer): fires once the condition held for the rule's `for`
    (measured between ticks), resolves once it has not held for `for`, and resolves
    at once when the peer or its call ends. Per (cohort rule, dimension, value) the
    same, on the value's poor share (`evaluate_cohorts`). Keeps no state for quiet keys."""
    rules: list
    tracks: dict = field(default_factory=dict)  # (rule name, call, peer) -> _Track
    cohorts: dict = field(default_factory=dict)  # (rule name, dimension, value) -> _Track

    def __post_init__(self):
        self.peer_rules = [rule for rule in self.rules if rule.by is None]
        self.cohort_rules = [rule for rule in self.rules if rule.by is not None]

    @property
    def cohort_dimensions(self):
        """The dimensions the cohort rules are by, each once."""
        return tuple(dict.fromkeys(rule.by for rule in self.cohort_rules))

    @property
    def firing(self):
        return [track.firing for tracks in (self.tracks, self.cohorts) for track in tracks.values()
                if track.firing is not None]

    def evaluate(self, now_ms, windows, ended=(), live_calls=None):
        """One tick. `windows`: {(call, peer): {window value name: number|None}} of the
        live peers; `ended`: [(call, peer|None, at_ms, reason)] of peers (None: the
        whole call) that ended; `live_calls`, when given, the calls still live (alerts
        of any other call resolve now). Returns the events, in a stable order."""
        events = []
        ends = {(call, peer): at for call, peer, at, _reason in ended}
        tracks = self.tracks
        for (call, peer), values in windows.items():
            if ends and ((call, peer) in ends or (call, None) in ends):
                continue
            for rule in self.peer_rules:
                value = rule.value_in(values)
                key = (rule.name, call, peer)
                track = tracks.get(key)
                if track is None:
                    if not rule.holds(value):
                        continue
                    track = tracks[key] = _Track()
                track.evaluated = now_ms
                self._step(rule, track, call, peer, value, now_ms, events)
        rules = {rule.name: rule for rule in self.peer_rules}
        for key, track in list(tracks.items()):
            if track.evaluated == now_ms:
                continue
            name, call, peer = key
            end = ends.get((call, peer), ends.get((call, None)))
            if end is None and live_calls is not None and call not in live_calls:
                end = now_ms
            if end is not None:
                if track.firing is not None:
                    events.append(self._resolve(track, max(end, track.firing.at), value=track.value))
                del tracks[key]
            elif name in rules:  # a live peer with no samples in the window: its condition does not hold
                track.evaluated = now_ms
                self._step(rules[name], track, call, peer, None, now_ms, events)
            else:  # a rule no longer configured
                del tracks[key]
        _forget_quiet(tracks)
        order = {rule.name: index for index, rule in enumerate(self.rules)}
        events.sort(key=lambda event: (event.call, event.peer or "", order.get(event.rule, 0)))
        return events

    def _step(self, rule, track, call, peer, value, now_ms, events):
        if value is not None:
            track.value = value
        change = track.advance(rule.holds(value), now_ms, rule.for_ms)
        if change is FIRE:
            since = track.holding_since
            track.firing = AlertEvent(alert_id(rule.name, call, peer, since), rule.name, rule.severity, "firing",
                                      call, peer or None, value, rule.threshold, since, now_ms)
            events.append(track.firing)
        elif change is RESOLVE:
            events.append(self._resolve(track, now_ms, value=value if value is not None else track.value))

    def evaluate_cohorts(self, now_ms, counts):
        """One tick of the cohort rules. `counts`: {dimension: {value: (peers, poor, ...)}}
        of the live peers (diagnosis.breakdown.value_counts). A value's condition holds
        when it has at least the rule's min_peers live peers and its poor share passes
        the threshold; a value with no live peer left does not hold. Peers without the
        dimension (value None) are no cohort. Returns the events, in a stable order."""
        events = []
        cohorts = self.cohorts
        rules = {}
        for rule in self.cohort_rules:
            rules[rule.name] = rule
            for value, (peers, poor, *_) in counts.get(rule.by, {}).items():
                if value is None:
                    continue
                share = poor / peers if peers >= rule.min_peers else None
                key = (rule.name, rule.by, value)
                track = cohorts.get(key)
                if track is None:
                    if not rule.holds(share):
                        continue
                    track = cohorts[key] = _Track()
                track.evaluated = now_ms
                self._cohort_step(rule, track, value, share, peers, poor, now_ms, events)
        for key, track in list(cohorts.items()):
            if track.evaluated == now_ms:
                continue
            rule = rules.get(key[0])
            if rule is None or rule.by != key[1]:  # a rule no longer configured
                del cohorts[key]
                continue
            track.evaluated = now_ms
            self._cohort_step(rule, track, key[2], None, 0, 0, now_ms, events)
        _forget_quiet(cohorts)
        order = {rule.name: index for index, rule in enumerate(self.rules)}
        events.sort(key=lambda event: (order.get(event.rule, 0), event.dimension, event.value))
        return events

    def _cohort_step(self, rule, track, value, share, peers, poor, now_ms, events):
        change = track.advance(rule.holds(share), now_ms, rule.for_ms)
        if change is FIRE:
            since = track.holding_since
            track.firing = CohortEvent(cohort_alert_id(rule.name, rule.by, value, since), rule.name, rule.severity,
                                       "firing", rule.by, value, peers, poor, rule.threshold, since, now_ms)
            events.append(track.firing)
        elif change is RESOLVE:
            events.append(self._resolve(track, now_ms, peers=peers, poor=poor))

    @staticmethod
    def _resolve(track, at_ms, **changes):
        firing, track.firing, track.clear_since = track.firing, None, None
        return dataclasses.replace(firing, state="resolved", at=at_ms, **changes)

    def adopt(self, firing):
        """Take the firing alerts as InfluxDB holds them (another process may have fired
        them) in place of this engine's own: ids and `since` follow the stored ones,
        while the conditions' countdowns carry on from this engine's ticks."""
        _adopt(self.tracks, {(event.rule, event.call, event.peer or ""): event
                             for event in firing if event.scope == "peer"})
        _adopt(self.cohorts, {(event.rule, event.dimension, event.value): event
                              for event in firing if event.scope == "cohort"})


def _adopt(tracks, stored):
    for key, track in list(tracks.items()):
        if key not in stored and track.firing is not None:
            track.firing = track.clear_since = None
            if track.holding_since is None:
                del tracks[key]
    for key, event in stored.items():
        track = tracks.setdefault(key, _Track())
        track.firing = event
        if event.scope == "peer":
            track.value = event.value


def _forget_quiet(tracks):
    """Drop the tracks that neither hold nor fire."""
    for key in [key for key, track in tracks.items() if track.firing is None and track.holding_since is None]:
        del tracks[key]


def event_of(alert):
    """The event of a webhook object (an alert as rtc_alerts holds it)."""
    if alert.get("scope") == "cohort":
        return CohortEvent(alert["id"], alert["rule"], alert["severity"], alert["state"], alert["dimension"],
                           alert["value"], alert["peers"], alert["poor"], alert["threshold"], alert["since"], alert["at"])
    return AlertEvent(alert["id"], alert["rule"], alert["severity"], alert["state"], alert["call"], alert["peer"],
                      alert["value"], alert["threshold"], alert["since"], alert["at"])
