"""Cohort alerts: rules by a dimension, evaluated per value over the live peers tick by
tick, stored, listed and delivered like per-peer alerts (pure: no InfluxDB needed)."""
import json

import pytest

from rtcscope.alerts.alertmanager import postable
from rtcscope.alerts.delivery import Receiver
from rtcscope.alerts.rules import BUILTIN_RULES, Rule, RulesError, load_rules
from rtcscope.alerts.service import AlertService
from rtcscope.alerts.state import AlertEngine, CohortEvent, alert_id, cohort_alert_id, event_of
from rtcscope.diagnosis.breakdown import value_counts
from rtcscope.dimensions import BUILTIN_DIMENSIONS
from rtcscope.storage.alerts import encode_event, row_alert

TICK = 1000
TURN_2 = "turn-2.example.com:443"
RULE = Rule("turn_poor", "poor_share", ">", 0.5, 5000, "critical", by="turn_server", min_peers=10)


def peers(turn_2=(24, 18), turn_1=(40, 2), direct=(100, 3)):
    """Live peers: (peers, poor) through turn-2, through turn-1, and direct (no turn_server)."""
    out = []
    for turn, (count, poor) in ((TURN_2, turn_2), ("turn-1.example.com:3478", turn_1), (None, direct)):
        for index in range(count):
            values = {"browser": "Chrome"} if turn is None else {"browser": "Chrome", "turn_server": turn}
            out.append((f"c-{turn}-{index}", "alice", values, "poor" if index < poor else "good", 2.0))
    return out


def tick(engine, now, live):
    return engine.evaluate_cohorts(now, value_counts(live, engine.cohort_dimensions))


def run(engine, start, ticks, live):
    return [(start + i * TICK, event) for i in range(ticks) for event in tick(engine, start + i * TICK, live)]


def test_a_bad_cohort_fires_once_after_for_and_resolves_once_after_for():
    engine = AlertEngine([*BUILTIN_RULES, RULE])
    fired = run(engine, 100_000, 20, peers())
    assert len(fired) == 1
    at, event = fired[0]
    assert at == 105_000
    assert event.as_json("u") == {
        "id": cohort_alert_id("turn_poor", "turn_server", TURN_2, 100_000), "rule": "turn_poor",
        "severity": "critical", "state": "firing", "scope": "cohort", "dimension": "turn_server", "value": TURN_2,
        "peers": 24, "poor": 18, "threshold": 0.5, "since": 100_000, "at": 105_000, "url": "u"}
    # Recovering: still over for 4 s (one bad tick restarts the count), then good.
    assert run(engine, 120_000, 4, peers(turn_2=(24, 2))) == []
    assert run(engine, 124_000, 1, peers()) == []
    resolved = run(engine, 125_000, 20, peers(turn_2=(30, 3)))
    assert [(at, e.state, e.id, e.since, e.peers, e.poor) for at, e in resolved] == [
        (130_000, "resolved", event.id, 100_000, 30, 3)]
    assert engine.firing == [] and engine.cohorts == {}


def test_the_id_is_stable_from_rule_dimension_value_and_since_and_never_a_peer_alerts():
    first = run(AlertEngine([RULE]), 0, 6, peers())[0][1]
    again = run(AlertEngine([RULE]), 0, 6, peers())[0][1]
    later = run(AlertEngine([RULE]), 1000, 6, peers())[0][1]
    assert first.id == again.id != later.id
    assert len(first.id) == 20 and first.id != alert_id("turn_poor", "turn_server", TURN_2, 0)


def test_a_value_with_fewer_live_peers_than_min_peers_never_fires():
    engine = AlertEngine([RULE])
    assert run(engine, 0, 20, peers(turn_2=(9, 9))) == []
    assert engine.cohorts == {}
    assert len(run(engine, 20_000, 6, peers(turn_2=(10, 9)))) == 1


def test_each_value_is_its_own_alert_and_peers_without_the_dimension_are_no_cohort():
    engine = AlertEngine([RULE])
    events = run(engine, 0, 6, peers(turn_2=(20, 15), turn_1=(30, 20), direct=(100, 100)))
    assert sorted(e.value for _, e in events) == ["turn-1.example.com:3478", TURN_2]


def test_a_cohort_whose_peers_left_resolves_after_for_with_none_left():
    engine = AlertEngine([RULE])
    (fired,) = [e for _, e in run(engine, 0, 6, peers())]
    resolved = run(engine, 6000, 10, peers(turn_2=(0, 0)))
    assert [(at, e.state, e.id, e.peers, e.poor) for at, e in resolved] == [(11_000, "resolved", fired.id, 0, 0)]


def test_the_threshold_op_and_a_rule_no_longer_configured():
    below = Rule("turn_fine", "poor_share", "<", 0.1, 0, "info", by="turn_server", min_peers=10)
    engine = AlertEngine([below])
    assert [e.value for e in tick(engine, 0, peers())] == ["turn-1.example.com:3478"]  # 2/40 < 0.1
    # Adopted from a process with another rules file: not this engine's to evaluate.
    engine.adopt([e for _, e in run(AlertEngine([RULE]), 0, 6, peers())])
    assert ("turn_poor", "turn_server", TURN_2) in engine.cohorts
    tick(engine, 1000, peers())
    assert list(engine.cohorts) == [("turn_fine", "turn_server", "turn-1.example.com:3478")]


