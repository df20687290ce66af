"""Backfill: every file and page the host already has becomes a signed target."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dev.models import Base as HostBase, File, Project, Release, file_path
from dev.testing.tufclient import SIMPLE_URL, Client
from tests.conftest import make_configurator, make_settings
from tests.keyholders import run
from warehouse_tuf.models import RoleVersion, Target
from warehouse_tuf.services import TUFManager
from warehouse_tuf.storage import LocalStorage
from warehouse_tuf.targets import SimplePages


class Interrupted(Exception):
    pass


def render(request, name: str) -> SimplePages:
    return SimplePages(html=f"<html>{name}</html>".encode(), json=f'{{"name": "{name}"}}'.encode())


def add_host_files(engine, targets_dir, projects: int, files_each: int) -> list[str]:
    """Projects with one release of ``files_each`` files, stored under their Warehouse paths."""
    HostBase.metadata.create_all(engine)
    paths = []
    with Session(engine) as s:
        for p in range(projects):
            project = Project(name=f"Proj_{p}")  # normalized_name: the database's ("proj-<p>")
            release = Release(project=project, version="1.0")
            for f in range(files_each):
                data = f"contents {p} {f}".encode()
                blake2 = hashlib.blake2b(data, digest_size=32).hexdigest()
                filename = f"proj_{p}-1.0-{f}-py3-none-any.whl"
                path = file_path(blake2, filename)
                (targets_dir / path).parent.mkdir(parents=True, exist_ok=True)
                (targets_dir / path).write_bytes(data)
                release.files.append(File(
                    python_version="py3", packagetype="bdist_wheel", filename=filename, path=path,
                    size=len(data), md5_digest=hashlib.md5(data).hexdigest(),
                    sha256_digest=hashlib.sha256(data).hexdigest(), blake2_256_digest=blake2,
                ))
                paths.append(path)
            s.add(project)
        s.commit()
    return paths


@pytest.fixture
def host(engine, db, tmp_path):
    targets_dir = tmp_path / "packages"
    paths = add_host_files(engine, targets_dir, projects=6, files_each=5)
    manager = TUFManager(
        db, make_settings(tmp_path), LocalStorage(tmp_path / "metadata"), LocalStorage(tmp_path / "simple"),
        renderer=render, models=(Project, Release, File),
    )
    manager.bootstrap_development()
    return manager, paths, Client(tmp_path / "metadata", targets_dir, tmp_path / "simple")


def target_count(db) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(Target))


def test_backfill_signs_every_file_and_page_and_a_client_verifies_them(host, db):
    manager, paths, client = host
    client.refresh()
    seen = []
    result = manager.backfill(batch_files=7, batch_bins=4, progress=lambda *a: seen.append(a))
    assert (result.files, result.pages, result.skipped) == (30, 6, [])
    assert target_count(db) == 30 + 12
    # batched: files 7 at a time, bins 4 at a time, each bin batch its own publish
    assert [done for stage, done, _ in seen if stage == "files"] == [7, 14, 21, 28, 30]
    bin_batches = [done for stage, done, _ in seen if stage == "bins"]
    assert bin_batches == list(range(4, result.bins, 4)) + [result.bins]
    assert manager.status()["roles"][3]["version"] == 1 + len(bin_batches)  # timestamp
    assert manager.status()["problems"] == []
    for path in paths[:3] + paths[-3:]:
        assert client.download(path) is not None
    assert client.download("proj-4/proj-4.json", target_base_url=SIMPLE_URL, prefix=True) == b'{"name": "proj-4"}'


def test_backfill_resumes_where_it_was_interrupted(host, db):
    manager, paths, client = host

    def interrupt(stage, done, total):
        if stage == "files" and done >= 10:
            raise Interrupted

    with pytest.raises(Interrupted):
        manager.backfill(batch_files=10, progress=interrupt)
    assert target_count(db) == 10  # the first batch is committed...
    marked = db.scalar(select(func.count()).select_from(RoleVersion).where(
        RoleVersion.reserved_version > RoleVersion.version))
    assert marked > 0  # ...with its bins marked for re-signing
    result = manager.backfill(batch_files=10)
    assert (result.files, result.pages) == (20, 6)  # only what was left
    assert target_count(db) == 42
    for path in paths:
        assert client.download(path) is not None


def test_backfill_again_changes_nothing(host, db, tmp_path):
    manager, paths, client = host
    manager.backfill()
    before = sorted(p.name for p in (tmp_path / "metadata").iterdir())
    again = manager.backfill()
    assert (again.files, again.pages, again.bins) == (0, 0, 0)
    assert sorted(p.name for p in (tmp_path / "metadata").iterdir()) == before
    assert client.download(paths[0]) is not None


def test_a_host_file_that_is_not_a_valid_target_is_skipped_with_its_reason(host, engine, db):
    manager, paths, client = host
    with Session(engine) as s:
        release = s.scalars(select(Release)).first()
        release.files.append(File(
            python_version="py3", packagetype="sdist", filename="evil.tar.gz", path="ab/../evil.tar.gz",
            size=1, md5_digest="0" * 32, sha256_digest="1" * 64, blake2_256_digest="2" * 64,
        ))
        s.commit()
    result = manager.backfill()
    assert result.files == 30
    assert result.skipped == ["target path 'ab/../evil.tar.gz' has a '..' segment"]
    assert client.download(paths[-1]) is not None


def test_tuf_backfill_command_shows_progress_and_stages(engine, tmp_path):
    paths = add_host_files(engine, tmp_path / "packages", projects=3, files_each=4)
    config = make_configurator(engine, tmp_path)
    config.registry["tuf.dispatch"] = None  # no workers: the bins are signed in process
    run(config, "bootstrap-dev")
    output = run(config, "backfill", "--batch-files", "5", "--batch-bins", "4").output
    assert "files" in output and "bins" in output  # the progress bars' labels
    assert "backfilled 12 file(s) and 0 project page(s); re-signed " in output
    assert "(files " in output and ", bins " in output
    client = Client(tmp_path / "metadata", tmp_path / "packages")
    assert all(client.download(path) is not None for path in paths)
    assert "backfilled 0 file(s)" in run(config, "backfill").output


def test_tuf_backfill_command_refuses_an_unbootstrapped_repository(engine, tmp_path):
    add_host_files(engine, tmp_path / "packages", projects=1, files_each=1)
    config = make_configurator(engine, tmp_path)
    result = run(config, "backfill", ok=False)
    assert result.output.strip().splitlines()[-1] == (
        "error: the TUF repository is not bootstrapped yet (run 'tuf bootstrap')")
