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
