"""Pending changes: rows of ``tuf_pending_changes``, recorded in the host's transaction.

Each function checks its input and returns one row; :func:`record` inserts
rows on the caller's connection, so they commit or roll back with the upload
or deletion that made them. Plain Core inserts: they are safe inside a
session's flush events, where adding ORM objects is not.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from warehouse_tuf import targets as targetlib
from warehouse_tuf.clock import utcnow
from warehouse_tuf.models import ChangeKind, PendingChange

Row = dict[str, Any]

_COLUMNS = ("kind", "path", "length", "hashes", "project", "release")


def normalize_project_name(name: str) -> str:
    """PEP 503 normalization: what Warehouse's database computes as ``normalized_name``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _row(kind: ChangeKind, **values: Any) -> Row:
    row = dict.fromkeys(_COLUMNS)
    row.update(values, kind=kind.value)
    return row


def target_added(path: str, length: int, hashes: dict[str, str], algorithms: tuple[str, ...], *,
                 project: str | None = None, release: str | None = None) -> Row:
    """A distribution file to sign; ``project``/``release`` let a cascade delete find it later."""
    path = targetlib.validate_path(path)
    return _row(ChangeKind.ADD, path=path, length=targetlib.validate_length(path, length),
                hashes=targetlib.validate_hashes(path, hashes, algorithms),
                project=project, release=release)


def target_removed(path: str) -> Row:
    return _row(ChangeKind.REMOVE, path=targetlib.validate_path(path))


def release_removed(project: str, release: str) -> Row:
    return _row(ChangeKind.REMOVE_RELEASE, project=project, release=release)


def project_removed(project: str) -> Row:
    targetlib.page_paths(project)
    return _row(ChangeKind.REMOVE_PROJECT, project=project)


def pages_changed(project: str) -> Row:
    targetlib.page_paths(project)
    return _row(ChangeKind.RENDER_PAGES, project=project)


def record(connection: Connection, rows: list[Row]) -> None:
    """Insert ``rows`` in the transaction of ``connection``."""
    if rows:
        now = utcnow()
        connection.execute(insert(PendingChange.__table__), [{**row, "created_at": now} for row in rows])
