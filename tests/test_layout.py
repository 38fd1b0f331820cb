"""The test tree's import rules, read from the sources with ast.

What tests share lives in tests/support (and tests/data), never in a test module: a test
module imported by another is collected under two names, runs its module-level code twice
and lends its fixtures where nobody looks for them. bench/ takes what it shares with the
tests from tests/support alone."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def sources(*directories):
    return sorted(path for directory in directories for path in (ROOT / directory).rglob("*.py")
                  if "node_modules" not in path.parts)


def imports(source):
    """(line, module) of every absolute import in `source`, at any depth; `from a import b` gives a and a.b."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def is_test_module(name):
    """Whether the dotted `name` is a test module or a conftest of this tree."""
    parts = name.split(".")
    return (parts[0] == "tests" and (parts[-1] == "conftest" or parts[-1].startswith("test_"))
            and ROOT.joinpath(*parts).with_suffix(".py").is_file())


def where(path, line):
    return f"{path.relative_to(ROOT)}:{line}"


def test_no_module_imports_a_test_module():
    found = [f"{where(path, line)} imports {name}" for path in sources("tests", "bench", "scripts")
             for line, name in imports(path.read_text()) if is_test_module(name)]
    assert found == [], "move what is shared into tests/support:\n" + "\n".join(found)


def test_bench_takes_from_the_tests_only_their_support_package():
    found = [f"{where(path, line)} imports {name}" for path in sources("bench")
             for line, name in imports(path.read_text())
             if name.split(".")[0] == "tests" and name.split(".")[:2] != ["tests", "support"]]
    assert found == [], "\n".join(found)


def test_the_rules_see_an_import_of_a_test_module():
    assert is_test_module("tests.live.test_ws") and is_test_module("tests.conftest")
    assert not is_test_module("tests.support.websockets") and not is_test_module("tests.live.test_nothing_here")
    assert (5, "tests.live.test_ws") in set(imports("import os\n\n\ndef f():\n    from tests.live.test_ws import Viewer\n"))
    assert (1, "tests.live.test_ws") in set(imports("from tests.live import test_ws\n"))
