"""The TUF manager on SQLite and PostgreSQL, checked by python-tuf's ngclient."""

from __future__ import annotations

import datetime
import hashlib
import json
import threading

import pytest
from sqlalchemy import func, select
from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, SuccinctRoles

from dev.testing.tufclient import Client
from tests.conftest import BOTH_TRUST_MODELS, both_trust_models, make_settings
from warehouse_tuf import targets as targetlib
from warehouse_tuf.models import PendingChange, RoleVersion, Target
from warehouse_tuf.services import BootstrapError, NotBootstrappedError, RepositoryError, StorageAheadError, TUFManager
from warehouse_tuf.signing import SigningError, generate_key_file, load_key_file
from warehouse_tuf.storage import LocalStorage

targets_online = pytest.fixture(**BOTH_TRUST_MODELS)(both_trust_models)


def publish_file(repo: TUFManager, targets_dir, name: str, data: bytes, **kw) -> str:
    """Store a distribution file and record it; returns its target path."""
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    path = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/{name}"
    (targets_dir / path).parent.mkdir(parents=True, exist_ok=True)
    (targets_dir / path).write_bytes(data)
    repo.record_target(path, len(data), {"sha256": hashlib.sha256(data).hexdigest(), "blake2b-256": digest}, **kw)
    return path


def snapshot_of(metadata_dir) -> Metadata:
    timestamp = json.loads((metadata_dir / "timestamp.json").read_bytes())
    version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    return Metadata.from_bytes((metadata_dir / f"{version}.snapshot.json").read_bytes())


def storage_state(metadata_dir) -> dict[str, bytes]:
    if not metadata_dir.exists():
        return {}
    return {p.name: p.read_bytes() for p in metadata_dir.iterdir()}


def db_state(db) -> tuple:
    db.rollback()
    return (
        sorted((r.name, r.version, r.reserved_version) for r in db.scalars(select(RoleVersion))),
        db.scalar(select(func.count()).select_from(Target)),
        db.scalar(select(func.count()).select_from(PendingChange)),
    )


# -- bootstrap ---------------------------------------------------------------------


def test_bootstrap_creates_every_bin_and_a_client_trusts_it(repo, metadata_dir, settings):
    snapshot = snapshot_of(metadata_dir)
    bins = SuccinctRoles([], 1, settings.bin_bits, settings.bin_name_prefix)
    expected = {f"{name}.json" for name in bins.get_roles()} | {"targets.json"}
    assert set(snapshot.signed.meta) == expected
    for name in bins.get_roles():
        assert (metadata_dir / f"1.{name}.json").is_file()
    # snapshot entries carry versions only; timestamp carries length and sha256
    assert all(m.length is None and m.hashes is None for m in snapshot.signed.meta.values())
    timestamp = Metadata.from_bytes((metadata_dir / "timestamp.json").read_bytes())
    snap_bytes = (metadata_dir / "1.snapshot.json").read_bytes()
    assert timestamp.signed.snapshot_meta.length == len(snap_bytes)
    assert timestamp.signed.snapshot_meta.hashes == {"sha256": hashlib.sha256(snap_bytes).hexdigest()}
    client = Client(metadata_dir)
    client.refresh()
    assert client.timestamp_version == 1


def test_bootstrap_twice_is_refused(repo):
    with pytest.raises(BootstrapError, match="already bootstrapped"):
        repo.bootstrap_development()


class FailingStorage(LocalStorage):
    """Local storage whose ``put_many`` fails while ``failing`` says so (the disk, or the process, gone)."""

    def __init__(self, base, failing) -> None:
        super().__init__(base)
        self.failing = failing

    def put_many(self, files) -> None:
        if self.failing(files):
            raise OSError("storage went away")
        super().put_many(files)


