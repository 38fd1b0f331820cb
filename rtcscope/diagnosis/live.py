"""Breakdowns and explanations of the live fleet, each computed at most once per detector tick.

The live peers change only when the detector ticks, so every request within a
tick (dashboards polling, several viewers) shares one pass over them: the
first answer of a tick reads the detector's live peers into a list, every
answer of the tick is computed from that list once.
"""
from .breakdown import breakdown, live_rows
from .explain import Tally, explain


class LiveDiagnosis:
    """The live answers of one process. `live_peers` is a function giving a fresh
    iterable of (call, peer, values, verdict, mos); `tick` names the detector's
    tick they are of (a new tick: the peers read and the answers computed again)."""

    def __init__(self, min_poor):
        self.min_poor = min_poor
        self._tick = None
        self._peers = None  # the tick's live peers, read by its first answer
        self._answers = {}  # name -> answer of the tick: one per dimension at most, and the explanation
        self.reads = 0  # passes over the detector's live peers
        self.computed = 0  # answers computed (not taken from the tick's)

    def breakdown(self, tick, live_peers, by):
        return self._answer(tick, live_peers, ("breakdown", by), lambda peers: breakdown(by, "live", live_rows(peers, by)))

    def explain(self, tick, live_peers):
        return self._answer(tick, live_peers, ("explain",), lambda peers: explain(Tally.of_live(peers), self.min_poor))

    def _answer(self, tick, live_peers, name, compute):
        if tick != self._tick:
            self._tick, self._peers, self._answers = tick, None, {}
        answer = self._answers.get(name)
        if answer is None:
            if self._peers is None:
                self._peers = list(live_peers())
                self.reads += 1
            answer = self._answers[name] = compute(self._peers)
            self.computed += 1
        return answer
