"""Online signers from securesystemslib private key URIs, and development keys.

The online key signs the bins, snapshot and timestamp. It is named by a
private key URI (``file2:``, ``awskms:``, ``gcpkms:``, ``azurekms:``, ``hv:``,
``hsm:``) and checked against what root and targets trust before it signs
anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Key, Signer
from tuf.api.metadata import Root, Targets

from warehouse_tuf import roles

ONLINE_ROLES = roles.ONLINE_TOP

_PROBE = b"warehouse-tuf online signer probe"


class SigningError(RuntimeError):
    """The online signer is missing, broken, or not the key the repository trusts."""


@dataclass(frozen=True)
class OnlineKeys:
    """The keys root and targets trust for the online roles, and their threshold."""

    keys: dict[str, Key]
    threshold: int


def online_keys(root: Root, targets: Targets) -> OnlineKeys:
    """The online keys, checked to be the same for snapshot, timestamp and the bins."""
    succinct = targets.delegations.succinct_roles if targets.delegations else None
    if succinct is None:
        raise SigningError("targets has no succinct hash-bin delegation")
    online_roles = {name: root.roles[name] for name in ONLINE_ROLES}
    # python-tuf takes key ids as the JSON gives them; the messages below slice and sort them.
    for owner, listed in (("targets' bin delegation", succinct.keyids),
                          *((f"root's {name} role", role.keyids) for name, role in online_roles.items())):
        if not all(isinstance(keyid, str) for keyid in listed):
            raise SigningError(f"{owner} lists a key id that is not a string: {listed!r}")
    keyids = set(succinct.keyids)
    for name, role in online_roles.items():
        if set(role.keyids) != keyids or role.threshold != succinct.threshold:
            raise SigningError(
                f"root's {name} role and targets' bin delegation must trust the same online "
                f"key(s) with the same threshold ({sorted(k[:12] for k in role.keyids)} t={role.threshold} "
                f"vs {sorted(k[:12] for k in keyids)} t={succinct.threshold})"
            )
    undefined = sorted(keyids - root.keys.keys())
    if undefined:
        raise SigningError(f"root trusts online key(s) {undefined} that it does not define")
    keys = {keyid: root.keys[keyid] for keyid in keyids}
    delegated_keys = targets.delegations.keys if targets.delegations else {}
    for keyid in keyids:
        delegated = delegated_keys.get(keyid)
        if delegated is None or delegated.to_dict() != keys[keyid].to_dict():
            raise SigningError(f"online key {keyid[:12]} differs between root and targets")
    return OnlineKeys(keys=keys, threshold=succinct.threshold)


def load_online_signers(uris: tuple[str, ...], trusted: OnlineKeys) -> list[Signer]:
    """Signers for ``uris`` (``KEYID=URI`` or a bare ``URI`` when one key is trusted).

    Each signer must produce a signature that the trusted public key verifies,
    and there must be at least ``threshold`` of them.
    """
    if not uris:
        raise SigningError("no online signer configured (set tuf.online_signers / TUF_ONLINE_SIGNERS)")
    signers: dict[str, Signer] = {}
    for entry in uris:
        keyid, uri = split_signer_entry(entry)
        if not keyid:
            if len(trusted.keys) != 1:
                raise SigningError(
                    f"online signer {redact_uri(uri)} names no key id; root trusts "
                    f"{len(trusted.keys)} online keys, write it as KEYID=URI"
                )
            keyid = next(iter(trusted.keys))
        key = trusted.keys.get(keyid)
        if key is None:
            raise SigningError(
                f"online signer {redact_uri(uri)} is for key {keyid[:12]}, which root and targets do not trust"
            )
        try:
            signer = probed_signer(uri, key)
        except Exception as exc:  # every backend has its own errors
            raise SigningError(
                f"online signer {redact_uri(uri)} cannot sign for trusted key {keyid[:12]}: "
                f"{type(exc).__name__}"
            ) from None
        signers[keyid] = signer
    if len(signers) < trusted.threshold:
        raise SigningError(
            f"{len(signers)} online signer(s) configured, the threshold is {trusted.threshold}"
        )
    return list(signers.values())


def probed_signer(uri: str, key: Key) -> Signer:
    """The signer of private key ``uri``, once ``key`` has verified a probe signature it made.

    The one probe, for the online signers and the ceremony's key holders alike;
    any error is the backend's own (a wrong key, a wrong URI, a refusal).
    """
    signer = Signer.from_priv_key_uri(uri, key)
    key.verify_signature(signer.sign(_PROBE), _PROBE)
    return signer


def split_signer_entry(entry: str) -> tuple[str, str]:
    """``KEYID=URI`` into its parts; a bare URI has no key id ('=' may occur in URI queries)."""
    keyid, sep, uri = entry.partition("=")
    if not sep or ":" in keyid:
        return "", entry
    return keyid, uri


def redact_uri(uri: str) -> str:
    """The scheme and the last path component only: URIs may carry secrets in queries."""
    scheme, _, rest = uri.partition(":")
    return f"{scheme}:…{rest.split('?')[0][-24:]}"


def generate_key_file(path: Path) -> Key:
    """Write a new ed25519 private key (PEM, unencrypted) and return its public key."""
    signer = CryptoSigner.generate_ed25519()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(signer.private_bytes)
    return signer.public_key


def load_key_file(path: Path) -> CryptoSigner:
    """A signer for an unencrypted PEM private key file."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key(path.read_bytes(), password=None)
    return CryptoSigner(private)
