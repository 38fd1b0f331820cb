"""Batching writer: acknowledged points reach InfluxDB in batches, one write
at a time, retried with jittered backoff (rtcscope/retry.py).

With a write-ahead log (the default) acknowledged means appended to the log:
`submit` appends a request's points, then keeps them in memory while the
memory buffer (`max_buffer` points) has room. Beyond it they wait only in
the log and are read back as the writer drains, so memory stays bounded
however long InfluxDB is away; the log's size (--max-wal) is what can fill
up. Points leave the log once InfluxDB has written or refused them. Without
a log, acknowledged means buffered in memory, and a full buffer refuses.

Every point carries its own timestamp, so writing one twice (a retry after a
write whose answer was lost, a log replayed after a crash) overwrites it
with itself: the writer errs on the side of writing again, never of losing.

- A failed batch stays at the head of the queue and is retried.
- A batch InfluxDB refuses in part (a 400 "partial write ... dropped=N": a
  field type conflict, a series limit) is done: InfluxDB wrote the others.
  Only a refusal that does not say so is split in halves until the refused
  points are isolated.
"""
import asyncio
import logging
import os
import re
import time
from collections import deque

from ..retry import Backoff
from ..tasks import cancel_and_wait
from ..telemetry import latency_histogram
from .wal import LogFull, NoLog

log = logging.getLogger("rtcscope.writer")

SPOOL_SUFFIX = ".lp"
REFUSAL_REASONS = ("type_conflict", "max_series", "max_values_per_tag", "other")
_DROPPED = re.compile(r"\bdropped=(\d+)")


class WriteRejected(Exception):
    """InfluxDB refused points of the batch (4xx): retrying it whole cannot help."""


def classify_refusal(message):
    """(reason, points dropped or None) from InfluxDB 1.x's answer to a refused write."""
    if "field type conflict" in message:
        reason = "type_conflict"
    elif "max-series-per-database" in message:
        reason = "max_series"
    elif "max-values-per-tag" in message:
        reason = "max_values_per_tag"
    else:
        reason = "other"
    dropped = _DROPPED.search(message) if "partial write" in message else None
    return reason, int(dropped.group(1)) if dropped else None


