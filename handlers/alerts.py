"""Alerts: GET /v1/alerts/, the same from every process (read from InfluxDB's rtc_alerts)."""
import time

import tornado.web

from rtcscope.storage.schema import IDENTIFIER_RE

from .base import APIHandler

STATES = ("firing", "all")
SCOPES = ("peer", "cohort")


class AlertsHandler(APIHandler):
    """?state=firing|all (default firing), since=<duration> (default 24h, on the alert's
    latest event), call=<id> (one call's alerts), scope=peer|cohort, dimension=<name> (the
    cohort alerts by one dimension)."""

    async def get(self):
        state = self.argument("state", "firing")
        if state not in STATES:
            raise tornado.web.HTTPError(400, "state must be firing or all")
        since = self.since_argument()
        since = min(since, self.application.config.retention_seconds)  # nothing older is kept
        call = self.argument("call")
        if call is not None and not IDENTIFIER_RE.fullmatch(call):
            raise tornado.web.HTTPError(400, "call must be a call id")
        scope = self.argument("scope")
        if scope is not None and scope not in SCOPES:
            raise tornado.web.HTTPError(400, "scope must be peer or cohort")
        dimension = self.argument("dimension")
        if dimension is not None:
            self.check_dimension(dimension)
        now_ms = int(time.time() * 1000)
        alerts = await self.application.alerts.list_alerts(state, now_ms - since * 1000, now_ms, call=call,
                                                           scope=scope, dimension=dimension)
        self.write_json({"alerts": alerts, "count": len(alerts)})


default_handlers = [
    (r"/v1/alerts/?", AlertsHandler),
]
