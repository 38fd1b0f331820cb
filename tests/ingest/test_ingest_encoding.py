"""The JSON fast path (orjson-encoded fields) writes exactly the values the
field-by-field path would, and hands every other value to that path."""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcscope.ingest.formats import Limits, parse
from rtcscope.storage.lines import encode_fields

NOW = 1_795_536_126_812_000_000
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)
finite = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63 - 1))


def stored_fields(line):
    """{name: float} of one rtc_stats line, as InfluxDB reads the text."""
    fields = line.split(b" ")[1]
    return {name.decode(): float(value) for name, value in (pair.split(b"=") for pair in fields.split(b","))}


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(st.dictionaries(names, finite, min_size=1, max_size=20))
def test_finite_numbers_round_trip_through_the_fast_path(stats):
    assert encode_fields(stats) is not None
    parsed = parse(json.dumps({"call": "c", "stats": stats}).encode(), NOW, Limits())
    assert parsed.accepted == 1 and parsed.dropped == 0
    assert stored_fields(parsed.lines[0]) == {name: float(value) for name, value in stats.items()}
    assert list(stored_fields(parsed.lines[0])) == list(stats)  # order kept


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(st.dictionaries(names, st.one_of(finite, st.booleans(), st.none()), min_size=1, max_size=12))
def test_booleans_and_nulls_take_the_one_by_one_path(stats):
    parsed = parse(json.dumps({"call": "c", "stats": stats}).encode(), NOW, Limits())
    expected = {name: float(value) for name, value in stats.items() if value is not None}
    assert parsed.dropped == sum(value is None for value in stats.values())
    assert (stored_fields(parsed.lines[0]) if expected else {}) == expected


def test_values_the_fast_path_must_not_encode():
    for stats in ({"a": math.nan}, {"a": math.inf}, {"a": True}, {"a": "1"}, {"a": [1]}, {"a": None},
                  {"a": 2**64}):
        assert encode_fields(stats) is None, stats
    assert encode_fields({"rtt": 41, "jitter": 1.5e-7}) == b"rtt=41,jitter=1.5e-7"