@pytest.mark.parametrize(("bin_count", "fails_at"), [
    (16, ".snapshot.json"),  # few bins: stored with the snapshot
    (1024, ".bins-"),  # many bins: stored a chunk at a time, before the snapshot
])
def test_bootstrap_commits_its_reservation_and_the_next_publish_finishes_a_crashed_one(
    db, tmp_path, bin_count, fails_at,
):
    metadata_dir, targets_dir = tmp_path / "metadata", tmp_path / "packages"
    storage = FailingStorage(metadata_dir, lambda files: any(fails_at in name for name in files))
    manager = TUFManager(db, make_settings(tmp_path, **{"tuf.bin_count": bin_count}), storage,
                         LocalStorage(tmp_path / "simple"))
    with pytest.raises(OSError, match="storage went away"):
        manager.bootstrap_development()
    # The reservation was committed before the first online role was written: every bin, the
    # snapshot and the timestamp reserved at version 1, none published, root and targets installed.
    roles_state = db_state(db)[0]
    assert len(roles_state) == bin_count + 4
    assert {(version, reserved) for name, version, reserved in roles_state
            if name not in ("root", "targets")} == {(0, 1)}
    assert not (metadata_dir / "timestamp.json").exists()
    with pytest.raises(BootstrapError, match="already bootstrapped"):
        manager.bootstrap_development()
    storage.failing = lambda files: False
    path = publish_file(manager, targets_dir, "after-1.0.tar.gz", b"after the crash")
    db.commit()
    result = manager.publish()
    # Every bin signed; numbers 1 were handed out before the crash, so none is used again.
    assert len(result.bins) == bin_count
    assert (result.snapshot_version, result.timestamp_version) == (2, 2)
    assert not (metadata_dir / "1.snapshot.json").exists()
    client = Client(metadata_dir, targets_dir)
    assert client.download(path) == b"after the crash"
    (targets_dir / path).write_bytes(b"tampered after")
    with pytest.raises(tuf_exceptions.LengthOrHashMismatchError):
        Client(metadata_dir, targets_dir).download(path)


def test_bin_expiries_are_spread(repo, settings):
    expiries = sorted(r.expires for r in repo.db.scalars(select(RoleVersion).where(RoleVersion.bin_index.is_not(None))))
    spread = expiries[-1] - expiries[0]
    assert spread >= settings.expiry["bins"] * settings.bin_expiry_spread * 0.9
    per_hour: dict = {}
    for e in expiries:
        per_hour[e.replace(minute=0, second=0)] = per_hour.get(e.replace(minute=0, second=0), 0) + 1
    assert max(per_hour.values()) < len(expiries)


def test_bin_index_matches_python_tuf():
    for bits in (1, 4, 8, 14):
        roles = SuccinctRoles([], 1, bits, "bins")
        for i in range(200):
            path = f"ab/cd/{i:060x}/pkg-{i}.whl"
            assert roles.get_role_for_target(path) == targetlib.bin_name(targetlib.bin_index(path, bits), bits, "bins")


@pytest.mark.slow
def test_snapshot_of_16384_bins_is_under_1_mb(db, tmp_path):
    settings = make_settings(tmp_path, **{"tuf.bin_count": 16384})
    manager = TUFManager(db, settings, LocalStorage(tmp_path / "m"), LocalStorage(tmp_path / "s"))
    manager.bootstrap_development()
    snapshot = (tmp_path / "m" / "1.snapshot.json").read_bytes()
    assert len(Metadata.from_bytes(snapshot).signed.meta) == 16385
    assert len(snapshot) < 1_000_000


# -- publish -------------------------------------------------------------------------


def test_publish_then_client_downloads_and_removed_target_is_gone(repo, db, metadata_dir, tmp_path):
    targets_dir = tmp_path / "packages"
    client = Client(metadata_dir, targets_dir)
    client.refresh()
    first = publish_file(repo, targets_dir, "alpha-1.0-py3-none-any.whl", b"alpha wheel",
                         project="alpha", release="1.0")
    second = publish_file(repo, targets_dir, "beta-2.0.tar.gz", b"beta sdist", project="beta", release="2.0")
    db.commit()
    result = repo.publish()
    assert result.changes == 2 and result.timestamp_version == 2
    assert client.download(first) == b"alpha wheel"
    assert client.timestamp_version == 2
    assert client.download(second) == b"beta sdist"

    repo.record_removal(first)
    db.commit()
    assert repo.publish().timestamp_version == 3
    assert client.download(first) is None
    assert client.timestamp_version == 3
    assert client.download(second) == b"beta sdist"


