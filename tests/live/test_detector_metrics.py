"""The detector's own /metrics families (CallDetector.register_metrics) against a real influxd."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtcscope import registry
from rtcscope.telemetry import Telemetry
from tests.support.api import post
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import Recorder

pytestmark = pytest.mark.app_config(tick=3600.0, call_timeout=3.0)

DETECTOR_FAMILIES = {
    "rtcscope_detector_ticks": "counter", "rtcscope_detector_queries": "counter",
    "rtcscope_detector_skipped_ticks": "counter", "rtcscope_detector_failures": "counter",
    "rtcscope_live_calls": "gauge", "rtcscope_graph_viewers": "gauge", "rtcscope_watched_metrics": "gauge",
    "rtcscope_calls_viewers": "gauge", "rtcscope_call_summaries_written": "counter", "rtcscope_ended_calls": "gauge",
    "rtcscope_ended_calls_ready": "gauge",
}


def families(telemetry):
    return {family.name: family for family in text_string_to_metric_families(telemetry.render().decode())}


@pytest.mark.gen_test(timeout=30)
async def test_the_detector_registers_its_families_with_what_it_counts(http_client, base_url, app):
    start = now_ms() - 3000
    body = [{"call": call, "peer": "alice", "kind": "audio", "ts": start + i * 1000, "stats": {"rtt": 20.0}}
            for call in ("m-1", "m-2") for i in range(3)]
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200, result
    await eventually(lambda: app.writer.depth == 0)
    detector = app.detector
    await detector.run_tick()
    await detector.watch(registry.lookup("rtt"), Recorder())
    await detector.watch(registry.lookup("jitter"), Recorder())
    await detector.watch_calls(Recorder())
    await detector.run_tick()

    telemetry = Telemetry()
    detector.register_metrics(telemetry)
    own = families(telemetry)
    assert {name: family.type for name, family in own.items()} == DETECTOR_FAMILIES
    values = {name: family.samples[0].value for name, family in own.items()}
    assert values["rtcscope_detector_ticks"] == 2 and values["rtcscope_detector_failures"] == 0
    assert values["rtcscope_detector_queries"] == detector.queries > 0
    assert (values["rtcscope_live_calls"], values["rtcscope_graph_viewers"], values["rtcscope_watched_metrics"],
            values["rtcscope_calls_viewers"]) == (2, 2, 2, 1)
    # The same families as the application's /metrics shows: names, help, types and values.
    shown = families(app.telemetry)
    for name, family in own.items():
        assert (family.documentation, family.type, family.samples) == (
            shown[name].documentation, shown[name].type, shown[name].samples), name
