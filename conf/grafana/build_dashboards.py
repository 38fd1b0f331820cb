"""Writes the Grafana dashboards in provisioning/dashboards/ from the metric registry.

    .venv/bin/python conf/grafana/build_dashboards.py

The call dashboard has a panel for every registry metric, with its unit, its
scale and, for counters, the per-second rate the server's own pages show; the
fleet dashboard's breakdown offers every dimension the server knows with its
default --peer-tags (rtcscope.dimensions); tests/test_grafana.py checks that the committed files are this script's
output and runs every query they hold against a real InfluxDB.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from rtcscope.dimensions import known_dimensions  # noqa: E402
from rtcscope.dimensions.tags import DEFAULT_PEER_TAGS  # noqa: E402
from rtcscope.registry import COUNTER, all_metrics  # noqa: E402
from rtcscope.storage.schema import (  # noqa: E402
    MEASUREMENT,
    PEER_SUMMARIES_MEASUREMENT,
    PRESENCE_MEASUREMENT,
    RETENTION_POLICY,
    SUMMARIES_MEASUREMENT,
)

OUT = os.path.join(HERE, "provisioning", "dashboards")
DATASOURCE = {"type": "influxdb", "uid": "rtcscope-influxdb"}
STATS = f'"{RETENTION_POLICY}"."{MEASUREMENT}"'
PRESENCE = f'"{RETENTION_POLICY}"."{PRESENCE_MEASUREMENT}"'
SUMMARIES = f'"{RETENTION_POLICY}"."{SUMMARIES_MEASUREMENT}"'
PEER_SUMMARIES = f'"{RETENTION_POLICY}"."{PEER_SUMMARIES_MEASUREMENT}"'
THIS_CALL = '"call" = \'$call\' AND $timeFilter'
# The --call-timeout default: a call that sent nothing for this long is over.
LIVE = "time > now() - 15s"
# Registry units as Grafana names them; others are shown as a suffix.
UNITS = {"ms": "ms", "s": "s", "bit/s": "bps", "bytes/s": "Bps", "packets/s": "pps", "1": "percentunit",
         "s/s": "percentunit", "count": "short", "code": "none"}


def grafana_unit(unit):
    return UNITS.get(unit, f"suffix: {unit}")


def target(query, ref="A", alias="", table=False):
    return {"refId": ref, "datasource": DATASOURCE, "rawQuery": True, "query": query, "alias": alias,
            "resultFormat": "table" if table else "time_series"}


def panel(title, kind, targets, x, y, w=12, h=8, unit="short", description="", **options):
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, **options.pop("defaults", {})},
                            "overrides": options.pop("overrides", [])}, **options}


def override(name, **properties):
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": key, "value": value} for key, value in properties.items()]}


def dashboard(uid, title, description, panels, templating=(), time_from="now-1h"):
    for number, each in enumerate(panels, 1):
        each["id"] = number
    return {"uid": uid, "title": title, "description": description, "tags": ["rtcscope", "webrtc"],
            "editable": True, "schemaVersion": 39, "refresh": "10s", "timezone": "",
            "time": {"from": time_from, "to": "now"}, "panels": panels, "links": [],
            "templating": {"list": list(templating)}}


def across_calls(field):
    """p50 and p95 over the calls of each interval, each call by its worst peer (as the fleet view)."""
    per_peer = (f'SELECT mean("{field}") AS "v" FROM {STATS} WHERE $timeFilter '
                f'GROUP BY time($__interval), "call", "peer"')
    per_call = f'SELECT max("v") AS "v" FROM ({per_peer}) WHERE $timeFilter GROUP BY time($__interval), "call"'
    return (f'SELECT percentile("v", 50) AS "p50", percentile("v", 95) AS "p95" FROM ({per_call}) '
            f'WHERE $timeFilter GROUP BY time($__interval) fill(none)')


def dimension_variable():
    """The breakdown's dimension: every name a server with the default --peer-tags knows."""
    names = known_dimensions(DEFAULT_PEER_TAGS)
    return {"name": "dimension", "label": "breakdown by", "type": "custom", "query": ",".join(names),
            "options": [{"text": name, "value": name, "selected": name == names[0]} for name in names],
            "current": {"text": names[0], "value": names[0], "selected": True}, "multi": False, "includeAll": False,
            "description": "A tag of rtc_peer_summaries: a dimension of the peers (docs/diagnosis.md)."}


