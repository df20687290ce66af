"""Lost storage is seen by ``tuf status`` and rebuilt by ``tuf recover`` from the database."""

from __future__ import annotations

import datetime
import json
import shutil

import pytest
from sqlalchemy import create_engine, insert, select

from dev.testing.tufclient import Client
from tests.conftest import make_configurator, make_settings
from tests.keyholders import make_holder, next_payload, public_key, run, v1_payload
from tests.test_services import publish_file, snapshot_of
from warehouse_tuf.migrations import upgrade
from warehouse_tuf.models import OfflineRoleVersion, RoleVersion, utcnow
from warehouse_tuf.services import TUFManager
from warehouse_tuf.storage import LocalStorage


@pytest.mark.parametrize("targets_online", [False, True], ids=["pep458", "targets-online"])
def test_wiped_storage_after_three_publishes_and_a_rotation_verifies_again_after_recover(db, tmp_path, targets_online):
    h = {name: make_holder(tmp_path, name)
         for name in ("root1", "root2", "root3", "targets1", "targets2", "online1", "online2")}
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"

    def manager_for(*signers) -> TUFManager:
        settings = make_settings(tmp_path, **{"tuf.online_signers": " ".join(signers),
                                              "tuf.targets_online": targets_online})
        return TUFManager(db, settings, LocalStorage(metadata_dir), LocalStorage(tmp_path / "simple"))

    def upload(manager, name: str) -> str:
        path = publish_file(manager, targets_dir, f"{name}-1.0.whl", name.encode())
        db.commit()
        assert manager.publish().published
        return path

    old = manager_for(h["online1"].signer_entry)
    old.bootstrap(*(v1_payload(h, targets_online=targets_online).role_bytes(role) for role in ("root", "targets")))
    a = upload(old, "a")
    signers = ("root1", "root2") if targets_online else ("root1", "root2", "targets1", "targets2")
    payload = next_payload(h, metadata_dir, signers, online_keys=[public_key(h, "online2")])
    # Targets online: the index signed targets 2 with both keys, then 3 with the new one.
    targets = "3.targets.json" if targets_online else "2.targets.json"
    old.install(payload.role_bytes("root"), payload.role_bytes("targets"),
                (h["online1"].signer_entry, h["online2"].signer_entry))
    manager = manager_for(h["online2"].signer_entry)
    b, c = upload(manager, "b"), upload(manager, "c")
    latest = Client(metadata_dir, targets_dir)
    assert latest.download(c) == b"c"
    held = json.loads((latest.cache / "timestamp.json").read_bytes())["signed"]["version"]
    assert manager.status(deep=True)["storage"]["missing"] == []
    published_roots = {n: (metadata_dir / n).read_bytes() for n in ("1.root.json", "2.root.json")}

    shutil.rmtree(metadata_dir)  # the published metadata folder is gone

    report = manager.status()
    assert report["storage"]["missing"] == ["1.root.json", "2.root.json", "timestamp.json",
                                            f"{report['roles'][2]['version']}.snapshot.json",
                                            targets]
    assert any(p.startswith("storage is missing 5 file(s) clients need: 1.root.json") for p in report["problems"])
    deep = manager.status(deep=True)["storage"]
    assert deep["deep"] and len(deep["missing"]) == 5 + 16

    result = manager.recover()
    assert result.timestamp_version is None and result.unrecoverable == []
    assert result.restored == ["1.root.json", "2.root.json", targets]
    assert result.publish is not None and len(result.publish.bins) == 16
    for name, data in published_roots.items():
        assert (metadata_dir / name).read_bytes() == data  # the same version, the same bytes

    fresh = Client(metadata_dir, targets_dir)  # trusts 1.root.json, walks to root 2
    assert (fresh.download(a), fresh.download(b), fresh.download(c)) == (b"a", b"b", b"c")
    assert latest.download(c) == b"c" and latest.download(a) == b"a"  # not rolled back
    now_held = json.loads((latest.cache / "timestamp.json").read_bytes())["signed"]["version"]
    assert now_held > held
    assert manager.status(deep=True)["storage"]["missing"] == []
    d = upload(manager, "d")  # publishing goes on
    assert fresh.download(d) == b"d" and latest.download(d) == b"d"


