"""Sender election: which of the processes on one database records and sends the alerts.

Each tick every process writes a heartbeat (its random node id and its start
time). The sender is the process with the oldest start among the heartbeats of
the last ELECTION_TICKS ticks (ties: the smaller node id), once it has itself
been up ELECTION_TICKS ticks, so it has seen the others' heartbeats before it
decides. A process whose heartbeat fails steps down and counts its ticks again.
A restarted process is a new node with a new start, so it does not take the
role back. See docs/alerts.md: Several processes: who sends.
"""
import logging
import time

from ..storage import alerts as stored

log = logging.getLogger("rtcscope.alerts")

# A process sends once it has been up this many ticks, if its start is the oldest
# among the heartbeats of this many last ticks.
ELECTION_TICKS = 3


class Election:
    """This process's side of the election. `take_over(now_ms)` makes it the sender
    (if it raises, the process does not send); `step_down()` stops its sending."""

    def __init__(self, store, node, tick_ms, *, take_over, step_down):
        self.store = store
        self.node = node
        self.tick_ms = tick_ms
        self.started = int(time.time() * 1000)
        self.take_over = take_over
        self.step_down = step_down
        self.sending = False
        self.sender = None  # the node id that sends, as of the last tick
        self.up_ticks = 0
        self.queries = 0

    async def heartbeat(self, now_ms):
        """Write this process's heartbeat; the heartbeats of the last ELECTION_TICKS ticks."""
        await self.store.write(stored.encode_heartbeat(self.node, self.started, now_ms))
        self.queries += 1
        return await self.store.query(stored.heartbeats_query(now_ms - ELECTION_TICKS * self.tick_ms, now_ms + 60_000))

    async def decide(self, heartbeats, now_ms):
        """Count this tick, elect from the heartbeats read, then take or give up the role."""
        self.up_ticks += 1
        nodes = stored.node_starts(heartbeats)
        self.sender = nodes[0][1] if nodes else None
        should = self.sender == self.node and self.up_ticks >= ELECTION_TICKS
        if should and not self.sending:
            await self.take_over(now_ms)
            log.info("node %s sends alerts from now on", self.node)
            self.sending = True
        elif not should and self.sending:
            await self.resign()

    async def lost(self):
        """The heartbeat could not be written: stop sending, and be up ELECTION_TICKS ticks again first."""
        self.up_ticks = 0
        await self.resign()

    async def resign(self):
        if self.sending:
            log.info("node %s no longer sends alerts", self.node)
        self.sending = False
        await self.step_down()
