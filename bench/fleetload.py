"""Load generator of the fleet benchmark: N emulated peers, each polling one
real Chromium report per second (bench fixture) and sending every 2 s, as
rtcscope.js does at its defaults. A separate process, cheap by construction:
raw asyncio sockets, frames assembled from precomputed pieces (masked with a
zero key, so the payload is sent as is), one scheduler for all peers.

    python -m bench.fleetload ws|post|rtcstats URL PEERS WARMUP_S SECONDS

`ws`: one websocket per peer, a full report then deltas, two reports per
frame, one frame in flight (the client waits for its ack). `post`: one
keep-alive connection per peer, the pre-websocket client's request (two
full reports per POST). `rtcstats`: one websocket per peer as Jitsi Meet's
rtcstats client speaks, its identity then one getstats entry per frame (the
client's compressed delta of the next report), each waiting for its
acknowledgement. Every peer sends as a browser does: a User-Agent, its own
address in X-Real-Ip (read by a server behind a proxy, --xheaders) and the
application's tags (on the websocket URL, in each POST sample). Prints
`measuring` when every peer is connected and the warm-up is over, then after
SECONDS one JSON line: frames sent, answered, refused, skipped (the previous
one still unanswered), latency percentiles (ms) over the measured window.
Targets 127.0.0.1 only. `Load` builds each mode's requests and frames for
other drivers too (bench/dimensions.py).
"""
import asyncio
import json
import os
import struct
import sys
import time
import urllib.parse

from rtcscope.ingest.rtcstats import PROTOCOL
from tests.support.reports import clean_reports, report_delta, rtcstats_delta

SEND_INTERVAL = 2.0
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
              "Safari/537.36 Edg/131.0.0.0")
TAGS = {"region": "eu-west", "app_version": "5.2.1"}


def delta(previous, report):
    """`report_delta` as the JSON members that follow "ts" in a frame."""
    return json.dumps(report_delta(previous, report), separators=(",", ":")).encode()[1:-1]


def percentile(values, share):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Peer(asyncio.Protocol):
    """One emulated peer's connection; `sent_at` is set while a frame waits for its answer."""

    def __init__(self, load, index):
        self.load = load
        self.index = index
        self.transport = None
        self.buffer = b""
        self.upgraded = False
        self.sent_at = None
        self.frames = 0
        self.sn = 0  # rtcstats: the sequence number of the entry sent last
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        if self.load.mode == "post":
            self.upgraded = True
            self.connected.set_result(True)
        else:
            transport.write(self.load.handshake(self.index))

    def connection_lost(self, exc):
        self.load.lost += 1
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"peer {self.index} lost: {exc}"))

    def data_received(self, data):
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.connected.set_exception(ConnectionError(head[:200].decode(errors="replace")))
                return
            self.upgraded, self.buffer = True, rest
            if self.load.mode == "ws":
                self.connected.set_result(True)
        if self.load.mode == "post":
            self._responses()
        else:
            self._frames()

    def _frames(self):
        frames, self.buffer = server_frames(self.buffer)
        for opcode, payload in frames:
            if opcode == 0x9:  # ping: pong with the same payload
                self.transport.write(pong(payload))
            elif opcode == 0x1:
                self._message(payload)

    def _message(self, payload):
        if self.load.mode == "ws":
            return self._answer(payload[9:13])
        # rtcstats: {"type":"sn","body":{"value":N,"state":"initial"|"ongoing"}}, N the last stored
        value = int(payload.partition(b'"value":')[2].partition(b",")[0])
        if self.connected.done():
            if value >= self.sn:
                self._answer(b'ack"')
        elif b'"initial"' in payload:
            self.sn = value + 1
            self.transport.write(ws_frame(self.load.identity(self)))
        elif value >= self.sn:  # the identity is stored: entries follow
            self.connected.set_result(True)

    def _responses(self):
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            status = head[9:12]
            self._answer(b"ack\"" if status == b"200" else b"busy" if status in (b"503", b"429") else b"erro")

    def _answer(self, kind):
        """`kind`: the first letters of the answer's type (ack", busy, erro)."""
        if self.sent_at is None:
            return
        load = self.load
        if kind == b'ack"':
            if load.measuring:
                load.latencies.append(time.monotonic() - self.sent_at)
                load.answered += 1
            self.sent_at = None
        elif kind == b"busy":
            load.refused += 1
            self.sent_at = None
        else:
            load.errors += 1

    def send(self, now, ts_ms):
        if self.sent_at is not None:
            if self.load.measuring:
                self.load.skipped += 1
            return
        self.sent_at = now
        self.transport.write(self.load.frame(self, ts_ms))
        self.frames += 1
        if self.load.measuring:
            self.load.sent += 1


