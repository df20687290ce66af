"""Bin signing fanned out to workers: disjoint batches, one snapshot, crash-safe reservations."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from pyramid.scripting import prepare
from sqlalchemy import select
from sqlalchemy.orm import Session

from dev.app import configure, initialize
from tests.conftest import _postgres_database, make_settings
from tests.devhost import start_dev_process, stop, wait_until
from tests.test_e2e_distributed import RedisServer
from tests.tufclient import Client
from warehouse_tuf import bins
from warehouse_tuf.interfaces import ITUFService
from warehouse_tuf.models import RoleVersion
from warehouse_tuf.services import TUFManager
from warehouse_tuf.storage import LocalStorage


class RecordingStorage(LocalStorage):
    """Local storage that remembers every content ever written under each name."""

    def __init__(self, base) -> None:
        super().__init__(base)
        self.history: dict[str, set[bytes]] = {}

    def put_many(self, files):
        super().put_many(files)
        for name, data in files.items():
            self.history.setdefault(name, set()).add(data)


def add_targets(manager: TUFManager, targets_dir, count: int) -> list[str]:
    paths = []
    for i in range(count):
        data = f"fan-out {i}".encode()
        digest = hashlib.blake2b(data, digest_size=32).hexdigest()
        path = f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/fan-{i}-1.0-py3-none-any.whl"
        (targets_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (targets_dir / path).write_bytes(data)
        manager.record_target(path, len(data), {"sha256": hashlib.sha256(data).hexdigest()})
        paths.append(path)
    manager.db.commit()
    manager.publish()
    return paths


@pytest.fixture
def fan(engine, db, tmp_path):
    """A coordinator whose dispatch is set per test, and a factory of worker-side managers."""
    settings = make_settings(tmp_path, **{"tuf.fan_out_batch": 4})
    storage = RecordingStorage(tmp_path / "metadata")
    coordinator = TUFManager(db, settings, storage, LocalStorage(tmp_path / "simple"))
    coordinator.bootstrap_development()

    def worker() -> TUFManager:
        return TUFManager(Session(engine), settings, storage, LocalStorage(tmp_path / "simple"))

    paths = add_targets(coordinator, tmp_path / "packages", 40)
    return coordinator, worker, paths, Client(tmp_path / "metadata", tmp_path / "packages")


def test_workers_sign_disjoint_batches_then_one_snapshot_is_published(fan):
    coordinator, worker, paths, client = fan
    client.refresh()
    batches = []

    def dispatch(sent, now, renew):
        batches.extend(sent)
        threads = [threading.Thread(target=lambda b=b: worker().sign_reserved_bins(b, now, renew)) for b in sent]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    coordinator.dispatch = dispatch
    before = coordinator.status()
    result = coordinator.resign_bins()
    assert sorted(i for batch in batches for i in batch) == list(range(16))
    assert [len(batch) for batch in batches] == [4, 4, 4, 4]
    assert result.snapshot_version == before["roles"][2]["version"] + 1
    assert coordinator.status()["problems"] == []
    for path in paths[:5]:
        assert client.download(path) is not None


def test_publish_fans_out_when_it_touches_many_bins(fan, tmp_path):
    coordinator, worker, paths, client = fan
    signed = []
    coordinator.dispatch = lambda sent, now, renew: signed.extend(worker().sign_reserved_bins(b, now, renew) for b in sent)
    more = add_targets(coordinator, tmp_path / "packages", 60)[40:]
    assert sum(signed) >= 4
    for path in more[:5]:
        assert client.download(path) is not None


def test_the_coordinator_signs_what_no_worker_took(fan):
    coordinator, worker, paths, client = fan
    client.refresh()
    coordinator.dispatch = lambda sent, now, renew: None  # every worker busy elsewhere
    coordinator.resign_bins()
    assert coordinator.status()["problems"] == []
    assert client.download(paths[0]) is not None


def test_a_worker_that_runs_after_its_coordinator_writes_nothing(fan):
    coordinator, worker, paths, client = fan
    client.refresh()
    late = []
    coordinator.dispatch = lambda sent, now, renew: late.append((sent, now, renew))
    coordinator.resign_bins()
    for sent, now, renew in late:  # the task messages are delivered only now (or twice)
        assert sum(worker().sign_reserved_bins(batch, now, renew) for batch in sent) == 0
    for name, contents in coordinator.storage.history.items():
        assert name == "timestamp.json" or len(contents) == 1, f"{name} rewritten"
    assert client.download(paths[0]) is not None


def test_a_batch_another_worker_finishes_first_is_not_written_twice(fan, monkeypatch):
    coordinator, worker, paths, client = fan
    client.refresh()
    counts = []

    def dispatch(sent, now, renew):
        first, second = worker(), worker()
        sign = bins.bin_bytes
        overtaking = []

        def overtaken(*args):  # while the first worker signs, a second one signs the same batch
            if not overtaking:
                overtaking.append(second)
                counts.append(sum(second.sign_reserved_bins(batch, now, renew) for batch in sent))
            return sign(*args)

        monkeypatch.setattr(bins, "bin_bytes", overtaken)
        counts.append(sum(first.sign_reserved_bins(batch, now, renew) for batch in sent))

    coordinator.dispatch = dispatch
    coordinator.resign_bins()
    assert counts == [16, 0]
    for name, contents in coordinator.storage.history.items():
        assert name == "timestamp.json" or len(contents) == 1, f"{name} rewritten"
    assert client.download(paths[0]) is not None


class CoordinatorDied(BaseException):
    """The coordinator process dies (as by SIGKILL: nothing catches it)."""


def test_a_broker_outage_leaves_the_coordinator_signing_alone(fan, caplog):
    coordinator, worker, paths, client = fan

    def broker_down(sent, now, renew):
        raise ConnectionError("broker down")

    coordinator.dispatch = broker_down
    result = coordinator.resign_bins()
    assert len(result.bins) == 16 and "could not send the bin signing tasks" in caplog.text
    assert coordinator.status()["problems"] == []
    assert client.download(paths[0]) is not None


@pytest.mark.parametrize("signed_by_workers", [0, 2])
def test_a_coordinator_that_dies_leaves_numbers_no_one_reuses(fan, db, signed_by_workers):
    coordinator, worker, paths, client = fan
    client.refresh()
    late = []

    def dispatch(sent, now, renew):
        for batch in sent[:signed_by_workers]:
            worker().sign_reserved_bins(batch, now, renew)
        late.extend((batch, now, renew) for batch in sent[signed_by_workers:])
        raise CoordinatorDied

    coordinator.dispatch = dispatch
    with pytest.raises(CoordinatorDied):
        coordinator.resign_bins()
    db.rollback()
    unfinished = db.scalars(select(RoleVersion.name).where(RoleVersion.reserved_version > RoleVersion.version)).all()
    assert len(unfinished) == 16 - 4 * signed_by_workers + 2  # and snapshot, timestamp
    coordinator.dispatch = None
    coordinator.publish()  # the next run re-signs the unfinished bins under fresh numbers
    for batch, now, renew in late:  # the dead run's last workers wake up: nothing is theirs any more
        assert worker().sign_reserved_bins(batch, now, renew) == 0
    for name, contents in coordinator.storage.history.items():
        assert name == "timestamp.json" or len(contents) == 1, f"{name} rewritten"
    assert coordinator.status()["problems"] == []
    assert all(client.download(path) is not None for path in paths[:5])


# -- real Celery worker processes (distributed mode) ----------------------------------------


@pytest.mark.distributed
def test_two_celery_worker_processes_sign_the_bins(tmp_path):
    redis = RedisServer(tmp_path)
    redis.start()
    database = _postgres_database()
    url = next(database)
    settings = {
        "dev.mode": "distributed", "dev.data": str(tmp_path / "data"), "database.url": url,
        "celery.broker_url": f"redis://127.0.0.1:{redis.port}/0",
        "tuf.bin_count": 16, "tuf.fan_out_batch": 2,
    }
    env = {"TUF_DEV_MODE": "distributed", "TUF_DEV_DATA": settings["dev.data"], "TUF_DEV_DATABASE_URL": url,
           "TUF_DEV_BROKER_URL": settings["celery.broker_url"], "TUF_BIN_COUNT": "16"}
    config = configure(settings)
    initialize(config)
    workers = [start_dev_process("worker", f"--hostname=fan{n}@%h", env=env, log=tmp_path / f"worker{n}.log")
               for n in (1, 2)]
    logs = [tmp_path / f"worker{n}.log" for n in (1, 2)]
    closer = None
    try:
        wait_until(lambda: all(log.exists() and " ready." in log.read_text() for log in logs), 60,
                   "both workers to be ready")
        request_env = prepare(registry=config.registry)
        closer = request_env["closer"]
        service = request_env["request"].find_service(ITUFService, context=None)
        assert service.dispatch is not None  # tasks go through the broker to the worker processes
        recorder = TUFManager(Session(config.registry["sqlalchemy.engine"]), service.settings,
                              service.storage, service.simple_storage, dispatch=service.dispatch)
        paths = add_targets(recorder, tmp_path / "packages", 10)  # this publish fans out too
        recorder.db.close()
        here = []

        def slow_coordinator(batch, now, renew):  # leaves the workers time to take their batches
            time.sleep(1)
            here.append(TUFManager.sign_reserved_bins(service, batch, now, renew))
            return here[-1]

        service.sign_reserved_bins = slow_coordinator
        result = service.resign_bins()
        assert len(result.bins) == 16 and sum(here) < 16  # the workers signed the rest
        assert service.status()["problems"] == []
        wait_until(lambda: all("warehouse_tuf.tasks.sign_bins[" in log.read_text() for log in logs),
                   30, "both workers to have run sign_bins")
        client = Client(tmp_path / "data" / "tuf-metadata", tmp_path / "packages")
        assert all(client.download(path) is not None for path in paths)
    finally:
        if closer is not None:
            closer()
        for worker in workers:
            stop(worker)
        redis.stop()
        config.registry["sqlalchemy.engine"].dispose()
        next(database, None)
