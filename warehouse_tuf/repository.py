"""What every step of the repository works with: its database, settings, storage and the host's hooks.

One :class:`Repository` is built per :class:`~warehouse_tuf.services.TUFManager`;
the modules that publish, rotate, recover and report take it as their first
argument, so each can be driven (and tested) without a request.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from warehouse_tuf.metrics import NullMetrics
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.targets import BinLayout

#: Signs the reserved versions of bins elsewhere: one call per run, given
#: batches of bin indexes, the run's time, and the expiry before which a bin's
#: expiry is renewed (see :func:`warehouse_tuf.bins.sign_reserved`).
Dispatch = Callable[[list[list[int]], datetime.datetime, datetime.datetime], None]
#: The host's simple-page renderer: ``(request, project)`` -> pages (one attribute per form), or None.
Renderer = Callable[[Any, str], Any]
#: ``progress(stage, done, total)``: a command line draws it as a bar.
ProgressCallback = Callable[[str, int, int], None]


class MetadataStorage(Protocol):
    """What the repository calls on a storage: ``interfaces.IMetadataStorage``, for the type checker."""

    def put(self, name: str, data: bytes) -> None: ...
    def put_many(self, files: Mapping[str, bytes]) -> None: ...
    def get(self, name: str) -> bytes: ...
    def exists(self, name: str) -> bool: ...
    def delete(self, name: str) -> None: ...
    def list(self, prefix: str = "") -> Iterable[str]: ...


class Progress:
    """Counts the bins signed in this process and reports them to ``callback`` (if any)."""

    def __init__(self) -> None:
        self.callback: ProgressCallback | None = None
        self._stage, self._done, self._total = "bins", 0, 0

    def begin(self, total: int, stage: str = "bins") -> None:
        self._stage, self._done, self._total = stage, 0, total
        if self.callback is not None and total:
            self.callback(stage, 0, total)

    def advance(self, count: int) -> None:
        self._done += count
        if self.callback is not None and self._total:
            self.callback(self._stage, min(self._done, self._total), self._total)


@dataclass
class Repository:
    """A PEP 458 repository: its tables on ``engine``, its published bytes in ``storage``."""

    engine: Engine
    settings: TUFSettings
    storage: MetadataStorage
    simple_storage: MetadataStorage
    #: Fans bin signing out to workers; None signs in this process.
    dispatch: Dispatch | None = None
    renderer: Renderer | None = None
    #: The request the renderer is given (its session loads the host's projects).
    request: Any = None
    #: The host's (Project, Release, File) classes, for backfill.
    models: tuple[Any, Any, Any] | None = None
    #: The host's metrics service (Warehouse's IMetricsService shape).
    metrics: Any = field(default_factory=NullMetrics)
    progress: Progress = field(default_factory=Progress)
    #: The installed targets' bin layout, read (and checked) with the offline roles.
    layout: BinLayout | None = None

    def __post_init__(self) -> None:
        # Publishing commits twice (reservation, then result) around storage
        # writes, so it runs in sessions of its own, on connections of its own,
        # never in the host's transaction.
        self.sessions: sessionmaker[Session] = sessionmaker(bind=self.engine, expire_on_commit=False)
        #: Names this repository in the process's snapshot cache.
        self.name = self.engine.url.render_as_string(hide_password=True)

    def stored_bytes(self, name: str) -> bytes | None:
        """What storage holds under ``name``, None when nothing."""
        try:
            return self.storage.get(name)
        except FileNotFoundError:
            return None
