"""What the alert rules add to a detector tick: evaluating the built-in rules
for every live peer from the fleet view's windows of the tick, against the
fleet view's own per-tick work on the same rows (fleet.call_qualities), in this
process, alternating, best of N. A quiet fleet (no peer bad) and a bad one
(every peer's rtt over the rule: every key tracked, half firing) bound it."""
import random

from rtcscope.alerts.inputs import ended_of, peer_windows
from rtcscope.alerts.rules import BUILTIN_RULES
from rtcscope.alerts.state import AlertEngine
from rtcscope.live import fleet
from rtcscope.live.calls import CallState

from .jsonlibs import compare

PEERS = 20_000
KINDS = ("audio", "video", "connection")


def _rows(bad):
    rng = random.Random(1)
    rows = []
    for index in range(PEERS):
        for kind in KINDS:
            rows.append((f"c-{index}", "alice", kind, {
                "rtt": rng.uniform(450, 600) if bad else rng.uniform(20, 120), "jitter": rng.uniform(1, 10),
                "fractionLost": None, "qualityLimitationReason": 0.0, "packetsLost": 0.0,
                "packetsReceived": 500.0, "packetsSent": 500.0, "freezeCount": 0.0}))
    return rows


def alert_rules(ctx, section):
    for label, bad in (("a quiet fleet", False), ("every peer over high_rtt", True)):
        rows = _rows(bad)
        live = {f"c-{index}" for index in range(PEERS)}
        calls = {call: CallState(call, "live", peers=["alice"]) for call in live}
        qualities = fleet.call_qualities(rows, live, 0)
        engine = AlertEngine(list(BUILTIN_RULES))
        clock = iter(range(0, 10**12, 1000))

        def evaluate():
            engine.evaluate(next(clock), peer_windows(qualities), ended_of(calls), live)

        ours, theirs = compare(lambda: fleet.call_qualities(rows, live, 0), evaluate)
        section.add(f"alert rules for {PEERS:,} live peers, {label}", ours * 1e3, "ms",
                    "the fleet view's qualities of the same tick", theirs * 1e3)
    section.note("CPU of one tick's rule evaluation in the server's event loop; the InfluxDB side of alerts is a "
                 "heartbeat write and two small queries per tick whatever the number of calls (docs/alerts.md).")
