"""The offline ceremony end to end, through the ``tuf`` CLI, checked by ngclient clients.

3 root keys (threshold 2), 2 targets keys (threshold 2), one online key; each
holder signs from a key file of their own. Then a root rotation, an online
key rotation with uploads pending, and a targets renewal; after each step a
client that trusted the previous state updates and verifies targets.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from tuf.api.metadata import Metadata

from tests.conftest import make_configurator
from tests.keyholders import make_holder, run
from tests.tufclient import Client
from warehouse_tuf.cli import service


@pytest.fixture
def holders(tmp_path):
    names = ["root1", "root2", "root3", "root4", "targets1", "targets2", "online1", "online2"]
    return {name: make_holder(tmp_path, name) for name in names}


def add_upload(config, targets_dir, name: str, data: bytes) -> str:
    """Store a file and record it in a committed host transaction; returns its target path."""
    blake2 = hashlib.blake2b(data, digest_size=32).hexdigest()
    path = f"{blake2[:2]}/{blake2[2:4]}/{blake2[4:]}/{name}"
    (targets_dir / path).parent.mkdir(parents=True, exist_ok=True)
    (targets_dir / path).write_bytes(data)
    with service(config) as manager:
        manager.record_target(path, len(data), {"sha256": hashlib.sha256(data).hexdigest()})
        manager.db.commit()
    return path


def published(metadata_dir, role: str) -> dict:
    versions = sorted(int(p.name.split(".")[0]) for p in metadata_dir.glob(f"*.{role}.json"))
    return json.loads((metadata_dir / f"{versions[-1]}.{role}.json").read_bytes())


def test_full_ceremony_bootstrap_rotations_and_renewal(engine, tmp_path, holders):
    h = holders
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    payload = tmp_path / "ceremony" / "v1.json"
    payload.parent.mkdir()

    # Offline: the payload is written from public keys only, no host configured.
    run(None, "ceremony", "init",
        "--root-key", h["root1"].public, "--root-key", h["root2"].public,
        "--root-key", h["root3"].public, "--root-threshold", 2,
        "--targets-key", h["targets1"].public, "--targets-key", h["targets2"].public,
        "--targets-threshold", 2, "--online-key", h["online1"].public, "--bin-count", 16,
        "-o", payload)
    verify = run(None, "ceremony", "verify", payload, ok=False)
    assert "not ready" in verify.output and "signed 0" in verify.output
    digest = verify.output.split("read aloud): ")[1][:19]  # the first groups, as read aloud
    for name in ("root1", "targets1", "root3", "targets2"):  # one after another, each their own key
        result = run(None, "ceremony", "sign", payload, "--key", h[name].uri, "--expect-digest", digest)
        assert f"with key {h[name].keyid}" in result.output
    assert "ready to install" in run(None, "ceremony", "verify", payload).output

    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": h["online1"].uri})
    run(config, "bootstrap", payload)
    first = add_upload(config, targets_dir, "first-1.0.tar.gz", b"first")
    run(config, "publish")
    client = Client(metadata_dir, targets_dir)
    assert client.download(first) == b"first"

    # Root rotation: replace root3 by root4 and raise the threshold to 3.
    current_root = metadata_dir / "1.root.json"
    current_targets = metadata_dir / "1.targets.json"
    rotate = tmp_path / "ceremony" / "root-v2.json"
    run(None, "ceremony", "prepare", "--root", current_root, "--targets", current_targets,
        "--add-root-key", h["root4"].public, "--remove-root-key", h["root3"].keyid,
        "--root-threshold", 3, "-o", rotate)
    for name in ("root1", "root2"):
        run(None, "ceremony", "sign", rotate, "--key", h[name].uri)
    # root v2 has 2 of its 3 signatures: not yet installable.
    assert "root v2 is signed by 2 of the 3 keys root v2 requires" in run(config, "install", rotate, ok=False).output
    run(None, "ceremony", "sign", rotate, "--key", h["root4"].uri)
    run(config, "install", rotate)
    assert client.download(first) == b"first"
    assert json.loads((client.cache / "root.json").read_bytes())["signed"]["version"] == 2

    # Online key rotation while uploads wait to be published.
    pending = add_upload(config, targets_dir, "pending-1.0.tar.gz", b"pending")
    online = tmp_path / "ceremony" / "online.json"
    run(None, "ceremony", "prepare", "--root", metadata_dir / "2.root.json", "--targets", current_targets,
        "--online-key", h["online2"].public, "-o", online)
    for name in ("root1", "root2", "root4", "targets1", "targets2"):
        run(None, "ceremony", "sign", online, "--key", h[name].uri)
    run(config, "install", online,
        "--online-signer", h["online1"].signer_entry, "--online-signer", h["online2"].signer_entry)
    assert client.download(first) == b"first"
    assert json.loads((client.cache / "root.json").read_bytes())["signed"]["version"] == 3
    timestamp = Metadata.from_bytes((metadata_dir / "timestamp.json").read_bytes())
    assert set(timestamp.signatures) == {h["online2"].keyid}

    # Workers now sign with the new key only; the pending upload is published.
    config = make_configurator(engine, tmp_path, **{"tuf.online_signers": h["online2"].uri})
    with service(config) as manager:
        assert manager.status()["pending"] == 1
    run(config, "publish")
    assert client.download(pending) == b"pending"

    # Targets renewed before its expiry, with the same one-at-a-time signing.
    renew = tmp_path / "ceremony" / "targets-v3.json"
    run(None, "ceremony", "prepare", "--root", metadata_dir / "3.root.json",
        "--targets", metadata_dir / "2.targets.json", "--targets-expiry", "400d", "-o", renew)
    for name in ("targets2", "targets1"):
        run(None, "ceremony", "sign", renew, "--key", h[name].uri)
    run(config, "install", renew)
    assert published(metadata_dir, "targets")["signed"]["version"] == 3
    assert client.download(pending) == b"pending"
    # Every root stays published.
    assert sorted(p.name for p in metadata_dir.glob("*.root.json")) == [
        "1.root.json", "2.root.json", "3.root.json"
    ]
