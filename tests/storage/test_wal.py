"""The write-ahead log on a real directory: records, torn tails, the
low-water mark, locks and whose log it is."""
import asyncio
import os

import pytest

from rtcscope.storage.wal import SEGMENT_MAGIC, LogFull, WALError, WriteAheadLog


def lines(first, count):
    return [f"rtc_stats,call=c seq={n} {n}000".encode() for n in range(first, first + count)]


def opened(path, database="db", **kwargs):
    return WriteAheadLog(str(path), database, **kwargs).open()


def read_all(wal):
    out = []
    while records := wal.read(1000):
        out.extend(records)
    return out


def seqs(records):
    return [int(line.split(b"seq=")[1].split(b" ")[0]) for _, record_lines in records for line in record_lines]


def close(wal):
    asyncio.run(wal.close())


def segments(path):
    return sorted(name for name in os.listdir(path) if name.endswith(".wal"))


def test_records_come_back_in_order_after_a_restart(tmp_path):
    wal = opened(tmp_path)
    for first in range(0, 50, 10):
        wal.append(lines(first, 10))
    assert wal.unread_points == 50
    close(wal)
    again = opened(tmp_path)
    assert again.unread_points == 50
    records = read_all(again)
    assert seqs(records) == list(range(50))
    assert [len(record_lines) for _, record_lines in records] == [10] * 5
    assert again.caught_up
    close(again)


def test_read_respects_the_point_budget_but_returns_at_least_one_record(tmp_path):
    wal = opened(tmp_path)
    for first in range(0, 30, 10):
        wal.append(lines(first, 10))
    assert seqs(wal.read(25)) == list(range(20))
    assert seqs(wal.read(5)) == list(range(20, 30))
    assert wal.read(100) == []
    close(wal)


def written_segment(path, records):
    """A closed log of `records` records of 10 points; the path of its one segment."""
    wal = opened(path)
    for first in range(0, records * 10, 10):
        wal.append(lines(first, 10))
    close(wal)
    (segment,) = segments(path)
    return path / segment


def test_a_torn_last_record_is_cut_and_the_rest_replayed(tmp_path):
    path = written_segment(tmp_path, 4)
    size = path.stat().st_size
    with open(path, "r+b") as segment_file:
        segment_file.truncate(size - 7)  # the last record loses its tail
    again = opened(tmp_path)
    assert again.records_cut == 1
    assert seqs(read_all(again)) == list(range(30))
    close(again)
    assert path.stat().st_size < size - 7  # the torn bytes are gone from disk, not skipped each start


def test_a_damaged_record_stops_replay_of_its_segment_at_its_start(tmp_path):
    path = written_segment(tmp_path, 3)
    data = bytearray(path.read_bytes())
    second_payload = data.index(b"seq=10 ")
    data[second_payload + 4] ^= 0xFF  # a flipped byte: the CRC no longer matches
    path.write_bytes(bytes(data))
    again = opened(tmp_path)
    assert seqs(read_all(again)) == list(range(10))
    close(again)


def test_done_records_are_not_replayed_and_drained_segments_are_deleted(tmp_path):
    wal = opened(tmp_path, max_bytes=16 * 16 * 1024)  # 16 KiB segments
    positions = [wal.append(lines(first, 20)) for first in range(0, 4000, 20)]
    assert len(segments(tmp_path)) >= 5
    records = read_all(wal)
    assert [position for position, _ in records] == positions
    wal.done(positions[149])
    remaining = segments(tmp_path)
    assert int(remaining[0][:-4]) == positions[149][0]  # whole segments before it went
    size_on_disk = sum(os.path.getsize(tmp_path / name) for name in remaining)
    assert wal.size == size_on_disk
    close(wal)
    again = opened(tmp_path)
    assert seqs(read_all(again)) == list(range(3000, 4000))
    close(again)


