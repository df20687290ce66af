"""The repository's layering: ``dev/`` (the host, harnesses and their shared test helpers in
``dev/testing``) never imports ``tests/``; the tests import ``dev``."""

from __future__ import annotations

import ast

from dev.testing.devhost import ROOT


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_no_module_under_dev_imports_tests():
    offenders = {
        str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                            if name == "tests" or name.startswith("tests."))
        for path in sorted((ROOT / "dev").rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_check_sees_an_import_of_tests(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("import os\nfrom tests.devhost import stop\ndef f():\n    import tests.tufclient\n")
    assert imported_modules(module) == {"os", "tests.devhost", "tests.tufclient"}
