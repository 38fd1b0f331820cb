"""`pip install .` into a fresh virtualenv: the `rtcscope-server` command it gives,
started from another directory against a real influxd, answers its health check and
serves its pages and their static files; the environment gets the package, not
server.py and handlers/ as top-level modules."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.support.api import assert_pages_served
from tests.support.processes import ROOT, ServerProcess

pytestmark = pytest.mark.slow

# What a build from this tree may leave in it or never needs.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "var", "build", "dist", "node_modules", "__pycache__",
                                    ".pytest_cache", ".hypothesis", "*.egg-info", "results")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A virtualenv without the system's packages, with a copy of this tree installed in it
    (a copy: the build writes its own files beside the sources)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    environment = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True, timeout=120)
    install = subprocess.run([str(environment / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return environment


def site_packages(environment):
    [path] = (environment / "lib").glob("python3*/site-packages")
    return path


def modules(directory):
    return {path.relative_to(directory) for path in directory.rglob("*.py") if "__pycache__" not in path.parts}


def test_the_environment_gets_every_module_and_page_under_its_package(venv):
    installed = site_packages(venv)
    app = installed / "rtcscope_server" / "app"
    root = pathlib.Path(ROOT)
    # Every module of the tree: a package missing from pyproject.toml's list fails here, not in production.
    assert modules(installed / "rtcscope") == modules(root / "rtcscope")
    assert modules(app / "handlers") == modules(root / "handlers")
    assert (app / "server.py").read_bytes() == (root / "server.py").read_bytes()
    for data in ("templates", "static"):
        shipped = {path.relative_to(root / data) for path in (root / data).rglob("*") if path.is_file()}
        assert {path.relative_to(app / data) for path in (app / data).rglob("*") if path.is_file()} == shipped
    assert not (installed / "server.py").exists() and not (installed / "handlers").exists()
    # Importable by the command, not by every program of the environment.
    imported = subprocess.run([str(venv / "bin" / "python"), "-c", "import server"], capture_output=True, cwd="/")
    assert imported.returncode == 1 and b"ModuleNotFoundError" in imported.stderr


def test_the_installed_command_serves_health_pages_and_static_files(venv, influxd, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # no templates/ or static/ here: they must come from the install
    elsewhere.mkdir()
    server = ServerProcess(str(tmp_path), command=[str(venv / "bin" / "rtcscope-server")], cwd=str(elsewhere),
                           influxdb_url=influxd.url, database=f"packaging{os.getpid()}",
                           spool_dir=elsewhere / "spool").start()
    try:
        assert server.get_json("/healthz") == (200, {"status": "ok"})
        assert_pages_served(server.url)
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()
