"""Driving a test server's detector by hand: a tick, then what it leaves running."""
import asyncio


async def settled(app):
    """Wait for what a tick leaves running: the alert rules, summaries, the index's load."""
    detector = app.detector
    for task in (app.alerts._task, detector.summaries._task, detector.ended_upkeep._load_task):
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), 30)


async def tick(app):
    await app.detector.run_tick()
    await settled(app)