def test_release_and_project_removal_drop_their_targets(repo, db, metadata_dir, tmp_path):
    targets_dir = tmp_path / "packages"
    client = Client(metadata_dir, targets_dir)
    a1 = publish_file(repo, targets_dir, "a-1.whl", b"a1", project="a", release="1")
    a2 = publish_file(repo, targets_dir, "a-2.whl", b"a2", project="a", release="2")
    b1 = publish_file(repo, targets_dir, "b-1.whl", b"b1", project="b", release="1")
    db.commit()
    repo.publish()
    repo.record_release_removal("a", "1")
    db.commit()
    repo.publish()
    assert client.download(a1) is None
    assert client.download(a2) == b"a2"
    repo.record_project_removal("a")
    db.commit()
    repo.publish()
    assert client.download(a2) is None
    assert client.download(b1) == b"b1"


@pytest.mark.slow
def test_a_thousand_additions_make_one_snapshot_and_touch_only_their_bins(db, tmp_path):
    settings = make_settings(tmp_path, **{"tuf.bin_count": 4096})
    repo = TUFManager(db, settings, LocalStorage(tmp_path / "m"), LocalStorage(tmp_path / "s"))
    repo.bootstrap_development()
    before = {r.name: r.version for r in db.scalars(select(RoleVersion))}
    paths = []
    for i in range(1000):
        data = f"file {i}".encode()
        paths.append(publish_file(repo, tmp_path / "packages", f"p{i}-1.0-py3-none-any.whl", data))
    db.commit()
    result = repo.publish()
    db.expire_all()
    after = {r.name: r.version for r in db.scalars(select(RoleVersion))}
    touched = {targetlib.bin_name(targetlib.bin_index(p, 12), 12, "bins") for p in paths}
    assert set(result.bins) == touched
    assert after["snapshot"] == before["snapshot"] + 1
    assert after["timestamp"] == before["timestamp"] + 1
    assert sorted(p.name for p in (tmp_path / "m").glob("*.snapshot.json")) == ["1.snapshot.json", "2.snapshot.json"]
    for name, version in after.items():
        if name.startswith("bins-"):
            assert version == (2 if name in touched else 1), name
    client = Client(tmp_path / "m", tmp_path / "packages")
    assert client.download(paths[0]) == b"file 0"
    assert client.download(paths[999]) == b"file 999"


def test_publish_with_nothing_pending_writes_nothing(repo, metadata_dir):
    before = storage_state(metadata_dir)
    assert not repo.publish().published
    assert storage_state(metadata_dir) == before


def test_refresh_resigns_expiring_roles_and_client_follows(repo, db, metadata_dir, settings):
    client = Client(metadata_dir)
    client.refresh()
    result = repo.refresh(window=settings.expiry["bins"] * 0.75)
    # bins expire between 12h and 24h from bootstrap: those within 18h are due
    assert 0 < len(result.bins) < settings.bin_count
    assert result.timestamp_version == 2
    client.refresh()
    assert client.timestamp_version == 2
    db.expire_all()
    for row in db.scalars(select(RoleVersion).where(RoleVersion.name.in_(result.bins))):
        assert row.version == 2
        assert row.expires > datetime.datetime.now(datetime.UTC) + settings.expiry["bins"] * 0.99
    # nothing due any more within the same window
    assert repo.refresh(window=datetime.timedelta(hours=1)).bins == []


