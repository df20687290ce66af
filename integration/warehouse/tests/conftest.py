"""The end-to-end tests inside Warehouse run in file order: each step builds on the last.

Warehouse's test requirements install pytest-randomly, which shuffles tests;
this hook runs after it and puts this directory's tests back in the order they
are written (other tests keep whatever order they were given).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    ours = [item for item in items if Path(str(item.fspath)).resolve().parent == HERE]
    if not ours:
        return
    ours_sorted = sorted(ours, key=lambda item: (str(item.fspath), item.location[1] or 0))
    replacement = iter(ours_sorted)
    items[:] = [next(replacement) if item in ours else item for item in items]
