"""Live alerts: rules over each live (call, peer)'s quality window, evaluated every tick.

The rules, the per-(rule, call, peer) state machine with its hysteresis, and
the alert events it produces are pure and synchronous here; where events are
kept (InfluxDB's rtc_alerts), which process sends them and how they reach
receivers is AlertService below and rtcscope/live/webhooks.py. See docs/alerts.md.
"""
import asyncio
import collections
import hashlib
import logging
import math
import re
import secrets
import time
import tomllib
import urllib.parse
from dataclasses import dataclass, field

import aiohttp

from .. import registry
from ..storage.schema import ALERTS_MEASUREMENT, NODES_MEASUREMENT
from ..storage.store import InfluxDBError, StoreError, quote_literal, time_range
from ..storage.writer import WriteRejected
from ..tasks import cancel_and_wait
from ..timeparse import parse_duration
from .webhooks import Outgoing

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


# --- the alerts of every process, kept in InfluxDB -------------------------------------

# A process sends once it has been up this many ticks, if its start is the oldest
# among the heartbeats of this many last ticks.
ELECTION_TICKS = 3
# Firing alerts a new sender takes over, and what /v1/alerts/ looks back over by default.
LOOKBACK_MS = 24 * 3600_000
# Events every process reads back each tick (for /ws/calls and its firing count): an
# event's time is its `at`, which for an end is the call's end, up to a call timeout back.
FOLLOW_MS = 120_000
MAX_UNWRITTEN = 10_000
_STRING_FIELDS = ("id", "rule", "severity", "state", "call", "peer", "url")
_REQUIRED = ("id", "rule", "severity", "state", "call", "threshold", "since", "at", "url")


def peer_windows(qualities):
    """{(call, peer): window values} of the live peers, from the detector's qualities of
    the tick (rtcscope/live/fleet.py: each peer's window and its MOS)."""
    return {(call, peer): window for call, found in qualities.items() for peer, window in found.peers.items()}


# Window values the detector's window rows carry (rtcscope/live/fleet.py); a rule on any
# other registry metric has it read by AlertService's own query.
WINDOW_VALUES = ("mos", "loss", "freezes", "rtt", "jitter", "qualityLimitationReason")


def extra_metrics(rules):
    """The registry metrics the rules need beyond the detector's window, by name."""
    return {rule.metric: registry.lookup(rule.metric) for rule in rules if rule.metric not in WINDOW_VALUES}


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


