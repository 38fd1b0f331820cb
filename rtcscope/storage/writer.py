"""Batching writer: acknowledged points wait in a bounded buffer and reach
InfluxDB in batches, one write at a time, retried with backoff.

Acknowledged means buffered: once `submit` returns True the server owes
those points to InfluxDB. Every point carries its own timestamp, so writing
one twice (a retry after a write whose answer was lost, a spool replayed
after a crash) overwrites it with itself: the writer errs on the side of
writing again, never of losing.

- A failed batch stays at the head of the queue and is retried.
- A batch InfluxDB refuses (400) is split in halves until the points it
  refuses are isolated, so one bad point does not take its batch with it.
- What is left at shutdown goes to a spool file; the next start queues it
  ahead of new points and deletes the file only once its points are written
  (or re-spooled), so a crash after the replay loses nothing.
"""
import asyncio
import logging
import os
import time
from collections import deque

from ..telemetry import latency_histogram

log = logging.getLogger("rtcscope.writer")

SPOOL_SUFFIX = ".lp"


class WriteRejected(Exception):
    """InfluxDB refused the batch itself (4xx): retrying it whole cannot help."""


class BatchWriter:
    def __init__(self, write, *, max_buffer=200_000, batch_size=5_000, flush_interval=0.5,
                 retry_initial=0.2, retry_max=10.0, spool_dir=None):
        self._write = write
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.spool_dir = spool_dir
        self._buffer = deque()
        self._batches = deque()  # taken from the buffer: being written, retried or split
        self._in_batches = 0
        self._wake = asyncio.Event()
        self._task = None
        self.stopping = False
        # Points are written in the order they were queued: a replayed spool
        # file is done once this many points have been written or refused.
        self._queued = 0
        self._done = 0
        self._replayed = deque()  # (path, self._queued after its points)
        self.flushes = 0
        self.failures = 0
        self.points_written = 0
        self.points_rejected = 0
        self.flush_seconds = latency_histogram("rtcscope_flush_seconds", "duration of successful batch writes")
        self.healthy = True

    @property
    def depth(self):
        """Points acknowledged and not yet in InfluxDB."""
        return len(self._buffer) + self._in_batches

    @property
    def full(self):
        return self.depth >= self.max_buffer

    def submit(self, lines):
        """Buffer all of `lines` or none of them; False means the buffer is full."""
        if self.stopping or self.depth + len(lines) > self.max_buffer:
            return False
        self._enqueue(lines)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()
        return True

    def _enqueue(self, lines):
        self._buffer.extend(lines)
        self._queued += len(lines)

    def start(self):
        self.replay_spool()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self):
        while not self.stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self._drain(deadline=None)

    async def _drain(self, deadline):
        """Write until nothing is queued; on failure back off and retry the same batch."""
        backoff = self.retry_initial
        while self._batches or self._buffer:
            if not self._batches:
                take = min(self.batch_size, len(self._buffer))
                self._batches.append([self._buffer.popleft() for _ in range(take)])
                self._in_batches += take
            batch = self._batches[0]
            started = time.monotonic()
            try:
                await self._write(b"\n".join(batch))
            except WriteRejected as exc:
                self._batches.popleft()
                if len(batch) > 1:
                    half = len(batch) // 2
                    self._batches.extendleft((batch[half:], batch[:half]))
                    continue
                log.error("InfluxDB refused a point, dropped: %s (%s)", batch[0][:200], exc)
                self.points_rejected += 1
                self._finished(batch)
                continue
            except Exception as exc:  # InfluxDB down, slow or restarting: keep the batch
                self.failures += 1
                self.healthy = False
                log.warning("write of %d points failed (%s); retrying in %.1fs",
                            len(batch), exc or type(exc).__name__, backoff)
                if deadline is not None and time.monotonic() + backoff > deadline:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max)
                if self.stopping and deadline is None:
                    return
                continue
            self.healthy = True
            self.flushes += 1
            self.flush_seconds.observe(time.monotonic() - started)
            self.points_written += len(batch)
            self._batches.popleft()
            self._finished(batch)
            backoff = self.retry_initial

    def _finished(self, batch):
        self._in_batches -= len(batch)
        self._done += len(batch)
        while self._replayed and self._replayed[0][1] <= self._done:
            self._remove(self._replayed.popleft()[0])

    async def stop(self, timeout=10.0):
        """Stop accepting, flush within `timeout`, spool whatever is left.

        A write cut short here may still reach InfluxDB; its points are
        spooled anyway, and writing them again at the next start is harmless."""
        self.stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.wait_for(self._drain(deadline=time.monotonic() + timeout), timeout)
        except TimeoutError:
            pass
        self.spool()

    # --- spool ---------------------------------------------------------------

    def spool(self):
        """Write unflushed points to a new spool file (atomically, via rename),
        then drop the replayed files whose remaining points it now holds."""
        lines = [line for batch in self._batches for line in batch] + list(self._buffer)
        path = None
        if lines and not self.spool_dir:
            log.error("%d acknowledged points lost: no --spool-dir", len(lines))
        elif lines:
            os.makedirs(self.spool_dir, exist_ok=True)
            path = os.path.join(self.spool_dir, f"spool-{time.time_ns()}-{os.getpid()}{SPOOL_SUFFIX}")
            with open(path + ".tmp", "wb") as spool_file:
                spool_file.write(b"\n".join(lines) + b"\n")
                spool_file.flush()
                os.fsync(spool_file.fileno())
            os.replace(path + ".tmp", path)
            _fsync_dir(self.spool_dir)
            log.warning("spooled %d points to %s", len(lines), path)
        self._batches, self._buffer, self._in_batches = deque(), deque(), 0
        while self._replayed:
            self._remove(self._replayed.popleft()[0])
        return path

    def spool_files(self):
        if not self.spool_dir or not os.path.isdir(self.spool_dir):
            return []
        return sorted(os.path.join(self.spool_dir, name) for name in os.listdir(self.spool_dir)
                      if name.endswith(SPOOL_SUFFIX))

    def spool_size(self):
        """Bytes in spool files, those being replayed included."""
        total = 0
        for path in self.spool_files():
            try:
                total += os.path.getsize(path)
            except FileNotFoundError:
                pass
        return total

    def replay_spool(self):
        """Queue spooled points ahead of new ones; each file stays on disk until
        its points are written, so a crash during the replay loses nothing."""
        for path in self.spool_files():
            with open(path, "rb") as spool_file:
                lines = [line for line in spool_file.read().split(b"\n") if line]
            if not lines:
                self._remove(path)
                continue
            self._enqueue(lines)
            self._replayed.append((path, self._queued))
            log.info("replaying %d spooled points from %s", len(lines), path)
        if self._buffer:
            self._wake.set()

    def _remove(self, path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
