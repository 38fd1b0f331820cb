"""GET /v1/fleet/: the fleet's history, from one rtc_call_summaries point per ended call."""
import time

import tornado.web

from rtcscope.timeparse import parse_duration

from .base import APIHandler

MAX_BUCKETS = 500


class FleetHistoryHandler(APIHandler):
    async def get(self):
        duration = parse_duration(self.argument("duration", "24h"))
        bucket = parse_duration(self.argument("bucket", "1h"))
        if not duration or not bucket:
            raise tornado.web.HTTPError(400, "duration and bucket must be durations like 1h, 24h or 7d")
        retention = self.application.retention_seconds
        if duration > retention:
            raise tornado.web.HTTPError(400, "duration is longer than the retention (%ds)", retention)
        if -(-duration // bucket) > MAX_BUCKETS:
            raise tornado.web.HTTPError(400, "duration / bucket gives more than %d buckets", MAX_BUCKETS)
        now = int(time.time() * 1000)
        rows = await self.store.fleet_history(now - duration * 1000, now, bucket)
        buckets = [{"time": row["time"], "calls": row["calls"] or 0,
                    "minutes": round((row["seconds"] or 0) / 60, 2),
                    "mos_p50": None if row["mos_p50"] is None else round(row["mos_p50"], 2),
                    "poor_share": None if row["poor_share"] is None else round(row["poor_share"], 4)}
                   for row in rows]
        self.write_json({"bucket_ms": bucket * 1000, "buckets": buckets})


default_handlers = [
    (r"/v1/fleet/?", FleetHistoryHandler),
]