def _string(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_event(alert, node, time_ns):
    """The rtc_alerts point of one event: tagged by the node that wrote it (few series),
    at the event's time plus a per-node sequence (unique within the node's series)."""
    fields = [f"{name}={_string(alert[name])}" for name in _STRING_FIELDS if alert.get(name) is not None]
    fields += [f"{name}={float(alert[name])!r}" for name in ("value", "threshold", "since", "at")
               if alert.get(name) is not None]
    fields.append(f"seq={float(time_ns % 1_000_000)!r}")  # rebuilds the point's time from a query in ms
    return f"{ALERTS_MEASUREMENT},node={node} {','.join(fields)} {time_ns}".encode()


def encode_delivery(node, time_ns, receiver_key, delivered):
    """A receiver's outcome, written onto the event's own point: 1 delivered, -1 given up."""
    return f"{ALERTS_MEASUREMENT},node={node} {receiver_key}={1.0 if delivered else -1.0!r} {time_ns}".encode()


def row_alert(row):
    """The webhook object of a stored event; None for a point not (yet) whole."""
    if any(row.get(name) is None for name in _REQUIRED):
        return None
    return {"id": row["id"], "rule": row["rule"], "severity": row["severity"], "state": row["state"],
            "call": row["call"], "peer": row.get("peer"), "value": row.get("value"),
            "threshold": float(row["threshold"]), "since": int(row["since"]), "at": int(row["at"]),
            "url": row["url"]}


def latest_by_id(rows):
    """The latest event of each alert, oldest first; a resolution wins a tie."""
    latest = {}
    for row in rows:
        alert = row_alert(row)
        if alert is None:
            continue
        before = latest.get(alert["id"])
        if before is None or (alert["at"], alert["state"] == "resolved") >= (before["at"], before["state"] == "resolved"):
            latest[alert["id"]] = alert
    return sorted(latest.values(), key=lambda alert: (alert["at"], alert["id"]))


def event_of(alert):
    return AlertEvent(alert["id"], alert["rule"], alert["severity"], alert["state"], alert["call"], alert["peer"],
                      alert["value"], alert["threshold"], alert["since"], alert["at"])


class AlertService:
    """Evaluates the rules every detector tick in every process; the elected sender
    records the events in rtc_alerts and delivers them. Every process follows
    rtc_alerts to tell its /ws/calls viewers and count what fires.

    Election: each tick every process writes a heartbeat (rtc_nodes: its random
    node id, its start time); the sender is the process with the oldest start
    among the heartbeats of the last ELECTION_TICKS ticks (ties: the smaller node
    id), once it has been up ELECTION_TICKS ticks. Taking over, it adopts the
    firing alerts InfluxDB holds and sends what is still undelivered."""

    def __init__(self, store, writer, rules, *, tick_ms, public_url, webhooks=None, lookback_ms=LOOKBACK_MS,
                 node=None, on_delivery=None, window_ms=10_000):
        self.store = store
        self.writer = writer
        self.engine = AlertEngine(list(rules))
        self.tick_ms = tick_ms
        self.public_url = public_url.rstrip("/")
        self.webhooks = webhooks
        self.lookback_ms = lookback_ms
        self.window_ms = window_ms
        self.extra = extra_metrics(rules)
        self.extra_values = {}  # (call, peer) -> values of the extra metrics, as of the last tick
        self.node = node or secrets.token_hex(8)
        self.started = int(time.time() * 1000)
        self.on_delivery = on_delivery  # called with each delivery result (for /metrics)
        self.sending = False
        self.sender = None  # the node id that sends, as of the last tick
        self.up_ticks = 0
        self.known = {}  # id -> latest firing event as InfluxDB holds it
        self.seen = {}  # (id, state) -> at: events already told to listeners
        self.listeners = []  # callables taking each new event (the webhook object)
        self.loaded = False
        self._seq = 0
        self._unwritten = collections.deque(maxlen=MAX_UNWRITTEN)
        self._task = None
        self.failures = 0
        self.queries = 0  # InfluxDB queries of the alerts (2 per tick: nodes, new events)
        if webhooks is not None:
            webhooks.on_result = self._delivered
            webhooks.refill = self._refill

    @property
    def firing_count(self):
        return len(self.known)

    def call_url(self, call):
        return f"{self.public_url}/calls/{urllib.parse.quote(call, safe='')}/"

    # --- each tick ----------------------------------------------------------------

    def on_tick(self, now_ms, qualities, calls, live_calls):
        """The detector's tick hook: the live calls' qualities (each peer's window), the calls, the live ones."""
        windows = peer_windows(qualities)
        for key, values in self.extra_values.items():
            if key[0] in live_calls:
                windows[key] = {**windows.get(key, {}), **values}  # the detector's windows are not ours to change
        events = self.engine.evaluate(now_ms, windows, ended_of(calls), live_calls)
        if self.sending:
            for event in events:
                self._record(event.as_json(self.call_url(event.call)))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._housekeep(now_ms))

    def _record(self, alert):
        self._seq = (self._seq + 1) % 1_000_000
        time_ns = alert["at"] * 1_000_000 + self._seq
        self._submit(encode_event(alert, self.node, time_ns))
        if self.webhooks is not None:
            self.webhooks.send(Outgoing(alert, self.node, time_ns))
        self._tell(alert)

    def _submit(self, line):
        while self._unwritten and self.writer.submit([self._unwritten[0]]):
            self._unwritten.popleft()
        if self._unwritten or not self.writer.submit([line]):
            if len(self._unwritten) == self._unwritten.maxlen:
                log.warning("alert state cannot be written (buffer full); the oldest unwritten record is lost")
            self._unwritten.append(line)

    def _tell(self, alert):
        """Count and push an event once, whichever way it came (recorded here or read back)."""
        key = (alert["id"], alert["state"])
        if key in self.seen:
            return
        self.seen[key] = alert["at"]
        if alert["state"] == "firing":
            self.known[alert["id"]] = alert
        else:
            self.known.pop(alert["id"], None)
        for listener in self.listeners:
            try:
                listener(alert)
            except Exception:
                log.exception("an alert listener failed")

    async def _housekeep(self, now_ms):
        """Heartbeat, follow rtc_alerts, then take or give up the sender's role."""
        try:
            await self._beat(now_ms)
        except (StoreError, WriteRejected, TimeoutError, OSError, aiohttp.ClientError, InfluxDBError) as exc:
            self.failures += 1
            self.up_ticks = 0
            log.warning("alert heartbeat failed (%s): not sending until InfluxDB answers again", exc)
            await self._step_down()
        except Exception:  # the next tick tries again; the detector's tick is not ours to break
            self.failures += 1
            log.exception("alert housekeeping failed")

    async def _beat(self, now_ms):
        """Write this process's heartbeat, read the others' and the new events, elect the sender."""
        await self.store.write(f"{NODES_MEASUREMENT},node={self.node} started={float(self.started)!r} "
                               f"{now_ms * 1_000_000}".encode())
        rows = await self._query(
            f'SELECT last("started") AS "started" FROM {NODES_MEASUREMENT} '
            f'WHERE {time_range(now_ms - ELECTION_TICKS * self.tick_ms, now_ms + 60_000)} GROUP BY "node"')
        if self.extra:
            self.extra_values = await self._extra_windows(now_ms)
        if not self.loaded:
            for alert in latest_by_id(await self._events(now_ms - self.lookback_ms, now_ms)):
                self.seen[(alert["id"], alert["state"])] = alert["at"]
                if alert["state"] == "firing":
                    self.known[alert["id"]] = alert
            self.loaded = True
        else:
            for alert in sorted((a for a in map(row_alert, await self._events(now_ms - FOLLOW_MS, now_ms)) if a),
                                key=lambda a: (a["at"], a["state"] == "resolved")):
                self._tell(alert)
            for key in [key for key, at in self.seen.items() if at < now_ms - 2 * FOLLOW_MS]:
                del self.seen[key]
        self.up_ticks += 1
        nodes = sorted((row["started"], series["tags"].get("node", "")) for series in rows
                       for row in series["rows"] if row.get("started") is not None)
        self.sender = nodes[0][1] if nodes else None
        should = self.sender == self.node and self.up_ticks >= ELECTION_TICKS
        if should and not self.sending:
            await self._take_over(now_ms)
        elif not should and self.sending:
            await self._step_down()

    async def _extra_windows(self, now_ms):
        """The window of the registry metrics only custom rules use: one grouped query."""
        metrics = self.extra.values()
        gauges = sorted({metric.source_field for metric in metrics if metric.type != registry.COUNTER})
        counters = sorted({metric.source_field for metric in metrics if metric.type == registry.COUNTER})
        self.queries += 1
        rows = await self.store.quality_window(now_ms - self.window_ms, now_ms, gauges, (), counters)
        return extra_windows(rows, self.extra, self.window_ms)

    async def _query(self, statement):
        self.queries += 1
        return await self.store.query(statement)

    async def _events(self, since_ms, until_ms):
        rows = await self._query(f"SELECT * FROM {ALERTS_MEASUREMENT} WHERE {time_range(since_ms, until_ms)}")
        return [row for series in rows for row in series["rows"]]

    async def _take_over(self, now_ms):
        """Become the sender: carry on the firing alerts InfluxDB holds, send what is owed."""
        rows = await self._events(now_ms - max(self.lookback_ms, self._retry_ms), now_ms + 60_000)
        self.engine.adopt([event_of(alert) for alert in latest_by_id(rows) if alert["state"] == "firing"])
        log.info("node %s sends alerts from now on", self.node)
        self.sending = True
        if self.webhooks is not None:
            self.webhooks.start()
            self._send_owed(rows, now_ms)

    @property
    def _retry_ms(self):
        return self.webhooks.retry_ms if self.webhooks is not None else 0

    def _send_owed(self, rows, now_ms, receivers=None):
        """Queue, oldest first, every event of the retry period some receiver has not had."""
        owed = []
        for row in rows:
            alert = row_alert(row)
            if alert is None or alert["at"] < now_ms - self._retry_ms or row.get("node") is None:
                continue
            time_ns = int(row["time"]) * 1_000_000 + int(row.get("seq") or 0)
            owed.append((time_ns, Outgoing(alert, row["node"], time_ns),
                         {key for key, value in row.items() if key.startswith("r_") and value is not None}))
        for _, outgoing, delivered in sorted(owed, key=lambda item: item[0]):
            if receivers is None:
                self.webhooks.send(outgoing, delivered)
            else:
                for worker in receivers:
                    if worker.receiver.key not in delivered:
                        worker.put(outgoing)

    async def _step_down(self):
        if self.sending:
            log.info("node %s no longer sends alerts", self.node)
        self.sending = False
        if self.webhooks is not None:
            await self.webhooks.stop()

    def _delivered(self, outgoing, receiver, result):
        if self.on_delivery is not None:
            self.on_delivery(result)
        if result in ("delivered", "expired"):
            self._submit(encode_delivery(outgoing.node, outgoing.time_ns, receiver.key, result == "delivered"))

    async def _refill(self, receiver):
        """A receiver's queue overflowed and drained: queue again what it is still owed."""
        now = int(time.time() * 1000)
        try:
            rows = await self._events(now - self._retry_ms, now + 60_000)
        except StoreError as exc:
            log.warning("cannot read owed alert deliveries (%s)", exc)
            return
        worker = self.webhooks.workers.get(receiver.key)
        if worker is not None:
            self._send_owed(rows, now, [worker])

    async def list_alerts(self, state, since_ms, now_ms, call=None):
        """Alerts whose latest event is since `since_ms`, with that event ("firing" or "all");
        of one call when `call` is given."""
        where = f" AND \"call\" = {quote_literal(call)}" if call is not None else ""
        rows = await self.store.query(f"SELECT * FROM {ALERTS_MEASUREMENT} "
                                      f"WHERE {time_range(since_ms, now_ms + 60_000)}{where}")
        alerts = latest_by_id(row for series in rows for row in series["rows"])
        if state == "firing":
            alerts = [alert for alert in alerts if alert["state"] == "firing"]
        return sorted(alerts, key=lambda alert: (-alert["at"], alert["id"]))

    async def stop(self):
        await cancel_and_wait(self._task)
        await self._step_down()
        for line in self._unwritten:
            self.writer.submit([line])

    def register_metrics(self, telemetry, ticked=True):
        """The alerts' families on /metrics. What fires is followed each detector
        tick: a process without a detector (`ticked` false) does not know it."""
        if ticked:
            telemetry.gauge("rtcscope_alerts_firing", "alerts firing now (as InfluxDB's rtc_alerts holds them)",
                            lambda: self.firing_count)
        telemetry.counter("rtcscope_webhook_deliveries_total",
                          "webhook deliveries by result: delivered, failed (an attempt, retried), expired (given up), "
                          "dropped (queue full, still owed)", labels=("result",))
        self.on_delivery = lambda result: telemetry.inc("rtcscope_webhook_deliveries_total", result=result)
        telemetry.gauge("rtcscope_alerts_sender", "1 while this process is the one that records and sends alerts",
                        lambda: int(self.sending))