def breakdown(y):
    """Ended peers per value of the chosen dimension (rtc_peer_summaries, one point per ended peer, its
    dimensions as tags), as the server's GET /v1/fleet/breakdown/?state=ended counts them."""
    by_value = f'FROM {PEER_SUMMARIES} WHERE $timeFilter GROUP BY'
    return [
        panel("Ended peers by $dimension", "table", [target(
            f'SELECT count("poor") AS "ended peers", sum("poor") AS "poor peers", mean("poor") AS "poor share", '
            f'percentile("mos_mean", 50) AS "median MOS" {by_value} "$dimension"', table=True)], 0, y, h=10,
            description="Peers that ended in the range, per value of the chosen dimension, most poor peers first "
                        "((none): the peers without it); a peer is poor when its mean MOS over its call is.",
            defaults={"mappings": [{"type": "special", "options": {"match": "empty", "result": {"text": "(none)"}}}]},
            options={"sortBy": [{"displayName": "poor peers", "desc": True}], "showHeader": True},
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
            overrides=[override("poor share", unit="percentunit", min=0, max=1,
                                **{"custom.cellOptions": {"type": "gauge", "mode": "basic"}}),
                       override("median MOS", unit="none", decimals=2)]),
        panel("Poor share of ended peers by $dimension", "timeseries", [target(
            f'SELECT mean("poor") AS "poor share" {by_value} time($__interval), "$dimension" fill(none)',
            alias="$tag_${dimension}")], 12, y, h=10, unit="percentunit", interval="5m",
            description="Of the peers that ended in each interval, the share whose verdict was poor, a line per value.",
            defaults={"min": 0, "max": 1}),
    ]


def fleet():
    per_hour = "WHERE $timeFilter GROUP BY time(1h) fill(none)"
    rates = ", ".join(f'non_negative_derivative(last("{field}"), 1s) AS "{name}"'
                      for name, field in (("lost", "packetsLost"), ("received", "packetsReceived"),
                                          ("sent", "packetsSent")))
    packet_rates = f'SELECT {rates} FROM {STATS} WHERE $timeFilter GROUP BY time($__interval), "call", "peer", "kind"'
    call_link = {"title": "the call", "url": "/d/rtcscope-call/rtcscope-call?var-call=${__value.raw}&${__url_time_range}"}
    panels = [
        panel("Live calls", "stat", [target(
            f'SELECT count("recv") FROM (SELECT last("recv") AS "recv" FROM {PRESENCE} WHERE {LIVE} GROUP BY "call")')],
            0, 0, w=6, h=4, description="Calls that sent stats in the last 15 s (ended calls count until then)."),
        panel("Live peers", "stat", [target(
            f'SELECT count("recv") FROM (SELECT last("recv") AS "recv" FROM {PRESENCE} WHERE {LIVE} '
            f'GROUP BY "call", "peer")')], 6, 0, w=6, h=4),
        panel("Calls sending stats", "timeseries", [target(
            f'SELECT count("recv") AS "calls" FROM (SELECT last("recv") AS "recv" FROM {PRESENCE} WHERE $timeFilter '
            f'GROUP BY time($__interval), "call") WHERE $timeFilter GROUP BY time($__interval) fill(0)')],
            12, 0, w=12, h=4),
        panel("Round-trip time across calls", "timeseries", [target(across_calls("rtt"), alias="$col")], 0, 4,
              unit="ms", interval="10s", description="Median and 95th percentile over calls, each by its worst peer."),
        panel("Jitter across calls", "timeseries", [target(across_calls("jitter"), alias="$col")], 12, 4,
              unit="ms", interval="10s", description="Median and 95th percentile over calls, each by its worst peer."),
        panel("Loss across calls", "timeseries", [
            target(across_calls("fractionLost"), alias="$col"),
            target(f'SELECT sum("lost") / (sum("lost") + sum("received") + sum("sent")) AS "all packets" '
                   f'FROM ({packet_rates}) WHERE $timeFilter GROUP BY time($__interval) fill(none)', ref="B",
                   alias="$col")],
            0, 12, unit="percentunit", interval="10s",
            description="p50/p95 over calls of fractionLost (RTCP), each by its worst peer; and packets lost over "
                        "packets carried by every call together."),
        panel("Worst ended calls", "table", [target(
            f'SELECT bottom("mos_mean", "call", 20) AS "mos_mean", "mos_min", "problems", "peers", "duration_s" '
            f'FROM {SUMMARIES} WHERE $timeFilter', table=True)], 12, 12,
            description="The 20 ended calls with the lowest mean MOS in the range.",
            overrides=[{"matcher": {"id": "byName", "options": "call"},
                        "properties": [{"id": "links", "value": [call_link]}]}]),
        panel("Calls ended per hour", "timeseries", [target(
            f'SELECT count("duration_s") AS "calls", sum("duration_s") / 60 AS "minutes" FROM {SUMMARIES} {per_hour}',
            alias="$col")], 0, 20, w=8, timeFrom="24h"),
        panel("Poor calls per hour", "timeseries", [target(
            f'SELECT mean("poor") AS "poor share" FROM {SUMMARIES} {per_hour}', alias="$col")], 8, 20, w=8,
            unit="percentunit", timeFrom="24h", description="Share of the calls ended in the hour whose verdict was poor."),
        panel("Median MOS per hour", "timeseries", [target(
            f'SELECT percentile("mos_mean", 50) AS "median MOS" FROM {SUMMARIES} {per_hour}', alias="$col")],
            16, 20, w=8, unit="none", timeFrom="24h", description="Of the calls ended in the hour (their mean MOS)."),
        *breakdown(28),
    ]
    return dashboard("rtcscope-fleet", "rtcscope — fleet",
                     "Every call together: live calls, quality percentiles across calls, the history of ended calls "
                     "and their peers by dimension.", panels, templating=[dimension_variable()])


