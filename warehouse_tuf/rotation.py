"""New offline roles: root rotation, targets renewal, online key rotation (``tuf install``).

Root N+1 must meet the root thresholds of root N and of itself. When the new
roles trust a new online key, every bin is signed once, with the new key,
under new reserved versions; then targets M+1, a snapshot and a timestamp
signed with the old and the new key (valid under both roots), and, last, root
N+1 are published; then one more snapshot and timestamp with the new key
alone. Whichever root a client holds, what it fetches verifies: the new bins
are named only by a snapshot that also names targets M+1, which trusts the
new key for them.
"""

from __future__ import annotations

import datetime
import logging
import time

from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Root, Targets

from warehouse_tuf import bins, ceremony, db, roles, signing, trust, trust_model
from warehouse_tuf.clock import utcnow
from warehouse_tuf.exceptions import InstallError
from warehouse_tuf.locking import publish_lock
from warehouse_tuf.models import RoleVersion
from warehouse_tuf.publishing import (
    check_storage_not_ahead,
    reserve,
    sign_online_targets,
    stored_timestamp_version,
    write_snapshot_and_timestamp,
)
from warehouse_tuf.repository import Repository
from warehouse_tuf.results import InstallResult
from warehouse_tuf.trust import Trusted

log = logging.getLogger("warehouse_tuf")


def install(
    repo: Repository, root_bytes: bytes | None, targets_bytes: bytes | None,
    online_signers: tuple[str, ...] | None = None, *, without_old_key: bool = False,
) -> InstallResult:
    """Install offline-signed root N+1 and/or targets M+1, checked as a client checks them.

    ``online_signers`` (``KEYID=URI``, default the configured ones) must cover
    the old and the new online key when the key changes. ``without_old_key``
    is for an old online key that is lost or compromised: everything is signed
    with the new key alone; a client refreshing during the switch is refused
    once (it fails closed) and succeeds on its next try.
    """
    started = time.monotonic()
    settings = repo.settings
    with publish_lock(repo.engine, settings.lock_timeout), repo.sessions() as publisher:
        trusted_root, trusted_targets = trust.offline_roles(repo, publisher)
        rows = db.top_level_rows(publisher)
        payload = _check_install(repo, trusted_root, trusted_targets, root_bytes, targets_bytes, without_old_key)
        new_root = payload.root or trusted_root
        new_targets = payload.targets or trusted_targets
        problem = trust_model.model_problem(new_root.signed, settings.targets_online)
        if problem:
            raise InstallError(problem)
        online_model = trust_model.targets_online(new_root.signed)
        if payload.targets is None and online_model:
            # The targets-online model: the index signs the next targets, delegating to root N+1's online keys.
            new_targets = Metadata(ceremony.redelegated(trusted_targets.signed, new_root.signed))
        trust.refuse_development_keys(settings, new_root.signed, new_targets.signed)
        if _reinstall_after_restore(repo, publisher, rows, payload, root_bytes, targets_bytes):
            return InstallResult(rows[roles.ROOT].version, rows[roles.TARGETS].version, False,
                                 rows[roles.TIMESTAMP].version, time.monotonic() - started)
        check_storage_not_ahead(repo, rows[roles.TIMESTAMP])
        old_keys = signing.online_keys(trusted_root.signed, trusted_targets.signed)
        new_keys = signing.online_keys(new_root.signed, new_targets.signed)
        rotating = old_keys != new_keys
        uris = trust.signer_uris(settings, online_signers)
        handover = rotating and not without_old_key
        if handover:
            both, new_only = trust.rotation_signers(uris, old_keys, new_keys)
        else:
            both = new_only = signing.load_online_signers(uris, new_keys)
        trust.refuse_development_signers(settings, both)
        # The targets-online model: the online key signs targets M+1, or adds its signature to the
        # payload's when the model switches (clients on root N or N+1 accept it).
        index_signs_targets = rotating and payload.targets is None and online_model
        if payload.targets is not None and online_model != trust_model.targets_online(trusted_root.signed):
            targets_bytes = trust_model.sign(payload.targets, both)
        now = utcnow()
        indexes = list(range(trust.bin_layout(repo).count)) if rotating else []
        reserved = reserve(publisher, rows, indexes)
        targets_version = db.reserve(rows, [roles.TARGETS])[roles.TARGETS] if index_signs_targets else None
        publisher.commit()  # the reservation is durable before any byte is written
        # Under roles not installed yet: the workers, which sign under the installed ones, are not asked.
        signed = bins.sign(repo, Trusted(new_root, new_targets, new_only, installed=False), publisher,
                           indexes, now, now + settings.refresh_window)
        if targets_version is not None:
            new_targets = Metadata[Targets].from_bytes(sign_online_targets(
                repo, publisher, rows[roles.TARGETS], new_targets.signed, targets_version, both, now))
        if payload.targets is not None:
            _publish_offline_role(repo, publisher, rows[roles.TARGETS], payload.targets.signed,
                                  targets_bytes or b"", now)
        write_snapshot_and_timestamp(repo, publisher, Trusted(new_root, new_targets, both), rows,
                                     reserved, now, signed)
        # Root last: until then every published role verifies under root N as well.
        if payload.root is not None:
            _publish_offline_role(repo, publisher, rows[roles.ROOT], payload.root.signed, root_bytes or b"", now)
        publisher.commit()
        if handover:
            # The old key signed the snapshot and timestamp of the switch (and targets, when it is
            # online): sign them again without it.
            reserved = reserve(publisher, rows, [])
            targets_version = db.reserve(rows, [roles.TARGETS])[roles.TARGETS] if online_model else None
            publisher.commit()
            now = utcnow()
            if targets_version is not None:
                sign_online_targets(repo, publisher, rows[roles.TARGETS], new_targets.signed, targets_version,
                                    new_only, now)
            write_snapshot_and_timestamp(repo, publisher, Trusted(new_root, new_targets, new_only), rows,
                                         reserved, now)
            publisher.commit()
    result = InstallResult(
        root_version=rows[roles.ROOT].version, targets_version=rows[roles.TARGETS].version,
        online_key_rotated=rotating, timestamp_version=rows[roles.TIMESTAMP].version,
        seconds=time.monotonic() - started,
    )
    log.info(
        "tuf install root=%d targets=%d online_key_rotated=%s timestamp=%d seconds=%.3f",
        result.root_version, result.targets_version, rotating, result.timestamp_version, result.seconds,
    )
    return result


