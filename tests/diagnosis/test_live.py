"""Live answers, one computation per detector tick; the benchmark's fleet."""
from bench import diagnosis
from bench.diagnosis import BAD_TURN, detector_of, live_fleet
from bench.report import Section
from rtcscope.diagnosis.breakdown import breakdown, live_rows, value_counts
from rtcscope.diagnosis.explain import Tally, explain
from rtcscope.diagnosis.live import LiveDiagnosis


def test_the_live_people_are_read_once_and_each_answer_computed_once_per_tick():
    fleet = live_fleet(calls=300)
    detector = detector_of(fleet)
    reads = []

    def live_people():
        reads.append(1)
        return detector.live_people()

    live = LiveDiagnosis(min_poor=5)
    first = live.explain(1000, live_people)
    assert first == explain(Tally.of_live(fleet), 5)
    assert live.explain(1000, live_people) is first
    by_browser = live.breakdown(1000, live_people, "browser")
    assert by_browser == breakdown("browser", "live", live_rows(detector.live_peers(), "browser"))
    assert live.breakdown(1000, live_people, "browser") is by_browser
    assert live.breakdown(1000, live_people, "os")["by"] == "os"
    assert (len(reads), live.reads, live.computed) == (1, 1, 5)  # three answers and two dimensions' rows
    counts = live.cohort_counts(1000, live_people, ("browser", "turn_server"))
    expected = value_counts(detector.live_peers(), ("browser", "turn_server"))
    assert {by: {value: found[:2] for value, found in values.items()} for by, values in counts.items()} == {
        by: {value: tuple(found[:2]) for value, found in values.items()} for by, values in expected.items()}
    assert (len(reads), live.computed) == (1, 6)  # the browser's rows were the breakdown's: turn_server's alone
    del detector.calls["c-0"]
    assert live.explain(2000, live_people)["peers"] == first["peers"] - 2
    assert (len(reads), live.computed) == (2, 7)


def test_the_benchmarks_fleet_has_its_bad_cohort_first_and_nothing_without_it():
    findings = explain(Tally.of_live(live_fleet(calls=2000)), 5)["findings"]
    assert (findings[0]["dimension"], findings[0]["value"]) == ("turn_server", BAD_TURN)
    assert explain(Tally.of_live(live_fleet(calls=2000, bad_cohort=False)), 5)["findings"] == []


def test_the_benchmark_measures_every_answer(monkeypatch):
    monkeypatch.setattr(diagnosis, "CALLS", 1000)
    monkeypatch.setattr(diagnosis, "ROUNDS", 2)
    section = Section("diagnosis")
    diagnosis.diagnosis(None, section)
    assert len(section.figures) == 18 and all(figure.value > 0 for figure in section.figures)
    assert all(figure.baseline for figure in section.figures)
    assert "First finding: turn_server=turn-2.example.com:443" in section.notes[0]