class BatchWriter:
    def __init__(self, write, *, wal=None, max_buffer=200_000, batch_size=5_000, flush_interval=0.5,
                 retry_initial=0.2, retry_max=10.0, spool_dir=None):
        self._write = write
        self.wal = wal
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.spool_dir = spool_dir  # an older version's shutdown spool, taken into the log once
        self._buffer = deque()
        self._batches = deque()  # taken from the buffer: being written, retried or split
        self._in_batches = 0
        self._marks = deque()  # (log position, self._queued after that record's points)
        self._wake = asyncio.Event()
        self._task = None
        self.stopping = False
        self._queued = 0  # points ever queued in memory; written in that order
        self._done = 0  # of which written or refused
        self.flushes = 0
        self.failures = 0
        self.points_written = 0
        self.points_rejected = 0
        self.rejected_by_reason = dict.fromkeys(REFUSAL_REASONS, 0)
        self.last_refusal = None
        self.on_rejected = None  # called with (reason, points) as InfluxDB refuses points
        self.flush_seconds = latency_histogram("rtcscope_flush_seconds", "duration of successful batch writes")
        self.healthy = True

    @property
    def in_memory(self):
        return len(self._buffer) + self._in_batches

    @property
    def depth(self):
        """Points acknowledged and not yet in InfluxDB (in memory or only in the log)."""
        return self.in_memory + (self.wal.unread_points if self.wal else 0)

    @property
    def full(self):
        """Ingest is refusing for lack of room (the log's, or memory's without a log)."""
        if self.wal is not None:
            return self.wal.refusing
        return self.in_memory >= self.max_buffer

    @property
    def refusal_code(self):
        """Why `submit` said no: the error code ingest answers with."""
        if self.stopping:
            return "shutting_down"
        return "wal_full" if self.wal is not None else "buffer_full"

    def submit(self, lines):
        """Take all of `lines` or none of them; False means no room (or stopping).

        With a log the points are appended before this returns; `durable()`
        then says when they are on disk (at once unless --wal-fsync=always)."""
        if self.stopping:
            return False
        if not lines:
            return True
        if self.wal is None:
            if self.in_memory + len(lines) > self.max_buffer:
                return False
            self._queue(lines, None)
        else:
            in_step = self.wal.caught_up and self.in_memory + len(lines) <= self.max_buffer
            try:
                position = self.wal.append(lines)
            except (LogFull, OSError) as exc:
                if not isinstance(exc, LogFull):
                    log.error("cannot append to the write-ahead log: %s", exc)
                return False
            if in_step:  # kept in memory as well; otherwise read back from the log later
                self.wal.mark_read(position)
                self._queue(lines, position)
        if len(self._buffer) >= self.batch_size or (self.wal and not self.wal.caught_up):
            self.flush_now()
        return True

    def flush_now(self):
        """Write what is buffered at once rather than at the next flush interval: a full
        batch, a log to catch up, a stop."""
        self._wake.set()

    @property
    def sync_each(self):
        """Answers wait for `durable()` (--wal-fsync=always)."""
        return self.wal is not None and self.wal.sync_each

    async def durable(self):
        """True once what `submit` took is on disk (with --wal-fsync=always)."""
        return await self.wal.durable() if self.wal is not None else True

    def _queue(self, lines, position):
        self._buffer.extend(lines)
        self._queued += len(lines)
        if position is not None:
            self._marks.append((position, self._queued))

    def _fill(self):
        """Top the memory buffer up from the log (points that waited only there),
        never beyond --max-buffer unless memory is empty (a record larger than it)."""
        if self.wal is None or self.wal.caught_up:
            return False
        room = self.max_buffer - self.in_memory
        if room <= 0:
            return False
        for position, lines in self.wal.read(room, at_least_one=not self.in_memory):
            self._queue(lines, position)
        return bool(self._buffer)

    def start(self):
        if self.wal is not None:
            self.wal.start()
            self.take_over_spool()
        elif self.spool_files():
            log.warning("spool files in %s are left alone: without a --wal-dir they cannot be taken over",
                        self.spool_dir)
        self._task = asyncio.ensure_future(self._run())

    async def _run(self):
        while not self.stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._drain(deadline=None)
            except Exception:  # a disk fault reading the log back: keep the writer alive, say so
                log.exception("the writer failed; retrying in %.0fs", self.retry_max)
                await asyncio.sleep(self.retry_max)

    async def _drain(self, deadline):
        """Write until nothing is queued; on failure back off and retry the same batch."""
        backoff = Backoff(self.retry_initial, self.retry_max)
        while self._batches or self._buffer or self._fill():
            if not self._batches:
                self._fill()
                take = min(self.batch_size, len(self._buffer))
                self._batches.append([self._buffer.popleft() for _ in range(take)])
                self._in_batches += take
            batch = self._batches[0]
            started = time.monotonic()
            try:
                await self._write(b"\n".join(batch))
            except WriteRejected as exc:
                self._batches.popleft()
                reason, dropped = classify_refusal(str(exc))
                if dropped is None and len(batch) > 1:  # the answer does not say what was kept
                    half = len(batch) // 2
                    self._batches.extendleft((batch[half:], batch[:half]))
                    continue
                self._refused(reason, dropped or 1, str(exc), batch)
                self.points_written += len(batch) - (dropped or 1)
                self._finished(batch)
                continue
            except Exception as exc:  # InfluxDB down, slow or restarting: keep the batch
                self.failures += 1
                self.healthy = False
                delay = next(backoff)
                log.warning("write of %d points failed (%s); retrying in %.1fs",
                            len(batch), exc or type(exc).__name__, delay)
                if deadline is not None and time.monotonic() + delay > deadline:
                    return
                await asyncio.sleep(delay)
                if self.stopping and deadline is None:
                    return
                continue
            self.healthy = True
            self.flushes += 1
            self.flush_seconds.observe(time.monotonic() - started)
            self.points_written += len(batch)
            self._batches.popleft()
            self._finished(batch)
            backoff.reset()

    def _refused(self, reason, points, message, batch):
        self.healthy = True  # InfluxDB answered
        self.points_rejected += points
        self.rejected_by_reason[reason] += points
        self.last_refusal = {"reason": reason, "points": points, "message": message[:300],
                             "at": int(time.time() * 1000)}
        if self.on_rejected is not None:
            self.on_rejected(reason, points)
        example = batch[0][:200] if len(batch) == 1 else f"{len(batch)} points"
        log.error("InfluxDB refused %d point(s) (%s), dropped: %s (%s)", points, reason, example, message[:300])

    def _finished(self, batch):
        """The batch is written or refused: the log's records wholly inside what
        is done so far leave it."""
        self._in_batches -= len(batch)
        self._done += len(batch)
        position = None
        while self._marks and self._marks[0][1] <= self._done:
            position = self._marks.popleft()[0]
        if position is not None:
            self.wal.done(position)

    async def stop(self, timeout=10.0):
        """Stop accepting and flush within `timeout`. With a log, what is left
        stays in it for the next start; without one it is lost (and logged).

        A write cut short here may still reach InfluxDB; its points stay in
        the log anyway, and writing them again at the next start is harmless."""
        self.stopping = True
        self.flush_now()
        await cancel_and_wait(self._task)
        try:
            await asyncio.wait_for(self._drain(deadline=time.monotonic() + timeout), timeout)
        except TimeoutError:
            pass
        left = self.depth
        if self.wal is not None:
            await self.wal.close()
            if left:
                log.warning("%d points left in the write-ahead log %s for the next start", left, self.wal.path)
        elif left:
            log.error("%d acknowledged points lost: no --wal-dir", left)

    # --- an older version's spool ------------------------------------------------

    def spool_files(self):
        if not self.spool_dir or not os.path.isdir(self.spool_dir):
            return []
        return sorted(os.path.join(self.spool_dir, name) for name in os.listdir(self.spool_dir)
                      if name.endswith(SPOOL_SUFFIX))

    def take_over_spool(self):
        """Move the points of spool files (written at shutdown by versions
        before the log) into the log, then delete the files: replayed once.
        A crash between the two replays a file twice, which is harmless."""
        for path in self.spool_files():
            with open(path, "rb") as spool_file:
                lines = [line for line in spool_file.read().split(b"\n") if line]
            for start in range(0, len(lines), self.batch_size):
                self.wal.append(lines[start:start + self.batch_size], force=True)
            self.wal.sync()
            os.remove(path)
            log.info("took %d spooled points from %s into the write-ahead log", len(lines), path)
        if self.wal is not None and not self.wal.caught_up:
            self.flush_now()

    def register_metrics(self, telemetry):
        """The writer's families on /metrics, read when scraped, and its log's (which registers its own)."""
        telemetry.gauge("rtcscope_buffer_depth", "points acknowledged and not yet in InfluxDB", lambda: self.depth)
        telemetry.gauge("rtcscope_buffer_capacity", "points the buffer holds before ingest answers 503",
                        lambda: self.max_buffer)
        telemetry.counter("rtcscope_flushes_total", "successful batch writes", lambda: self.flushes)
        telemetry.counter("rtcscope_flush_failures_total", "batch writes that failed and are retried",
                          lambda: self.failures)
        telemetry.histogram(self.flush_seconds)
        telemetry.counter("rtcscope_points_written_total", "points written to InfluxDB", lambda: self.points_written)
        telemetry.counter("rtcscope_points_rejected_total", "points InfluxDB refused (400), dropped, by reason",
                          labels=("reason",))
        for reason in REFUSAL_REASONS:
            telemetry.inc("rtcscope_points_rejected_total", 0, reason=reason)  # shown at 0, so rate() works at once
        self.on_rejected = lambda reason, points: telemetry.inc("rtcscope_points_rejected_total", points, reason=reason)
        telemetry.gauge("rtcscope_buffer_memory_points", "acknowledged points held in memory for the next writes",
                        lambda: self.in_memory)
        telemetry.gauge("rtcscope_influxdb_up", "1 while the last write to InfluxDB succeeded", lambda: int(self.healthy))
        telemetry.gauge("rtcscope_wal_full", "1 while ingest answers 503 because the log is full", lambda: int(self.full))
        (self.wal or NoLog()).register_metrics(telemetry)
