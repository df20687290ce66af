"""``tuf targets``: what the repository signs for one project, and the bin version that holds it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from warehouse_tuf.models import RoleVersion, Target, TargetKind
from warehouse_tuf.pending import normalize_project_name


def project_targets(service: Any, project: str, release: str | None = None) -> list[dict[str, Any]]:
    """A project's targets as last published: files first (by path), then its pages.

    Each row: ``path``, ``length``, ``sha256``, ``kind``, ``bin`` (role name),
    ``bin_version`` (the version of that bin storage publishes) and
    ``resigning`` (a newer version of the bin is reserved: a publish is under way).
    A release narrows the files to that release's and leaves the pages out.
    """
    with Session(service.engine) as s:
        if s.get(RoleVersion, "targets") is None:  # not bootstrapped: nothing is signed
            return []
        layout = service.bin_layout()
        query = select(Target).where(Target.project == normalize_project_name(project))
        if release is not None:
            query = query.where(Target.release == release, Target.kind == TargetKind.FILE.value)
        rows = list(s.scalars(query))
        names = {layout.name(row.bin_index) for row in rows}
        bins = {r.name: r for r in s.scalars(select(RoleVersion).where(RoleVersion.name.in_(names)))}
    rows.sort(key=lambda row: (row.kind != TargetKind.FILE.value, row.path))
    listing = []
    for row in rows:
        name = layout.name(row.bin_index)
        role = bins.get(name)
        listing.append({
            "path": row.path, "length": row.length, "sha256": row.hashes.get("sha256"),
            "kind": row.kind, "bin": name, "bin_version": role.version if role else None,
            "resigning": bool(role and role.reserved_version > role.version),
        })
    return listing


def trusted_root(service: Any) -> bytes:
    """The root the database holds, as published: a client's trust anchor for ``--verify``."""
    with Session(service.engine) as s:
        row = s.get(RoleVersion, "root")
        return bytes(row.signed_bytes)
