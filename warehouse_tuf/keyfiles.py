"""A key holder's keys: key files (PEM or TUF key JSON), HSM keys, and signers found by URI.

The ceremony (``ceremony.py``, ``tuf ceremony ...``) reads and writes them;
nothing here touches a database or a service.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signer, SSlibKey

from warehouse_tuf import signing
from warehouse_tuf.exceptions import CeremonyError


def load_public_key(path: str | Path) -> Key:
    """A public key from a PEM file (SubjectPublicKeyInfo) or a TUF key JSON object."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CeremonyError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" in data:
        raise CeremonyError(
            f"{path} holds a private key: give the public key only (private keys never leave "
            "their holder; each holder signs with 'tuf ceremony sign')"
        )
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return SSlibKey.from_crypto(load_pem_public_key(data))
        except Exception as exc:  # cryptography and sslib raise several kinds
            raise CeremonyError(f"{path}: not a usable public key ({type(exc).__name__}: {exc})") from None
    try:
        obj = json.loads(data)
        return key_from_dict(obj)
    except CeremonyError as exc:
        raise CeremonyError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise CeremonyError(f"{path}: neither a PEM public key nor a TUF key object ({exc})") from None


def public_key_path(private_path: str | Path) -> str:
    """Where ``generate-key`` writes the public key of ``private_path`` by default."""
    path = str(private_path)
    return (path.removesuffix(".pem") if path.endswith(".pem") else path) + ".pub.pem"


def generate_key(private_path: str | Path, public_path: str | Path, scheme: str = "ed25519") -> Key:
    """Create a key pair with securesystemslib's CryptoSigner: the private PEM (mode 0600, never
    overwritten) and the public PEM. Returns the public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise CeremonyError(f"{path.resolve()} exists: choose another file (a key is never overwritten)")
    generate = {
        "ed25519": CryptoSigner.generate_ed25519,
        "ecdsa-sha2-nistp256": CryptoSigner.generate_ecdsa,
        "rsa-pss-sha256": CryptoSigner.generate_rsa,
    }
    signer = generate[scheme]()
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(signer.private_bytes)
        public = load_pem_private_key(signer.private_bytes, password=None).public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        with open(public_path, "xb") as handle:
            handle.write(public)
    except OSError as exc:
        raise CeremonyError(f"cannot write {exc.filename}: {exc.strerror or exc}") from None
    return signer.public_key


def import_hsm_key(public_path: str | Path) -> tuple[str, Key]:
    """The public key of the HSM's signing key (securesystemslib's HSMSigner), written as TUF key
    JSON to ``public_path``; returns the signing URI and the key."""
    try:
        from securesystemslib.signer import HSMSigner

        uri, key = HSMSigner.import_()
    except ImportError as exc:
        raise CeremonyError(f"HSM support is not installed ({exc}): pip install 'securesystemslib[hsm]'"
                            ) from None
    except Exception as exc:  # PyKCS11 and the token raise many kinds
        raise CeremonyError(f"cannot read the HSM's key ({type(exc).__name__}: {exc}); set PYKCS11LIB "
                            "to the token's PKCS#11 module and plug the token in") from None
    body = {"keytype": key.keytype, "scheme": key.scheme, "keyval": key.keyval}
    try:
        with open(public_path, "x") as handle:
            handle.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise CeremonyError(f"cannot write {Path(public_path).resolve()}: {exc.strerror or exc}") from None
    return uri, key


def key_from_dict(obj: object) -> Key:
    """A TUF key object (``keytype``, ``scheme``, ``keyval``); its id is TUF's default key id."""
    if not isinstance(obj, dict):
        raise CeremonyError("a key must be a JSON object with keytype, scheme and keyval")
    body = {name: obj.get(name) for name in ("keytype", "scheme", "keyval")}
    if not all(isinstance(body[n], str) for n in ("keytype", "scheme")) or not isinstance(body["keyval"], dict):
        raise CeremonyError("a key must be a JSON object with keytype, scheme and keyval")
    keyid = hashlib.sha256(encode_canonical(body).encode()).hexdigest()
    try:
        key = Key.from_dict(keyid, copy.deepcopy(body))
    except (ValueError, KeyError, TypeError) as exc:
        raise CeremonyError(
            f"unsupported key type {body['keytype']!r} / scheme {body['scheme']!r} ({exc})"
        ) from None
    return key


def signer_for(uri: str, candidates: dict[str, Key]) -> Signer:
    """The signer of ``uri`` (a key file, or any securesystemslib URI) for one of ``candidates``."""
    local = local_key_path(uri)
    return file_signer(local, candidates) if local is not None else matching_signer(uri, candidates)


def local_key_path(uri: str) -> Path | None:
    """The file of a key given as a plain path, ``file:PATH`` or ``file2:PATH``; None for other URIs."""
    scheme, colon, rest = uri.partition(":")
    if not colon or "/" in scheme or "\\" in scheme or len(scheme) == 1:  # a path (or C:\...)
        return Path(uri)
    if scheme in ("file", "file2") and "?" not in rest:
        return Path(rest.removeprefix("//"))
    return None


def _is_key_json(data: bytes) -> bool:
    """Whether ``data`` is a TUF key object (a public key, as ``import-hsm-key`` writes)."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(obj, dict) and "keyval" in obj


def file_signer(path: Path, candidates: dict[str, Key]) -> Signer:
    """The signer of the private key in ``path``; says which way it is wrong, naming the full path.

    Three cases are told apart: the file cannot be read (or holds no private
    key), it holds a public key, or it holds a key the payload does not ask for.
    """
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    where = path.resolve()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CeremonyError(f"cannot read the key file {where}: {exc.strerror or exc}") from None
    if b"PUBLIC KEY" in data or _is_key_json(data):
        raise CeremonyError(f"{where} holds a public key: sign with your private key file")
    try:
        private = load_pem_private_key(data, password=None)
        signer = CryptoSigner(private)
    except TypeError:
        raise CeremonyError(f"{where} is an encrypted private key: give an unencrypted PEM, or keep "
                            "it in an HSM or KMS (hsm:, awskms:, gcpkms:, azurekms:, hv:)") from None
    except Exception as exc:  # cryptography raises several kinds for what is not a key
        raise CeremonyError(f"{where} holds no private key this tool can read "
                            f"({type(exc).__name__}): give a PEM private key file") from None
    keyid = signer.public_key.keyid
    if keyid not in candidates:
        asked = ", ".join(k[:12] for k in sorted(candidates))
        raise CeremonyError(f"the key in {where} (key id {keyid[:12]}) is not one this payload asks to "
                            f"sign with (it asks for: {asked})")
    return CryptoSigner(private, candidates[keyid])  # the key object as the payload lists it


def matching_signer(uri: str, candidates: dict[str, Key]) -> Signer:
    """The signer for ``uri`` whose key is one of ``candidates`` (verified by a probe)."""
    failure = "no key matched"
    for key in candidates.values():
        try:
            signer = signing.probed_signer(uri, key)
        except Exception as exc:  # a different key, or a backend that cannot load it: try the next
            failure = type(exc).__name__  # the type only: messages may quote key material
            continue
        return signer
    if len(candidates) == 1:
        raise CeremonyError(
            f"the key at {signing.redact_uri(uri)} cannot sign for key {next(iter(candidates))} "
            f"({failure}: wrong key, wrong URI, or the backend refused)"
        )
    raise CeremonyError(
        f"the key at {signing.redact_uri(uri)} is none of the {len(candidates)} keys this payload asks "
        "to sign with (pass --keyid to name the key you expect)"
    )
