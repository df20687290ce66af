"""What the repository trusts: the installed offline roles, the online signers, the dev-key guard.

The offline roles (root, targets) are read from the database and checked
against the bin settings; the online signers are resolved (and probed) once
per run from ``tuf.online_signers``; production refuses development keys in
either, by identity (``devkeys.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Root, Targets

from warehouse_tuf import ceremony, devkeys, roles, signing, trust_model
from warehouse_tuf.clock import utcnow
from warehouse_tuf.exceptions import (
    BinLayoutError,
    BootstrapError,
    DevelopmentKeyError,
    InstallError,
    NotBootstrappedError,
    RepositoryError,
)
from warehouse_tuf.models import RoleVersion
from warehouse_tuf.repository import Repository
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.targets import BinLayout


@dataclass(frozen=True)
class Trusted:
    """The offline roles a run signs under, and the online signers it signs with."""

    root: Metadata[Root]
    targets: Metadata[Targets]
    signers: list[Signer]
    #: The roles the database has installed, signed with the configured signers: what a
    #: fan-out worker resolves for itself. A key rotation signs under roles not installed yet.
    installed: bool = True


# -- the installed offline roles and their bin layout ---------------------------------------


def delegated_layout(targets: Targets) -> BinLayout:
    """The succinct hash bins ``targets`` delegates to (TAP 15)."""
    succinct = targets.delegations.succinct_roles if targets.delegations else None
    if succinct is None:
        raise RepositoryError("the installed targets delegates to no succinct hash bins (TAP 15)")
    return BinLayout(succinct.bit_length, succinct.name_prefix)


def delegated_keyids(targets: Targets) -> set[str]:
    """The key ids ``targets`` trusts for its bins."""
    succinct = targets.delegations.succinct_roles if targets.delegations else None
    return set(succinct.keyids) if succinct is not None else set()


def layout_problem(settings: TUFSettings, layout: BinLayout) -> str | None:
    """Why the bin settings disagree with ``layout``, the installed one; None when they agree."""
    if layout.bits != settings.bin_bits:
        return (f"tuf.bin_count (TUF_BIN_COUNT) is {settings.bin_count} but the installed targets "
                f"delegates to {layout.count} bins: set it to {layout.count} (bins are fixed at bootstrap)")
    if layout.prefix != settings.bin_name_prefix:
        return (f"tuf.bin_name_prefix (TUF_BIN_NAME_PREFIX) is {settings.bin_name_prefix!r} but the "
                f"installed targets names its bins {layout.prefix}-*: set it to {layout.prefix!r}")
    return None


def offline_roles(repo: Repository, session: Session) -> tuple[Metadata[Root], Metadata[Targets]]:
    """The installed root and targets; their bin layout must be the settings' (kept in ``repo``)."""
    rows = {row.name: row for row in session.scalars(select(RoleVersion).where(RoleVersion.name.in_(roles.OFFLINE)))}
    if len(rows) < len(roles.OFFLINE):
        raise NotBootstrappedError("the TUF repository is not bootstrapped yet (run 'tuf bootstrap')")
    root = Metadata[Root].from_bytes(rows[roles.ROOT].signed_bytes or b"")
    targets = Metadata[Targets].from_bytes(rows[roles.TARGETS].signed_bytes or b"")
    layout = delegated_layout(targets.signed)
    problem = layout_problem(repo.settings, layout)
    if problem:
        raise BinLayoutError(problem)
    repo.layout = layout
    return root, targets


def bin_layout(repo: Repository) -> BinLayout:
    """The bin layout of the installed targets (read once per repository), never the settings'."""
    if repo.layout is None:
        with repo.sessions() as reader:
            offline_roles(repo, reader)
    assert repo.layout is not None  # offline_roles set it, or raised
    return repo.layout


def trusted(repo: Repository, session: Session) -> Trusted:
    """The installed roles and the configured online signers, resolved and probed once."""
    root, targets = offline_roles(repo, session)
    return Trusted(root, targets, online_signers(repo.settings, root.signed, targets.signed))


# -- online signers ---------------------------------------------------------------------------


def online_signers(settings: TUFSettings, root: Root, targets: Targets) -> list[Signer]:
    """The configured signers for the online keys ``root`` and ``targets`` trust, each probed."""
    refuse_development_keys(settings, root, targets)
    return signing.load_online_signers(signer_uris(settings), signing.online_keys(root, targets))


def rotation_signers(
    uris: tuple[str, ...], old: signing.OnlineKeys, new: signing.OnlineKeys,
) -> tuple[list[Signer], list[Signer]]:
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


