#!/usr/bin/env python3
"""A simulated fleet of live calls for the dashboard: `make demo-fleet`.

Sends every peer's stats of a few hundred calls (default 300) to a running
rtcscope-server every couple of seconds, as JSON to POST /v1/stats/write/:
rtt, jitter, packet counters, bytes, frame rate and size, available bandwidth.
One call in seventeen has a bad peer (high loss and round-trip time), others
go through a bad patch now and then, and calls end (an end event) and are
replaced by new ones, so the history panel fills as well.

It talks only to 127.0.0.1 unless --allow-remote is given, stops after
--duration seconds when one is given, and ends its calls on the way out.

    .venv/bin/python scripts/demo_fleet.py --server http://127.0.0.1:8080 --calls 300 --duration 600
"""
import argparse
import asyncio
import ipaddress
import json
import random
import signal
import socket
import sys
import time
from urllib.parse import urlparse

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

ROOMS = ("standup", "support", "sales", "design", "onboarding", "interview", "allhands", "review", "sync",
         "webinar", "classroom", "clinic", "helpdesk", "retro", "planning", "lobby", "townhall", "tutoring")
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar",
          "peggy", "rupert", "sybil", "trent", "victor", "walter")
# Calls per request: the server refuses more than --max-calls-per-request (default 10) distinct calls in one.
CALLS_PER_REQUEST = 10
IN_FLIGHT = 6


