"""Alerts into a real Prometheus Alertmanager (Debian's prometheus-alertmanager on a
free loopback port): the body rtcscope posts, an alert kept active by re-sends and
ended by its resolution, an Alertmanager that is down at first or restarts, and
two server processes on one InfluxDB giving one alert."""
import asyncio
import datetime
import functools
import json
import pathlib
import subprocess
import time

import pytest

from rtcscope.alerts.alertmanager import ENDS_AHEAD, AlertmanagerReceiver, make_receiver, postable
from rtcscope.alerts.delivery import Outgoing, Receiver, WebhookError, Webhooks
from tests.support.alertmanager import Alertmanager
from tests.support.alerts import Feeder, ProcessFeeder, cohort_rules, high_rtt_rules, sending
from tests.support.api import get
from tests.support.metrics import metric
from tests.support.waits import eventually, wait

TICK = 0.2
FOR_S = 1.0
RESEND_S = 1.0
PUBLIC = "https://rtc.example"
PEER_ALERT = {"id": "5ed4f88c4cbc0f083a6a", "rule": "high_rtt", "severity": "warning", "state": "firing",
              "call": "c-42", "peer": "alice", "value": 612.5, "threshold": 400.0, "since": 1795536120000,
              "at": 1795536130000, "url": "https://rtc.example/calls/c-42/"}
COHORT_ALERT = {"id": "0a1b2c3d4e5f60718293", "rule": "turn_poor", "severity": "critical", "state": "firing",
                "scope": "cohort", "dimension": "turn_server", "value": "turn-2.example.com:443", "peers": 24,
                "poor": 18, "threshold": 0.3, "since": 1795536120000, "at": 1795536130000}


