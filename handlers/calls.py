"""Calls: which are live or ended with their quality, worst first or most recent first, and one call's summary."""
import bisect
import time

import tornado.web

from rtcscope.live import fleet
from rtcscope.live.detector import CLOCK_SLACK_MS
from rtcscope.summary import load_summary

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
        since = self.since_argument()
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
        # Sort keys from what is at hand; documents only for the page.
        if sort == "worst":
            def key(found):
                document = self.quality_document(found, summaries)
                return fleet.worst_key(found.call, document)
        else:
            def key(found):
                return fleet.recent_key(found.state, found.last_seen, found.call)
        keyed = sorted(((key(found), found) for found in listed), key=lambda item: item[0])
        start = bisect.bisect_right([item[0] for item in keyed], after) if after is not None else 0
        page = keyed[start:start + limit]
        more = start + limit < len(keyed)
        documents = []
        for _, found in page:
            document = found.as_json()
            document["quality"] = self.quality_document(found, summaries)
            documents.append(document)
        self.write_json({"calls": documents, "count": len(keyed),
                         "next": fleet.encode_cursor(sort, page[-1][0]) if more and page else None})

    def quality_document(self, found, summaries):
        """A live call's quality as of the detector's last tick; an ended one's from its summary point."""
        if found.state == "live":
            return self.application.detector.quality_of(found.call)
        return fleet.summary_quality(summaries.get(found.call))

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
