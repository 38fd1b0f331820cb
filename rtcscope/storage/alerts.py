"""rtc_alerts and rtc_nodes: the alerts' points and the statements that read them (docs/alerts.md: Storage).

Unlike the other measurements these hold strings and few series: an event's
point is tagged by the process that wrote it, a receiver's outcome is a field
written onto that same point, and a heartbeat is one point per process and tick.
"""
from .schema import ALERTS_MEASUREMENT

_STRING_FIELDS = ("id", "rule", "severity", "state", "call", "peer", "url")
_REQUIRED = ("id", "rule", "severity", "state", "call", "threshold", "since", "at", "url")


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
