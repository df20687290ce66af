"""Key holders for ceremony tests: each keeps a private key in a folder of its own."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from tuf.api.metadata import Metadata

from warehouse_tuf import ceremony, keyfiles
from warehouse_tuf.cli import tuf
from warehouse_tuf.signing import generate_key_file


@dataclass
class Holder:
    """One person's key: the private PEM stays in ``private``, ``public`` is handed around."""

    name: str
    private: Path
    public: Path
    keyid: str

    @property
    def uri(self) -> str:
        return f"file2:{self.private}"

    @property
    def signer_entry(self) -> str:
        return f"{self.keyid}={self.uri}"


def make_holder(base: Path, name: str) -> Holder:
    private = base / "holders" / name / "private.pem"
    key = generate_key_file(private)
    public = base / "public" / f"{name}.pem"
    public.parent.mkdir(parents=True, exist_ok=True)
    crypto_public = load_pem_private_key(private.read_bytes(), password=None).public_key()
    public.write_bytes(crypto_public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return Holder(name, private, public, key.keyid)


def run(config, *args: str, ok: bool = True):
    """``tuf ARGS`` as an operator types it; checks the exit status."""
    result = CliRunner().invoke(tuf, [str(a) for a in args], obj=config, catch_exceptions=False)
    if ok is not None:
        assert (result.exit_code == 0) is ok, result.output
    return result


def v1_payload(h, *, bins: int = 16, sign: tuple[str, ...] | None = None, targets_online: bool = False):
    """Root v1 and targets v1 (root v1 alone with ``targets_online``), signed by ``sign``
    (default: every threshold)."""
    now = ceremony.utcnow()
    keys = {name: keyfiles.load_public_key(holder.public) for name, holder in h.items()}
    root, targets = ceremony.build_roles(
        root=ceremony.RoleSpec([keys["root1"], keys["root2"], keys["root3"]], 2),
        targets=None if targets_online else ceremony.RoleSpec([keys["targets1"], keys["targets2"]], 2),
        online=ceremony.RoleSpec([keys["online1"]], 1),
        bin_bits=ceremony.bin_bits(bins), bin_prefix="bins",
        root_expires=now + datetime.timedelta(days=365), targets_expires=now + datetime.timedelta(days=365),
    )
    payload = ceremony.Payload(root=root, targets=None if targets_online else targets)
    if sign is None:
        sign = ("root1", "root2") if targets_online else ("root1", "root2", "targets1", "targets2")
    for name in sign:
        payload.sign(h[name].uri)
    return payload


def next_payload(h, metadata_dir, signers, **changes) -> ceremony.Payload:
    def newest(role):
        return max(metadata_dir.glob(f"*.{role}.json"), key=lambda p: int(p.name.split(".")[0]))

    current_root = Metadata.from_file(str(newest("root")))
    current_targets = Metadata.from_file(str(newest("targets")))
    root, targets = ceremony.next_roles(current_root, current_targets, **changes)
    payload = ceremony.Payload(trusted_root=current_root, root=root, targets=targets)
    for name in signers:
        payload.sign(h[name].uri)
    return payload


def public_key(h, name):
    return keyfiles.load_public_key(h[name].public)
