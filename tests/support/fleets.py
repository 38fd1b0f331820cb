"""Fleets of live peers with known dimensions, as the detector lists them ((call, peer,
dimension values, verdict, mos)): a realistic mix, poor by chance or in a cohort; and a
call detector holding live peers as its ticks leave them."""
import random

from rtcscope.dimensions.peer import Dimensions
from rtcscope.live.calls import CallState
from rtcscope.live.detector import CallDetector

from . import reference

TURN_2 = "turn-2.example.com:443"
BROWSERS = (("Chrome", 60), ("Firefox", 15), ("Safari", 15), ("Edge", 10))
COUNTRIES = (("DE", 30), ("US", 30), ("FR", 15), ("GB", 15), ("IN", 10))


def pick(rng, choices):
    return rng.choices([value for value, _ in choices], [weight for _, weight in choices])[0]


def client(rng):
    """A peer's dimensions in a realistic mix: 30 % relayed, through turn-1 (UDP or TCP),
    turn-2 (over TCP) or turn-3 (TLS)."""
    values = {"browser": pick(rng, BROWSERS), "os": rng.choice(("Windows", "Mac OS X", "Linux", "Android")),
              "network_type": rng.choice(("wifi", "wifi", "ethernet", "cellular")), "country": pick(rng, COUNTRIES),
              "asn": f"AS{rng.randint(1, 40)}", "audio_codec": "opus", "video_codec": rng.choice(("VP8", "VP9", "H264")),
              "region": rng.choice(("eu-west", "us-east")), "transport": "udp"}
    if rng.random() < 0.3:
        turn = rng.choice(("turn-1.example.com:3478", TURN_2, "turn-3.example.com:443"))
        protocol = {"turn-1.example.com:3478": rng.choice(("udp", "udp", "tcp")), TURN_2: "tcp"}.get(turn, "tls")
        values.update(candidate_type="relay", relay_protocol=protocol, turn_server=turn)
    else:
        values["candidate_type"] = rng.choice(("host", "srflx"))
    return values


def fleet(peers=2000, poor_rate=0.06, bad=lambda values: False, bad_rate=0.9, seed=7):
    """Live peers: poor by chance at `poor_rate`, at `bad_rate` when `bad(values)`."""
    rng = random.Random(seed)
    out = []
    for index in range(peers):
        values = client(rng)
        poor = rng.random() < (bad_rate if bad(values) else poor_rate)
        out.append((f"c-{index // 2}", f"p-{index % 2}", values, "poor" if poor else "good", 2.2 if poor else 4.3))
    return out


def relayed_over_tcp_through_turn_2(values):
    return values.get("turn_server") == TURN_2 and values.get("relay_protocol") == "tcp"


# Quality windows that give each verdict its MOS (rtcscope/quality.py's E-model).
WINDOWS = {"poor": {"rtt": 700.0, "jitter": 30.0, "loss": 0.08}, "good": {"rtt": 40.0, "jitter": 3.0, "loss": 0.0}}


def held_by_detector(peers):
    """A call detector whose last tick left `peers` live, [(call, peer, dimension values or None,
    quality window {rtt, jitter, loss} or None)]: their calls, each peer's window and dimensions."""
    detector = CallDetector(None, timeout_ms=3000, tick_ms=1000)
    calls, windows = {}, {}
    for call, peer, values, window in peers:
        calls.setdefault(call, CallState(call, "live")).peers.append(peer)
        if window is not None:
            windows.setdefault(call, {})[peer] = {**window, "freezes": 0.0, "qualityLimitationReason": 0.0,
                                                  "iceState": None}
        if values is not None:
            detector.dimensions[(call, peer)] = known = Dimensions()
            known.update(values, 0)
    for state in calls.values():
        state.peers.sort()
    detector.calls = calls
    detector.qualities = {call: reference.call_quality(found, 0) for call, found in windows.items()}
    return detector