def test_refresh_resigns_targets_near_expiry_only_when_the_online_key_holds_it(
        repo, db, metadata_dir, tmp_path, settings, targets_online):
    targets_dir = tmp_path / "packages"
    path = publish_file(repo, targets_dir, "kept-1.0.tar.gz", b"kept")
    db.commit()
    repo.publish()
    client = Client(metadata_dir, targets_dir)
    assert client.download(path) == b"kept"
    # A window reaching past targets' expiry: targets is due, as it would be in its last hours.
    result = repo.refresh(window=settings.expiry["targets"] + datetime.timedelta(days=1))
    db.expire_all()
    row = db.get(RoleVersion, "targets")
    if targets_online:
        assert row.version == 2 and row.reserved_version == 2
        assert row.expires > datetime.datetime.now(datetime.UTC) + settings.expiry["targets"] * 0.99
        targets = Metadata.from_bytes((metadata_dir / "2.targets.json").read_bytes())
        assert set(targets.signatures) == set(targets.signed.delegations.succinct_roles.keyids)
        assert snapshot_of(metadata_dir).signed.meta["targets.json"].version == 2
    else:  # offline targets: only a ceremony renews it (status warns 60 days ahead)
        assert row.version == 1 and not (metadata_dir / "2.targets.json").exists()
    assert result.published
    assert client.download(path) == b"kept"
    assert json.loads((client.cache / "targets.json").read_bytes())["signed"]["version"] == row.version
    # A tampered targets is refused by a client that has not seen it yet.
    if targets_online:
        data = (metadata_dir / "2.targets.json").read_bytes()
        (metadata_dir / "2.targets.json").write_bytes(data.replace(b'"version":2', b'"version":3'))
        with pytest.raises(tuf_exceptions.RepositoryError):
            Client(metadata_dir, targets_dir).download(path)


def test_status_reports_versions_pending_and_last_publish(repo, db):
    repo.record_target("x/y.whl", 3, {"sha256": "a" * 64})
    db.commit()
    report = repo.status()
    assert report["bootstrapped"] and report["pending"] == 1 and report["problems"] == []
    versions = {r["role"]: r["version"] for r in report["roles"]}
    assert versions == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    assert report["bins"]["count"] == 16
    repo.publish()
    report = repo.status()
    assert report["pending"] == 0 and report["targets"] == 1
    assert report["roles"][3]["version"] == 2


def test_publish_before_bootstrap_is_a_clear_error(manager):
    with pytest.raises(NotBootstrappedError, match="not bootstrapped"):
        manager.publish()


# -- what a client rejects -------------------------------------------------------------


def test_client_rejects_a_changed_byte_in_a_bin(repo, db, metadata_dir, tmp_path):
    targets_dir = tmp_path / "packages"
    path = publish_file(repo, targets_dir, "c-1.whl", b"c1")
    db.commit()
    repo.publish()
    name = targetlib.bin_name(targetlib.bin_index(path, 4), 4, "bins")
    bin_file = metadata_dir / f"2.{name}.json"
    data = bytearray(bin_file.read_bytes())
    data[data.index(b'"length":') + 9] ^= 0x01  # one byte of the signed target length
    bin_file.write_bytes(bytes(data))
    with pytest.raises(tuf_exceptions.RepositoryError):
        Client(metadata_dir, targets_dir).download(path)


def test_client_rejects_an_old_snapshot_served_again(repo, db, metadata_dir, tmp_path):
    targets_dir = tmp_path / "packages"
    client = Client(metadata_dir, targets_dir)
    client.refresh()
    publish_file(repo, targets_dir, "d-1.whl", b"d1")
    db.commit()
    repo.publish()
    old_timestamp = (metadata_dir / "timestamp.json").read_bytes()
    publish_file(repo, targets_dir, "d-2.whl", b"d2")
    db.commit()
    repo.publish()
    client.refresh()
    assert client.timestamp_version == 3
    (metadata_dir / "timestamp.json").write_bytes(old_timestamp)  # replay the older state
    with pytest.raises(tuf_exceptions.BadVersionNumberError):
        client.refresh()


def test_client_rejects_a_tampered_target_file(repo, db, metadata_dir, tmp_path):
    targets_dir = tmp_path / "packages"
    path = publish_file(repo, targets_dir, "e-1.whl", b"genuine")
    db.commit()
    repo.publish()
    (targets_dir / path).write_bytes(b"evil!!!")
    with pytest.raises(tuf_exceptions.LengthOrHashMismatchError):
        Client(metadata_dir, targets_dir).download(path)


# -- bad input changes nothing ---------------------------------------------------------


