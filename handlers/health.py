"""Liveness, readiness and the server's own metrics."""
from rtcscope import registry

from .base import APIHandler


class HealthHandler(APIHandler):
    def get(self):
        self.write_json({"status": "ok"})


class ReadyHandler(APIHandler):
    """Ready when InfluxDB answers and ingest has room (the log's, or the
    memory buffer's without a log): what a load balancer needs to know
    before sending ingest traffic here. A reachable InfluxDB that refuses
    points (a series limit, a type conflict) is still ready, since the
    other points land, but the body says so: `refused` is the latest
    refusal and `points_refused` counts them by reason."""

    async def get(self):
        influxdb = await self.store.ping()
        writer = self.writer
        ready = influxdb and not writer.full
        wal = writer.wal
        self.write_json({"status": "ok" if ready else "unavailable", "influxdb": influxdb,
                         "buffer": writer.depth, "buffer_memory": writer.in_memory, "buffer_max": writer.max_buffer,
                         "wal": {"bytes": wal.size, "max_bytes": wal.max_bytes, "full": wal.refusing} if wal else None,
                         "refused": writer.last_refusal, "points_refused": writer.rejected_by_reason},
                        200 if ready else 503)


class MetricsRegistryHandler(APIHandler):
    def get(self):
        self.write_json({"metrics": [m.as_json() for m in registry.all_metrics()]})


class PrometheusHandler(APIHandler):
    def get(self):
        telemetry = self.application.telemetry
        self.set_header("Content-Type", telemetry.content_type)
        self.finish(telemetry.render())


default_handlers = [
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/v1/metrics/?", MetricsRegistryHandler),
    (r"/metrics", PrometheusHandler),
]
