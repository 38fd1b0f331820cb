"""rtc_peer_summaries' points: bounded dimensions as escaped tags, a stable sub-millisecond offset."""
from rtcscope.storage.summaries import peer_summary_line

ENDED_MS = 1_795_536_000_000


def test_tags_are_escaped_and_the_offset_is_stable_per_peer():
    line = peer_summary_line("c1", "alice", {"browser": "Mobile Safari", "os": "a,b=c\\d\n", "region": None},
                             {"poor": 1.0, "duration_s": 3, "mos_mean": 2.5}, ENDED_MS)
    fields, stamp = line.decode().rsplit(" ", 2)[1], int(line.rsplit(b" ", 1)[1])
    assert line.startswith(b"rtc_peer_summaries,browser=Mobile\\ Safari,os=a\\,b\\=cd ")
    assert fields == "duration_s=3.0,mos_mean=2.5,poor=1.0" and b"region" not in line
    assert ENDED_MS * 1_000_000 <= stamp < (ENDED_MS + 1) * 1_000_000
    assert peer_summary_line("c1", "alice", {}, {"poor": 0.0}, ENDED_MS).endswith(str(stamp).encode())
    assert not peer_summary_line("c1", "bob", {}, {"poor": 0.0}, ENDED_MS).endswith(str(stamp).encode())
