"""One peer's dimensions as they change, and the bound on distinct values."""
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from ..quality import people
from . import OTHER

# Changes kept per peer, the newest: a peer flapping between two networks stays small.
MAX_CHANGES = 16
DEFAULT_MAX_VALUES = 1000


@dataclass(frozen=True, slots=True)
class Change:
    """A dimension that moved from one value to another (None: no longer known)."""

    at_ms: float
    dimension: str
    before: str
    after: str | None

    def as_json(self):
        return {"at": self.at_ms, "dimension": self.dimension, "from": self.before, "to": self.after}


class Dimensions:
    """A peer's dimensions, learnt from each piece of data that carries some.

    `update` takes what one piece of data says: a name it does not mention
    keeps its value (a request without a User-Agent does not forget the
    browser), a value replaces the old one, None removes it (a peer whose
    route went direct has no TURN server). A value that replaces or removes
    a known one is a `Change`, kept with its time, so the call page can say
    "network_type wifi → cellular at 12:03". Data older than the newest
    applied (a resent report) only fills what is not known yet. `version`
    counts the updates that changed the values, so a reader keeps what it
    derives from them until the next one, in `derived` (the live diagnosis's
    codes of them: rtcscope/diagnosis/columns.py).
    """

    __slots__ = ("values", "changes", "updated_ms", "version", "derived")

    def __init__(self):
        self.values: dict[str, str] = {}
        self.changes: list[Change] = []
        self.updated_ms = float("-inf")
        self.version = 0
        self.derived = None

    def update(self, new: Mapping[str, str | None], at_ms: float) -> bool:
        """Apply `new` as of `at_ms`; True when a value changed."""
        values = self.values
        if new.items() <= values.items() and at_ms >= self.updated_ms:  # nothing new: the common case
            self.updated_ms = at_ms
            return False
        if at_ms < self.updated_ms:
            learnt = {name: value for name, value in new.items() if value is not None and name not in values}
            if not learnt:
                return False
            values.update(learnt)
            self.version += 1
            return True
        self.updated_ms = at_ms
        changed = False
        for name, value in new.items():
            old = values.get(name)
            if value == old:
                continue
            changed = True
            if value is None:
                del values[name]
            else:
                values[name] = value
            if old is not None:
                self.changes.append(Change(at_ms, name, old, value))
        if len(self.changes) > MAX_CHANGES:
            del self.changes[:-MAX_CHANGES]
        self.version += changed
        return changed

    def as_json(self) -> dict[str, str]:
        return dict(self.values)


def person_values(values, view_values):
    """A person's dimension values (quality.people): its client's, and what only the media
    server's view of it knows (its `emitter`); the client's where both have a name. Either
    may be None; with one of them alone, its own dict: read it, never change it."""
    if not view_values:
        return {} if values is None else values
    return {**view_values, **values} if values else view_values


def people_values(values_of):
    """{person: dimension values} of one call's peers' values {peer: {name: value}}."""
    persons, views = people(values_of)
    return {peer: person_values(values_of.get(peer), values_of.get(views.get(peer))) for peer in persons}


def peers_dimensions(points) -> tuple[dict, list]:
    """A call's stored dimension points [(peer, at ms, {name: value or None})], oldest first,
    as the call page shows them: ({peer: {name: value}}, [{"peer", "at", "dimension", "from",
    "to"}] oldest first). Points that repeat what is known (several processes write them) add
    nothing."""
    found = {}
    for peer, at_ms, values in points:
        dimensions = found.get(peer)
        if dimensions is None:
            dimensions = found[peer] = Dimensions()
        dimensions.update(values, at_ms)
    changes = sorted(({"peer": peer, **change.as_json()} for peer, dimensions in found.items()
                      for change in dimensions.changes), key=lambda change: (change["at"], change["peer"]))
    return {peer: dimensions.as_json() for peer, dimensions in sorted(found.items())}, changes


class ValueBound:
    """At most `max_values` distinct values per dimension; a value past the bound
    is `other`, so a client cannot grow memory or InfluxDB's series without end.

    With `forget_after_s` (the retention, say), a value unseen for that long
    gives its place to a new one: it is in no stored series any more. Without
    it, the first values keep their places for the life of the process. A
    value's last sight is renewed at most every 1/16 of `forget_after_s`, so
    the common case, a known value, is one dict lookup.
    """

    def __init__(self, max_values=DEFAULT_MAX_VALUES, forget_after_s=None):
        self.max_values = max_values
        self.forget_after_s = forget_after_s
        self._renew_s = float("inf") if forget_after_s is None else forget_after_s / 16
        self._seen: dict[str, OrderedDict] = {}  # dimension -> {value: last seen (s)}, least recently seen first

    def admit(self, dimension: str, value: str, now_s: float) -> str:
        """`value`, or `other` when the dimension has no place left for it."""
        seen = self._seen.get(dimension)
        if seen is None:
            seen = self._seen[dimension] = OrderedDict()
        last = seen.get(value)
        if last is not None:
            if now_s - last >= self._renew_s:
                seen[value] = now_s
                seen.move_to_end(value)
            return value
        if len(seen) >= self.max_values:
            oldest = next(iter(seen.values()))
            if self.forget_after_s is None or now_s - oldest < self.forget_after_s:
                return OTHER
            seen.popitem(last=False)
        seen[value] = now_s
        return value

    def bound(self, dimensions: Mapping[str, str | None], now_s: float) -> dict[str, str | None]:
        """`dimensions` with every value admitted (None passes through)."""
        bounded = dict(dimensions)
        seen, renew_s = self._seen, self._renew_s
        for name, value in bounded.items():
            if value is None:
                continue
            values = seen.get(name)
            last = None if values is None else values.get(value)
            if last is None or now_s - last >= renew_s:  # the common case, a known value, stops here
                bounded[name] = self.admit(name, value, now_s)
        return bounded
