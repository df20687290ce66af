"""The TUF manager: the one class that holds the repository logic.

How an upload becomes a signed target:

1. the host's transaction records a :class:`~warehouse_tuf.models.PendingChange`
   (``record_*``; no signing, no storage I/O);
2. after commit a task calls :meth:`TUFManager.publish`, which, under the
   publish lock, reserves the new version numbers (committed), applies the
   changes to the target table, re-signs only the touched bins, then writes
   one snapshot and one timestamp, in that order, and commits.

Version numbers are reserved in the database before any byte is written, so a
publish that dies half-way never lets a later one reuse a number for other
bytes; the roles it left behind are re-signed by the next run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, object_session, sessionmaker
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from zope.interface import implementer

from warehouse_tuf import canonical, ceremony, devkeys, pending, publish_requests, signing, trust_model
from warehouse_tuf import targets as targetlib
from warehouse_tuf.interfaces import IMetadataStorage, ITUFService
from warehouse_tuf.locking import LockTimeout, publish_lock
from warehouse_tuf.metrics import PREFIX as METRICS_PREFIX, NullMetrics, host_metrics, report_run
from warehouse_tuf.models import (
    PUBLISH_LOG_KEPT,
    ChangeKind,
    OfflineRoleVersion,
    PendingChange,
    PublishLog,
    RoleVersion,
    Target,
    TargetKind,
    engine_of,
    utcnow,
)
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.snapshot import CACHE as snapshot_cache, SnapshotMeta

log = logging.getLogger("warehouse_tuf")

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
DEV_KEYS_MARKER = devkeys.MARKER
#: ``status`` warns this long before root or targets expires: a ceremony takes weeks to arrange.
OFFLINE_EXPIRY_WARNING = datetime.timedelta(days=60)
_CHUNK = 500


class RepositoryError(RuntimeError):
    """The repository cannot do what was asked; nothing was changed."""


class NotBootstrappedError(RepositoryError):
    """No root and targets are installed yet."""


class BootstrapError(RepositoryError):
    """The offline-signed root or targets is not acceptable."""


class InstallError(RepositoryError):
    """A new root or targets is not acceptable; nothing was installed."""


class StorageAheadError(RepositoryError):
    """Storage holds newer metadata than the database knows (restored from a backup?)."""


class BinLayoutError(RepositoryError):
    """The bin settings disagree with the bins the installed targets delegates to."""


class DevelopmentKeyError(signing.SigningError):
    """Production was asked to trust or sign with a development key."""


@dataclass
class InstallResult:
    """What :meth:`TUFManager.install` put in place."""

    root_version: int
    targets_version: int
    online_key_rotated: bool
    timestamp_version: int
    seconds: float


@dataclass
class GCResult:
    """What :meth:`TUFManager.gc` deleted, and how many versions it kept."""

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


#: Signs the reserved versions of bins elsewhere: one call per run, given
#: batches of bin indexes, the run's time, and the expiry before which a bin's
#: expiry is renewed (see ``TUFManager.sign_reserved_bins``).
Dispatch = Callable[[list[list[int]], datetime.datetime, datetime.datetime], None]


@dataclass
class RecoveryResult:
    """What :meth:`TUFManager.recover` found published, put back, and marked.

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
class _Trusted:
    root: Metadata[Root]
    targets: Metadata[Targets]
    signers: list


