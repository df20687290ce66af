"""Publishing: pending changes become signed bins, then one snapshot, then one timestamp.

:func:`run` is one publish, top to bottom; :func:`publish` repeats it while
changes keep arriving; :func:`write_snapshot_and_timestamp` ends every run
that signs anything (bootstrap, rotation and re-signing too).
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from securesystemslib.signer import Signer
from sqlalchemy import delete
from sqlalchemy.orm import Session
from tuf.api.metadata import MetaFile, Snapshot, Targets, Timestamp

from warehouse_tuf import (
    bins,
    canonical,
    db,
    publish_requests,
    roles,
    signing,
    targets as targetlib,
    trust,
    trust_model,
)
from warehouse_tuf.clock import utcnow
from warehouse_tuf.db import SignedBin, TargetRow
from warehouse_tuf.exceptions import RepositoryError, StorageAheadError
from warehouse_tuf.locking import LockTimeout, publish_lock
from warehouse_tuf.metrics import PREFIX as METRICS_PREFIX, report_run
from warehouse_tuf.models import ChangeKind, PendingChange, PublishLog, RoleVersion, Target, TargetKind
from warehouse_tuf.repository import Repository
from warehouse_tuf.results import PublishResult
from warehouse_tuf.snapshot import CACHE as snapshot_cache, SnapshotMeta
from warehouse_tuf.trust import Trusted

log = logging.getLogger("warehouse_tuf")

#: A project's page target rows, or None for a project that is gone.
Pages = dict[str, list[TargetRow] | None]


class Reserved(NamedTuple):
    """The snapshot and timestamp versions one run reserved."""

    snapshot: int
    timestamp: int


def reserve(session: Session, rows: dict[str, RoleVersion], indexes: Sequence[int]) -> Reserved:
    """Reserve the next snapshot and timestamp, and the bins of ``indexes`` (the caller commits)."""
    versions = db.reserve(rows, roles.ONLINE_TOP)
    reserved = Reserved(versions[roles.SNAPSHOT], versions[roles.TIMESTAMP])
    db.reserve_bins(session, indexes, reserved.snapshot)
    return reserved


# -- the publish loop -------------------------------------------------------------------------


def publish(repo: Repository, *, wait: bool = True, linger: float = 0.0,
            deadline: float | None = None) -> PublishResult:
    """Publish every pending change (and whatever a crashed run left unfinished).

    Publishes again while changes keep arriving, looking for them for up to
    ``linger`` seconds after each run. With ``wait=False`` (the task a
    commit that recorded changes queues) it returns at once when nothing is
    pending, or when another publisher holds the lock: that one looks for
    pending changes again after letting go, so it publishes these too.
    Before returning it withdraws the publish request, then looks once
    more (``publish_requests.py``): a commit that saw the request standing
    sent no message of its own. Past ``deadline`` (``time.monotonic()``)
    it starts no new run: it returns with ``pending_left`` when changes
    are still pending, the request standing for them.
    """
    total = PublishResult()
    while True:
        while wait or has_pending(repo, linger):
            if deadline is not None and time.monotonic() >= deadline:
                total.pending_left = True
                return total
            try:
                result = measured(repo, "publish", None, wait)
            except LockTimeout:
                if wait:
                    raise
                return total  # the holder withdraws the request and looks again
            wait = False  # from now on, only while changes keep arriving
            if not result.published:
                break
            total.changes += result.changes
            total.bins = sorted({*total.bins, *result.bins})
            total.snapshot_version = result.snapshot_version
            total.timestamp_version = result.timestamp_version
            total.seconds += result.seconds
        publish_requests.withdraw(repo.engine)
        if not has_pending(repo):
            return total


def has_pending(repo: Repository, linger: float = 0.0) -> bool:
    """Whether a change is pending, looking again every 20 ms for up to ``linger`` seconds."""
    deadline = time.monotonic() + linger
    while True:
        with repo.sessions() as reader:
            if db.has_pending(reader):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def measured(repo: Repository, kind: str, refresh_window: datetime.timedelta | None,
             wait: bool = True) -> PublishResult:
    """Run a publish or refresh under the host's metrics, then report its gauges."""
    with repo.metrics.timed(f"{METRICS_PREFIX}.{kind}.duration"):
        result = run(repo, refresh_window, wait)
    with repo.sessions() as reader:
        health = db.health(reader)
    now = utcnow()
    report_run(repo.metrics, kind, changes=result.changes, bins=len(result.bins), pending=health.pending,
               oldest_pending_seconds=health.oldest_pending_seconds(now),
               seconds_to_expiry=health.seconds_to_expiry(now))
    return result


