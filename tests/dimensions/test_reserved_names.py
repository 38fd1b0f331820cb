"""A tag cannot be named like a query argument: the names are read from the handlers' code and
the pages' scripts, and RESERVED_NAMES is exactly them, so a new argument cannot be missed."""
import ast
import pathlib
import re

import pytest

from rtcscope.dimensions import BUILTIN_DIMENSIONS
from rtcscope.dimensions.tags import API_ARGUMENTS, PAGE_ARGUMENTS, RESERVED_NAMES, parse_peer_tags

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Methods whose first argument names a query argument (tornado's, and handlers/base.py's).
READERS = {"argument", "get_argument", "get_arguments", "get_query_argument", "get_query_arguments",
           "metric_argument", "dimension_argument"}
# Attributes holding a request's query arguments by name.
ARGUMENT_MAPS = {"arguments", "query_arguments"}
URL_METHODS = r"(?:get|getAll|has|set|append|delete)"


def _text(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def handler_arguments():
    """The query argument names handlers/*.py read: by a reader method, from a map of them, by
    _query_value(request, NAME), or as a reader's default parameter name."""
    found = set()
    for path in (ROOT / "handlers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                position = 1 if name == "_query_value" else 0
                if name in READERS | {"_query_value"} and len(node.args) > position:
                    found.add(_text(node.args[position]))
                if (name == "get" and isinstance(node.func.value, ast.Attribute) and node.func.value.attr in ARGUMENT_MAPS
                        and node.args):
                    found.add(_text(node.args[0]))
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
                if node.value.attr in ARGUMENT_MAPS:
                    found.add(_text(node.slice))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in READERS:
                found.update(_text(default) for default in node.args.defaults)
    return found - {None}


def script_arguments(paths):
    """The URL argument names scripts and templates use: through a URLSearchParams (its
    variables', its object literal's keys), RS.setParam, or written in a URL (`?name=`, `&name=`)."""
    found = set()
    for path in paths:
        text = path.read_text()
        params = set(re.findall(r"(?:const|let|var)\s+(\w+)\s*=\s*new URLSearchParams\(", text))
        for variable in params:
            found.update(re.findall(rf"\b{variable}\.{URL_METHODS}\(\s*\"([^\"]+)\"", text))
        found.update(re.findall(rf"new URLSearchParams\([^)]*\)\.{URL_METHODS}\(\s*\"([^\"]+)\"", text))
        for literal in re.findall(r"new URLSearchParams\(\{([^}]*)\}", text):
            found.update(re.findall(r"(\w+)\s*:", literal))
        found.update(re.findall(r"setParam\(\s*\"([^\"]+)\"", text))
        found.update(re.findall(r"[?&]([A-Za-z_]\w*)=", text))
    return found


PAGES = sorted((ROOT / "static" / "js").glob("*.js")) + [ROOT / "static" / "demo.js"] + sorted(
    (ROOT / "templates").glob("*.html"))


def test_the_api_arguments_are_those_the_handlers_read():
    assert handler_arguments() == API_ARGUMENTS


def test_the_page_arguments_are_those_the_pages_keep_in_their_urls():
    """The scripts also call the APIs: those arguments are the handlers'."""
    found = script_arguments(PAGES)
    assert {"order", "metrics", "range", "by", "since", "q"} <= found  # the dashboard's own, as a reader sees them
    assert found - API_ARGUMENTS == PAGE_ARGUMENTS - API_ARGUMENTS
    assert PAGE_ARGUMENTS <= found


def test_the_scan_finds_every_way_a_script_names_one(tmp_path):
    page = tmp_path / "page.js"
    page.write_text('const p = new URLSearchParams(location.search); p.get("one"); p.delete("two");\n'
                    'new URLSearchParams(location.search).get("three"); RS.setParam("four", x, null);\n'
                    'const q = new URLSearchParams({ five: 1, six: "b" }); fetch("/v1/x/?seven=1&eight=" + y);\n'
                    'rows.get("not-a-url-argument");\n')
    assert script_arguments([page]) == {"one", "two", "three", "four", "five", "six", "seven", "eight"}


def test_no_dimension_is_named_like_an_argument():
    assert not RESERVED_NAMES & set(BUILTIN_DIMENSIONS)


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_peer_tags_refuses_every_reserved_name(name):
    with pytest.raises(ValueError, match="is taken"):
        parse_peer_tags(f"region,{name}")