class Load:
    def __init__(self, mode, url, peers):
        self.mode = mode
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        if self.host != "127.0.0.1":
            raise SystemExit("the fleet load targets 127.0.0.1 only")
        self.peers_count = peers
        reports = {role: _steady(reps) for role, reps in clean_reports().items()}
        self.full = {role: json.dumps(reps[0], separators=(",", ":")).encode() for role, reps in reports.items()}
        self.deltas = {role: [delta(reps[i], reps[(i + 1) % len(reps)]) for i in range(len(reps))]
                       for role, reps in reports.items()}
        self.fulls = {role: [json.dumps(r, separators=(",", ":")).encode() for r in reps]
                      for role, reps in reports.items()}
        self.entries = {role: _rtcstats_entries(reps) for role, reps in reports.items()}
        self.tags = json.dumps(TAGS, separators=(",", ":")).encode()
        self.session_prefix = f"load-{os.getpid()}"
        self.measuring = False
        self.latencies = []
        self.sent = self.answered = self.refused = self.errors = self.skipped = self.lost = 0

    @staticmethod
    def ids(index):
        return f"fleet-{index // 2}", ("caller", "callee")[index % 2]

    @staticmethod
    def browser_headers(index):
        """What a browser's request tells of its client: its User-Agent, its address as a proxy passes it on."""
        return f"User-Agent: {USER_AGENT}\r\nX-Real-Ip: 91.64.{index // 256 % 256}.{index % 256}\r\n"

    def handshake(self, index):
        call, peer = self.ids(index)
        if self.mode == "rtcstats":
            target = f"/rtcstats/{call}?statsSessionId={self.session_prefix}-{index}&isReconnect=false"
            protocol = f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n"
        else:
            target = f"/v1/stats/ws?call={call}&peer={peer}" + "".join(f"&tag.{k}={v}" for k, v in TAGS.items())
            protocol = ""
        return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{self.browser_headers(index)}"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\n{protocol}\r\n").encode()

    def identity(self, peer):
        """The rtcstats client's identity entry: the conference and the endpoint, the application."""
        call, name = self.ids(peer.index)
        return json.dumps({"statsSessionId": f"{self.session_prefix}-{peer.index}", "type": "identity",
                           "data": ["identity", None, {"applicationName": "Jitsi Meet", "confName": call,
                                                       "endpointId": name}, int(time.time() * 1000), peer.sn]}).encode()

    def frame(self, peer, ts_ms):
        """What `peer` sends next: a POST request, or a websocket frame of its `message`."""
        message = self.message(peer, ts_ms)
        return message if self.mode == "post" else ws_frame(message)

    def message(self, peer, ts_ms):
        """`peer`'s next POST request (head and body), frame's message or rtcstats entry."""
        role = ("caller", "callee")[peer.index % 2]
        first, second = 2 * peer.frames, 2 * peer.frames + 1
        if self.mode == "post":
            return self._post(peer, role, first, ts_ms)
        if self.mode == "rtcstats":
            return self._rtcstats(peer, role, ts_ms)
        count = len(self.deltas[role])
        if peer.frames == 0:
            payload = b'[{"ts":%d,"report":%s},{"ts":%d,%s}]' % (ts_ms - 1000, self.full[role], ts_ms,
                                                                 self.deltas[role][0])
        else:
            payload = b'[{"ts":%d,%s},{"ts":%d,%s}]' % (ts_ms - 1000, self.deltas[role][(first - 1) % count], ts_ms,
                                                       self.deltas[role][(second - 1) % count])
        return payload

    def _rtcstats(self, peer, role, ts_ms):
        """The next getstats entry, its `data` a JSON string as the client sends it."""
        first, entries = self.entries[role]
        peer.sn += 1
        value = first if peer.frames == 0 else entries[peer.frames % len(entries)]
        return (b'{"statsSessionId":"%s-%d","type":"stats-entry","data":"[\\"getstats\\",\\"PC_0\\",%s,%d,%d]"}'
                % (self.session_prefix.encode(), peer.index, value, ts_ms, peer.sn))

    def _post(self, peer, role, first, ts_ms):
        call, name = self.ids(peer.index)
        reports = self.fulls[role]
        count = len(reports)
        body = (b'[{"call":"%s","peer":"%s","ts":%d,"report":%s,"tags":%s},'
                b'{"call":"%s","peer":"%s","ts":%d,"report":%s,"tags":%s}]'
                % (call.encode(), name.encode(), ts_ms - 1000, reports[first % count], self.tags,
                   call.encode(), name.encode(), ts_ms, reports[(first + 1) % count], self.tags))
        return (b"POST /v1/stats/write/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                b"%sContent-Length: %d\r\n\r\n%s" % (self.port, self.browser_headers(peer.index).encode(),
                                                         len(body), body))

    async def run(self, warmup, seconds):
        loop = asyncio.get_running_loop()
        peers = []
        for chunk in range(0, self.peers_count, 100):  # connected 100 at a time
            opened = await asyncio.gather(*[loop.create_connection(lambda i=index: Peer(self, i), self.host, self.port)
                                            for index in range(chunk, min(chunk + 100, self.peers_count))])
            for _, peer in opened:
                await peer.connected
                peers.append(peer)
        # Phases spread over the send interval; one scheduler sends whatever is due every 5 ms.
        start = time.monotonic()
        due = [(start + SEND_INTERVAL * i / len(peers), peer) for i, peer in enumerate(peers)]
        measure_from, position = start + warmup, 0
        end = measure_from + seconds
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if not self.measuring and now >= measure_from:
                self.measuring = True
                print("measuring", flush=True)
            ts_ms = int(time.time() * 1000)
            for _ in range(len(due)):
                at, peer = due[position]
                if at > now:
                    break
                peer.send(now, ts_ms)
                due[position] = (at + SEND_INTERVAL, peer)
                position = (position + 1) % len(due)
            await asyncio.sleep(0.005)
        self.measuring = False
        waiting = sum(1 for peer in peers if peer.sent_at is not None)
        for peer in peers:
            peer.transport.close()
        return {"mode": self.mode, "peers": len(peers), "seconds": seconds, "sent": self.sent,
                "answered": self.answered, "refused": self.refused, "errors": self.errors,
                "skipped": self.skipped, "lost": self.lost, "unanswered_at_end": waiting,
                "p50_ms": _ms(percentile(self.latencies, 0.5)), "p99_ms": _ms(percentile(self.latencies, 0.99)),
                "max_ms": _ms(max(self.latencies, default=None))}