@pytest.mark.one_database
@pytest.mark.parametrize(
    ("path", "hashes", "message"),
    [
        ("ab/../etc/passwd", {"sha256": "a" * 64}, "'..' segment"),
        ("/etc/passwd", {"sha256": "a" * 64}, "absolute"),
        ("ab//cd.whl", {"sha256": "a" * 64}, "empty segment"),
        ("ab/./cd.whl", {"sha256": "a" * 64}, "'.' segment"),
        ("ab\\cd.whl", {"sha256": "a" * 64}, "backslash"),
        ("ab/\x00.whl", {"sha256": "a" * 64}, "control character"),
        ("a" * 2000, {"sha256": "a" * 64}, "limit is 1024"),
        (b"ab/\xff.whl", {"sha256": "a" * 64}, "not valid UTF-8"),
        ("ab/cd.whl", {"blake2b-256": "a" * 64}, "no sha256 hash"),
        ("ab/cd.whl", {"sha256": "xyz"}, "not valid hex"),
    ],
)
def test_bad_targets_are_refused_and_change_nothing(repo, db, metadata_dir, path, hashes, message):
    before_db, before_storage = db_state(db), storage_state(metadata_dir)
    with pytest.raises(targetlib.InvalidTargetError, match=message):
        repo.record_target(path, 10, hashes)
    db.commit()
    repo.publish()
    assert db_state(db) == before_db
    assert storage_state(metadata_dir) == before_storage


def _offline_keys(tmp_path, manager, overrides=None):
    keys = {name: load_key_file(_keyfile(tmp_path, name)) for name in ("root1", "root2", "targets", "online")}
    args = dict(  # noqa: C408 (keyword arguments read as the call they are for)
        root_keys=[keys["root1"].public_key, keys["root2"].public_key], root_threshold=2,
        targets_keys=[keys["targets"].public_key], targets_threshold=1,
        online_keys=[keys["online"].public_key], online_threshold=1,
        sign_with=[keys["root1"], keys["root2"]], sign_targets_with=[keys["targets"]],
    )
    args.update(overrides(keys) if overrides else {})
    return keys, manager.build_offline_roles(**args)


def _keyfile(tmp_path, name):
    path = tmp_path / "ceremony" / f"{name}.pem"
    if not path.exists():
        generate_key_file(path)
    return path


def _manager_with_online(db, tmp_path, signers):
    settings = make_settings(tmp_path, **{"tuf.online_signers": " ".join(signers), "tuf.dev_keys_path": ""})
    return TUFManager(db, settings, LocalStorage(tmp_path / "metadata"), LocalStorage(tmp_path / "simple"))


def test_bootstrap_with_offline_keys_and_configured_online_signer(db, tmp_path):
    online = _keyfile(tmp_path, "online")
    manager = _manager_with_online(db, tmp_path, [f"file2:{online}"])
    _, (root, targets) = _offline_keys(tmp_path, manager)
    manager.bootstrap(root, targets)
    path = publish_file(manager, tmp_path / "packages", "f-1.whl", b"f1")
    db.commit()
    manager.publish()
    assert Client(tmp_path / "metadata", tmp_path / "packages").download(path) == b"f1"


def test_two_online_keys_with_threshold_two(db, tmp_path):
    first, second = _keyfile(tmp_path, "online"), _keyfile(tmp_path, "online2")
    k1, k2 = load_key_file(first).public_key, load_key_file(second).public_key
    manager = _manager_with_online(db, tmp_path, [f"{k1.keyid}=file2:{first}", f"{k2.keyid}=file2:{second}"])
    _, (root, targets) = _offline_keys(tmp_path, manager, lambda keys: {"online_keys": [k1, k2], "online_threshold": 2})
    manager.bootstrap(root, targets)
    path = publish_file(manager, tmp_path / "packages", "g-1.whl", b"g1")
    db.commit()
    manager.publish()
    bin_name = targetlib.bin_name(targetlib.bin_index(path, 4), 4, "bins")
    assert len(Metadata.from_bytes((tmp_path / "metadata" / f"2.{bin_name}.json").read_bytes()).signatures) == 2
    assert Client(tmp_path / "metadata", tmp_path / "packages").download(path) == b"g1"


