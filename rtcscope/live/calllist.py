"""The live call list pushed on /ws/calls: its viewers, each live call's quality as they
were last told it, the fleet's aggregates, and the snapshot a new viewer gets, worst first.
Each message is serialised once and the same bytes go to every viewer (docs/live.md,
"ws://HOST/ws/calls")."""
from . import fleet
from .calls import ended_reason
from .graphs import deliver, dumps


class CallList:
    """What the /ws/calls viewers were told, and the changes a tick makes to it."""

    def __init__(self):
        self.viewers = set()
        self.published = {}  # live call -> the CallQuality viewers were last told
        self.fleet = None  # the fleet aggregates at the last tick
        self._sent_fleet = None
        self._snapshot = None

    def add(self, viewer, live_states):
        """Send `viewer` the snapshot, then every change; `live_states()`: {call: CallState} of
        the live calls, read only when the snapshot changed since it was last serialised."""
        viewer.send(self.snapshot(live_states))
        self.viewers.add(viewer)

    def discard(self, viewer):
        self.viewers.discard(viewer)

    def snapshot(self, live_states):
        """The snapshot message, worst first, serialised once per change."""
        if self._snapshot is None:
            entries = sorted((self._entry(call, state) for call, state in live_states().items()),
                             key=lambda entry: fleet.worst_key(entry["call"], entry["quality"]))
            self._snapshot = dumps({"type": "snapshot", "calls": entries, "fleet": self.fleet})
        return self._snapshot

    def _entry(self, call, state):
        return {"call": call, "peers": state.peers, "started": state.started,
                "quality": self.published[call].as_json()}

    def news(self, live, qualities):
        """[(call, its CallQuality)] of the `live` calls whose quality viewers are to be told:
        those never told (a call that started), and those whose quality changed enough
        (fleet.CallQuality.differs_from) since they were last told; `qualities`: {live call:
        CallQuality}, each judged anew this tick. Reads what was told, changes nothing: the
        tick's worker thread runs it."""
        published, news = self.published, []
        for call in live:
            current = qualities[call]
            before = published.get(call)
            if current is not before and (before is None or current.differs_from(before)):
                news.append((call, current))
        return news

    def publish(self, started, ended, calls, previous, live, news, aggregates):
        """One `calls` message when a call started, ended or changed enough (`news`, as
        `news` gave them), or the fleet changed. `started`, `ended`: the tick's [(call, at)];
        `calls`, `previous`: {call: CallState} of this tick and the one before;
        `aggregates`: the fleet's."""
        self.fleet = aggregates
        ended_entries = []
        for call, at in ended:
            ended_entries.append({"call": call, "at": at, "reason": ended_reason(calls.get(call) or previous.get(call))})
        started_calls = [call for call, _ in started if call in live]
        changed = []
        for call, current in news:
            if call in self.published and call not in started_calls:
                changed.append(call)
            self.published[call] = current
        for call in [call for call in self.published if call not in live]:
            del self.published[call]
        self._snapshot = None
        if not (started_calls or changed or ended_entries or self.fleet != self._sent_fleet):
            return
        self._sent_fleet = self.fleet

        def by_worst(call):
            return self.published[call].worst_key(call)

        data = dumps({"type": "calls",
                      "started": [self._entry(call, calls[call]) for call in sorted(started_calls, key=by_worst)],
                      "changed": [{"call": call, "quality": self.published[call].as_json()}
                                  for call in sorted(changed, key=by_worst)],
                      "ended": ended_entries, "fleet": self.fleet})
        self.send(data)

    def send(self, data):
        """One serialised message to every viewer."""
        deliver(data, self.viewers, self.discard)
