"""Key holders for ceremony tests: each keeps a private key in a folder of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

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
