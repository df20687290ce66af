"""The names of the top-level TUF roles, as the repository stores and publishes them."""

from __future__ import annotations

ROOT = "root"
TARGETS = "targets"
SNAPSHOT = "snapshot"
TIMESTAMP = "timestamp"

#: Signed offline, at a ceremony; the database keeps their bytes.
OFFLINE = (ROOT, TARGETS)
#: Signed by the online key together with the bins.
ONLINE_TOP = (SNAPSHOT, TIMESTAMP)
TOP_LEVEL = (ROOT, TARGETS, SNAPSHOT, TIMESTAMP)

#: What clients fetch first, under this name and no version.
TIMESTAMP_FILE = "timestamp.json"


def filename(name: str, version: int) -> str:
    """The consistent-snapshot file name of version ``version`` of role ``name``."""
    return f"{version}.{name}.json"
