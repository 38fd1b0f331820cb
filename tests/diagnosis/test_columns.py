"""The live people as columns give the answers the straightforward counts give: random
fleets held by a call detector (clients, media server views, peers without dimensions or
a MOS, values past the bound), breakdowns and explanations both ways."""
import random

import pytest

from rtcscope.diagnosis import columns
from rtcscope.diagnosis.breakdown import breakdown, live_rows, value_counts
from rtcscope.diagnosis.columns import PeopleCodes
from rtcscope.diagnosis.explain import Tally, explain
from rtcscope.dimensions import OTHER
from rtcscope.dimensions.peer import Dimensions
from tests.support.fleets import held_by_detector

DIMENSIONS = {"browser": ("Chrome", "Firefox", "Safari"), "os": ("Windows", "Linux", OTHER),
              "turn_server": ("t-1:3478", "t-2:443"), "asn": tuple(f"AS{n}" for n in range(12)),
              "network_type": ("wifi", "cellular"), "candidate_type": ("host", "srflx", "relay")}
VIEW_DIMENSIONS = {"emitter": ("janus-1", "janus-2"), "candidate_type": ("host", "prflx"), "transport": ("udp", "tcp")}
BY = (*DIMENSIONS, "emitter", "transport", "region")


def values_of(rng, names):
    return {name: rng.choice(choices) for name, choices in names.items() if rng.random() < 0.7}


def window_of(rng, bad):
    """A quality window, poor often when `bad`; MOS of many values, so medians are told apart."""
    if rng.random() < 0.1:
        return None
    if bad and rng.random() < 0.8:
        return {"rtt": rng.uniform(500, 900), "jitter": rng.uniform(20, 60), "loss": rng.uniform(0.05, 0.2)}
    return {"rtt": rng.uniform(20, 400), "jitter": rng.uniform(1, 30), "loss": rng.uniform(0, 0.03)}


def random_fleet(seed):
    """[(call, peer, values or None, window or None)]: calls of clients, some with a view of a
    client, one of no client, or views alone; a TURN server often poor."""
    rng = random.Random(seed)
    held = []
    for index in range(rng.randint(0, 400)):
        call = f"c-{index}"
        clients = [f"p{n}" for n in range(rng.randint(0, 3))]
        views = [f"{peer}@janus" for peer in clients if rng.random() < 0.4]
        if not clients or rng.random() < 0.05:
            views.append(f"janus-{index}@janus")
        for peer in clients + views:
            values = None if rng.random() < 0.05 else values_of(rng, VIEW_DIMENSIONS if "@" in peer else DIMENSIONS)
            held.append((call, peer, values, window_of(rng, values is not None and values.get("turn_server") == "t-2:443")))
    return held


def assert_same_answers(detector, people, min_poor=(1, 3, 5)):
    listed = list(detector.live_peers())
    for found in min_poor:
        assert explain(people.tally(), found) == explain(Tally.of_live(listed), found)
    counted = value_counts(listed, BY)
    for by in BY:
        rows = people.rows(by)
        assert breakdown(by, "live", rows) == breakdown(by, "live", live_rows(listed, by)), by
        # what cohort rules evaluate: each value's peers and poor peers
        assert {value: (peers, poor) for value, peers, poor, _ in rows} == {
            value: (peers, poor) for value, (peers, poor, _) in counted[by].items()}, by


@pytest.mark.parametrize("seed", range(40))
def test_the_columns_answers_are_the_straightforward_ones(seed):
    detector = held_by_detector(random_fleet(seed))
    codes = PeopleCodes()
    assert_same_answers(detector, codes.read(detector.live_people()))
    assert_same_answers(detector, codes.read(detector.live_people()))  # the codes kept


def test_the_straightforward_and_the_columns_find_the_bad_cohort():
    detector = held_by_detector(random_fleet(7))
    first = explain(PeopleCodes().read(detector.live_people()).tally(), 5)["findings"][0]
    assert (first["dimension"], first["value"]) == ("turn_server", "t-2:443")


def test_a_change_of_dimensions_is_read_and_nothing_else_coded_again():
    detector = held_by_detector(random_fleet(3))
    codes = PeopleCodes()
    people = codes.read(detector.live_people())
    coded = len(people.names)
    assert len(codes.read(detector.live_people()).names) == coded  # nothing new: no new code
    client = next(found for (_, peer), found in detector.dimensions.items() if "@" not in peer)
    client.update({"browser": "Edge", "region": "eu-west"}, 1)
    view = next(found for (_, peer), found in detector.dimensions.items() if peer.startswith("p0@"))
    view.update({"emitter": "janus-3"}, 1)
    people = codes.read(detector.live_people())
    assert {name for name in people.names[coded:]} == {("browser", "Edge"), ("region", "eu-west"),
                                                     ("emitter", "janus-3")}
    assert_same_answers(detector, people)
    # The view learnt again (its call forgotten, then seen again): another object, at the same version.
    key = next(key for key, found in detector.dimensions.items() if found is view)
    detector.dimensions[key] = again = Dimensions()
    again.update({"emitter": "janus-4"}, 1)
    again.update({"transport": "tcp"}, 2)
    assert again.version == view.version
    assert_same_answers(detector, codes.read(detector.live_people()))


def test_codes_of_values_gone_are_dropped(monkeypatch):
    monkeypatch.setattr(columns, "SPARE_CODES", 0)
    detector = held_by_detector(random_fleet(5))
    codes = PeopleCodes()
    codes.read(detector.live_people())
    for (call, _), found in list(detector.dimensions.items())[:200]:
        found.update({"asn": f"AS{call}"}, 1)  # a value of its own: most codes are one person's
    people = codes.read(detector.live_people())
    assert_same_answers(detector, people)
    for found in list(detector.dimensions.values())[:200]:
        found.update({"asn": "AS1"}, 2)
    gone = codes.read(detector.live_people())  # more codes than twice those in use: dropped after this read
    assert_same_answers(detector, gone)
    again = codes.read(detector.live_people())
    assert len(again.names) == again.in_use < len(gone.names)
    assert_same_answers(detector, again)


def test_an_empty_fleet():
    people = PeopleCodes().read(held_by_detector([]).live_people())
    assert explain(people.tally(), 5) == {"peers": 0, "poor": 0, "findings": []}
    assert breakdown("os", "live", people.rows("os"))["values"] == []


def test_two_readers_of_one_detector_keep_their_own_codes():
    detector = held_by_detector(random_fleet(11))
    first, second = PeopleCodes(), PeopleCodes()
    second.read(detector.live_people())
    first.read(detector.live_people())  # the people's kept codes are now the first reader's
    assert_same_answers(detector, second.read(detector.live_people()))
    assert_same_answers(detector, first.read(detector.live_people()))