def ms(text):
    """Alertmanager's date-time as Unix ms."""
    return round(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


# --- the body ----------------------------------------------------------------------------

def test_a_peer_alert_is_a_postable_alert_with_the_labels_annotations_and_times_of_the_contract():
    sent = 1795536131000
    body = postable(PEER_ALERT, sent, 60_000, PUBLIC)
    assert set(body) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert body["labels"] == {"alertname": "high_rtt", "severity": "warning", "scope": "peer", "call": "c-42",
                              "peer": "alice"}
    assert body["annotations"]["rtcscope_id"] == "5ed4f88c4cbc0f083a6a"
    assert body["annotations"]["summary"] == "high_rtt on call c-42, peer alice: 612.5 (threshold 400)."
    assert "firing since 2026-11-24T" in body["annotations"]["description"]
    assert body["generatorURL"] == "https://rtc.example/calls/c-42/"
    assert (ms(body["startsAt"]), body["startsAt"][-1]) == (PEER_ALERT["since"], "Z")
    assert ms(body["endsAt"]) == sent + ENDS_AHEAD * 60_000  # a few re-sends ahead while firing

    resolved = postable(dict(PEER_ALERT, state="resolved", at=1795536190000), sent, 60_000, PUBLIC)
    assert ms(resolved["endsAt"]) == 1795536190000  # the resolution's time
    assert resolved["labels"] == body["labels"] and ms(resolved["startsAt"]) == PEER_ALERT["since"]
    assert "resolved at" in resolved["annotations"]["description"]

    no_peer = postable(dict(PEER_ALERT, peer=None, scope="peer"), sent, 60_000, PUBLIC)
    assert no_peer["labels"] == {"alertname": "high_rtt", "severity": "warning", "scope": "peer", "call": "c-42"}
    assert no_peer["annotations"]["summary"] == "high_rtt on call c-42: 612.5 (threshold 400)."


def test_a_cohort_alert_names_its_dimension_and_value_and_points_at_the_filtered_dashboard():
    body = postable(COHORT_ALERT, 1795536131000, 60_000, PUBLIC + "/")
    assert body["labels"] == {"alertname": "turn_poor", "severity": "critical", "scope": "cohort",
                              "dimension": "turn_server", "value": "turn-2.example.com:443"}
    assert body["generatorURL"] == "https://rtc.example/dashboard?turn_server=turn-2.example.com%3A443"
    assert body["annotations"]["summary"] == ("turn_poor on peers with turn_server=turn-2.example.com:443: "
                                              "18 of 24 live peers are poor (threshold 0.3).")
    assert body["annotations"]["rtcscope_id"] == COHORT_ALERT["id"]


def test_alertmanager_receivers_are_parsed_and_bad_ones_stop_the_start():
    make = functools.partial(make_receiver, resend_ms=60_000, public_url=PUBLIC)
    receiver = make("alertmanager+http://127.0.0.1:9093")
    assert isinstance(receiver, AlertmanagerReceiver) and receiver.url == "http://127.0.0.1:9093/api/v2/alerts"
    assert make("alertmanager+https://am.example.com/am/").url == "https://am.example.com/am/api/v2/alerts"
    assert receiver.key.startswith("r_") and receiver.key != Receiver("http://127.0.0.1:9093").key
    assert json.loads(receiver.body(PEER_ALERT))[0]["labels"]["alertname"] == "high_rtt"  # a postableAlerts array
    assert type(make("https://hooks.example/a")) is Receiver
    for spec in ("alertmanager+ftp://am:9093", "alertmanager+http://", "alertmanager+http://am:9093/?x=1",
                 "alertmanager+am:9093"):
        with pytest.raises(WebhookError, match="Alertmanager's base URL"):
            make(spec)
    with pytest.raises(WebhookError, match="at least 1s"):
        make_receiver("alertmanager+http://am:9093", resend_ms=500, public_url=PUBLIC)


# --- a real Alertmanager ----------------------------------------------------------------

@pytest.fixture
def alertmanager():
    """An Alertmanager on a free port, not started yet (a test may want it down at first)."""
    instance = Alertmanager()
    yield instance
    instance.cleanup()


def held(alertmanager, *matchers):
    """The alerts Alertmanager holds (not ended), or [] while it is down."""
    try:
        return alertmanager.alerts(*matchers)
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)
async def test_the_worker_re_sends_what_fires_and_a_re_send_never_brings_a_resolution_back(alertmanager):
    alertmanager.start()
    now = int(time.time() * 1000)
    alert = dict(PEER_ALERT, since=now - 5000, at=now)
    firing = [alert]
    results = []
    hooks = Webhooks([f"alertmanager+{alertmanager.url}"], retry_ms=30_000,
                     make_receiver=functools.partial(make_receiver, resend_ms=1000, public_url=PUBLIC),
                     on_result=lambda record, receiver, result: results.append(result))
    hooks.firing = lambda: list(firing)
    hooks.start()
    try:
        # Nothing queued: the worker's first re-send, a period after its start, brings the firing alert.
        found = await eventually(lambda: held(alertmanager, 'call="c-42"'), timeout=10)
        assert found[0]["status"]["state"] == "active" and found[0]["annotations"]["rtcscope_id"] == alert["id"]
        await eventually(lambda: results.count("resent") >= 2, timeout=5)
        resolved = dict(alert, state="resolved", at=int(time.time() * 1000))
        firing.clear()
        hooks.send(Outgoing(resolved, "n1", resolved["at"] * 1_000_000))
        await eventually(lambda: "delivered" in results, timeout=10)
        assert held(alertmanager, 'call="c-42"') == []
        resent = results.count("resent")
        await asyncio.sleep(2.5 * 1.0)  # more than two re-send periods
        assert held(alertmanager, 'call="c-42"') == []
        assert results.count("resent") == resent  # nothing fires: nothing re-sent
    finally:
        await hooks.stop()
    assert results.count("delivered") == 1 and "failed" not in results


