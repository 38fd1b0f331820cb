"""The package's layers, read from its source with `ast`: rtcscope/ imports nothing from
handlers/, server.py or tornado.web; storage imports neither ingest nor live; measurement
names and InfluxQL statements are written only inside rtcscope/storage/ (docs/storage.md)."""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rtcscope"
STORAGE = "rtcscope/storage/"

NOT_FROM_RTCSCOPE = ("handlers", "server", "tornado.web")
NOT_FROM_STORAGE = ("rtcscope.ingest", "rtcscope.live", "rtcscope.alerts", "rtcscope.dimensions")
# A measurement name as data: the whole literal, the start of a line (`rtc_x,tag=`, `rtc_x field=`)
# or what a statement reads or writes (`FROM rtc_x`); prose that mentions one (a metric's help) is not.
MEASUREMENT_NAME = re.compile(r'^rtc_[a-z_]+$|^rtc_[a-z_]+(?:,| [A-Za-z_]\w*=)|\b(?:FROM|INTO|ON) +"?rtc_[a-z_]+',
                              re.IGNORECASE)
INFLUXQL = re.compile(r"\b(?:SELECT|SHOW|CREATE|DROP|ALTER) ")
# A measurement name's constant (schema.*_MEASUREMENT) in an f-string, as a line starts
# (`{X},tag=` or `{X} field=`) or as a statement reads from it (`FROM {X}`).
LINE_AFTER = re.compile(r"^(?:,(?:[A-Za-z]|$)| (?:[A-Za-z_]\w*=|$))")
FROM_BEFORE = re.compile(r"\bFROM \S*$", re.IGNORECASE)


