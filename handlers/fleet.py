"""The fleet: its history (GET /v1/fleet/, from one rtc_call_summaries point per ended call),
and why its peers are poor (breakdown/ and explain/: live from the detector's memory, ended
from rtc_peer_summaries; docs/diagnosis.md)."""
import time

import tornado.web

from rtcscope.diagnosis.breakdown import breakdown
from rtcscope.diagnosis.explain import Tally, explain
from rtcscope.timeparse import parse_duration

from .base import NO_DETECTOR, APIHandler

MAX_BUCKETS = 500
STATES = ("live", "ended")
DEFAULT_DURATION = "24h"


class FleetHistoryHandler(APIHandler):
    async def get(self):
        duration = parse_duration(self.argument("duration", "24h"))
        bucket = parse_duration(self.argument("bucket", "1h"))
        if not duration or not bucket:
            raise tornado.web.HTTPError(400, "duration and bucket must be durations like 1h, 24h or 7d")
        retention = self.application.config.retention_seconds
        if duration > retention:
            raise tornado.web.HTTPError(400, "duration is longer than the retention (%ds)", retention)
        if -(-duration // bucket) > MAX_BUCKETS:
            raise tornado.web.HTTPError(400, "duration / bucket gives more than %d buckets", MAX_BUCKETS)
        now = int(time.time() * 1000)
        start, bucket_ms = now - duration * 1000, bucket * 1000
        rows = {row["time"]: row for row in await self.store.fleet_history(start, now, bucket)}
        # Every bucket of the range, aligned to the epoch as InfluxDB groups them; none stored is no call.
        buckets = [bucket_document(time_ms, rows.get(time_ms))
                   for time_ms in range(start // bucket_ms * bucket_ms, now + 1, bucket_ms)]
        self.write_json({"bucket_ms": bucket_ms, "buckets": buckets})


def bucket_document(time_ms, row):
    row = row or {}
    mos, poor = row.get("mos_p50"), row.get("poor_share")
    return {"time": time_ms, "calls": row.get("calls") or 0, "minutes": round((row.get("seconds") or 0) / 60, 2),
            "mos_p50": None if mos is None else round(mos, 2), "poor_share": None if poor is None else round(poor, 4)}


class DiagnosisHandler(APIHandler):
    """?state=live|ended (default live), duration=<duration> (ended only; default 24h, up
    to the retention). Live answers are the detector's, computed once per tick."""

    def state_arguments(self):
        """(state, start of the range in ms for ended peers, now in ms)."""
        state = self.argument("state", "live")
        if state not in STATES:
            raise tornado.web.HTTPError(400, "state must be live or ended")
        duration = self.argument("duration")
        now = int(time.time() * 1000)
        if state == "live":
            if duration is not None:
                raise tornado.web.HTTPError(400, "duration is for state=ended; live is now")
            if self.application.detector is None:  # an ingest-only process: no live peers here
                self.fail(**NO_DETECTOR)
                raise tornado.web.Finish()
            return state, None, now
        seconds = parse_duration(duration or DEFAULT_DURATION)
        if not seconds:
            raise tornado.web.HTTPError(400, "duration must be a duration like 1h, 24h or 7d")
        retention = self.application.config.retention_seconds
        if seconds > retention:
            raise tornado.web.HTTPError(400, "duration is longer than the retention (%ds)", retention)
        return state, now - seconds * 1000, now

    @property
    def live(self):
        """(the detector's tick, its live people): what the live answers are of."""
        detector = self.application.detector
        return detector.ticks, detector.live_people


class BreakdownHandler(DiagnosisHandler):
    """?by=<dimension> (required): the peers per value of the dimension."""

    async def get(self):
        by = self.dimension_argument("by")
        state, start, now = self.state_arguments()
        if state == "live":
            document = self.application.diagnosis.breakdown(*self.live, by)
        else:
            document = breakdown(by, state, await self.store.peer_breakdown(start, now, by))
        self.write_json(document)


class ExplainHandler(DiagnosisHandler):
    """What sets the poor peers apart: at most 10 dimension values, best first."""

    async def get(self):
        state, start, now = self.state_arguments()
        diagnosis = self.application.diagnosis
        if state == "live":
            document = diagnosis.explain(*self.live)
        else:
            tally = Tally.of_history(*await self.store.peer_tally(start, now, self.known_dimensions))
            document = explain(tally, diagnosis.min_poor)
        self.write_json(document)


default_handlers = [
    (r"/v1/fleet/?", FleetHistoryHandler),
    (r"/v1/fleet/breakdown/?", BreakdownHandler),
    (r"/v1/fleet/explain/?", ExplainHandler),
]
