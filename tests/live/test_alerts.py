"""Alert rules and their evaluation tick by tick (pure: no InfluxDB needed)."""
import json
import pathlib

import pytest

from rtcscope.alerts.rules import BUILTIN_RULES, Rule, RulesError, load_rules
from rtcscope.alerts.state import AlertEngine, alert_id

TICK = 1000
BAD_RTT = {"rtt": 600.0, "mos": 3.9, "loss": 0.0, "freezes": 0.0}
GOOD = {"rtt": 40.0, "mos": 4.3, "loss": 0.0, "freezes": 0.0, "jitter": 2.0}


def rtt_rule(for_ms=10_000):
    return Rule("high_rtt", "rtt", ">", 400.0, for_ms, "warning")


def run(engine, start, ticks, window, key=("c-1", "alice"), **kwargs):
    """Evaluate `ticks` ticks of the same window; [(tick time, event)]."""
    out = []
    for index in range(ticks):
        now = start + index * TICK
        out += [(now, event) for event in engine.evaluate(now, {key: window}, **kwargs)]
    return out


def test_builtin_rules_are_the_contracts():
    assert [(r.name, r.metric, r.op, r.threshold, r.for_ms) for r in BUILTIN_RULES] == [
        ("poor_mos", "mos", "<", 3.1, 10_000), ("high_loss", "loss", ">", 0.05, 10_000),
        ("high_rtt", "rtt", ">", 400.0, 10_000), ("freezes", "freezes", ">", 0.0, 0)]
    assert load_rules("") == list(BUILTIN_RULES)


def test_the_example_rules_file_loads_and_starts_with_the_builtins():
    example = pathlib.Path(__file__).resolve().parents[2] / "conf" / "alert-rules.example.toml"
    rules = load_rules(str(example))
    assert rules[:4] == list(BUILTIN_RULES)
    assert [rule.metric for rule in rules[4:]] == ["framesPerSecond", "qualityLimitationReason", "poor_share"]
    assert (rules[6].by, rules[6].min_peers, rules[6].for_ms) == ("turn_server", 10, 60_000)


def test_fires_once_after_for_of_ticks():
    engine = AlertEngine([rtt_rule()])
    events = run(engine, 100_000, 30, BAD_RTT)
    assert len(events) == 1
    at, event = events[0]
    assert at == 110_000  # held from the first tick for 10 s
    assert (event.state, event.rule, event.call, event.peer, event.value, event.threshold, event.since, event.at) == (
        "firing", "high_rtt", "c-1", "alice", 600.0, 400.0, 100_000, 110_000)
    assert event.id == alert_id("high_rtt", "c-1", "alice", 100_000)
    assert len(event.id) == 20 and int(event.id, 16) >= 0


def test_a_stretch_shorter_than_for_never_fires():
    engine = AlertEngine([rtt_rule()])
    assert run(engine, 0, 9, BAD_RTT) == []  # 0..8 s
    assert run(engine, 9000, 1, GOOD) == []
    assert run(engine, 10_000, 9, BAD_RTT) == []  # starts again from 10 s
    assert engine.firing == []


def test_a_good_call_never_fires_any_builtin():
    engine = AlertEngine(list(BUILTIN_RULES))
    assert run(engine, 0, 120, GOOD) == []
    assert engine.tracks == {}  # nothing kept for quiet keys


def test_hysteresis_short_dips_do_not_resolve_and_resolution_comes_once():
    engine = AlertEngine([rtt_rule()])
    fired = run(engine, 0, 11, BAD_RTT)
    assert [e.state for _, e in fired] == ["firing"]
    alert = fired[0][1]
    # Flapping around the threshold: good for 5 s, bad for 1 s, repeatedly: still one alert.
    now = 11_000
    for _ in range(5):
        assert run(engine, now, 5, GOOD) == []
        assert run(engine, now + 5000, 1, BAD_RTT) == []
        now += 6000
    assert [e.id for e in engine.firing] == [alert.id]
    recovered = run(engine, now, 15, dict(GOOD, rtt=120.0))
    assert len(recovered) == 1
    at, resolved = recovered[0]
    assert at == now + 10_000
    assert (resolved.state, resolved.id, resolved.since, resolved.at, resolved.value) == (
        "resolved", alert.id, alert.since, now + 10_000, 120.0)
    assert engine.firing == [] and engine.tracks == {}


def test_a_new_bad_stretch_is_a_new_alert_with_a_new_id():
    engine = AlertEngine([rtt_rule(for_ms=2000)])
    first = run(engine, 0, 3, BAD_RTT)
    run(engine, 3000, 3, GOOD)
    second = run(engine, 6000, 3, BAD_RTT)
    assert [e.state for _, e in first] == ["firing"] and [e.state for _, e in second] == ["firing"]
    assert first[0][1].id != second[0][1].id
    assert second[0][1].since == 6000


