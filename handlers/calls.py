"""Calls: which are live or ended with their quality, worst first or most recent first, and one call's summary."""
import asyncio
import bisect
import time

import tornado.web

from rtcscope.dimensions.peer import peers_dimensions, people_values
from rtcscope.live import fleet
from rtcscope.live.activity import CLOCK_SLACK_MS
from rtcscope.storage.schema import IDENTIFIER_CHARS, IDENTIFIER_MAX, NOT_IDENTIFIER_RE
from rtcscope.summary import load_summary

from .base import CALL_PATTERN, APIHandler

STATES = ("live", "ended", "all")
SORTS = ("recent", "worst")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The list's own query arguments (and the read token's); any other names a dimension to filter by.
ARGUMENTS = frozenset({"state", "since", "sort", "q", "limit", "cursor", "token"})


class CallsHandler(APIHandler):
    """?state, since, sort, q, limit, cursor, and any dimension as a filter (?browser=Safari&
    relay_protocol=tcp: the calls one of whose peers has all these values)."""
    needs_detector = True  # live calls and the ended-call index are the detector's

    async def get(self):
        state = self.argument("state", "all")
        if state not in STATES:
            raise tornado.web.HTTPError(400, "state must be live, ended or all")
        since = self.since_argument()
        sort = self.argument("sort", "recent")
        if sort not in SORTS:
            raise tornado.web.HTTPError(400, "sort must be recent or worst")
        search = self.argument("q", "")
        if len(search) > IDENTIFIER_MAX or NOT_IDENTIFIER_RE.search(search):
            raise tornado.web.HTTPError(400, f"q must be up to {IDENTIFIER_MAX} characters of a call id ([{IDENTIFIER_CHARS}])")
        limit = self.limit_argument()
        cursor = self.argument("cursor")
        try:
            after = fleet.decode_cursor(cursor, sort) if cursor else None
        except fleet.BadCursor as exc:
            raise tornado.web.HTTPError(400, "%s", exc) from None
        filters = self.dimension_filters()

        listed, qualities = await self.listed_calls(state, since * 1000, search)
        if filters:
            matching = await self.matching_calls(filters, listed)
            listed = [found for found in listed if found.call in matching]
        # Sort keys from what is at hand; documents only for the page.
        if sort == "worst":
            def key(found):
                return fleet.worst_key(found.call, self.quality_document(found, qualities))
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
            document["quality"] = self.quality_document(found, qualities)
            documents.append(document)
        self.write_json({"calls": documents, "count": len(keyed),
                         "next": fleet.encode_cursor(sort, page[-1][0]) if more and page else None})

    async def listed_calls(self, state, since_ms, search):
        """The calls of the list, and the summary qualities of its ended ones ({call: quality}).

        Live calls are the detector's last tick, ended ones its index of the calls
        that ended within the default window: no InfluxDB query. A `since` the index
        does not cover (longer than its window, beyond its cap, before it has loaded)
        reads the presence rows over `since` and the summary points instead."""
        detector = self.application.detector
        live = detector.live_states()
        now = int(time.time() * 1000)
        if live is not None and state == "live":
            return [found for found in live.values() if search in found.call], {}
        if live is not None and detector.ended_calls.covers(since_ms, now):
            ended = [entry for entry in detector.ended_calls.since(now - since_ms)
                     if search in entry.state.call and entry.state.call not in live]
            listed = [entry.state for entry in ended]
            if state == "all":
                listed += [found for found in live.values() if search in found.call]
            return listed, {entry.state.call: entry.quality for entry in ended}
        calls = await self.application.load_calls(window_ms=since_ms)
        listed = [c for c in calls.values() if state in ("all", c.state) and search in c.call]
        if not any(c.state == "ended" for c in listed):
            return listed, {}
        summaries = await self.store.call_summaries(now - since_ms, now + CLOCK_SLACK_MS)
        return listed, {call: fleet.summary_quality(row) for call, row in summaries.items()}

    def dimension_filters(self):
        """{dimension: value} of the query's other arguments; 400 for a name that is no dimension."""
        filters = {}
        for name in self.request.query_arguments:
            if name not in ARGUMENTS:
                self.check_dimension(name)
                filters[name] = self.argument(name)
        return filters

    async def matching_calls(self, filters, listed):
        """The calls one of whose people (a client and the media server's view of it are one,
        with the dimensions of both) has every filter's value: the live people as the detector
        knows them now, the ended calls' as rtc_dimensions last had their peers."""
        wanted = filters.items()
        matching = {call for call, _peer, values, _verdict, _mos in self.application.detector.live_peers()
                    if wanted <= values.items()}
        ended = {found.call: found.started for found in listed if found.state == "ended"}
        if ended:  # one query over the range of their starts, folded as the call page folds them
            start = min(ended.values()) - self.application.config.max_skew * 1000
            stored = await self.store.dimension_points(start, int(time.time() * 1000) + CLOCK_SLACK_MS)
            matching.update(call for call, points in stored.items() if call in ended and any(
                wanted <= values.items() for values in people_values(peers_dimensions(points)[0]).values()))
        return matching

    def quality_document(self, found, qualities):
        """A live call's quality as of the detector's last tick; an ended one's from its summary."""
        if found.state == "live":
            return self.application.detector.quality_of(found.call)
        return qualities.get(found.call)

    def limit_argument(self):
        text = self.argument("limit", str(DEFAULT_LIMIT))
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise tornado.web.HTTPError(400, "limit must be a whole number from 1 to %d", MAX_LIMIT)
        return int(text)


class CallHandler(APIHandler):
    async def get(self, call):
        state = await self.known_call(call)
        summary, points = await asyncio.gather(
            load_summary(self.store, state),
            # Stamped with their receive time (an import's: its polls'), which a client's clock may be off from.
            self.store.dimension_points(state.started - self.application.config.max_skew * 1000,
                                        int(time.time() * 1000) + CLOCK_SLACK_MS, call))
        summary["dimensions"], summary["dimension_changes"] = peers_dimensions(points.get(call, ()))
        self.write_json(summary)


default_handlers = [
    (r"/v1/calls/?", CallsHandler),
    (rf"/v1/calls/{CALL_PATTERN}/?", CallHandler),
]
