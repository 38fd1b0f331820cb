"""What extracting a peer's dimensions adds to an ingest request, against the
ingest parser on the same request (rtcscope/ingest/formats.py `parse`), in
this process, alternating, best of N; and each step alone.

    python -m bench --only dimensions      # in the report
    python -m bench.dimensions             # this table alone, no InfluxDB
"""
import json
import os
import statistics
import time

from rtcscope.dimensions.extract import Extractor
from rtcscope.dimensions.geoip import GeoIP
from rtcscope.dimensions.peer import Dimensions, ValueBound
from rtcscope.dimensions.report import report_dimensions
from rtcscope.dimensions.useragent import UserAgents
from rtcscope.ingest.connection import StatsConnection
from rtcscope.ingest.formats import Limits, parse
from rtcscope.storage.feed import Feed
from tests.support.reports import chromium_reports

from .fleetload import clean_reports, delta
from .ingest import SINGLE_BODY
from .jsonlibs import _batch_body, compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DB = os.path.join(ROOT, "tests", "data", "geoip-test.mmdb")
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
              "Safari/537.36 Edg/131.0.0.0")
ADDRESS = "91.64.1.1"
TAGS = {"region": "eu-west", "app_version": "5.2.1"}


def _uncached_seconds(user_agents, rounds=400):
    """Seconds per parse of a string never seen before (the first request of a new browser build)."""
    headers = [USER_AGENT.replace("131.0.0.0", f"131.0.{n}.0") for n in range(rounds)]
    started = time.perf_counter()
    for header in headers:
        user_agents.parse(header)
    return (time.perf_counter() - started) / len(headers)


def dimensions(ctx, section):
    report = chromium_reports()[-1]["caller"]  # a real Chromium sender's report
    report_body = json.dumps({"call": "c-42", "peer": "caller", "report": report}).encode()
    tagged_body = json.dumps({"call": "c-42", "peer": "alice", "kind": "video", "tags": TAGS,
                              "stats": json.loads(SINGLE_BODY)["stats"]}).encode()
    started = time.perf_counter()
    extractor = Extractor()
    load_ms = (time.perf_counter() - started) * 1000
    extractor.client(USER_AGENT, ADDRESS)  # the peer's first request parsed its User-Agent
    bound = ValueBound()
    now_ns = 1795536126812000000

    def per_request(peers, with_report):
        """The request's client and tags apply to each of its peers; a report to its own peer."""
        found = dict(extractor.client(USER_AGENT, ADDRESS))  # the answer is shared
        found.update(extractor.tags(TAGS, "body"))
        if with_report:
            found.update(report_dimensions(report))
        found = bound.bound(found, 1.0)
        for peer in peers:
            peer.update(found, 1000.0)

    # A batch of _batch_body's: 10 calls of one peer each.
    requests = [("one JSON sample with tags", tagged_body, 1, False),
                ("100 JSON samples of 10 peers", _batch_body(), 10, False),
                ("a raw getStats() report", report_body, 1, True)]
    for label, body, peers, with_report in requests:
        peers = [Dimensions() for _ in range(peers)]
        ours, theirs = compare(lambda: parse(body, now_ns, Limits()), lambda: per_request(peers, with_report))
        section.add(f"dimensions of a request: {label}", ours * 1e6, "µs", f"parse of the request ({len(body):,} B)",
                    theirs * 1e6)

    user_agents = UserAgents()
    cached, _ = compare(lambda: None, lambda: user_agents.parse(USER_AGENT))
    section.add("User-Agent, a string seen before (cache)", cached * 1e6, "µs", "a string never seen",
                _uncached_seconds(user_agents) * 1e6)
    embedded = GeoIP()
    operators = GeoIP([TEST_DB])
    mmdb, iptocc_s = compare(lambda: embedded.lookup(ADDRESS), lambda: operators.lookup("127.0.0.1"))
    section.add("address, a MaxMind-format file (--geoip-db)", mmdb * 1e6, "µs", "the embedded table",
                iptocc_s * 1e6)
    report_s, parse_s = compare(lambda: parse(report_body, now_ns, Limits()), lambda: report_dimensions(report))
    section.add(f"route and codecs of a raw report ({len(report)} stats)", report_s * 1e6, "µs",
                "parse of its request", parse_s * 1e6)
    operators.close()
    ingest_paths(extractor, section)
    section.note(f"The User-Agent rules load in {load_ms:.0f} ms, once per process. A request's dimensions: "
                 "its client's (User-Agent from the cache, country from the address), its tags, its report's "
                 "route and codecs where it has one, the bound on distinct values and each peer's update. The "
                 "baseline is the ingest parser alone: a small part of what a request costs the server (section 1 "
                 "and the profile), so the share of a whole request is several times smaller than the ratio.")


