#!/usr/bin/env python3
"""A simulated fleet of live calls for the dashboard: `make demo-fleet`.

Sends every peer's stats of a few hundred calls (default 300) to a running
rtcscope-server every couple of seconds, as JSON to POST /v1/stats/write/:
rtt, jitter, packet counters, bytes, frame rate and size, available bandwidth.
One call in seventeen has a bad peer (high loss and round-trip time), others
go through a bad patch now and then, and calls end (an end event) and are
replaced by new ones, so the history panel fills as well.

Every peer is someone somewhere: a real browser's User-Agent (desktop and
mobile), Wi-Fi, ethernet or cellular (a few phones move from Wi-Fi to
cellular mid-call), a direct route or one relayed through one of three TURN
servers (UDP, TCP, TLS), Opus and a video codec, and the application's tags
(region, app_version, media_server). Its connection stats go as the raw
getStats() report (`"report"`: transport, candidate pair, candidates, codecs),
as a browser would send it. With --xheaders (for a server started with
--xheaders) each client's address goes as X-Real-IP, public addresses of a
few countries. One cohort is bad: every peer relayed over TCP through
turn-2.example.com:443 has a poor network (--no-bad-cohort: none), so the
server's explanation of the poor peers has something to find.

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

# Real browsers' User-Agent strings, weighted roughly as a consumer video service's audience.
USER_AGENTS = (
    (28, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
         "Safari/537.36"),
    (10, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
         "Safari/537.36"),
    (9, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36 Edg/131.0.0.0"),
    (6, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (3, "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (8, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
        "Safari/605.1.15"),
    (14, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/18.1 Mobile/15E148 Safari/604.1"),
    (12, "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile "
         "Safari/537.36"),
    (4, "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36"),
    (2, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1"),
    (2, "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"),
)
# Where clients are: (weight, region tag, public addresses of one country, sent as X-Real-IP with --xheaders).
PLACES = (
    (30, "eu-central", ("91.64.12.7", "91.64.200.31", "91.65.3.90")),  # Germany
    (15, "eu-west", ("81.2.69.142", "81.2.70.18")),  # United Kingdom
    (10, "eu-west", ("90.0.12.5", "90.1.77.2")),  # France
    (25, "us-east", ("24.0.18.3", "73.0.44.9", "73.12.0.8")),  # United States
    (8, "sa-east", ("177.0.9.4", "177.1.31.6")),  # Brazil
    (7, "ap-northeast", ("126.0.3.3", "126.10.8.1")),  # Japan
    (5, "ap-south", ("49.32.5.1", "49.33.0.7")),  # India
)
# (weight, TURN url as the browser reports it, relay protocol); the second is the bad cohort's.
TURN_SERVERS = (
    (45, "turn:turn-1.example.com:3478?transport=udp", "udp"),
    (30, "turn:turn-2.example.com:443?transport=tcp", "tcp"),
    (25, "turns:turn-3.example.com:443?transport=tcp", "tls"),
)
BAD_TURN = TURN_SERVERS[1][1]
APP_VERSIONS = ((50, "5.3.0"), (40, "5.2.1"), (10, "5.1.4"))
MEDIA_SERVERS = ("sfu-1", "sfu-2", "sfu-3", "sfu-4")
CODECS = {"opus": ("audio/opus", 111), "VP8": ("video/VP8", 96), "VP9": ("video/VP9", 98),
          "H264": ("video/H264", 102), "AV1": ("video/AV1", 45)}


def weighted(rng, choices):
    return rng.choices([value for _, *value in choices], weights=[weight for weight, *_ in choices])[0]


class Client:
    """Who a peer is and how it connects: what the server learns its dimensions from."""

    def __init__(self, rng, media_server, xheaders):
        self.user_agent = weighted(rng, USER_AGENTS)[0]
        mobile = "Mobile" in self.user_agent
        region, addresses = weighted(rng, PLACES)
        self.address = rng.choice(addresses) if xheaders else None
        self.tags = {"region": region, "app_version": weighted(rng, APP_VERSIONS)[0], "media_server": media_server}
        self.network = rng.choices(("wifi", "cellular"), (65, 35))[0] if mobile else \
            rng.choices(("ethernet", "wifi"), (45, 55))[0]
        # Carrier NATs and office firewalls send more of their peers through a relay.
        relayed = rng.random() < (0.35 if self.network == "cellular" else 0.22)
        self.turn, self.relay_protocol = weighted(rng, TURN_SERVERS) if relayed else (None, None)
        self.candidate_type = "relay" if relayed else rng.choices(("host", "srflx"), (25, 75))[0]
        apple_webkit = "Safari/60" in self.user_agent  # Safari, and every browser on iOS
        self.video_codec = rng.choices(("H264", "VP8"), (70, 30))[0] if apple_webkit else \
            rng.choices(("VP8", "VP9", "H264", "AV1"), (55, 25, 15, 5))[0]
        # A phone on Wi-Fi now and then walks out of it mid-call.
        self.moves_at = time.time() + rng.uniform(30, 240) if mobile and self.network == "wifi" and \
            rng.random() < 0.3 else None
        self.candidate = f"I{rng.getrandbits(32):08x}"

    @property
    def key(self):
        """Peers with the same key can share a request (its User-Agent and X-Real-IP headers)."""
        return self.user_agent, self.address

    def headers(self):
        headers = {"User-Agent": self.user_agent}
        if self.address:
            headers["X-Real-IP"] = self.address
        return headers

    def move(self, now, rng):
        """Wi-Fi to cellular, once: a new local candidate, so a new selected pair."""
        if self.moves_at is not None and now >= self.moves_at:
            self.moves_at = None
            self.network = "cellular"
            self.candidate = f"I{rng.getrandbits(32):08x}"


class Peer:
    """One side of a call: a network path (rtt, jitter, loss) that drifts, and the counters it reports."""

    def __init__(self, name, rng, bad, client):
        self.name = name
        self.rng = rng
        self.bad = bad
        self.client = client
        self.ssrc = rng.getrandbits(31)
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
        self.client.move(now, self.rng)
        ts = int(now * 1000)
        degraded = patch or self.bad
        tags = self.client.tags
        out = [{"call": call, "peer": self.name, "kind": "audio", "ts": ts, "tags": tags, "stats": {
            "rtt": round(rtt, 1), "jitter": round(jitter, 2), "packetsLost": self.lost,
            "packetsReceived": self.received, "packetsSent": self.sent,
            "bytesSent": self.bytes_sent, "bytesReceived": self.bytes_received,
            "inputLevel": round(self.rng.uniform(0.01, 0.3), 3)}}]
        if self.video:
            fps = self.rng.uniform(8, 18) if degraded else self.rng.uniform(27, 30)
            out.append({"call": call, "peer": self.name, "kind": "video", "ts": ts, "tags": tags, "stats": {
                "rtt": round(rtt * self.rng.uniform(0.95, 1.05), 1), "jitter": round(jitter * 1.2, 2),
                "packetsLost": self.video_lost, "packetsReceived": self.video_received, "packetsSent": self.video_sent,
                "bytesSent": self.video_sent * 1100, "bytesReceived": self.video_received * 1100,
                "framesPerSecond": round(fps, 1),
                "frameWidth": float(self.width // (2 if degraded else 1)),
                "frameHeight": float(self.height // (2 if degraded else 1))}})
        bandwidth = (self.rng.uniform(0.3e6, 0.8e6) if degraded else self.rng.uniform(1.5e6, 3.5e6))
        out.append({"call": call, "peer": self.name, "ts": ts, "tags": tags,
                    "report": self.report(ts, round(rtt, 1), round(bandwidth))})
        return out

    def report(self, ts, rtt, bandwidth):
        """The connection's part of a getStats() report, as a browser sends it (without addresses, ports
        or certificates): the selected pair (its rtt and available bandwidth are the connection's
        metrics), its candidates, and each outbound stream's codec; the streams' counters go as stats."""
        client = self.client
        pair = f"CP{client.candidate}_{self.name}"
        local = {"id": client.candidate, "type": "local-candidate", "timestamp": ts, "transportId": "T01",
                 "candidateType": client.candidate_type, "protocol": "udp", "networkType": client.network,
                 "isRemote": False}
        if client.turn:
            local.update(relayProtocol=client.relay_protocol, url=client.turn)
        report = [
            {"id": "T01", "type": "transport", "timestamp": ts, "selectedCandidatePairId": pair,
             "dtlsState": "connected", "iceState": "connected"},
            {"id": pair, "type": "candidate-pair", "timestamp": ts, "transportId": "T01", "state": "succeeded",
             "nominated": True, "localCandidateId": client.candidate, "remoteCandidateId": f"R{self.name}",
             "currentRoundTripTime": rtt / 1000, "availableOutgoingBitrate": bandwidth,
             "bytesSent": self.bytes_sent + self.video_sent * 1100, "bytesReceived": self.bytes_received},
            local,
            {"id": f"R{self.name}", "type": "remote-candidate", "timestamp": ts, "transportId": "T01",
             "candidateType": "srflx", "protocol": "udp", "isRemote": True},
        ]
        for kind, codec, ssrc in (("audio", "opus", self.ssrc), ("video", client.video_codec, self.ssrc + 1)):
            if kind == "video" and not self.video:
                continue
            mime_type, payload_type = CODECS[codec]
            codec_id = f"COT01_{payload_type}"
            report.append({"id": codec_id, "type": "codec", "timestamp": ts, "transportId": "T01",
                           "mimeType": mime_type, "payloadType": payload_type,
                           "clockRate": 48000 if kind == "audio" else 90000})
            report.append({"id": f"OT01{kind[0].upper()}{ssrc}", "type": "outbound-rtp", "timestamp": ts,
                           "kind": kind, "ssrc": ssrc, "transportId": "T01", "codecId": codec_id})
        return report


class Call:
    def __init__(self, name, rng, bad, lifetime, xheaders=False, bad_cohort=True):
        self.name = name
        count = rng.choices((2, 3, 4, 6), weights=(70, 18, 8, 4))[0]
        people = rng.sample(PEOPLE, count)
        bad_peer = rng.randrange(count) if bad else -1
        media_server = rng.choice(MEDIA_SERVERS)
        clients = [Client(rng, media_server, xheaders) for _ in people]
        self.peers = [Peer(person, rng, i == bad_peer or (bad_cohort and client.turn == BAD_TURN), client)
                      for i, (person, client) in enumerate(zip(people, clients))]
        self.ends_at = time.time() + lifetime
        self.admitted = False  # the server has taken its first samples


class Fleet:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.calls = []
        self.created = 0
        self.sent = self.refused = self.limited = self.ended = 0
        self.http = AsyncHTTPClient(max_clients=IN_FLIGHT * 2)
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
        return Call(name, self.rng, bad, self.lifetime() if lifetime is None else lifetime,
                    xheaders=self.args.xheaders, bad_cohort=not self.args.no_bad_cohort)

    async def post(self, body, headers=None):
        """One request; True when taken. A 503 (the server's buffer is full) pauses every request for its
        Retry-After; a 429 (too many new calls) refuses only this request's calls, which try again next round."""
        try:
            await self.http.fetch(self.url, method="POST", body=json.dumps(body),
                                  headers={**self.headers, **(headers or {})}, request_timeout=20)
            return True
        except HTTPClientError as exc:
            if exc.code == 429:
                self.limited += 1
                return False
            self.refused += 1
            if exc.code == 503 and exc.response is not None:
                retry = float(exc.response.headers.get("Retry-After", "2") or 2)
                self.retry_at = max(self.retry_at, time.time() + min(retry, 30))
            elif exc.code != 599:
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
        # Calls the server has taken apart from new ones, so a new-call limit costs only the new ones. A
        # request carries the peers of one client (User-Agent, address) of up to CALLS_PER_REQUEST calls.
        groups = []
        for admitted in (True, False):
            by_client = {}
            for call in self.calls:
                if call.admitted == admitted:
                    for peer in call.peers:
                        by_client.setdefault(peer.client.key, {}).setdefault(call, []).append(peer)
            for calls in by_client.values():
                calls = list(calls.items())
                groups.extend(calls[i:i + CALLS_PER_REQUEST] for i in range(0, len(calls), CALLS_PER_REQUEST))
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def send(group, body, headers=None):
            async with gate:
                if time.time() < self.retry_at:
                    self.refused += 1
                    return
                if await self.post(body, headers):
                    self.sent += len(body)
                    for call, _ in group:
                        call.admitted = True

        jobs = [send(group, [sample for call, peers in group for peer in peers
                             for sample in peer.samples(call.name, now, seconds)], group[0][1][0].client.headers())
                for group in groups]
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
                  f"{fleet.ended} calls ended, {fleet.limited} requests held back by the new-call limit (their calls "
                  f"join as it allows), {fleet.refused} refused or deferred", flush=True)
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
    parser.add_argument("--xheaders", action="store_true",
                        help="the server was started with --xheaders: send each client's address as X-Real-IP")
    parser.add_argument("--no-bad-cohort", action="store_true",
                        help="no bad cohort (peers relayed over TCP through turn-2.example.com:443 are fine too)")
    args = parser.parse_args(argv)
    if not loopback(args.server) and not args.allow_remote:
        parser.error(f"{args.server} is not a loopback address; give --allow-remote to load it anyway")
    if args.calls < 1 or args.bad_every < 1 or args.interval <= 0:
        parser.error("--calls and --bad-every must be at least 1, --interval positive")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
