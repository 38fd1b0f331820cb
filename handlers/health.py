"""Liveness, readiness and the server's own metrics."""
from rtcscope import registry

from .base import APIHandler


class HealthHandler(APIHandler):
    def get(self):
        self.write_json({"status": "ok"})


class ReadyHandler(APIHandler):
    """Ready when InfluxDB answers and the buffer can take more: what a load
    balancer needs to know before sending ingest traffic here."""

    async def get(self):
        influxdb = await self.store.ping()
        writer = self.writer
        ready = influxdb and not writer.full
        self.write_json({"status": "ok" if ready else "unavailable", "influxdb": influxdb,
                         "buffer": writer.depth, "buffer_max": writer.max_buffer},
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
