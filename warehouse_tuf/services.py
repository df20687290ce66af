"""The TUF manager: the Pyramid service, and the only face the host sees.

Each method is one operation of the repository, done by the module named
after it (``docs/architecture.md`` follows an upload through them):

- ``record_*``, in the host's transaction: ``pending.py`` (no signing, no I/O);
- ``publish``/``refresh``: ``publishing.py`` (one publish, top to bottom),
  signing bins the one way ``bins.py`` does;
- ``bootstrap``: ``bootstrap.py``; ``install``: ``rotation.py``;
- ``recover``: ``recovery.py``; ``gc``: ``retention.py``; ``backfill``:
  ``backfill.py``; ``status``: ``status.py``;
- what the repository trusts: ``trust.py``; its SQL: ``db.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from securesystemslib.signer import Key, Signer
from sqlalchemy.orm import Session
from zope.interface import implementer

from warehouse_tuf import (
    backfill as backfilling,
    bins,
    bootstrap as bootstrapping,
    pending,
    publishing,
    recovery,
    retention,
    rotation,
    status as reporting,
    trust,
)
from warehouse_tuf.exceptions import (
    BinLayoutError,
    BootstrapError,
    DevelopmentKeyError,
    InstallError,
    NotBootstrappedError,
    RepositoryError,
    StorageAheadError,
)
from warehouse_tuf.interfaces import IMetadataStorage, ITUFService
from warehouse_tuf.metrics import host_metrics
from warehouse_tuf.models import engine_of
from warehouse_tuf.repository import Dispatch, MetadataStorage, ProgressCallback, Renderer, Repository
from warehouse_tuf.results import BackfillResult, GCResult, InstallResult, PublishResult, RecoveryResult
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.targets import BinLayout

__all__ = [
    "BackfillResult", "BinLayoutError", "BootstrapError", "DevelopmentKeyError", "GCResult",
    "InstallError", "InstallResult", "NotBootstrappedError", "PublishResult", "RecoveryResult",
    "RepositoryError", "StorageAheadError", "TUFManager",
]


@implementer(ITUFService)
class TUFManager:
    """A PEP 458 repository kept in the database and published to storage."""

    def __init__(
        self,
        db: Session,
        settings: TUFSettings,
        storage: MetadataStorage,
        simple_storage: MetadataStorage,
        *,
        request: Any = None,
        renderer: Renderer | None = None,
        models: tuple[Any, Any, Any] | None = None,
        dispatch: Dispatch | None = None,
        metrics: Any = None,
    ) -> None:
        #: The host's session: changes are recorded in its transaction.
        self.db = db
        self.repository = Repository(
            # Whatever the host binds its session to (Warehouse: a Connection).
            engine_of(db.get_bind()), settings, storage, simple_storage,
            dispatch=dispatch, renderer=renderer, request=request, models=models,
        )
        if metrics is not None:
            self.repository.metrics = metrics

    @classmethod
    def create_service(cls, context: Any, request: Any) -> TUFManager:
        return cls(
            request.db,
            request.registry["tuf.settings"],
            request.find_service(IMetadataStorage, name="tuf.metadata"),
            request.find_service(IMetadataStorage, name="tuf.simple"),
            request=request,
            renderer=request.registry["tuf.renderer"],
            models=request.registry["tuf.models"],
            dispatch=request.registry["tuf.dispatch"],
            metrics=host_metrics(request, request.registry["tuf.settings"].metrics_interface),
        )

    # -- what the repository is made of -----------------------------------------------------

    @property
    def engine(self) -> Any:
        """The database engine the repository opens its own connections on."""
        return self.repository.engine

    @property
    def settings(self) -> TUFSettings:
        return self.repository.settings

    @property
    def storage(self) -> MetadataStorage:
        return self.repository.storage

    @property
    def simple_storage(self) -> MetadataStorage:
        return self.repository.simple_storage

    @property
    def dispatch(self) -> Dispatch | None:
        """Fans bin signing out to workers; None signs in this process."""
        return self.repository.dispatch

    @dispatch.setter
    def dispatch(self, dispatch: Dispatch | None) -> None:
        self.repository.dispatch = dispatch

    @property
    def progress(self) -> ProgressCallback | None:
        """``progress(stage, done, total)``, called as bins are signed in this process."""
        return self.repository.progress.callback

    @progress.setter
    def progress(self, callback: ProgressCallback | None) -> None:
        self.repository.progress.callback = callback

    def bin_layout(self) -> BinLayout:
        """The bins the installed targets delegates to."""
        return trust.bin_layout(self.repository)

    # -- recording, in the caller's transaction ---------------------------------------------

    def record_target(self, path: str, length: int, hashes: dict[str, str], *,
                      project: str | None = None, release: str | None = None) -> None:
        self._record(pending.target_added(path, length, hashes, self.settings.hash_algorithms,
                                          project=project, release=release))

    def record_removal(self, path: str) -> None:
        self._record(pending.target_removed(path))

    def record_release_removal(self, project: str, release: str) -> None:
        self._record(pending.release_removed(project, release))

    def record_project_removal(self, project: str) -> None:
        self._record(pending.project_removed(project))

    def record_pages_changed(self, project: str) -> None:
        self._record(pending.pages_changed(project))

    def _record(self, row: pending.Row) -> None:
        pending.record(self.db.connection(), [row])

    # -- the repository's operations ---------------------------------------------------------

    def bootstrap(self, root_bytes: bytes, targets_bytes: bytes | None) -> PublishResult:
        """Install offline-signed root v1 and targets v1 (None: the targets-online model, the online key
        signs targets v1), every bin, snapshot and timestamp."""
        return bootstrapping.bootstrap(self.repository, root_bytes, targets_bytes)

    def bootstrap_development(self) -> PublishResult:
        """Generate (or reuse) development keys and bootstrap with them (refused in production)."""
        return bootstrapping.bootstrap_development(self.repository)

    def build_offline_roles(
        self, *, root_keys: Iterable[Key], root_threshold: int, targets_keys: Iterable[Key] | None,
        targets_threshold: int, online_keys: Iterable[Key], online_threshold: int,
        sign_with: Iterable[Signer] = (), sign_targets_with: Iterable[Signer] = (), version: int = 1,
    ) -> tuple[bytes, bytes]:
        """Root and targets payloads as this repository's settings want them."""
        return bootstrapping.build_offline_roles(
            self.repository, root_keys=root_keys, root_threshold=root_threshold,
            targets_keys=targets_keys, targets_threshold=targets_threshold, online_keys=online_keys,
            online_threshold=online_threshold, sign_with=sign_with,
            sign_targets_with=sign_targets_with, version=version,
        )

    def install(self, root_bytes: bytes | None, targets_bytes: bytes | None,
                online_signers: tuple[str, ...] | None = None, *,
                without_old_key: bool = False) -> InstallResult:
        """Install offline-signed root N+1 and/or targets M+1 (``rotation.py``)."""
        return rotation.install(self.repository, root_bytes, targets_bytes, online_signers,
                                without_old_key=without_old_key)

    def publish(self, *, wait: bool = True, linger: float = 0.0,
                deadline: float | None = None) -> PublishResult:
        """Publish every pending change (``publishing.publish``)."""
        return publishing.publish(self.repository, wait=wait, linger=linger, deadline=deadline)

    def refresh(self, window: datetime.timedelta | None = None) -> PublishResult:
        """Re-sign every online role that expires within ``window``, with pending changes."""
        return publishing.measured(self.repository, "refresh", window or self.settings.refresh_window)

    def resign_bins(self, indexes: Iterable[int] | None = None) -> PublishResult:
        """Re-sign bins (every bin by default), then one snapshot and one timestamp."""
        return publishing.resign_bins(self.repository, indexes)

    def sign_reserved_bins(self, indexes: list[int], now: datetime.datetime,
                           renew_before: datetime.datetime) -> int:
        """The fan-out worker's side: sign and store these reserved bins (``bins.sign_reserved``)."""
        with self.repository.sessions() as reader:
            trusted = trust.trusted(self.repository, reader)
        return bins.sign_reserved(self.repository, trusted, indexes, now, renew_before)

    def backfill(self, *, batch_files: int = 10_000, batch_bins: int = 4096,
                 progress: ProgressCallback | None = None) -> BackfillResult:
        """Sign every file and simple page the host already has (``backfill.py``)."""
        return backfilling.backfill(self.repository, batch_files=batch_files, batch_bins=batch_bins,
                                    progress=progress)

    def recover(self) -> RecoveryResult:
        """Resume from what storage publishes after a database restore (``recovery.py``)."""
        return recovery.recover(self.repository)

    def gc(self, *, dry_run: bool = False, now: datetime.datetime | None = None) -> GCResult:
        """Delete metadata versions long expired, never a root (``retention.py``)."""
        return retention.gc(self.repository, dry_run=dry_run, now=now)

    def status(self, *, deep: bool = False) -> dict[str, Any]:
        """Role versions and expiries, pending changes, last publish, and problems (``status.py``)."""
        return reporting.status(self.repository, deep=deep)
