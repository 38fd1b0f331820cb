"""Real Chromium getStats() reports (tests/data/README.md): as the browser gave them,
as rtcscope.js sends them (full and as deltas), and the points they are stored as."""
import json
import pathlib

from rtcscope.registry import extract

CHROMIUM_FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "data" / "chromium-loopback-audio-video.json"
# What rtcscope.js takes out of every report before it leaves the page.
PRIVATE_FIELDS = {"address", "ip", "port", "relatedAddress", "relatedPort", "url", "usernameFragment"}


def chromium_reports():
    """The capture's polls, one a second: [{"caller": report, "callee": report}, ...]."""
    return json.loads(CHROMIUM_FIXTURE.read_text())["reports"]


REPORTS = [poll["caller"] for poll in chromium_reports()]  # the caller's reports, whole


def clean_reports():
    """{role: [report, ...]} as rtcscope.js sends them (no certificates, no addresses)."""
    return {role: [[{k: v for k, v in stat.items() if k not in PRIVATE_FIELDS}
                    for stat in poll[role] if stat.get("type") != "certificate"] for poll in chromium_reports()]
            for role in ("caller", "callee")}


def report_delta(previous, report):
    """rtcscope.js's delta message of `report` after `previous` (getStats() arrays), without its ts."""
    before = {stat["id"]: stat for stat in previous}
    after = {stat["id"]: stat for stat in report}
    changed = {}
    for stat_id, stat in after.items():
        old = before.get(stat_id)
        if old is None:
            changed[stat_id] = stat
            continue
        fields = {name: value for name, value in stat.items() if old.get(name) != value}
        fields.update({name: None for name in old if name not in stat})
        if fields:
            changed[stat_id] = fields
    return {"delta": changed, "removed": [stat_id for stat_id in before if stat_id not in after]}


def stored(influxd, database, call):
    """{(time ms, kind): fields} of a call's rtc_stats points."""
    rows = influxd.rows(f"SELECT * FROM rtc_stats WHERE call = '{call}'", database)
    return {(round(row.pop("time")), row.pop("kind")): {k: v for k, v in row.items()
                                                        if v is not None and k not in ("call", "peer")}
            for row in rows}


def expected(samples):
    """{(time ms, kind): fields} the registry extracts from (time ms, report) pairs: what `stored` should find."""
    return {(ts, kind): fields for ts, report in samples for kind, fields in extract(report).items()}