# -- one publish ------------------------------------------------------------------------------


def run(repo: Repository, refresh_window: datetime.timedelta | None, wait: bool = True) -> PublishResult:
    """One publish, or a refresh when ``refresh_window`` is given, under the publish lock.

    1. Load the offline roles and resolve the online signers, once (when the
       signers do not load and storage is ahead of the database, the restore
       is reported).
    2. Take up to ``tuf.publish_batch_limit`` pending changes, and the online
       roles left unfinished by an earlier run or (refresh) expiring within
       the window. Nothing to do: return.
    3. Render the touched projects' pages, then reserve new versions of the
       touched bins, the snapshot and the timestamp, and apply the changes
       to the targets table, in one commit: the reservation is durable
       before any byte is written, and no number is ever handed out twice.
    4. Sign the bins (``bins.py``: fanned out to the workers when there are many).
    5. Store the snapshot (with the few bins signed here), then the timestamp
       (only while its reservation still stands), delete the published
       changes, log the run, commit.

    A crash anywhere leaves reservations that the next run finishes.
    ``wait=False`` gives up at once (a lock timeout of 0) when another publisher holds the lock.
    """
    started = time.monotonic()
    timeout = repo.settings.lock_timeout if wait else datetime.timedelta(0)
    kind = "refresh" if refresh_window else "publish"
    with publish_lock(repo.engine, timeout), repo.sessions() as publisher:
        root, targets = trust.offline_roles(repo, publisher)
        try:
            trusted = Trusted(root, targets, trust.online_signers(repo.settings, root.signed, targets.signed))
        except signing.SigningError:
            # After a restore the signer may be configured for the newer root that
            # storage publishes: the restore is then the problem to report.
            check_storage_not_ahead(repo, db.top_level_rows(publisher)[roles.TIMESTAMP])
            raise
        changes = db.pending_changes(publisher, repo.settings.publish_batch_limit)
        now = utcnow()
        # Online roles an earlier run left unfinished, or expiring: a query,
        # not one ORM object per bin (16,384 of them in production).
        # Targets is one of them in the targets-online model.
        due = db.due_online_roles(publisher, now + refresh_window if refresh_window is not None else None,
                                  trust_model.offline_roles(root.signed))
        resign_targets = (roles.TARGETS, None) in due
        if not changes and not due:
            return PublishResult(seconds=time.monotonic() - started)
        rows = db.top_level_rows(publisher)
        check_storage_not_ahead(repo, rows[roles.TIMESTAMP])
        touched = bins_touched(repo, publisher, changes)
        touched.update((name, index) for name, index in due if index is not None)
        indexes = sorted(touched.values())
        # Pages are rendered (and stored) before the first write: the write
        # transaction stays short (SQLite has a single writer: the uploads).
        pages = render_pages(repo, (
            _project(c) for c in changes
            if c.kind in (ChangeKind.REMOVE_PROJECT.value, ChangeKind.RENDER_PAGES.value)
        ))
        reserved = reserve(publisher, rows, indexes)
        targets_version = db.reserve(rows, [roles.TARGETS])[roles.TARGETS] if resign_targets else None
        apply_changes(repo, publisher, changes, pages)
        # The reservation is durable before any byte is written. The changes are
        # applied in the same commit (applying them again after a crash is
        # harmless): the bins are signed from the table, here or by the workers,
        # and uploads keep committing meanwhile.
        publisher.commit()
        renew_before = now + (refresh_window or repo.settings.refresh_window)
        signed = bins.sign(repo, trusted, publisher, indexes, now, renew_before)
        if targets_version is not None:
            sign_online_targets(repo, publisher, rows[roles.TARGETS], targets.signed, targets_version,
                                trusted.signers, now)
        write_snapshot_and_timestamp(repo, publisher, trusted, rows, reserved, now, signed)
        db.delete_changes(publisher, [change.id for change in changes])
        publisher.add(PublishLog(kind=kind, started_at=now, duration=time.monotonic() - started,
                                 changes=len(changes), bins_signed=len(touched),
                                 snapshot_version=reserved.snapshot, timestamp_version=reserved.timestamp))
        publisher.commit()
    result = PublishResult(
        changes=len(changes), bins=sorted(touched), snapshot_version=reserved.snapshot,
        timestamp_version=reserved.timestamp, seconds=time.monotonic() - started,
    )
    fields = {"kind": kind, "changes": result.changes, "bins": len(result.bins),
              "snapshot": result.snapshot_version, "timestamp": result.timestamp_version,
              "seconds": round(result.seconds, 3)}
    log.info("tuf %s", " ".join(f"{k}={v}" for k, v in fields.items()), extra={"tuf": fields})
    return result


