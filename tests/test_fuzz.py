"""Bad input, generated: whatever arrives, the answer is 200 for valid input or
a 4xx JSON error, never a 5xx; a request is stored whole or not at all; the
server stays healthy.

Each generated ingest body mixes valid samples that carry a unique `fzmark`
value with junk. After the run the marks stored in InfluxDB must be exactly
those of the requests answered 200."""
import http.client
import itertools
import json
import os
import socket
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.processes import ServerProcess

pytestmark = pytest.mark.slow

MAX_BODY = 64 * 1024
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_marks = itertools.count(1)


@pytest.fixture(scope="module")
def server(influxd, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("fuzz")
    process = ServerProcess(str(log_dir), influxdb_url=influxd.url, database=f"fuzz{os.getpid()}",
                            spool_dir=log_dir / "spool", max_body=MAX_BODY, max_samples=200,
                            flush_interval="0.1s", client_timeout="2s").start()
    process.influxd = influxd
    yield process
    process.stop()
    assert process.process.returncode == 0
    log = process.log()
    assert "Traceback" not in log and "Uncaught exception" not in log, log[-3000:]


def request(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def assert_answer(status, content_type, body, json_errors=True, path=""):
    """200 with JSON, or a 4xx that (on the API) is a JSON error; never 5xx."""
    assert status < 500, (path, status, body[:500])
    if json_errors and status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, body[:200])
        document = json.loads(body)
        assert set(document) == {"error"} and isinstance(document["error"]["message"], str), document


class Ledger:
    """Which marks must be stored (their request was acknowledged) and which must not."""

    def __init__(self, server):
        self.server = server
        self.expected, self.forbidden = set(), set()

    def ingest(self, body, marks, query=""):
        status, content_type, answer = request(self.server, "POST", "/v1/stats/write/" + query, body,
                                               {"Content-Type": "text/plain"})
        assert_answer(status, content_type, answer)
        if status == 200:
            assert json.loads(answer)["success"] is True
            self.expected.update(marks)
        else:
            assert status in (400, 413), (status, answer)
            self.forbidden.update(marks)
        return status

    def verify(self):
        database = self.server.options["database"]
        deadline = time.monotonic() + 30
        while True:
            stored = [row["fzmark"] for row in self.server.influxd.rows(
                'SELECT "fzmark" FROM "rtc_stats" WHERE time > 0', database)]
            if set(stored) >= self.expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(0.3)  # let any stray write land before the final look
        stored = [row["fzmark"] for row in self.server.influxd.rows(
            'SELECT "fzmark" FROM "rtc_stats" WHERE time > 0', database)]
        assert not self.expected - set(stored), "acknowledged samples missing"
        assert not self.forbidden & set(stored), "a refused request was partly stored"
        assert len(stored) == len(set(stored))
        assert self.server.get_json("/healthz") == (200, {"status": "ok"})


def new_mark():
    return next(_marks) + os.getpid() * 1_000_000


def mark_ts_ns():
    """A distinct recent timestamp per sample, so marks never overwrite each other."""
    return time.time_ns() // 1000 * 1000 - 1_000_000 * (next(_marks) % 100_000)


# --- line protocol ------------------------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.integers(min_value=-(10**400), max_value=10**400).map(lambda n: f"{n}i"),
    st.sampled_from(["1e999", "-1e999", "NaN", "nan", "inf", "-inf", "undefined", "null", "", "t", "FALSE",
                     "1.2.3", "0x10", "1_000", "١٢", "\"text\"", "\"unterminated", "9" * 500, "1e-999"]),
)
TAG_VALUES = st.one_of(st.from_regex(r"[A-Za-z0-9_.:@{}-]{1,20}", fullmatch=True), st.text(max_size=30),
                       st.just("x" * 200), st.just("caf\u00e9"), st.just("a\\ b\\,c\\=d"))
FIELD_NAMES = st.one_of(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True), st.text(max_size=12),
                        st.just("x" * 70), st.just("fzmark"))


