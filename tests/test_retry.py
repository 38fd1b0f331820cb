"""retry.Backoff on its own: delays within their bounds, growing, jittered, reset by a success."""
import random

import pytest

from rtcscope.retry import Backoff


class Highest:
    """An rng that always draws the top of the range: the delays' upper bounds."""

    def uniform(self, low, high):
        return high


class Lowest:
    def uniform(self, low, high):
        return low


def delays(backoff, count):
    return [next(backoff) for _ in range(count)]


def test_full_jitter_bounds_grow_by_the_factor_up_to_the_maximum():
    assert delays(Backoff(0.5, 10, factor=2, jitter="full", rng=Highest()), 8) == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert delays(Backoff(0.5, 10, factor=2, jitter="full", rng=Lowest()), 3) == [0, 0, 0]


def test_decorrelated_delays_never_go_below_initial_nor_above_the_maximum():
    assert delays(Backoff(1, 60, rng=Highest()), 6) == [3, 9, 27, 60, 60, 60]
    assert delays(Backoff(1, 60, rng=Lowest()), 3) == [1, 1, 1]


@pytest.mark.parametrize("jitter", ["full", "decorrelated"])
def test_jittered_delays_stay_in_range_and_spread(jitter):
    rng = random.Random(7)
    backoff = Backoff(0.2, 10, factor=2 if jitter == "full" else 3, jitter=jitter, rng=rng)
    ceiling, previous, seen = 0.2, 0.2, []
    for _ in range(200):
        delay = next(backoff)
        if jitter == "full":
            assert 0 <= delay <= ceiling
            ceiling = min(10, ceiling * 2)
        else:
            assert 0.2 <= delay <= min(10, previous * 3)
            previous = delay
        seen.append(delay)
    late = seen[20:]  # grown to the cap: spread under it, not all equal (decorrelated draws clip at the cap)
    assert len(set(late)) > len(late) / 2
    assert max(late) - min(late) > (5 if jitter == "full" else 2)


@pytest.mark.parametrize("jitter", ["full", "decorrelated"])
def test_the_same_seed_gives_the_same_delays(jitter):
    first = delays(Backoff(1, 60, jitter=jitter, rng=random.Random(3)), 10)
    assert first == delays(Backoff(1, 60, jitter=jitter, rng=random.Random(3)), 10)
    assert first != delays(Backoff(1, 60, jitter=jitter, rng=random.Random(4)), 10)


@pytest.mark.parametrize("jitter", ["full", "decorrelated"])
def test_a_reset_starts_again_from_initial(jitter):
    backoff = Backoff(1, 60, factor=2, jitter=jitter, rng=Highest())
    grown = delays(backoff, 5)
    backoff.reset()
    assert delays(backoff, 5) == grown
    assert grown[0] <= 2 and grown[-1] > grown[0] * 8


def test_a_maximum_below_initial_caps_every_delay():
    """A writer whose retry_max is set under its retry_initial (tests do) retries at the maximum."""
    assert delays(Backoff(0.2, 0.1, rng=Highest()), 3) == [0.1, 0.1, 0.1]
    assert max(delays(Backoff(0.2, 0.1, jitter="full", rng=Highest()), 3)) == 0.1


@pytest.mark.parametrize("arguments", [(0, 10), (1, 0), (-1, 10)])
def test_bad_bounds_are_refused(arguments):
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(*arguments)
    with pytest.raises(ValueError, match="jitter must be"):
        Backoff(1, 10, jitter="equal")
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(1, 10, factor=0.5)