def test_cohort_and_peer_rules_share_one_engine_and_adopt_what_influxdb_holds():
    engine = AlertEngine([*BUILTIN_RULES, RULE])
    assert engine.peer_rules == list(BUILTIN_RULES) and engine.cohort_rules == [RULE]
    assert engine.cohort_dimensions == ("turn_server",)
    assert engine.evaluate(0, {("c-1", "alice"): {"rtt": 40.0, "mos": 4.3}}) == []
    stored = [e for _, e in run(AlertEngine([RULE]), 0, 6, peers())]
    other = AlertEngine([RULE])
    run(other, 2000, 3, peers())  # its own countdown, not yet fired
    other.adopt([event_of(json.loads(json.dumps(e.as_json("u")))) for e in stored])
    assert [(e.id, e.since) for e in other.firing] == [(stored[0].id, 0)]
    assert isinstance(other.firing[0], CohortEvent)
    resolved = run(other, 10_000, 6, peers(turn_2=(24, 0)))
    assert [(e.id, e.state) for _, e in resolved] == [(stored[0].id, "resolved")]
    third = AlertEngine([RULE])
    run(third, 0, 6, peers())
    third.adopt([])  # fired on its own, but InfluxDB does not hold it: dropped, its countdown kept
    assert third.firing == [] and third.cohorts[("turn_poor", "turn_server", TURN_2)].holding_since == 0


def test_the_service_points_a_cohort_alert_at_the_filtered_dashboard_and_reads_no_window_for_it():
    service = AlertService(None, None, [RULE], tick_ms=1000, public_url="https://rtc.example/")
    assert service.extra == {}  # poor_share is no registry metric to query
    (event,) = [e for _, e in run(service.engine, 0, 6, peers())]
    assert service.url_of(event) == "https://rtc.example/dashboard?turn_server=turn-2.example.com%3A443"


def write(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return str(path)


COHORT_RULE = '[[rule]]\nname = "turn_poor"\nmetric = "poor_share"\nop = ">"\nthreshold = 0.3\nfor = "30s"\n'


def test_cohort_rules_file(tmp_path):
    rules = load_rules(write(tmp_path, COHORT_RULE + 'by = "turn_server"\nseverity = "critical"\n'
                                       + COHORT_RULE.replace("turn_poor", "region_poor")
                                       + 'by = "region"\nmin_peers = 25\n'),
                       dimensions=BUILTIN_DIMENSIONS + ("region",))
    assert rules == [Rule("turn_poor", "poor_share", ">", 0.3, 30_000, "critical", by="turn_server", min_peers=10),
                     Rule("region_poor", "poor_share", ">", 0.3, 30_000, "warning", by="region", min_peers=25)]


@pytest.mark.parametrize("text, message", [
    (COHORT_RULE + 'by = "region"', "by must be a dimension (browser, browser_version, os"),
    (COHORT_RULE + 'by = "turn_server"\nmin_peers = 0', "min_peers must be a whole number of at least 1"),
    (COHORT_RULE + 'by = "turn_server"\nmin_peers = 2.5', "min_peers must be a whole number"),
    (COHORT_RULE.replace("0.3", "30") + 'by = "turn_server"', "poor_share is a share from 0 to 1"),
    (COHORT_RULE.replace('"poor_share"', '"mos"') + 'by = "turn_server"', 'has metric = "poor_share"'),
    (COHORT_RULE, 'poor_share is a cohort\'s: give by = "<dimension>"'),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">"\nthreshold = 1\nmin_peers = 5', "min_peers goes with by"),
])
def test_bad_cohort_rules_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(RulesError) as error:
        load_rules(write(tmp_path, text))
    assert message in str(error.value) and "rule 1 (" in str(error.value)


def cohort_alert(state="firing"):
    (event,) = [e for _, e in run(AlertEngine([RULE]), 0, 6, peers())]
    alert = event.as_json("https://rtc.example/dashboard?turn_server=turn-2.example.com%3A443")
    return dict(alert, state=state)


def test_a_cohort_event_survives_its_line_protocol_round_trip():
    alert = cohort_alert()
    line = encode_event(alert, "n1", alert["at"] * 1_000_000 + 3).decode()
    assert f'cohort_value="{TURN_2}"' in line and "call=" not in line and ",value=" not in line
    assert 'scope="cohort"' in line and "peers=24.0" in line and "poor=18.0" in line
    row = {"id": alert["id"], "rule": "turn_poor", "severity": "critical", "state": "firing", "scope": "cohort",
           "dimension": "turn_server", "cohort_value": TURN_2, "peers": 24.0, "poor": 18.0, "threshold": 0.5,
           "since": float(alert["since"]), "at": float(alert["at"]), "url": alert["url"], "seq": 3.0}
    assert row_alert(row) == alert
    assert row_alert(dict(row, peers=None)) is None  # a point not whole yet


def test_a_cohort_alert_in_a_webhook_in_slack_and_in_alertmanager():
    alert = cohort_alert()
    assert json.loads(Receiver("https://hooks.example/a").body(alert)) == alert
    slack = Receiver("slack+https://hooks.slack.com/services/T/B/X")
    text = json.loads(slack.body(alert))["text"]
    assert f"turn_poor firing on turn_server={TURN_2}: 18 of 24 peers poor (threshold 0.5)" in text
    assert f"<{alert['url']}|live calls>" in text
    resolved = json.loads(slack.body(dict(alert, state="resolved")))["text"]
    assert f"turn_poor resolved on turn_server={TURN_2}" in resolved
    body = postable(alert, alert["at"], 60_000, "https://rtc.example")
    assert body["labels"] == {"alertname": "turn_poor", "severity": "critical", "scope": "cohort",
                              "dimension": "turn_server", "value": TURN_2}
    assert body["generatorURL"] == alert["url"]
    assert body["annotations"]["summary"] == (f"turn_poor on peers with turn_server={TURN_2}: "
                                              "18 of 24 live peers are poor (threshold 0.5).")