def test_freezes_fire_on_the_first_tick_and_resolve_when_the_window_has_none():
    engine = AlertEngine(list(BUILTIN_RULES))
    assert run(engine, 0, 3, GOOD) == []
    fired = run(engine, 3000, 4, dict(GOOD, freezes=1.0))
    assert [(at, e.rule, e.state, e.value, e.since) for at, e in fired] == [(3000, "freezes", "firing", 1.0, 3000)]
    resolved = run(engine, 7000, 3, GOOD)
    assert [(at, e.rule, e.state, e.value) for at, e in resolved] == [(7000, "freezes", "resolved", 0.0)]


def test_ending_a_peer_resolves_its_alerts_at_its_end_and_keeps_the_others():
    engine = AlertEngine([rtt_rule(for_ms=0)])
    windows = {("c-1", "alice"): BAD_RTT, ("c-1", "bob"): BAD_RTT}
    assert len(engine.evaluate(1000, windows)) == 2
    events = engine.evaluate(2000, windows, ended=[("c-1", "alice", 1500, "explicit")])
    assert [(e.peer, e.state, e.at, e.value) for e in events] == [("alice", "resolved", 1500, 600.0)]
    assert [e.peer for e in engine.firing] == ["bob"]
    events = engine.evaluate(3000, {}, ended=[("c-1", None, 2800, "timeout")])
    assert [(e.peer, e.state, e.at) for e in events] == [("bob", "resolved", 2800)]
    assert engine.tracks == {}


def test_a_call_that_is_no_longer_live_resolves_now():
    engine = AlertEngine([rtt_rule(for_ms=0)])
    engine.evaluate(1000, {("c-1", "alice"): BAD_RTT}, live_calls={"c-1"})
    events = engine.evaluate(2000, {}, live_calls=set())
    assert [(e.state, e.at) for e in events] == [("resolved", 2000)]


def test_a_live_peer_without_samples_counts_as_not_holding():
    engine = AlertEngine([rtt_rule(for_ms=2000)])
    run(engine, 0, 3, BAD_RTT)
    assert len(engine.firing) == 1
    quiet = [event for now in (3000, 4000, 5000) for event in engine.evaluate(now, {}, live_calls={"c-1"})]
    assert [(e.state, e.at, e.value) for e in quiet] == [("resolved", 5000, 600.0)]


def test_adopt_takes_stored_ids_and_keeps_countdowns():
    rule = rtt_rule(for_ms=3000)
    old = AlertEngine([rule])
    stored = [e for _, e in run(old, 0, 4, BAD_RTT)]
    assert [e.since for e in stored] == [0]
    # Another process started ticking later: its own countdown began at 1500.
    other = AlertEngine([rule])
    own = [e for now in (1500, 2500, 3500, 4500) for e in other.evaluate(now, {("c-1", "alice"): BAD_RTT})]
    assert [e.since for e in own] == [1500]
    other.adopt(stored)
    assert [(e.id, e.since) for e in other.firing] == [(stored[0].id, 0)]
    resolved = [e for now in range(5500, 9500, 1000) for e in other.evaluate(now, {("c-1", "alice"): GOOD})]
    assert [(e.id, e.state) for e in resolved] == [(stored[0].id, "resolved")]
    # What it fired on its own but InfluxDB does not hold is dropped; a pending countdown is kept.
    third = AlertEngine([rule])
    run(third, 0, 5, BAD_RTT)
    third.adopt([])
    assert third.firing == []
    assert [e.since for _, e in run(third, 5000, 1, BAD_RTT)] == [0]


def write(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return str(path)


def test_rules_file(tmp_path):
    rules = load_rules(write(tmp_path, """
[[rule]]
name = "slow"
metric = "roundTripTime"   # an alias of rtt
op = ">"
threshold = 250
for = "5s"
severity = "critical"

[[rule]]
name = "any_freeze"
metric = "freezeCount"
op = ">"
threshold = 0
"""))
    assert rules == [Rule("slow", "rtt", ">", 250.0, 5000, "critical"), Rule("any_freeze", "freezes", ">", 0.0, 0, "warning")]


@pytest.mark.parametrize("text, message", [
    ("[[rule]\nname=1", "not valid TOML"),
    ("", "no [[rule]] tables"),
    ("rules = 1", "unknown top-level key 'rules'"),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">"', "rule 1: missing threshold"),
    ('[[rule]]\nname = "a"\nmetric = "nope"\nop = ">"\nthreshold = 1', "unknown metric 'nope'"),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">="\nthreshold = 1', "op must be '<' or '>'"),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">"\nthreshold = "1"', "threshold must be a finite number"),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">"\nthreshold = 1\nfor = "10 s"', "for must be a duration"),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">"\nthreshold = 1\nfor = 10', "for must be a duration"),
    ('[[rule]]\nname = "A b"\nmetric = "rtt"\nop = ">"\nthreshold = 1', "name must match"),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">"\nthreshold = 1\nlevel = "x"', "unknown key 'level'"),
    ('[[rule]]\nname = "a"\nmetric = "rtt"\nop = ">"\nthreshold = 1\n'
     '[[rule]]\nname = "a"\nmetric = "mos"\nop = "<"\nthreshold = 3', "rule 2: name 'a' is used twice"),
])
def test_bad_rules_files_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(RulesError) as error:
        load_rules(write(tmp_path, text))
    assert message in str(error.value)
    assert "rules.toml" in str(error.value)


