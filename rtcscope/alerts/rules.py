"""The alert rules: the built-ins, and a TOML rules file parsed and checked (docs/alerts.md: Rules).

A bad file stops the start with the reason and where; what a rule's metric
reads in a peer's window is Rule.value_in. A rule with `by = "<dimension>"`
is a cohort rule: its metric is `poor_share`, evaluated per value of the
dimension over the live peers (docs/alerts.md: Cohort rules).
"""
import math
import re
import tomllib
from dataclasses import dataclass

from .. import registry
from ..dimensions import BUILTIN_DIMENSIONS
from ..timeparse import parse_duration

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
SEVERITY_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
OPS = {"<": lambda value, threshold: value < threshold, ">": lambda value, threshold: value > threshold}
# Window values that are not registry metrics: the E-model MOS, the loss ratio (0-1)
# and the freezes counted in the window (freezeCount's increase, under either name).
DERIVED = ("mos", "loss", "freezes")
_FREEZES_NAMES = ("freezes", "freezeCount")
RULE_KEYS = {"name", "metric", "op", "threshold", "for", "severity", "by", "min_peers"}
# A cohort rule's metric: the share of the cohort's live peers whose verdict is poor (0-1).
COHORT_METRIC = "poor_share"
DEFAULT_MIN_PEERS = 10


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
    by: str | None = None  # a cohort rule's dimension
    min_peers: int = DEFAULT_MIN_PEERS  # a cohort rule's: fewer live peers in a value do not hold

    def holds(self, value):
        return value is not None and math.isfinite(value) and OPS[self.op](value, self.threshold)

    def value_in(self, window):
        """The rule's value in a window; a (lowest, highest) pair over a peer's kinds gives
        the one the rule is about (the lowest for `<`)."""
        value = window.get(self.metric)
        if isinstance(value, tuple):
            value = value[0] if self.op == "<" else value[1]
        return value


BUILTIN_RULES = (
    Rule("poor_mos", "mos", "<", 3.1, 10_000, "critical"),
    Rule("high_loss", "loss", ">", 0.05, 10_000, "warning"),
    Rule("high_rtt", "rtt", ">", 400.0, 10_000, "warning"),
    # A freeze is already a sustained stall: any freeze in the window fires at once.
    Rule("freezes", "freezes", ">", 0.0, 0, "warning"),
)


def load_rules(path, dimensions=BUILTIN_DIMENSIONS):
    """The rules of a TOML file ([[rule]] tables), or the built-ins without a path.
    `dimensions`: the names a cohort rule's `by` may give (the built-ins and --peer-tags)."""
    if not path:
        return list(BUILTIN_RULES)
    try:
        with open(path, "rb") as source:
            document = tomllib.load(source)
    except OSError as exc:
        raise RulesError(f"alert rules {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"alert rules {path}: not valid TOML: {exc}") from None
    return parse_rules(document, path, dimensions)


def parse_rules(document, where="alert rules", dimensions=BUILTIN_DIMENSIONS):
    extra = set(document) - {"rule"}
    if extra:
        raise RulesError(f"{where}: unknown top-level key {sorted(extra)[0]!r} (rules go in [[rule]] tables)")
    tables = document.get("rule")
    if not isinstance(tables, list) or not tables:
        raise RulesError(f"{where}: no [[rule]] tables (leave --alert-rules empty for the built-in rules)")
    rules, names = [], set()
    for index, table in enumerate(tables, 1):
        rule = _parse_rule(table, f"{where}: rule {index}", dimensions)
        if rule.name in names:
            raise RulesError(f"{where}: rule {index}: name {rule.name!r} is used twice")
        names.add(rule.name)
        rules.append(rule)
    return rules


def _parse_rule(table, where, dimensions):
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
    by, min_peers = _cohort(table, where, dimensions)
    if by is None:
        metric = window_name(metric)
        if metric is None:
            raise RulesError(f"{where}: unknown metric {table['metric']!r}: mos, loss, freezes or a registry metric "
                             f"(see /v1/metrics/); {COHORT_METRIC} with by = \"<dimension>\"")
    op = table["op"]
    if op not in OPS:
        raise RulesError(f"{where}: op must be '<' or '>', got {op!r}")
    threshold = table["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise RulesError(f"{where}: threshold must be a finite number, got {threshold!r}")
    if by is not None and not 0 <= threshold <= 1:
        raise RulesError(f"{where}: {COHORT_METRIC} is a share from 0 to 1, got threshold {threshold!r}")
    duration = table.get("for", "0s")
    seconds = parse_duration(duration) if isinstance(duration, str) else None
    if seconds is None:
        raise RulesError(f"{where}: for must be a duration like 10s or 2m, got {duration!r}")
    severity = table.get("severity", "warning")
    if not isinstance(severity, str) or not SEVERITY_RE.fullmatch(severity):
        raise RulesError(f"{where}: severity must match {SEVERITY_RE.pattern}, got {severity!r}")
    return Rule(name, metric, op, float(threshold), seconds * 1000, severity, by, min_peers)


def _cohort(table, where, dimensions):
    """(by, min_peers) of a cohort rule; (None, default) of a per-peer one."""
    if "by" not in table:
        if table["metric"] == COHORT_METRIC:
            raise RulesError(f"{where}: {COHORT_METRIC} is a cohort's: give by = \"<dimension>\"")
        if "min_peers" in table:
            raise RulesError(f"{where}: min_peers goes with by = \"<dimension>\"")
        return None, DEFAULT_MIN_PEERS
    by = table["by"]
    if not isinstance(by, str) or by not in dimensions:
        raise RulesError(f"{where}: by must be a dimension ({', '.join(dimensions)}), got {by!r}")
    if table["metric"] != COHORT_METRIC:
        raise RulesError(f"{where}: a rule by {by} has metric = \"{COHORT_METRIC}\" (the share of the cohort's live "
                         f"peers that are poor), got {table['metric']!r}")
    min_peers = table.get("min_peers", DEFAULT_MIN_PEERS)
    if isinstance(min_peers, bool) or not isinstance(min_peers, int) or min_peers < 1:
        raise RulesError(f"{where}: min_peers must be a whole number of at least 1, got {min_peers!r}")
    return by, min_peers


def window_name(metric):
    """The window value a rule's metric names: mos, loss, freezes, or a registry
    metric's canonical name (aliases resolved); None when it is none of these."""
    if metric in _FREEZES_NAMES:
        return "freezes"
    if metric in DERIVED:
        return metric
    found = registry.lookup(metric)
    return found.name if found is not None else None