@implementer(ITUFService)
class TUFManager:
    """A PEP 458 repository kept in the database and published to storage."""

    def __init__(
        self,
        db: Session,
        settings: TUFSettings,
        storage: IMetadataStorage,
        simple_storage: IMetadataStorage,
        *,
        request: Any = None,
        renderer: Any = None,
        models: tuple[Any, Any, Any] | None = None,
        dispatch: Dispatch | None = None,
        metrics: Any = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.storage = storage
        self.simple_storage = simple_storage
        self.request = request
        self.renderer = renderer
        #: The host's (Project, Release, File) classes, for backfill.
        self.models = models
        #: Fans bin signing out to workers; None signs in this process.
        self.dispatch = dispatch
        #: The host's metrics service (Warehouse's IMetricsService shape).
        self.metrics = metrics or NullMetrics()
        #: The database engine, whatever the host binds its session to (Warehouse: a Connection).
        self.engine = engine_of(db.get_bind())
        # Publishing commits twice (reservation, then result) around storage
        # writes, so it runs in sessions of its own, on connections of its own,
        # never in the caller's transaction.
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._serializer = JSONSerializer(compact=True)
        #: The installed targets' bin layout, read (and checked) with the offline roles.
        self._layout: targetlib.BinLayout | None = None
        #: ``progress(stage, done, total)``, called as bins are signed in this process (a
        #: command line draws it as a bar); None reports nothing.
        self.progress: Callable[[str, int, int], None] | None = None
        self._progress_stage, self._progress_done, self._progress_total = "bins", 0, 0
        #: Names this repository in the process's snapshot cache.
        self._repository = self.engine.url.render_as_string(hide_password=True)

    @classmethod
    def create_service(cls, context: Any, request: Any) -> "TUFManager":
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

    # -- progress reporting ------------------------------------------------------

    def _progress_begin(self, total: int, stage: str = "bins") -> None:
        self._progress_stage, self._progress_done, self._progress_total = stage, 0, total
        if self.progress is not None and total:
            self.progress(stage, 0, total)

    def _progress_advance(self, count: int) -> None:
        self._progress_done += count
        if self.progress is not None and self._progress_total:
            self.progress(self._progress_stage, min(self._progress_done, self._progress_total),
                          self._progress_total)

    # -- recording, in the caller's transaction --------------------------------

    def record_target(
        self,
        path: str,
        length: int,
        hashes: dict[str, str],
        *,
        project: str | None = None,
        release: str | None = None,
    ) -> None:
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

    # -- bootstrap ---------------------------------------------------------------

    def bootstrap(self, root_bytes: bytes, targets_bytes: bytes | None) -> PublishResult:
        """Install offline-signed root v1 and targets v1, every bin, snapshot and timestamp.

        ``targets_bytes`` None: the targets-online model (``trust_model.py``); the
        online key signs targets v1 here.
        """
        started = time.monotonic()
        root, targets = self._check_offline_roles(root_bytes, targets_bytes)
        signers = self._online_signers(root.signed, targets.signed)
        if targets_bytes is None:
            targets_bytes = trust_model.sign(targets, signers)
        with publish_lock(self.engine, self.settings.lock_timeout), self._sessions() as s:
            if s.scalar(select(func.count()).select_from(RoleVersion)):
                raise BootstrapError("the repository is already bootstrapped")
            if self.storage.exists("timestamp.json"):
                raise StorageAheadError(
                    "storage already holds a timestamp.json but the database has no repository: "
                    "point tuf.storage.path at an empty location, or recover the database"
                )
            now = utcnow()
            offline = {
                "root": self._put_offline_role(s, "root", root_bytes, root.signed),
                "targets": self._put_offline_role(s, "targets", targets_bytes, targets.signed),
            }
            self.storage.put("1.root.json", root_bytes)
            self.storage.put("1.targets.json", targets_bytes)
            trusted = _Trusted(root, targets, signers)
            self._layout = _delegated_layout(targets.signed)
            count = self._layout.count
            spread = self.settings.bin_expiry_spread
            expiry = self.settings.expiry["bins"]
            rows = dict(offline)
            for index in range(count):
                name = self._bin_name(index)
                # Spread first expiries so the bins do not all come due at once.
                expires = (now + expiry * (1 - spread * index / count)).replace(microsecond=0)
                rows[name] = RoleVersion(
                    name=name, version=0, reserved_version=1, expires=expires,
                    bin_index=index, length=0, sha256="",
                )
            for name in ("snapshot", "timestamp"):
                rows[name] = RoleVersion(
                    name=name, version=0, reserved_version=1, expires=now, length=0, sha256=""
                )
            s.add_all(rows[name] for name in rows if name not in offline)
            bins = {self._bin_name(i): i for i in range(count)}
            self._sign_bins(s, trusted, rows, bins, {n: 1 for n in bins}, now, keep_expiry=True)
            self._sign_snapshot_and_timestamp(s, trusted, rows, 1, 1, now)
            s.commit()
        result = PublishResult(bins=list(bins), snapshot_version=1, timestamp_version=1,
                               seconds=time.monotonic() - started)
        log.info("tuf bootstrap: %d bins, snapshot 1, timestamp 1", count)
        return result

    def bootstrap_development(self) -> PublishResult:
        """Generate (or reuse) development keys and bootstrap with them.

        Refused when the environment is production: development keys are
        plain files on disk and must never protect a real index.
        """
        if self.settings.env == "production":
            raise RepositoryError("development keys are refused in production (tuf.env = production)")
        if not self.settings.dev_keys_path:
            raise RepositoryError("tuf.dev_keys_path is not set")
        keys_dir = Path(self.settings.dev_keys_path)
        keys = {}
        online_model = self.settings.targets_online
        for role in ("root", "online") if online_model else ("root", "targets", "online"):
            path = keys_dir / f"{role}.pem"
            keys[role] = signing.load_key_file(path) if path.exists() else None
            if keys[role] is None:
                signing.generate_key_file(path)
                keys[role] = signing.load_key_file(path)
        # The marker lists their key ids: production refuses them by identity.
        devkeys.record(keys_dir, [key.public_key for key in keys.values()])
        root_bytes, targets_bytes = self.build_offline_roles(
            root_keys=[keys["root"].public_key], root_threshold=1,
            targets_keys=None if online_model else [keys["targets"].public_key], targets_threshold=1,
            online_keys=[keys["online"].public_key], online_threshold=1,
            sign_with=[keys["root"]], sign_targets_with=[] if online_model else [keys["targets"]],
        )
        return self.bootstrap(root_bytes, None if online_model else targets_bytes)

    def build_offline_roles(
        self, *, root_keys, root_threshold, targets_keys, targets_threshold,
        online_keys, online_threshold, sign_with=(), sign_targets_with=(),
        version: int = 1,
    ) -> tuple[bytes, bytes]:
        """Root and targets payloads as this repository's settings want them.

        Signed with ``sign_with`` (root) and ``sign_targets_with`` (targets)
        when given; the ceremony signs them elsewhere otherwise. ``targets_keys``
        None: root trusts the online keys for targets (the targets-online model).
        """
        now = utcnow()
        root_md, targets_md = ceremony.build_roles(
            root=ceremony.RoleSpec(list(root_keys), root_threshold),
            targets=None if targets_keys is None else ceremony.RoleSpec(list(targets_keys), targets_threshold),
            online=ceremony.RoleSpec(list(online_keys), online_threshold),
            bin_bits=self.settings.bin_bits, bin_prefix=self.settings.bin_name_prefix,
            root_expires=now + self.settings.expiry["root"],
            targets_expires=now + self.settings.expiry["targets"], version=version,
        )
        for signer in sign_with:
            root_md.sign(signer, append=True)
        for signer in sign_targets_with:
            targets_md.sign(signer, append=True)
        return root_md.to_bytes(self._serializer), targets_md.to_bytes(self._serializer)

    # -- new offline roles: root rotation, targets renewal, online key rotation -----

    def install(
        self, root_bytes: bytes | None, targets_bytes: bytes | None,
        online_signers: tuple[str, ...] | None = None, *, without_old_key: bool = False,
    ) -> InstallResult:
        """Install offline-signed root N+1 and/or targets M+1, checked as a client checks them.

        Root N+1 must meet the root thresholds of root N and of itself. When the new
        roles trust a new online key, every online role is first re-signed with the
        old and the new key (valid under both roots), then targets, snapshot,
        timestamp and, last, root N+1 are published, then everything is re-signed
        with the new key alone: whichever root a client holds, what it fetches
        verifies. ``online_signers`` (``KEYID=URI``, default the configured ones)
        must then cover the old and the new key.

        ``without_old_key`` is for an old online key that is lost or compromised:
        everything is signed with the new key alone, the bins before the snapshot
        that names them; a client refreshing during the switch is refused once
        (it fails closed) and succeeds on its next try.
        """
        started = time.monotonic()
        with publish_lock(self.engine, self.settings.lock_timeout), self._sessions() as s:
            trusted_root, trusted_targets = self._offline_roles(s)
            rows = {row.name: row for row in s.scalars(select(RoleVersion))}
            payload = self._check_install(trusted_root, trusted_targets, root_bytes, targets_bytes,
                                          without_old_key)
            problem = trust_model.model_problem((payload.root or trusted_root).signed,
                                                self.settings.targets_online)
            if problem:
                raise InstallError(problem)
            self._refuse_development_keys((payload.root or trusted_root).signed,
                                          (payload.targets or trusted_targets).signed)
            if self._reinstall_after_restore(s, rows, payload, root_bytes, targets_bytes):
                return InstallResult(rows["root"].version, rows["targets"].version, False,
                                     rows["timestamp"].version, time.monotonic() - started)
            self._check_storage_not_ahead(rows["timestamp"])
            new_root = payload.root or trusted_root
            new_targets = payload.targets or trusted_targets
            if payload.targets is None and trust_model.targets_online(new_root.signed):
                # The targets-online model: the index signs the next targets, delegating to root N+1's online keys.
                new_targets = Metadata(ceremony.redelegated(trusted_targets.signed, new_root.signed))
            old_keys = signing.online_keys(trusted_root.signed, trusted_targets.signed)
            new_keys = signing.online_keys(new_root.signed, new_targets.signed)
            rotating = old_keys != new_keys
            uris = self._signer_uris(online_signers)
            handover = rotating and not without_old_key
            if handover:
                both, new_only = self._rotation_signers(uris, old_keys, new_keys)
            else:
                both = new_only = signing.load_online_signers(uris, new_keys)
            self._refuse_development_signers(both)
            # The targets-online model: the online key signs targets M+1, or adds its signature
            # to the payload's when the model switches (clients on root N or N+1 accept it).
            online_model = trust_model.targets_online(new_root.signed)
            index_signs_targets = rotating and payload.targets is None and online_model
            if payload.targets is not None and online_model != trust_model.targets_online(trusted_root.signed):
                targets_bytes = trust_model.sign(payload.targets, both)
            now = utcnow()
            if handover:
                self._resign_all(s, rows, _Trusted(trusted_root, trusted_targets, both), now)
            bins = {row.name: row.bin_index for row in rows.values()
                    if rotating and not handover and row.bin_index is not None}
            versions = self._reserve(s, rows, [*bins, "snapshot", "timestamp",
                                               *(["targets"] if index_signs_targets else [])])
            s.commit()
            if bins:
                self._sign_bins(s, _Trusted(new_root, new_targets, new_only), rows, bins, versions, now)
            if index_signs_targets:
                new_targets = Metadata[Targets].from_bytes(self._sign_online_targets(
                    rows["targets"], new_targets.signed, versions["targets"], both, now))
            if payload.targets is not None:
                self._publish_offline_role(rows["targets"], payload.targets.signed, targets_bytes, now)
            self._sign_snapshot_and_timestamp(
                s, _Trusted(new_root, new_targets, both), rows,
                versions["snapshot"], versions["timestamp"], now,
            )
            # Root last: until then every published role verifies under root N as well.
            if payload.root is not None:
                self._publish_offline_role(rows["root"], payload.root.signed, root_bytes, now)
            s.commit()
            if handover:
                self._resign_all(s, rows, _Trusted(new_root, new_targets, new_only), now, targets=online_model)
            result = InstallResult(
                root_version=rows["root"].version, targets_version=rows["targets"].version,
                online_key_rotated=rotating, timestamp_version=rows["timestamp"].version,
                seconds=time.monotonic() - started,
            )
        log.info(
            "tuf install root=%d targets=%d online_key_rotated=%s timestamp=%d seconds=%.3f",
            result.root_version, result.targets_version, rotating, result.timestamp_version,
            result.seconds,
        )
        return result

    def _check_install(
        self, trusted_root: Metadata[Root], trusted_targets: Metadata[Targets],
        root_bytes: bytes | None, targets_bytes: bytes | None, without_old_key: bool,
    ) -> ceremony.Payload:
        """The new roles as a payload verified against the installed ones; raise on any problem."""
        roles = {}
        for name, data, kind in (("root", root_bytes, Root), ("targets", targets_bytes, Targets)):
            if data is None:
                continue
            try:
                roles[name] = Metadata[kind].from_bytes(data)
            except Exception as exc:
                raise InstallError(f"{name} is not valid TUF metadata: {exc}") from None
            if not isinstance(roles[name].signed, kind):
                raise InstallError(f"expected {name} metadata, found {roles[name].signed.type}")
        if not roles:
            raise InstallError("nothing to install: give a root, a targets, or both")
        payload = ceremony.Payload(trusted_root=trusted_root, old_keys_unavailable=without_old_key, **roles)
        problems = payload.problems()
        if payload.targets is not None:
            expected = trusted_targets.signed.version + 1
            if payload.targets.signed.version != expected:
                problems.append(f"targets version is {payload.targets.signed.version}, expected {expected}")
            succinct = payload.targets.signed.delegations.succinct_roles if payload.targets.signed.delegations else None
            current = trusted_targets.signed.delegations.succinct_roles
            if succinct is not None and (succinct.bit_length, succinct.name_prefix) != (
                current.bit_length, current.name_prefix
            ):
                problems.append(
                    f"targets delegates to {2**succinct.bit_length} bins named {succinct.name_prefix}-*, "
                    f"the repository has {2**current.bit_length} named {current.name_prefix}-*"
                )
        for name, md in roles.items():
            stored = f"{md.signed.version}.{name}.json"
            data = root_bytes if name == "root" else targets_bytes
            published = self._stored_bytes(stored)
            if published is not None and not trust_model.published_as(published, data):
                problems.append(f"storage already publishes {stored} with other bytes")
        if problems:
            raise InstallError(problems[0])
        return payload

    def _reinstall_after_restore(
        self, s: Session, rows: dict[str, RoleVersion], payload: ceremony.Payload,
        root_bytes: bytes | None, targets_bytes: bytes | None,
    ) -> bool:
        """After a database restore, put back roles storage already publishes, byte for byte
        (a model switch's targets with the online key's signature, as install published it).

        Storage is then ahead of the database ('tuf recover' refuses until the
        newer root and targets are back); nothing is signed or written here.
        """
        stored = self._stored_timestamp_version()
        if stored is None or stored <= rows["timestamp"].reserved_version:
            return False
        roles = []
        for name, md, data in (("root", payload.root, root_bytes), ("targets", payload.targets, targets_bytes)):
            published = self._stored_bytes(f"{md.signed.version}.{name}.json") if md is not None else None
            if md is not None and (published is None or not trust_model.published_as(published, data)):
                return False
            roles.append((name, md, published))
        now = utcnow()
        for name, md, data in roles:
            if md is not None:
                self._update_row(rows[name], md.signed.version, md.signed.expires, data, now)
                rows[name].signed_bytes = data
                self._keep_offline_version(s, name, md.signed.version, data)
        s.commit()
        log.warning("tuf install: re-installed published root %d / targets %d after a restore",
                    rows["root"].version, rows["targets"].version)
        return True

    def _stored_bytes(self, name: str) -> bytes | None:
        """What storage holds under ``name``, None when nothing."""
        try:
            return self.storage.get(name)
        except FileNotFoundError:
            return None

    def _rotation_signers(
        self, uris: tuple[str, ...], old: signing.OnlineKeys, new: signing.OnlineKeys,
    ) -> tuple[list, list]:
        """Signers for the old and new online keys together, and for the new ones alone."""
        signers = signing.load_online_signers(uris, signing.OnlineKeys({**old.keys, **new.keys}, 1))
        for label, keys in (("old", old), ("new", new)):
            count = sum(signer.public_key.keyid in keys.keys for signer in signers)
            if count < keys.threshold:
                raise InstallError(
                    f"rotating the online key needs signers for the old and the new key(s): "
                    f"{count} configured for the {label} one(s), threshold {keys.threshold} "
                    "(give every one as KEYID=URI)"
                )
        return signers, [signer for signer in signers if signer.public_key.keyid in new.keys]

    def _resign_all(self, s: Session, rows: dict[str, RoleVersion], trusted: _Trusted,
                    now: datetime.datetime, *, targets: bool = False) -> None:
        """Re-sign every bin, then snapshot and timestamp, with ``trusted.signers``; with ``targets``,
        targets too (the targets-online model)."""
        bins = {row.name: row.bin_index for row in rows.values() if row.bin_index is not None}
        versions = self._reserve(s, rows, [*bins, "snapshot", "timestamp", *(["targets"] if targets else [])])
        s.commit()
        if targets:
            self._sign_online_targets(rows["targets"], trusted.targets.signed, versions["targets"],
                                      trusted.signers, now)
        self._sign_bins(s, trusted, rows, bins, versions, now)
        self._sign_snapshot_and_timestamp(
            s, trusted, rows, versions["snapshot"], versions["timestamp"], now
        )
        s.commit()

    def _sign_online_targets(self, row: RoleVersion, current: Targets, version: int, signers: list,
                             now: datetime.datetime) -> bytes:
        """``current`` as targets ``version``, signed by the online key (the targets-online model) and
        stored before the snapshot that names it."""
        signed = trust_model.next_targets(current, version=version, expires=now + self.settings.expiry["targets"])
        data = trust_model.sign(signed, signers)
        self._publish_offline_role(row, signed, data, now)
        return data

    def _publish_offline_role(self, row: RoleVersion, signed: Root | Targets, data: bytes,
                              now: datetime.datetime) -> None:
        self.storage.put(f"{signed.version}.{row.name}.json", data)
        self._update_row(row, signed.version, signed.expires, data, now)
        row.signed_bytes = data
        self._keep_offline_version(object_session(row), row.name, signed.version, data)

    # -- publish and refresh ------------------------------------------------------

    def publish(self, *, wait: bool = True, linger: float = 0.0,
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
            while wait or self._has_pending(linger):
                if deadline is not None and time.monotonic() >= deadline:
                    total.pending_left = True
                    return total
                try:
                    result = self._measured("publish", None, wait)
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
            publish_requests.withdraw(self.engine)
            if not self._has_pending():
                return total

    def _has_pending(self, linger: float = 0.0) -> bool:
        """Whether a change is pending, looking again every 20 ms for up to ``linger`` seconds."""
        deadline = time.monotonic() + linger
        while True:
            with self._sessions() as s:
                if s.scalar(select(PendingChange.id).limit(1)) is not None:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def refresh(self, window: datetime.timedelta | None = None) -> PublishResult:
        """Re-sign every online role that expires within ``window``, with pending changes."""
        return self._measured("refresh", window or self.settings.refresh_window)

    def _measured(self, kind: str, refresh_window: datetime.timedelta | None,
                  wait: bool = True) -> PublishResult:
        """Run a publish or refresh under the host's metrics, then report its gauges."""
        with self.metrics.timed(f"{METRICS_PREFIX}.{kind}.duration"):
            result = self._run(refresh_window, wait)
        with self._sessions() as s:
            health = self._health(s, utcnow())
        report_run(self.metrics, kind, changes=result.changes, bins=len(result.bins), **health)
        return result

    def _health(self, s: Session, now: datetime.datetime) -> dict[str, float]:
        """Pending changes, age of the oldest one, and seconds until the earliest expiry."""
        pending, oldest = s.execute(
            select(func.count(PendingChange.id), func.min(PendingChange.created_at))
        ).one()
        earliest = s.scalar(select(func.min(RoleVersion.expires)))
        return {
            "pending": pending,
            "oldest_pending_seconds": (now - oldest).total_seconds() if oldest else 0.0,
            "seconds_to_expiry": (earliest - now).total_seconds() if earliest else 0.0,
        }

    def recover(self) -> RecoveryResult:
        """Resume from what storage publishes after a database restore; re-publish what storage lost.

        - Every root version (the chain clients walk from ``1.root.json``) and
          the current targets that storage lacks are written back from the
          database, byte for byte (the same version names the same bytes).
        - Each online role's version becomes at least its published one, and
          its reserved version moves past every version storage holds, so the
          next publish re-signs all of them from the database's targets under
          new numbers: a client holding the newest timestamp, snapshot or bin
          is never rolled back.
        - When storage lost online roles clients need (``timestamp.json``, the
          snapshot, a bin), that publish runs now. After a database restore
          with storage intact it is left to the operator: changes committed
          after the backup are not in the restored database and are not
          re-queued, so record them again (e.g. by backfill), then publish.
        """
        with publish_lock(self.engine, self.settings.lock_timeout), self._sessions() as s:
            # Bootstrapped; the signers may trust a root not reinstalled yet.
            offline = trust_model.offline_roles(self._offline_roles(s)[0].signed)
            rows = {row.name: row for row in s.scalars(select(RoleVersion))}
            published = self._published_versions(missing_ok=True)
            highest = dict(published)
            for name in self.storage.list():
                version, _, role = name.partition(".")
                if version.isdigit() and role.endswith(".json"):
                    role = role.removesuffix(".json")
                    highest[role] = max(highest.get(role, 0), int(version))
            for name in offline:
                if highest.get(name, 0) > rows[name].version:
                    raise RepositoryError(
                        f"storage holds {name} version {highest[name]} but the database has "
                        f"{rows[name].version}: install the newer offline-signed {name} first"
                    )
            missing = self._storage_check(deep=True)["missing"]
            restored, unrecoverable = self._restore_offline_roles(s, rows)
            online = [row for name, row in rows.items() if name not in offline]
            for row in online:
                row.version = max(row.version, published.get(row.name, 0))
                # reserved > version marks the role unfinished: the next publish re-signs
                # it, under a number above every one storage holds.
                row.reserved_version = max(
                    row.reserved_version, highest.get(row.name, 0), row.version + 1
                )
            s.commit()
        result = RecoveryResult(published.get("timestamp"), published.get("snapshot"), len(online),
                                restored, unrecoverable)
        lost_online = [name for name in missing if not name.endswith((".root.json", ".targets.json"))]
        log.warning("tuf recover: storage published timestamp %s, snapshot %s; %d roles to re-sign; "
                    "%d file(s) missing, %d root/targets restored, %d unrecoverable",
                    result.timestamp_version, result.snapshot_version, len(online), len(missing),
                    len(restored), len(unrecoverable))
        if lost_online:
            result.publish = self.publish()
        return result

    def _restore_offline_roles(self, s: Session, rows: dict[str, RoleVersion]) -> tuple[list[str], list[str]]:
        """Write back every root version and the current targets that storage lacks.

        Returns the names written and the names the database holds no bytes for
        (roots installed before it kept them: put them back from the signed
        ceremony payloads).
        """
        kept = {(name, version): data for name, version, data in s.execute(
            select(OfflineRoleVersion.name, OfflineRoleVersion.version, OfflineRoleVersion.signed_bytes)
        )}
        kept[("root", rows["root"].version)] = rows["root"].signed_bytes
        kept[("targets", rows["targets"].version)] = rows["targets"].signed_bytes
        wanted = [("root", v) for v in range(1, rows["root"].version + 1)]
        wanted.append(("targets", rows["targets"].version))
        files, unrecoverable = {}, []
        for name, version in wanted:
            filename = f"{version}.{name}.json"
            if self.storage.exists(filename):
                continue
            if kept.get((name, version)) is None:
                unrecoverable.append(filename)
            else:
                files[filename] = kept[(name, version)]
        self.storage.put_many(files)  # roots in version order: a client walks them one by one
        for name, version in wanted:
            if (name, version) in kept:
                self._keep_offline_version(s, name, version, kept[(name, version)])
        return list(files), unrecoverable

    def _storage_check(self, *, deep: bool = False) -> dict[str, Any]:
        """Whether storage holds what clients need first: the root chain, ``timestamp.json``,
        the snapshot and targets it names; with ``deep``, every bin the snapshot lists.

        Names are taken from storage's own timestamp and snapshot when they are
        there, else from the database's versions.
        """
        with self._sessions() as s:
            top = {row.name: row for row in s.scalars(select(RoleVersion).where(RoleVersion.bin_index.is_(None)))}
            bins = dict(s.execute(select(RoleVersion.name, RoleVersion.version)
                                  .where(RoleVersion.bin_index.is_not(None))).all()) if deep else {}
        problems: list[str] = []
        wanted = [f"{v}.root.json" for v in range(1, top["root"].version + 1)]
        wanted.append("timestamp.json")
        snapshot_version = top["snapshot"].version
        stored = self._stored_bytes("timestamp.json")
        if stored is not None:
            try:
                snapshot_version = int(json.loads(stored)["signed"]["meta"]["snapshot.json"]["version"])
            except (ValueError, KeyError, TypeError):
                problems.append("storage's timestamp.json is not valid timestamp metadata")
        wanted.append(f"{snapshot_version}.snapshot.json")
        meta: dict[str, Any] | None = None
        stored = self._stored_bytes(f"{snapshot_version}.snapshot.json")
        if stored is not None:
            try:
                meta = {name.removesuffix(".json"): int(entry["version"])
                        for name, entry in json.loads(stored)["signed"]["meta"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                problems.append(f"storage's {snapshot_version}.snapshot.json is not valid snapshot metadata")
        listed = meta if meta is not None else {"targets": top["targets"].version, **bins}
        wanted.append(f"{listed.get('targets', top['targets'].version)}.targets.json")
        if deep:
            wanted.extend(f"{version}.{name}.json" for name, version in sorted(listed.items())
                          if name != "targets")
        missing = [name for name in dict.fromkeys(wanted) if not self.storage.exists(name)]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            problems.append(f"storage is missing {len(missing)} file(s) clients need: {shown} "
                            "(run 'tuf recover')")
        return {"deep": deep, "checked": len(set(wanted)), "missing": missing, "problems": problems}

    def _published_versions(self, *, missing_ok: bool = False) -> dict[str, int]:
        """Role name -> version, as storage's timestamp.json and its snapshot publish them.

        With ``missing_ok``, storage that lost them publishes nothing (an empty dict).
        """
        try:
            timestamp = Metadata[Timestamp].from_bytes(self.storage.get("timestamp.json"))
            snapshot_version = timestamp.signed.snapshot_meta.version
            snapshot = Metadata[Snapshot].from_bytes(
                self.storage.get(f"{snapshot_version}.snapshot.json")
            )
        except FileNotFoundError as exc:
            if missing_ok:
                return {}
            raise RepositoryError(f"storage has no published repository to recover from: {exc}") from None
        except Exception as exc:
            raise RepositoryError(f"storage's timestamp or snapshot is not valid TUF metadata: {exc}") from None
        versions = {"timestamp": timestamp.signed.version, "snapshot": snapshot_version}
        for name, meta in snapshot.signed.meta.items():
            versions[name.removesuffix(".json")] = meta.version
        return versions

    def _run(self, refresh_window: datetime.timedelta | None, wait: bool = True) -> PublishResult:
        """One publish, or a refresh when ``refresh_window`` is given, under the publish lock.

        1. Load the offline roles and the online signers (when the signers do not
           load and storage is ahead of the database, the restore is reported).
        2. Take up to ``tuf.publish_batch_limit`` pending changes, and the online
           roles left unfinished by an earlier run or (refresh) expiring within
           the window. Nothing to do: return.
        3. Render the touched projects' pages, then reserve new versions of the
           touched bins, the snapshot and the timestamp, and apply the changes
           to the targets table, in one commit: the reservation is durable
           before any byte is written, and no number is ever handed out twice.
        4. Sign the bins: on the workers when there are many
           (``tuf.fan_out_batch``), else here, stored with the snapshot.
        5. Store the snapshot, then the timestamp (only while its reservation
           still stands), delete the published changes, log the run, commit.

        A crash anywhere leaves reservations that the next run finishes.
        ``wait=False`` gives up at once (a lock timeout of 0) when another publisher holds the lock.
        """
        started = time.monotonic()
        timeout = self.settings.lock_timeout if wait else datetime.timedelta(0)
        with publish_lock(self.engine, timeout), self._sessions() as s:
            root, targets = self._offline_roles(s)
            try:
                trusted = _Trusted(root, targets, self._online_signers(root.signed, targets.signed))
            except signing.SigningError:
                # After a restore the signer may be configured for the newer root that
                # storage publishes: the restore is then the problem to report.
                self._check_storage_not_ahead(s.get(RoleVersion, "timestamp"))
                raise
            changes = list(
                s.scalars(
                    select(PendingChange).order_by(PendingChange.id)
                    .limit(self.settings.publish_batch_limit)
                )
            )
            now = utcnow()
            due = RoleVersion.reserved_version > RoleVersion.version
            if refresh_window is not None:
                due = due | (RoleVersion.expires <= now + refresh_window)
            # Online roles an earlier run left unfinished, or expiring: a query,
            # not one ORM object per bin (16,384 of them in production). Targets is
            # one of them in the targets-online model.
            due_roles = s.execute(
                select(RoleVersion.name, RoleVersion.bin_index)
                .where(due, RoleVersion.name.not_in(trust_model.offline_roles(root.signed)))
            ).all()
            resign_targets = ("targets", None) in due_roles
            if not changes and not due_roles:
                return PublishResult(seconds=time.monotonic() - started)
            rows = {row.name: row for row in s.scalars(select(RoleVersion).where(RoleVersion.bin_index.is_(None)))}
            self._check_storage_not_ahead(rows["timestamp"])
            bins = self._bins_touched(s, changes)
            bins.update((name, index) for name, index in due_roles if index is not None)
            indexes = sorted(bins.values())
            # Pages are rendered (and stored) before the first write: the write
            # transaction stays short (SQLite has a single writer: the uploads).
            pages = self._render_pages(
                c.project for c in changes
                if c.kind in (ChangeKind.REMOVE_PROJECT.value, ChangeKind.RENDER_PAGES.value)
            )
            versions = self._reserve(s, rows, ["snapshot", "timestamp", *(["targets"] if resign_targets else [])])
            self._reserve_bins(s, indexes, versions["snapshot"])
            self._apply_changes(s, changes, pages)
            # The reservation is durable before any byte is written. The changes are
            # applied in the same commit (applying them again after a crash is
            # harmless): the bins are signed from the table, here or by the workers,
            # and uploads keep committing meanwhile.
            s.commit()
            renew_before = now + (refresh_window or self.settings.refresh_window)
            self._progress_begin(len(indexes))
            bin_files: dict[str, bytes] = {}
            bin_reports: list[dict] = []
            if self.dispatch is not None and len(indexes) >= self.settings.fan_out_batch:
                self._sign_open_bins(indexes, now, renew_before)
            elif len(indexes) <= _CHUNK:
                # Few bins: signed under this run's lock, stored with the snapshot,
                # and their rows committed with the result.
                bin_files, bin_reports = self._sign_bins_in(s, trusted, indexes, now, renew_before)
            else:
                self.sign_reserved_bins(indexes, now, renew_before)
            if resign_targets:
                self._sign_online_targets(rows["targets"], targets.signed, versions["targets"],
                                          trusted.signers, now)
            self._sign_snapshot_and_timestamp(
                s, trusted, rows, versions["snapshot"], versions["timestamp"], now,
                bin_files=bin_files, bin_reports=bin_reports,
            )
            ids = [change.id for change in changes]
            for chunk in _chunks(ids):
                s.execute(delete(PendingChange).where(PendingChange.id.in_(chunk)),
                          execution_options={"synchronize_session": False})
            s.add(PublishLog(kind="refresh" if refresh_window else "publish", started_at=now,
                             duration=time.monotonic() - started, changes=len(changes),
                             bins_signed=len(bins), snapshot_version=versions["snapshot"],
                             timestamp_version=versions["timestamp"]))
            s.commit()
        result = PublishResult(
            changes=len(changes), bins=sorted(bins),
            snapshot_version=versions["snapshot"], timestamp_version=versions["timestamp"],
            seconds=time.monotonic() - started,
        )
        fields = {"kind": "refresh" if refresh_window else "publish", "changes": result.changes,
                  "bins": len(result.bins), "snapshot": result.snapshot_version,
                  "timestamp": result.timestamp_version, "seconds": round(result.seconds, 3)}
        log.info("tuf %s", " ".join(f"{k}={v}" for k, v in fields.items()), extra={"tuf": fields})
        return result

    def _reserve(self, s: Session, rows: dict[str, RoleVersion], names: Iterable[str]) -> dict[str, int]:
        """Hand out the next version of each role and record it as reserved.

        A number once reserved is never handed out again, even when storage
        does not hold it: a fan-out worker of a crashed run may still write it.
        """
        versions = {}
        for name in names:
            row = rows[name]
            row.reserved_version += 1
            versions[name] = row.reserved_version
        return versions

    def _stored_timestamp_version(self) -> int | None:
        data = self._stored_bytes("timestamp.json")
        return None if data is None else int(json.loads(data)["signed"]["version"])

    def _check_storage_not_ahead(self, timestamp: RoleVersion) -> None:
        stored = self._stored_timestamp_version()
        if stored is not None and stored > timestamp.reserved_version:
            raise StorageAheadError(
                f"storage holds timestamp version {stored} but the database knows only "
                f"{timestamp.reserved_version}: the database looks restored from an older "
                "backup. Publishing now would reuse version numbers; run "
                "'tuf recover' to resume from the published versions."
            )

    def _bins_touched(self, s: Session, changes: list[PendingChange]) -> dict[str, int]:
        bits = self._bins().bits
        indexes: set[int] = set()
        for change in changes:
            kind = ChangeKind(change.kind)
            if kind in (ChangeKind.ADD, ChangeKind.REMOVE):
                indexes.add(targetlib.bin_index(change.path, bits))
            elif kind is ChangeKind.REMOVE_RELEASE:
                indexes.update(s.scalars(
                    select(Target.bin_index).distinct()
                    .where(Target.project == change.project, Target.release == change.release)
                ))
            else:
                if kind is ChangeKind.REMOVE_PROJECT:
                    indexes.update(s.scalars(
                        select(Target.bin_index).distinct().where(Target.project == change.project)
                    ))
                if self.renderer is not None:
                    for path in targetlib.page_paths(change.project).values():
                        indexes.add(targetlib.bin_index(path, bits))
        return {self._bin_name(i): i for i in indexes}

    def _apply_changes(self, s: Session, changes: list[PendingChange],
                       pages: dict[str, list[dict] | None]) -> None:
        """Bring the target table up to date, in change order; ``pages`` (rendered) last."""
        bits = self._bins().bits
        for kind, group in _runs(changes):
            if kind is ChangeKind.ADD:
                rows = {
                    c.path: {
                        "path": c.path, "bin_index": targetlib.bin_index(c.path, bits),
                        "length": c.length, "hashes": c.hashes, "kind": TargetKind.FILE.value,
                        "project": c.project, "release": c.release,
                    }
                    for c in group
                }
                self._upsert_targets(s, list(rows.values()))
            elif kind is ChangeKind.REMOVE:
                for chunk in _chunks([c.path for c in group]):
                    s.execute(delete(Target).where(Target.path.in_(chunk)))
            elif kind is ChangeKind.REMOVE_RELEASE:
                for c in group:
                    s.execute(delete(Target).where(
                        Target.project == c.project, Target.release == c.release,
                        Target.kind == TargetKind.FILE.value,
                    ))
            elif kind is ChangeKind.REMOVE_PROJECT:
                for c in group:
                    s.execute(delete(Target).where(Target.project == c.project))
        self._put_page_targets(s, pages)

    def _render_pages(self, projects: Iterable[str]) -> dict[str, list[dict] | None]:
        """Render and store the pages of ``projects``: their target rows, None for a project gone.

        Pages are rendered from the committed state of the index, now: whatever
        order the changes came in, this is what clients will see.
        """
        if self.renderer is None:
            return {}
        pages: dict[str, list[dict] | None] = {}
        files: dict[str, bytes] = {}
        for project in dict.fromkeys(projects):
            rendered = self.renderer(self.request, project)
            if rendered is None:
                pages[project] = None
                continue
            pages[project] = []
            for form, path in targetlib.page_paths(project).items():
                data = getattr(rendered, form)
                hashes = targetlib.hash_data(data, self.settings.hash_algorithms)
                for digest in hashes.values():
                    files[targetlib.prefixed_name(path, digest)] = data
                pages[project].append({
                    "path": path, "bin_index": self._bins().index(path),
                    "length": len(data), "hashes": hashes, "kind": TargetKind.PAGE.value,
                    "project": project, "release": None,
                })
        # The pages are stored before any metadata that lists them.
        self.simple_storage.put_many(files)
        return pages

    def _put_page_targets(self, s: Session, pages: dict[str, list[dict] | None]) -> None:
        gone = [path for project, rows in pages.items() if rows is None
                for path in targetlib.page_paths(project).values()]
        for chunk in _chunks(gone):
            s.execute(delete(Target).where(Target.path.in_(chunk)))
        self._upsert_targets(s, [row for rows in pages.values() if rows for row in rows])

    def _upsert_targets(self, s: Session, rows: list[dict]) -> None:
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(Target.__table__)
        statement = statement.on_conflict_do_update(
            index_elements=[Target.path],
            set_={col: statement.excluded[col]
                  for col in ("bin_index", "length", "hashes", "kind", "project", "release")},
        )
        for chunk in _chunks(rows, 5000):
            s.execute(statement, chunk)  # executemany: one compiled statement for every row

    def _sign_bins(
        self, s: Session, trusted: _Trusted, rows: dict[str, RoleVersion],
        bins: dict[str, int], versions: dict[str, int], now: datetime.datetime,
        *, keep_expiry: bool = False,
    ) -> None:
        """Sign and store every bin in ``bins`` with its reserved version."""
        files: dict[str, bytes] = {}
        self._progress_begin(len(bins))
        for index, entries in self._bin_contents(s, sorted(bins.values())):
            name = self._bin_name(index)
            row, version = rows[name], versions[name]
            expires = row.expires if keep_expiry else now + self.settings.expiry["bins"]
            data = self._bin_bytes(trusted, version, expires, entries)
            files[f"{version}.{name}.json"] = data
            self._update_row(row, version, expires, data, now)
            if len(files) >= _CHUNK:
                self.storage.put_many(files)
                self._progress_advance(len(files))
                files = {}
        self.storage.put_many(files)
        self._progress_advance(len(files))

    def _bin_contents(self, s: Session, indexes: list[int]) -> Iterator[tuple[int, dict[str, dict]]]:
        """Each bin of ``indexes`` with its targets as TUF dicts, a chunk of bins at a time."""
        table = Target.__table__
        for chunk in _chunks(indexes):
            contents: dict[int, dict[str, dict]] = {index: {} for index in chunk}
            rows = s.execute(
                select(table.c.bin_index, table.c.path, table.c.length, table.c.hashes)
                .where(table.c.bin_index.in_(chunk))
            )
            for index, path, length, hashes in rows:
                contents[index][path] = {"hashes": hashes, "length": length}
            yield from contents.items()

    @staticmethod
    def _bin_bytes(trusted: _Trusted, version: int, expires: datetime.datetime,
                   entries: dict[str, dict]) -> bytes:
        """A signed bin, serialized: the dict form of ``Targets`` without one object per target."""
        signed = Targets(version=version, expires=expires).to_dict()
        signed["targets"] = entries  # validated paths, lengths and hex hashes, from the table
        return canonical.signed_document(signed, trusted.signers, checked=True)

    def _sign_snapshot_and_timestamp(
        self, s: Session, trusted: _Trusted, rows: dict[str, RoleVersion],
        snapshot_version: int, timestamp_version: int, now: datetime.datetime,
        *, bin_files: Mapping[str, bytes] = {}, bin_reports: Sequence[dict] = (),
    ) -> None:
        """Sign and store the snapshot, then the timestamp; update their rows (the caller commits).

        ``rows`` holds the top-level roles as the database had them, plus, when
        the caller signed bins as ORM objects not yet flushed (bootstrap,
        install), those bins. ``bin_files`` (signed bins not stored yet) are
        stored together with the snapshot: one batch of fsyncs, all durable
        before the timestamp that names them is written; ``bin_reports``, their
        row updates, are made once they are stored.
        """
        meta = self._snapshot_meta(s, rows)
        meta.update((f"{r['b_name']}.json", r["b_version"]) for r in bin_reports)
        snapshot = Snapshot(version=snapshot_version, expires=now + self.settings.expiry["snapshot"])
        signed = snapshot.to_dict()
        signed["meta"] = {}  # the entries are spliced in, already encoded
        payload = meta.encode(signed)
        snapshot_bytes = canonical.envelope(payload, [signer.sign(payload) for signer in trusted.signers])
        self.storage.put_many({**bin_files, f"{snapshot_version}.snapshot.json": snapshot_bytes})
        if bin_reports:
            s.execute(_bins_done(now), list(bin_reports))
        self._update_row(rows["snapshot"], snapshot_version, snapshot.expires, snapshot_bytes, now)
        snapshot_cache.put(self._repository, snapshot_version, rows["snapshot"].sha256, meta)

        timestamp = Timestamp(
            version=timestamp_version, expires=now + self.settings.expiry["timestamp"],
            snapshot_meta=MetaFile.from_data(snapshot_version, snapshot_bytes, ["sha256"]),
        )
        timestamp_bytes = canonical.signed_document(timestamp.to_dict(), trusted.signers, checked=True)
        # A publisher whose lock connection died may have been overtaken (its
        # reservation no longer stands): an older timestamp.json over a newer one
        # is a rollback every client refuses.
        reserved = s.scalar(select(RoleVersion.reserved_version).where(RoleVersion.name == "timestamp"))
        if reserved != timestamp_version:
            raise RepositoryError(
                f"another publisher reserved timestamp version {reserved} while this one was writing "
                f"{timestamp_version} (its publish lock was lost): nothing more is written"
            )
        self.storage.put("timestamp.json", timestamp_bytes)
        self._update_row(rows["timestamp"], timestamp_version, timestamp.expires, timestamp_bytes, now)

    def _snapshot_meta(self, s: Session, rows: dict[str, RoleVersion]) -> SnapshotMeta:
        """The next snapshot's version map: the one this process built last, brought up to date
        with the roles stamped since, or else built from every row (the rule: ``snapshot.py``)."""
        current = rows["snapshot"]
        unflushed = {row.name: row.version for row in rows.values() if row.bin_index is not None}
        meta = None if unflushed else snapshot_cache.take(self._repository, current.version, current.sha256)
        table = RoleVersion.__table__
        if meta is None:
            versions = dict(s.execute(
                select(table.c.name, table.c.version).where(table.c.bin_index.is_not(None))
            ).all())
            for name, version in unflushed.items():  # signed here, not yet flushed
                versions[name] = max(version, versions.get(name, 0))
            meta = SnapshotMeta({f"{name}.json": version for name, version in versions.items()})
        else:
            meta.update((f"{name}.json", version) for name, version in s.execute(
                select(table.c.name, table.c.version).where(table.c.changed_for_snapshot > current.version)
            ))
        meta.update([("targets.json", rows["targets"].version)])
        return meta

    @staticmethod
    def _update_row(row: RoleVersion, version: int, expires: datetime.datetime,
                    data: bytes, now: datetime.datetime) -> None:
        row.version = row.reserved_version = version
        row.expires = expires
        row.length, row.sha256 = len(data), hashlib.sha256(data).hexdigest()
        row.updated_at = now

    # -- bulk signing: fan-out across workers, backfill -------------------------------

    def resign_bins(self, indexes: Iterable[int] | None = None) -> PublishResult:
        """Re-sign bins (every bin by default), then one snapshot and one timestamp.

        With a ``dispatch`` the workers sign them, ``fan_out_batch`` bins per
        task, together with this process, which holds the publish lock so that
        no target changes under them. Each bin keeps its expiry unless that
        falls within the refresh window.
        """
        started = time.monotonic()
        with publish_lock(self.engine, self.settings.lock_timeout), self._sessions() as s:
            trusted = self._trusted(s)
            rows = {row.name: row for row in s.scalars(select(RoleVersion).where(RoleVersion.bin_index.is_(None)))}
            self._check_storage_not_ahead(rows["timestamp"])
            wanted = sorted(set(
                range(self._bins().count) if indexes is None else indexes
            ))
            versions = self._reserve(s, rows, ["snapshot", "timestamp"])
            self._reserve_bins(s, wanted, versions["snapshot"])
            s.commit()  # the reservation is durable before any byte is written
            now = utcnow()
            self._progress_begin(len(wanted))
            self._sign_open_bins(wanted, now, now + self.settings.refresh_window)
            self._sign_snapshot_and_timestamp(
                s, trusted, rows, versions["snapshot"], versions["timestamp"], now
            )
            s.commit()
        result = PublishResult(
            bins=[self._bin_name(i) for i in wanted], snapshot_version=versions["snapshot"],
            timestamp_version=versions["timestamp"], seconds=time.monotonic() - started,
        )
        log.info("tuf resign: %d bins, snapshot %d, timestamp %d, %.3fs", len(wanted),
                 result.snapshot_version, result.timestamp_version, result.seconds)
        return result

    @staticmethod
    def _reserve_bins(s: Session, indexes: list[int], snapshot_version: int) -> None:
        """Reserve the next version of each bin (never one handed out before), in a few statements.

        Each row is stamped with ``snapshot_version``, the snapshot reserved in
        the same transaction: the next snapshot reads only the rows stamped
        after the one it extends (``snapshot.py``).

        A bin without a row would be signed into no role while its changes are
        dropped: refused (the caller rolls back).
        """
        roles = RoleVersion.__table__
        reserved = 0
        for chunk in _chunks(indexes):
            reserved += s.execute(update(roles).where(roles.c.bin_index.in_(chunk)).values(
                reserved_version=roles.c.reserved_version + 1, changed_for_snapshot=snapshot_version,
            )).rowcount
        if reserved != len(indexes):
            raise BinLayoutError(
                f"{len(indexes) - reserved} of {len(indexes)} bins to sign have no role in the database "
                "(a bin index outside the installed layout): nothing was published"
            )

    def _sign_open_bins(self, indexes: list[int], now: datetime.datetime,
                        renew_before: datetime.datetime) -> None:
        """Sign the reserved bins of ``indexes``, fanned out to the workers when there is a dispatch.

        This process signs too, from the last batch backwards while the workers
        take them from the first: a busy queue or a missing worker delays
        nothing, and a batch signed twice is signed under the same version.
        """
        size = self.settings.fan_out_batch
        batches = [indexes[i:i + size] for i in range(0, len(indexes), size)]
        if self.dispatch is not None:
            try:
                self.dispatch(batches, now, renew_before)
            except Exception:  # a broker outage: this process signs them all
                log.warning("tuf: could not send the bin signing tasks; signing here", exc_info=True)
        for batch in reversed(batches):
            self.sign_reserved_bins(batch, now, renew_before)

    def sign_reserved_bins(self, indexes: list[int], now: datetime.datetime,
                           renew_before: datetime.datetime) -> int:
        """Sign and store the reserved version of each bin of ``indexes`` not yet published.

        A bin keeps its expiry, unless that comes before ``renew_before``: then
        it expires one bin expiry period after ``now``.

        The worker side of the fan-out (and the in-process path for many bins).
        Only bins whose reservation still stands are written, checked again right
        before each write, and their rows updated only if it still stands then: a
        worker that outlives its coordinator writes nothing a snapshot lists.
        Returns how many bins it signed.
        """
        done = _bins_done(now)
        signed = 0
        # One batch's bytes are written (and fsynced, which releases the GIL) on a thread while the
        # next batch is signed; its rows are updated only once they are durable.
        with self._sessions() as s, ThreadPoolExecutor(max_workers=1) as writer:
            trusted = self._trusted(s)
            reserved = self._open_reservations(s, indexes)
            batch: list[tuple[int, dict, bytes]] = []
            writing: tuple[Future[None], list[dict]] | None = None

            def record_written() -> None:
                nonlocal signed, writing
                if writing is not None:
                    stored, reports = writing
                    writing = None
                    stored.result()  # the bytes are durable before the rows say so
                    s.execute(done, reports)
                    s.commit()
                    signed += len(reports)
                    self._progress_advance(len(reports))

            def flush() -> None:
                nonlocal batch, writing
                still = self._open_reservations(s, [index for index, _, _ in batch])
                s.commit()
                batch = [item for item in batch if still.get(item[0]) == reserved[item[0]]]
                record_written()
                if batch:
                    files = {f"{r['b_version']}.{r['b_name']}.json": data for _, r, data in batch}
                    writing = (writer.submit(self.storage.put_many, files), [report for _, report, _ in batch])
                batch = []

            for item in self._signed_bins(s, trusted, reserved, now, renew_before):
                batch.append(item)
                if len(batch) >= _CHUNK:
                    flush()
            if batch:
                flush()
            record_written()
        return signed

    def _sign_bins_in(self, s: Session, trusted: _Trusted, indexes: list[int], now: datetime.datetime,
                      renew_before: datetime.datetime) -> tuple[dict[str, bytes], list[dict]]:
        """The coordinator's path for a few bins: sign them; their files and row updates.

        The caller stores the files with the snapshot, before the timestamp,
        then updates the rows (:func:`_bins_done`) and commits them with the
        result: no row is locked while storage writes. No re-check before
        writing: this runs under the publish lock that reserved them, and the
        timestamp's reservation is checked before anything a client reads is written.
        """
        reserved = self._open_reservations(s, indexes)
        signed = []
        for bin_signed in self._signed_bins(s, trusted, reserved, now, renew_before):
            signed.append(bin_signed)
            self._progress_advance(1)
        files = {f"{r['b_version']}.{r['b_name']}.json": data for _, r, data in signed}
        return files, [report for _, report, _ in signed]

    def _signed_bins(self, s: Session, trusted: _Trusted, reserved: dict[int, tuple],
                     now: datetime.datetime, renew_before: datetime.datetime,
                     ) -> Iterator[tuple[int, dict, bytes]]:
        """Each reserved bin signed: its index, the parameters of :func:`_bins_done`, its bytes."""
        for index, entries in self._bin_contents(s, sorted(reserved)):
            name, version, expires = reserved[index]
            if expires <= renew_before:
                expires = now + self.settings.expiry["bins"]
            data = self._bin_bytes(trusted, version, expires, entries)
            yield index, {"b_name": name, "b_version": version, "b_expires": expires,
                          "b_length": len(data), "b_sha256": hashlib.sha256(data).hexdigest()}, data

    @staticmethod
    def _open_reservations(s: Session, indexes: Iterable[int]) -> dict[int, tuple]:
        """Bin index -> (name, reserved version, current expiry) of the bins reserved and not yet published."""
        roles = RoleVersion.__table__
        reserved = {}
        for chunk in _chunks(sorted(indexes)):
            reserved.update((index, (name, version, expires)) for name, index, version, expires in s.execute(
                select(roles.c.name, roles.c.bin_index, roles.c.reserved_version, roles.c.expires)
                .where(roles.c.bin_index.in_(chunk), roles.c.reserved_version > roles.c.version)
            ))
        return reserved

    def backfill(self, *, batch_files: int = 10_000, batch_bins: int = 4096,
                 progress: Callable[[str, int, int], None] | None = None) -> BackfillResult:
        """Sign every file and simple page the host already has.

        Three resumable stages, each run again from where it stopped:
        ``files`` adds the host's files that have no target yet, ``pages``
        renders the projects that have no page targets yet, each batch
        committed with a re-sign mark on the bins it touched; ``bins``
        re-signs the marked bins ``batch_bins`` at a time, each batch a
        complete publish (fanned out when there is a dispatch), so uploads
        keep publishing in between. ``progress(stage, done, total)`` is
        called after every batch.
        """
        if self.models is None:
            raise RepositoryError("backfill needs the host's models (tuf.models.*)")
        started = time.monotonic()
        report = progress or (lambda stage, done, total: None)
        result = BackfillResult()
        with self._sessions() as s:
            self._trusted(s)
            files_total = s.scalar(select(func.count()).select_from(self._missing_files().subquery()))
            pages_total = (s.scalar(select(func.count()).select_from(self._missing_pages().subquery()))
                           if self.renderer is not None else 0)
        after = ""
        while True:
            with publish_lock(self.engine, self.settings.lock_timeout), self._sessions() as s:
                page = s.execute(self._missing_files(after).limit(batch_files)).all()
                if not page:
                    break
                rows = []
                bits, algorithms = self._bins().bits, self.settings.hash_algorithms
                for file in page:
                    try:
                        rows.append(self._file_target(file, bits, algorithms))
                    except targetlib.InvalidTargetError as exc:
                        result.skipped.append(str(exc))
                self._upsert_targets(s, rows)
                self._mark_bins(s, {row["bin_index"] for row in rows})
                s.commit()
            after = page[-1].path
            result.files += len(rows)
            report("files", result.files + len(result.skipped), files_total)
        result.stages["files"] = time.monotonic() - started
        after = ""
        while self.renderer is not None:
            with publish_lock(self.engine, self.settings.lock_timeout), self._sessions() as s:
                names = s.scalars(self._missing_pages(after).limit(_CHUNK)).all()
                if not names:
                    break
                self._put_page_targets(s, self._render_pages(names))
                if self.request is not None:
                    # The renderer loads each project into the request's session: let them go.
                    self.request.db.expunge_all()
                bits = self._bins().bits
                self._mark_bins(s, {targetlib.bin_index(path, bits)
                                    for name in names for path in targetlib.page_paths(name).values()})
                s.commit()
            after = names[-1]
            result.pages += len(names)
            report("pages", result.pages, pages_total)
        result.stages["pages"] = time.monotonic() - started - result.stages["files"]
        roles = RoleVersion.__table__
        with self._sessions() as s:
            marked = s.scalars(select(roles.c.bin_index).where(
                roles.c.bin_index.is_not(None), roles.c.reserved_version > roles.c.version,
            ).order_by(roles.c.bin_index)).all()
        for start in range(0, len(marked), batch_bins):
            batch = marked[start:start + batch_bins]
            self.resign_bins(batch)
            result.bins += len(batch)
            report("bins", result.bins, len(marked))
        result.seconds = time.monotonic() - started
        result.stages["bins"] = result.seconds - result.stages["files"] - result.stages["pages"]
        log.info("tuf backfill: %d files, %d pages, %d bins, %d skipped, %.1fs",
                 result.files, result.pages, result.bins, len(result.skipped), result.seconds)
        return result

    def _missing_files(self, after: str = ""):
        """The host's files without a target, in path order from ``after``."""
        Project, Release, File = self.models
        return (
            select(File.path, File.size, File.sha256_digest, File.blake2_256_digest,
                   Project.normalized_name, Release.version)
            .join(File.release).join(Release.project)
            .outerjoin(Target, Target.path == File.path)
            .where(Target.path.is_(None), File.path > after)
            .order_by(File.path)
        )

    def _missing_pages(self, after: str = ""):
        """The host's projects without page targets, in name order from ``after``."""
        Project = self.models[0]
        name = Project.normalized_name
        return (
            select(name).outerjoin(Target, Target.path == name + "/" + name + ".html")
            .where(Target.path.is_(None), name > after).order_by(name)
        )

    @staticmethod
    def _file_target(file: Any, bits: int, algorithms: tuple[str, ...]) -> dict:
        path = targetlib.validate_path(file.path)
        return {
            "path": path, "bin_index": targetlib.bin_index(path, bits),
            "length": targetlib.validate_length(path, file.size),
            "hashes": targetlib.validate_hashes(path, targetlib.file_hashes(file), algorithms),
            "kind": TargetKind.FILE.value, "project": file.normalized_name, "release": file.version,
        }

    @staticmethod
    def _mark_bins(s: Session, indexes: set[int]) -> None:
        """Mark bins for re-signing, as an interrupted publish leaves them (reserved > version)."""
        roles = RoleVersion.__table__
        for chunk in _chunks(sorted(indexes)):
            s.execute(update(roles).where(
                roles.c.bin_index.in_(chunk), roles.c.reserved_version == roles.c.version,
            ).values(reserved_version=roles.c.version + 1))

    # -- trust -----------------------------------------------------------------------

    def _trusted(self, s: Session) -> _Trusted:
        root, targets = self._offline_roles(s)
        return _Trusted(root, targets, self._online_signers(root.signed, targets.signed))

    def _offline_roles(self, s: Session) -> tuple[Metadata[Root], Metadata[Targets]]:
        """The installed root and targets."""
        roles = {
            row.name: row
            for row in s.scalars(select(RoleVersion).where(RoleVersion.name.in_(("root", "targets"))))
        }
        if len(roles) < 2:
            raise NotBootstrappedError("the TUF repository is not bootstrapped yet (run 'tuf bootstrap')")
        root = Metadata[Root].from_bytes(roles["root"].signed_bytes)
        targets = Metadata[Targets].from_bytes(roles["targets"].signed_bytes)
        layout = _delegated_layout(targets.signed)
        problem = self._layout_problem(layout)
        if problem:
            raise BinLayoutError(problem)
        self._layout = layout
        return root, targets

    def _bins(self) -> targetlib.BinLayout:
        """The bin layout of the installed targets (read once per manager), never the settings'."""
        if self._layout is None:
            with self._sessions() as s:
                self._offline_roles(s)
        return self._layout

    def _layout_problem(self, layout: targetlib.BinLayout) -> str | None:
        """Why the bin settings disagree with ``layout``, the installed one; None when they agree."""
        settings = self.settings
        if layout.bits != settings.bin_bits:
            return (f"tuf.bin_count (TUF_BIN_COUNT) is {settings.bin_count} but the installed targets "
                    f"delegates to {layout.count} bins: set it to {layout.count} (bins are fixed at bootstrap)")
        if layout.prefix != settings.bin_name_prefix:
            return (f"tuf.bin_name_prefix (TUF_BIN_NAME_PREFIX) is {settings.bin_name_prefix!r} but the "
                    f"installed targets names its bins {layout.prefix}-*: set it to {layout.prefix!r}")
        return None

    def _online_signers(self, root: Root, targets: Targets) -> list:
        self._refuse_development_keys(root, targets)
        return signing.load_online_signers(self._signer_uris(), signing.online_keys(root, targets))

    def _development_keys(self) -> devkeys.DevelopmentKeys | None:
        """The keys production refuses; None outside production."""
        if self.settings.env != "production":
            return None
        return devkeys.known(self.settings.dev_keys_path)

    def _development_key_problems(self, root: Root, targets: Targets | None) -> list[str]:
        """Each role of ``root`` and ``targets`` trusting a development key, in production."""
        dev = self._development_keys()
        return [] if dev is None else devkeys.trusted_problems(root, targets, dev)

    def _refuse_development_keys(self, root: Root, targets: Targets | None) -> None:
        problems = self._development_key_problems(root, targets)
        if problems:
            raise DevelopmentKeyError(
                f"{problems[0]}: development keys are refused in production (tuf.env = production)"
            )

    def _refuse_development_signers(self, signers: list) -> None:
        dev = self._development_keys()
        for signer in signers if dev is not None else ():
            key = signer.public_key
            if dev.is_development(key.keyid, key):
                raise DevelopmentKeyError(
                    f"online signer for key {key.keyid[:12]} is a development key: development "
                    "keys are refused in production (tuf.env = production; a lost old key: "
                    "--without-old-key)"
                )

    def _signer_uris(self, uris: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """``uris``, else the configured online signers (development keys outside production)."""
        uris = uris or self.settings.online_signers
        dev_key = Path(self.settings.dev_keys_path or ".") / "online.pem"
        if not uris and self.settings.env != "production" and self.settings.dev_keys_path:
            uris = (f"file2:{dev_key}",)
        dev = self._development_keys()
        for entry in uris if dev is not None else ():
            scheme, _, location = signing.split_signer_entry(entry)[1].partition(":")
            if scheme != "file2":
                continue
            path = Path(location.partition("?")[0])
            # A symlink is judged by the file it points to, a copy by the key it holds.
            found = (path.resolve().parent / DEV_KEYS_MARKER).exists()
            if not found and path.is_file():
                try:
                    key = signing.load_key_file(path).public_key
                except Exception:  # unreadable: load_online_signers names the problem
                    key = None
                found = key is not None and dev.is_development(key.keyid, key)
            if found:
                raise DevelopmentKeyError(
                    f"online signer {signing.redact_uri('file2:' + location)} is a development key: "
                    "development keys are refused in production (tuf.env = production)"
                )
        return uris

    def _check_offline_roles(self, root_bytes: bytes, targets_bytes: bytes | None):
        try:
            root = Metadata[Root].from_bytes(root_bytes)
            targets = None if targets_bytes is None else Metadata[Targets].from_bytes(targets_bytes)
        except Exception as exc:
            raise BootstrapError(f"root or targets is not valid TUF metadata: {exc}") from None
        if not isinstance(root.signed, Root) or (targets is not None and not isinstance(targets.signed, Targets)):
            raise BootstrapError("expected a root and a targets metadata file")
        targets = self._targets_for_model(root, targets)
        if root.signed.version != 1 or targets.signed.version != 1:
            raise BootstrapError("bootstrap takes root version 1 and targets version 1")
        if not root.signed.consistent_snapshot:
            raise BootstrapError("root must set consistent_snapshot (PEP 458)")
        now = utcnow()
        for name, md in (("root", root), ("targets", targets)):
            if md.signed.is_expired(now):
                raise BootstrapError(f"{name} expired on {md.signed.expires.isoformat()}")
        result = root.signed.get_verification_result("root", root.signed_bytes, root.signatures)
        if not result.verified:
            raise BootstrapError(
                f"root is signed by {len(result.signed)} of its keys, the threshold is "
                f"{result.threshold}"
            )
        result = root.signed.get_verification_result("targets", targets.signed_bytes, targets.signatures)
        if not result.verified and targets_bytes is not None:
            raise BootstrapError(
                f"targets is signed by {len(result.signed)} of the keys root trusts for it, "
                f"the threshold is {result.threshold}"
            )
        delegations = targets.signed.delegations
        succinct = delegations.succinct_roles if delegations else None
        if succinct is None:
            raise BootstrapError("targets must delegate to the bins with succinct_roles (TAP 15)")
        if succinct.bit_length != self.settings.bin_bits:
            raise BootstrapError(
                f"targets delegates to {2**succinct.bit_length} bins but the settings ask for "
                f"{self.settings.bin_count} (tuf.bin_count)"
            )
        if succinct.name_prefix != self.settings.bin_name_prefix:
            raise BootstrapError(
                f"bin name prefix {succinct.name_prefix!r} differs from tuf.bin_name_prefix "
                f"{self.settings.bin_name_prefix!r}"
            )
        if targets.signed.targets:
            raise BootstrapError("targets must not list targets itself; they belong in the bins")
        try:
            signing.online_keys(root.signed, targets.signed)
        except signing.SigningError as exc:
            raise BootstrapError(str(exc)) from None
        return root, targets

    def _targets_for_model(self, root: Metadata[Root], targets: Metadata[Targets] | None) -> Metadata[Targets]:
        """``targets`` as the payload gives it, or, in the targets-online model, the unsigned targets
        v1 the index signs; refuses a payload of the model ``tuf.targets_online`` does not ask for."""
        problem = trust_model.model_problem(root.signed, self.settings.targets_online)
        if problem:
            raise BootstrapError(problem)
        online_model = trust_model.targets_online(root.signed)
        if targets is not None and online_model:
            raise BootstrapError("root v1 gives targets to the online key: the payload holds root only "
                                 "(the index signs targets)")
        if targets is None and not online_model:
            raise BootstrapError("bootstrap needs root v1 and targets v1 together")
        if targets is None:
            targets = Metadata(ceremony.build_targets(
                ceremony.online_spec(root.signed), self.settings.bin_bits, self.settings.bin_name_prefix,
                utcnow() + self.settings.expiry["targets"]))
        return targets

    def _put_offline_role(self, s: Session, name: str, data: bytes,
                          signed: Root | Targets) -> RoleVersion:
        row = RoleVersion(
            name=name, version=signed.version, reserved_version=signed.version,
            expires=signed.expires, length=len(data), sha256=hashlib.sha256(data).hexdigest(),
            signed_bytes=data,
        )
        s.add(row)
        self._keep_offline_version(s, name, signed.version, data)
        return row

    @staticmethod
    def _keep_offline_version(s: Session, name: str, version: int, data: bytes) -> None:
        """Keep these bytes of root or targets for good (``tuf recover`` re-publishes them)."""
        s.merge(OfflineRoleVersion(name=name, version=version, signed_bytes=data))

    def _bin_name(self, index: int) -> str:
        return self._bins().name(index)

    # -- garbage collection -------------------------------------------------------------

    def gc(self, *, dry_run: bool = False, now: datetime.datetime | None = None) -> GCResult:
        """Delete metadata versions that expired more than ``tuf.retention`` ago
        (and publish log rows beyond the newest ``PUBLISH_LOG_KEPT``).

        Never a root (every ``N.root.json`` stays: clients walk them one by one),
        never ``timestamp.json``, never a version the current timestamp reaches.
        A version still within its expiry may be what a client is fetching right
        now, so only long-expired ones go.
        """
        started = time.monotonic()
        reachable = self._published_versions()
        cutoff = (now or utcnow()) - self.settings.retention
        result = GCResult()
        for name in self.storage.list():
            version, _, rest = name.partition(".")
            role = rest.removesuffix(".json")
            if not version.isdigit() or role == rest or role == "root" or "/" in name:
                continue
            if reachable.get(role) == int(version):
                result.kept += 1
                continue
            try:
                expires = datetime.datetime.fromisoformat(json.loads(self.storage.get(name))["signed"]["expires"])
            except (ValueError, KeyError, TypeError, FileNotFoundError):
                continue  # not ours to judge; leave it
            if expires >= cutoff:
                result.kept += 1
                continue
            if not dry_run:
                self.storage.delete(name)
            result.deleted.append(name)
        if not dry_run:
            with self._sessions() as s:
                oldest_kept = s.scalar(select(PublishLog.id).order_by(PublishLog.id.desc())
                                       .offset(PUBLISH_LOG_KEPT - 1).limit(1))
                if oldest_kept is not None:
                    s.execute(delete(PublishLog).where(PublishLog.id < oldest_kept))
                    s.commit()
        result.seconds = time.monotonic() - started
        log.info("tuf gc deleted=%d kept=%d dry_run=%s seconds=%.3f",
                 len(result.deleted), result.kept, dry_run, result.seconds)
        return result

    # -- status ------------------------------------------------------------------------

    def status(self, *, deep: bool = False) -> dict[str, Any]:
        """Role versions and expiries, pending changes, last publish, and problems.

        Storage is checked for what clients need first (root chain, timestamp,
        its snapshot and targets); with ``deep``, for every bin as well.
        """
        with self._sessions() as s:
            rows = list(s.scalars(select(RoleVersion)))
            pending, oldest = s.execute(
                select(func.count(PendingChange.id), func.min(PendingChange.created_at))
            ).one()
            target_count = s.scalar(select(func.count()).select_from(Target))
            now = utcnow()
            health = self._health(s, now)
        if not rows:
            return {"bootstrapped": False, "pending": pending, "problems": ["not bootstrapped"]}
        top = {r.name: r for r in rows if r.bin_index is None}
        bins = [r for r in rows if r.bin_index is not None]
        root = Metadata[Root].from_bytes(top["root"].signed_bytes).signed
        targets = Metadata[Targets].from_bytes(top["targets"].signed_bytes).signed
        roles = [
            {"role": name, "version": top[name].version, "expires": top[name].expires.isoformat(),
             "length": top[name].length, "threshold": root.roles[name].threshold,
             "keyids": sorted(root.roles[name].keyids),
             "expires_in_seconds": (top[name].expires - now).total_seconds()}
            for name in TOP_LEVEL if name in top
        ]
        earliest_bin = min(bins, key=lambda r: r.expires)
        problems = []
        for row in [*top.values(), earliest_bin]:
            if row.expires <= now:
                problems.append(f"{row.name} expired at {row.expires.isoformat()}")
        model = trust_model.status(root, self.settings.targets_online)
        if model["name"] != model["setting"]:
            problems.append(f"tuf.targets_online asks for the {model['setting']} model but root v{root.version} "
                            f"puts {model['name']} in force: install a root that switches (docs/ceremony.md)")
        for name in trust_model.offline_roles(root):
            if name in top and now < top[name].expires <= now + OFFLINE_EXPIRY_WARNING:
                problems.append(
                    f"{name} expires at {top[name].expires.isoformat()}: run the signing ceremony "
                    f"('tuf ceremony prepare --{name}-expiry ...')"
                )
        layout_problem = self._layout_problem(_delegated_layout(targets))
        if layout_problem:
            problems.append(f"{layout_problem}; publish and refresh refuse until then")
        signers = [signing.split_signer_entry(entry) for entry in self.settings.online_signers]
        development = self._development_key_problems(root, targets)
        problems.extend(f"{problem}: refused in production" for problem in development)
        try:
            self._online_signers(root, targets)
        except signing.SigningError as exc:
            if not (development and isinstance(exc, DevelopmentKeyError)):  # listed just above
                problems.append(f"online signer: {exc}")
        unfinished = [r.name for r in rows if r.reserved_version > r.version]
        if unfinished:
            problems.append(f"{len(unfinished)} role(s) waiting to be re-signed: an interrupted "
                            "publish, or a backfill under way (the next publish signs them)")
        storage = self._storage_check(deep=deep)
        problems.extend(storage.pop("problems"))
        return {
            "bootstrapped": True,
            "trust_model": model,
            "roles": roles,
            "bins": {
                "count": len(bins),
                "max_version": max(r.version for r in bins),
                "earliest_expiry": earliest_bin.expires.isoformat(),
                "earliest_expiring": earliest_bin.name,
                "earliest_expiry_seconds": (earliest_bin.expires - now).total_seconds(),
                "keyids": sorted(_delegated_keyids(targets)),
            },
            "targets": target_count,
            "pending": pending,
            "oldest_pending": oldest.isoformat() if oldest else None,
            "oldest_pending_seconds": health["oldest_pending_seconds"],
            "seconds_to_earliest_expiry": health["seconds_to_expiry"],
            "online_signers": [
                {"keyid": keyid or None, "uri": signing.redact_uri(uri)} for keyid, uri in signers
            ],
            "last_publish": top["timestamp"].updated_at.isoformat(),
            "last_publish_seconds": (now - top["timestamp"].updated_at).total_seconds(),
            "metadata_url": self.settings.metadata_url or None,
            "development_keys": bool(devkeys.trusted_problems(
                root, targets, devkeys.known(self.settings.dev_keys_path))),
            "now": now.isoformat(),
            "problems": problems,
            "storage": storage,
        }


def _delegated_keyids(targets: Targets) -> set[str]:
    """The key ids ``targets`` trusts for its bins."""
    succinct = targets.delegations.succinct_roles if targets.delegations else None
    return set(succinct.keyids) if succinct is not None else set()


def _delegated_layout(targets: Targets) -> targetlib.BinLayout:
    """The succinct hash bins ``targets`` delegates to (TAP 15)."""
    succinct = targets.delegations.succinct_roles if targets.delegations else None
    if succinct is None:
        raise RepositoryError("the installed targets delegates to no succinct hash bins (TAP 15)")
    return targetlib.BinLayout(succinct.bit_length, succinct.name_prefix)


def _bins_done(now: datetime.datetime) -> Any:
    """The update recording a signed bin (executemany), only while its reservation stands."""
    roles = RoleVersion.__table__
    return update(roles).where(
        roles.c.name == bindparam("b_name"), roles.c.reserved_version == bindparam("b_version"),
        roles.c.version < bindparam("b_version"),
    ).values(
        version=bindparam("b_version"), expires=bindparam("b_expires"), length=bindparam("b_length"),
        sha256=bindparam("b_sha256"), updated_at=now,
    )


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _runs(changes: list[PendingChange]) -> Iterator[tuple[ChangeKind, list[PendingChange]]]:
    """Consecutive changes of the same kind, so each run is one batch of statements."""
    run: list[PendingChange] = []
    for change in changes:
        if run and run[-1].kind != change.kind:
            yield ChangeKind(run[0].kind), run
            run = []
        run.append(change)
    if run:
        yield ChangeKind(run[0].kind), run