def test_appends_beyond_max_wal_are_refused_until_a_segment_drains(tmp_path):
    wal = opened(tmp_path, max_bytes=64 * 1024, segment_bytes=16 * 1024)
    positions = []
    with pytest.raises(LogFull):
        while True:
            positions.append(wal.append(lines(len(positions) * 20, 20)))
    assert wal.refusing and wal.size <= 64 * 1024
    read_all(wal)
    wal.done(positions[len(positions) // 2])
    assert not wal.refusing
    wal.append(lines(0, 20))
    close(wal)


def test_a_second_process_on_the_directory_is_refused(tmp_path):
    wal = opened(tmp_path)
    with pytest.raises(WALError, match=rf"in use by another process \(pid {os.getpid()}\)"):
        opened(tmp_path)
    close(wal)
    close(opened(tmp_path))  # free again once the first has closed


def test_another_databases_log_is_refused_while_it_holds_points(tmp_path):
    wal = opened(tmp_path, database="one")
    position = wal.append(lines(0, 5))
    close(wal)
    with pytest.raises(WALError, match=r"holds points for database 'one', not 'two'"):
        opened(tmp_path, database="two")
    wal = opened(tmp_path, database="one")  # the refusal left the log (and the lock) alone
    read_all(wal)
    wal.done(position)
    close(wal)
    close(opened(tmp_path, database="two"))  # drained: another database may take the directory


def test_an_empty_log_leaves_no_segment_behind(tmp_path):
    wal = opened(tmp_path)
    position = wal.append(lines(0, 5))
    read_all(wal)
    wal.done(position)
    close(wal)
    assert segments(tmp_path) == []
    close(opened(tmp_path))
    assert segments(tmp_path) == []


def test_a_segment_is_recognised_by_its_magic(tmp_path):
    (tmp_path / "00000001.wal").write_bytes(b"not a log at all")
    wal = opened(tmp_path)
    assert wal.unread_points == 0 and wal.records_cut == 1
    assert segments(tmp_path) == ["00000002.wal"]
    assert (tmp_path / "00000002.wal").read_bytes() == SEGMENT_MAGIC
    close(wal)


def test_always_shares_one_fsync_between_concurrent_requests(tmp_path):
    async def scenario():
        wal = opened(tmp_path, fsync_interval=None)
        wal.start()

        async def request(n):
            wal.append(lines(n * 10, 10))
            return await wal.durable()

        results = await asyncio.gather(*[request(n) for n in range(50)])
        fsyncs = wal.fsyncs
        await wal.close()
        return results, fsyncs

    results, fsyncs = asyncio.run(scenario())
    assert results == [True] * 50
    assert 1 <= fsyncs <= 3, fsyncs


def test_interval_mode_answers_at_once_and_syncs_in_the_background(tmp_path):
    async def scenario():
        wal = opened(tmp_path, fsync_interval=0.05)
        wal.start()
        wal.append(lines(0, 10))
        assert await wal.durable() is True
        assert wal.fsyncs == 0
        await asyncio.sleep(0.3)
        fsyncs = wal.fsyncs
        await wal.close()
        return fsyncs

    assert asyncio.run(scenario()) >= 1


def test_segment_numbers_are_never_reused_under_an_old_checkpoint(tmp_path):
    """A drained log leaves a checkpoint behind; the next life's records
    must not be taken for ones that checkpoint already covers."""
    wal = opened(tmp_path)
    position = wal.append(lines(0, 50))
    read_all(wal)
    wal.done(position)
    close(wal)
    wal = opened(tmp_path)
    wal.append(lines(100, 5))
    close(wal)
    again = opened(tmp_path)
    assert seqs(read_all(again)) == list(range(100, 105))
    close(again)


def killed_after_two_of_three_records_were_done(path):
    """A log whose process died (nothing closed) after the first two of its three records were written."""
    wal = opened(path)
    wal.append(lines(0, 10))
    second = wal.append(lines(10, 10))
    wal.append(lines(20, 10))
    read_all(wal)
    wal.done(second)
    for fd in [wal._append_fd, wal._checkpoint_fd, wal._lock_fd]:  # what the kernel does for a killed process
        os.close(fd)
    return second


def test_a_restart_replays_only_the_records_after_the_checkpoint(tmp_path):
    killed_after_two_of_three_records_were_done(tmp_path)
    again = opened(tmp_path)
    assert seqs(read_all(again)) == list(range(20, 30))
    close(again)


def test_a_damaged_checkpoint_replays_every_record(tmp_path):
    killed_after_two_of_three_records_were_done(tmp_path)
    with open(tmp_path / "checkpoint", "r+b") as checkpoint:
        checkpoint.write(b"\x07")  # a torn overwrite: its CRC no longer matches
    again = opened(tmp_path)
    assert seqs(read_all(again)) == list(range(30))
    close(again)


def test_an_older_versions_checkpoint_is_read(tmp_path):
    """Versions before the fixed-width checkpoint wrote it as JSON."""
    segment, offset = killed_after_two_of_three_records_were_done(tmp_path)
    (tmp_path / "checkpoint").write_text(f"[{segment}, {offset}]")
    again = opened(tmp_path)
    assert seqs(read_all(again)) == list(range(20, 30))
    again.done(again._last_position)
    close(again)
    assert segments(tmp_path) == []


def test_a_log_no_larger_than_one_segment_frees_its_room_once_drained(tmp_path):
    wal = opened(tmp_path, max_bytes=8 * 1024)  # the whole log fits in one (active) segment
    positions = []
    with pytest.raises(LogFull):
        while True:
            positions.append(wal.append(lines(len(positions) * 20, 20)))
    read_all(wal)
    wal.done(positions[-1])
    assert not wal.refusing and wal.size == len(SEGMENT_MAGIC)
    wal.append(lines(0, 20))
    close(wal)


def test_a_drained_log_takes_a_record_that_fits_only_once_its_segment_is_freed(tmp_path):
    """Everything was written, then an append finds the log full: the drained active
    segment is freed there and then, since no later `done` would come to free it."""
    wal = opened(tmp_path, max_bytes=8 * 1024)  # the whole log fits in one (active) segment
    position = wal.append(lines(0, 120))
    read_all(wal)
    wal.done(position)  # drained, but not full yet: the segment stays
    assert wal.size > 3 * 1024 and not wal.refusing
    position = wal.append(lines(1000, 160))  # would not fit beside the drained records
    assert not wal.refusing and 4 * 1024 < wal.size < 8 * 1024
    assert seqs(read_all(wal)) == list(range(1000, 1160))
    wal.done(position)
    close(wal)
