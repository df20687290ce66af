"""The extension's tasks, called directly with a real request, and the host's task machinery."""

from __future__ import annotations

import pytest
import transaction
from pyramid.scripting import prepare
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from dev.tasks import EmbeddedBeat, wait_for_embedded_tasks
from dev.testing.devhost import add_file, dev_config, pending_count, store_served_file, verify_like_a_client, wait_until
from warehouse_tuf import tasks
from warehouse_tuf.listeners import record_additions
from warehouse_tuf.models import RoleVersion


@pytest.fixture
def host_settings():
    return {"tuf.refresh_window": "23h"}


@pytest.fixture
def config(host_config):
    return host_config


@pytest.fixture
def db_request(config):
    """A request as a task gets it: ``request.db`` in an explicit transaction."""
    env = prepare(registry=config.registry)
    request = env["request"]
    request.tm = transaction.TransactionManager(explicit=True)
    request.tm.begin()
    yield request
    request.tm.abort()
    env["closer"]()


def record_upload(config, data=b"a wheel", filename="demo-1.0-py3-none-any.whl") -> str:
    """Commit a File and its pending changes without queueing anything; store its bytes."""
    with Session(config.registry["sqlalchemy.engine"]) as session:
        # The extension's listener on a plain session: recorded, never queued.
        event.listen(session, "after_flush", lambda s, context: record_additions(config, s, context))
        file = add_file(session, "Demo", "1.0", filename, data, journal=True)
        session.flush()
        path = file.path
        session.commit()
    store_served_file(config, path, data)
    return path


def role_versions(config) -> dict[str, int]:
    with Session(config.registry["sqlalchemy.engine"]) as session:
        return dict(session.execute(select(RoleVersion.name, RoleVersion.version)).all())


@pytest.mark.parametrize("task", [tasks.publish, tasks.publish_pending])
def test_publish_tasks_publish_everything_pending(config, db_request, task):
    path = record_upload(config)
    task(db_request)
    assert pending_count(config) == 0
    assert verify_like_a_client(config, path) == b"a wheel"
    # the page was rendered by the host's renderer and signed, as served
    assert b"demo-1.0-py3-none-any.whl" in verify_like_a_client(config, "demo/demo.html", page=True)


def test_refresh_re_signs_the_roles_due_within_the_window(config, db_request):
    path = record_upload(config)
    tasks.publish(db_request)
    before = role_versions(config)
    tasks.refresh(db_request)
    after = role_versions(config)
    re_signed = [name for name in before if after[name] > before[name]]
    assert {"snapshot", "timestamp"} <= set(re_signed)
    assert len([name for name in re_signed if name.startswith("bins-")]) > 1
    assert verify_like_a_client(config, path) == b"a wheel"


def test_a_task_queued_in_a_transaction_is_sent_only_after_commit(config):
    path = record_upload(config)
    recorded = pending_count(config)
    assert recorded >= 2  # the file and its pages
    publish = config.task(tasks.publish)
    env = prepare(registry=config.registry)  # a current request, as in a view or a task
    try:
        env["request"].tm = transaction.TransactionManager(explicit=True)
        with pytest.raises(RuntimeError, match="abort"):
            with env["request"].tm:
                assert publish.delay() is None  # deferred, not sent
                raise RuntimeError("abort")
        wait_for_embedded_tasks(config.registry["celery.app"])
        assert pending_count(config) == recorded  # the aborted transaction sent nothing

        with env["request"].tm:
            publish.delay()
            wait_for_embedded_tasks(config.registry["celery.app"])
            assert pending_count(config) == recorded  # not before the commit
        wait_for_embedded_tasks(config.registry["celery.app"])
        assert pending_count(config) == 0
        assert verify_like_a_client(config, path) == b"a wheel"
    finally:
        env["closer"]()


def test_tasks_get_the_request_and_check_their_arguments(config):
    path = record_upload(config)
    publish = config.task(tasks.publish)
    with pytest.raises(TypeError):  # checked against the signature without the request
        publish.delay("unexpected").result(timeout=60)
    publish.delay().result(timeout=60)  # outside any request: sent at once
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending_count(config) == 0
    assert verify_like_a_client(config, path) == b"a wheel"


def test_the_extension_schedules_its_periodic_tasks(config):
    schedule = config.registry["celery.app"].conf.beat_schedule
    names = {entry["task"] for entry in schedule.values()}
    assert {"warehouse_tuf.tasks.publish_pending", "warehouse_tuf.tasks.refresh"} <= names


def test_embedded_beat_runs_the_periodic_publish(tmp_path, database_url):
    config = dev_config(tmp_path / "beat", database_url, **{"tuf.publish_interval": "1s"})
    path = record_upload(config)
    beat = EmbeddedBeat(config.registry["celery.app"], tick=0.2)
    beat.start()
    try:
        wait_until(lambda: pending_count(config) == 0, 60, "the periodic publish")
    finally:
        beat.stopped.set()
        beat.join()
        wait_for_embedded_tasks(config.registry["celery.app"])
        config.registry["sqlalchemy.engine"].dispose()
    assert verify_like_a_client(config, path) == b"a wheel"
