"""The end-to-end tests inside Warehouse: in file order, each step building on the last.

Warehouse's test requirements install pytest-randomly, which shuffles tests;
the hook below runs after it and puts this directory's tests back in the order
they are written (other tests keep whatever order they were given). The
``warehouse`` fixture finds the Warehouse tree and interpreters they all need.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from warehouse_stack import SetupError, ensure_static_manifests, project_python, warehouse_inputs

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def warehouse() -> tuple[Path, Path]:
    """(Warehouse's tree, its venv's python), with its static manifests; a clear failure without them."""
    try:
        tree, python = warehouse_inputs()
        project_python()
    except SetupError as exc:
        pytest.fail(str(exc), pytrace=False)
    ensure_static_manifests(tree)
    return tree, python


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    ours = [item for item in items if Path(str(item.fspath)).resolve().parent == HERE]
    if not ours:
        return
    ours_sorted = sorted(ours, key=lambda item: (str(item.fspath), item.location[1] or 0))
    replacement = iter(ours_sorted)
    items[:] = [next(replacement) if item in ours else item for item in items]
