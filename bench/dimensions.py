"""What extracting a peer's dimensions adds to an ingest request, against the
ingest parser on the same request (rtcscope/ingest/formats.py `parse`), in
this process, alternating, best of N; and each step alone.

    python -m bench --only dimensions      # in the report
    python -m bench.dimensions             # this table alone, no InfluxDB
"""
import json
import os
import time

from rtcscope.dimensions.extract import Extractor
from rtcscope.dimensions.geoip import GeoIP
from rtcscope.dimensions.peer import Dimensions, ValueBound
from rtcscope.dimensions.report import report_dimensions
from rtcscope.dimensions.useragent import UserAgents
from rtcscope.ingest.formats import Limits, parse
from tests.support.reports import chromium_reports

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
        found = extractor.client(USER_AGENT, ADDRESS)
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
    section.note(f"The User-Agent rules load in {load_ms:.0f} ms, once per process. A request's dimensions: "
                 "its client's (User-Agent from the cache, country from the address), its tags, its report's "
                 "route and codecs where it has one, the bound on distinct values and each peer's update. The "
                 "baseline is the ingest parser alone: a small part of what a request costs the server (section 1 "
                 "and the profile), so the share of a whole request is several times smaller than the ratio.")


if __name__ == "__main__":
    from .report import Section, text_table

    alone = Section("Dimensions: cost per ingest request against the parser")
    dimensions(None, alone)
    print(text_table([alone]))
