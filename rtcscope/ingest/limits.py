"""Admission of new calls: how many calls one client may create, and the fleet.

Every call adds series to InfluxDB, so an anonymous client must not be able
to invent calls without bound. Every ingest path (the POST API, websocket
ingest, rtcstats) asks the one `CallAdmission` of its process with the
client's key and the distinct calls of one request or message; the answer is
None (go ahead) or a `Refusal` to send back, with nothing of the request
stored. Rules (see docs/security.md):

- at most `max_calls_per_request` distinct calls in one request → 413;
- a call is new when this process has not seen it within the call timeout
  and the detector does not list it as live;
- each client has a token bucket of `max_new_calls` per `window`: a new call
  takes a token; too few → 429 with the seconds until enough are back;
- the fleet's live calls (the detector's count, plus the new calls this
  process admitted that the detector cannot have seen yet) stay at or below
  `max_live_calls` → 429 for new calls beyond; live calls carry on.

Bookkeeping is bounded: both tables are ordered dicts trimmed from their
oldest end by age and by size. A full table fails safe: a call dropped from
the recently-seen table early costs its client a token again (the detector
still knows it once it is live); a client that finds the bucket table full
of active buckets shares one overflow bucket with every other such client,
so a flood of addresses cannot reset anyone's budget.
"""
import math
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass

# Hard caps of the two tables (entries); docs/security.md gives the measured
# bytes per entry.
MAX_CLIENTS = 100_000
MAX_SEEN_CALLS = 100_000
OVERFLOW_CLIENT = "(overflow)"
IPV4_MAPPED = bytes(10) + b"\xff\xff"


@dataclass(frozen=True)
class Refusal:
    """What to answer instead of storing: `retry_after` in whole seconds, None
    when retrying the same request cannot help."""

    status: int
    code: str
    message: str
    retry_after: int | None = None


def client_key(address):
    """The client a request is counted against: its IPv4 address, or the /64
    network of an IPv6 one (one subscriber's LAN; a host picks any address in
    it at will). IPv4-mapped IPv6 counts as the IPv4 address. (inet_pton is
    six times faster than the ipaddress module here, on every request.)"""
    if ":" not in address:
        return address  # IPv4 (tornado gives a valid one) or a non-IP peer such as a unix socket
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    except OSError:
        return address
    if packed[:12] == IPV4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


