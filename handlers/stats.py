"""The 2015 API's /v1/stats/ queries, same paths and JSON shapes."""
import time

import tornado.web

from rtcscope.timeparse import call_bucket, interval_bucket, parse_duration, rfc3339

from .base import CALL_PATTERN, APIHandler

RECENT_SECONDS = 300
RECENT_BUCKET_SECONDS = 10
MAX_INTERVAL_SECONDS = 7 * 86400


def seed_points(points):
    return [{"time": rfc3339(ms), "mean": value} for ms, value in points]


class SeedStatsHandler(APIHandler):
    """Seed endpoints return the mean of stored values, as in 2015; only
    derived metrics (bitrate from bytes) are necessarily rates."""

    async def per_call(self, start_ms, end_ms, bucket_s, call=None):
        metric = self.metric
        series = await self.store.metric_series(
            metric, start_ms, end_ms, bucket_s, rate=metric.field is not None, call=call)
        return {name: seed_points(points) for name, points in series.items()}

    async def prepare(self):
        self.metric = await self.metric_argument()
        self.now_ms = int(time.time() * 1000)


class RecentHandler(SeedStatsHandler):
    async def get(self):
        start = self.now_ms - RECENT_SECONDS * 1000
        self.write_json(await self.per_call(start, self.now_ms, RECENT_BUCKET_SECONDS))


class IntervalHandler(SeedStatsHandler):
    async def get(self):
        text = self.argument("duration", "10m")
        seconds = parse_duration(text)
        if not seconds or seconds > MAX_INTERVAL_SECONDS:
            raise tornado.web.HTTPError(400, "duration must match ^\\d+[smhd]$, from 1s up to 7d")
        start = self.now_ms - seconds * 1000
        self.write_json(await self.per_call(start, self.now_ms, interval_bucket(seconds)))


class TimerangeHandler(SeedStatsHandler):
    async def get(self):
        start, end = self.range_arguments(self.now_ms)
        bucket = interval_bucket(-(-(end - start) // 1000))
        self.write_json(await self.per_call(start, end, bucket))


class CallStatsHandler(SeedStatsHandler):
    async def get(self, call):
        state = await self.known_call(call)
        series = await self.per_call(state.started, state.last_seen, call_bucket(state.span_seconds), call=call)
        self.write_json(series.get(call, []))


default_handlers = [
    (r"/v1/stats/?", RecentHandler),
    (r"/v1/stats/interval/?", IntervalHandler),
    (r"/v1/stats/timerange/?", TimerangeHandler),
    (rf"/v1/stats/{CALL_PATTERN}/?", CallStatsHandler),
]