def metric_query(metric):
    """A metric of the chosen call by peer: gauges averaged, counters as per-second rates (kinds summed)."""
    scale = "" if metric.scale == 1 else f" * {metric.scale:g}"
    if metric.type == COUNTER:
        per_series = (f'SELECT non_negative_derivative(last("{metric.source_field}"), 1s) AS "rate" FROM {STATS} '
                      f'WHERE {THIS_CALL} GROUP BY time($__interval), "peer", "kind"')
        return (f'SELECT sum("rate"){scale} AS "{metric.name}" FROM ({per_series}) WHERE $timeFilter '
                f'GROUP BY time($__interval), "peer" fill(none)')
    return (f'SELECT mean("{metric.source_field}"){scale} AS "{metric.name}" FROM {STATS} WHERE {THIS_CALL} '
            f'GROUP BY time($__interval), "peer" fill(none)')


def call():
    variable = {"name": "call", "label": "call", "type": "query", "datasource": DATASOURCE,
                "query": f'SHOW TAG VALUES FROM {PRESENCE} WITH KEY = "call" WHERE $timeFilter',
                "refresh": 2, "sort": 1, "multi": False, "includeAll": False, "current": {}}
    variable["definition"] = variable["query"]
    panels = [
        panel("Peers", "table", [target(
            f'SELECT min("first") AS "first sample", max("last") AS "last sample", count("recv") AS "requests" '
            f'FROM {PRESENCE} WHERE {THIS_CALL} GROUP BY "peer"', table=True)], 0, 0, h=6,
            unit="dateTimeAsIso", description="First and last sample times each peer sent, and how many requests.",
            overrides=[{"matcher": {"id": "byName", "options": "requests"}, "properties": [{"id": "unit", "value": "short"}]}]),
        panel("Summary (once the call has ended)", "table", [target(
            f'SELECT "duration_s", "peers", "mos_mean", "mos_min", "problems", "poor" FROM {SUMMARIES} '
            f'WHERE {THIS_CALL}', table=True)], 12, 0, h=6),
    ]
    for index, metric in enumerate(all_metrics()):
        rate = " (per second)" if metric.type == COUNTER else ""
        panels.append(panel(f"{metric.name}{rate}", "timeseries", [target(metric_query(metric), alias="$tag_peer")],
                            12 * (index % 2), 6 + 8 * (index // 2), unit=grafana_unit(metric.display_unit),
                            description=metric.description))
    return dashboard("rtcscope-call", "rtcscope — call", "One call: every registry metric, a line per peer.", panels,
                     templating=[variable], time_from="now-3h")


def write(name, document):
    with open(os.path.join(OUT, name), "w") as out:
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")


def build():
    """{file name: dashboard} as committed."""
    return {"rtcscope-fleet.json": fleet(), "rtcscope-call.json": call()}


if __name__ == "__main__":
    for name, document in build().items():
        write(name, document)
