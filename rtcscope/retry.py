"""Retry delays: exponential backoff with jitter, for every retry loop of the server
(the batching writer, webhook deliveries, the start-up wait for InfluxDB).

Jitter keeps processes that failed together (InfluxDB restarted under all of
them, a receiver back up) from retrying in step.
"""
import random

JITTERS = ("decorrelated", "full")


class Backoff:
    """Successive delays, in seconds, before the retries of one operation; `reset()` after a
    success. `next(backoff)` is the next delay.

    - "decorrelated": each delay is drawn between `initial` and `factor` times the previous
      one, capped at `maximum`: never shorter than `initial`, growing about 1.5 times a retry
      with the default factor of 3.
    - "full": the n-th delay is drawn between 0 and initial * factor**n, capped at `maximum`:
      the widest spread, some retries at once.

    `rng`: a random.Random for repeatable delays (tests); the random module by default."""

    def __init__(self, initial, maximum, *, factor=3.0, jitter="decorrelated", rng=None):
        if not (initial > 0 and maximum > 0 and factor >= 1):
            raise ValueError(f"backoff needs initial > 0, maximum > 0 and factor >= 1, got {initial}, {maximum}, {factor}")
        if jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {', '.join(JITTERS)}, got {jitter!r}")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.rng = rng if rng is not None else random
        self.reset()

    def reset(self):
        """The operation succeeded: the next failure starts from `initial` again."""
        self._ceiling = min(self.initial, self.maximum)  # "full": the bound of the next draw
        self._previous = self.initial  # "decorrelated": the last delay given

    def __iter__(self):
        return self

    def __next__(self):
        if self.jitter == "full":
            delay = self.rng.uniform(0.0, self._ceiling)
            self._ceiling = min(self.maximum, self._ceiling * self.factor)
        else:
            delay = min(self.maximum, self.rng.uniform(self.initial, self._previous * self.factor))
            self._previous = delay
        return delay
