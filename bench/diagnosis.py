"""What a breakdown and an explanation of the live fleet cost: 10,000 live calls
(20,000 peers) with a realistic mix of dimensions and one bad cohort, held by a
call detector as its ticks leave them. The server reads the detector's
live_people() into columns once a tick (rtcscope/diagnosis/columns.py) and
computes each answer from them; the baseline, measured in the same run with the
rounds alternating, is the straightforward way: the detector's live_peers()
listed, then counted in Python (explain.Tally.of_live, breakdown.live_rows),
which gives the same answers. Each answer is computed from scratch, as the
first request of a detector tick does; CPU (time.process_time) and wall,
median of N. Later requests of the same tick take the tick's answer
(rtcscope/diagnosis/live.py).

    python -m bench --only diagnosis     # in the report
    python -m bench.diagnosis            # this table alone, no InfluxDB
"""
import random
import statistics
import time

from rtcscope.alerts.rules import Rule
from rtcscope.alerts.state import AlertEngine
from rtcscope.diagnosis.breakdown import breakdown, live_rows, value_counts
from rtcscope.diagnosis.columns import PeopleCodes
from rtcscope.diagnosis.explain import Tally, explain
from rtcscope.diagnosis.live import LiveDiagnosis
from rtcscope.storage.schema import SFU_SUFFIX
from tests.support.fleets import WINDOWS, held_by_detector

CALLS = 10_000
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
JANUS_INSTANCES = ("janus-eu-1", "janus-eu-2", "janus-us-1")
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


def detector_of(peers, views=False):
    """A call detector whose last tick left `peers` live: their calls, each peer's window
    (a poor or a good one, none for an unknown verdict) and dimensions. With `views`, each
    peer has a media server's view too (`P@janus`: its Janus instance, route and codec, a
    good window), as a fleet whose calls go through Janus."""
    held = []
    for index, (call, peer, values, verdict, _mos) in enumerate(peers):
        held.append((call, peer, values, WINDOWS.get(verdict)))
        if views:
            held.append((call, peer + SFU_SUFFIX, {"emitter": JANUS_INSTANCES[index % 3], "candidate_type": "host",
                                                   "transport": "udp", "audio_codec": "opus"}, WINDOWS["good"]))
    return held_by_detector(held)


def _timed(function, rounds=None):
    """(median CPU ms, median wall ms, the last answer) of `rounds` (ROUNDS) calls."""
    cpu, wall, answer = [], [], None
    for _ in range(rounds or ROUNDS):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        answer = function()
        cpu.append((time.process_time() - cpu_start) * 1000)
        wall.append((time.perf_counter() - wall_start) * 1000)
    return statistics.median(cpu), statistics.median(wall), answer


def _paired(subject, baseline):
    """(subject's, baseline's) (median CPU ms, median wall ms, last answer), the rounds
    alternating which goes first."""
    runs = {subject: ([], [], []), baseline: ([], [], [])}
    for index in range(ROUNDS):
        for function in (subject, baseline) if index % 2 == 0 else (baseline, subject):
            cpu, wall, answer = _timed(function, 1)
            runs[function][0].append(cpu)
            runs[function][1].append(wall)
            runs[function][2].append(answer)
    return [(statistics.median(cpu), statistics.median(wall), answers[-1]) for cpu, wall, answers in
            (runs[subject], runs[baseline])]