def signer_uris(settings: TUFSettings, uris: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """``uris``, else the configured online signers (development keys outside production)."""
    uris = uris or settings.online_signers
    dev_key = Path(settings.dev_keys_path or ".") / "online.pem"
    if not uris and settings.env != "production" and settings.dev_keys_path:
        uris = (f"file2:{dev_key}",)
    dev = development_keys(settings)
    if dev is None:
        return uris
    for entry in uris:
        scheme, _, location = signing.split_signer_entry(entry)[1].partition(":")
        if scheme != "file2":
            continue
        path = Path(location.partition("?")[0])
        # A symlink is judged by the file it points to, a copy by the key it holds.
        found = (path.resolve().parent / devkeys.MARKER).exists()
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


# -- the development-key guard -----------------------------------------------------------------


def development_keys(settings: TUFSettings) -> devkeys.DevelopmentKeys | None:
    """The keys production refuses; None outside production."""
    if settings.env != "production":
        return None
    return devkeys.known(settings.dev_keys_path)


def development_key_problems(settings: TUFSettings, root: Root, targets: Targets | None) -> list[str]:
    """Each role of ``root`` and ``targets`` trusting a development key, in production."""
    dev = development_keys(settings)
    return [] if dev is None else devkeys.trusted_problems(root, targets, dev)


def refuse_development_keys(settings: TUFSettings, root: Root, targets: Targets | None) -> None:
    problems = development_key_problems(settings, root, targets)
    if problems:
        raise DevelopmentKeyError(
            f"{problems[0]}: development keys are refused in production (tuf.env = production)"
        )


def refuse_development_signers(settings: TUFSettings, signers: list[Signer]) -> None:
    dev = development_keys(settings)
    if dev is None:
        return
    for signer in signers:
        key = signer.public_key
        if dev.is_development(key.keyid, key):
            raise DevelopmentKeyError(
                f"online signer for key {key.keyid[:12]} is a development key: development "
                "keys are refused in production (tuf.env = production; a lost old key: "
                "--without-old-key)"
            )


# -- the one validator of offline roles --------------------------------------------------------


def parse_offline_role(name: str, data: bytes, error: type[RepositoryError]) -> Metadata[Any]:
    """``data`` as role ``name`` (root or targets); ``error`` when it is not."""
    kind = Root if name == roles.ROOT else Targets
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except Exception as exc:
        raise error(f"{name} is not valid TUF metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise error(f"expected {name} metadata, found {md.signed.type}")
    return md


def offline_role_problems(settings: TUFSettings, payload: ceremony.Payload) -> list[str]:
    """Why ``payload`` cannot be installed here; empty when it can.

    The ceremony's checks (versions, shape, online keys, expiry, signatures and
    thresholds, as a client checks them), then, at bootstrap, the bin settings.
    """
    problems = payload.problems()
    delegations = payload.targets.signed.delegations if payload.targets is not None else None
    succinct = delegations.succinct_roles if delegations else None
    if payload.trusted_root is None and succinct is not None:
        if succinct.bit_length != settings.bin_bits:
            problems.append(f"targets delegates to {2**succinct.bit_length} bins but the settings ask "
                            f"for {settings.bin_count} (tuf.bin_count)")
        elif succinct.name_prefix != settings.bin_name_prefix:
            problems.append(f"bin name prefix {succinct.name_prefix!r} differs from "
                            f"tuf.bin_name_prefix {settings.bin_name_prefix!r}")
    return problems


def bootstrap_roles(settings: TUFSettings, root_bytes: bytes,
                    targets_bytes: bytes | None) -> tuple[Metadata[Root], Metadata[Targets]]:
    """Root v1 and targets v1, checked as a client and this repository's settings check them.

    ``targets_bytes`` None: the targets-online model (``trust_model.py``); targets v1 is
    returned unsigned, for the online key to sign. A root of the model ``tuf.targets_online``
    does not ask for is refused.
    """
    root = parse_offline_role(roles.ROOT, root_bytes, BootstrapError)
    targets = None if targets_bytes is None else parse_offline_role(roles.TARGETS, targets_bytes, BootstrapError)
    problems = [trust_model.model_problem(root.signed, settings.targets_online)]
    problems += offline_role_problems(settings, ceremony.Payload(root=root, targets=targets))
    if any(problems):
        raise BootstrapError(next(problem for problem in problems if problem))
    if targets is None:
        targets = Metadata(ceremony.build_targets(ceremony.online_spec(root.signed), settings.bin_bits,
                                                  settings.bin_name_prefix, utcnow() + settings.expiry["targets"]))
    return root, targets