def test_database_restored_from_before_a_targets_refresh_recovers_without_rolling_clients_back(db, engine, tmp_path):
    """Targets online: storage publishes a targets the restored database never signed; recover moves
    past it and the next publish re-signs targets under a newer version."""
    from tests.test_rotation import _tables

    h = {name: make_holder(tmp_path, name) for name in ("root1", "root2", "root3", "online1")}
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    settings = make_settings(tmp_path, **{"tuf.online_signers": h["online1"].signer_entry,
                                          "tuf.targets_online": True})
    manager = TUFManager(db, settings, LocalStorage(metadata_dir), LocalStorage(tmp_path / "simple"))
    manager.bootstrap(v1_payload(h, targets_online=True).role_bytes("root"), None)
    a = publish_file(manager, targets_dir, "a-1.0.whl", b"a")
    db.commit()
    manager.publish()
    backup, restore = _tables(engine)
    saved = backup()
    manager.refresh(settings.expiry["targets"] + datetime.timedelta(days=1))  # signs targets 2
    client = Client(metadata_dir, targets_dir)
    assert client.download(a) == b"a"
    restore(saved)  # the database forgets targets 2
    db.expire_all()
    manager.recover()
    result = manager.publish()
    assert result.published
    version = db.get(RoleVersion, "targets").version
    assert version > 2  # above every version storage holds, as for the other online roles
    assert client.download(a) == b"a"  # not a rollback to the client holding targets 2
    assert json.loads((client.cache / "targets.json").read_bytes())["signed"]["version"] == version


def test_a_lost_bin_is_found_by_deep_status_and_re_signed_by_recover(repo, db, metadata_dir, tmp_path):
    targets_dir = tmp_path / "packages"
    path = publish_file(repo, targets_dir, "x-1.whl", b"x")
    db.commit()
    repo.publish()
    client = Client(metadata_dir, targets_dir)
    client.refresh()
    bin_name = next(n for n, m in snapshot_of(metadata_dir).signed.meta.items() if m.version == 2)
    lost = f"2.{bin_name}"
    (metadata_dir / lost).unlink()
    assert repo.status()["storage"]["missing"] == []  # the first things clients need are there
    deep = repo.status(deep=True)
    assert deep["storage"]["missing"] == [lost]
    assert any(lost in p for p in deep["problems"])
    result = repo.recover()
    assert result.restored == [] and result.publish is not None
    assert repo.status(deep=True)["storage"]["missing"] == []
    assert client.download(path) == b"x"
    assert Client(metadata_dir, targets_dir).download(path) == b"x"


def test_cli_status_json_and_recover_after_a_wipe(engine, tmp_path):
    config = make_configurator(engine, tmp_path)
    run(config, "bootstrap-dev")
    shutil.rmtree(tmp_path / "metadata")
    report = json.loads(run(config, "status", "--json", ok=False).output)
    assert "timestamp.json" in report["storage"]["missing"]
    assert any(p.startswith("storage is missing") for p in report["problems"])
    table = run(config, "status", "--deep", ok=False).output
    assert "problem: storage is missing 20 file(s) clients need: 1.root.json" in table
    output = run(config, "recover").output
    assert "restored 1.root.json" in output and "re-signed 16 bin(s)" in output
    report = json.loads(run(config, "status", "--deep", "--json").output)
    assert report["storage"]["missing"] == [] and report["storage"]["checked"] == 20
    assert Client(tmp_path / "metadata").refresh()


def test_migration_keeps_the_installed_root_and_targets(database_url):
    engine = create_engine(database_url)
    try:
        upgrade(engine, "0001_initial")
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(insert(RoleVersion.__table__), [
                {"name": name, "version": version, "reserved_version": version, "expires": now,
                 "bin_index": None, "length": 1, "sha256": "", "signed_bytes": data, "updated_at": now}
                for name, version, data in (("root", 3, b"root3"), ("targets", 2, b"targets2"),
                                            ("timestamp", 9, None))
            ])
        upgrade(engine)
        with engine.connect() as conn:
            kept = conn.execute(select(OfflineRoleVersion.name, OfflineRoleVersion.version,
                                       OfflineRoleVersion.signed_bytes).order_by(OfflineRoleVersion.name)).all()
        assert [tuple(row) for row in kept] == [("root", 3, b"root3"), ("targets", 2, b"targets2")]
    finally:
        engine.dispose()
