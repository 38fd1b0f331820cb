"""Fixtures: a real influxd for the session (and one of a test's own), a fresh database and an
in-process server per test, talked to over real HTTP; server processes, two of them behind
nginx, graph viewers and a webhook receiver. What they are built on is in tests/support."""
import itertools
import os
import sys

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import server  # noqa: E402
from tests.support.alerts import Receiver  # noqa: E402
from tests.support.influxd import Influxd  # noqa: E402
from tests.support.nginx import Nginx  # noqa: E402
from tests.support.processes import ServerProcess, server_processes  # noqa: E402
from tests.support.websockets import Viewer  # noqa: E402

_databases = itertools.count()


@pytest.fixture(scope="session")
def influxd():
    instance = Influxd().start()
    yield instance
    instance.cleanup()


@pytest.fixture
def database(request):
    return f"t{os.getpid()}_{next(_databases)}"


@pytest.fixture
def own_influxd(tmp_path):
    """An influxd of this test's own, to take down and bring back."""
    instance = Influxd(str(tmp_path / "influxd")).start()
    yield instance
    instance.cleanup()


@pytest.fixture
def app_config(request, influxd, database, tmp_path):
    """Options for the server under test; `@pytest.mark.app_config(name=value)` changes them."""
    config = {"influxdb_url": influxd.url, "database": database, "spool_dir": str(tmp_path / "spool"),
              "wal_dir": str(tmp_path / "wal"), "flush_interval": 0.1, "tick": 0.2, "call_timeout": 3.0}
    marker = request.node.get_closest_marker("app_config")
    if marker:
        config.update(marker.kwargs)
    return config


@pytest.fixture
def app(io_loop, app_config, influxd):
    application = server.make_app(**app_config)
    io_loop.run_sync(application.start)
    if app_config["influxdb_url"] == influxd.url:
        io_loop.run_sync(application.store.setup)  # tests may query before the background set-up ran
    yield application
    io_loop.run_sync(application.stop)


@pytest.fixture
def start_server(io_loop, tmp_path):
    """Start more servers in the test (own InfluxDB, several processes' worth);
    each gets `base_url`, its own write-ahead log (unless given a `wal_dir`
    other than the `app` fixture's, which is in use), and is stopped at teardown."""
    started = []

    async def start(**config):
        if str(config.get("wal_dir")) in ("None", str(tmp_path / "wal")):
            config["wal_dir"] = str(tmp_path / f"wal-{len(started)}")
        application = server.make_app(**config)
        await application.start()
        http_server = HTTPServer(application)
        sock, port = bind_unused_port()
        http_server.add_sockets([sock])
        application.base_url = f"http://127.0.0.1:{port}"
        started.append((http_server, application))
        return application

    yield start
    for http_server, application in started:
        http_server.stop()
        io_loop.run_sync(application.stop)


@pytest.fixture
def viewers():
    """`await viewers(base_url, path)` opens a graph viewer (tests.support.websockets.Viewer); all are closed at teardown."""
    opened = []

    async def open_viewer(base_url, path="/ws/graph/rtt", origin=None):
        viewer = await Viewer.open(base_url, path, origin)
        opened.append(viewer)
        return viewer

    yield open_viewer
    for viewer in opened:
        viewer.close()


@pytest.fixture(scope="module")
def deployment(influxd, tmp_path_factory):
    """Two server processes on one database, nginx in front."""
    directory = tmp_path_factory.mktemp("nginx")
    database = f"nginx{os.getpid()}_{next(_databases)}"
    processes = [ServerProcess(str(directory), influxdb_url=influxd.url, database=database, xheaders="true",
                               spool_dir=directory / f"spool{n}", flush_interval="0.1s", tick="0.2s",
                               call_timeout="5s").start() for n in range(2)]
    nginx = Nginx(str(directory / "nginx"), [process.port for process in processes]).start()
    for process in processes:
        process.wait_ready(30)
    yield nginx, processes, database
    nginx.stop()
    for process in processes:
        process.stop()
        assert process.process.returncode == 0, process.log()


@pytest.fixture
def servers(tmp_path, influxd, database):
    """`servers(name=None, **options)` starts a server process as an operator would, on the
    session's influxd and the test's database unless told (tests.support.processes.server_processes);
    all are stopped at teardown."""
    with server_processes(tmp_path, influxdb_url=influxd.url, database=database) as start:
        yield start


@pytest.fixture
def receiver():
    """A real webhook receiver (tests.support.alerts.Receiver), closed at teardown."""
    instance = Receiver()
    yield instance
    instance.down()
