"""End to end on the distributed host: PostgreSQL, Redis, two Celery workers and beat.

Every process is real and separate: ``python -m dev serve`` (web), two
``python -m dev worker`` and one ``python -m dev beat``, with a Redis server
of this module's own (so it can be stopped) and a PostgreSQL database of its
own. The end-to-end tests of the embedded host run here unchanged, then a
broker outage: the upload succeeds and is published once Redis is back.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from kombu import Queue
from sqlalchemy import create_engine

from dev.testing.devhost import (
    Host,
    HTTPClient,
    build_dists,
    dist_path,
    pending_count,
    start_dev_process,
    start_server,
    stop,
    twine_upload,
    wait_until,
)
from dev.testing.redis_server import RedisServer
from tests import test_e2e_embedded as embedded
from tests.conftest import _postgres_database

pytestmark = [pytest.mark.distributed, pytest.mark.e2e]

# The embedded host's fixtures and end-to-end tests, in their order, on this host.
dists, uploaded = embedded.dists, embedded.uploaded
test_wrong_credentials_are_refused_and_change_nothing = (
    embedded.test_wrong_credentials_are_refused_and_change_nothing)
test_ngclient_verifies_both_distributions_and_both_pages = (
    embedded.test_ngclient_verifies_both_distributions_and_both_pages)
test_pip_installs_from_the_simple_index = embedded.test_pip_installs_from_the_simple_index
test_tuf_status_and_publish_commands_work_against_the_host = (
    embedded.test_tuf_status_and_publish_commands_work_against_the_host)
test_deleting_the_release_then_the_project_removes_their_targets = (
    embedded.test_deleting_the_release_then_the_project_removes_their_targets)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_url():
    yield from _postgres_database()


@pytest.fixture(scope="module")
def host(tmp_path_factory, broker, postgres_url):
    root = tmp_path_factory.mktemp("distributed")
    env = {
        "TUF_DEV_DATA": str(root / "data"), "TUF_DEV_MODE": "distributed",
        "TUF_DEV_DATABASE_URL": postgres_url,
        "TUF_DEV_BROKER_URL": f"redis://127.0.0.1:{broker.port}/0",
        "TUF_BIN_COUNT": "16", "TUF_PUBLISH_INTERVAL": "2s",
    }
    server, base = start_server(env, log=root / "serve.log")
    processes = [server]
    engine = create_engine(postgres_url)
    try:
        for name in ("worker1", "worker2"):
            processes.append(start_dev_process("worker", f"--hostname={name}@%h", env=env,
                                               log=root / f"{name}.log"))
        processes.append(start_dev_process("beat", env=env, log=root / "beat.log"))
        yield Host(base, root / "data", engine, env)
    finally:
        for process in processes:
            stop(process)
        engine.dispose()


def _ran(log, task: str) -> bool:
    text = log.read_text()
    return re.search(rf"Task {re.escape(task)}\[[0-9a-f-]+\] succeeded", text) is not None


def test_beat_sends_the_periodic_publish_and_a_worker_runs_it(host, uploaded):
    logs = [host.data.parent / f"worker{n}.log" for n in (1, 2)]
    wait_until(lambda: "Sending due task" in (host.data.parent / "beat.log").read_text()
               and any(_ran(log, "warehouse_tuf.tasks.publish_pending") for log in logs),
               120, "beat to send the periodic publish and a worker to run it")


def test_both_workers_take_tasks_from_the_shared_queue(host, uploaded):
    # Redis hands a message to the worker blocked longest, so a periodic task every few
    # seconds can go to one worker for ever. A burst reaches both: each is blocked waiting.
    import celery

    app = celery.Celery(broker=host.env["TUF_DEV_BROKER_URL"], set_as_current=False)
    app.conf.update(task_queues=(Queue("default", routing_key="task.#"),),
                    task_default_queue="default", task_default_routing_key="task.default")
    logs = [host.data.parent / f"worker{n}.log" for n in (1, 2)]
    try:
        for _ in range(3):
            for _ in range(8):
                app.send_task("warehouse_tuf.tasks.publish_pending")
            try:
                wait_until(lambda: all(_ran(log, "warehouse_tuf.tasks.publish_pending") for log in logs),
                           20, "both workers to run the burst")
                return
            except AssertionError:
                continue  # one worker was busy at the time: send another burst
        raise AssertionError("three bursts of 8 tasks all ran on one worker:\n"
                             + "\n".join(log.read_text()[-2000:] for log in logs))
    finally:
        app.close()


def test_an_upload_while_the_broker_is_down_is_published_once_it_is_back(host, broker, tmp_path):
    wheel = build_dists(tmp_path, "tuf-outage-demo", "1.0")[1]
    broker.stop()
    try:
        result = twine_upload(host.base, wheel)
        assert result.returncode == 0, result.stdout + result.stderr
        time.sleep(3)  # more than one beat period: without a broker nothing publishes
        assert pending_count(host.engine) > 0
    finally:
        broker.start()
    wait_until(lambda: pending_count(host.engine) == 0, 120, "the periodic publish after the outage")
    client = HTTPClient(host.base)
    # Signed as uploaded. (The sync_file_to_cache task sent while the broker was down is
    # lost, as in Warehouse, so the file may never reach the served files storage.)
    info = client.updater(f"{host.base}/packages/", prefix=False).get_targetinfo(dist_path(wheel))
    data = wheel.read_bytes()
    assert (info.length, info.hashes["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert b"tuf_outage_demo-1.0" in client.download("tuf-outage-demo/tuf-outage-demo.html", page=True)
