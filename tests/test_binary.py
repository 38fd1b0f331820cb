"""The single executable (`make binary`): built from this tree, run from
somewhere else against a real influxd, it ingests, answers a query, serves a
page with its static files and a live websocket, and stops cleanly."""
import importlib.util
import os
import re
import signal
import subprocess

import pytest

import server
from tests.support.api import assert_pages_served, get, post
from tests.support.processes import ROOT, ServerProcess
from tests.support.samples import now_ms
from tests.support.waits import eventually
from tests.support.websockets import Viewer

pytestmark = pytest.mark.binary

BINARY = os.path.join(ROOT, "dist", "rtcscope-server")


@pytest.fixture(scope="module")
def binary():
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (it comes with requirements.txt: make install)")
    build = subprocess.run(["make", "-s", "binary"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert os.access(BINARY, os.X_OK)
    return BINARY


@pytest.mark.gen_test(timeout=120)
async def test_binary_serves_everything_from_its_own_files(binary, influxd, tmp_path, http_client):
    workdir = tmp_path / "elsewhere"  # no templates/ or static/ here: they must come from the binary
    workdir.mkdir()
    server = ServerProcess(str(tmp_path), command=[binary], cwd=str(workdir), influxdb_url=influxd.url,
                           database="binary", spool_dir=workdir / "spool", flush_interval="0.1s",
                           tick="0.2s").start()
    try:
        base = server.url
        viewer = await Viewer.open(base, "/ws/graph/rtt", origin=base)
        await viewer.next("snapshot")
        call, ts = f"bin-{now_ms()}", now_ms() - 500
        status, body, _ = await post(http_client, base + "/v1/stats/write/",
                                     [{"call": call, "peer": "a", "ts": ts, "stats": {"rtt": 25.0}}])
        assert status == 200 and body["accepted"] == 1
        _, started = await viewer.next("call_started", call)
        assert started["at"] == ts
        _, points = await viewer.next("points", call)
        assert points["calls"][call][-1][1] == 25.0
        viewer.close()

        async def queried():
            status, body, _ = await get(http_client, base + "/v1/stats/?type=rtt")
            return status == 200 and call in body and any(p["mean"] == 25.0 for p in body[call])

        await eventually(queried, timeout=20, interval=0.2)

        assert_pages_served(base)
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.log()
    finally:
        server.stop()
    assert not (workdir / "templates").exists()


def test_systemd_unit_verifies_and_names_real_options(binary, tmp_path):
    """conf/rtcscope.service, installed as a template, pointing at the built binary."""
    with open(os.path.join(ROOT, "conf", "rtcscope.service")) as shipped:
        unit = shipped.read()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.M | re.S).group(1)
    options = set(re.findall(r"--([a-z_-]+)=", exec_start))
    known = {name.replace("_", "-") for name in server.options._options}
    assert options and options <= known, options - known
    assert exec_start.split()[0] == "/usr/local/bin/rtcscope-server"
    (tmp_path / "rtcscope@.service").write_text(unit.replace("/usr/local/bin/rtcscope-server", binary))
    verify = subprocess.run(["systemd-analyze", "verify", "./rtcscope@8081.service"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stdout.strip() and not verify.stderr.strip(), verify
