"""The captured chrome://webrtc-internals dumps, moved in time for a test.

A dump keeps the times it was captured at; a test moves every time in it
(series spans and each stat's timestamp series) so that its last sample
lands where the test wants it, e.g. within the retention period."""
import gzip
import json
import pathlib
from datetime import UTC, datetime

from tests.support.samples import now_ms

DATA = pathlib.Path(__file__).resolve().parent
AUDIO_ONLY = DATA / "webrtc-internals-audio-only.json"
AUDIO_VIDEO = DATA / "webrtc-internals-audio-video.json"
AUDIO_VIDEO_OPEN = DATA / "webrtc-internals-audio-video-open.json"
AUDIO_ONLY_GZIP = DATA / "webrtc-internals-audio-only.json.gz"
ALL_DUMPS = (AUDIO_ONLY, AUDIO_VIDEO, AUDIO_VIDEO_OPEN)


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def load(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as file:
        return json.load(file)


def timestamps(dump):
    """Every report time (ms) in the dump, per PeerConnection key."""
    return {key: sorted({t for series_key, series in pc["stats"].items() if series_key.endswith("-timestamp")
                         and not series["statsType"].startswith("remote-") for t in json.loads(series["values"])})
            for key, pc in dump["PeerConnections"].items()}


def last_time(dump):
    return max(max(times) for times in timestamps(dump).values() if times)


def shifted(dump, last_ms):
    """A copy of `dump` with every time moved so its last report is at `last_ms`."""
    offset = last_ms - last_time(dump)
    moved = dict(dump, PeerConnections={})
    for key, pc in dump["PeerConnections"].items():
        stats = {}
        for series_key, series in pc["stats"].items():
            series = dict(series, startTime=iso(parse_iso(series["startTime"]) + offset),
                          endTime=iso(parse_iso(series["endTime"]) + offset))
            if series_key.endswith("-timestamp"):
                series["values"] = json.dumps([t + offset for t in json.loads(series["values"])])
            stats[series_key] = series
        moved["PeerConnections"][key] = dict(pc, stats=stats)
    return moved


def recent(path, ago_ms=120_000):
    """The dump at `path`, its last report `ago_ms` ago."""
    return shifted(load(path), now_ms() - ago_ms)


def long_dump(base, polls, connections, last_ms):
    """A dump of `connections` copies of `base`'s first PeerConnection whose
    every series has `polls` values, one a second, ending at `last_ms`: a
    long call's dump, to measure with."""
    first_ms = last_ms - (polls - 1) * 1000
    pc = next(iter(base["PeerConnections"].values()))
    stats = {}
    for series_key, series in pc["stats"].items():
        values = json.loads(series["values"])
        if series_key.endswith("-timestamp"):
            values = [first_ms + index * 1000 + 0.5 for index in range(polls)]
        else:
            values = [values[index % len(values)] for index in range(polls)]
        stats[series_key] = dict(series, startTime=iso(first_ms), endTime=iso(last_ms),
                                 values=json.dumps(values, separators=(",", ":")))
    return dict(base, PeerConnections={f"{number}-1": dict(pc, stats=stats) for number in range(connections)})
