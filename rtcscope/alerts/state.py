"""Rule state: per (rule, call, peer), when its condition began to hold and the alert it fired.

Pure and synchronous: each tick's windows in, the firings and resolutions out
(docs/alerts.md: Firing and resolving). Where the events are kept and who
sends them is the service's (rtcscope/alerts/service.py).
"""
import hashlib
from dataclasses import dataclass, field


def alert_id(rule, call, peer, since_ms):
    """The same alert gets the same id in every process: it derives from what defines it."""
    key = f"{rule}\x00{call}\x00{peer or ''}\x00{int(since_ms)}".encode()
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

    def as_json(self, url):
        return {"id": self.id, "rule": self.rule, "severity": self.severity, "state": self.state,
                "call": self.call, "peer": self.peer, "value": self.value, "threshold": self.threshold,
                "since": self.since, "at": self.at, "url": url}


@dataclass
class _Track:
    """One (rule, call, peer): when its condition began to hold, and its alert if firing."""
    holding_since: int | None = None
    firing: AlertEvent | None = None
    clear_since: int | None = None
    value: float | None = None  # the window's value at the last tick that had one
    evaluated: int | None = None  # the tick that last looked at it


@dataclass
class AlertEngine:
    """Per (rule, call, peer): fires once the condition held for the rule's `for`
    (measured between ticks), resolves once it has not held for `for`, and resolves
    at once when the peer or its call ends. Keeps no state for quiet keys."""
    rules: list
    tracks: dict = field(default_factory=dict)  # (rule name, call, peer) -> _Track

    @property
    def firing(self):
        return [track.firing for track in self.tracks.values() if track.firing is not None]

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
            for rule in self.rules:
                value = rule.value_in(values)
                key = (rule.name, call, peer)
                track = tracks.get(key)
                if track is None:
                    if not rule.holds(value):
                        continue
                    track = tracks[key] = _Track()
                track.evaluated = now_ms
                self._step(rule, track, call, peer, value, now_ms, events)
        rules = {rule.name: rule for rule in self.rules}
        for key, track in list(tracks.items()):
            if track.evaluated == now_ms:
                continue
            name, call, peer = key
            end = ends.get((call, peer), ends.get((call, None)))
            if end is None and live_calls is not None and call not in live_calls:
                end = now_ms
            if end is not None:
                if track.firing is not None:
                    events.append(self._resolve(track, max(end, track.firing.at), track.value))
                del tracks[key]
            elif name in rules:  # a live peer with no samples in the window: its condition does not hold
                track.evaluated = now_ms
                self._step(rules[name], track, call, peer, None, now_ms, events)
            else:  # a rule no longer configured
                del tracks[key]
        for key in [key for key, track in tracks.items() if track.firing is None and track.holding_since is None]:
            del tracks[key]
        order = {rule.name: index for index, rule in enumerate(self.rules)}
        events.sort(key=lambda event: (event.call, event.peer or "", order.get(event.rule, 0)))
        return events

    def _step(self, rule, track, call, peer, value, now_ms, events):
        if value is not None:
            track.value = value
        if rule.holds(value):
            track.clear_since = None
            if track.holding_since is None:
                track.holding_since = now_ms
            if track.firing is None and now_ms - track.holding_since >= rule.for_ms:
                since = track.holding_since
                track.firing = AlertEvent(alert_id(rule.name, call, peer, since), rule.name, rule.severity, "firing",
                                          call, peer or None, value, rule.threshold, since, now_ms)
                events.append(track.firing)
        else:
            track.holding_since = None
            if track.firing is not None:
                if track.clear_since is None:
                    track.clear_since = now_ms
                if now_ms - track.clear_since >= rule.for_ms:
                    events.append(self._resolve(track, now_ms, value if value is not None else track.value))

    @staticmethod
    def _resolve(track, at_ms, value):
        firing, track.firing, track.clear_since = track.firing, None, None
        return AlertEvent(firing.id, firing.rule, firing.severity, "resolved", firing.call, firing.peer,
                          value, firing.threshold, firing.since, at_ms)

    def adopt(self, firing):
        """Take the firing alerts as InfluxDB holds them (another process may have fired
        them) in place of this engine's own: ids and `since` follow the stored ones,
        while the conditions' countdowns carry on from this engine's ticks."""
        stored = {(event.rule, event.call, event.peer or ""): event for event in firing}
        for key, track in list(self.tracks.items()):
            if key not in stored and track.firing is not None:
                track.firing = track.clear_since = None
                if track.holding_since is None:
                    del self.tracks[key]
        for key, event in stored.items():
            track = self.tracks.setdefault(key, _Track())
            track.firing, track.value = event, event.value


def event_of(alert):
    """The event of a webhook object (an alert as rtc_alerts holds it)."""
    return AlertEvent(alert["id"], alert["rule"], alert["severity"], alert["state"], alert["call"], alert["peer"],
                      alert["value"], alert["threshold"], alert["since"], alert["at"])
