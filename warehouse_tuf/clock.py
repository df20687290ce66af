"""The repository's clock: aware UTC, whole seconds (TUF ``expires`` has no fractions)."""

from __future__ import annotations

import datetime


def utcnow() -> datetime.datetime:
    """Now, in UTC, to the second."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
