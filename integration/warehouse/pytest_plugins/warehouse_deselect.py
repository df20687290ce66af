"""pytest plugin of `make test-warehouse`: deselect exactly the node ids of ../deselect.txt.

Warehouse tests that fail here in the pristine tree too (no stripe-mock service, one flaky
test). Exact ids, unlike ``--deselect``, which deselects every node id starting with one.
"""

from pathlib import Path

LIST = Path(__file__).resolve().parent.parent / "deselect.txt"


def _listed() -> set[str]:
    lines = LIST.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def pytest_report_header(config):
    return f"deselecting the {len(_listed())} tests listed in {LIST} (they fail without warehouse-tuf too)"


def pytest_collection_modifyitems(config, items):
    listed = _listed()
    dropped = [item for item in items if item.nodeid in listed]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.nodeid not in listed]