def _paired(baseline, subject, rounds=21, calls=200):
    """(subject µs, baseline µs, median of the per-round subject/baseline ratios) per call:
    thread CPU time of `calls` calls each, the two alternating in order round by round, so
    that load from other processes hits both alike (medians)."""
    def timed(function):
        started = time.thread_time()
        for _ in range(calls):
            function()
        return (time.thread_time() - started) / calls * 1e6
    ours, theirs = [], []
    for index in range(rounds):
        for run, into in ((subject, ours), (baseline, theirs)) if index % 2 else ((baseline, theirs), (subject, ours)):
            into.append(timed(run))
    return (statistics.median(ours), statistics.median(theirs),
            statistics.median(subject / baseline for subject, baseline in zip(ours, theirs)))


def ingest_paths(extractor, section, connections=50):
    """Each ingest path's domain work for one request, as the server runs it, with the
    peers' dimensions and without (the same code, no extractor), alternating in this
    process (`_paired`): POST JSON (`parse` with the request's client and the live feed, steady
    state: the peers' dimensions unchanged since their last request) and a websocket
    frame of two deltas (StatsConnection.receive and commit, with the upgrade's
    dimensions and the route of each frame's report)."""
    now_ns = 1795536126812000000
    report = chromium_reports()[-1]["caller"]
    tagged = json.dumps([{"call": "c-42", "peer": "alice", "kind": "video", "tags": TAGS,
                          "stats": json.loads(SINGLE_BODY)["stats"]}]).encode()
    bodies = [("POST JSON, one sample with tags", tagged),
              ("POST JSON, 100 samples of 10 peers", _batch_body()),
              ("POST JSON, a raw getStats() report", json.dumps({"call": "c-42", "peer": "caller", "tags": TAGS,
                                                                 "report": report}).encode())]
    for label, body in bodies:
        plain, dimensioned = Limits(feed=Feed("n1")), Limits(feed=Feed("n2"))

        def with_dimensions(body=body, limits=dimensioned):
            parse(body, now_ns, limits, "ns", extractor, extractor.client(USER_AGENT, ADDRESS))
        with_dimensions()  # first sight: its rtc_dimensions point
        ours, theirs, ratio = _paired(lambda body=body, limits=plain: parse(body, now_ns, limits), with_dimensions)
        section.add(f"{label}, with dimensions", ours, "µs", f"without (median ratio {ratio:.3f})", theirs)

    reports = clean_reports()["caller"]
    full = json.dumps(reports[0], separators=(",", ":")).encode()
    deltas = [delta(reports[i], reports[i + 1]) for i in range(len(reports) - 1)]
    ms = now_ns // 1_000_000
    frames = [b'[{"ts":%d,%s},{"ts":%d,%s}]' % (ms, deltas[2 * k], ms + 1000, deltas[2 * k + 1])
              for k in range(len(deltas) // 2)]

    def peers(dimensions):
        limits = Limits(feed=Feed("n1"))
        found = [StatsConnection(f"c{i}", "caller", limits, dimensions=dimensions) for i in range(connections)]
        for peer in found:
            peer.commit(peer.receive(b'[{"ts":%d,"report":%s}]' % (ms, full), now_ns))
        return found

    def frames_of(connected):
        turn = [0]

        def run():
            frame_bytes = frames[turn[0] % len(frames)]
            turn[0] += 1
            for peer in connected:
                peer.commit(peer.receive(frame_bytes, now_ns))
        return run
    upgrade = {**extractor.client(USER_AGENT, ADDRESS), **extractor.query_tags({"tag.region": [b"eu-west"]})}
    ours, theirs, ratio = _paired(frames_of(peers(None)), frames_of(peers(upgrade)), calls=4)
    section.add("websocket frame of two deltas, with dimensions", ours / connections, "µs",
                f"without (median ratio {ratio:.3f})", theirs / connections)


if __name__ == "__main__":
    from .report import Section, text_table

    alone = Section("Dimensions: cost per ingest request against the parser")
    dimensions(None, alone)
    print(text_table([alone]))
