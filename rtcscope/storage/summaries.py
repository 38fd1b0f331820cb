"""rtc_call_summaries: one point per ended call, tag `call`, stamped with the call's end
(docs/storage.md). Every process writes the same point for a call, which InfluxDB keeps once."""
from .schema import SUMMARIES_MEASUREMENT


def summary_line(call, fields, ended_ms):
    """The call's summary point in line protocol; `fields`: {name: number} (summary.history_fields)."""
    encoded = ",".join(f"{name}={value!r}" for name, value in sorted(fields.items()))
    return f"{SUMMARIES_MEASUREMENT},call={call} {encoded} {ended_ms * 1_000_000}".encode()
