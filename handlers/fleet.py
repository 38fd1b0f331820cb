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


default_handlers = [
    (r"/v1/fleet/?", FleetHistoryHandler),
]