def _ms(seconds):
    return None if seconds is None else seconds * 1000


def server_frames(buffer):
    """The whole frames at the start of `buffer` (a server's: not masked) as [(opcode, payload)],
    and what is left of it."""
    frames, offset, size = [], 0, len(buffer)
    while size - offset >= 2:
        length, start = buffer[offset + 1] & 0x7F, offset + 2
        if length == 126:
            if size - offset < 4:
                break
            length, start = struct.unpack_from("!H", buffer, offset + 2)[0], offset + 4
        elif length == 127:
            if size - offset < 10:
                break
            length, start = struct.unpack_from("!Q", buffer, offset + 2)[0], offset + 10
        if size < start + length:
            break
        frames.append((buffer[offset] & 0x0F, buffer[start:start + length]))
        offset = start + length
    return frames, buffer[offset:]


def pong(payload):
    """The client's answer to a ping (masked with a zero key)."""
    return bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def ws_frame(payload):
    """A client's text frame, masked with a zero key (so the payload is sent as is)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    return head + b"\0\0\0\0" + payload


def _steady(reports):
    """The polls with the last one's stats, in its order: the capture's first polls lack a stat
    that comes with the first RTCP report, and a peer replaying them in a loop would have it
    come and go at every turn, which no browser does."""
    layout = [stat["id"] for stat in reports[-1]]
    return [report for report in reports if [stat["id"] for stat in report] == layout]


def _rtcstats_entries(reports):
    """(the first entry, [the entry of report i after report i - 1, cycling]) of one peer's reports,
    as rtcstats' getstats values, each escaped as the inside of a JSON string."""
    maps = [{stat["id"]: stat for stat in report} for report in reports]

    def escaped(value):
        return json.dumps(json.dumps(value, separators=(",", ":")))[1:-1].encode()
    return escaped(rtcstats_delta({}, maps[0])), [escaped(rtcstats_delta(maps[i - 1], maps[i]))
                                                  for i in range(len(maps))]


def main(argv):
    mode, url, peers, warmup, seconds = argv
    result = asyncio.run(Load(mode, url, int(peers)).run(float(warmup), float(seconds)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
