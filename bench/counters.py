"""What /metrics costs the ingest hot path: the counter increments every
request makes, through the server's Telemetry (prometheus_client counters,
which take a lock), against counting the same in plain ints in a dict (what
a scrape-time collector over plain counts would cost); in this process,
alternating, best of N. The profile benchmark shows the same increments'
share of a real server's CPU under load (component "telemetry")."""
import asyncio
from collections import defaultdict

import server

from .jsonlibs import compare


def counters(ctx, section):
    # Built, not started: nothing listens or connects. Its clients want a current event loop,
    # which the benchmarks run before this one (asyncio.run) leave unset.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        telemetry = server.make_app().telemetry
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    plain = defaultdict(int)

    def plain_unlabelled():
        plain["rtcscope_samples_accepted_total"] += 1

    def plain_labelled():
        plain[("rtcscope_http_requests_total", "WriteHandler", "200")] += 1

    def plain_request():
        plain_labelled()
        plain_unlabelled()

    def library_unlabelled():
        telemetry.inc("rtcscope_samples_accepted_total", 1)

    def library_labelled():
        telemetry.inc("rtcscope_http_requests_total", route="WriteHandler", status=200)

    def library_request():
        library_labelled()
        library_unlabelled()

    for what, subject, baseline in (
            ("Telemetry.inc, counter without labels", library_unlabelled, plain_unlabelled),
            ("Telemetry.inc, counter labelled by route and status", library_labelled, plain_labelled),
            ("the increments of one accepted ingest request (requests by route and status, samples accepted)",
             library_request, plain_request)):
        ours, theirs = compare(baseline, subject)
        section.add(what, ours * 1e9, "ns", "plain int in a dict", theirs * 1e9)
    section.note("An accepted ingest request counts itself in rtcscope_http_requests_total{route,status} and its "
                 "samples in rtcscope_samples_accepted_total (dropped and restamped values only when there are "
                 "any); refusals and dropped viewers are rare. The last figure is to be read against the server "
                 "CPU per request of benchmark 1 (a few hundred µs): a fraction of a percent, which is why the "
                 "counters are the library's rather than plain ints behind a scrape-time collector. The profile "
                 "shows their share under load as the component \"telemetry\".")
