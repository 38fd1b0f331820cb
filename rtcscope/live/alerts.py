"""Live alerts: rules over each live (call, peer)'s quality window, evaluated every tick.

The rules, the per-(rule, call, peer) state machine with its hysteresis, and
the alert events it produces are pure and synchronous here; where events are
kept (InfluxDB's rtc_alerts), which process sends them and how they reach
receivers is AlertService below and rtcscope/live/webhooks.py. See docs/alerts.md.
"""
import hashlib
import logging
import math
import re
import tomllib
from dataclasses import dataclass, field

from .. import registry
from ..timeparse import parse_duration

log = logging.getLogger("rtcscope.alerts")

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
SEVERITY_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
OPS = {"<": lambda value, threshold: value < threshold, ">": lambda value, threshold: value > threshold}
# Window values that are not registry metrics: the E-model MOS, the loss ratio (0-1)
# and the freezes counted in the window (freezeCount's increase, under either name).
DERIVED = ("mos", "loss", "freezes")
_FREEZES_NAMES = ("freezes", "freezeCount")
RULE_KEYS = {"name", "metric", "op", "threshold", "for", "severity"}


class RulesError(ValueError):
    """A rules file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str  # a window value: one of DERIVED or a registry metric's canonical name
    op: str
    threshold: float
    for_ms: int
    severity: str

    def holds(self, value):
        return value is not None and math.isfinite(value) and OPS[self.op](value, self.threshold)


BUILTIN_RULES = (
    Rule("poor_mos", "mos", "<", 3.1, 10_000, "critical"),
    Rule("high_loss", "loss", ">", 0.05, 10_000, "warning"),
    Rule("high_rtt", "rtt", ">", 400.0, 10_000, "warning"),
    # A freeze is already a sustained stall: any freeze in the window fires at once.
    Rule("freezes", "freezes", ">", 0.0, 0, "warning"),
)


def load_rules(path):
    """The rules of a TOML file ([[rule]] tables), or the built-ins without a path."""
    if not path:
        return list(BUILTIN_RULES)
    try:
        with open(path, "rb") as source:
            document = tomllib.load(source)
    except OSError as exc:
        raise RulesError(f"alert rules {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"alert rules {path}: not valid TOML: {exc}") from None
    return parse_rules(document, path)


def parse_rules(document, where="alert rules"):
    extra = set(document) - {"rule"}
    if extra:
        raise RulesError(f"{where}: unknown top-level key {sorted(extra)[0]!r} (rules go in [[rule]] tables)")
    tables = document.get("rule")
    if not isinstance(tables, list) or not tables:
        raise RulesError(f"{where}: no [[rule]] tables (leave --alert-rules empty for the built-in rules)")
    rules, names = [], set()
    for index, table in enumerate(tables, 1):
        rule = _parse_rule(table, f"{where}: rule {index}")
        if rule.name in names:
            raise RulesError(f"{where}: rule {index}: name {rule.name!r} is used twice")
        names.add(rule.name)
        rules.append(rule)
    return rules


def _parse_rule(table, where):
    if not isinstance(table, dict):
        raise RulesError(f"{where}: must be a table")
    unknown = set(table) - RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key {sorted(unknown)[0]!r} (keys: {', '.join(sorted(RULE_KEYS))})")
    missing = {"name", "metric", "op", "threshold"} - set(table)
    if missing:
        raise RulesError(f"{where}: missing {', '.join(sorted(missing))}")
    name = table["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RulesError(f"{where}: name must match {NAME_RE.pattern}, got {name!r}")
    where = f"{where} ({name})"
    metric = table["metric"]
    if not isinstance(metric, str):
        raise RulesError(f"{where}: metric must be a string")
    metric = window_name(metric)
    if metric is None:
        raise RulesError(f"{where}: unknown metric {table['metric']!r}: mos, loss, freezes or a registry metric "
                         "(see /v1/metrics/)")
    op = table["op"]
    if op not in OPS:
        raise RulesError(f"{where}: op must be '<' or '>', got {op!r}")
    threshold = table["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise RulesError(f"{where}: threshold must be a finite number, got {threshold!r}")
    duration = table.get("for", "0s")
    seconds = parse_duration(duration) if isinstance(duration, str) else None
    if seconds is None:
        raise RulesError(f"{where}: for must be a duration like 10s or 2m, got {duration!r}")
    severity = table.get("severity", "warning")
    if not isinstance(severity, str) or not SEVERITY_RE.fullmatch(severity):
        raise RulesError(f"{where}: severity must match {SEVERITY_RE.pattern}, got {severity!r}")
    return Rule(name, metric, op, float(threshold), seconds * 1000, severity)


def window_name(metric):
    """The window value a rule's metric names: mos, loss, freezes, or a registry
    metric's canonical name (aliases resolved); None when it is none of these."""
    if metric in _FREEZES_NAMES:
        return "freezes"
    if metric in DERIVED:
        return metric
    found = registry.lookup(metric)
    return found.name if found is not None else None


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
        ends = {}
        for call, peer, at, _reason in ended:
            ends[(call, peer)] = at
        evaluated = set()
        for call, peer in sorted(windows):
            values = windows[(call, peer)]
            if (call, peer) in ends or (call, None) in ends:
                continue
            for rule in self.rules:
                value = values.get(rule.metric)
                key = (rule.name, call, peer)
                evaluated.add(key)
                track = self.tracks.get(key)
                if track is None:
                    if not rule.holds(value):
                        continue
                    track = self.tracks[key] = _Track()
                self._step(rule, track, call, peer, value, now_ms, events)
        rules = {rule.name: rule for rule in self.rules}
        for key in sorted(set(self.tracks) - evaluated, key=_sort_key):
            name, call, peer = key
            track = self.tracks[key]
            end = ends.get((call, peer), ends.get((call, None)))
            if end is None and live_calls is not None and call not in live_calls:
                end = now_ms
            if end is not None:
                if track.firing is not None:
                    events.append(self._resolve(track, max(end, track.firing.at), track.value))
                del self.tracks[key]
            elif name in rules:  # a live peer with no samples in the window: its condition does not hold
                self._step(rules[name], track, call, peer, None, now_ms, events)
            else:  # a rule no longer configured
                del self.tracks[key]
        for key in [key for key, track in self.tracks.items() if track.firing is None and track.holding_since is None]:
            del self.tracks[key]
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


def _sort_key(key):
    return (key[1], key[2] or "", key[0])
