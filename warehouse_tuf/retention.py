"""Garbage collection: metadata versions no client can need any more, and old publish log rows."""

from __future__ import annotations

import datetime
import json
import logging
import time

from warehouse_tuf import db, roles
from warehouse_tuf.clock import utcnow
from warehouse_tuf.recovery import published_versions
from warehouse_tuf.repository import Repository
from warehouse_tuf.results import GCResult

log = logging.getLogger("warehouse_tuf")


def gc(repo: Repository, *, dry_run: bool = False, now: datetime.datetime | None = None) -> GCResult:
    """Delete metadata versions that expired more than ``tuf.retention`` ago
    (and publish log rows beyond the newest ``PUBLISH_LOG_KEPT``).

    Never a root (every ``N.root.json`` stays: clients walk them one by one),
    never ``timestamp.json``, never a version the current timestamp reaches.
    A version still within its expiry may be what a client is fetching right
    now, so only long-expired ones go.
    """
    started = time.monotonic()
    reachable = published_versions(repo)
    cutoff = (now or utcnow()) - repo.settings.retention
    result = GCResult()
    for name in repo.storage.list():
        version, _, rest = name.partition(".")
        role = rest.removesuffix(".json")
        if not version.isdigit() or role == rest or role == roles.ROOT or "/" in name:
            continue
        if reachable.get(role) == int(version):
            result.kept += 1
            continue
        try:
            expires = datetime.datetime.fromisoformat(json.loads(repo.storage.get(name))["signed"]["expires"])
        except (ValueError, KeyError, TypeError, FileNotFoundError):
            continue  # not ours to judge; leave it
        if expires >= cutoff:
            result.kept += 1
            continue
        if not dry_run:
            repo.storage.delete(name)
        result.deleted.append(name)
    if not dry_run:
        with repo.sessions() as pruner:
            db.prune_publish_log(pruner)
            pruner.commit()
    result.seconds = time.monotonic() - started
    log.info("tuf gc deleted=%d kept=%d dry_run=%s seconds=%.3f",
             len(result.deleted), result.kept, dry_run, result.seconds)
    return result