def diagnosis(ctx, section):
    peers = live_fleet(CALLS)
    detector = detector_of(peers)
    codes = PeopleCodes()
    codes.read(detector.live_people())  # the first read codes every person: measured on its own below
    (read_cpu, read_wall, people), (listed_cpu, listed_wall, listed) = _paired(
        lambda: codes.read(detector.live_people()), lambda: list(detector.live_peers()))
    section.add(f"the detector's {people.people:,} live people read into columns (once a tick): CPU", read_cpu, "ms",
                "listed (live_peers())", listed_cpu)
    section.add("the live people read: wall", read_wall, "ms", "listed", listed_wall)
    first_cpu, _, _ = _timed(lambda: PeopleCodes().read(detector.live_people()))
    section.add("the first read of a process (every person coded): CPU", first_cpu, "ms", "listed", listed_cpu)
    answers = [(f"breakdown by {by}", lambda by=by: breakdown(by, "live", people.rows(by)),
                lambda by=by: breakdown(by, "live", live_rows(listed, by))) for by in ("browser", "asn", "turn_server")]
    answers.append(("explain (every dimension)", lambda: explain(people.tally(), 5),
                    lambda: explain(Tally.of_live(listed), 5)))
    found = None
    for label, fast, straightforward in answers:
        (cpu, wall, found), (slow_cpu, slow_wall, expected) = _paired(fast, straightforward)
        if found != expected:
            raise AssertionError(f"{label}: the columns' answer is not the straightforward one")
        section.add(f"{label} of the tick's live people: CPU", cpu, "ms", "counted from the listed peers", slow_cpu,
                    target=f"< {TARGET_MS:.0f} ms", met=cpu < TARGET_MS)
        section.add(f"{label}: wall", wall, "ms", "counted from the listed peers", slow_wall)
    ticks = iter(range(10**9))
    kept = LiveDiagnosis(5)
    kept.explain(next(ticks), detector.live_people)  # the process's first read, measured above
    for label, ask, straightforward in (
            ("breakdown by browser", lambda tick: kept.breakdown(tick, detector.live_people, "browser"),
             lambda: breakdown("browser", "live", live_rows(list(detector.live_peers()), "browser"))),
            ("explain", lambda tick: kept.explain(tick, detector.live_people),
             lambda: explain(Tally.of_live(list(detector.live_peers())), 5))):
        (first_cpu, _, _), (slow_cpu, _, _) = _paired(lambda ask=ask: ask(next(ticks)), straightforward)
        section.add(f"{label}, the first request of a tick (the people read, the answer computed): CPU", first_cpu,
                    "ms", "listed and counted", slow_cpu, target=f"< {TARGET_MS:.0f} ms", met=first_cpu < TARGET_MS)
    def why_panel(tick):
        """What a dashboard asks each tick it polls: the explanation and a breakdown."""
        return kept.explain(tick, detector.live_people), kept.breakdown(tick, detector.live_people, "turn_server")

    def why_panel_listed():
        listed = list(detector.live_peers())
        return explain(Tally.of_live(listed), 5), breakdown("turn_server", "live", live_rows(listed, "turn_server"))
    (panel_cpu, _, _), (slow_cpu, _, _) = _paired(lambda: why_panel(next(ticks)), why_panel_listed)
    section.add("the explanation and a breakdown (by turn_server), the first requests of a tick: CPU", panel_cpu, "ms",
                "listed and counted", slow_cpu, target=f"< {TARGET_MS:.0f} ms", met=panel_cpu < TARGET_MS)
    cpu, _, _ = _timed(lambda: kept.explain(0, detector.live_people))  # the first computes, the others take its answer
    section.add("explain, a later request of the same tick: CPU", cpu * 1000, "µs", "the first of a tick",
                first_cpu * 1000)
    janus = detector_of(peers, views=True)
    janus_codes = PeopleCodes()
    janus_codes.read(janus.live_people())
    (cpu, _, found_janus), (slow_cpu, _, expected) = _paired(
        lambda: explain(janus_codes.read(janus.live_people()).tally(), 5),
        lambda: explain(Tally.of_live(list(janus.live_peers())), 5))
    if found_janus != expected or found_janus != found:
        raise AssertionError("a media server view changed the explanation, or the columns' answer")
    section.add(f"explain, the first request of a tick, every peer with a Janus view beside it ({2 * len(peers):,} "
                f"stored peers, {len(peers):,} people): CPU", cpu, "ms", "listed and counted", slow_cpu)
    rules = [Rule("turn_poor", "poor_share", ">", 0.5, 60_000, "critical", by="turn_server"),
             Rule("asn_poor", "poor_share", ">", 0.5, 60_000, "critical", by="asn")]
    engines = (AlertEngine(rules), AlertEngine(rules))
    clock = iter(range(0, 10**12, 1000))

    def cohort_tick(engine, counts):
        events = engine.evaluate_cohorts(next(clock), counts(engine.cohort_dimensions))
        return sorted((event.dimension, event.value, event.state) for event in events)

    (cpu, _, fired), (slow_cpu, _, expected) = _paired(
        lambda: cohort_tick(engines[0], lambda by: kept.cohort_counts(next(ticks), detector.live_people, by)),
        lambda: cohort_tick(engines[1], lambda by: value_counts(detector.live_peers(), by)))
    if fired != expected:
        raise AssertionError("the cohort rules fired differently from the columns and from the listed peers")
    section.add("two cohort rules (by turn_server, by asn), a tick with nothing else asked (the people read): CPU", cpu,
                "ms", "counted from the listed peers", slow_cpu)
    spent = []
    for _ in range(ROUNDS):
        shared = next(ticks)
        why_panel(shared)
        spent.append(_timed(lambda: cohort_tick(engines[0], lambda by: kept.cohort_counts(shared, detector.live_people,
                                                                                           by)), 1)[0])
    cpu = statistics.median(spent)
    section.add("the same rules, a tick whose people a dashboard's request read: CPU", cpu, "ms",
                "counted from the listed peers", slow_cpu)
    first = found["findings"][0] if found["findings"] else None
    named = (f"{first['dimension']}={first['value']}, {first['poor']} of {first['peers']} peers poor, lift {first['lift']}"
             if first else "none")
    dimensions = sum(len(values) for _, _, values, _, _ in peers) / len(peers)
    section.note(f"{CALLS:,} live calls of two peers held by a call detector; {dimensions:.1f} dimensions per peer "
                 f"on average (asn among 600 values); {found['poor']:,} poor peers. First finding: {named}; "
                 f"{len(found['findings'])} in all, the same from the columns as from the listed peers, and with "
                 f"a Janus view beside every peer (one person each, {people.people:,} people). Medians of {ROUNDS}, "
                 "subject and baseline alternating. The server reads the live people at most once per tick, for the "
                 "tick's first answer, and computes each answer (a dimension's breakdown, the explanation) at most "
                 "once per tick.")


if __name__ == "__main__":
    from .report import Section, text_table

    alone = Section("Diagnosis: breakdown and explain over 10,000 live calls")
    diagnosis(None, alone)
    print(text_table([alone]))
