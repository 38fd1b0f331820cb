"""Full getStats() reports rebuilt from the deltas clients send, and one
endpoint's metrics extracted from the latest reports of all its peer connections.

A client that sends only what changed since its previous report saves ~90%
of the bytes; the server then holds, per peer connection, the report as it
stands and lays each delta over it. `PeerReports` is that state for one
endpoint (a peer): every websocket ingest path keeps one per endpoint and
adds the rebuild of its own delta dialect on top of `_merge`: the rtcstats
one (`rebuild_rtcstats`) and rtcscope.js's own (`rebuild_full`,
`rebuild_delta`: stats left out are unchanged, gone ones are listed).

Rebuilding is pure: it returns a new report and leaves the held one as it
was, and `commit` keeps it only once the points made from it were stored.
A message that could not be stored therefore leaves the state as before it,
and the client's resend applies cleanly.

Only the fields extraction and the peer's dimensions read are held
(`HELD_FIELDS`: registry.REPORT_FIELDS and dimensions.report.DIMENSION_FIELDS);
other stats keep their type alone. Candidate addresses and ports,
certificates and codec parameters never stay in memory, and the state of a
peer is bounded by its number of stat ids (`max_stats`).
"""
from collections.abc import Mapping

from .. import registry
from ..dimensions.report import DIMENSION_FIELDS, ROUTE_FIELDS

# Per stats type, the fields held.
HELD_FIELDS: dict[str, frozenset[str]] = {
    stat_type: registry.REPORT_FIELDS.get(stat_type, frozenset({"id", "type"})) | DIMENSION_FIELDS.get(stat_type, frozenset())
    for stat_type in registry.REPORT_FIELDS.keys() | DIMENSION_FIELDS.keys()}
_NO_FIELDS = frozenset()

# Stat ids held per endpoint, over all its peer connections.
MAX_STATS = 1000
# A peer connection that sent no report for this long (it failed and was
# replaced without a `close`) no longer counts in its endpoint's metrics.
STALE_MS = 60_000
# The longest text field held (ids, kinds, states): a client cannot grow the state with long strings.
MAX_TEXT = 256
_NUMBERS = frozenset({int, float, bool})


