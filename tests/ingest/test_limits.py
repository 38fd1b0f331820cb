"""The call admission rules on their own: client keys, the token bucket, the
fleet cap and the bounded tables, on a clock the test moves."""
import tracemalloc

import pytest

from rtcscope.ingest.limits import OVERFLOW_CLIENT, CallAdmission, client_key


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def admission(live=(), **options):
    clock = Clock()
    limits = CallAdmission(lambda: live, clock=clock, **options)
    return limits, clock


def calls(prefix, count):
    return {f"{prefix}-{n}" for n in range(count)}


@pytest.mark.parametrize("address, key", [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:0db8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("::1", "::/64"),
    ("not:an:address", "not:an:address"),
])
def test_client_key_groups_ipv6_per_64(address, key):
    assert client_key(address) == key


def test_one_ipv6_64_shares_one_budget():
    limits, _ = admission(max_new_calls=10)
    for host in range(10):
        assert limits.admit(client_key(f"2001:db8:7:7::{host + 1:x}"), {f"c{host}"}) is None
    refusal = limits.admit(client_key("2001:db8:7:7:ffff::1"), {"c-next"})
    assert (refusal.status, refusal.code) == (429, "too_many_new_calls")
    assert limits.admit(client_key("2001:db8:7:8::1"), {"c-other-net"}) is None


def test_too_many_calls_in_one_request_is_413_and_nothing_counted():
    limits, _ = admission(max_calls_per_request=10)
    refusal = limits.admit("a", calls("c", 11))
    assert (refusal.status, refusal.code, refusal.retry_after) == (413, "too_many_calls", None)
    assert "10" in refusal.message
    assert not limits.seen and not limits.buckets and not limits.pending
    assert limits.admit("a", calls("c", 10)) is None


def test_bucket_allows_a_burst_then_refuses_with_the_wait_for_a_token():
    limits, clock = admission(max_new_calls=120, window=60.0)  # two tokens a second
    for n in range(12):
        assert limits.admit("a", calls(f"burst{n}", 10)) is None
    refusal = limits.admit("a", {"one-more"})
    assert (refusal.status, refusal.code, refusal.retry_after) == (429, "too_many_new_calls", 1)
    refusal = limits.admit("a", calls("ten", 10))
    assert refusal.retry_after == 5  # ten tokens at two a second
    assert limits.admit("b", {"another-client"}) is None  # budgets are per client
    clock.now += 0.5
    assert limits.admit("a", {"one-more"}) is None  # one token back
    assert limits.admit("a", {"two-more"}).retry_after == 1
    clock.now += 60
    assert limits.admit("a", calls("refilled", 10)) is None


def test_known_calls_cost_nothing():
    limits, clock = admission(max_new_calls=3, call_timeout=15.0)
    assert limits.admit("a", {"x", "y", "z"}) is None
    for _ in range(100):
        clock.now += 1
        assert limits.admit("a", {"x", "y", "z"}) is None  # seen within the timeout
    clock.now += 16
    assert limits.admit("a", {"x"}) is None  # unseen for a timeout: new again, and the bucket has refilled


def test_calls_the_detector_lists_as_live_are_not_new():
    live = {"live-1", "live-2"}
    limits, _ = admission(live=live, max_new_calls=1)
    assert limits.admit("a", {"live-1", "live-2", "mine"}) is None
    assert limits.admit("b", {"live-1"}) is None  # another client posting to a live call
    assert limits.admit("b", {"live-2", "mine"}) is None  # seen here already
    assert limits.admit("a", {"new"}).code == "too_many_new_calls"


def test_the_live_view_is_read_once_per_tick():
    reads = []

    def live():
        reads.append(1)
        return {"l"}

    clock = Clock()
    limits = CallAdmission(live, tick=1.0, clock=clock)
    for n in range(50):
        limits.admit("a", {f"c{n}"})
    assert len(reads) == 1
    clock.now += 1
    limits.admit("a", {"later"})
    assert len(reads) == 2


def test_the_fleet_cap_refuses_new_calls_and_lets_live_ones_carry_on():
    live = [f"l{n}" for n in range(95)]
    limits, clock = admission(live=live, max_live_calls=100, tick=1.0, flush_interval=0.5)
    assert limits.admit("a", calls("new", 5)) is None  # 95 live + 5 admitted = the cap
    assert limits.live_estimate == 100
    refusal = limits.admit("b", {"one-too-many"})
    assert (refusal.status, refusal.code, refusal.retry_after) == (429, "too_many_live_calls", 3)
    assert limits.admit("b", {"l3", "l4"}) is None  # live calls carry on, from anyone
    assert limits.admit("a", {"new-1"}) is None  # and so do the calls just admitted
    # Once the detector has had time to see them, they are counted once, as its live calls.
    live.extend(sorted(calls("new", 5)))
    clock.now += 2.6
    assert limits.live_estimate == 100
    del live[:10]  # ten calls ended
    clock.now += 1
    assert limits.live_estimate == 90
    assert limits.admit("b", calls("room", 10)) is None
    assert limits.admit("b", {"full-again"}).code == "too_many_live_calls"


