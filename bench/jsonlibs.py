"""The ingest parser against decoding alone, and ujson against orjson, on the
bodies the server really decodes and the messages it really encodes; in this
process, alternating, best of N."""
import json
import timeit

import orjson
import ujson

from rtcscope.ingest.formats import Limits, parse
from tests.support.reports import chromium_reports

from .ingest import PROTOTYPE_BODY, SINGLE_BODY


def _batch_body(samples=100, calls=10):
    out = []
    for index in range(samples):
        kind = "audio" if (index // calls) % 2 == 0 else "video"
        stats = {"rtt": 30.0 + index % 17, "jitter": 1.5, "packetsLost": index % 5, "packetsSent": 1000 + index,
                 "bytesSent": (1000 + index) * 1100}
        if kind == "video":
            stats.update(framesPerSecond=30, frameWidth=1280, frameHeight=720)
        else:
            stats["inputLevel"] = 0.3
        out.append({"call": f"b0-{index % calls}", "peer": "p", "kind": kind,
                    "ts": 1795536126812.123 + index / 1000, "stats": stats})
    return json.dumps(out).encode()


def _report_body():
    report = chromium_reports()[-1]
    return json.dumps({"call": "c-42", "peer": "caller", "report": report["caller"]}).encode()


def _points_message(calls=50):
    return {"type": "points", "metric": "rtt",
            "calls": {f"call-{i:04d}": [[1795536124000 + 2000 * j, 40.5 + j] for j in range(2)] for i in range(calls)}}


def _best_seconds(function, budget=0.2, repeat=5):
    """Seconds per call: the best of `repeat` timings that share `budget` seconds."""
    number = 1
    while (elapsed := timeit.timeit(function, number=number)) < 0.01:
        number *= 4
    number = max(1, int(number * budget / repeat / elapsed))
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def compare(baseline_call, subject_call, rounds=3):
    """(subject seconds, baseline seconds) per call, measured alternately."""
    ours, theirs = [], []
    for _ in range(rounds):
        theirs.append(_best_seconds(baseline_call))
        ours.append(_best_seconds(subject_call))
    return min(ours), min(theirs)


def _line_body(samples=100):
    return b"\n".join(b"rtc_stats,call=c%d,kind=video,peer=p rtt=41.5,jitter=3.1,packetsLost=2,packetsSent=1320,"
                      b"bytesSent=184211,framesPerSecond=30,frameWidth=1280,frameHeight=720 %d"
                      % (index % 10, 1795536126812000000 + index * 1000) for index in range(samples))


def json_libraries(ctx, section):
    bodies = [("one sample", SINGLE_BODY), ("100 samples", _batch_body()), ("raw getStats() report", _report_body())]
    now_ns = 1795536126812000000
    for label, body in bodies:
        parser_s, decode_s = compare(lambda: orjson.loads(body), lambda: parse(body, now_ns, Limits()))
        section.add(f"parse + validate + encode, JSON {label}", parser_s * 1e6, "µs", "orjson.loads alone",
                    decode_s * 1e6)
    for label, body in (("2015 line", PROTOTYPE_BODY), ("100 lines", _line_body())):
        parser_s, split_s = compare(lambda: body.split(b"\n"), lambda: parse(body, now_ns, Limits()))
        section.add(f"parse + validate + encode, line protocol, {label}", parser_s * 1e6, "µs",
                    "bytes.split alone", split_s * 1e6)
    for label, body in bodies:
        orjson_s, ujson_s = compare(lambda: ujson.loads(body), lambda: orjson.loads(body))
        section.add(f"orjson.loads, {label} ({len(body):,} B)", orjson_s * 1e6, "µs", "ujson.loads", ujson_s * 1e6)
    message = _points_message()
    orjson_s, ujson_s = compare(lambda: ujson.dumps(message), lambda: orjson.dumps(message))
    section.add("orjson.dumps, points message of 50 calls", orjson_s * 1e6, "µs", "ujson.dumps", ujson_s * 1e6)
    section.note("Timed in the bench process, best of 5 repeats, subject and baseline alternating. For the "
                 "libraries a ratio below 1 means orjson is faster; the server decodes with orjson (ujson only "
                 "for what orjson refuses: NaN, 1e999, lone surrogates) and encodes with orjson.")