@st.composite
def junk_line(draw):
    """A line that is probably wrong in one or more ways."""
    measurement = draw(st.one_of(st.just("rtc_stats"), st.text(max_size=12), st.just("rtc_stats\\ x")))
    tags = draw(st.lists(st.tuples(st.sampled_from(["id", "call", "peer", "kind", "other", "", "i\\,d"]),
                                   TAG_VALUES), max_size=4))
    fields = draw(st.lists(st.tuples(FIELD_NAMES, NUMBERS), max_size=70))
    timestamp = draw(st.one_of(st.none(), st.integers().map(str), st.text(max_size=8),
                               st.just("9" * 40), st.just("-1")))
    series = ",".join([measurement] + [f"{k}={v}" for k, v in tags])
    line = series + " " + ",".join(f"{k}={v}" for k, v in fields)
    if timestamp is not None:
        line += " " + timestamp
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(line)))
        line = line[:cut] + draw(st.text(max_size=3)) + line[cut + draw(st.integers(0, 3)):]
    return line


def valid_line(mark, ts_ns):
    return f"rtc_stats,id=fuzz-lp,peer=p,kind=audio fzmark={mark},rtt=41.5,packetsLost=3i {ts_ns}"


@st.composite
def line_body(draw):
    valid = draw(st.integers(0, 3))
    marks = [new_mark() for _ in range(valid)]
    lines = [valid_line(mark, mark_ts_ns()) for mark in marks]
    lines += draw(st.lists(junk_line(), max_size=3))
    lines = draw(st.permutations(lines))
    separator = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    body = separator.join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # bytes that are not UTF-8, or a NUL
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80"])) + body[at:]
    return body, marks


def test_line_protocol_bodies(server):
    ledger = Ledger(server)

    @FUZZ
    @given(line_body(), st.sampled_from(["", "?precision=ns", "?precision=s", "?precision=h", "?precision=%ff"]))
    def post(body_and_marks, query):
        body, marks = body_and_marks
        ledger.ingest(body, marks, query)

    post()
    # The valid lines alone are accepted: junk is what made a request fail.
    mark = new_mark()
    assert ledger.ingest(valid_line(mark, mark_ts_ns()).encode(), [mark]) == 200
    ledger.verify()


# --- JSON ---------------------------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                         st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=12)
STAT_TYPES = st.sampled_from(["outbound-rtp", "inbound-rtp", "remote-inbound-rtp", "media-source",
                              "candidate-pair", "transport", "codec", "bogus"])


@st.composite
def junk_sample(draw):
    """A sample object with one or more fields wrong, or any JSON value at all."""
    sample = {"call": draw(st.one_of(TAG_VALUES, JSON_VALUES)) if draw(st.booleans()) else "fuzz-json"}
    for key in draw(st.lists(st.sampled_from(["peer", "kind", "ts", "event", "stats", "report", "id", "x"]),
                             max_size=4, unique=True)):
        if key == "stats":
            sample[key] = draw(st.one_of(JSON_VALUES, st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=70)))
        elif key == "report":
            stat = st.fixed_dictionaries({"type": STAT_TYPES}, optional={
                "id": JSON_VALUES, "kind": st.one_of(st.sampled_from(["audio", "video"]), JSON_VALUES),
                "mediaType": JSON_VALUES, "selectedCandidatePairId": JSON_VALUES, "nominated": JSON_VALUES,
                "state": JSON_VALUES, "roundTripTime": JSON_VALUES, "packetsLost": JSON_VALUES,
                "bytesSent": JSON_VALUES, "currentRoundTripTime": JSON_VALUES, "audioLevel": JSON_VALUES,
                "availableOutgoingBitrate": JSON_VALUES, "qualityLimitationReason": JSON_VALUES,
                "framesPerSecond": JSON_VALUES, "jitter": JSON_VALUES})
            sample[key] = draw(st.one_of(JSON_VALUES, st.lists(stat, max_size=5),
                                         st.dictionaries(st.text(max_size=5), stat, max_size=3)))
        else:
            sample[key] = draw(st.one_of(JSON_VALUES, TAG_VALUES))
    return draw(st.one_of(st.just(sample), JSON_VALUES))


def valid_sample(mark):
    return {"call": "fuzz-json", "peer": "p", "kind": "video", "ts": mark_ts_ns() / 1e6,
            "stats": {"fzmark": mark, "rtt": 40.5, "jitter": None}}


