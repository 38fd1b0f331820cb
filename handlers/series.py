"""GET /v1/series/: a metric per call over a time range, as the pages draw it.

Unlike the 2015 /v1/stats/ endpoints (the mean of stored values), counters
come back as per-second rates, in the same [[ms, value]] shape as the graph
websocket, so a page draws a range and the live view with the same code."""
import time

import tornado.web

from rtcscope.live.buckets import WORST_LINES, band_of, worst_calls
from rtcscope.live.graphs import RATE_SETTLE_MS
from rtcscope.registry import COUNTER
from rtcscope.timeparse import bucket_for, parse_duration

from .base import MAX_RANGE_SECONDS, APIHandler

MAX_POINTS = 500


class SeriesHandler(APIHandler):
    async def get(self):
        metric = await self.metric_argument("metric")
        now = int(time.time() * 1000)
        duration = self.argument("duration")
        if duration is not None:
            seconds = parse_duration(duration)
            if not seconds or seconds > MAX_RANGE_SECONDS:
                raise tornado.web.HTTPError(400, "duration must match ^\\d+[smhd]$, up to 400d")
            start, end = now - seconds * 1000, now
        elif self.argument("start") is None:
            raise tornado.web.HTTPError(400, "give duration, or start (and end): RFC 3339, Unix ms or now")
        else:
            start, end = self.range_arguments(now)
        call = self.argument("call")
        state = await self.known_call(call) if call is not None else None
        # by=peer: a line per peer of one call (which side has the problem).
        by = self.argument("by", "call")
        if by not in ("call", "peer"):
            raise tornado.web.HTTPError(400, "by must be call or peer")
        if by == "peer" and call is None:
            raise tornado.web.HTTPError(400, "by=peer needs a call")
        # band=true: beyond --graph-lines calls, the fleet's band and the worst live calls, as the live graphs draw.
        band = self.argument("band", "false")
        if band not in ("true", "false"):
            raise tornado.web.HTTPError(400, "band must be true or false")
        if band == "true" and call is not None:
            raise tornado.web.HTTPError(400, "band is across calls: not with call")
        bucket_ms = bucket_for(-(-(end - start) // 1000), MAX_POINTS) * 1000
        first_bucket = start // bucket_ms * bucket_ms
        rate = metric.type == COUNTER
        # A rate's first bucket needs the one before it.
        query_start = first_bucket - bucket_ms if rate else first_bucket
        series = await self.store.metric_series(metric, query_start, end, bucket_ms // 1000, rate=rate, call=call, by=by)
        # A rate's bucket still open (or just closed) covers part of its increase over all of its time.
        last_bucket = min(end, now - bucket_ms - RATE_SETTLE_MS) if rate else end
        if rate and state is not None:  # so is the bucket of an ended call's last sample
            last_bucket = min(last_bucket, state.last_seen - bucket_ms)
        lines = {}
        for name, points in sorted(series.items()):
            kept = [[ms, value] for ms, value in points if value is not None and first_bucket <= ms <= last_bucket]
            if kept:
                lines[name] = kept
        document = {"metric": metric.name, "unit": metric.display_unit, "type": metric.type,
                    "bucket_ms": bucket_ms, "start": start, "end": end}
        if band == "true":
            document.update(self.drawn(lines))
        else:
            document["peers" if by == "peer" else "calls"] = lines
        self.write_json(document)

    def drawn(self, lines):
        """What a graph of these calls' lines draws: all of them, worst first, up to --graph-lines;
        beyond, the band across them and the five worst of those live now (by quality, §10)."""
        detector = self.application.detector
        qualities = detector.qualities if detector is not None else {}
        if len(lines) <= self.application.config.graph_lines:
            drawn = worst_calls(lines, qualities)
            return {"mode": "lines", "drawn": drawn, "calls": {name: lines[name] for name in drawn}}
        drawn = worst_calls([name for name in lines if name in qualities], qualities, WORST_LINES)
        return {"mode": "band", "band": {**band_of(lines), "calls": len(lines)}, "drawn": drawn,
                "calls": {name: lines[name] for name in drawn}}


default_handlers = [
    (r"/v1/series/?", SeriesHandler),
]
