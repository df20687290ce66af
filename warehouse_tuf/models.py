"""The extension's own tables.

They live in their own ``MetaData`` (and their own alembic history), so they
never mix with the host's migrations. The database is the source of truth for
targets, role versions and expiries; storage only holds published bytes.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from warehouse_tuf.clock import utcnow
from warehouse_tuf.targets import MAX_TARGET_PATH_BYTES

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def engine_of(bind: Engine | Connection) -> Engine:
    """The Engine behind a session's bind.

    Warehouse binds ``request.db`` to a Connection, the development host and
    tests to an Engine; the extension opens (and commits) its own connections.
    """
    return bind.engine if isinstance(bind, Connection) else bind


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: Any):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use UTC-aware datetimes")
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime.datetime | None, dialect: Any):
        if value is None:
            return None
        return value.replace(tzinfo=datetime.timezone.utc)


class Base(DeclarativeBase):
    metadata = metadata


_UNFINISHED = text("reserved_version > version")


class RoleVersion(Base):
    """The current published version of one role (root, targets, a bin, snapshot, timestamp).

    ``reserved_version`` is the highest version number ever handed to a publish
    attempt. It is committed *before* any byte reaches storage, so a number that
    may have been written is never reused for different bytes, whatever crashes.
    """

    __tablename__ = "tuf_roles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    reserved_version: Mapped[int] = mapped_column(Integer)
    #: Indexed: the earliest expiry is read after every publish (a health gauge).
    expires: Mapped[datetime.datetime] = mapped_column(UTCDateTime, index=True)
    #: Index of a hash bin; None for the top-level roles.
    bin_index: Mapped[int | None] = mapped_column(Integer, index=True)
    length: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: The offline-signed bytes of root and targets (public data); None for online roles.
    signed_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The snapshot version reserved together with this bin's latest reservation: the
    #: roles whose version moved since snapshot N are those above N (see ``snapshot.py``).
    changed_for_snapshot: Mapped[int | None] = mapped_column(Integer, index=True)

    #: Unfinished roles (reserved, not yet published) are looked up on every publish:
    #: a partial index holds only them, not the 16,386 rows.
    __table_args__ = (Index("ix_tuf_roles_unfinished", "bin_index", sqlite_where=_UNFINISHED,
                            postgresql_where=_UNFINISHED),)


class PublishRequest(Base):
    """Whether a publisher is requested or running: its one row (``id`` 1) coalesces publish messages.

    ``requested_at`` is set by the process that sends a publish message and
    cleared by the publisher once it finds nothing more pending, right before
    it looks one last time (``publish_requests.py``).
    """

    __tablename__ = "tuf_publish_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    requested_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)


class OfflineRoleVersion(Base):
    """Every version ever installed of root and targets, as offline-signed (public data).

    ``tuf recover`` re-publishes them when storage lost them: clients walk the
    root chain from ``1.root.json``, so every root version must stay available.
    """

    __tablename__ = "tuf_offline_roles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    signed_bytes: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TargetKind(str, enum.Enum):
    FILE = "file"
    PAGE = "page"


class Target(Base):
    """A signed target as it stands after the last publish."""

    __tablename__ = "tuf_targets"

    path: Mapped[str] = mapped_column(String(MAX_TARGET_PATH_BYTES), primary_key=True)
    bin_index: Mapped[int] = mapped_column(Integer, index=True)
    length: Mapped[int] = mapped_column(BigInteger)
    hashes: Mapped[dict[str, str]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(8))
    #: Normalized project name and release version, so that a project or release
    #: deleted by a database cascade can be removed without knowing its files.
    project: Mapped[str | None] = mapped_column(String(255))
    release: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (Index("ix_tuf_targets_project_release", "project", "release"),)


class ChangeKind(str, enum.Enum):
    ADD = "add"
    REMOVE = "remove"
    REMOVE_RELEASE = "remove_release"
    REMOVE_PROJECT = "remove_project"
    RENDER_PAGES = "render_pages"


class PendingChange(Base):
    """A change recorded in the host's transaction, waiting for the next publish."""

    __tablename__ = "tuf_pending_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(String(MAX_TARGET_PATH_BYTES))
    length: Mapped[int | None] = mapped_column(BigInteger)
    hashes: Mapped[dict[str, str] | None] = mapped_column(JSON)
    project: Mapped[str | None] = mapped_column(String(255))
    release: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class PublishLog(Base):
    """One publish or refresh that signed something: when it ran, how long, how much.

    Written in the run's final commit; the admin page charts the newest rows and
    ``gc`` keeps the newest :data:`PUBLISH_LOG_KEPT`.
    """

    __tablename__ = "tuf_publish_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: ``publish`` or ``refresh``.
    kind: Mapped[str] = mapped_column(String(16))
    #: The run's time (the one its new expiries count from).
    started_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    #: Seconds from the call to the final commit (waiting for the publish lock included).
    duration: Mapped[float] = mapped_column(Float)
    #: Pending target changes published.
    changes: Mapped[int] = mapped_column(Integer)
    bins_signed: Mapped[int] = mapped_column(Integer)
    snapshot_version: Mapped[int] = mapped_column(Integer)
    timestamp_version: Mapped[int] = mapped_column(Integer)


#: Publish log rows ``gc`` keeps (the admin page shows the newest 50).
PUBLISH_LOG_KEPT = 1000