@pytest.fixture
def app_config(app_config, alertmanager, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(high_rtt_rules(f"{FOR_S:g}s"))
    app_config.update(alert_rules=str(rules), alert_webhooks=[f"alertmanager+{alertmanager.url}"],
                      alertmanager_resend=RESEND_S, alert_retry=30.0, quality_window=1.0, tick=TICK,
                      public_url=PUBLIC)
    return app_config


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_a_bad_calls_alert_is_active_in_alertmanager_kept_so_by_re_sends_and_ended_by_recovery(
        http_client, base_url, app, alertmanager):
    alertmanager.start()
    await sending(app)
    feeder = Feeder(http_client, base_url)
    feeder.rtt = {"bad-1": 650.0, "good-1": 35.0}
    feeder.start()
    try:
        found = await eventually(lambda: held(alertmanager, 'alertname="high_rtt"'), timeout=15)
        arrived = time.monotonic()
        # The rule's `for`, a flush and a tick or two after the first bad sample, and a margin.
        assert arrived - feeder.first_post["bad-1"] <= FOR_S + 0.1 + 2 * TICK + 2.0
        assert len(found) == 1
        alert = found[0]
        assert alert["labels"] == {"alertname": "high_rtt", "severity": "critical", "scope": "peer", "call": "bad-1",
                                   "peer": "alice"}
        assert alert["status"]["state"] == "active"
        assert alert["generatorURL"] == "https://rtc.example/calls/bad-1/"

        async def listed():  # from InfluxDB: within a flush interval of the event
            status, document, _ = await get(http_client, base_url + "/v1/alerts/")
            assert status == 200
            return document["alerts"]

        [ours] = await eventually(listed, timeout=5)
        assert alert["annotations"]["rtcscope_id"] == ours["id"]
        assert ms(alert["startsAt"]) == ours["since"]
        assert alert["annotations"]["summary"].startswith("high_rtt on call bad-1, peer alice: ")

        # Over three re-send periods it stays active, its endsAt moving on ahead of now.
        ends = []
        for _ in range(4):
            await asyncio.sleep(RESEND_S)
            now = held(alertmanager, 'call="bad-1"')
            assert [a["status"]["state"] for a in now] == ["active"]
            assert now[0]["annotations"]["rtcscope_id"] == ours["id"]
            ends.append(ms(now[0]["endsAt"]))
            assert ends[-1] > time.time() * 1000 + RESEND_S * 1000
        assert ends == sorted(ends) and ends[-1] - ends[0] >= 2 * RESEND_S * 1000
        assert held(alertmanager, 'call="good-1"') == []

        feeder.rtt["bad-1"] = 40.0
        recovered = time.monotonic()
        await eventually(lambda: not held(alertmanager, 'call="bad-1"'), timeout=15)
        # The window (1 s) clears, then the rule's `for`, a flush and a tick or two.
        assert time.monotonic() - recovered <= 1.0 + FOR_S + 0.1 + 2 * TICK + 2.0
        await asyncio.sleep(2.5 * RESEND_S)  # re-sends do not bring it back
        assert held(alertmanager) == []
    finally:
        await feeder.stop()
    status, listed, _ = await get(http_client, base_url + "/v1/alerts/?state=all")
    assert [(a["id"], a["state"]) for a in listed["alerts"]] == [(ours["id"], "resolved")]
    assert app.telemetry.value("rtcscope_webhook_deliveries_total", result="delivered") == 2
    assert app.telemetry.value("rtcscope_webhook_deliveries_total", result="resent") >= 3
    assert app.telemetry.value("rtcscope_webhook_deliveries_total", result="failed") == 0


@pytest.mark.slow
@pytest.mark.gen_test(timeout=90)
async def test_a_cohort_alert_is_active_in_alertmanager_with_its_dimension_and_ended_by_recovery(
        http_client, app_config, start_server, alertmanager, tmp_path):
    alertmanager.start()
    rules = tmp_path / "cohort.toml"
    rules.write_text(cohort_rules("region", hold=f"{FOR_S:g}s", min_peers=2))
    # A database of its own: the module's server (high_rtt rules) runs beside it for the HTTP client.
    app = await start_server(**{**app_config, "alert_rules": str(rules), "database": app_config["database"] + "c"})
    await sending(app)
    feeder = Feeder(http_client, app.base_url)
    feeder.rtt = {"c-1": 800.0, "c-2": 800.0, "c-3": 30.0, "c-4": 30.0}
    feeder.tags = {"c-1": {"region": "eu-bad"}, "c-2": {"region": "eu-bad"}, "c-3": {"region": "eu-good"},
                   "c-4": {"region": "eu-good"}}
    feeder.start()
    try:
        [alert] = await eventually(lambda: held(alertmanager, 'scope="cohort"'), timeout=20)
        assert alert["labels"] == {"alertname": "region_poor", "severity": "critical", "scope": "cohort",
                                   "dimension": "region", "value": "eu-bad"}
        assert alert["status"]["state"] == "active"
        assert alert["generatorURL"] == "https://rtc.example/dashboard?region=eu-bad"
        assert alert["annotations"]["summary"] == ("region_poor on peers with region=eu-bad: 2 of 2 live peers are "
                                                   "poor (threshold 0.5).")

        async def listed():  # from InfluxDB: within a flush interval of the event
            status, document, _ = await get(http_client, app.base_url + "/v1/alerts/?scope=cohort")
            assert status == 200
            return document["alerts"]

        [ours] = await eventually(listed, timeout=5)
        assert ours["id"] == alert["annotations"]["rtcscope_id"] and ours["value"] == "eu-bad"
        assert held(alertmanager, 'scope="peer"') == []
        for call in ("c-1", "c-2"):
            feeder.rtt[call] = 30.0
        await eventually(lambda: not held(alertmanager, 'scope="cohort"'), timeout=20)
        await asyncio.sleep(2.5 * RESEND_S)  # re-sends do not bring it back
        assert held(alertmanager) == []
    finally:
        await feeder.stop()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=120)
