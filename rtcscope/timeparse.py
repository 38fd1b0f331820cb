"""Durations, timestamps and the bucket rules of the REST API."""
import re
from datetime import UTC, datetime

DURATION_RE = re.compile(r"(\d{1,9})([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Bucket sizes a person reads easily, smallest first (seconds).
NICE_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                10800, 21600, 43200, 86400, 604800)
# The 2015 API's fixed buckets for its interval durations.
SEED_INTERVAL_BUCKETS = {600: 30, 1800: 120, 3600: 300}
CALL_BUCKETS = (1, 2, 5, 10, 30, 60)


def parse_duration(text):
    """'10m' -> 600 seconds; None when it is not `^\\d+[smhd]$`."""
    match = DURATION_RE.fullmatch(text or "")
    if not match:
        return None
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


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
