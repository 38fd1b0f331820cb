"""Alerts across real server processes on one InfluxDB: a restart keeps what is owed
to a receiver that is down, two processes deliver each event once, and a hand-over
carries an alert on. The receiver is a real local HTTP server."""
import functools
import os
import subprocess
import sys
import time

import pytest

from tests.support.alerts import ProcessFeeder, cohort_events, cohort_rules, hand_over, high_rtt_rules
from tests.support.influxd import free_port
from tests.support.metrics import metric
from tests.support.processes import ROOT
from tests.support.waits import wait

pytestmark = pytest.mark.slow

RULES = high_rtt_rules("1s")


@pytest.fixture
def alerting(servers, receiver, tmp_path):
    """`alerting(name, **options)`: a server process that sends its alerts to `receiver`, on the test's database."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return functools.partial(servers, tick="0.2s", flush_interval="0.1s", call_timeout="3s", quality_window="3s",
                             alert_rules=str(rules), alert_webhooks=receiver.url, alert_retry="2m")


def test_a_restart_does_not_lose_a_delivery_owed_to_a_receiver_that_is_down(alerting, receiver):
    receiver.down()
    # A call timeout longer than the restart: the call stays live throughout.
    first = alerting("a", call_timeout="30s")
    wait(lambda: metric(first, "rtcscope_alerts_sender") == 1, timeout=30)
    with ProcessFeeder([first], {"bad": 800.0}):
        wait(lambda: metric(first, "rtcscope_alerts_firing") == 1, timeout=30)
        first.stop()
        assert first.process.returncode == 0
        assert receiver.received == []
        second = alerting("b", port=first.port, call_timeout="30s")
        wait(lambda: metric(second, "rtcscope_alerts_sender") == 1, timeout=30)
        receiver.up()
        wait(lambda: receiver.has("bad", "firing"), timeout=60)
        time.sleep(2)
    # The restarted server carried the stored alert on: it sent it, and fired no other.
    assert list(receiver.receipts().values()) == [1]
    assert [alert["state"] for alert in receiver.alerts()] == ["firing"]
    assert metric(second, "rtcscope_alerts_firing") == 1


def test_two_processes_deliver_each_event_once_and_a_hand_over_carries_the_alert_on(alerting, receiver):
    a = alerting("a")
    b = alerting("b")
    wait(lambda: metric(a, "rtcscope_alerts_sender") == 1 or metric(b, "rtcscope_alerts_sender") == 1, timeout=30)
    time.sleep(1)
    assert [metric(a, "rtcscope_alerts_sender"), metric(b, "rtcscope_alerts_sender")].count(1) == 1
    feeder = ProcessFeeder([a, b], {"bad": 800.0, "good": 30.0})
    with feeder:
        wait(lambda: receiver.has("bad", "firing"), timeout=30)
        other = hand_over(feeder, a, b)
        feeder.rtt["bad"] = 30.0
        wait(lambda: receiver.has("bad", "resolved"), timeout=30)
        time.sleep(2)
    receipts = receiver.receipts()
    assert sorted(state for _, state in receipts) == ["firing", "resolved"]
    assert len({alert_id for alert_id, _ in receipts}) == 1  # the one alert, carried on by the other process
    assert set(receipts.values()) == {1}
    assert not any(alert["call"] == "good" for alert in receiver.alerts())
    status, listed = other.get_json("/v1/alerts/?state=all")
    assert status == 200 and listed["count"] == 1 and listed["alerts"][0]["state"] == "resolved"


# Four calls in a region whose peers are poor (rtt 800 ms: MOS about 3), four in one whose peers are fine.
BAD_REGION = {f"bad-{i}": {"region": "eu-bad"} for i in range(4)}
GOOD_REGION = {f"good-{i}": {"region": "eu-good"} for i in range(4)}


def test_a_cohort_alert_fires_once_and_resolves_once_across_two_processes(servers, receiver, tmp_path):
    rules = tmp_path / "cohort.toml"
    rules.write_text(cohort_rules("region"))
    alerting = functools.partial(servers, tick="0.2s", flush_interval="0.1s", call_timeout="3s", quality_window="3s",
                                 alert_rules=str(rules), alert_webhooks=receiver.url, alert_retry="2m")
    a, b = alerting("a"), alerting("b")
    wait(lambda: 1 in (metric(a, "rtcscope_alerts_sender"), metric(b, "rtcscope_alerts_sender")), timeout=30)
    rtt = {**{call: 800.0 for call in BAD_REGION}, **{call: 30.0 for call in GOOD_REGION}}
    feeder = ProcessFeeder([a, b], rtt, tags={**BAD_REGION, **GOOD_REGION})
    with feeder:
        wait(lambda: cohort_events(receiver.alerts(), "eu-bad") == ["firing"], timeout=30)
        other = hand_over(feeder, a, b)
        for call in BAD_REGION:
            feeder.rtt[call] = 30.0
        wait(lambda: cohort_events(receiver.alerts(), "eu-bad") == ["firing", "resolved"], timeout=30)
        time.sleep(2)
    alerts = receiver.alerts()
    assert [(alert["state"], alert["value"]) for alert in alerts] == [("firing", "eu-bad"), ("resolved", "eu-bad")]
    firing, resolved = alerts
    assert len(receiver.receipts()) == 2 and set(receiver.receipts().values()) == {1}
    assert firing["id"] == resolved["id"] and firing["since"] == resolved["since"]
    assert {key: firing[key] for key in ("rule", "scope", "dimension", "peers", "poor", "threshold")} == {
        "rule": "region_poor", "scope": "cohort", "dimension": "region", "peers": 4, "poor": 4, "threshold": 0.5}
    assert "call" not in firing and firing["url"].endswith("/dashboard?region=eu-bad")
    assert resolved["poor"] <= 2 and resolved["at"] > firing["at"]
    status, listed = other.get_json("/v1/alerts/?state=all&scope=cohort&dimension=region")
    assert status == 200 and listed["count"] == 1 and listed["alerts"][0] == resolved
    assert other.get_json("/v1/alerts/?state=all&scope=peer")[1]["count"] == 0


def test_a_bad_rules_file_stops_the_start_with_the_reason(tmp_path, influxd):
    rules = tmp_path / "bad.toml"
    rules.write_text('[[rule]]\nname = "x"\nmetric = "rtt"\nop = ">="\nthreshold = 1\n')
    result = subprocess.run([sys.executable, os.path.join(ROOT, "server.py"), f"--influxdb-url={influxd.url}",
                             f"--port={free_port()}", f"--alert-rules={rules}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "bad.toml: rule 1 (x): op must be '<' or '>'" in result.stderr
    assert "Traceback" not in result.stderr
