"""SQL on the extension's tables, in the caller's session: each function is one small job.

Bins are read and written with Core statements in chunks, never as one ORM
object per bin (16,384 of them in production).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import CursorResult, String, Table, Update, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from warehouse_tuf import roles
from warehouse_tuf.exceptions import BinLayoutError
from warehouse_tuf.models import PUBLISH_LOG_KEPT, OfflineRoleVersion, PendingChange, PublishLog, RoleVersion, Target

#: Rows per statement (and bins per storage batch): well under every backend's parameter limit.
CHUNK = 500
_ROLES = cast(Table, RoleVersion.__table__)
_TARGETS = cast(Table, Target.__table__)

Item = TypeVar("Item")
#: A target row as :func:`upsert_targets` writes it.
TargetRow = dict[str, Any]


def chunks(items: Sequence[Item], size: int = CHUNK) -> Iterator[Sequence[Item]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- roles ----------------------------------------------------------------------------------


def top_level_rows(session: Session) -> dict[str, RoleVersion]:
    """Root, targets, snapshot and timestamp, as ORM rows (the caller updates and commits them)."""
    return {row.name: row for row in session.scalars(select(RoleVersion).where(RoleVersion.bin_index.is_(None)))}


def reserve(rows: dict[str, RoleVersion], names: Iterable[str]) -> dict[str, int]:
    """Hand out the next version of each role and record it as reserved (the caller commits).

    A number once reserved is never handed out again, even when storage
    does not hold it: a fan-out worker of a crashed run may still write it.
    """
    versions = {}
    for name in names:
        rows[name].reserved_version += 1
        versions[name] = rows[name].reserved_version
    return versions


def update_row(row: RoleVersion, version: int, expires: datetime.datetime,
               data: bytes, now: datetime.datetime) -> None:
    """Record that ``data``, version ``version`` of ``row``'s role, is published."""
    row.version = row.reserved_version = version
    row.expires = expires
    row.length, row.sha256 = len(data), hashlib.sha256(data).hexdigest()
    row.updated_at = now


def reserved_timestamp(session: Session) -> int | None:
    return session.scalar(select(RoleVersion.reserved_version).where(RoleVersion.name == roles.TIMESTAMP))


def keep_offline_version(session: Session, name: str, version: int, data: bytes) -> None:
    """Keep these bytes of root or targets for good (``tuf recover`` re-publishes them)."""
    session.merge(OfflineRoleVersion(name=name, version=version, signed_bytes=data))


def record_offline_role(session: Session, row: RoleVersion, version: int, expires: datetime.datetime,
                        data: bytes, now: datetime.datetime) -> None:
    """Record ``data`` as the installed version of root or targets, and keep it for good."""
    update_row(row, version, expires, data, now)
    row.signed_bytes = data
    keep_offline_version(session, row.name, version, data)


def offline_versions(session: Session) -> dict[tuple[str, int], bytes]:
    """Every kept (name, version) of root and targets, with its bytes."""
    return {(name, version): data for name, version, data in session.execute(
        select(OfflineRoleVersion.name, OfflineRoleVersion.version, OfflineRoleVersion.signed_bytes)
    )}


# -- bins -----------------------------------------------------------------------------------


class BinReservation(NamedTuple):
    """A bin reserved and not yet published: its name, reserved version and current expiry."""

    name: str
    version: int
    expires: datetime.datetime


@dataclass(frozen=True)
class SignedBin:
    """One bin signed under its reserved version, not yet recorded as published."""

    index: int
    name: str
    version: int
    expires: datetime.datetime
    data: bytes

    @property
    def filename(self) -> str:
        return roles.filename(self.name, self.version)

    def parameters(self) -> dict[str, Any]:
        """The parameters of :func:`record_signed_bins`'s statement."""
        return {"b_name": self.name, "b_version": self.version, "b_expires": self.expires,
                "b_length": len(self.data), "b_sha256": hashlib.sha256(self.data).hexdigest()}


def bin_versions(session: Session) -> dict[str, int]:
    """Every bin's published version, by name."""
    return dict(session.execute(select(_ROLES.c.name, _ROLES.c.version).where(_ROLES.c.bin_index.is_not(None))).all())


def bin_versions_changed_since(session: Session, snapshot_version: int) -> list[tuple[str, int]]:
    """The bins whose version moved since snapshot ``snapshot_version`` (``snapshot.py``)."""
    return [(name, version) for name, version in session.execute(
        select(_ROLES.c.name, _ROLES.c.version).where(_ROLES.c.changed_for_snapshot > snapshot_version)
    )]