class Peer:
    """One side of a call: a network path (rtt, jitter, loss) that drifts, and the counters it reports."""

    def __init__(self, name, rng, bad):
        self.name = name
        self.rng = rng
        self.bad = bad
        self.rtt = rng.uniform(350, 620) if bad else rng.choice((rng.uniform(15, 70), rng.uniform(60, 160)))
        self.jitter = rng.uniform(25, 60) if bad else rng.uniform(1.5, 12)
        self.loss = rng.uniform(0.06, 0.16) if bad else rng.choice((0.0, rng.uniform(0, 0.004), rng.uniform(0.002, 0.015)))
        self.video = rng.random() < 0.8
        self.width, self.height = rng.choice(((1280, 720), (960, 540), (640, 360)))
        self.patch_until = 0.0  # a temporary bad patch (congestion) until this time
        self.patch_severity = 0.0
        self.sent = self.received = self.lost = self.bytes_sent = self.bytes_received = 0.0
        self.video_sent = self.video_received = self.video_lost = 0.0

    def step(self, now, seconds):
        """Advance the counters by `seconds`; returns (rtt, jitter, loss ratio) of this moment."""
        rng = self.rng
        if not self.bad and now > self.patch_until and rng.random() < 0.0002 * seconds:
            self.patch_until = now + rng.uniform(20, 90)
            self.patch_severity = rng.uniform(0.3, 1.0)
        patch = now < self.patch_until
        severity = self.patch_severity if patch else 0.0
        rtt = max(5.0, (self.rtt + 400 * severity) * rng.uniform(0.85, 1.15))
        jitter = max(0.5, (self.jitter + 35 * severity) * rng.uniform(0.7, 1.3))
        loss = min(0.5, max(0.0, (self.loss + 0.08 * severity) * rng.uniform(0.5, 1.5)))
        packets = 50 * seconds  # audio: 50 packets/s each way
        self.sent += packets
        lost = rng.gauss(packets * loss, max(0.5, (packets * loss) ** 0.5))
        lost = min(packets, max(0.0, round(lost)))
        self.lost += lost
        self.received += packets - lost
        self.bytes_sent += packets * 160
        self.bytes_received += (packets - lost) * 160
        if self.video:
            video_packets = 180 * seconds * (0.5 if patch or self.bad else 1)
            video_lost = min(video_packets, max(0.0, round(video_packets * loss * rng.uniform(0.6, 1.4))))
            self.video_sent += video_packets
            self.video_received += video_packets - video_lost
            self.video_lost += video_lost
        return rtt, jitter, loss, patch

    def samples(self, call, now, seconds):
        rtt, jitter, loss, patch = self.step(now, seconds)
        ts = int(now * 1000)
        degraded = patch or self.bad
        out = [{"call": call, "peer": self.name, "kind": "audio", "ts": ts, "stats": {
            "rtt": round(rtt, 1), "jitter": round(jitter, 2), "packetsLost": self.lost,
            "packetsReceived": self.received, "packetsSent": self.sent,
            "bytesSent": self.bytes_sent, "bytesReceived": self.bytes_received,
            "inputLevel": round(self.rng.uniform(0.01, 0.3), 3)}}]
        if self.video:
            fps = self.rng.uniform(8, 18) if degraded else self.rng.uniform(27, 30)
            out.append({"call": call, "peer": self.name, "kind": "video", "ts": ts, "stats": {
                "rtt": round(rtt * self.rng.uniform(0.95, 1.05), 1), "jitter": round(jitter * 1.2, 2),
                "packetsLost": self.video_lost, "packetsReceived": self.video_received, "packetsSent": self.video_sent,
                "bytesSent": self.video_sent * 1100, "bytesReceived": self.video_received * 1100,
                "framesPerSecond": round(fps, 1),
                "frameWidth": float(self.width // (2 if degraded else 1)),
                "frameHeight": float(self.height // (2 if degraded else 1))}})
        bandwidth = (self.rng.uniform(0.3e6, 0.8e6) if degraded else self.rng.uniform(1.5e6, 3.5e6))
        out.append({"call": call, "peer": self.name, "kind": "connection", "ts": ts, "stats": {
            "rtt": round(rtt, 1), "availableBandwidth": round(bandwidth)}})
        return out


class Call:
    def __init__(self, name, rng, bad, lifetime):
        self.name = name
        count = rng.choices((2, 3, 4, 6), weights=(70, 18, 8, 4))[0]
        people = rng.sample(PEOPLE, count)
        bad_peer = rng.randrange(count) if bad else -1
        self.peers = [Peer(person, rng, i == bad_peer) for i, person in enumerate(people)]
        self.ends_at = time.time() + lifetime
        self.admitted = False  # the server has taken its first samples


class Fleet:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.calls = []
        self.created = 0
        self.sent = self.refused = self.ended = 0
        self.client = AsyncHTTPClient(max_clients=IN_FLIGHT * 2)
        self.url = args.server.rstrip("/") + "/v1/stats/write/"
        self.headers = {"Content-Type": "application/json"}
        if args.key:
            self.headers["Authorization"] = "Bearer " + args.key
        self.retry_at = 0.0
        self.unreachable_told = -10.0
        for _ in range(args.calls):
            # The first calls are spread over their lives, so they do not all end at once.
            self.calls.append(self.new_call(lifetime=self.rng.uniform(0.05, 1.0) * self.lifetime()))

    def lifetime(self):
        return max(30.0, self.rng.expovariate(1 / (self.args.call_minutes * 60)))

    def new_call(self, lifetime=None):
        self.created += 1
        room = self.rng.choice(ROOMS)
        suffix = f"{self.rng.getrandbits(16):04x}"
        # Some ids carry `:` or `@`, which every URL of the server must take.
        style = self.rng.random()
        name = f"{room}:{suffix}" if style < 0.08 else f"{room}@{suffix}" if style < 0.12 else f"{room}-{suffix}"
        bad = self.created % self.args.bad_every == 0
        return Call(name, self.rng, bad, self.lifetime() if lifetime is None else lifetime)

    async def post(self, body):
        """One request; True when taken. A 503 (the server's buffer is full) pauses every request for its
        Retry-After; a 429 (too many new calls) refuses only this request's calls, which try again next round."""
        try:
            await self.client.fetch(self.url, method="POST", body=json.dumps(body), headers=self.headers,
                                    request_timeout=20)
            return True
        except HTTPClientError as exc:
            self.refused += 1
            if exc.code == 503 and exc.response is not None:
                retry = float(exc.response.headers.get("Retry-After", "2") or 2)
                self.retry_at = max(self.retry_at, time.time() + min(retry, 30))
            elif exc.code not in (429, 599):
                print(f"refused: {exc.code} {exc.response.body[:200] if exc.response else ''}", file=sys.stderr)
            return False
        except OSError as exc:
            self.refused += 1
            if time.monotonic() - self.unreachable_told > 10:  # once in a while, not once per request
                self.unreachable_told = time.monotonic()
                print(f"cannot reach {self.url}: {exc}", file=sys.stderr)
            return False

    async def send_round(self, seconds):
        now = time.time()
        ending = [call for call in self.calls if call.ends_at <= now]
        for call in ending:
            self.calls.remove(call)
            self.calls.append(self.new_call())
        # Calls the server has taken apart from new ones, so a new-call limit costs only the new ones.
        admitted = [call for call in self.calls if call.admitted]
        new = [call for call in self.calls if not call.admitted]
        groups = [calls[i:i + CALLS_PER_REQUEST] for calls in (admitted, new)
                  for i in range(0, len(calls), CALLS_PER_REQUEST)]
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def send(group, body):
            async with gate:
                if time.time() < self.retry_at:
                    self.refused += 1
                    return
                if await self.post(body):
                    self.sent += len(body)
                    for call in group:
                        call.admitted = True

        jobs = [send(group, [sample for call in group for peer in call.peers
                             for sample in peer.samples(call.name, now, seconds)]) for group in groups]
        ends = [call for call in ending if call.admitted]
        for i in range(0, len(ends), CALLS_PER_REQUEST):
            jobs.append(send([], [{"call": call.name, "event": "end", "reason": "leave"}
                                  for call in ends[i:i + CALLS_PER_REQUEST]]))
            self.ended += len(ends[i:i + CALLS_PER_REQUEST])
        await asyncio.gather(*jobs)

    async def end_all(self):
        live = [call for call in self.calls if call.admitted]
        for i in range(0, len(live), CALLS_PER_REQUEST):
            await self.post([{"call": call.name, "event": "end", "reason": "stop"} for call in live[i:i + CALLS_PER_REQUEST]])


def loopback(url):
    host = urlparse(url).hostname or ""
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, ValueError):
        return False


async def run(args):
    fleet = Fleet(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = last_report = time.monotonic()
    last_round = time.time() - args.interval
    print(f"{len(fleet.calls)} calls ({sum(len(c.peers) for c in fleet.calls)} peers) to {fleet.url}, "
          f"every {args.interval:g} s" + (f" for {args.duration:g} s" if args.duration else "; Ctrl-C ends them"))
    while not stop.is_set() and not (args.duration and time.monotonic() - started >= args.duration):
        now = time.time()
        await fleet.send_round(now - last_round)
        last_round = now
        if time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            taken = sum(call.admitted for call in fleet.calls)
            print(f"{time.strftime('%H:%M:%S')} {taken} of {len(fleet.calls)} calls live, {fleet.sent} samples sent, "
                  f"{fleet.ended} calls ended, {fleet.refused} requests refused or deferred", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, args.interval - (time.time() - now)))
        except TimeoutError:
            pass
    live = sum(call.admitted for call in fleet.calls)
    if not args.leave_live:
        await fleet.end_all()
    print(f"done: {fleet.sent} samples sent, {fleet.ended + (0 if args.leave_live else live)} calls ended")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="the rtcscope-server to send to")
    parser.add_argument("--calls", type=int, default=300, help="live calls at any time")
    parser.add_argument("--bad-every", type=int, default=17, help="one call in this many has a bad peer")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two reports of a peer")
    parser.add_argument("--call-minutes", type=float, default=8.0, help="mean length of a call; ended calls are replaced")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    parser.add_argument("--key", default="", help="ingest key, when the server has --ingest-keys")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for the same fleet every run")
    parser.add_argument("--leave-live", action="store_true", help="do not end the calls on exit (they time out)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a server that is not on a loopback address")
    args = parser.parse_args(argv)
    if not loopback(args.server) and not args.allow_remote:
        parser.error(f"{args.server} is not a loopback address; give --allow-remote to load it anyway")
    if args.calls < 1 or args.bad_every < 1 or args.interval <= 0:
        parser.error("--calls and --bad-every must be at least 1, --interval positive")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
