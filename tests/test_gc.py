"""``tuf gc``: old versions go, roots and whatever the current timestamp reaches stay."""

from __future__ import annotations

import datetime
import json
import logging

from dev.testing.tufclient import Client
from tests.conftest import make_configurator
from tests.keyholders import run
from tests.test_services import publish_file, snapshot_of
from warehouse_tuf.cli import service
from warehouse_tuf.models import utcnow


def reachable(metadata_dir) -> set[str]:
    snapshot = snapshot_of(metadata_dir)
    timestamp = json.loads((metadata_dir / "timestamp.json").read_bytes())
    names = {"timestamp.json", f"{timestamp['signed']['meta']['snapshot.json']['version']}.snapshot.json"}
    return names | {f"{meta.version}.{name}" for name, meta in snapshot.signed.meta.items()}


def test_gc_deletes_long_expired_versions_only(repo, db, metadata_dir, tmp_path):
    targets_dir = tmp_path / "packages"
    paths = []
    for i in range(4):
        paths.append(publish_file(repo, targets_dir, f"p{i}.tar.gz", f"p{i}".encode()))
        db.commit()
        repo.publish()
    repo.refresh(window=datetime.timedelta(days=2))  # re-signs every bin: version 1 of each is superseded
    before = {p.name for p in metadata_dir.iterdir()}
    current = reachable(metadata_dir)

    # Within the retention window nothing goes, even superseded versions.
    assert repo.gc().deleted == []
    # Long after: every version the current timestamp does not reach goes, roots never.
    later = utcnow() + datetime.timedelta(days=30)
    assert set(repo.gc(dry_run=True, now=later).deleted) == before - current - {"1.root.json", "1.targets.json"}
    assert {p.name for p in metadata_dir.iterdir()} == before  # a dry run deletes nothing
    result = repo.gc(now=later)
    after = {p.name for p in metadata_dir.iterdir()}
    assert after == current | {"1.root.json"}
    assert len(result.deleted) == len(before) - len(after) > 16
    # A new client, trusting only 1.root.json, still updates and verifies.
    assert Client(metadata_dir, targets_dir).download(paths[2]) == b"p2"


def test_gc_command(engine, tmp_path):
    config = make_configurator(engine, tmp_path)
    run(config, "bootstrap-dev")
    with service(config) as manager:
        publish_file(manager, tmp_path / "packages", "a.tar.gz", b"a")
        manager.db.commit()
    run(config, "publish")
    result = run(config, "gc", "--dry-run")
    assert "0 version(s) to delete" in result.output


def test_gc_runs_daily_as_a_task_on_the_host(host_config, caplog):
    from dev.tasks import wait_for_embedded_tasks
    from warehouse_tuf import tasks

    schedule = host_config.registry["celery.app"].conf.beat_schedule
    assert "warehouse_tuf.tasks.gc" in {entry["task"] for entry in schedule.values()}
    storage = host_config.registry["tuf.storage"].base
    metadata = sorted(p.name for p in storage.iterdir())
    with caplog.at_level(logging.INFO, logger="warehouse_tuf"):
        host_config.task(tasks.gc).delay()
        wait_for_embedded_tasks(host_config.registry["celery.app"])
    # It ran through the host's task machinery; nothing has expired yet, so it kept every version.
    assert any(r.getMessage().startswith("tuf gc deleted=0 kept=") for r in caplog.records)
    assert sorted(p.name for p in storage.iterdir()) == metadata
