"""What a breakdown and an explanation of the live fleet cost: 10,000 live calls
(20,000 peers) with a realistic mix of dimensions and one bad cohort, held by a
call detector as its ticks leave them and read through its live_peers(). Each
answer is computed from scratch, as the first request of a detector tick
does, and timed alone, CPU (time.process_time) and wall, median of N; the
baseline is the one pass over the live peers by itself. Later requests of
the same tick take the tick's answer (rtcscope/diagnosis/live.py).

    python -m bench --only diagnosis     # in the report
    python -m bench.diagnosis            # this table alone, no InfluxDB
"""
import random
import statistics
import time

from rtcscope.alerts.rules import Rule
from rtcscope.alerts.state import AlertEngine
from rtcscope.diagnosis.breakdown import breakdown, live_rows, value_counts
from rtcscope.diagnosis.explain import Tally, explain
from rtcscope.diagnosis.live import LiveDiagnosis
from rtcscope.dimensions.peer import Dimensions
from rtcscope.live.calls import CallState
from rtcscope.live.detector import CallDetector
from rtcscope.live.fleet import CallQuality

CALLS = 10_000
# Window values that give each verdict its MOS (rtcscope/quality.py's E-model).
WINDOWS = {"poor": {"rtt": 700.0, "jitter": 30.0, "loss": 0.08}, "good": {"rtt": 40.0, "jitter": 3.0, "loss": 0.0}}
ROUNDS = 9
TARGET_MS = 50.0
BAD_TURN = "turn-2.example.com:443"

