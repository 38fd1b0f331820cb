"""The server's settings: one typed, frozen object built once at start.

server.py defines the options (tornado.options: names, defaults, help) and
builds this from their values; everything else reads it, durations already
in seconds, lists as tuples.
"""
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import NewType

from .dimensions.tags import parse_peer_tags
from .timeparse import SUBSECOND_RE, parse_duration

Seconds = NewType("Seconds", float)
# A retention of "inf" keeps data forever; what reads "how far back" stops here.
INFINITE_RETENTION_SECONDS = 400 * 86400


class SettingsError(ValueError):
    """An option's value the server cannot run with: it does not start."""


@dataclass(frozen=True)
class Settings:
    address: str
    port: int
    influxdb_url: str
    database: str
    retention: str  # InfluxDB's duration (30d, inf): the database's default policy is created with it
    tick: Seconds
    detector: bool
    flush_interval: Seconds
    batch_size: int
    call_timeout: Seconds
    quality_window: Seconds
    max_skew: Seconds
    max_body: int
    max_import: int
    max_imports: int
    max_samples: int
    max_buffer: int
    wal_dir: str
    wal_fsync: Seconds | None  # None: "always", before every answer
    max_wal: int
    spool_dir: str
    shutdown_timeout: Seconds
    ingest_keys: str
    cors_origins: tuple[str, ...]
    ws_origins: tuple[str, ...]
    ws_max_pending: int
    graph_lines: int
    xheaders: bool
    max_new_calls: int
    new_calls_window: Seconds
    max_calls_per_request: int
    max_live_calls: int
    max_ended_calls: int
    client_timeout: Seconds
    stats_ws: bool
    event_loop: str
    read_token: str
    read_token_file: str
    protect_metrics: bool
    alert_rules: str
    alert_webhooks: tuple[str, ...]
    alert_secret: str
    alert_retry: Seconds
    alertmanager_resend: Seconds
    public_url: str  # given, or http://address:port
    peer_tags: tuple[str, ...]  # the application tags kept as dimensions, checked (dimensions/tags.py)
    geoip_db: str  # MaxMind-format files, comma-separated (empty: the embedded country table)
    max_dimension_values: int
    explain_min_poor: int

    @classmethod
    def from_options(cls, values):
        """From the options' values by name (tornado.options' `as_dict()`, with a
        test's changes): a duration is a timedelta or seconds."""
        built = {}
        for field in fields(cls):
            value = values[field.name]
            if field.type is Seconds:
                value = _in_seconds(value)
            elif field.type == tuple[str, ...]:
                value = tuple(value)
            built[field.name] = value
        built["wal_fsync"] = _fsync_interval(values["wal_fsync"])
        if built["graph_lines"] < 0:
            raise SettingsError(f"--graph-lines={built['graph_lines']}: give 0 or more calls")
        built["public_url"] = values["public_url"] or f"http://{values['address']}:{values['port']}"
        built["peer_tags"] = _peer_tags(values["peer_tags"])
        for name in ("max_dimension_values", "explain_min_poor"):
            if built[name] < 1:
                raise SettingsError(f"--{name.replace('_', '-')}={built[name]}: give a number of at least 1")
        return cls(**built)

    @property
    def retention_limit(self):
        """Seconds data is kept, None when forever."""
        return parse_duration(self.retention)

    @property
    def retention_seconds(self):
        """How far back data can be: the retention, or 400 days when it is infinite."""
        return self.retention_limit or INFINITE_RETENTION_SECONDS


def _peer_tags(value):
    """--peer-tags: comma-separated names (a list from a config file or a test is joined first)."""
    text = value if isinstance(value, str) else ",".join(value)
    try:
        return parse_peer_tags(text)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _in_seconds(value):
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _fsync_interval(value):
    """--wal-fsync: seconds between background fsyncs, or None for 'always'."""
    if value == "always":
        return None
    if not isinstance(value, str):
        return _in_seconds(value)
    seconds = parse_duration(value.strip(), SUBSECOND_RE)
    if seconds is None:
        raise SettingsError(f"--wal-fsync={value}: give a duration (1s, 200ms) or 'always'")
    return float(seconds)