def test_bad_bootstraps_are_refused_and_change_nothing(db, tmp_path):
    online = _keyfile(tmp_path, "online")
    manager = _manager_with_online(db, tmp_path, [f"file2:{online}"])
    metadata_dir = tmp_path / "metadata"
    stranger = load_key_file(_keyfile(tmp_path, "stranger"))
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)

    def expired_root(keys):
        return {"sign_with": []}

    cases = []
    # an online key that root does not trust
    untrusted = _offline_keys(tmp_path, manager, lambda k: {"online_keys": [stranger.public_key]})[1]
    cases.append(("untrusted online", untrusted, SigningError, "cannot sign for trusted key"))
    # root not signed to its threshold
    cases.append(("threshold", _offline_keys(tmp_path, manager, lambda k: {"sign_with": [k["root1"]]})[1],
                  BootstrapError, "signed by 1 of the 2 keys"))
    # expired root
    keys, (root, targets) = _offline_keys(tmp_path, manager)
    md = Metadata.from_bytes(root)
    md.signed.expires = past
    md.signatures.clear()
    md.sign(keys["root1"], append=True)
    md.sign(keys["root2"], append=True)
    cases.append(("expired", (md.to_bytes(), targets), BootstrapError, "root v1 expired"))
    # a bin count that differs from the settings, and one that is not a power of two
    other = TUFManager(db, make_settings(tmp_path, **{"tuf.bin_count": 32}), manager.storage, manager.simple_storage)
    cases.append(("bins", _offline_keys(tmp_path, other)[1], BootstrapError, "32 bins"))
    cases.append(("garbage", (b"{not json", targets), BootstrapError, "not valid TUF metadata"))
    for label, (root_bytes, targets_bytes), error, message in cases:
        before_db, before_storage = db_state(db), storage_state(metadata_dir)
        with pytest.raises(error, match=message):
            manager.bootstrap(root_bytes, targets_bytes)
        assert db_state(db) == before_db, label
        assert storage_state(metadata_dir) == before_storage, label


def test_bin_count_not_a_power_of_two_is_a_setting_error(tmp_path):
    from warehouse_tuf.settings import ConfigurationError

    with pytest.raises(ConfigurationError, match="power of two"):
        make_settings(tmp_path, **{"tuf.bin_count": 300})


def test_online_key_mismatch_after_bootstrap_publishes_nothing(repo, db, metadata_dir, tmp_path):
    repo.record_target("x/y.whl", 3, {"sha256": "a" * 64})
    db.commit()
    before_db, before_storage = db_state(db), storage_state(metadata_dir)
    wrong = _keyfile(tmp_path, "wrong")
    broken = TUFManager(db, make_settings(tmp_path, **{"tuf.online_signers": f"file2:{wrong}"}),
                        repo.storage, repo.simple_storage)
    with pytest.raises(SigningError, match="cannot sign for trusted key"):
        broken.publish()
    assert db_state(db) == before_db
    assert storage_state(metadata_dir) == before_storage


def test_development_keys_refused_in_production(db, tmp_path):
    dev = TUFManager(db, make_settings(tmp_path), LocalStorage(tmp_path / "m"), LocalStorage(tmp_path / "s"))
    dev.bootstrap_development()
    prod = TUFManager(
        db,
        make_settings(tmp_path, **{"tuf.env": "production",
                                   "tuf.online_signers": f"file2:{tmp_path / 'keys' / 'online.pem'}"}),
        dev.storage, dev.simple_storage,
    )
    with pytest.raises(RepositoryError, match="refused in production"):
        prod.bootstrap_development()
    with pytest.raises(SigningError, match="refused in production"):
        prod.publish()


# -- crashes, restores, concurrency ------------------------------------------------------


