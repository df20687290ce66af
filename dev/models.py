"""The development host's package models, with Warehouse's names and cascades.

``Project`` -> ``Release`` -> ``File``, deleted by ``ON DELETE CASCADE`` in the
database with ``passive_deletes`` in the ORM, as in Warehouse: deleting a
project or a release emits no ORM delete event for the files under it.
"""

from __future__ import annotations

import datetime
import re

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def normalize_name(name: str) -> str:
    """PEP 503 normalization, as Warehouse computes ``Project.normalized_name``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def file_path(blake2_256_digest: str, filename: str) -> str:
    """Warehouse's ``File.path``: ``<2 hex>/<2 hex>/<60 hex>/<filename>`` of the blake2b-256 digest."""
    digest = blake2_256_digest.lower()
    return f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


class Base(DeclarativeBase):
    # The host's tables, apart from the extension's own MetaData.
    metadata = MetaData()


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    normalized_name: Mapped[str] = mapped_column(Text, unique=True)
    created: Mapped[datetime.datetime] = mapped_column(DateTime, server_default=func.now())

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

    release: Mapped[Release] = relationship(back_populates="files")