RAW_JSON = st.sampled_from([
    "[" * 100_000 + "]" * 100_000, "{\"a\":" * 50_000 + "1" + "}" * 50_000, "[" * 10, "{", "[1,",
    '{"call": "fuzz-json", "stats": {"rtt": 1e999}}', '{"call": "fuzz-json", "stats": {"rtt": NaN}}',
    '{"call": "fuzz-json", "stats": {"rtt": ' + "9" * 5000 + "}}", '{"call": "fuzz-json", "ts": 1e400, "stats": {}}',
    '{"call": "fuzz-json", "ts": -1e30, "stats": {"rtt": 1}}', '{"call": "\\ud800", "stats": {}}',
    '{"call": "fuzz-json", "stats": {"rtt": 1}, "call": "dup"}', "[]", "{}", "[null]", "\ufeff{}",
    '{"call": "fuzz-json", "stats": {"r\\u0000tt": 1}}', '{"call": "fuzz-json", "stats": {"rtt": -0.0}}',
])


@st.composite
def json_body(draw):
    valid = draw(st.integers(0, 3))
    marks = [new_mark() for _ in range(valid)]
    samples = [valid_sample(mark) for mark in marks] + draw(st.lists(junk_sample(), max_size=3))
    samples = draw(st.permutations(samples))
    shape = draw(st.sampled_from(["array", "object", "raw"]))
    if shape == "object" and len(samples) == 1:
        return json.dumps(samples[0]).encode(), marks
    if shape == "raw":
        return draw(RAW_JSON).encode("utf-8", "surrogatepass"), []
    return json.dumps(samples).encode(), marks


def test_json_bodies(server):
    ledger = Ledger(server)

    @FUZZ
    @given(json_body())
    def post(body_and_marks):
        body, marks = body_and_marks
        ledger.ingest(body, marks)

    post()
    mark = new_mark()
    assert ledger.ingest(json.dumps([valid_sample(mark)]).encode(), [mark]) == 200
    ledger.verify()


# --- sizes and slow clients ---------------------------------------------------

