"""Recovery: what storage publishes versus what the database knows, and putting them back in step."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Snapshot, Timestamp

from warehouse_tuf import db, roles, trust, trust_model
from warehouse_tuf.exceptions import RepositoryError
from warehouse_tuf.locking import publish_lock
from warehouse_tuf.models import RoleVersion
from warehouse_tuf.publishing import publish
from warehouse_tuf.repository import Repository
from warehouse_tuf.results import RecoveryResult, StorageCheck

log = logging.getLogger("warehouse_tuf")


def recover(repo: Repository) -> RecoveryResult:
    """Resume from what storage publishes after a database restore; re-publish what storage lost.

    - Every root version (the chain clients walk from ``1.root.json``) and
      the current targets that storage lacks are written back from the
      database, byte for byte (the same version names the same bytes).
    - Each online role's version becomes at least its published one, and
      its reserved version moves past every version storage holds, so the
      next publish re-signs all of them from the database's targets under
      new numbers: a client holding the newest timestamp, snapshot or bin
      is never rolled back.
    - When storage lost online roles clients need (``timestamp.json``, the
      snapshot, a bin), that publish runs now. After a database restore
      with storage intact it is left to the operator: changes committed
      after the backup are not in the restored database and are not
      re-queued, so record them again (e.g. by backfill), then publish.
    """
    with publish_lock(repo.engine, repo.settings.lock_timeout), repo.sessions() as publisher:
        # Bootstrapped; the signers may trust a root not reinstalled yet. Targets is an online role
        # in the targets-online model.
        offline = trust_model.offline_roles(trust.offline_roles(repo, publisher)[0].signed)
        rows = {row.name: row for row in publisher.scalars(select(RoleVersion))}
        published = published_versions(repo, missing_ok=True)
        highest = dict(published)
        for name in repo.storage.list():
            version, _, role = name.partition(".")
            if version.isdigit() and role.endswith(".json"):
                role = role.removesuffix(".json")
                highest[role] = max(highest.get(role, 0), int(version))
        for name in offline:
            if highest.get(name, 0) > rows[name].version:
                raise RepositoryError(
                    f"storage holds {name} version {highest[name]} but the database has "
                    f"{rows[name].version}: install the newer offline-signed {name} first"
                )
        missing = storage_check(repo, deep=True).missing
        restored, unrecoverable = _restore_offline_roles(repo, publisher, rows)
        online = [row for name, row in rows.items() if name not in offline]
        for row in online:
            row.version = max(row.version, published.get(row.name, 0))
            # reserved > version marks the role unfinished: the next publish re-signs
            # it, under a number above every one storage holds.
            row.reserved_version = max(row.reserved_version, highest.get(row.name, 0), row.version + 1)
        publisher.commit()
    result = RecoveryResult(published.get(roles.TIMESTAMP), published.get(roles.SNAPSHOT), len(online),
                            restored, unrecoverable)
    lost_online = [name for name in missing if not name.endswith((".root.json", ".targets.json"))]
    log.warning("tuf recover: storage published timestamp %s, snapshot %s; %d roles to re-sign; "
                "%d file(s) missing, %d root/targets restored, %d unrecoverable",
                result.timestamp_version, result.snapshot_version, len(online), len(missing),
                len(restored), len(unrecoverable))
    if lost_online:
        result.publish = publish(repo)
    return result


def _restore_offline_roles(repo: Repository, publisher: Session,
                           rows: dict[str, RoleVersion]) -> tuple[list[str], list[str]]:
    """Write back every root version and the current targets that storage lacks.

    Returns the names written and the names the database holds no bytes for
    (roots installed before it kept them: put them back from the signed
    ceremony payloads).
    """
    kept: dict[tuple[str, int], bytes | None] = dict(db.offline_versions(publisher))
    for name in roles.OFFLINE:
        kept[(name, rows[name].version)] = rows[name].signed_bytes
    wanted = [(roles.ROOT, v) for v in range(1, rows[roles.ROOT].version + 1)]
    wanted.append((roles.TARGETS, rows[roles.TARGETS].version))
    files: dict[str, bytes] = {}
    unrecoverable = []
    for name, version in wanted:
        filename = roles.filename(name, version)
        if repo.storage.exists(filename):
            continue
        data = kept.get((name, version))
        if data is None:
            unrecoverable.append(filename)
        else:
            files[filename] = data
    repo.storage.put_many(files)  # roots in version order: a client walks them one by one
    for name, version in wanted:
        data = kept.get((name, version))
        if data is not None:
            db.keep_offline_version(publisher, name, version, data)
    return list(files), unrecoverable


def storage_check(repo: Repository, *, deep: bool = False) -> StorageCheck:
    """Whether storage holds what clients need first: the root chain, ``timestamp.json``,
    the snapshot and targets it names; with ``deep``, every bin the snapshot lists.

    Names are taken from storage's own timestamp and snapshot when they are
    there, else from the database's versions.
    """
    with repo.sessions() as reader:
        top = db.top_level_rows(reader)
        bin_versions = db.bin_versions(reader) if deep else {}
    problems: list[str] = []
    wanted = [roles.filename(roles.ROOT, v) for v in range(1, top[roles.ROOT].version + 1)]
    wanted.append(roles.TIMESTAMP_FILE)
    snapshot_version = top[roles.SNAPSHOT].version
    stored = repo.stored_bytes(roles.TIMESTAMP_FILE)
    if stored is not None:
        try:
            snapshot_version = int(json.loads(stored)["signed"]["meta"]["snapshot.json"]["version"])
        except (ValueError, KeyError, TypeError):
            problems.append("storage's timestamp.json is not valid timestamp metadata")
    snapshot_file = roles.filename(roles.SNAPSHOT, snapshot_version)
    wanted.append(snapshot_file)
    meta: dict[str, Any] | None = None
    stored = repo.stored_bytes(snapshot_file)
    if stored is not None:
        try:
            meta = {name.removesuffix(".json"): int(entry["version"])
                    for name, entry in json.loads(stored)["signed"]["meta"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            problems.append(f"storage's {snapshot_file} is not valid snapshot metadata")
    listed = meta if meta is not None else {roles.TARGETS: top[roles.TARGETS].version, **bin_versions}
    wanted.append(roles.filename(roles.TARGETS, listed.get(roles.TARGETS, top[roles.TARGETS].version)))
    if deep:
        wanted.extend(roles.filename(name, version) for name, version in sorted(listed.items())
                      if name != roles.TARGETS)
    missing = [name for name in dict.fromkeys(wanted) if not repo.storage.exists(name)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        problems.append(f"storage is missing {len(missing)} file(s) clients need: {shown} "
                        "(run 'tuf recover')")
    return StorageCheck(deep=deep, checked=len(set(wanted)), missing=missing, problems=problems)


def published_versions(repo: Repository, *, missing_ok: bool = False) -> dict[str, int]:
    """Role name -> version, as storage's timestamp.json and its snapshot publish them.

    With ``missing_ok``, storage that lost them publishes nothing (an empty dict).
    """
    try:
        timestamp = Metadata[Timestamp].from_bytes(repo.storage.get(roles.TIMESTAMP_FILE))
        snapshot_version = timestamp.signed.snapshot_meta.version
        snapshot = Metadata[Snapshot].from_bytes(
            repo.storage.get(roles.filename(roles.SNAPSHOT, snapshot_version))
        )
    except FileNotFoundError as exc:
        if missing_ok:
            return {}
        raise RepositoryError(
            f"storage holds no published repository (its timestamp or snapshot is missing): {exc}"
        ) from None
    except Exception as exc:
        raise RepositoryError(f"storage's timestamp or snapshot is not valid TUF metadata: {exc}") from None
    versions = {roles.TIMESTAMP: timestamp.signed.version, roles.SNAPSHOT: snapshot_version}
    for name, meta in snapshot.signed.meta.items():
        versions[name.removesuffix(".json")] = meta.version
    return versions