def reserve_bins(session: Session, indexes: Sequence[int], snapshot_version: int) -> None:
    """Reserve the next version of each bin (never one handed out before), in a few statements.

    Each row is stamped with ``snapshot_version``, the snapshot reserved in
    the same transaction: the next snapshot reads only the rows stamped
    after the one it extends (``snapshot.py``).

    A bin without a row would be signed into no role while its changes are
    dropped: refused (the caller rolls back).
    """
    reserved = 0
    for chunk in chunks(indexes):
        result = session.execute(update(_ROLES).where(_ROLES.c.bin_index.in_(chunk)).values(
            reserved_version=_ROLES.c.reserved_version + 1, changed_for_snapshot=snapshot_version,
        ))
        reserved += cast(CursorResult[Any], result).rowcount
    if reserved != len(indexes):
        raise BinLayoutError(
            f"{len(indexes) - reserved} of {len(indexes)} bins to sign have no role in the database "
            "(a bin index outside the installed layout): nothing was published"
        )


def open_reservations(session: Session, indexes: Iterable[int]) -> dict[int, BinReservation]:
    """Bin index -> its reservation, for the bins of ``indexes`` reserved and not yet published."""
    reserved: dict[int, BinReservation] = {}
    for chunk in chunks(sorted(indexes)):
        reserved.update((index, BinReservation(name, version, expires)) for name, index, version, expires in
                        session.execute(
            select(_ROLES.c.name, _ROLES.c.bin_index, _ROLES.c.reserved_version, _ROLES.c.expires)
            .where(_ROLES.c.bin_index.in_(chunk), _ROLES.c.reserved_version > _ROLES.c.version)
        ))
    return reserved


def unfinished_bins(session: Session) -> list[int]:
    """The bins reserved and not yet published, in index order."""
    return list(session.scalars(select(_ROLES.c.bin_index).where(
        _ROLES.c.bin_index.is_not(None), _ROLES.c.reserved_version > _ROLES.c.version,
    ).order_by(_ROLES.c.bin_index)))


def due_online_roles(session: Session, expiring_before: datetime.datetime | None,
                     offline: Iterable[str] = roles.OFFLINE) -> list[tuple[str, int | None]]:
    """(name, bin index) of the online roles an earlier run left unfinished, or expiring; every role
    but the ``offline`` ones (targets is online in the targets-online model)."""
    due = RoleVersion.reserved_version > RoleVersion.version
    if expiring_before is not None:
        due = due | (RoleVersion.expires <= expiring_before)
    return [(name, index) for name, index in session.execute(
        select(RoleVersion.name, RoleVersion.bin_index).where(due, RoleVersion.name.not_in(tuple(offline)))
    )]


def mark_bins(session: Session, indexes: Iterable[int]) -> None:
    """Mark bins for re-signing, as an interrupted publish leaves them (reserved > version)."""
    for chunk in chunks(sorted(indexes)):
        session.execute(update(_ROLES).where(
            _ROLES.c.bin_index.in_(chunk), _ROLES.c.reserved_version == _ROLES.c.version,
        ).values(reserved_version=_ROLES.c.version + 1))


def _bins_done(now: datetime.datetime) -> Update:
    """The update recording a signed bin (executemany), only while its reservation stands."""
    return update(_ROLES).where(
        _ROLES.c.name == bindparam("b_name"), _ROLES.c.reserved_version == bindparam("b_version"),
        _ROLES.c.version < bindparam("b_version"),
    ).values(
        version=bindparam("b_version"), expires=bindparam("b_expires"), length=bindparam("b_length"),
        sha256=bindparam("b_sha256"), updated_at=now,
    )


def record_signed_bins(session: Session, signed: Sequence[SignedBin], now: datetime.datetime) -> None:
    """Record stored bins as published, each only while its reservation still stands."""
    if signed:
        session.execute(_bins_done(now), [item.parameters() for item in signed])


# -- targets --------------------------------------------------------------------------------


BinEntries = dict[str, dict[str, Any]]


