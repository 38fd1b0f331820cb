"""Breakdowns and explanations of the live fleet, each computed at most once per detector tick.

The live peers change only when the detector ticks, so every request within a
tick (dashboards polling, several viewers) shares one pass over them.
"""
from .breakdown import breakdown, live_rows
from .explain import Tally, explain


class LiveDiagnosis:
    """The live answers of one process. `live_peers` is a function giving a fresh
    iterable of (call, peer, values, verdict, mos); `tick` names the detector's
    tick they are of (a new tick: answers computed again)."""

    def __init__(self, min_poor):
        self.min_poor = min_poor
        self._kept = {}  # name -> (tick, answer); one per dimension at most, and the explanation
        self.computed = 0  # answers computed (not taken from the tick's)

    def breakdown(self, tick, live_peers, by):
        return self._answer(tick, ("breakdown", by), lambda: breakdown(by, "live", live_rows(live_peers(), by)))

    def explain(self, tick, live_peers):
        return self._answer(tick, ("explain",), lambda: explain(Tally.of_live(live_peers()), self.min_poor))

    def _answer(self, tick, name, compute):
        kept = self._kept.get(name)
        if kept is not None and kept[0] == tick:
            return kept[1]
        answer = compute()
        self.computed += 1
        self._kept[name] = (tick, answer)
        return answer