# (weight, browser, versions, os, os versions): the families ua-parser gives.
CLIENTS = (
    (46, "Chrome", range(120, 132), "Windows", ("10", "11")),
    (12, "Chrome", range(120, 132), "Mac OS X", ("13", "14", "15")),
    (10, "Chrome Mobile", range(118, 132), "Android", ("12", "13", "14")),
    (10, "Mobile Safari", range(16, 19), "iOS", ("16", "17", "18")),
    (8, "Safari", range(16, 19), "Mac OS X", ("13", "14", "15")),
    (7, "Edge", range(120, 132), "Windows", ("10", "11")),
    (5, "Firefox", range(125, 134), "Linux", (None,)),
    (2, "HeadlessChrome", range(128, 132), "Linux", (None,)),
)
TURN_SERVERS = ((45, "turn-1.example.com:3478", "udp"), (30, BAD_TURN, "tcp"), (25, "turn-3.example.com:443", "tls"))
COUNTRIES = ("US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "NL", "ES", "IT", "PL", "SE", "AU", "MX", "KR")


def _weighted(rng, choices):
    return rng.choices(choices, weights=[choice[0] for choice in choices])[0]


def client_dimensions(rng):
    """One peer's dimensions as the extraction gives them: some unknown (no raw report yet,
    an address without a country), a fifth relayed through one of three TURN servers."""
    _, browser, versions, os_name, os_versions = _weighted(rng, CLIENTS)
    values = {"browser": browser, "browser_version": str(rng.choice(versions)), "os": os_name}
    os_version = rng.choice(os_versions)
    if os_version is not None:
        values["os_version"] = os_version
    if rng.random() < 0.9:  # the peer's raw report has come
        mobile = os_name in ("Android", "iOS")
        values["network_type"] = rng.choice(("wifi", "cellular")) if mobile else rng.choice(("wifi", "ethernet"))
        if rng.random() < 0.2:
            _, turn, protocol = _weighted(rng, TURN_SERVERS)
            values.update(candidate_type="relay", relay_protocol=protocol, turn_server=turn, transport="udp")
        else:
            values.update(candidate_type=rng.choice(("host", "srflx", "srflx", "prflx")), transport="udp")
        values["audio_codec"] = "opus"
        values["video_codec"] = rng.choice(("VP8", "VP8", "VP9", "H264", "AV1"))
    if rng.random() < 0.95:
        country = COUNTRIES[min(int(rng.expovariate(0.25)), len(COUNTRIES) - 1)]
        values.update(country=country, asn=f"AS{rng.randint(1, 600)}")
    values.update(region=rng.choice(("eu-west", "us-east", "ap-south")),
                  app_version=rng.choice(("5.1.0", "5.2.0", "5.2.1", "5.3.0")),
                  media_server=f"sfu-{rng.randint(1, 24)}")
    return values


def live_fleet(calls=CALLS, seed=1, bad_cohort=True):
    """[(call, peer, values, verdict, mos)] of `calls` two-peer calls: poor at 5 % by chance,
    and at 90 % relayed over TCP through turn-2 when `bad_cohort`."""
    rng = random.Random(seed)
    peers = []
    for index in range(calls):
        for peer in ("alice", "bob"):
            values = client_dimensions(rng)
            bad = bad_cohort and values.get("turn_server") == BAD_TURN
            draw = rng.random()
            if draw < (0.9 if bad else 0.05):
                verdict, mos = "poor", rng.uniform(1.5, 3.5)
            elif draw < 0.97:
                verdict, mos = "good", rng.uniform(4.05, 4.4)
            else:
                verdict, mos = "unknown", None
            peers.append((f"c-{index}", peer, values, verdict, mos))
    return peers


def detector_of(peers):
    """A call detector whose last tick left `peers` live: their calls, each peer's window
    (a poor or a good one, none for an unknown verdict) and dimensions."""
    detector = CallDetector(None, timeout_ms=3000, tick_ms=1000)
    calls, windows = {}, {}
    for call, peer, values, verdict, _mos in peers:
        calls.setdefault(call, CallState(call, "live")).peers.append(peer)
        if verdict in WINDOWS:
            windows.setdefault(call, {})[peer] = {**WINDOWS[verdict], "freezes": 0.0, "qualityLimitationReason": 0.0,
                                                  "iceState": None}
        detector.dimensions[(call, peer)] = known = Dimensions()
        known.update(values, 0)
    detector.calls = calls
    detector.qualities = {call: CallQuality(found, 0) for call, found in windows.items()}
    return detector


def _timed(function):
    """(median CPU ms, median wall ms, the last answer) of ROUNDS calls."""
    cpu, wall, answer = [], [], None
    for _ in range(ROUNDS):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        answer = function()
        cpu.append((time.process_time() - cpu_start) * 1000)
        wall.append((time.perf_counter() - wall_start) * 1000)
    return statistics.median(cpu), statistics.median(wall), answer


def diagnosis(ctx, section):
    peers = live_fleet(CALLS)
    live_peers = detector_of(peers).live_peers
    read_cpu, read_wall, listed = _timed(lambda: list(live_peers()))
    section.add(f"the detector's {len(listed):,} live peers read (live_peers(), once a tick): CPU", read_cpu, "ms")
    section.add("the live peers read: wall", read_wall, "ms")
    answers = [(f"breakdown by {by}", lambda peers, by=by: breakdown(by, "live", live_rows(peers, by)))
               for by in ("browser", "asn", "turn_server")]
    answers.append(("explain (every dimension)", lambda peers: explain(Tally.of_live(peers), 5)))
    found = None
    for label, answer in answers:
        cpu, wall, found = _timed(lambda answer=answer: answer(listed))
        section.add(f"{label} of the tick's live peers: CPU", cpu, "ms", "the live peers read", read_cpu,
                    target=f"< {TARGET_MS:.0f} ms", met=cpu < TARGET_MS)
        section.add(f"{label}: wall", wall, "ms", "the live peers read", read_wall)
    ticks = iter(range(10**9))
    kept = LiveDiagnosis(5)
    for label, ask in (("breakdown by browser", lambda tick: kept.breakdown(tick, live_peers, "browser")),
                       ("explain", lambda tick: kept.explain(tick, live_peers))):
        first_cpu, _, _ = _timed(lambda ask=ask: ask(next(ticks)))
        section.add(f"{label}, the first request of a tick (the peers read, the answer computed): CPU", first_cpu,
                    "ms", "the live peers read", read_cpu)
    cpu, _, _ = _timed(lambda: kept.explain(0, live_peers))  # the first computes, the others take its answer
    section.add("explain, a later request of the same tick: CPU", cpu * 1000, "µs", "the first of a tick",
                first_cpu * 1000)
    engine = AlertEngine([Rule("turn_poor", "poor_share", ">", 0.5, 60_000, "critical", by="turn_server")])
    clock = iter(range(0, 10**12, 1000))
    cpu, _, _ = _timed(lambda: engine.evaluate_cohorts(next(clock), value_counts(live_peers(), engine.cohort_dimensions)))
    section.add("a cohort rule (by turn_server), one tick, from live_peers(): CPU", cpu, "ms", "the live peers read",
                read_cpu)
    first = found["findings"][0] if found["findings"] else None
    named = (f"{first['dimension']}={first['value']}, {first['poor']} of {first['peers']} peers poor, lift {first['lift']}"
             if first else "none")
    dimensions = sum(len(values) for _, _, values, _, _ in peers) / len(peers)
    section.note(f"{CALLS:,} live calls of two peers held by a call detector, read through its live_peers(); "
                 f"{dimensions:.1f} dimensions per peer on average (asn among 600 values); {found['poor']:,} poor "
                 f"peers. First finding: {named}; {len(found['findings'])} in all. Median of {ROUNDS} answers each. "
                 "The server reads the live peers at most once per tick, for the tick's first answer, and computes "
                 "each answer (a dimension's breakdown, the explanation) at most once per tick.")

if __name__ == "__main__":
    from .report import Section, text_table

    alone = Section("Diagnosis: breakdown and explain over 10,000 live calls")
    diagnosis(None, alone)
    print(text_table([alone]))
