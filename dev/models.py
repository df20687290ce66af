"""The development host's package models, with Warehouse's names, cascades and triggers.

``Project`` -> ``Release`` -> ``File``, deleted by ``ON DELETE CASCADE`` in the
database with ``passive_deletes`` in the ORM, as in Warehouse: deleting a
project or a release emits no ORM delete event for the files under it.

As in Warehouse, the database does part of the work, on SQLite and PostgreSQL alike:

- ``projects.normalized_name`` is computed by a trigger from ``projects.name``
  (the SQL function ``normalize_pep426_name``): a new ``Project`` has
  ``normalized_name`` None until it is flushed, and code never sets it;
- ``projects.last_serial`` is set by a trigger on ``journals``: every insert,
  update or delete of a :class:`JournalEntry` sets it to the greatest journal
  id of the project's name (exact ``name`` equality, as Warehouse's
  ``maintain_project_last_serial``), with no ORM change.

SQLite has no stored functions: importing this module registers
``normalize_pep426_name`` on every SQLite connection opened in the process.
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    FetchedValue,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The database's ``normalize_pep426_name`` computes what the extension's rule does (PEP 503).
from warehouse_tuf.pending import normalize_project_name as normalize_name


def _normalize_pep426_name(name: str | None) -> str | None:
    return None if name is None else normalize_name(name)


@event.listens_for(Engine, "connect")
def _register_sqlite_functions(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite's ``normalize_pep426_name`` (PostgreSQL's is created with the tables)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function("normalize_pep426_name", 1, _normalize_pep426_name,
                                         deterministic=True)


def file_path(blake2_256_digest: str, filename: str) -> str:
    """Warehouse's ``File.path``: ``<2 hex>/<2 hex>/<60 hex>/<filename>`` of the blake2b-256 digest."""
    digest = blake2_256_digest.lower()
    return f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


class Base(DeclarativeBase):
    # The host's tables, apart from the extension's own MetaData.
    metadata = MetaData()


class Project(Base):
    __tablename__ = "projects"
    # Fetch the trigger's normalized_name after a flush by a SELECT, never by
    # RETURNING: SQLite's RETURNING does not see what an AFTER trigger wrote.
    __mapper_args__ = {"eager_defaults": False}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    # Set by the database (trigger), never by code. Nullable in the schema
    # only because SQLite's trigger runs after the row is inserted.
    normalized_name: Mapped[str] = mapped_column(
        Text, unique=True, nullable=True, server_default=FetchedValue(), server_onupdate=FetchedValue(),
    )
    created: Mapped[datetime.datetime] = mapped_column(DateTime, server_default=func.now())
    # Set by the database (trigger on journals), never by code.
    last_serial: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    releases: Mapped[list[Release]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Release.id",
    )


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(Text)
    requires_python: Mapped[str | None] = mapped_column(Text)
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yanked_reason: Mapped[str] = mapped_column(Text, default="")

    project: Mapped[Project] = relationship(back_populates="releases")
    files: Mapped[list[File]] = relationship(
        back_populates="release", cascade="all, delete-orphan", passive_deletes=True,
        order_by="File.filename",
    )


class File(Base):
    __tablename__ = "release_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    python_version: Mapped[str] = mapped_column(Text)
    packagetype: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(Text, unique=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    md5_digest: Mapped[str] = mapped_column(String(32), unique=True)
    sha256_digest: Mapped[str] = mapped_column(String(64), unique=True)
    blake2_256_digest: Mapped[str] = mapped_column(String(64), unique=True)
    upload_time: Mapped[datetime.datetime] = mapped_column(DateTime, server_default=func.now())
    # True once sync_file_to_cache copied it from the archive to the files storage.
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    release: Mapped[Release] = relationship(back_populates="files")


class JournalEntry(Base):
    """Warehouse's ``journals``: one row per change of a project; moves ``last_serial``."""

    __tablename__ = "journals"
    # Ids only grow, as PostgreSQL's serial (SQLite may otherwise reuse a deleted greatest id).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text, index=True)
    version: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(Text)
    submitted_date: Mapped[datetime.datetime] = mapped_column(DateTime, server_default=func.now())


# -- the triggers (created with the tables, by Base.metadata.create_all) -------------

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS projects_insert_normalized_name
       AFTER INSERT ON projects FOR EACH ROW
       BEGIN
           UPDATE projects SET normalized_name = normalize_pep426_name(NEW.name) WHERE id = NEW.id;
       END""",
    """CREATE TRIGGER IF NOT EXISTS projects_update_normalized_name
       AFTER UPDATE OF name ON projects FOR EACH ROW
       BEGIN
           UPDATE projects SET normalized_name = normalize_pep426_name(NEW.name) WHERE id = NEW.id;
       END""",
    *(f"""CREATE TRIGGER IF NOT EXISTS journals_{op.lower()}_last_serial
          AFTER {op} ON journals FOR EACH ROW
          BEGIN
              UPDATE projects
              SET last_serial = (SELECT max(id) FROM journals WHERE journals.name = {row}.name)
              WHERE projects.name = {row}.name;
          END""" for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))),
)

_POSTGRESQL_TRIGGERS = (
    r"""CREATE OR REPLACE FUNCTION normalize_pep426_name(text) RETURNS text AS $$
            SELECT lower(regexp_replace($1, '(\.|_|-)+', '-', 'ig'))
        $$ LANGUAGE SQL IMMUTABLE RETURNS NULL ON NULL INPUT""",
    """CREATE OR REPLACE FUNCTION maintain_projects_normalized_name() RETURNS trigger AS $$
        BEGIN
            NEW.normalized_name := normalize_pep426_name(NEW.name);
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER projects_update_normalized_name
       BEFORE INSERT OR UPDATE OF name ON projects
       FOR EACH ROW EXECUTE FUNCTION maintain_projects_normalized_name()""",
    """CREATE OR REPLACE FUNCTION maintain_project_last_serial() RETURNS trigger AS $$
        DECLARE
            journal_name text;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                journal_name := OLD.name;
            ELSE
                journal_name := NEW.name;
            END IF;
            UPDATE projects
            SET last_serial = (SELECT max(id) FROM journals WHERE journals.name = journal_name)
            WHERE projects.name = journal_name;
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER update_project_last_serial
       AFTER INSERT OR UPDATE OR DELETE ON journals
       FOR EACH ROW EXECUTE FUNCTION maintain_project_last_serial()""",
)

for _statement in _SQLITE_TRIGGERS:
    event.listen(Base.metadata, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _POSTGRESQL_TRIGGERS:
    event.listen(Base.metadata, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
