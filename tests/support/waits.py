"""Waiting for a condition, a process or a port: every wait has a deadline and fails saying what it waited for."""
import asyncio
import time
import urllib.request


async def eventually(check, timeout=10.0, interval=0.05):
    """Await until `check()` returns a truthy value; return it, or fail with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


def wait(condition, timeout=60, interval=0.1):
    """Synchronous `eventually`, for tests that drive processes rather than an IOLoop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_for_http(process, url, timeout, describe):
    """Poll `url` until it answers; fail at once if `process` exits.
    `describe()` names the process (and where its log is) in the error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{describe()} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{describe()} did not answer {url} in time")
