"""Calls: which are live or ended, and one call's summary."""

import tornado.web

from rtcscope.summary import summarize
from rtcscope.timeparse import bucket_for, parse_duration

from .base import APIHandler

STATES = ("live", "ended", "all")
SUMMARY_MAX_BUCKETS = 720


class CallsHandler(APIHandler):
    async def get(self):
        state = self.argument("state", "all")
        if state not in STATES:
            raise tornado.web.HTTPError(400, "state must be live, ended or all")
        since = parse_duration(self.argument("since", "24h"))
        if not since:
            raise tornado.web.HTTPError(400, "since must be a duration like 30m, 24h or 7d")
        calls = await self.application.load_calls(window_ms=since * 1000)
        listed = [c.as_json() for c in calls.values() if state in ("all", c.state)]
        listed.sort(key=lambda c: (c["state"] != "live", -c["last_seen"]))
        self.write_json({"calls": listed, "count": len(listed)})


class CallHandler(APIHandler):
    async def get(self, call):
        state = await self.known_call(call)
        bucket_s = bucket_for(state.span_seconds, SUMMARY_MAX_BUCKETS)
        buckets = await self.store.call_buckets(call, state.started - 1000, state.last_seen + 1000, bucket_s)
        self.write_json(summarize(state, buckets, bucket_s))


default_handlers = [
    (r"/v1/calls/?", CallsHandler),
    (r"/v1/calls/(?P<call>[A-Za-z0-9_.:@{}-]{1,128})/?", CallHandler),
]
