"""Write-ahead log: acknowledged points on disk until InfluxDB has them.

The log is a directory of numbered segment files. Each record is one
request's points (line protocol, as the writer sends them) behind a header
of payload length, point count and a CRC32 of both, so a record torn by a
crash (or a power loss) is recognised at start and cut, never replayed as
garbage. Records are read back in the order they were appended; a
checkpoint says where the points still owed to InfluxDB begin, and a
segment is deleted once every record in it is done.

One directory belongs to one process (an exclusive `flock` on `lock`) and
one database (`meta.json`): a log written for another database is refused.
"""
import asyncio
import fcntl
import json
import logging
import os
import struct
import time
import zlib

log = logging.getLogger("rtcscope.wal")

FORMAT = 1
SEGMENT_MAGIC = b"RTCWAL1\n"
SEGMENT_SUFFIX = ".wal"
RECORD_HEADER = struct.Struct("<III")  # payload length, point count, crc32(length, count, payload)
RECORD_PREFIX = struct.Struct("<II")
READ_CHUNK = 1024 * 1024
MAX_RECORD = 256 * 1024 * 1024  # a length beyond this is corruption, not a record
# The checkpoint: segment and offset, then a CRC32 of both, at fixed width, overwritten in place.
CHECKPOINT = struct.Struct("<QQI")


class WALError(Exception):
    """The log directory cannot be used by this process (locked, another database, unreadable)."""


class LogFull(Exception):
    """Appending would take the log beyond --max-wal."""