def _check_install(
    repo: Repository, trusted_root: Metadata[Root], trusted_targets: Metadata[Targets],
    root_bytes: bytes | None, targets_bytes: bytes | None, without_old_key: bool,
) -> ceremony.Payload:
    """The new roles as a payload verified against the installed ones; raise on any problem."""
    new = {name: trust.parse_offline_role(name, data, InstallError)
           for name, data in ((roles.ROOT, root_bytes), (roles.TARGETS, targets_bytes)) if data is not None}
    if not new:
        raise InstallError("nothing to install: give a root, a targets, or both")
    payload = ceremony.Payload(trusted_root=trusted_root, old_keys_unavailable=without_old_key,
                               root=new.get(roles.ROOT), targets=new.get(roles.TARGETS))
    problems = trust.offline_role_problems(repo.settings, payload)
    if payload.targets is not None:
        expected = trusted_targets.signed.version + 1
        if payload.targets.signed.version != expected:
            problems.append(f"targets version is {payload.targets.signed.version}, expected {expected}")
        delegations = payload.targets.signed.delegations
        succinct = delegations.succinct_roles if delegations else None
        current = trust.delegated_layout(trusted_targets.signed)
        if succinct is not None and (succinct.bit_length, succinct.name_prefix) != (current.bits, current.prefix):
            problems.append(
                f"targets delegates to {2**succinct.bit_length} bins named {succinct.name_prefix}-*, "
                f"the repository has {current.count} named {current.prefix}-*"
            )
    for name, md in new.items():
        stored = roles.filename(name, md.signed.version)
        published = repo.stored_bytes(stored)
        data = root_bytes if name == roles.ROOT else targets_bytes
        if published is not None and not trust_model.published_as(published, data or b""):
            problems.append(f"storage already publishes {stored} with other bytes")
    if problems:
        raise InstallError(problems[0])
    return payload


def _reinstall_after_restore(
    repo: Repository, publisher: Session, rows: dict[str, RoleVersion], payload: ceremony.Payload,
    root_bytes: bytes | None, targets_bytes: bytes | None,
) -> bool:
    """After a database restore, put back roles storage already publishes, byte for byte (a model
    switch's targets with the online key's signature, as install published it).

    Storage is then ahead of the database ('tuf recover' refuses until the
    newer root and targets are back); nothing is signed or written here.
    """
    stored = stored_timestamp_version(repo)
    if stored is None or stored <= rows[roles.TIMESTAMP].reserved_version:
        return False
    new = []
    for name, md, data in ((roles.ROOT, payload.root, root_bytes), (roles.TARGETS, payload.targets, targets_bytes)):
        published = repo.stored_bytes(roles.filename(name, md.signed.version)) if md is not None else None
        if md is not None and (published is None or not trust_model.published_as(published, data or b"")):
            return False
        new.append((name, md, published))
    now = utcnow()
    for name, md, data in new:
        if md is not None and data is not None:
            db.record_offline_role(publisher, rows[name], md.signed.version, md.signed.expires, data, now)
    publisher.commit()
    log.warning("tuf install: re-installed published root %d / targets %d after a restore",
                rows[roles.ROOT].version, rows[roles.TARGETS].version)
    return True


def _publish_offline_role(repo: Repository, publisher: Session, row: RoleVersion, signed: Root | Targets,
                          data: bytes, now: datetime.datetime) -> None:
    repo.storage.put(roles.filename(row.name, signed.version), data)
    db.record_offline_role(publisher, row, signed.version, signed.expires, data, now)