def modules():
    return sorted(path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py"))


def imports(tree, path):
    """Per import statement of `path`'s source, the modules it may name, relative imports
    resolved (`from a import b` names a, or a.b when b is a module)."""
    package = path.removesuffix(".py").split("/")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            yield [module] + [f"{module}.{alias.name}" for alias in node.names]


def _banned(names, banned):
    """The first of `names` that is or is inside one of the `banned` modules, or None."""
    return next((name for name in names for prefix in banned if name == prefix or name.startswith(prefix + ".")), None)


def strings(tree):
    """The source's string literals, f-strings' literal parts included, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def built_from_measurements(tree):
    """The measurement constants f-strings of the source build a line or a statement from."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        for index, part in enumerate(parts):
            if not isinstance(part, ast.FormattedValue):
                continue
            name = ast.unparse(part.value)
            if not name.endswith("MEASUREMENT"):
                continue
            before = parts[index - 1].value if index and isinstance(parts[index - 1], ast.Constant) else ""
            after = parts[index + 1].value if index + 1 < len(parts) and isinstance(parts[index + 1], ast.Constant) else ""
            if LINE_AFTER.match(after) or FROM_BEFORE.search(before):
                found.append(name)
    return found


def violations(source, path):
    """What `source`, the module at `path` (relative to the repository), breaks of the layering."""
    tree = ast.parse(source, path)
    found = []
    for names in imports(tree, path):
        name = _banned(names, NOT_FROM_RTCSCOPE)
        if name:
            found.append(f"{path} imports {name}")
        name = _banned(names, NOT_FROM_STORAGE) if path.startswith(STORAGE) else None
        if name:
            found.append(f"{path} (storage) imports {name}")
    if not path.startswith(STORAGE):
        for text in strings(tree):
            for pattern, what in ((MEASUREMENT_NAME, "a measurement name"), (INFLUXQL, "InfluxQL")):
                match = pattern.search(text)
                if match:
                    found.append(f"{path} writes {what} outside storage: {match.group(0)!r} in {text[:60]!r}")
        found.extend(f"{path} builds a line or a statement of {name} outside storage"
                     for name in built_from_measurements(tree))
    return found


@pytest.mark.parametrize("path", modules())
def test_the_module_keeps_to_its_layer(path):
    assert violations((ROOT / path).read_text(), path) == []


def test_the_modules_are_found():
    found = modules()
    assert {"rtcscope/storage/schema.py", "rtcscope/storage/lines.py", "rtcscope/ingest/formats.py"} <= set(found)
    assert len(found) > 20


@pytest.mark.parametrize("source, path, expected", [
    ("from ..ingest.formats import parse\n", "rtcscope/storage/store.py",
     "rtcscope/storage/store.py (storage) imports rtcscope.ingest.formats"),
    ("from .. import live\n", "rtcscope/storage/feed.py", "rtcscope/storage/feed.py (storage) imports rtcscope.live"),
    ("import rtcscope.live.fleet\n", "rtcscope/storage/store.py",
     "rtcscope/storage/store.py (storage) imports rtcscope.live.fleet"),
    ("from tornado import web\n", "rtcscope/live/calls.py", "rtcscope/live/calls.py imports tornado.web"),
    ("import server\n", "rtcscope/summary.py", "rtcscope/summary.py imports server"),
    ("from handlers.base import APIHandler\n", "rtcscope/ingest/limits.py", "rtcscope/ingest/limits.py imports handlers.base"),
    ("LINE = 'rtc_events,call=c end=1.0'\n", "rtcscope/ingest/formats.py",
     "rtcscope/ingest/formats.py writes a measurement name outside storage: 'rtc_events,' in 'rtc_events,call=c end=1.0'"),
    ("def f(t):\n    return f'SELECT * FROM x WHERE {t}'\n", "rtcscope/live/history.py",
     "rtcscope/live/history.py writes InfluxQL outside storage: 'SELECT ' in 'SELECT * FROM x WHERE '"),
    ("NAME = 'rtc_nodes'\n", "rtcscope/live/calls.py",
     "rtcscope/live/calls.py writes a measurement name outside storage: 'rtc_nodes' in 'rtc_nodes'"),
    ("def f(t):\n    return f'mean(rtt) FROM \"rtc_stats\" WHERE {t}'\n", "rtcscope/live/fleet.py",
     "rtcscope/live/fleet.py writes a measurement name outside storage: 'FROM \"rtc_stats' in "
     "'mean(rtt) FROM \"rtc_stats\" WHERE '"),
    ("Q = 'DROP MEASUREMENT x'\n", "rtcscope/live/fleet.py",
     "rtcscope/live/fleet.py writes InfluxQL outside storage: 'DROP ' in 'DROP MEASUREMENT x'"),

    ("def f(call, ns):\n    return f'{SUMMARIES_MEASUREMENT},call={call} peers=2.0 {ns}'\n", "rtcscope/live/detector.py",
     "rtcscope/live/detector.py builds a line or a statement of SUMMARIES_MEASUREMENT outside storage"),
    ("def f(tags, fields):\n    return f'{schema.EVENTS_MEASUREMENT},{tags} {fields}'\n", "rtcscope/ingest/formats.py",
     "rtcscope/ingest/formats.py builds a line or a statement of schema.EVENTS_MEASUREMENT outside storage"),
    ("def f(where):\n    return f'select * from {ALERTS_MEASUREMENT} WHERE {where}'\n", "rtcscope/live/alerts.py",
     "rtcscope/live/alerts.py builds a line or a statement of ALERTS_MEASUREMENT outside storage"),
])
def test_a_breach_is_found(source, path, expected):
    assert violations(source, path) == [expected]


@pytest.mark.parametrize("source, path", [
    ('"""Reads rtc_feed with SELECT over it."""\n', "rtcscope/live/recent.py"),
    ("def f():\n    'Writes rtc_events; SHOW nothing.'\n    return 1\n", "rtcscope/live/calls.py"),
    ("from ..storage.store import Store\nQ = 'SELECT 1 FROM rtc_stats'\n", "rtcscope/storage/extra.py"),
    ("from .storage import lines\nNAME = 'rtcscope_samples_total'\n", "rtcscope/summary.py"),
    ("HELP = 'rtc_call_summaries points written for ended calls'\n", "rtcscope/live/summaries.py"),
    ("import tornado.websocket\n", "rtcscope/ingest/connection.py"),
    ("def f(where, got):\n    return f'{where}: measurement must be {MEASUREMENT}, got {got}'\n", "rtcscope/ingest/formats.py"),
])
def test_what_is_allowed_passes(source, path):
    assert violations(source, path) == []