def test_without_a_detector_the_cap_counts_the_calls_this_process_carries():
    """An ingest-only process (--detector=false) has no fleet view: its live calls are
    the ones it took samples of within the call timeout."""
    clock = Clock()
    limits = CallAdmission(None, max_live_calls=10, max_new_calls=100, call_timeout=15.0, clock=clock)
    assert limits.admit("a", calls("c", 8)) is None
    assert limits.live_estimate == 8
    assert limits.admit("b", calls("d", 3)).code == "too_many_live_calls"
    assert limits.admit("b", calls("d", 2)) is None
    clock.now += 10
    assert limits.admit("a", {"c-0", "c-1"}) is None  # calls carrying on are not new: no token, no room needed
    assert limits.admit("b", {"e-0"}).code == "too_many_live_calls"
    clock.now += 6  # the other eight have sent nothing for a call timeout: ended here
    assert limits.live_estimate == 2
    assert limits.admit("b", calls("e", 8)) is None
    assert limits.live_estimate == 10
    assert limits.buckets["a"][0] == 92  # its carrying-on calls cost no token


def test_a_refused_request_leaves_no_trace():
    limits, _ = admission(max_new_calls=5)
    assert limits.admit("a", {"u", "v", "w"}) is None
    assert limits.admit("a", {"x", "y", "z"}).code == "too_many_new_calls"
    assert set(limits.seen) == {"u", "v", "w"} and len(limits.pending) == 3 and limits.buckets["a"][0] == 2


def test_the_seen_table_is_trimmed_by_age_and_size():
    limits, clock = admission(max_new_calls=10_000, max_seen_calls=100, call_timeout=15.0)
    for n in range(300):
        limits.admit("a", {f"c{n}"})
    assert len(limits.seen) == 100 and "c299" in limits.seen and "c199" not in limits.seen
    clock.now += 16
    limits.admit("a", {"late"})
    assert list(limits.seen) == ["late"]


def test_a_full_bucket_table_puts_unknown_clients_in_one_shared_bucket():
    limits, clock = admission(max_new_calls=5, window=60.0, max_clients=3)
    for client in ("a", "b", "c"):
        assert limits.admit(client, calls(client, 5)) is None  # three drained buckets
    # The table is full of active buckets: newcomers share one, nobody's is reset.
    assert limits.admit("d", calls("d", 5)) is None
    assert limits.admit("e", {"e-1"}).code == "too_many_new_calls"
    assert limits.admit("a", {"a-more"}).code == "too_many_new_calls"
    assert set(limits.buckets) == {"a", "b", "c", OVERFLOW_CLIENT}
    # Buckets untouched for a window are full again and make room.
    clock.now += 61
    assert limits.admit("e", {"e-1"}) is None
    assert "e" in limits.buckets and "a" not in limits.buckets


def _traced_bytes(fill):
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_bytes_per_table_entry_are_bounded():
    """The figures docs/security.md quotes, measured with 36-character call ids
    and IPv6 clients (their keys are the longest), strings included."""
    count = 20_000

    def measure(address):
        limits, clock = admission(max_new_calls=10**9, max_live_calls=10**9)

        def fill():
            for n in range(count):
                clock.now += 1e-6  # a fresh time per request, as time.monotonic() gives
                limits.admit(client_key(address(n)), {f"{n:08d}-77aa-4f1e-9a51-0c3b2f1a9e10"})

        return limits, _traced_bytes(fill) / count

    limits, per_call = measure(lambda n: "198.51.100.1")  # a seen call and its pending time
    assert len(limits.seen) == len(limits.pending) == count and len(limits.buckets) == 1
    limits, per_call_and_client = measure(lambda n: f"2001:db8:{n >> 16 & 0xffff:x}:{n & 0xffff:x}::1")
    assert len(limits.buckets) == count
    per_client = per_call_and_client - per_call
    print(f"bytes per seen call: {per_call:.0f}, per client bucket: {per_client:.0f}")
    assert 50 < per_call < 400, per_call
    assert 50 < per_client < 400, per_client


def test_posting_to_live_calls_needs_no_bucket():
    limits, _ = admission(live={"live"})
    for n in range(100):
        assert limits.admit(f"10.0.0.{n}", {"live"}) is None
    assert not limits.buckets and not limits.pending
