"""rtc_call_summaries: one point per ended call, tag `call`, stamped with the call's end; and
rtc_peer_summaries: one point per ended peer, its dimensions as tags, stamped with its end
(docs/storage.md). Every process writes the same points, which InfluxDB keeps once."""
import re
import zlib

from .schema import PEER_SUMMARIES_MEASUREMENT, SUMMARIES_MEASUREMENT

# What a tag value cannot hold as is: line protocol's separators are escaped, a backslash
# (whose escapes differ between InfluxDB versions) and control characters are left out.
_TAG_SEPARATORS = re.compile(r"([ ,=])")
_TAG_DROPPED = re.compile(r"[\\\x00-\x1f\x7f]")


def summary_line(call, fields, ended_ms):
    """The call's summary point in line protocol; `fields`: {name: number} (summary.history_fields)."""
    return f"{SUMMARIES_MEASUREMENT},call={call} {_fields(fields)} {ended_ms * 1_000_000}".encode()


def peer_summary_line(call, peer, dimensions, fields, ended_ms):
    """An ended peer's point: `dimensions` ({name: value}, bounded) as its tags, `fields`
    ({name: number}) as its fields. No call or peer tag (their values are unbounded): the
    time is the peer's end plus a sub-millisecond offset from a hash of (call, peer), so
    two peers with the same dimensions ending in the same millisecond are two points,
    and every process writes the same one for a peer."""
    tags = "".join(f",{name}={value}" for name, value in sorted((name, _tag_value(value or ""))
                                                                for name, value in dimensions.items()) if value)
    offset = zlib.crc32(f"{call}\n{peer}".encode()) % 1_000_000
    return f"{PEER_SUMMARIES_MEASUREMENT}{tags} {_fields(fields)} {int(ended_ms) * 1_000_000 + offset}".encode()


def _fields(fields):
    return ",".join(f"{name}={float(value)!r}" for name, value in sorted(fields.items()))


def _tag_value(value):
    value = _TAG_DROPPED.sub("", value)
    return _TAG_SEPARATORS.sub(r"\\\1", value) if (" " in value or "," in value or "=" in value) else value
