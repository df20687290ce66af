"""Bootstrap: install offline-signed root v1 and targets v1, then sign every bin, a snapshot and a timestamp.

As every publish, it commits its reservations (every bin, snapshot 1,
timestamp 1) before it writes a byte of online metadata; a bootstrap that dies
while signing leaves a bootstrapped repository whose roles are all reserved and
unpublished, which the next publish signs (under new numbers for the snapshot
and the timestamp).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from securesystemslib.signer import Key, Signer
from sqlalchemy import func, select
from tuf.api.serialization.json import JSONSerializer

from warehouse_tuf import bins, ceremony, db, devkeys, roles, signing, trust, trust_model
from warehouse_tuf.clock import utcnow
from warehouse_tuf.exceptions import BootstrapError, RepositoryError, StorageAheadError
from warehouse_tuf.locking import publish_lock
from warehouse_tuf.models import RoleVersion
from warehouse_tuf.publishing import Reserved, write_snapshot_and_timestamp
from warehouse_tuf.repository import Repository
from warehouse_tuf.results import PublishResult
from warehouse_tuf.trust import Trusted

log = logging.getLogger("warehouse_tuf")


def bootstrap(repo: Repository, root_bytes: bytes, targets_bytes: bytes | None) -> PublishResult:
    """Install offline-signed root v1 and targets v1, every bin, snapshot and timestamp.

    ``targets_bytes`` None: the targets-online model (``trust_model.py``); the
    online key signs targets v1 here.
    """
    started = time.monotonic()
    root, targets = trust.bootstrap_roles(repo.settings, root_bytes, targets_bytes)
    signers = trust.online_signers(repo.settings, root.signed, targets.signed)
    if targets_bytes is None:
        targets_bytes = trust_model.sign(targets, signers)
    with publish_lock(repo.engine, repo.settings.lock_timeout), repo.sessions() as publisher:
        if publisher.scalar(select(func.count()).select_from(RoleVersion)):
            raise BootstrapError("the repository is already bootstrapped")
        if repo.storage.exists(roles.TIMESTAMP_FILE):
            raise StorageAheadError(
                "storage already holds a timestamp.json but the database has no repository: "
                "point tuf.storage.path at an empty location, or recover the database"
            )
        now = utcnow()
        rows = {}
        for name, md, data in ((roles.ROOT, root, root_bytes), (roles.TARGETS, targets, targets_bytes)):
            rows[name] = RoleVersion(name=name, version=1, reserved_version=1, expires=md.signed.expires,
                                     length=0, sha256="", signed_bytes=data)
            db.update_row(rows[name], 1, md.signed.expires, data, now)
            db.keep_offline_version(publisher, name, 1, data)
        reserved = Reserved(snapshot=1, timestamp=1)
        for name in roles.ONLINE_TOP:
            rows[name] = RoleVersion(name=name, version=0, reserved_version=1, expires=now, length=0, sha256="")
        layout = trust.delegated_layout(targets.signed)
        count, spread, expiry = layout.count, repo.settings.bin_expiry_spread, repo.settings.expiry["bins"]
        # Every bin reserved at version 1; first expiries spread so the bins do not all come due at once.
        publisher.add_all([*rows.values(), *(
            RoleVersion(name=layout.name(index), version=0, reserved_version=1, bin_index=index,
                        expires=(now + expiry * (1 - spread * index / count)).replace(microsecond=0),
                        length=0, sha256="", changed_for_snapshot=reserved.snapshot)
            for index in range(count)
        )])
        repo.storage.put_many({roles.filename(roles.ROOT, 1): root_bytes,
                               roles.filename(roles.TARGETS, 1): targets_bytes})
        publisher.commit()  # the reservation is durable before any online role is written
        repo.layout = layout
        trusted = Trusted(root, targets, signers)
        # Renewed before ``now``: none is, each bin keeps its spread expiry.
        signed = bins.sign(repo, trusted, publisher, range(count), now, renew_before=now)
        write_snapshot_and_timestamp(repo, publisher, trusted, rows, reserved, now, signed)
        publisher.commit()
    log.info("tuf bootstrap: %d bins, snapshot 1, timestamp 1", count)
    return PublishResult(bins=[layout.name(i) for i in range(count)], snapshot_version=1, timestamp_version=1,
                         seconds=time.monotonic() - started)


def bootstrap_development(repo: Repository) -> PublishResult:
    """Generate (or reuse) development keys and bootstrap with them.

    Refused when the environment is production: development keys are
    plain files on disk and must never protect a real index.
    """
    settings = repo.settings
    if settings.env == "production":
        raise RepositoryError("development keys are refused in production (tuf.env = production)")
    if not settings.dev_keys_path:
        raise RepositoryError("tuf.dev_keys_path is not set")
    keys_dir = Path(settings.dev_keys_path)
    keys = {}
    online_model = settings.targets_online
    for role in ("root", "online") if online_model else ("root", "targets", "online"):
        path = keys_dir / f"{role}.pem"
        if not path.exists():
            signing.generate_key_file(path)
        keys[role] = signing.load_key_file(path)
    # The marker lists their key ids: production refuses them by identity.
    devkeys.record(keys_dir, [key.public_key for key in keys.values()])
    root_bytes, targets_bytes = build_offline_roles(
        repo, root_keys=[keys["root"].public_key], root_threshold=1,
        targets_keys=None if online_model else [keys["targets"].public_key], targets_threshold=1,
        online_keys=[keys["online"].public_key], online_threshold=1,
        sign_with=[keys["root"]], sign_targets_with=[] if online_model else [keys["targets"]],
    )
    return bootstrap(repo, root_bytes, None if online_model else targets_bytes)


def build_offline_roles(
    repo: Repository, *, root_keys: Iterable[Key], root_threshold: int, targets_keys: Iterable[Key] | None,
    targets_threshold: int, online_keys: Iterable[Key], online_threshold: int,
    sign_with: Iterable[Signer] = (), sign_targets_with: Iterable[Signer] = (), version: int = 1,
) -> tuple[bytes, bytes]:
    """Root and targets payloads as this repository's settings want them.

    Signed with ``sign_with`` (root) and ``sign_targets_with`` (targets)
    when given; the ceremony signs them elsewhere otherwise. ``targets_keys``
    None: root trusts the online keys for targets (the targets-online model).
    """
    settings = repo.settings
    now = utcnow()
    root_md, targets_md = ceremony.build_roles(
        root=ceremony.RoleSpec(list(root_keys), root_threshold),
        targets=None if targets_keys is None else ceremony.RoleSpec(list(targets_keys), targets_threshold),
        online=ceremony.RoleSpec(list(online_keys), online_threshold),
        bin_bits=settings.bin_bits, bin_prefix=settings.bin_name_prefix,
        root_expires=now + settings.expiry["root"],
        targets_expires=now + settings.expiry["targets"], version=version,
    )
    for signer in sign_with:
        root_md.sign(signer, append=True)
    for signer in sign_targets_with:
        targets_md.sign(signer, append=True)
    serializer = JSONSerializer(compact=True)
    return root_md.to_bytes(serializer), targets_md.to_bytes(serializer)

