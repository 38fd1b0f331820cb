"""The `rtcscope-server` command of an installed copy (`pip install .`).

The wheel keeps the source tree's shape under this package: `app/` holds
server.py, handlers/, templates/ and static/ side by side. The command runs
server.py as `python server.py` runs it in a checkout, with its own directory
first on sys.path; so `server` and `handlers` are importable inside the
server's process only, not installed as top-level modules of the environment."""
import importlib.util
import sys


def run():
    sys.path.insert(0, importlib.util.find_spec("rtcscope_server.app").submodule_search_locations[0])
    import server

    return server.run()