class CallAdmission:
    """The per-process limits on calls; one instance, shared by every ingest path.

    `live_calls` returns the detector's live calls (a collection, as of its
    last tick); it is read at most once per `tick` seconds. None in a process
    without a detector (an ingest-only one): the live calls are then the calls
    this process took samples of within the call timeout, and the cap counts
    those."""

    def __init__(self, live_calls, *, max_new_calls=120, window=60.0, max_calls_per_request=10,
                 max_live_calls=50_000, call_timeout=15.0, tick=1.0, flush_interval=0.5,
                 max_clients=MAX_CLIENTS, max_seen_calls=MAX_SEEN_CALLS, clock=time.monotonic):
        self._read_live = live_calls
        self.capacity = max_new_calls
        self.window = window
        self.rate = max_new_calls / window  # tokens per second
        self.max_calls_per_request = max_calls_per_request
        self.max_live_calls = max_live_calls
        self.call_timeout = call_timeout
        self.tick = tick
        # The detector's count reflects a change after the writer's flush,
        # its next tick and our re-read of it.
        self.live_retry_after = max(1, math.ceil(flush_interval + 2 * tick))
        self.max_clients = max_clients
        self.max_seen_calls = max_seen_calls
        self.clock = clock
        self.buckets = OrderedDict()  # client -> [tokens, updated], least recently updated first
        self.seen = OrderedDict()  # call -> last seen, least recently seen first
        # New calls admitted here that the detector did not list yet -> admitted at, oldest first.
        self.pending = OrderedDict()
        self._live = frozenset()
        self._live_read_at = -math.inf

    def admit(self, client, calls, max_calls=None):
        """None when the request may be stored (its new calls are then counted),
        else the Refusal to answer; `calls` are the request's distinct call ids.
        `max_calls`: the most calls in one request when the sender, not the client
        library, decides what a request holds (a media server's grouped events)."""
        max_calls = self.max_calls_per_request if max_calls is None else max_calls
        if len(calls) > max_calls:
            return Refusal(413, "too_many_calls",
                           f"{len(calls)} calls in one request; at most {max_calls}: "
                           "send each call's samples separately")
        now = self.clock()
        seen = self.seen
        fresh_after = now - self.call_timeout
        live = self._live_view(now)
        new = [call for call in calls if seen.get(call, -math.inf) < fresh_after and call not in live]
        if new:
            bucket = self._bucket(client, now)
            refusal = self._lacks_tokens(bucket, len(new)) or self._lacks_room(len(new), now)
            if refusal:
                return refusal
            bucket[0] = max(0.0, bucket[0] - len(new))
            if self._read_live is not None:  # else they count as seen, below
                self.pending.update(dict.fromkeys(new, now))
        for call in calls:
            seen[call] = now
            seen.move_to_end(call)
        self._trim_seen(fresh_after)
        return None

    @property
    def live_estimate(self):
        """The fleet's live calls as this process counts them for the cap."""
        now = self.clock()
        return len(self._live_view(now)) + len(self._pending(now))

    def _live_view(self, now):
        if self._read_live is None:
            self._trim_seen(now - self.call_timeout)
            return self.seen
        if now - self._live_read_at >= self.tick:
            self._live = live = frozenset(self._read_live())
            self._live_read_at = now
            for call in [call for call in self.pending if call in live]:
                del self.pending[call]  # counted as live from now on
        return self._live

    def _bucket(self, client, now):
        """The client's bucket, refilled up to now (a new client's is full)."""
        buckets = self.buckets
        bucket = buckets.get(client)
        if bucket is None:
            self._trim_buckets(now)
            if len(buckets) >= self.max_clients:
                client = OVERFLOW_CLIENT
                bucket = buckets.get(client)
            if bucket is None:
                bucket = buckets[client] = [float(self.capacity), now]
        else:
            bucket[0] = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            buckets.move_to_end(client)
        return bucket

    def _lacks_tokens(self, bucket, needed):
        needed = min(needed, self.capacity)  # a request can never need more than a full bucket
        if bucket[0] >= needed:
            return None
        wait = math.ceil((needed - bucket[0]) / self.rate)
        return Refusal(429, "too_many_new_calls",
                       f"more than {self.capacity} new calls per {self.window:g} s from this client; "
                       f"retry in {wait} s", retry_after=max(1, wait))

    def _lacks_room(self, count, now):
        if len(self._live_view(now)) + len(self._pending(now)) + count <= self.max_live_calls:
            return None
        return Refusal(429, "too_many_live_calls",
                       f"the fleet has {self.max_live_calls} live calls, the most this server takes; "
                       "calls already live carry on", retry_after=self.live_retry_after)

    def _pending(self, now):
        """Admitted calls not yet counted by the detector; one that never
        reaches it (its request failed later) is forgotten after a call timeout."""
        pending, cutoff = self.pending, now - self.call_timeout
        while pending:
            call, at = next(iter(pending.items()))
            if at >= cutoff:
                break
            del pending[call]
        return pending

    def _trim_seen(self, fresh_after):
        seen = self.seen
        while seen:
            call, at = next(iter(seen.items()))
            if at >= fresh_after and len(seen) <= self.max_seen_calls:
                return
            del seen[call]

    def _trim_buckets(self, now):
        """Drop buckets untouched for a whole window: they are full again,
        exactly what a client without a bucket gets."""
        buckets, full_since = self.buckets, now - self.window
        while buckets:
            client, (_, updated) = next(iter(buckets.items()))
            if updated > full_since:
                return
            del buckets[client]