def resign_bins(repo: Repository, indexes: Iterable[int] | None = None) -> PublishResult:
    """Re-sign bins (every bin by default), then one snapshot and one timestamp.

    This process holds the publish lock, so no target changes under them. Each
    bin keeps its expiry unless that falls within the refresh window.
    """
    started = time.monotonic()
    with publish_lock(repo.engine, repo.settings.lock_timeout), repo.sessions() as publisher:
        trusted = trust.trusted(repo, publisher)
        rows = db.top_level_rows(publisher)
        check_storage_not_ahead(repo, rows[roles.TIMESTAMP])
        layout = trust.bin_layout(repo)
        wanted = sorted(set(range(layout.count) if indexes is None else indexes))
        reserved = reserve(publisher, rows, wanted)
        publisher.commit()  # the reservation is durable before any byte is written
        now = utcnow()
        signed = bins.sign(repo, trusted, publisher, wanted, now, now + repo.settings.refresh_window)
        write_snapshot_and_timestamp(repo, publisher, trusted, rows, reserved, now, signed)
        publisher.commit()
    result = PublishResult(
        bins=[layout.name(i) for i in wanted], snapshot_version=reserved.snapshot,
        timestamp_version=reserved.timestamp, seconds=time.monotonic() - started,
    )
    log.info("tuf resign: %d bins, snapshot %d, timestamp %d, %.3fs", len(wanted),
             reserved.snapshot, reserved.timestamp, result.seconds)
    return result


# -- snapshot and timestamp -----------------------------------------------------------------


def sign_online_targets(repo: Repository, session: Session, row: RoleVersion, current: Targets, version: int,
                        signers: Sequence[Signer], now: datetime.datetime) -> bytes:
    """``current`` as targets ``version``, signed by the online key (the targets-online model) and
    stored before the snapshot that names it; the database keeps its bytes as it keeps root's."""
    signed = trust_model.next_targets(current, version=version, expires=now + repo.settings.expiry["targets"])
    data = trust_model.sign(signed, signers)
    repo.storage.put(roles.filename(roles.TARGETS, version), data)
    db.record_offline_role(session, row, version, signed.expires, data, now)
    return data


