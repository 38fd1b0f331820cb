"""Many graph websocket viewers in one process, apart from the server, noting
when each message reaches each viewer.

    python -m bench.viewers URL COUNT SECONDS RESULT.json

Opens COUNT connections to URL (ws://.../ws/graph/<metric>), prints
"ready" once every one has its snapshot, records for SECONDS (bounded), then
writes RESULT.json: per distinct message its type, call (for call events),
and the first and last receive time (wall clock) and how many viewers got it.
"""
import asyncio
import sys
import time

import aiohttp
import orjson

CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT = 120


class Record:
    def __init__(self):
        self.messages = {}  # raw text -> [first, last, count]
        self.snapshots = 0
        self.closed = []

    def received(self, text, at):
        if text.startswith('{"type":"snapshot"'):
            self.snapshots += 1
            return
        entry = self.messages.get(text)
        if entry is None:
            self.messages[text] = [at, at, 1]
        else:
            entry[1] = at
            entry[2] += 1

    def result(self):
        out = []
        for text, (first, last, count) in self.messages.items():
            message = orjson.loads(text)
            out.append({"type": message["type"], "call": message.get("call"),
                        "calls": len(message.get("calls", ())), "bytes": len(text),
                        "first": first, "last": last, "count": count})
        return {"messages": out, "snapshots": self.snapshots, "closed": self.closed}


async def viewer(session, url, record, gate, connected):
    async with gate:
        ws = await session.ws_connect(url, autoping=True, max_msg_size=0)
    connected.append(ws)
    async for message in ws:
        at = time.time()
        if message.type == aiohttp.WSMsgType.TEXT:
            record.received(message.data, at)
        else:
            break
    if ws.close_code not in (None, 1000):
        record.closed.append(ws.close_code)


async def main(url, count, seconds, result_path):
    record = Record()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    connected = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.ensure_future(viewer(session, url, record, gate, connected)) for _ in range(count)]
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while record.snapshots < count:
            if time.monotonic() > deadline or any(task.done() and task.exception() for task in tasks):
                failed = [task.exception() for task in tasks if task.done() and task.exception()]
                print(f"failed: {record.snapshots} of {count} snapshots; {failed[:1]}", flush=True)
                break
            await asyncio.sleep(0.05)
        else:
            print("ready", flush=True)
        await asyncio.sleep(seconds)
        for ws in connected:
            await ws.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    with open(result_path, "wb") as out:
        out.write(orjson.dumps(record.result()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
