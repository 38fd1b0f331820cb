"""The ingest baseline: a bare Tornado handler that only parses the JSON body
and answers, on the same Tornado and JSON library as the server.

    python -m bench.bare PORT
"""
import asyncio
import sys

import orjson
import tornado.web
import ujson


class ParseAndAnswer(tornado.web.RequestHandler):
    def get(self):
        self.finish(b"ok")

    def post(self):
        ujson.loads(self.request.body)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(orjson.dumps({"success": True}))


async def main(port):
    app = tornado.web.Application([(r"/.*", ParseAndAnswer)])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