def write_snapshot_and_timestamp(
    repo: Repository, session: Session, trusted: Trusted, rows: dict[str, RoleVersion],
    reserved: Reserved, now: datetime.datetime, signed_bins: Sequence[SignedBin] = (),
) -> None:
    """Sign and store the snapshot, then the timestamp; update their rows (the caller commits).

    ``signed_bins`` (signed, not stored yet) are stored together with the
    snapshot: one batch of fsyncs, all durable before the timestamp that
    names them is written, their rows updated once they are stored.
    """
    meta = snapshot_meta(repo, session, rows)
    meta.update((f"{item.name}.json", item.version) for item in signed_bins)
    snapshot = Snapshot(version=reserved.snapshot, expires=now + repo.settings.expiry["snapshot"])
    signed = snapshot.to_dict()
    signed["meta"] = {}  # the entries are spliced in, already encoded
    payload = meta.encode(signed)
    snapshot_bytes = canonical.envelope(payload, [signer.sign(payload) for signer in trusted.signers])
    bins.confirm_reserved(session, signed_bins)
    repo.storage.put_many({**{item.filename: item.data for item in signed_bins},
                           roles.filename(roles.SNAPSHOT, reserved.snapshot): snapshot_bytes})

    timestamp = Timestamp(
        version=reserved.timestamp, expires=now + repo.settings.expiry["timestamp"],
        snapshot_meta=MetaFile.from_data(reserved.snapshot, snapshot_bytes, ["sha256"]),
    )
    timestamp_bytes = canonical.signed_document(timestamp.to_dict(), trusted.signers, checked=True)
    # A publisher whose lock connection died may have been overtaken (its
    # reservation no longer stands): an older timestamp.json over a newer one
    # is a rollback every client refuses.
    standing = db.reserved_timestamp(session)
    if standing != reserved.timestamp:
        raise RepositoryError(
            f"another publisher reserved timestamp version {standing} while this one was writing "
            f"{reserved.timestamp} (its publish lock was lost): nothing more is written"
        )
    repo.storage.put(roles.TIMESTAMP_FILE, timestamp_bytes)
    # The rows change only once storage holds everything: SQLite's single write lock (which
    # uploads wait for) is then held for the caller's commit, not for the writes and fsyncs.
    db.record_signed_bins(session, signed_bins, now)
    db.update_row(rows[roles.SNAPSHOT], reserved.snapshot, snapshot.expires, snapshot_bytes, now)
    snapshot_cache.put(repo.name, reserved.snapshot, rows[roles.SNAPSHOT].sha256, meta)
    db.update_row(rows[roles.TIMESTAMP], reserved.timestamp, timestamp.expires, timestamp_bytes, now)


def snapshot_meta(repo: Repository, session: Session, rows: dict[str, RoleVersion]) -> SnapshotMeta:
    """The next snapshot's version map: the one this process built last, brought up to date
    with the roles stamped since, or else built from every row (the rule: ``snapshot.py``)."""
    current = rows[roles.SNAPSHOT]
    meta = snapshot_cache.take(repo.name, current.version, current.sha256)
    if meta is None:
        meta = SnapshotMeta({f"{name}.json": version for name, version in db.bin_versions(session).items()})
    else:
        meta.update((f"{name}.json", version) for name, version in
                    db.bin_versions_changed_since(session, current.version))
    meta.update([(f"{roles.TARGETS}.json", rows[roles.TARGETS].version)])
    return meta


def stored_timestamp_version(repo: Repository) -> int | None:
    data = repo.stored_bytes(roles.TIMESTAMP_FILE)
    return None if data is None else int(json.loads(data)["signed"]["version"])


def check_storage_not_ahead(repo: Repository, timestamp: RoleVersion) -> None:
    """Refuse to publish over a storage that holds a newer timestamp than the database reserved."""
    stored = stored_timestamp_version(repo)
    if stored is not None and stored > timestamp.reserved_version:
        raise StorageAheadError(
            f"storage holds timestamp version {stored} but the database knows only "
            f"{timestamp.reserved_version}: the database looks restored from an older "
            "backup. Publishing now would reuse version numbers; run "
            "'tuf recover' to resume from the published versions."
        )


# -- changes to the target table ------------------------------------------------------------


