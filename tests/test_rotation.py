"""Key rotation as clients see it: after every single storage write, clients on the
old and on the new state refresh and verify a target.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil

import pytest
from tuf.api.metadata import Metadata

from dev.testing.tufclient import Client
from tests.conftest import make_settings
from tests.keyholders import make_holder, next_payload, public_key as key, v1_payload
from warehouse_tuf import ceremony
from warehouse_tuf.models import RoleVersion
from warehouse_tuf.services import TUFManager
from warehouse_tuf.storage import LocalStorage


class WatchedStorage(LocalStorage):
    """Local storage that lets the test look at the repository after each write."""

    def __init__(self, base, after_write) -> None:
        super().__init__(base)
        self.after_write = after_write

    def put_many(self, files) -> None:
        super().put_many(files)
        self.after_write(sorted(files))


def clone(client: Client) -> Client:
    """A client trusting exactly what ``client`` trusts now."""
    twin = Client(client.metadata, client.fetcher.roots.get("https://tuf.test/targets/"))
    shutil.rmtree(twin.cache)
    shutil.copytree(client.cache, twin.cache)
    twin._bootstrap = None
    return twin


@pytest.fixture
def holders(tmp_path):
    names = ["root1", "root2", "root3", "root4", "targets1", "targets2", "targets3", "online1", "online2"]
    return {name: make_holder(tmp_path, name) for name in names}


#: rotation -> (the model before, the model after): True is targets online (``tuf.targets_online``).
ROTATIONS = {
    "online key": (False, False), "targets key": (False, False), "root key": (False, False),
    "online key, targets online": (True, True), "root key, targets online": (True, True),
    "to targets online": (False, True), "to offline targets": (True, False),
}


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_clients_on_either_root_verify_after_every_write_of_a_rotation(rotation, db, tmp_path, holders):
    h = holders
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    checks: list[tuple[list[str], str]] = []
    observers: list[Client] = []
    followers: list[Client] = []

    def check_clients(written):
        # A client that last refreshed before the rotation, and one that refreshes at every write.
        for client in [clone(observer) for observer in observers] + followers:
            try:
                assert client.download(path) == b"kept"
            except Exception as exc:  # any refusal by a client is the failure we look for
                checks.append((written, f"{type(exc).__name__}: {exc}"))
            else:
                checks.append((written, "ok"))

    online_before, online_after = ROTATIONS[rotation]
    settings = make_settings(tmp_path, **{"tuf.online_signers": h["online1"].signer_entry,
                                          "tuf.targets_online": online_before})
    storage = WatchedStorage(metadata_dir, check_clients)
    manager = TUFManager(db, settings, storage, LocalStorage(tmp_path / "simple"))
    manager.bootstrap(*(v1_payload(h, targets_online=online_before).role_bytes(role) for role in ("root", "targets")))
    (targets_dir / "k").mkdir(parents=True)
    (targets_dir / "k" / "kept.whl").write_bytes(b"kept")
    path = "k/kept.whl"
    manager.record_target(path, 4, {"sha256": hashlib.sha256(b"kept").hexdigest()})
    db.commit()
    manager.publish()
    old = Client(metadata_dir, targets_dir)
    assert old.download(path) == b"kept"
    observers.append(old)
    followers.append(clone(old))

    signer_uris = None
    if rotation == "online key":
        payload = next_payload(h, metadata_dir, ("root1", "root2", "targets1", "targets2"),
                               online_keys=[key(h, "online2")])
        signer_uris = (h["online1"].signer_entry, h["online2"].signer_entry)
    elif rotation == "online key, targets online":  # root v2 alone: the index signs targets v2
        payload = next_payload(h, metadata_dir, ("root1", "root2"), online_keys=[key(h, "online2")])
        signer_uris = (h["online1"].signer_entry, h["online2"].signer_entry)
    elif rotation == "to targets online":  # the old targets keys sign targets v2 for clients on root v1
        payload = next_payload(h, metadata_dir, ("root1", "root2", "targets1", "targets2"), targets_online=True)
    elif rotation == "to offline targets":  # the online key adds its signature at install
        payload = next_payload(h, metadata_dir, ("root1", "root2", "targets1", "targets2"), targets_online=False,
                               add_targets_keys=[key(h, "targets1"), key(h, "targets2")], targets_threshold=2)
    elif rotation == "targets key":
        payload = next_payload(h, metadata_dir, ("root1", "root2", "targets1", "targets2", "targets3"),
                               add_targets_keys=[key(h, "targets3")], remove_targets_keys=[h["targets2"].keyid])
    else:
        payload = next_payload(h, metadata_dir, ("root1", "root2", "root4"), add_root_keys=[key(h, "root4")],
                               remove_root_keys=[h["root3"].keyid], root_threshold=3,
                               root_expiry=datetime.timedelta(days=200))
    assert payload.problems() == []
    assert (payload.targets is None) is (online_before and online_after or rotation == "root key")
    manager = TUFManager(db, make_settings(tmp_path, **{"tuf.online_signers": h["online1"].signer_entry,
                                                        "tuf.targets_online": online_after}),
                         storage, LocalStorage(tmp_path / "simple"))
    result = manager.install(payload.role_bytes("root"), payload.role_bytes("targets"), signer_uris)
    assert result.root_version == 2
    assert result.online_key_rotated is rotation.startswith("online key")
    assert manager.status()["trust_model"]["targets_online"] is online_after
    failures = [c for c in checks if c[1] != "ok"]
    assert not failures, failures
    assert len(checks) >= 6  # snapshot, timestamp and root writes at least, each seen by both clients
    new = clone(old)
    assert new.download(path) == b"kept"
    trusted_root = Metadata.from_file(str(new.cache / "root.json"))
    assert trusted_root.signed.version == 2
    timestamp = Metadata.from_bytes((metadata_dir / "timestamp.json").read_bytes())
    snapshot_version = timestamp.signed.snapshot_meta.version
    snapshot = Metadata.from_bytes((metadata_dir / f"{snapshot_version}.snapshot.json").read_bytes())
    targets = Metadata.from_file(str(new.cache / "targets.json"))
    if rotation.startswith("online key"):
        # Every online role is now signed by the new key alone (targets too, when it is online).
        assert set(timestamp.signatures) == {h["online2"].keyid}
        for meta_name, meta in snapshot.signed.meta.items():
            if meta_name.startswith("bins-") or online_after:
                role_md = Metadata.from_bytes((metadata_dir / f"{meta.version}.{meta_name}").read_bytes())
                assert set(role_md.signatures) == {h["online2"].keyid}, meta_name
    if online_before != online_after:
        # Targets v2 verifies under root v1 and v2: the old model's keys and the new model's signed it.
        assert targets.signed.version == 2
        assert set(targets.signatures) == {h[n].keyid for n in ("targets1", "targets2", "online1")}
    assert Metadata.from_file(str(new.cache / "root.json")).signed.get_verification_result(
        "targets", targets.signed_bytes, targets.signatures).verified


@pytest.mark.parametrize("targets_online", [False, True], ids=["pep458", "targets-online"])
def test_lost_online_key_is_replaced_without_it_and_clients_fail_closed_meanwhile(
        db, tmp_path, holders, targets_online):
    h = holders
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    seen: list[str] = []

    def check_client(written):
        try:
            assert follower.download(path) == b"kept"
            seen.append("ok")
        except Exception as exc:  # refused: what a client must do with metadata its root rejects
            seen.append(type(exc).__name__)

    settings = make_settings(tmp_path, **{"tuf.online_signers": h["online1"].signer_entry,
                                          "tuf.targets_online": targets_online})
    manager = TUFManager(db, settings, WatchedStorage(metadata_dir, lambda written: None),
                         LocalStorage(tmp_path / "simple"))
    manager.bootstrap(*(v1_payload(h, targets_online=targets_online).role_bytes(role) for role in ("root", "targets")))
    path = "k/kept.whl"
    (targets_dir / "k").mkdir(parents=True)
    (targets_dir / "k" / "kept.whl").write_bytes(b"kept")
    manager.record_target(path, 4, {"sha256": hashlib.sha256(b"kept").hexdigest()})
    db.commit()
    manager.publish()
    old = Client(metadata_dir, targets_dir)
    assert old.download(path) == b"kept"
    follower = clone(old)
    manager.storage.after_write = check_client

    signers = ("root1", "root2") if targets_online else ("root1", "root2", "targets1", "targets2")
    payload = next_payload(h, metadata_dir, signers, online_keys=[key(h, "online2")])
    result = manager.install(payload.role_bytes("root"), payload.role_bytes("targets"),
                             (h["online2"].signer_entry,), without_old_key=True)
    assert result.online_key_rotated
    assert set(seen) <= {"ok", "UnsignedMetadataError"} and seen[-1] == "ok", seen
    assert clone(old).download(path) == b"kept"
    timestamp = Metadata.from_bytes((metadata_dir / "timestamp.json").read_bytes())
    assert set(timestamp.signatures) == {h["online2"].keyid}
    updated = clone(old)
    assert updated.download(path) == b"kept"
    targets = Metadata.from_file(str(updated.cache / "targets.json"))
    assert set(targets.signatures) == {h["online2" if targets_online else "targets1"].keyid,
                                       h["online2" if targets_online else "targets2"].keyid}


def test_lost_targets_key_is_replaced_with_the_new_keys_only(db, tmp_path, holders):
    h = holders
    metadata_dir = tmp_path / "metadata"
    settings = make_settings(tmp_path, **{"tuf.online_signers": h["online1"].signer_entry})
    manager = TUFManager(db, settings, LocalStorage(metadata_dir), LocalStorage(tmp_path / "simple"))
    manager.bootstrap(*(v1_payload(h).role_bytes(role) for role in ("root", "targets")))
    client = Client(metadata_dir)
    client.refresh()
    changes = {"add_targets_keys": [key(h, "targets3")], "remove_targets_keys": [h["targets2"].keyid]}
    # targets2 is lost: its holder cannot sign the handover the usual rule asks for.
    usual = next_payload(h, metadata_dir, ("root1", "root2", "targets1", "targets3"), **changes)
    assert "targets v2 is signed by 1 of the 2 keys root v1 requires for targets" in usual.problems()
    lost = next_payload(h, metadata_dir, (), **changes)
    lost.old_keys_unavailable = True
    for name in ("root1", "root2", "targets1", "targets3"):
        lost.sign(h[name].uri)
    assert lost.problems() == []
    assert ceremony.Payload.from_bytes(lost.to_bytes()).old_keys_unavailable
    manager.install(lost.role_bytes("root"), lost.role_bytes("targets"), without_old_key=True)
    client.refresh()
    assert Metadata.from_file(str(client.cache / "targets.json")).signed.version == 2


def _tables(engine):
    from sqlalchemy import delete, insert, select

    from warehouse_tuf.models import metadata

    def backup():
        with engine.connect() as conn:
            return {t: [row._asdict() for row in conn.execute(select(t))] for t in metadata.sorted_tables}

    def restore(saved):
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(delete(table))
            for table in metadata.sorted_tables:
                if saved[table]:
                    conn.execute(insert(table), saved[table])

    return backup, restore


def test_database_restored_from_before_a_model_switch_reinstalls_the_payload_then_recovers(
        db, engine, tmp_path, holders):
    """The switch's targets is published with the online key's signature added; after a restore the
    same payload is recognised in it and goes back, with the bytes clients have."""
    h = holders
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    backup, restore = _tables(engine)
    settings = make_settings(tmp_path, **{"tuf.online_signers": h["online1"].signer_entry})
    manager = TUFManager(db, settings, LocalStorage(metadata_dir), LocalStorage(tmp_path / "simple"))
    manager.bootstrap(*(v1_payload(h).role_bytes(role) for role in ("root", "targets")))
    saved = backup()
    payload = next_payload(h, metadata_dir, ("root1", "root2", "targets1", "targets2"), targets_online=True)
    manager = TUFManager(db, make_settings(tmp_path, **{"tuf.online_signers": h["online1"].signer_entry,
                                                        "tuf.targets_online": True}),
                         LocalStorage(metadata_dir), LocalStorage(tmp_path / "simple"))
    manager.install(payload.role_bytes("root"), payload.role_bytes("targets"))
    published = (metadata_dir / "2.targets.json").read_bytes()
    assert published != payload.role_bytes("targets")  # the online key signed it too
    client = Client(metadata_dir, targets_dir)
    client.refresh()

    restore(saved)  # the database forgets the switch
    db.expire_all()
    manager.install(payload.role_bytes("root"), payload.role_bytes("targets"))
    assert db.get(RoleVersion, "targets").signed_bytes == published
    manager.recover()
    (targets_dir / "f").mkdir(parents=True)
    (targets_dir / "f" / "b.whl").write_bytes(b"b")
    manager.record_target("f/b.whl", 1, {"sha256": hashlib.sha256(b"b").hexdigest()})
    db.commit()
    manager.publish()
    assert client.download("f/b.whl") == b"b"
    assert manager.status()["trust_model"]["targets_online"]


def test_database_restored_from_before_a_rotation_reinstalls_the_payload_then_recovers(db, engine, tmp_path, holders):
    from warehouse_tuf.services import InstallError, RepositoryError, StorageAheadError

    h = holders
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    backup, restore = _tables(engine)

    def manager_for(*signers):
        settings = make_settings(tmp_path, **{"tuf.online_signers": " ".join(signers)})
        return TUFManager(db, settings, LocalStorage(metadata_dir), LocalStorage(tmp_path / "simple"))

    def upload(manager, name: bytes) -> str:
        path = f"f/{name.decode()}.whl"
        (targets_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (targets_dir / path).write_bytes(name)
        manager.record_target(path, len(name), {"sha256": hashlib.sha256(name).hexdigest()})
        db.commit()
        manager.publish()
        return path

    old = manager_for(h["online1"].signer_entry)
    old.bootstrap(*(v1_payload(h).role_bytes(role) for role in ("root", "targets")))
    a = upload(old, b"a")
    saved = backup()
    payload = next_payload(h, metadata_dir, ("root1", "root2", "targets1", "targets2"),
                           online_keys=[key(h, "online2")])
    old.install(payload.role_bytes("root"), payload.role_bytes("targets"),
                (h["online1"].signer_entry, h["online2"].signer_entry))
    new = manager_for(h["online2"].signer_entry)
    b = upload(new, b"b")
    client = Client(metadata_dir, targets_dir)
    assert client.download(b) == b"b"

    restore(saved)  # the database forgets the rotation and upload b
    db.expire_all()
    with pytest.raises(StorageAheadError, match="restored from an older backup"):
        new.publish()  # the restore is reported, not that restored root v1 does not trust the new key
    with pytest.raises(RepositoryError, match="storage holds root version 2 but the database has 1"):
        new.recover()
    with pytest.raises(InstallError, match="storage already publishes 2.targets.json with other bytes"):
        new.install(payload.role_bytes("root"), payload.role_bytes("targets") + b" ")
    new.install(payload.role_bytes("root"), payload.role_bytes("targets"))  # the same bytes go back
    new.recover()
    b = upload(new, b"b")  # recorded again, as the recovery runbook says
    assert client.download(b) == b"b" and client.download(a) == b"a"
