"""Production refuses development keys by what they are, not by where their files lie."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from securesystemslib.signer import SSlibKey

from tests.conftest import make_configurator, make_settings
from tests.keyholders import make_holder, run
from tests.test_services import db_state, storage_state
from warehouse_tuf import devkeys
from warehouse_tuf.services import DevelopmentKeyError, TUFManager
from warehouse_tuf.signing import load_key_file
from warehouse_tuf.storage import LocalStorage

SHIPPED_DIR = Path(__file__).parent.parent / "dev" / "keys"


def test_the_committed_list_matches_the_shipped_key_files():
    found = {}
    for path in sorted(SHIPPED_DIR.glob("*.pem")):
        key = load_key_file(path).public_key
        found[key.keyid] = key.keyval["public"]
    assert len(found) == 3
    assert found == devkeys.SHIPPED


def _manager(db, tmp_path, **overrides) -> TUFManager:
    settings = make_settings(tmp_path, **overrides)
    return TUFManager(db, settings, LocalStorage(tmp_path / "metadata"), LocalStorage(tmp_path / "simple"))


def _shipped_copy(tmp_path) -> Path:
    """A development-key directory holding the shipped keys (as `make serve` uses them)."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("root.pem", "targets.pem", "online.pem"):
        shutil.copy(SHIPPED_DIR / name, keys / name)
    return keys


def test_a_copy_or_symlink_of_the_shipped_online_key_is_refused_in_production(db, tmp_path):
    _shipped_copy(tmp_path)
    dev = _manager(db, tmp_path)
    dev.bootstrap_development()
    dev.record_target("a/b.whl", 3, {"sha256": "a" * 64})
    db.commit()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(SHIPPED_DIR / "online.pem", elsewhere / "online.pem")  # no marker beside it
    (elsewhere / "link.pem").symlink_to(SHIPPED_DIR / "online.pem")
    for signer in (elsewhere / "online.pem", elsewhere / "link.pem"):
        # dev_keys_path unset: the shipped keys are known anyway
        prod = _manager(db, tmp_path, **{"tuf.env": "production", "tuf.dev_keys_path": "",
                                         "tuf.online_signers": f"file2:{signer}"})
        before_db, before_storage = db_state(db), storage_state(tmp_path / "metadata")
        with pytest.raises(DevelopmentKeyError, match="refused in production") as info:
            prod.publish()
        assert "\n" not in str(info.value)
        assert db_state(db) == before_db
        assert storage_state(tmp_path / "metadata") == before_storage
        problems = prod.status()["problems"]
        assert any("trusts development key" in p and "timestamp" in p for p in problems), problems
        assert any("trusts development key" in p and "root" in p for p in problems), problems


def test_a_copy_of_a_generated_development_key_is_refused_in_production(db, tmp_path):
    dev = _manager(db, tmp_path)
    dev.bootstrap_development()  # generates keys under tmp_path/keys, lists their key ids
    marker = (tmp_path / "keys" / devkeys.MARKER).read_text()
    online = load_key_file(tmp_path / "keys" / "online.pem").public_key
    assert online.keyid in marker
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tmp_path / "keys" / "online.pem", elsewhere / "online.pem")
    prod = _manager(db, tmp_path, **{"tuf.env": "production",
                                     "tuf.online_signers": f"file2:{elsewhere / 'online.pem'}"})
    before_db, before_storage = db_state(db), storage_state(tmp_path / "metadata")
    with pytest.raises(DevelopmentKeyError, match="refused in production"):
        prod.refresh()
    assert db_state(db) == before_db
    assert storage_state(tmp_path / "metadata") == before_storage
    # the private key files gone: the key ids the marker lists are still refused
    for name in ("root.pem", "targets.pem", "online.pem"):
        (tmp_path / "keys" / name).unlink()
    with pytest.raises(DevelopmentKeyError, match="root v1 trusts development key .* for root"):
        prod.publish()


def _production_with_own_online_key(db, tmp_path) -> tuple[TUFManager, object]:
    online = make_holder(tmp_path, "online")
    prod = _manager(db, tmp_path, **{"tuf.env": "production", "tuf.dev_keys_path": "",
                                     "tuf.online_signers": online.uri})
    return prod, load_key_file(online.private)


