"""Stopping background tasks: every part with a task of its own stops it the same way."""
import asyncio


async def cancel_and_wait(*tasks):
    """Cancel the tasks still running and wait until they have finished, so that
    nothing of them runs after a stop (None and finished tasks are skipped)."""
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    for task in running:
        try:
            await task
        except asyncio.CancelledError:
            pass


async def in_slices(items, size, work):
    """work(part) for each part of `size` items of the sequence `items`, the event loop given
    back between them: per-row work that would hold the loop too long in one go
    (docs/live.md, "The loop's budget")."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        work(items[start:start + size])
