"""rtc_alerts and rtc_nodes: the alerts' points and the statements that read them (docs/alerts.md: Storage).

Unlike the other measurements these hold strings and few series: an event's
point is tagged by the process that wrote it, a receiver's outcome is a field
written onto that same point, and a heartbeat is one point per process and tick.
"""
import hashlib

from .schema import ALERTS_MEASUREMENT, NODES_MEASUREMENT
from .store import quote_literal, time_range

_STRING_FIELDS = ("id", "rule", "severity", "state", "scope", "call", "peer", "dimension", "url")
_NUMBER_FIELDS = ("threshold", "since", "at", "peers", "poor")
_REQUIRED = ("id", "rule", "severity", "state", "call", "threshold", "since", "at", "url")
# A cohort's value is a string, a per-peer alert's a number: two fields, as InfluxDB keeps one type per field.
COHORT_VALUE = "cohort_value"
_COHORT_REQUIRED = ("id", "rule", "severity", "state", "dimension", COHORT_VALUE, "peers", "poor", "threshold",
                    "since", "at", "url")
# A receiver's outcome on an event's point: this prefix and a hash of its URL.
_RECEIVER_PREFIX = "r_"


def _string(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_event(alert, node, time_ns):
    """The rtc_alerts point of one event: tagged by the node that wrote it (few series),
    at the event's time plus a per-node sequence (unique within the node's series)."""
    fields = [f"{name}={_string(alert[name])}" for name in _STRING_FIELDS if alert.get(name) is not None]
    value = alert.get("value")
    if value is not None:
        fields.append(f"{COHORT_VALUE}={_string(value)}" if alert.get("scope") == "cohort" else f"value={float(value)!r}")
    fields += [f"{name}={float(alert[name])!r}" for name in _NUMBER_FIELDS if alert.get(name) is not None]
    fields.append(f"seq={float(time_ns % 1_000_000)!r}")  # rebuilds the point's time from a query in ms
    return f"{ALERTS_MEASUREMENT},node={node} {','.join(fields)} {time_ns}".encode()


def encode_delivery(node, time_ns, receiver_key, delivered):
    """A receiver's outcome, written onto the event's own point: 1 delivered, -1 given up."""
    return f"{ALERTS_MEASUREMENT},node={node} {receiver_key}={1.0 if delivered else -1.0!r} {time_ns}".encode()


def row_alert(row):
    """The webhook object of a stored event; None for a point not (yet) whole. An event
    stored without a scope is a per-peer one."""
    if row.get("scope") == "cohort":
        if any(row.get(name) is None for name in _COHORT_REQUIRED):
            return None
        return {"id": row["id"], "rule": row["rule"], "severity": row["severity"], "state": row["state"],
                "scope": "cohort", "dimension": row["dimension"], "value": row[COHORT_VALUE],
                "peers": int(row["peers"]), "poor": int(row["poor"]), "threshold": float(row["threshold"]),
                "since": int(row["since"]), "at": int(row["at"]), "url": row["url"]}
    if any(row.get(name) is None for name in _REQUIRED):
        return None
    return {"id": row["id"], "rule": row["rule"], "severity": row["severity"], "state": row["state"],
            "scope": "peer", "call": row["call"], "peer": row.get("peer"), "value": row.get("value"),
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


def event_time_ns(at_ms, seq):
    """An event's point time: its `at` plus a per-node sequence (0-999,999) as nanoseconds,
    so that two events of one node in the same millisecond are two points."""
    return at_ms * 1_000_000 + seq


def row_time_ns(row):
    """The point time of a stored event, rebuilt from its time in ms and its `seq`."""
    return int(row["time"]) * 1_000_000 + int(row.get("seq") or 0)


def receiver_field(spec):
    """The field holding one receiver's outcomes: the same in every process configured with that URL."""
    return _RECEIVER_PREFIX + hashlib.sha256(spec.encode()).hexdigest()[:12]


def delivered_to(row):
    """The receiver fields of an event's point that hold an outcome (delivered or given up)."""
    return {key for key, value in row.items() if key.startswith(_RECEIVER_PREFIX) and value is not None}


def events_query(since_ms, until_ms, call=None):
    """Every event point of the time range; of one call when `call` is given."""
    where = f" AND \"call\" = {quote_literal(call)}" if call is not None else ""
    return f"SELECT * FROM {ALERTS_MEASUREMENT} WHERE {time_range(since_ms, until_ms)}{where}"


def rows_of(series):
    """The rows of a query's answer, its series put end to end."""
    return [row for found in series for row in found["rows"]]


def encode_heartbeat(node, started_ms, at_ms):
    """A process's heartbeat: its node id and start time, at the tick's time."""
    return f"{NODES_MEASUREMENT},node={node} started={float(started_ms)!r} {at_ms * 1_000_000}".encode()


def heartbeats_query(since_ms, until_ms):
    """The last heartbeat of each process in the time range, one series per node."""
    return (f'SELECT last("started") AS "started" FROM {NODES_MEASUREMENT} '
            f'WHERE {time_range(since_ms, until_ms)} GROUP BY "node"')


def node_starts(series):
    """(start, node id) of each process with a heartbeat in a heartbeats_query's answer, oldest start first."""
    return sorted((row["started"], found["tags"].get("node", "")) for found in series
                  for row in found["rows"] if row.get("started") is not None)