class ReportError(ValueError):
    """A delta that cannot be applied; `code` says why."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _held(stat_id, stat):
    """What is kept of a stat: the fields extraction reads (numbers, and short
    strings such as kind or a pair id), with its id."""
    stat_type = stat.get("type")
    fields = HELD_FIELDS.get(stat_type) if isinstance(stat_type, str) else None
    if fields is None:
        return {"type": stat_type[:MAX_TEXT]} if isinstance(stat_type, str) else {}
    held = {name: value for name, value in stat.items()
            if name in fields and (value.__class__ in _NUMBERS or (isinstance(value, str) and len(value) <= MAX_TEXT))}
    held["id"] = stat_id
    return held


class PeerReports:
    """The latest report of each peer connection of one endpoint."""

    def __init__(self, max_stats=MAX_STATS):
        self.max_stats = max_stats
        self.reports = {}  # peer connection id -> {stat id: held stat}
        self.updated = {}  # peer connection id -> time of its latest report (ms)

    def rebuild_rtcstats(self, pc_id, entry):
        """Rebuild a report from an @jitsi/rtcstats `getstats` entry.

        The client deletes each stat's `id` (the key says it), deletes the
        fields equal to its previous report's, omits the stats that are gone
        and sets `timestamp: 0` on stats whose time equals the entry's
        top-level `timestamp`. Returns (report, ids that arrived without a
        type, whether its route or codecs may have changed as `rebuild_delta`
        says): a held report lost (a restart) leaves later deltas without
        the fields that never change, and such stats cannot be extracted.
        """
        if not isinstance(entry, dict):
            raise ReportError("bad_report", "a getstats entry must be an object of stat id: stat")
        entry_time = entry.get("timestamp")
        if isinstance(entry_time, bool) or not isinstance(entry_time, (int, float)):
            entry_time = None
        previous = self.reports.get(pc_id, {})
        report, untyped, kept = {}, 0, 0
        moved = False
        for stat_id, changes in entry.items():
            if stat_id == "timestamp":
                continue
            if not isinstance(changes, dict):
                raise ReportError("bad_report", f"stat {stat_id[:80]!r} is not an object")
            held = previous.get(stat_id)
            if held is None and "type" not in changes:
                untyped += 1
            stat = _merge(held, changes)
            if stat.get("timestamp") == 0 and entry_time is not None:
                stat["timestamp"] = entry_time
            report[stat_id] = _held(stat_id, stat)
            if held is not None:
                kept += 1
            if not moved:  # the client leaves out the fields that did not change
                if held is None or "type" in changes:
                    moved = stat.get("type") in ROUTE_FIELDS or (held is not None and held.get("type") in ROUTE_FIELDS)
                else:
                    moved = not ROUTE_FIELDS.get(held.get("type"), _NO_FIELDS).isdisjoint(changes)
        self._check_size(pc_id, report)
        if not moved and kept != len(previous):  # stats left out are gone
            moved = any(previous[stat_id].get("type") in ROUTE_FIELDS for stat_id in previous.keys() - report.keys())
        return report, untyped, moved

    def rebuild_full(self, pc_id, stats):
        """The held form of a full report (the array getStats() returned)."""
        if not isinstance(stats, list):
            raise ReportError("bad_report", "report must be the array getStats() returned")
        report = {}
        for stat in stats:
            if isinstance(stat, dict) and isinstance(stat.get("id"), str):
                report[stat["id"]] = _held(stat["id"], stat)
        self._check_size(pc_id, report)
        return report

    def rebuild_delta(self, pc_id, delta, removed, base=None):
        """Lay rtcscope.js's delta over `base` (default: the held report of
        `pc_id`): `delta` maps stat ids to their changed fields (all of them
        for an id not seen before; null for a field that is gone), `removed`
        lists the ids that are gone; stats in neither are unchanged.
        Returns (the report, whether its route or codecs may have changed: a
        stat of a type they read came or went, or a ROUTE_FIELDS field changed)."""
        if base is None:
            base = self.reports.get(pc_id)
        if base is None:
            raise ReportError("need_full_report", "a delta needs a full report before it on this connection")
        if not isinstance(delta, dict) or not isinstance(removed, list):
            raise ReportError("bad_report", "delta must be an object of stat id: fields, removed an array of stat ids")
        report = dict(base)
        moved = False
        report_fields, route_fields = HELD_FIELDS, ROUTE_FIELDS
        for stat_id in removed:
            gone = report.pop(stat_id, None)
            moved = moved or (gone is not None and gone.get("type") in route_fields)
        for stat_id, changes in delta.items():
            if not isinstance(changes, dict):
                raise ReportError("bad_report", f"stat {stat_id[:80]!r} is not an object")
            held = base.get(stat_id)
            if held is None or "type" in changes:
                stat = report[stat_id] = _held(stat_id, _merge(held, changes))
                moved = moved or stat.get("type") in route_fields or (held is not None and held.get("type") in route_fields)
                continue
            stat_type = held.get("type")
            fields = report_fields.get(stat_type)
            if fields is None:  # a type nothing reads: only its type is held, unchanged
                continue
            # The common case, every stat of every delta (its timestamp moves): the held
            # stat with the changed fields extraction reads, as `_held(_merge(...))` gives.
            stat = held.copy()
            names = fields.intersection(changes)
            for name in names:
                value = changes[name]
                if value is None:
                    stat.pop(name, None)
                else:
                    stat[name] = value
            if not moved and not route_fields.get(stat_type, _NO_FIELDS).isdisjoint(names):
                moved = True
            if "id" in changes:
                stat["id"] = stat_id
            report[stat_id] = stat
        self._check_size(pc_id, report)
        return report, moved

    def _check_size(self, pc_id, report):
        held = sum(len(stats) for other, stats in self.reports.items() if other != pc_id)
        if held + len(report) > self.max_stats:
            raise ReportError("too_many_stats", f"more than {self.max_stats} stat ids for one peer")

    def extract(self, pending=None, at_ms=None):
        """The registry's metrics of the endpoint: the held reports with
        `pending` ({pc id: report} not yet committed) laid over them. With
        `at_ms`, peer connections silent for `STALE_MS` before it are left out."""
        reports = dict(self.reports)
        reports.update(pending or {})
        if at_ms is not None:
            reports = {pc_id: report for pc_id, report in reports.items()
                       if (pending and pc_id in pending) or self.updated.get(pc_id, at_ms) >= at_ms - STALE_MS}
        return registry.extract_connections(reports.values())

    def commit(self, reports: Mapping, at_ms):
        """Keep reports whose points were stored."""
        for pc_id, report in reports.items():
            self.reports[pc_id] = report
            self.updated[pc_id] = at_ms

    def discard(self, pc_id):
        """A closed peer connection: its stats leave the endpoint's metrics."""
        self.reports.pop(pc_id, None)
        self.updated.pop(pc_id, None)

    @property
    def stat_count(self):
        return sum(len(stats) for stats in self.reports.values())


def _merge(held, changes):
    """A stat as it stands after `changes`; a field set to null is gone."""
    stat = dict(held) if held else {}
    for name, value in changes.items():
        if value is None:
            stat.pop(name, None)
        else:
            stat[name] = value
    return stat
