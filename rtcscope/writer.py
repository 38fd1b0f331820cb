"""Batching writer: acknowledged points wait in a bounded buffer and reach
InfluxDB in batches, one write at a time, retried with backoff.

Acknowledged means buffered: once `submit` returns True the server owes
those points to InfluxDB, so a failed batch is kept and retried (InfluxDB
overwrites identical points, so a retry never duplicates), and what is left
at shutdown goes to the spool directory to be replayed at the next start.
"""
import asyncio
import logging
import os
import time
from collections import deque

log = logging.getLogger("rtcscope.writer")

SPOOL_SUFFIX = ".lp"


class WriteRejected(Exception):
    """InfluxDB refused the batch itself (4xx): retrying cannot help."""


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
        self._batch = []  # taken from the buffer, being written or retried
        self._wake = asyncio.Event()
        self._task = None
        self._stopping = False
        self.flushes = 0
        self.failures = 0
        self.points_written = 0
        self.points_rejected = 0
        self.last_flush_seconds = 0.0
        self.flush_seconds_total = 0.0
        self.healthy = True

    @property
    def depth(self):
        """Points acknowledged and not yet in InfluxDB."""
        return len(self._buffer) + len(self._batch)

    @property
    def full(self):
        return self.depth >= self.max_buffer

    def submit(self, lines):
        """Buffer all of `lines` or none of them; False means the buffer is full."""
        if self._stopping or self.depth + len(lines) > self.max_buffer:
            return False
        self._buffer.extend(lines)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()
        return True

    def start(self):
        self.replay_spool()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self):
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self._drain(deadline=None)

    async def _drain(self, deadline):
        """Write until the buffer is empty; on failure back off and retry the same batch."""
        backoff = self.retry_initial
        while self._batch or self._buffer:
            if not self._batch:
                take = min(self.batch_size, len(self._buffer))
                self._batch = [self._buffer.popleft() for _ in range(take)]
            started = time.monotonic()
            try:
                await self._write(b"\n".join(self._batch))
            except WriteRejected as exc:
                log.error("InfluxDB rejected a batch of %d points: %s", len(self._batch), exc)
                self.points_rejected += len(self._batch)
                self._batch = []
                continue
            except Exception as exc:  # InfluxDB down, slow or restarting: keep the batch
                self.failures += 1
                self.healthy = False
                log.warning("write of %d points failed (%s); retrying in %.1fs",
                            len(self._batch), exc or type(exc).__name__, backoff)
                if deadline is not None and time.monotonic() + backoff > deadline:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max)
                if self._stopping and deadline is None:
                    return
                continue
            self.healthy = True
            elapsed = time.monotonic() - started
            self.flushes += 1
            self.points_written += len(self._batch)
            self.last_flush_seconds = elapsed
            self.flush_seconds_total += elapsed
            self._batch = []
            backoff = self.retry_initial

    async def stop(self, timeout=10.0):
        """Stop accepting, flush within `timeout`, spool whatever is left."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.wait_for(self._drain(deadline=time.monotonic() + timeout), timeout)
        except asyncio.TimeoutError:
            pass
        self.spool()

    # --- spool ---------------------------------------------------------------

    def spool(self):
        """Write unflushed points to a new spool file (atomically, via rename)."""
        lines = self._batch + list(self._buffer)
        if not lines:
            return None
        if not self.spool_dir:
            log.error("%d acknowledged points lost: no --spool-dir", len(lines))
            return None
        os.makedirs(self.spool_dir, exist_ok=True)
        name = f"spool-{time.time_ns()}-{os.getpid()}{SPOOL_SUFFIX}"
        path = os.path.join(self.spool_dir, name)
        with open(path + ".tmp", "wb") as spool_file:
            spool_file.write(b"\n".join(lines) + b"\n")
            spool_file.flush()
            os.fsync(spool_file.fileno())
        os.replace(path + ".tmp", path)
        self._batch, self._buffer = [], deque()
        log.warning("spooled %d points to %s", len(lines), path)
        return path

    def spool_files(self):
        if not self.spool_dir or not os.path.isdir(self.spool_dir):
            return []
        return sorted(os.path.join(self.spool_dir, name) for name in os.listdir(self.spool_dir)
                      if name.endswith(SPOOL_SUFFIX))

    def spool_size(self):
        return sum(os.path.getsize(path) for path in self.spool_files())

    def replay_spool(self):
        """Queue spooled points ahead of new ones; a file is removed once queued,
        and anything still unwritten at the next stop is spooled again."""
        for path in self.spool_files():
            with open(path, "rb") as spool_file:
                lines = [line for line in spool_file.read().split(b"\n") if line]
            self._buffer.extend(lines)
            os.remove(path)
            log.info("replaying %d spooled points from %s", len(lines), path)
        if self._buffer:
            self._wake.set()