def bin_contents(session: Session, indexes: Sequence[int]) -> Iterator[tuple[int, BinEntries]]:
    """Each bin of ``indexes`` with its targets as TUF dicts, a chunk of bins at a time.

    The database builds each bin's entries as one JSON object: one row per
    bin rather than per target (SQLite hands the interpreter lock back at
    every row, which the storage's writer threads then contend for).
    """
    if session.get_bind().dialect.name == "postgresql":
        entry = func.json_build_object("hashes", _TARGETS.c.hashes, "length", _TARGETS.c.length)
        entries = func.json_object_agg(_TARGETS.c.path, entry)
    else:
        entry = func.json_object("hashes", func.json(_TARGETS.c.hashes), "length", _TARGETS.c.length)
        entries = func.json_group_object(_TARGETS.c.path, entry)
    query = (select(_TARGETS.c.bin_index, entries.cast(String))
             .where(_TARGETS.c.bin_index.in_(bindparam("chunk", expanding=True)))
             .group_by(_TARGETS.c.bin_index))
    for chunk in chunks(indexes):
        contents: dict[int, BinEntries] = {index: {} for index in chunk}
        for index, encoded in session.execute(query, {"chunk": list(chunk)}):
            contents[index] = json.loads(encoded)
        yield from contents.items()


def upsert_targets(session: Session, rows: Sequence[TargetRow]) -> None:
    """Insert or replace target rows by path."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_TARGETS)
    statement = statement.on_conflict_do_update(
        index_elements=[_TARGETS.c.path],
        set_={col: statement.excluded[col]
              for col in ("bin_index", "length", "hashes", "kind", "project", "release")},
    )
    for chunk in chunks(rows, 5000):
        session.execute(statement, list(chunk))  # executemany: one compiled statement for every row


def delete_targets(session: Session, paths: Sequence[str]) -> None:
    for chunk in chunks(paths):
        session.execute(delete(Target).where(Target.path.in_(chunk)))


def bins_of(session: Session, project: str, release: str | None = None) -> set[int]:
    """The bins holding a project's targets (a release's, when given)."""
    query = select(Target.bin_index).distinct().where(Target.project == project)
    if release is not None:
        query = query.where(Target.release == release)
    return set(session.scalars(query))


# -- pending changes and the publish log -----------------------------------------------------


def pending_changes(session: Session, limit: int) -> list[PendingChange]:
    return list(session.scalars(select(PendingChange).order_by(PendingChange.id).limit(limit)))


def has_pending(session: Session) -> bool:
    return session.scalar(select(PendingChange.id).limit(1)) is not None


def delete_changes(session: Session, ids: Sequence[int]) -> None:
    for chunk in chunks(ids):
        session.execute(delete(PendingChange).where(PendingChange.id.in_(chunk)),
                        execution_options={"synchronize_session": False})


def prune_publish_log(session: Session) -> None:
    """Delete publish log rows beyond the newest ``PUBLISH_LOG_KEPT``."""
    oldest_kept = session.scalar(select(PublishLog.id).order_by(PublishLog.id.desc())
                                 .offset(PUBLISH_LOG_KEPT - 1).limit(1))
    if oldest_kept is not None:
        session.execute(delete(PublishLog).where(PublishLog.id < oldest_kept))


# -- health -----------------------------------------------------------------------------------


class Health(NamedTuple):
    """The gauges reported after each run, and by ``status``: one query, no row loaded."""

    pending: int
    oldest_pending: datetime.datetime | None
    earliest_expiry: datetime.datetime | None

    def oldest_pending_seconds(self, now: datetime.datetime) -> float:
        return (now - self.oldest_pending).total_seconds() if self.oldest_pending else 0.0

    def seconds_to_expiry(self, now: datetime.datetime) -> float:
        return (self.earliest_expiry - now).total_seconds() if self.earliest_expiry else 0.0


def health(session: Session) -> Health:
    pending = select(func.count(PendingChange.id), func.min(PendingChange.created_at)).subquery()
    earliest = select(func.min(_ROLES.c.expires)).scalar_subquery()  # the expiry index answers it
    return Health(*session.execute(select(pending, earliest)).one())


class BinSummary(NamedTuple):
    """What ``status`` reports of the bins, aggregated in the database."""

    bins: int
    max_version: int | None
    unfinished_roles: int
    targets: int
    earliest_name: str | None
    earliest_expiry: datetime.datetime | None


def bin_summary(session: Session) -> BinSummary:
    is_bin = _ROLES.c.bin_index.is_not(None)
    counts = select(
        func.count().filter(is_bin), func.max(_ROLES.c.version).filter(is_bin),
        func.count().filter(_ROLES.c.reserved_version > _ROLES.c.version),
    ).subquery()
    targets = select(func.count()).select_from(_TARGETS).scalar_subquery()
    earliest = (select(_ROLES.c.name, _ROLES.c.expires).where(is_bin)
                .order_by(_ROLES.c.expires, _ROLES.c.name).limit(1).subquery())
    count, max_version, unfinished, target_count = session.execute(select(counts, targets)).one()
    first = session.execute(select(earliest)).first()
    return BinSummary(count, max_version, unfinished, target_count,
                      first.name if first else None, first.expires if first else None)
