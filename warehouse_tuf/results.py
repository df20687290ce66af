"""What each repository operation reports back to its caller (command line, task, admin page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class InstallResult:
    """What ``install`` put in place."""

    root_version: int
    targets_version: int
    online_key_rotated: bool
    timestamp_version: int
    seconds: float


@dataclass
class GCResult:
    """What ``gc`` deleted, and how many versions it kept."""

    deleted: list[str] = field(default_factory=list)
    kept: int = 0
    seconds: float = 0.0


@dataclass
class PublishResult:
    """What one publish or refresh did."""

    changes: int = 0
    bins: list[str] = field(default_factory=list)
    snapshot_version: int | None = None
    timestamp_version: int | None = None
    seconds: float = 0.0
    #: A publish that stopped at its deadline with changes still pending (its request stands).
    pending_left: bool = False

    @property
    def published(self) -> bool:
        return self.timestamp_version is not None


@dataclass
class BackfillResult:
    """What one backfill did; ``skipped`` names the host files that are not valid targets."""

    files: int = 0
    pages: int = 0
    bins: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Seconds each stage took: files, pages, bins.
    stages: dict[str, float] = field(default_factory=dict)


@dataclass
class RecoveryResult:
    """What ``recover`` found published, put back, and marked.

    ``timestamp_version`` and ``snapshot_version`` are None when storage had
    lost them; ``restored`` names the root and targets files written back,
    ``unrecoverable`` the ones the database has no bytes for, and ``publish``
    is the re-signing run when storage had lost online roles.
    """

    timestamp_version: int | None
    snapshot_version: int | None
    roles: int
    restored: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)
    publish: PublishResult | None = None


@dataclass
class StorageCheck:
    """Whether storage holds what clients need (``deep``: every bin as well)."""

    deep: bool
    checked: int
    missing: list[str]
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        """As ``status`` reports it (without the problems, which it lists with its own)."""
        return {"deep": self.deep, "checked": self.checked, "missing": self.missing}
