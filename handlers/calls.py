"""Calls: which are live or ended with their quality, worst first or most recent first, and one call's summary."""
import bisect
import time

import tornado.web

from rtcscope.live import fleet
from rtcscope.live.detector import CLOCK_SLACK_MS
from rtcscope.summary import load_summary
from rtcscope.timeparse import parse_duration

from .base import CALL_PATTERN, IDENTIFIER_CHARS, APIHandler

STATES = ("live", "ended", "all")
SORTS = ("recent", "worst")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class CallsHandler(APIHandler):
    async def get(self):
        state = self.argument("state", "all")
        if state not in STATES:
            raise tornado.web.HTTPError(400, "state must be live, ended or all")
        since = parse_duration(self.argument("since", "24h"))
        if not since:
            raise tornado.web.HTTPError(400, "since must be a duration like 30m, 24h or 7d")
        sort = self.argument("sort", "recent")
        if sort not in SORTS:
            raise tornado.web.HTTPError(400, "sort must be recent or worst")
        search = self.argument("q", "")
        if len(search) > 128 or not IDENTIFIER_CHARS.fullmatch(search):
            raise tornado.web.HTTPError(400, "q must be up to 128 characters of a call id ([A-Za-z0-9_.:@{}-])")
        limit = self.limit_argument()
        cursor = self.argument("cursor")
        try:
            after = fleet.decode_cursor(cursor, sort) if cursor else None
        except fleet.BadCursor as exc:
            raise tornado.web.HTTPError(400, "%s", exc) from None

        detector = self.application.detector
        # The live list is the detector's last tick: no query, however many calls are live.
        calls = detector.live_states() if state == "live" else None
        if calls is None:
            calls = await self.application.load_calls(window_ms=since * 1000)
        listed = [c for c in calls.values() if state in ("all", c.state) and search in c.call]
        summaries = {}
        if any(c.state == "ended" for c in listed):
            now = int(time.time() * 1000)
            summaries = await self.store.call_summaries(now - since * 1000, now + CLOCK_SLACK_MS)
        documents = []
        for found in listed:
            document = found.as_json()
            if found.state == "live":
                document["quality"] = detector.quality_of(found.call)
            else:
                document["quality"] = fleet.summary_quality(summaries.get(found.call))
            documents.append(document)
        if sort == "worst":
            keys = [fleet.worst_key(document["call"], document["quality"]) for document in documents]
        else:
            keys = [fleet.recent_key(document) for document in documents]
        order = sorted(range(len(documents)), key=keys.__getitem__)
        sorted_keys = [keys[index] for index in order]
        start = bisect.bisect_right(sorted_keys, after) if after is not None else 0
        page = order[start:start + limit]
        more = start + limit < len(order)
        self.write_json({"calls": [documents[index] for index in page], "count": len(documents),
                         "next": fleet.encode_cursor(sort, keys[page[-1]]) if more and page else None})

    def limit_argument(self):
        text = self.argument("limit", str(DEFAULT_LIMIT))
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise tornado.web.HTTPError(400, "limit must be a whole number from 1 to %d", MAX_LIMIT)
        return int(text)


class CallHandler(APIHandler):
    async def get(self, call):
        state = await self.known_call(call)
        self.write_json(await load_summary(self.store, state))


default_handlers = [
    (r"/v1/calls/?", CallsHandler),
    (rf"/v1/calls/{CALL_PATTERN}/?", CallHandler),
]