def segment_size_for(max_bytes):
    """Deletion is per segment: small enough that a drained segment frees a
    useful share of the log, large enough that files stay few."""
    return max(16 * 1024, min(64 * 1024 * 1024, max_bytes // 16))


class WriteAheadLog:
    """Positions are (segment number, byte offset just after a record)."""

    def __init__(self, path, database, *, max_bytes=1024 ** 3, fsync_interval=1.0, segment_bytes=None):
        self.path = path
        self.database = database
        self.max_bytes = max_bytes
        self.fsync_interval = fsync_interval  # seconds, or None: fsync before every answer
        self.segment_bytes = segment_bytes or segment_size_for(max_bytes)
        self._sizes = {}  # segment number -> bytes on disk
        self.size = 0
        self._lock_fd = None
        self._append_fd = None
        self._active = 0
        self._read_fds = {}
        self._unsynced_fds = []  # rotated segments not yet fsynced
        self._appended = 0  # records appended by this process
        self._synced = 0  # of which known to be on disk
        self._dir_dirty = False  # a segment was created since the last fsync
        self._read_pos = (0, 0)
        self.unread_points = 0  # appended (or found at start) and not yet read back
        self.refusing = False  # the last append was refused for lack of room
        self._checkpoint = (0, 0)
        self._checkpoint_fd = None
        self._last_position = None  # of the newest record in the log
        self._sync_waiters = []
        self._syncing = False
        self._sync_task = None
        self.fsyncs = 0
        self.fsync_seconds = 0.0
        self.records_cut = 0

    @property
    def sync_each(self):
        return self.fsync_interval is None

    # --- opening ----------------------------------------------------------------

    def open(self):
        """Lock the directory, check whose log it is, cut torn records and
        position the reader at the first point still owed."""
        os.makedirs(self.path, mode=0o750, exist_ok=True)
        self._lock()
        segments = self._segment_numbers()
        checkpoint = self._load_checkpoint()
        # Never reuse a number: a checkpoint naming an old segment must not skip a new one's records.
        self._active = max([checkpoint[0], *segments]) + 1
        for number in segments:
            if number < checkpoint[0]:
                self._remove_segment(number)
        segments = [number for number in segments if number >= checkpoint[0]]
        if segments and checkpoint[0] != segments[0]:
            checkpoint = (segments[0], len(SEGMENT_MAGIC))
        for number in segments:
            start = checkpoint[1] if number == checkpoint[0] else 0
            self._sizes[number], points = self._repair(number, start)
            self.unread_points += points
            if not self._sizes[number]:
                del self._sizes[number]
        segments = [number for number in segments if number in self._sizes]
        self.size = sum(self._sizes.values())
        if segments and checkpoint[0] != segments[0]:
            checkpoint = (segments[0], len(SEGMENT_MAGIC))
        elif segments:
            checkpoint = (checkpoint[0], min(max(checkpoint[1], len(SEGMENT_MAGIC)), self._sizes[checkpoint[0]]))
        self._check_meta(pending=self.unread_points > 0)
        self._read_pos = checkpoint if segments else (self._active, len(SEGMENT_MAGIC))
        self._last_position = (segments[-1], self._sizes[segments[-1]]) if segments else None
        self._checkpoint = self._read_pos
        self._new_segment()
        self._fsync_dir()
        if self.unread_points:
            log.info("write-ahead log %s: %d points to replay (%d bytes)", self.path, self.unread_points, self.size)
        return self

    def _lock(self):
        path = os.path.join(self.path, "lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise WALError(f"--wal-dir {self.path} is in use by another process (pid {holder}); "
                           f"each server process needs its own --wal-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _check_meta(self, pending):
        path = os.path.join(self.path, "meta.json")
        try:
            with open(path) as meta_file:
                meta = json.load(meta_file)
        except FileNotFoundError:
            meta = None
        except ValueError:
            meta = {}
        if meta is not None and meta.get("database") != self.database and pending:
            self._unlock()
            raise WALError(f"--wal-dir {self.path} holds points for database {meta.get('database')!r}, "
                           f"not {self.database!r}; start with --database={meta.get('database')} to deliver "
                           f"them, or give this server another --wal-dir")
        if meta != {"format": FORMAT, "database": self.database}:
            _write_atomically(path, json.dumps({"format": FORMAT, "database": self.database}).encode())

    def _segment_numbers(self):
        return sorted(int(name[:-len(SEGMENT_SUFFIX)]) for name in os.listdir(self.path)
                      if name.endswith(SEGMENT_SUFFIX) and name[:-len(SEGMENT_SUFFIX)].isdigit())

    def _segment_path(self, number):
        return os.path.join(self.path, f"{number:08d}{SEGMENT_SUFFIX}")

    def _load_checkpoint(self):
        """(segment, offset); (0, 0) when there is none or it cannot be read (all is replayed).
        A JSON `[segment, offset]` is an older version's checkpoint."""
        try:
            with open(os.path.join(self.path, "checkpoint"), "rb") as checkpoint_file:
                data = checkpoint_file.read()
        except FileNotFoundError:
            return 0, 0
        if len(data) == CHECKPOINT.size:
            segment, offset, crc = CHECKPOINT.unpack(data)
            return (segment, offset) if zlib.crc32(data[:-4]) == crc else (0, 0)
        try:
            segment, offset = json.loads(data)
            return int(segment), int(offset)
        except (ValueError, TypeError):
            return 0, 0

    def _write_checkpoint(self, position):
        """Overwritten in place, not fsynced: a stale checkpoint only makes a restart write some points
        again, a torn one fails its CRC (all is replayed). Not a new file renamed over the old one, as
        a rename makes ext4 write the new file's data out then and there (2-15 ms measured, on the
        event loop, every flush)."""
        if self._checkpoint_fd is None:
            self._checkpoint_fd = os.open(os.path.join(self.path, "checkpoint"), os.O_WRONLY | os.O_CREAT, 0o600)
            os.ftruncate(self._checkpoint_fd, 0)  # an older version's JSON may be longer
        data = CHECKPOINT.pack(*position, 0)[:-4]
        os.pwrite(self._checkpoint_fd, data + zlib.crc32(data).to_bytes(4, "little"), 0)

    def _repair(self, number, start):
        """(length of the segment's valid records, points after `start`); anything
        after the valid records is cut (a torn write), an unusable file removed."""
        path = self._segment_path(number)
        with open(path, "rb") as segment_file:
            data = segment_file.read()
        valid = len(SEGMENT_MAGIC) if data.startswith(SEGMENT_MAGIC) else 0
        points = 0
        if valid:
            for count, end, _ in _records(data, valid):
                valid = end
                if end > start:
                    points += count
        if valid == len(SEGMENT_MAGIC) == len(data):  # nothing in it (a crash right after it was made)
            os.remove(path)
            return 0, 0
        if valid < len(data):
            self.records_cut += 1
            log.warning("write-ahead log %s: cut %d bytes of a torn or damaged record at offset %d",
                        path, len(data) - valid, valid)
            if valid == 0:
                os.remove(path)
                return 0, 0
            with open(path, "r+b") as segment_file:
                segment_file.truncate(valid)
                os.fsync(segment_file.fileno())
        return valid, points

    # --- appending --------------------------------------------------------------

    def append(self, lines, force=False):
        """Append one record; returns its position. `force` ignores --max-wal
        (points taken over from an old spool directory)."""
        payload = b"\n".join(lines)
        prefix = RECORD_PREFIX.pack(len(payload), len(lines))
        header = prefix + zlib.crc32(payload, zlib.crc32(prefix)).to_bytes(4, "little")
        size = len(header) + len(payload)
        if not force and self.size + size > self.max_bytes:
            self.refusing = True
            if self._checkpoint == (self._active, self._sizes[self._active]) and self._sizes[self._active] > len(SEGMENT_MAGIC):
                # All of it is in InfluxDB, but in the active segment, which only `done` frees:
                # with nothing more to write, no `done` would come, and the log would refuse for ever.
                self.done(self._checkpoint)
            if self.size + size > self.max_bytes:
                raise LogFull()
        if self._sizes[self._active] + size > self.segment_bytes and self._sizes[self._active] > len(SEGMENT_MAGIC):
            self._rotate()
        self._write_record(header, payload)
        self.refusing = False
        self._sizes[self._active] += size
        self.size += size
        self.unread_points += len(lines)
        self._appended += 1
        self._last_position = (self._active, self._sizes[self._active])
        return self._last_position

    def _write_record(self, header, payload):
        """All of it or none: a short write (a full disk) is undone, so the
        segment never holds half a record while the process lives. One
        `writev`, so the payload (a whole import can be megabytes) is not
        copied once more to put the header in front of it."""
        size = len(header) + len(payload)
        written = 0
        try:
            written = os.writev(self._append_fd, (header, payload))
            while written < size:
                rest = memoryview(header + payload)[written:] if written < len(header) else \
                    memoryview(payload)[written - len(header):]
                written += os.write(self._append_fd, rest)
        except OSError:
            if written:
                os.ftruncate(self._append_fd, self._sizes[self._active])
            raise

    def _new_segment(self):
        fd = os.open(self._segment_path(self._active), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.write(fd, SEGMENT_MAGIC)
        self._append_fd = fd
        self._sizes[self._active] = len(SEGMENT_MAGIC)
        self.size += len(SEGMENT_MAGIC)
        self._dir_dirty = True

    def _rotate(self):
        self._unsynced_fds.append(self._append_fd)
        self._active += 1
        self._new_segment()

    # --- reading back -----------------------------------------------------------

    @property
    def caught_up(self):
        """Everything in the log has been read back (or was never to be)."""
        return self.unread_points == 0

    def mark_read(self, position):
        """The record just appended at `position` was handed over in memory."""
        self._read_pos = position
        self.unread_points = 0

    def read(self, max_points, at_least_one=True):
        """Records from the reader's position on: [(position, lines)], up to
        `max_points` points (and, if `at_least_one`, one record whatever its size)."""
        out, points = [], 0
        while self.unread_points and (not out or points < max_points):
            number, offset = self._read_pos
            if offset >= self._sizes.get(number, 0):
                if number >= self._active:
                    break
                self._close_reader(number)
                self._read_pos = (number + 1, len(SEGMENT_MAGIC))
                continue
            fd = self._read_fds.get(number)
            if fd is None:
                fd = self._read_fds[number] = os.open(self._segment_path(number), os.O_RDONLY)
            data = os.pread(fd, min(READ_CHUNK, self._sizes[number] - offset), offset)
            length = RECORD_HEADER.unpack_from(data)[0] if len(data) >= RECORD_HEADER.size else 0
            if RECORD_HEADER.size + length > len(data):  # one record larger than a chunk
                data = os.pread(fd, RECORD_HEADER.size + length, offset)
            taken = 0
            for count, end, payload in _records(data, 0):
                if (out or not at_least_one) and points + count > max_points:
                    break
                out.append(((number, offset + end), payload.split(b"\n")))
                points += count
                taken += count
                self._read_pos = (number, offset + end)
            if not taken:
                if out or not at_least_one:
                    break
                # Checked at start: only a disk fault (or a bug) lands here.
                raise WALError(f"unreadable record in {self._segment_path(number)} at offset {offset}")
            self.unread_points -= taken
        return out

    def _close_reader(self, number):
        fd = self._read_fds.pop(number, None)
        if fd is not None:
            os.close(fd)

    # --- the low-water mark -----------------------------------------------------

    def done(self, position):
        """Every record up to `position` is in InfluxDB (or refused by it):
        whole segments before it go, and the checkpoint moves."""
        number, offset = position
        if number == self._active and offset >= self._sizes[number] and (
                self.refusing or self._sizes[number] >= self.segment_bytes // 2):
            self._rotate()  # everything is done: the active segment's room is worth freeing now
        for old in [n for n in self._sizes if n < number or (n == number and n != self._active
                                                              and offset >= self._sizes[n])]:
            self._remove_segment(old)
        self._checkpoint = position
        try:
            self._write_checkpoint(position)
        except OSError as exc:  # only costs writing some points again after a restart
            log.warning("cannot write the write-ahead log's checkpoint: %s", exc)

    def _remove_segment(self, number):
        self._close_reader(number)
        self.size -= self._sizes.pop(number, 0)
        try:
            os.remove(self._segment_path(number))
        except FileNotFoundError:
            pass
        self.refusing = False

    # --- fsync --------------------------------------------------------------------

    def start(self):
        """Background fsync every interval (with `always`, answers wait on `durable`)."""
        if not self.sync_each:
            self._sync_task = asyncio.ensure_future(self._sync_every_interval())

    async def _sync_every_interval(self):
        while True:
            await asyncio.sleep(self.fsync_interval)
            await self._sync_now(once=True)

    async def durable(self):
        """With `--wal-fsync=always`: return once every record appended so far
        is on disk (False if fsync failed). Concurrent requests share one
        fsync: those appended while one runs wait for the next (group commit)."""
        target = self._appended
        if not self.sync_each or self._synced >= target:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._sync_waiters.append((target, waiter))
        if not self._syncing:
            asyncio.ensure_future(self._sync_now())
        return await waiter

    async def _sync_now(self, once=False):
        """fsync what was appended; again while more arrives, unless `once`."""
        if self._syncing or self._append_fd is None:
            return
        self._syncing = True
        try:
            while self._synced < self._appended or self._dir_dirty or self._unsynced_fds:
                target = self._appended
                fds, self._unsynced_fds = self._unsynced_fds, []
                sync_dir, self._dir_dirty = self._dir_dirty, False
                started = time.monotonic()
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._fsync, [*fds, self._append_fd], sync_dir)
                    ok = True
                except OSError as exc:
                    log.error("fsync of the write-ahead log failed: %s", exc)
                    self._unsynced_fds[:0] = fds
                    self._dir_dirty |= sync_dir
                    ok = False
                else:
                    self._synced = target
                    for fd in fds:
                        os.close(fd)
                self.fsyncs += 1
                self.fsync_seconds += time.monotonic() - started
                waiting = []
                for waiter_target, waiter in self._sync_waiters:
                    if not ok or waiter_target <= target:
                        if not waiter.done():
                            waiter.set_result(ok)
                    else:
                        waiting.append((waiter_target, waiter))
                self._sync_waiters = waiting
                if once or not ok:
                    break
        finally:
            self._syncing = False

    def sync(self):
        """fsync now, blocking (at start, before the loop serves anyone)."""
        self._fsync([*self._unsynced_fds, self._append_fd], True)
        for fd in self._unsynced_fds:
            os.close(fd)
        self._unsynced_fds, self._dir_dirty, self._synced = [], False, self._appended

    def _fsync(self, fds, sync_dir):
        for fd in fds:
            os.fdatasync(fd)
        if sync_dir:
            self._fsync_dir()

    def _fsync_dir(self):
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def close(self):
        """Everything appended is on disk; the directory is free for the next process."""
        if self._sync_task is not None:
            self._sync_task.cancel()
        while self._syncing:
            await asyncio.sleep(0.01)
        if self._append_fd is None:
            return
        self._fsync([*self._unsynced_fds, self._append_fd], True)
        for fd in [*self._unsynced_fds, self._append_fd, *self._read_fds.values()]:
            os.close(fd)
        self._unsynced_fds, self._read_fds, self._append_fd = [], {}, None
        if self._checkpoint_fd is not None:
            os.close(self._checkpoint_fd)
            self._checkpoint_fd = None
        self._synced = self._appended
        for _, waiter in self._sync_waiters:
            if not waiter.done():
                waiter.set_result(True)
        self._sync_waiters = []
        if self._last_position is None or self._checkpoint >= self._last_position:
            for number in list(self._sizes):  # every point is done: nothing to replay
                self._remove_segment(number)
        self._unlock()

    def _unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def register_metrics(self, telemetry):
        """The log's families on /metrics, read when scraped."""
        telemetry.gauge("rtcscope_wal_bytes", "bytes in the write-ahead log", lambda: self.size)
        telemetry.gauge("rtcscope_wal_capacity_bytes", "bytes the write-ahead log may hold (--max-wal)",
                        lambda: self.max_bytes)
        telemetry.counter("rtcscope_wal_fsyncs_total", "fsyncs of the write-ahead log", lambda: self.fsyncs)
        telemetry.counter("rtcscope_wal_fsync_seconds_total", "time spent in fsync of the write-ahead log",
                          lambda: self.fsync_seconds)
        telemetry.counter("rtcscope_wal_records_cut_total", "torn or damaged log records cut at start",
                          lambda: self.records_cut)


class NoLog:
    """Stands for the log in a process without one (--wal-dir=''): its families show 0."""

    size = max_bytes = fsyncs = fsync_seconds = records_cut = 0
    register_metrics = WriteAheadLog.register_metrics


def _records(data, offset):
    """(point count, end offset, payload) of each whole, valid record from `offset`."""
    while offset + RECORD_HEADER.size <= len(data):
        length, count, crc = RECORD_HEADER.unpack_from(data, offset)
        end = offset + RECORD_HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            return
        payload = data[offset + RECORD_HEADER.size:end]
        if zlib.crc32(payload, zlib.crc32(data[offset:offset + 8])) != crc or count == 0:
            return
        yield count, end, payload
        offset = end


def _write_atomically(path, data):
    with open(path + ".tmp", "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(path + ".tmp", path)
