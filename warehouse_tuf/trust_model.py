"""The two trust models a repository may run under, and the targets the index signs itself.

- **PEP 458** (``tuf.targets_online = false``): root and targets are offline
  roles, each signed in a ceremony by its own key holders; the online key signs
  the bins, snapshot and timestamp.
- **targets online** (``tuf.targets_online = true``), as PEP 458's implementers
  later simplified it: root is the only offline role; root trusts the online
  key(s) for targets too, so the index signs targets at bootstrap and re-signs
  it before it expires, like any online role. A compromised online key then
  also compromises targets (it may delegate the bins to any key).

The model in force is read from the installed root, never stored apart: root
trusts exactly the online keys (the snapshot role's, with their threshold) for
targets. The setting says which model the operator has chosen; payloads whose
root would put the other model in force are refused.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable

from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization.json import JSONSerializer

PEP458 = "pep458"
TARGETS_ONLINE = "targets-online"

#: One line each: what the model means, for ``tuf status``, ``tuf verify`` and the admin page.
DESCRIPTIONS = {
    PEP458: "PEP 458: root and targets are offline roles; the online key signs bins, snapshot and timestamp",
    TARGETS_ONLINE: "targets online: root is the only offline role; the online key signs targets, bins, "
                    "snapshot and timestamp",
}
WARNINGS = {
    PEP458: "targets expires unless its key holders renew it in a ceremony",
    TARGETS_ONLINE: "a compromised online key also compromises targets (it can delegate the bins to any key); "
                    "only root keys are offline",
}


def targets_online(root: Root) -> bool:
    """Whether ``root`` trusts the online keys (its snapshot role's) for targets, with their threshold."""
    targets, snapshot = root.roles["targets"], root.roles["snapshot"]
    return set(targets.keyids) == set(snapshot.keyids) and targets.threshold == snapshot.threshold


def model(root: Root) -> str:
    """The name of the model ``root`` puts in force."""
    return TARGETS_ONLINE if targets_online(root) else PEP458


def setting_model(online: bool) -> str:
    """The model ``tuf.targets_online`` asks for."""
    return TARGETS_ONLINE if online else PEP458


def offline_roles(root: Root) -> tuple[str, ...]:
    """The roles ``root`` has signed by offline keys: never re-signed by the index."""
    return ("root",) if targets_online(root) else ("root", "targets")


def model_problem(root: Root, setting: bool) -> str | None:
    """Why a payload whose root is ``root`` is refused under ``tuf.targets_online = setting``; None if not."""
    if targets_online(root) == setting:
        return None
    if setting:
        return (f"root v{root.version} keeps targets offline (targets keys) but tuf.targets_online is true: "
                "prepare a root-only payload ('ceremony init --targets-online', or 'ceremony prepare "
                "--targets-online' to switch), or set tuf.targets_online = false")
    return (f"root v{root.version} gives targets to the online key but tuf.targets_online is false (PEP 458): "
            "prepare a payload with targets keys ('ceremony prepare --targets-offline --add-targets-key ...' "
            "to switch), or set tuf.targets_online = true")


def status(root: Root, setting: bool) -> dict[str, object]:
    """The model in force, the one the setting asks for, and what the model implies."""
    name = model(root)
    return {"name": name, "targets_online": name == TARGETS_ONLINE, "setting": setting_model(setting),
            "description": DESCRIPTIONS[name], "warning": WARNINGS[name]}


def published_as(stored: bytes, payload: bytes) -> bool:
    """Whether ``stored`` (what storage publishes) is the payload's role as ``tuf install`` published
    it: the very bytes, or, for a targets of a model switch, the same signed part and signatures
    with the online key's signature added."""
    if stored == payload:
        return True
    try:
        published, signed = Metadata.from_bytes(stored), Metadata.from_bytes(payload)
    except Exception:  # python-tuf raises several kinds for what is not metadata
        return False
    return (published.signed_bytes == signed.signed_bytes
            and set(signed.signatures) < set(published.signatures)
            and all(published.signatures[keyid] == sig for keyid, sig in signed.signatures.items()))


def next_targets(current: Targets, *, version: int, expires: datetime.datetime) -> Targets:
    """``current`` with a new version and expiry: what the index signs in the targets-online model
    (the bin delegation is the caller's to set when the online key changes)."""
    signed = copy.deepcopy(current)
    signed.version = version
    signed.expires = expires
    return signed


def sign(targets: Metadata[Targets] | Targets, signers: Iterable) -> bytes:
    """``targets`` signed by ``signers`` (added to any signatures it has), as published (compact JSON)."""
    md = targets if isinstance(targets, Metadata) else Metadata(targets)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes(JSONSerializer(compact=True))