async def test_an_alertmanager_down_at_first_gets_the_alert_once_up_and_again_after_a_restart(
        http_client, base_url, app, alertmanager, influxd, database):
    await sending(app)
    feeder = Feeder(http_client, base_url)
    feeder.rtt = {"bad-2": 700.0}
    feeder.start()
    try:
        await eventually(lambda: app.alerts.firing_count == 1, timeout=15)
        await eventually(lambda: app.telemetry.value("rtcscope_webhook_deliveries_total", result="failed") >= 2,
                         timeout=15)
        alertmanager.start()
        # Retried with backoff up to a tenth of --alert-retry (3 s here).
        found = await eventually(lambda: held(alertmanager, 'call="bad-2"'), timeout=10)
        assert found[0]["labels"]["alertname"] == "high_rtt" and found[0]["status"]["state"] == "active"
        # The event's delivery is recorded on its rtc_alerts point.
        key = app.alerts.webhooks.receivers[0].key
        await eventually(lambda: influxd.rows(f'SELECT "{key}" FROM rtc_alerts WHERE "{key}" = 1', database),
                         timeout=10)
        # A restarted Alertmanager has forgotten its alerts: the next re-send brings it back.
        alertmanager.stop()
        alertmanager.start()
        again = await eventually(lambda: held(alertmanager, 'call="bad-2"'), timeout=RESEND_S + 5)
        assert again[0]["annotations"]["rtcscope_id"] == found[0]["annotations"]["rtcscope_id"]
    finally:
        await feeder.stop()
    assert app.telemetry.value("rtcscope_webhook_deliveries_total", result="delivered") == 1