def test_a_missing_rules_file_is_an_error(tmp_path):
    with pytest.raises(RulesError, match="cannot read it"):
        load_rules(str(tmp_path / "absent.toml"))


def test_slack_receivers_get_a_text_and_keys_differ_per_url():
    from rtcscope.alerts.delivery import Receiver, WebhookError

    alert = {"id": "a1", "rule": "high_rtt", "severity": "warning", "state": "firing", "call": "c-1", "peer": "bob",
             "value": 612.5, "threshold": 400.0, "since": 1, "at": 2, "url": "https://rtc.example/calls/c-1/"}
    plain, slack = Receiver("https://hooks.example/a"), Receiver("slack+https://hooks.slack.com/services/T/B/X")
    assert json.loads(plain.body(alert)) == alert
    assert slack.url == "https://hooks.slack.com/services/T/B/X" and slack.slack
    text = json.loads(slack.body(alert))["text"]
    assert "high_rtt firing on c-1 / bob: 612.5 (threshold 400)" in text and "https://rtc.example/calls/c-1/" in text
    assert "resolved" in json.loads(slack.body(dict(alert, state="resolved")))["text"]
    assert plain.key != slack.key and plain.key.startswith("r_") and plain.key == Receiver("https://hooks.example/a").key
    with pytest.raises(WebhookError, match="not an http"):
        Receiver("hooks.example/a")


def test_an_event_survives_its_line_protocol_round_trip():
    from rtcscope.storage.alerts import encode_event, row_alert

    alert = {"id": "a1", "rule": "r", "severity": "warning", "state": "resolved", "scope": "peer",
             "call": "room:1@x{y}", "peer": None,
             "value": None, "threshold": 0.05, "since": 1795536120000, "at": 1795536130000,
             "url": 'https://rtc.example/calls/room%3A1%40x%7By%7D/?a="b"\\'}
    line = encode_event(alert, "n1", alert["at"] * 1_000_000 + 7).decode()
    assert line.startswith("rtc_alerts,node=n1 ") and line.endswith(" 1795536130000000007")
    assert ",seq=7.0" in line and "peer=" not in line and "value=" not in line
    assert 'url="https://rtc.example/calls/room%3A1%40x%7By%7D/?a=\\"b\\"\\\\"' in line
    # What a query gives back (strings unescaped, numbers as floats) is the same object.
    row = dict(alert, threshold=0.05, since=float(alert["since"]), at=float(alert["at"]))
    assert row_alert(row) == alert
    assert row_alert(dict(row, id=None)) is None  # a point not whole yet
    del row["scope"]
    assert row_alert(row) == alert  # stored before alerts had a scope


@pytest.mark.parametrize("follows", [True, False])
def test_the_service_registers_its_own_metrics(follows):
    from prometheus_client.parser import text_string_to_metric_families

    from rtcscope.alerts.service import AlertService
    from rtcscope.telemetry import Telemetry

    telemetry = Telemetry()
    alerts = AlertService(None, None, BUILTIN_RULES, tick_ms=1000, public_url="http://rtc.example")
    alerts.register_metrics(telemetry, follows=follows)
    alerts.known["a1"] = {"id": "a1", "state": "firing"}
    alerts.on_delivery("delivered")
    alerts.on_delivery("failed")
    alerts.on_delivery("failed")
    families = {family.name: family for family in text_string_to_metric_families(telemetry.render().decode())}
    expected = {"rtcscope_alerts_sender", "rtcscope_webhook_deliveries"} | ({"rtcscope_alerts_firing"} if follows else set())
    assert set(families) == expected
    assert families["rtcscope_alerts_sender"].type == "gauge" and families["rtcscope_alerts_sender"].samples[0].value == 0
    deliveries = {sample.labels["result"]: sample.value for sample in families["rtcscope_webhook_deliveries"].samples
                  if sample.name == "rtcscope_webhook_deliveries_total"}
    assert deliveries == {"delivered": 1.0, "failed": 2.0}
    assert families["rtcscope_webhook_deliveries"].documentation.startswith("webhook deliveries by result: delivered, ")
    if follows:
        assert families["rtcscope_alerts_firing"].samples[0].value == 1
        assert families["rtcscope_alerts_firing"].documentation == "alerts firing now (as InfluxDB's rtc_alerts holds them)"