def bins_touched(repo: Repository, session: Session, changes: list[PendingChange]) -> dict[str, int]:
    """Bin name -> index of every bin ``changes`` touch."""
    layout = trust.bin_layout(repo)
    indexes: set[int] = set()
    for change in changes:
        kind = ChangeKind(change.kind)
        if kind in (ChangeKind.ADD, ChangeKind.REMOVE):
            indexes.add(layout.index(_path(change)))
        elif kind is ChangeKind.REMOVE_RELEASE:
            indexes.update(db.bins_of(session, _project(change), change.release))
        else:
            if kind is ChangeKind.REMOVE_PROJECT:
                indexes.update(db.bins_of(session, _project(change)))
            if repo.renderer is not None:
                indexes.update(layout.index(path) for path in targetlib.page_paths(_project(change)).values())
    return {layout.name(i): i for i in indexes}


def apply_changes(repo: Repository, session: Session, changes: list[PendingChange], pages: Pages) -> None:
    """Bring the target table up to date, in change order; ``pages`` (rendered) last."""
    layout = trust.bin_layout(repo)
    for kind, group in _runs(changes):
        if kind is ChangeKind.ADD:
            added = {
                _path(c): {
                    "path": c.path, "bin_index": layout.index(_path(c)),
                    "length": c.length, "hashes": c.hashes, "kind": TargetKind.FILE.value,
                    "project": c.project, "release": c.release,
                }
                for c in group
            }
            db.upsert_targets(session, list(added.values()))
        elif kind is ChangeKind.REMOVE:
            db.delete_targets(session, [_path(c) for c in group])
        elif kind is ChangeKind.REMOVE_RELEASE:
            for c in group:
                session.execute(delete(Target).where(
                    Target.project == c.project, Target.release == c.release,
                    Target.kind == TargetKind.FILE.value,
                ))
        elif kind is ChangeKind.REMOVE_PROJECT:
            for c in group:
                session.execute(delete(Target).where(Target.project == c.project))
    put_page_targets(session, pages)


def render_pages(repo: Repository, projects: Iterable[str]) -> Pages:
    """Render and store the pages of ``projects``: their target rows, None for a project gone.

    Pages are rendered from the committed state of the index, now: whatever
    order the changes came in, this is what clients will see.
    """
    if repo.renderer is None:
        return {}
    layout = trust.bin_layout(repo)
    pages: Pages = {}
    files: dict[str, bytes] = {}
    for project in dict.fromkeys(projects):
        rendered = repo.renderer(repo.request, project)
        if rendered is None:
            pages[project] = None
            continue
        rows = pages[project] = []
        for form, path in targetlib.page_paths(project).items():
            data = getattr(rendered, form)
            hashes = targetlib.hash_data(data, repo.settings.hash_algorithms)
            for digest in hashes.values():
                files[targetlib.prefixed_name(path, digest)] = data
            rows.append({
                "path": path, "bin_index": layout.index(path),
                "length": len(data), "hashes": hashes, "kind": TargetKind.PAGE.value,
                "project": project, "release": None,
            })
    # The pages are stored before any metadata that lists them.
    repo.simple_storage.put_many(files)
    return pages


def put_page_targets(session: Session, pages: Pages) -> None:
    db.delete_targets(session, [path for project, rows in pages.items() if rows is None
                                for path in targetlib.page_paths(project).values()])
    db.upsert_targets(session, [row for rows in pages.values() if rows for row in rows])


def _path(change: PendingChange) -> str:
    """The path of an added or removed target (``pending.py`` always records one)."""
    assert change.path is not None
    return change.path


def _project(change: PendingChange) -> str:
    """The project of a release, project or pages change (``pending.py`` always records one)."""
    assert change.project is not None
    return change.project


def _runs(changes: list[PendingChange]) -> Iterator[tuple[ChangeKind, list[PendingChange]]]:
    """Consecutive changes of the same kind, so each run is one batch of statements."""
    group: list[PendingChange] = []
    for change in changes:
        if group and group[-1].kind != change.kind:
            yield ChangeKind(group[0].kind), group
            group = []
        group.append(change)
    if group:
        yield ChangeKind(group[0].kind), group