@pytest.mark.one_database
@pytest.mark.parametrize("role", ["root", "targets"])
def test_a_payload_trusting_a_shipped_key_is_refused_at_bootstrap_in_production(db, tmp_path, role):
    prod, online = _production_with_own_online_key(db, tmp_path)
    own = load_key_file(make_holder(tmp_path, "own").private)
    shipped = load_key_file(SHIPPED_DIR / f"{role}.pem")
    keys = {"root": own, "targets": own, role: shipped}
    root, targets = prod.build_offline_roles(
        root_keys=[keys["root"].public_key], root_threshold=1,
        targets_keys=[keys["targets"].public_key], targets_threshold=1,
        online_keys=[online.public_key], online_threshold=1,
        sign_with=[keys["root"]], sign_targets_with=[keys["targets"]],
    )
    before_db, before_storage = db_state(db), storage_state(tmp_path / "metadata")
    with pytest.raises(DevelopmentKeyError, match=f"trusts development key .* for {role}: "
                                                  "development keys are refused in production"):
        prod.bootstrap(root, targets)
    assert db_state(db) == before_db
    assert storage_state(tmp_path / "metadata") == before_storage == {}


def test_a_shipped_public_key_under_another_key_id_is_still_a_development_key():
    shipped = load_key_file(SHIPPED_DIR / "online.pem").public_key
    renamed = SSlibKey("f" * 64, shipped.keytype, shipped.scheme, dict(shipped.keyval))
    known = devkeys.known()
    assert known.is_development(renamed.keyid, renamed)
    other = load_key_file(SHIPPED_DIR / "root.pem").public_key
    assert not known.is_development("0" * 64, SSlibKey("0" * 64, "ed25519", "ed25519", {"public": "ab" * 32}))
    assert known.is_development(other.keyid, None)


def test_install_of_a_root_trusting_a_shipped_key_is_refused_in_production(db, tmp_path):
    from tests.keyholders import next_payload, public_key, v1_payload

    names = ["root1", "root2", "root3", "targets1", "targets2", "online1"]
    h = {name: make_holder(tmp_path, name) for name in names}
    prod = _manager(db, tmp_path, **{"tuf.env": "production", "tuf.dev_keys_path": "",
                                     "tuf.online_signers": h["online1"].signer_entry})
    prod.bootstrap(*(v1_payload(h).role_bytes(role) for role in ("root", "targets")))
    h["dev"] = make_holder(tmp_path, "dev")  # whose key is then replaced by the shipped one
    pem = (SHIPPED_DIR / "online.pem").read_bytes()
    h["dev"].private.write_bytes(pem)
    crypto = load_pem_private_key(pem, password=None).public_key()
    h["dev"].public.write_bytes(crypto.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    payload = next_payload(h, tmp_path / "metadata", ("root1", "root2", "targets1", "targets2"),
                           online_keys=[public_key(h, "dev")])
    before_db, before_storage = db_state(db), storage_state(tmp_path / "metadata")
    with pytest.raises(DevelopmentKeyError, match="refused in production"):
        prod.install(payload.role_bytes("root"), payload.role_bytes("targets"),
                     (h["online1"].signer_entry, f"{public_key(h, 'dev').keyid}=file2:{h['dev'].private}"))
    assert db_state(db) == before_db
    assert storage_state(tmp_path / "metadata") == before_storage


def test_cli_status_and_bootstrap_in_production(engine, tmp_path):
    keys = _shipped_copy(tmp_path)
    config = make_configurator(engine, tmp_path)
    run(config, "bootstrap-dev")  # development still bootstraps with the shipped keys
    assert not (keys / devkeys.MARKER).read_text().count("keyid:")  # shipped: listed in the code
    prod = make_configurator(engine, tmp_path, **{"tuf.env": "production", "tuf.dev_keys_path": "",
                                                  "tuf.online_signers": f"file2:{SHIPPED_DIR / 'online.pem'}"})
    report = json.loads(run(prod, "status", "--json", ok=False).output)
    dev_problems = [p for p in report["problems"] if "trusts development key" in p]
    assert len(dev_problems) == 5, report["problems"]  # root, targets, snapshot, timestamp, bins
    assert any(p.endswith("for its bins: refused in production") for p in dev_problems)
    result = run(prod, "publish", ok=False)
    assert result.output.count("\n") == 1 and "refused in production" in result.output
