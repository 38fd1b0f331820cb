"""Breakdowns and explanations of the live fleet, each computed at most once per detector tick.

The live people change only when the detector ticks, so every request within a
tick (dashboards polling, several viewers) shares one pass over them: the
first answer of a tick reads the detector's live people into columns
(columns.py), every answer of the tick is computed from those once.
"""
from .breakdown import breakdown
from .columns import PeopleCodes
from .explain import explain


class LiveDiagnosis:
    """The live answers of one process. `live_people` is a function giving a fresh
    iterable of (call, peer, dimensions, view dimensions, mos), as the detector's
    live_people(); `tick` names the detector's tick they are of (a new tick: the
    people read and the answers computed again)."""

    def __init__(self, min_poor):
        self.min_poor = min_poor
        self._codes = PeopleCodes()
        self._tick = None
        self._people = None  # the tick's live people (columns.LivePeople), read by its first answer
        self._answers = {}  # name -> answer of the tick: one per dimension at most, and the explanation
        self.reads = 0  # passes over the detector's live people
        self.computed = 0  # answers computed (not taken from the tick's)

    def breakdown(self, tick, live_people, by):
        return self._answer(tick, live_people, ("breakdown", by),
                            lambda _: breakdown(by, "live", self._rows(tick, live_people, by)))

    def explain(self, tick, live_people):
        return self._answer(tick, live_people, ("explain",), lambda people: explain(people.tally(), self.min_poor))

    def cohort_counts(self, tick, live_people, dimensions):
        """{dimension: {value: (peers, poor, mos_p50)}} of the live people, the people without
        the dimension under None: what cohort alert rules evaluate each tick
        (alerts.state.AlertEngine.evaluate_cohorts), from the tick's columns that its
        breakdowns and explanation share."""
        return {by: {value: (peers, poor, mos) for value, peers, poor, mos in self._rows(tick, live_people, by)}
                for by in dimensions}

    def _rows(self, tick, live_people, by):
        """[(value, peers, poor, mos_p50)] of dimension `by`, once per tick."""
        return self._answer(tick, live_people, ("rows", by), lambda people: people.rows(by))

    def _answer(self, tick, live_people, name, compute):
        if tick != self._tick:
            self._tick, self._people, self._answers = tick, None, {}
        answer = self._answers.get(name)
        if answer is None:
            if self._people is None:
                self._people = self._codes.read(live_people())
                self.reads += 1
            answer = self._answers[name] = compute(self._people)
            self.computed += 1
        return answer
