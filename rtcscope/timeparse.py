"""Durations, timestamps and the bucket rules of the REST API."""
import re
from datetime import UTC, datetime

DURATION_RE = re.compile(r"(\d{1,9})([smhd])")
# --wal-fsync's intervals: fractions of a second and milliseconds (1.5s, 200ms).
SUBSECOND_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s)")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Bucket sizes a person reads easily, smallest first (seconds).
NICE_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                10800, 21600, 43200, 86400, 604800)
# The 2015 API's fixed buckets for its interval durations.
SEED_INTERVAL_BUCKETS = {600: 30, 1800: 120, 3600: 300}
CALL_BUCKETS = (1, 2, 5, 10, 30, 60)


def parse_duration(text, form=DURATION_RE):
    """'10m' -> 600 seconds; None when it is not of `form`: `^\\d+[smhd]$`, or
    SUBSECOND_RE's `1.5s` and `200ms`."""
    match = form.fullmatch(text or "")
    if not match:
        return None
    number, unit = match.groups()
    if unit == "ms":
        return float(number) / 1000
    return (float(number) if "." in number else int(number)) * UNIT_SECONDS[unit]


def parse_time_ms(text, now_ms):
    """RFC 3339, Unix milliseconds or 'now' -> Unix ms; None when unparseable."""
    if text is None:
        return None
    if text == "now":
        return now_ms
    if re.fullmatch(r"-?\d{1,16}(\.\d+)?", text):
        return int(float(text))
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def bucket_for(span_seconds, max_points=500):
    """The smallest readable bucket giving at most `max_points` over the span."""
    for bucket in NICE_BUCKETS:
        if span_seconds / bucket <= max_points:
            return bucket
    return -(-span_seconds // max_points)


def interval_bucket(span_seconds):
    return SEED_INTERVAL_BUCKETS.get(span_seconds) or bucket_for(span_seconds)


def call_bucket(span_seconds):
    """1 min, or for calls under 2 h the smallest bucket giving ≤ 120 points."""
    if span_seconds < 7200:
        for bucket in CALL_BUCKETS:
            if span_seconds / bucket <= 120:
                return bucket
    return 60


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
