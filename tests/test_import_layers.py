"""The modules of warehouse_tuf form layers: each imports only its own layer and the ones below,
and no import chain comes back to where it started. Read from the source (``ast``), imports
inside functions included, so a late import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "warehouse_tuf"

#: Lowest first. A module may import its own layer and those listed before it.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundations", {"clock", "roles", "canonical", "fetcher", "interfaces", "locking", "metrics",
                     "signing", "targets", "devkeys", "snapshot", "pages", "settings", "exceptions",
                     "trust_model"}),
    ("records", {"models", "keyfiles", "ceremony", "results", "verify", "pending", "publish_requests", "storage",
                 "migrations", "migrations.env"}),
    ("database", {"db", "repository"}),
    ("trust", {"trust"}),
    ("bin signing", {"bins"}),
    ("publishing", {"publishing"}),
    ("operations", {"bootstrap", "rotation", "recovery", "retention", "backfill", "status"}),
    ("service", {"services"}),
    ("faces", {"listeners", "listing", "tasks", "cli", "cli.common", "cli.offline", "cli.repository",
               "admin", "__init__"}),
]
LAYER_OF = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The warehouse_tuf modules ``path`` imports (``from warehouse_tuf import x``: module x if it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "warehouse_tuf":
                names = [f"warehouse_tuf.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "warehouse_tuf" or not name.startswith("warehouse_tuf."):
                continue
            module = name.removeprefix("warehouse_tuf.")
            found.add(module if module in LAYER_OF else "__init__")
    return found


def graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if "versions" in path.parts:  # alembic revisions: SQL only
            continue
        modules[module_name(path)] = imports_of(path) - {module_name(path)}
    return modules


def test_every_module_has_a_layer():
    assert sorted(set(graph()) - set(LAYER_OF)) == []


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(
        f"{module} ({LAYERS[LAYER_OF[module]][0]}) imports {imported} ({LAYERS[LAYER_OF[imported]][0]})"
        for module, imported_set in graph().items() for imported in imported_set
        if LAYER_OF[imported] > LAYER_OF[module]
    )
    assert upward == []


def test_the_import_graph_has_no_cycle():
    modules = graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, chain: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(modules.get(module, ())):
            if state.get(imported) == "open":
                cycles.append(" -> ".join(chain[chain.index(imported):] + [module, imported])
                              if imported in chain else f"{module} -> {imported}")
            elif imported not in state:
                visit(imported, chain + [module])
        state[module] = "done"

    for module in sorted(modules):
        if module not in state:
            visit(module, [])
    assert cycles == []