class FlakyStorage(LocalStorage):
    """Fails the write of one chosen name, once; remembers every byte ever written."""

    def __init__(self, base, fail_on: str) -> None:
        super().__init__(base)
        self.fail_on = fail_on
        self.history: dict[str, set[bytes]] = {}

    def put_many(self, files):
        if self.fail_on and any(n.endswith(self.fail_on) for n in files):
            self.fail_on = ""
            partial = {n: d for n, d in files.items() if not n.endswith("timestamp.json")}
            self._write(dict(list(partial.items())[: len(partial) // 2]))
            raise OSError("disk full")
        self._write(files)

    def _write(self, files):
        super().put_many(files)
        for name, data in files.items():
            self.history.setdefault(name, set()).add(data)


@pytest.mark.parametrize("fail_on", ["snapshot.json", "timestamp.json", ".json"])
def test_a_publish_that_dies_midway_never_reuses_a_version(repo, db, metadata_dir, tmp_path, fail_on):
    targets_dir = tmp_path / "packages"
    client = Client(metadata_dir, targets_dir)
    client.refresh()
    flaky = FlakyStorage(metadata_dir, fail_on)
    manager = TUFManager(db, repo.settings, flaky, repo.simple_storage)
    paths = [publish_file(manager, targets_dir, f"h-{i}.whl", f"h{i}".encode()) for i in range(5)]
    db.commit()
    with pytest.raises(OSError, match="disk full"):
        manager.publish()
    client.refresh()  # whatever was half-written, the client still has a valid state
    result = manager.publish()
    assert result.changes == 5
    for path in paths:
        assert client.download(path) is not None
    for name, contents in flaky.history.items():
        if name != "timestamp.json":
            assert len(contents) == 1, f"{name} was written with two different contents"
    versions = [json.loads(c)["signed"]["version"] for c in flaky.history.get("timestamp.json", ())]
    assert len(versions) == len(set(versions))


def test_database_restored_from_an_old_backup_is_detected(repo, db, metadata_dir):
    backup = [(r.name, r.version, r.reserved_version) for r in db.scalars(select(RoleVersion))]
    repo.record_target("x/y.whl", 3, {"sha256": "a" * 64})
    db.commit()
    repo.publish()
    for name, version, reserved in backup:  # the role table as the old backup had it
        row = db.get(RoleVersion, name)
        row.version, row.reserved_version = version, reserved
    repo.record_target("x/z.whl", 3, {"sha256": "b" * 64})
    db.commit()
    before = storage_state(metadata_dir)
    with pytest.raises(StorageAheadError, match="restored from an older backup"):
        repo.publish()
    assert storage_state(metadata_dir) == before


def test_concurrent_publishers_take_turns(repo, db, engine, settings, metadata_dir, tmp_path):
    from sqlalchemy.orm import Session

    targets_dir = tmp_path / "packages"
    client = Client(metadata_dir, targets_dir)
    client.refresh()
    paths = [publish_file(repo, targets_dir, f"i-{i}.whl", f"i{i}".encode()) for i in range(40)]
    db.commit()
    errors = []

    def worker():
        session = Session(engine)
        try:
            TUFManager(session, settings, repo.storage, repo.simple_storage).publish()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert repo.status()["pending"] == 0
    for path in paths[:3] + paths[-3:]:
        assert client.download(path) is not None


# -- simple pages --------------------------------------------------------------------------


def test_page_targets_are_signed_and_stored_under_hash_prefixed_names(db, tmp_path):
    pages = {"demo": targetlib.SimplePages(html=b"<html>demo</html>", json=b'{"name": "demo"}')}
    settings = make_settings(tmp_path)
    manager = TUFManager(db, settings, LocalStorage(tmp_path / "metadata"), LocalStorage(tmp_path / "simple"),
                         renderer=lambda request, name: pages.get(name))
    manager.bootstrap_development()
    manager.record_pages_changed("demo")
    db.commit()
    manager.publish()
    client = Client(tmp_path / "metadata", simple=tmp_path / "simple")
    from dev.testing.tufclient import SIMPLE_URL

    assert client.download("demo/demo.html", target_base_url=SIMPLE_URL, prefix=True) == b"<html>demo</html>"
    assert client.download("demo/demo.json", target_base_url=SIMPLE_URL, prefix=True) == b'{"name": "demo"}'
    del pages["demo"]
    manager.record_project_removal("demo")
    db.commit()
    manager.publish()
    assert client.download("demo/demo.html", target_base_url=SIMPLE_URL, prefix=True) is None