def test_oversized_bodies_are_413_and_store_nothing(server):
    ledger = Ledger(server)
    for size in (MAX_BODY + 1, 4 * MAX_BODY, 5 * MAX_BODY):
        mark = new_mark()
        head = valid_line(mark, mark_ts_ns()).encode() + b"\n"
        body = head + b"#" * (size - len(head))
        assert ledger.ingest(body, [mark]) == 413
    # Chunked, no Content-Length: the limit is counted as the body streams in.
    mark = new_mark()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunk = valid_line(mark, mark_ts_ns()).encode() + b"\n" + b"#" * 8192 + b"\n"
    connection.request("POST", "/v1/stats/write/", body=iter([chunk] * (MAX_BODY // len(chunk) + 2)),
                       encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    assert_answer(response.status, response.getheader("Content-Type"), response.read())
    assert response.status == 413
    ledger.forbidden.add(mark)
    # Exactly the limit is fine.
    mark = new_mark()
    head = valid_line(mark, mark_ts_ns()).encode() + b"\n"
    assert ledger.ingest(head + b"#" * (MAX_BODY - len(head)), [mark]) == 200
    ledger.verify()


def test_slow_and_partial_bodies_store_nothing_and_block_no_one(server):
    ledger = Ledger(server)
    marks = [new_mark() for _ in range(3)]
    body = "\n".join(valid_line(mark, mark_ts_ns()) for mark in marks).encode()
    head = (f"POST /v1/stats/write/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    ledger.forbidden.update(marks)
    loris = []
    # Headers dribbled one byte at a time, never finished.
    slow = socket.create_connection(("127.0.0.1", server.port))
    for byte in head[:20]:
        slow.send(bytes([byte]))
        time.sleep(0.01)
    loris.append(slow)
    # A body cut off halfway, connection left open; another closed halfway.
    for close in (False, True):
        partial = socket.create_connection(("127.0.0.1", server.port))
        partial.sendall(head + body[: len(body) // 2])
        if close:
            partial.close()
        else:
            loris.append(partial)
    # Meanwhile others are served.
    mark = new_mark()
    assert ledger.ingest(valid_line(mark, mark_ts_ns()).encode(), [mark]) == 200
    assert server.get_json("/healthz") == (200, {"status": "ok"})
    # The server hangs up on the stalled ones (--client-timeout) without answering 5xx.
    for sock in loris:
        sock.settimeout(30)
        answer = sock.recv(65536)
        assert answer == b"" or not answer.startswith(b"HTTP/1.1 5"), answer
        sock.close()
    ledger.verify()


# --- every query parameter of every endpoint ------------------------------------

PARAM_VALUES = st.one_of(
    st.text(max_size=40), st.from_regex(r"-?\d{1,25}(\.\d{1,5})?", fullmatch=True),
    st.from_regex(r"\d{1,12}[smhdwy]?", fullmatch=True),
    st.sampled_from(["now", "rtt", "packetsLost", "bitrate", "live", "ended", "all", "10m", "7d", "8d",
                     "0s", "2026-11-24T10:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                     "1677-09-21T00:12:43Z", "2262-04-11T23:47:16Z", "9999-12-31T23:59:58Z", "999999999d", "-9223372036854775808",
                     "9223372036854775807", "99999999999999999999", "1e308", "NaN", "\x00", "' OR 1=1 --",
                     "\" OR \"\"=\"", "rtt\"; DROP DATABASE x", "%", "%ff", "\ud7ff\ue000", "x" * 2000]),
)
ENDPOINTS = [
    ("/v1/stats/", ["type"]),
    ("/v1/stats/interval/", ["type", "duration"]),
    ("/v1/stats/timerange/", ["type", "start", "end"]),
    ("/v1/stats/fuzz-lp/", ["type"]),
    ("/v1/calls/", ["state", "since"]),
    ("/v1/calls/fuzz-lp/", []),
    ("/v1/metrics/", []),
    ("/v1/series/", ["type", "metric", "call", "start", "end", "duration", "since"]),
    ("/v1/stats/write/", ["precision", "key"]),
    ("/healthz", []), ("/readyz", []), ("/metrics", []),
    ("/dashboard", ["metric", "metrics", "range", "start", "end", "token"]),
    ("/graph/rtt/", ["range", "start", "end", "token"]),
    ("/calls/fuzz-lp/", ["metric", "token"]),
    ("/demo", []),
]
PATH_SEGMENTS = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(
    ["write", "interval", "timerange", "..", "%2e%2e", "%00", "a" * 129, "a" * 128, "%ff", "{}", "@:.-_"]))


def quote(value):
    return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def query_string(draw, names):
    pairs = [(name, draw(PARAM_VALUES)) for name in draw(st.lists(st.sampled_from(names), max_size=6))] \
        if names else []
    pairs += draw(st.lists(st.tuples(st.text(max_size=8), PARAM_VALUES), max_size=2))
    text = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from(["&%ff=1", "&type=%ff", "&&&", "&=", "&type", "#frag", "&type=%"]))
    return text


def test_every_query_parameter_of_every_endpoint(server):
    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def get(data):
        path, names = data.draw(st.sampled_from(ENDPOINTS))
        status, content_type, body = request(server, "GET", path + "?" + data.draw(query_string(names)))
        assert_answer(status, content_type, body, json_errors=path.startswith("/v1/"), path=path)

    for path, names in ENDPOINTS:
        if names:
            @settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(query_string(names))
            def one_endpoint(query):
                status, content_type, body = request(server, "GET", path + "?" + query)
                assert_answer(status, content_type, body, json_errors=path.startswith("/v1/"), path=path)

            one_endpoint()
    get()

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["/v1/stats/{}/?type=rtt", "/v1/calls/{}/", "/graph/{}/", "/calls/{}/",
                            "/ws/graph/{}", "/v1/{}", "/{}"]), PATH_SEGMENTS)
    def path_segments(template, segment):
        status, content_type, body = request(server, "GET", template.format(quote(segment)))
        assert_answer(status, content_type, body, json_errors=template.startswith("/v1/"))

    path_segments()
    assert server.get_json("/healthz") == (200, {"status": "ok"})


# Found by the generated runs above: bounds beyond InfluxDB's int64-nanosecond
# time range made InfluxDB fail the query (a 503).
@pytest.mark.parametrize("path", [
    "/v1/stats/timerange/?type=rtt&start=9999-12-31T23:59:58Z&end=9999-12-31T23:59:59Z",
    "/v1/stats/timerange/?type=rtt&start=2262-04-11T00:00:00Z&end=2262-04-12T00:00:00Z",
    "/v1/stats/timerange/?type=rtt&start=0001-01-01T00:00:00Z&end=0001-01-02T00:00:00Z",
    "/v1/calls/?since=999999999d",
])
def test_times_beyond_influxdb_range_are_not_errors(server, path):
    status, content_type, body = request(server, "GET", path)
    assert_answer(status, content_type, body, path=path)