@pytest.mark.slow
def test_two_processes_give_one_alert_and_the_next_sender_carries_the_re_sends_on(tmp_path, servers, alertmanager):
    alertmanager.start()
    rules = tmp_path / "rules.toml"
    rules.write_text(high_rtt_rules("1s"))

    def delivered(server):
        return metric(server, "rtcscope_webhook_deliveries_total", result="delivered")

    def resent(server):
        return metric(server, "rtcscope_webhook_deliveries_total", result="resent")

    options = {"tick": "0.2s", "flush_interval": "0.1s", "call_timeout": "3s", "quality_window": "3s",
               "alert_rules": str(rules), "alert_retry": "2m", "alert_webhooks": f"alertmanager+{alertmanager.url}",
               "alertmanager_resend": "1s"}
    a, b = servers("a", **options), servers("b", **options)
    wait(lambda: 1 in (metric(a, "rtcscope_alerts_sender"), metric(b, "rtcscope_alerts_sender")), timeout=30)
    feeder = ProcessFeeder([a, b], {"bad": 800.0, "good": 30.0})
    with feeder:
        wait(lambda: held(alertmanager, 'call="bad"'), timeout=30)
        time.sleep(2.5)  # a few re-sends
        sender, other = (a, b) if metric(a, "rtcscope_alerts_sender") == 1 else (b, a)
        assert metric(other, "rtcscope_alerts_sender") == 0
        found = held(alertmanager)
        assert [alert["labels"]["call"] for alert in found] == ["bad"]
        status, listed = other.get_json("/v1/alerts/?state=all")
        assert status == 200 and listed["count"] == 1
        assert found[0]["annotations"]["rtcscope_id"] == listed["alerts"][0]["id"]
        # One process posts: the firing event once, and the re-sends.
        assert delivered(sender) == 1 and resent(sender) >= 2
        assert not delivered(other) and not resent(other)

        feeder.servers = [other]
        before = ms(held(alertmanager, 'call="bad"')[0]["endsAt"])
        sender.stop()
        wait(lambda: metric(other, "rtcscope_alerts_sender") == 1, timeout=30)
        # The new sender re-sends the alert it took over: same alert, endsAt moving on.
        wait(lambda: resent(other) and resent(other) >= 2, timeout=15)
        carried = held(alertmanager, 'call="bad"')
        assert [alert["status"]["state"] for alert in carried] == ["active"]
        assert carried[0]["annotations"]["rtcscope_id"] == listed["alerts"][0]["id"]
        assert ms(carried[0]["endsAt"]) > before

        feeder.rtt["bad"] = 30.0
        wait(lambda: not held(alertmanager, 'call="bad"'), timeout=30)
    assert held(alertmanager) == []
    assert delivered(other) == 1  # the resolution


def documented_config():
    """The alertmanager.yml of docs/alerts.md, its notifications held back beyond the test
    (nothing leaves the machine)."""
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    config = text.split("### An alertmanager.yml", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "group_wait: 30s" in config
    return config.replace("group_wait: 30s", "group_wait: 1h")


def test_the_documented_alertmanager_yml_routes_by_severity_and_scope_and_silences_mute_by_call_and_dimension():
    manager = Alertmanager(documented_config())
    checked = subprocess.run(["amtool", "check-config", manager.config_path], capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    manager.start()
    try:
        now = int(time.time() * 1000)
        alerts = [dict(PEER_ALERT, severity="critical", call="c-1", since=now - 5000, at=now),
                  dict(PEER_ALERT, severity="warning", call="c-2", since=now - 5000, at=now),
                  dict(COHORT_ALERT, since=now - 5000, at=now)]
        status, _ = manager.post([postable(alert, now, 60_000, PUBLIC) for alert in alerts])
        assert status == 200

        def receivers():
            return {alert["labels"].get("call") or alert["labels"]["value"]:
                    ([r["name"] for r in alert["receivers"]], alert["status"]["state"]) for alert in manager.alerts()}

        assert receivers() == {"c-1": (["oncall-pager"], "active"), "c-2": (["rtc-chat"], "active"),
                               "turn-2.example.com:443": (["network-team"], "active")}
        for matcher in ('call="c-1"', 'dimension="turn_server"'):
            added = subprocess.run(["amtool", f"--alertmanager.url={manager.url}", "silence", "add", matcher,
                                    "--duration=1h", "--comment=test", "--author=tests"],
                                   capture_output=True, text=True, timeout=30)
            assert added.returncode == 0, added.stderr
        wait(lambda: receivers()["c-1"][1] == "suppressed", timeout=10)
        assert receivers() == {"c-1": (["oncall-pager"], "suppressed"), "c-2": (["rtc-chat"], "active"),
                               "turn-2.example.com:443": (["network-team"], "suppressed")}
    finally:
        manager.cleanup()
