"""The quality block of GET /v1/calls/<call>/, from samples posted over HTTP to a real server."""
import pytest

from rtcscope.live.calls import CallState
from rtcscope.quality import LOSS_THRESHOLD, RTT_THRESHOLD_MS, estimate_mos
from rtcscope.summary import summarize
from tests.support.api import get, post
from tests.support.samples import now_ms
from tests.support.waits import eventually

SECONDS = 30
LOSS_WINDOW = range(10, 15)  # samples of these seconds report 10 more packets lost than the one before
RTT_WINDOW = range(20, 25)


def call_samples(call, start, impaired):
    """One peer sending and receiving audio 50 packets/s each way for 30 s; `impaired` adds
    10 lost packets/s during LOSS_WINDOW and an RTT of 450 ms during RTT_WINDOW."""
    samples, lost = [], 0.0
    for second in range(SECONDS):
        if impaired and second in LOSS_WINDOW:
            lost += 10
        rtt = 450.0 if impaired and second in RTT_WINDOW else 40.0
        samples.append({"call": call, "peer": "alice", "kind": "audio", "ts": start + second * 1000, "stats": {
            "rtt": rtt, "jitter": 4.0, "packetsLost": lost,
            "packetsSent": 50.0 * second, "packetsReceived": 50.0 * second}})
    return samples


@pytest.mark.gen_test(timeout=60)
async def test_problems_and_mos_of_a_call_with_loss_and_rtt_windows(http_client, base_url, app, influxd, database):
    start = (now_ms() - 60_000) // 1000 * 1000
    body = call_samples("bad", start, impaired=True) + call_samples("clean", start, impaired=False)
    status, result, _ = await post(http_client, base_url + "/v1/stats/write/", body)
    assert status == 200 and result["accepted"] == 2 * SECONDS
    await eventually(lambda: len(influxd.rows("SELECT rtt FROM rtc_stats WHERE time > 0", database)) == 2 * SECONDS)

    status, bad, _ = await get(http_client, base_url + "/v1/calls/bad/")
    assert status == 200, bad
    assert bad["bucket_seconds"] == 1
    quality = bad["quality"]
    problems = [(p["problem"], p["metric"], p["from"], p["to"]) for p in quality["problems"]]
    # Counter rates land on the later sample: the loss between seconds 9 and 10 is stamped 10.
    assert problems == [
        ("high_loss", "packetsLost", start + 10_000, start + 14_000),
        ("high_rtt", "rtt", start + 20_000, start + 24_000),
    ]
    loss, rtt = quality["problems"]
    # 10 lost of 10 + 50 received + 50 sent per second.
    assert loss["worst"] == pytest.approx(10 / 110) and loss["threshold"] == LOSS_THRESHOLD
    assert rtt["worst"] == 450.0 and rtt["threshold"] == RTT_THRESHOLD_MS

    status, clean, _ = await get(http_client, base_url + "/v1/calls/clean/")
    assert status == 200
    assert clean["quality"]["problems"] == []
    assert clean["quality"]["verdict"] == "good"
    assert clean["quality"]["mos"] == pytest.approx(estimate_mos(40.0, 4.0, 0.0))

    mean_rtt = (40.0 * (SECONDS - len(RTT_WINDOW)) + 450.0 * len(RTT_WINDOW)) / SECONDS
    lost = 10.0 * len(LOSS_WINDOW)
    carried = 100.0 * (SECONDS - 1) + lost
    assert quality["mos"] == pytest.approx(estimate_mos(mean_rtt, 4.0, lost / carried))
    assert quality["mos"] < clean["quality"]["mos"] - 0.1  # ten bad seconds out of thirty

    # Over time the MOS drops in the windows and only there.
    assert [ms for ms, _ in quality["timeline"]] == [start + second * 1000 for second in range(SECONDS)]
    clean_mos = clean["quality"]["mos"]
    for second, (_, mos) in enumerate(quality["timeline"]):
        if second in LOSS_WINDOW:
            assert mos == pytest.approx(estimate_mos(40.0, 4.0, 10 / 110)) and mos < clean_mos - 0.8, second
        elif second in RTT_WINDOW:
            assert mos == pytest.approx(estimate_mos(450.0, 4.0, 0.0)) and mos < clean_mos - 0.3, second
        else:
            assert mos == pytest.approx(clean_mos), second
    assert bad["metrics"]["packetsLost"]["unit"] == "packets/s"
    assert bad["metrics"]["rtt"]["unit"] == "ms"


def peer_buckets(peer, kind, start, **means):
    """A (tags, rows) of call_buckets: one bucket a second for 6 s with these means."""
    rows = [{"time": start + second * 1000, **{f"mean_{name}": value for name, value in means.items()},
             **{f"count_{name}": 1 for name in means}} for second in range(6)]
    return {"peer": peer, "kind": kind}, rows


def test_the_summary_judges_a_call_by_its_clients_and_lists_the_sfu_view_per_peer():
    start = 1_796_000_000_000
    state = CallState("c", "ended", ["alice", "alice@janus"], start, start + 5000, start + 5000, "explicit")
    buckets = [peer_buckets("alice", "audio", start, rtt=40.0, jitter=4.0),
               peer_buckets("alice@janus", "audio", start, rtt=700.0, jitter=4.0),
               peer_buckets("alice@janus", "connection", start, iceState=5.0)]
    quality = summarize(state, buckets, 1)["quality"]
    assert quality["mos"] == pytest.approx(estimate_mos(40.0, 4.0, None))
    assert quality["verdict"] == "good"
    assert [problem["problem"] for problem in quality["problems"]] == ["ice_failed"]  # the view's rtt does not count
    assert all(mos == pytest.approx(estimate_mos(40.0, 4.0, None)) for _, mos in quality["timeline"])
    assert set(quality["peers"]) == {"alice", "alice@janus"}
    assert quality["peers"]["alice@janus"]["problems"] == ["high_rtt", "ice_failed"]

    only_sfu = summarize(state, buckets[1:], 1)["quality"]  # a call with nothing but the SFU's view
    assert only_sfu["mos"] == pytest.approx(estimate_mos(700.0, 4.0, None)) and only_sfu["verdict"] == "poor"
    assert [problem["problem"] for problem in only_sfu["problems"]] == ["high_rtt", "ice_failed"]
