"""A fleet of live calls written as a client would, for the pages' tests: each (call, peer)'s
counters carried on from one write to the next, good calls by the dozen, and a wait on what a
page element's data attributes say."""
import asyncio

from .api import post
from .browser import WAIT_MS
from .samples import now_ms

# A still window: quality reads the last two minutes, so written samples keep their verdict through a test.
FLEET_CONFIG = {"call_timeout": 120.0, "quality_window": 120.0, "max_new_calls": 100_000, "max_live_calls": 100_000}
CALLS_PER_REQUEST = 10


class Fleet:
    """Cumulative counters per (call, peer), so every write continues where the last one stopped."""

    def __init__(self, http_client, base_url):
        self.http_client = http_client
        self.base_url = base_url
        self.counters = {}

    def samples(self, call, peer, rtt, loss, steps=5, jitter=4.0, end=None):
        end = end or now_ms()
        out = []
        for step in range(steps):
            lost, received = self.counters.get((call, peer), (0.0, 0.0))
            lost, received = lost + round(100 * loss), received + 100 - round(100 * loss)
            self.counters[(call, peer)] = (lost, received)
            out.append({"call": call, "peer": peer, "kind": "audio", "ts": end - (steps - 1 - step) * 2000,
                        "stats": {"rtt": rtt, "jitter": jitter, "packetsLost": lost, "packetsReceived": received}})
        return out

    def call(self, call, rtt=40.0, loss=0.0, bad_rtt=None, bad_loss=None, **kwargs):
        """Two peers: alice with rtt/loss, bob with bad_rtt/bad_loss when given (the bad side)."""
        return (self.samples(call, "alice", rtt, loss, **kwargs)
                + self.samples(call, "bob", bad_rtt or rtt, loss if bad_loss is None else bad_loss, **kwargs))

    async def write(self, samples):
        """In requests of at most ten calls each, as a client under the server's per-request call limit."""
        by_call = {}
        for sample in samples:
            by_call.setdefault(sample["call"], []).append(sample)
        calls = list(by_call)
        bodies = [[s for call in calls[i:i + CALLS_PER_REQUEST] for s in by_call[call]]
                  for i in range(0, len(calls), CALLS_PER_REQUEST)]
        for i in range(0, len(bodies), 20):
            results = await asyncio.gather(*(post(self.http_client, self.base_url + "/v1/stats/write/", body)
                                             for body in bodies[i:i + 20]))
            for status, result, _ in results:
                assert status == 200, result


def good_calls(fleet, count, prefix="call-"):
    """`count` good calls with a spread of round-trip times (distinct MOS values)."""
    return [s for i in range(count) for s in fleet.call(f"{prefix}{i:02d}", rtt=20.0 + 3 * i)]


async def wait_for_dataset(page, selector, key, value, timeout=WAIT_MS):
    try:
        await page.wait_for_function(
            "([selector, key, value]) => (document.querySelector(selector) || {dataset: {}}).dataset[key] === value",
            arg=[selector, key, str(value)], timeout=timeout)
    except Exception:
        found = await page.eval_on_selector(selector, "(el, key) => el.dataset[key]", key)
        raise AssertionError(f"{selector} data-{key} is {found!r}, not {value!r}") from None
