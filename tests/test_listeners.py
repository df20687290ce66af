"""The session listeners, called directly with real sessions (Warehouse's style), on both databases."""

from __future__ import annotations

import functools
import logging

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from dev.models import File, JournalEntry, Project, Release
from dev.tasks import wait_for_embedded_tasks
from dev.testing.devhost import add_file, dev_config, pending, store_served_file, verify_like_a_client
from warehouse_tuf import tasks
from warehouse_tuf.listeners import PENDING_KEY, forget_pending, queue_publish, record_additions
from warehouse_tuf.models import ChangeKind, PendingChange

ADD, REMOVE = ChangeKind.ADD.value, ChangeKind.REMOVE.value
REMOVE_RELEASE, REMOVE_PROJECT = ChangeKind.REMOVE_RELEASE.value, ChangeKind.REMOVE_PROJECT.value
PAGES = ChangeKind.RENDER_PAGES.value


@pytest.fixture
def config(host_config):
    return host_config


@pytest.fixture
def plain_session(config):
    """A session of no listener: the test calls them itself."""
    session = Session(config.registry["sqlalchemy.engine"])
    yield session
    session.close()


@pytest.fixture
def host_session(config):
    """A session of the host's class, with the extension's listeners attached."""
    session = config.registry["sqlalchemy.sessionmaker"](bind=config.registry["sqlalchemy.engine"])
    yield session
    session.close()


def recorded(session: Session) -> list[tuple[str, str | None, str | None]]:
    """(kind, path, project) of the pending changes this session's transaction sees."""
    rows = session.execute(
        select(PendingChange.kind, PendingChange.path, PendingChange.project).order_by(PendingChange.id)
    )
    return [tuple(row) for row in rows]


def committed_file(session: Session, project="Demo", version="1.0", filename="demo-1.0.tar.gz",
                   data=b"sdist", *, config=None) -> File:
    """A file committed through the host's session; its publish has run when ``config`` is given."""
    file = add_file(session, project, version, filename, data)
    session.add(JournalEntry(name=project, version=version, action=f"add source file {filename}"))
    session.commit()
    if config is not None:
        wait_for_embedded_tasks(config.registry["celery.app"])
        assert pending(config) == []
    return file


def test_new_project_file_is_recorded_with_the_name_the_database_computed(config, host_session):
    """The database computes a new project's normalized name: it is read after the flush, never None."""
    file = add_file(host_session, "Demo_Pkg", "1.0", "demo_pkg-1.0-py3-none-any.whl", b"wheel")
    host_session.add(JournalEntry(name="Demo_Pkg", version="1.0", action="new release"))
    assert file.release.project.normalized_name is None  # not before the flush
    host_session.flush()
    assert recorded(host_session) == [(ADD, file.path, "demo-pkg"), (PAGES, None, "demo-pkg")]
    assert host_session.info[PENDING_KEY] is True


def test_a_journal_entry_alone_re_signs_the_pages_it_names(config, host_session):
    """A change that only moves the serial (e.g. a role change) still changes /simple/<name>/."""
    committed_file(host_session, config=config)
    host_session.add(JournalEntry(name="Demo", action="add Owner someone"))
    host_session.flush()
    assert recorded(host_session) == [(PAGES, None, "demo")]
    host_session.commit()
    wait_for_embedded_tasks(config.registry["celery.app"])
    project = host_session.scalars(select(Project)).one()
    page = verify_like_a_client(config, "demo/demo.html", page=True)
    assert f"SERIAL {project.last_serial}".encode() in page


def test_pages_are_marked_once_per_transaction_and_again_after_a_savepoint_rolls_back(config, host_session):
    committed_file(host_session, config=config)
    for action in ("new release", "add source file"):  # two flushes, as an upload makes
        host_session.add(JournalEntry(name="Demo", version="2.0", action=action))
        host_session.flush()
    assert recorded(host_session) == [(PAGES, None, "demo")]
    savepoint = host_session.begin_nested()
    host_session.add(JournalEntry(name="Other", action="create"))
    host_session.flush()
    savepoint.rollback()
    host_session.add(JournalEntry(name="Other", action="create"))
    host_session.flush()
    assert recorded(host_session) == [(PAGES, None, "demo"), (PAGES, None, "other")]
    host_session.commit()
    host_session.add(JournalEntry(name="Demo", action="add Owner someone"))
    host_session.flush()  # a new transaction marks its pages again
    assert recorded(host_session)[-1] == (PAGES, None, "demo")
    host_session.rollback()


def test_a_change_no_page_shows_records_nothing_and_queues_nothing(config, host_session, monkeypatch):
    """Warehouse's file-cache task sets File.cached: nothing to sign, so no publish task."""
    file = committed_file(host_session, config=config)
    queued = []
    monkeypatch.setattr(config.registry["celery.app"].tasks["warehouse_tuf.tasks.publish"], "delay",
                        lambda *a, **k: queued.append(a))
    file.cached = True
    host_session.commit()
    assert pending(config) == [] and queued == []


def test_a_file_warehouse_accepts_but_the_path_rule_refuses_stays_unsigned(config, host_session, caplog):
    """Warehouse's own tests name files "who cares": the host's transaction must still commit."""
    caplog.set_level(logging.WARNING, logger="warehouse_tuf")
    file = committed_file(host_session, filename="who cares", config=config)
    assert "not signed" in caplog.text and "contains ' '" in caplog.text
    host_session.delete(file)
    host_session.add(JournalEntry(name="Demo", version="1.0", action="remove file who cares"))
    host_session.flush()
    assert recorded(host_session) == [(PAGES, None, "demo")]
    host_session.commit()
    committed_file(host_session, filename="so what", config=config)
    host_session.execute(delete(File))  # a bulk delete reads the refused path too
    assert recorded(host_session) == [(PAGES, None, "demo")]
    host_session.commit()
    assert host_session.scalar(select(File)) is None


def test_deleted_file_removes_its_target(config, host_session):
    file = committed_file(host_session, config=config)
    path = file.path
    host_session.delete(file)
    host_session.add(JournalEntry(name="Demo", version="1.0", action="remove file demo-1.0.tar.gz"))
    host_session.flush()
    assert recorded(host_session) == [(REMOVE, path, None), (PAGES, None, "demo")]


def test_deleted_release_removes_the_release_whatever_the_cascade_deletes(config, host_session):
    file = committed_file(host_session, config=config)
    host_session.delete(file.release)
    host_session.flush()
    assert recorded(host_session) == [(REMOVE_RELEASE, None, "demo")]
    assert host_session.scalar(select(File)) is None  # gone by ON DELETE CASCADE


def test_deleted_project_removes_the_project(config, host_session):
    file = committed_file(host_session, config=config)
    host_session.delete(file.release.project)
    host_session.flush()
    assert recorded(host_session) == [(REMOVE_PROJECT, None, "demo")]
    assert host_session.scalar(select(Release)) is None


def test_changes_to_other_models_record_nothing(config, host_session):
    from warehouse_tuf.models import Target

    host_session.add(Target(path="x/y", bin_index=0, length=1, hashes={}, kind="file"))
    host_session.flush()
    assert PENDING_KEY not in host_session.info
    assert recorded(host_session) == []
    host_session.rollback()


@pytest.mark.parametrize("model", [Project, Release, File])
def test_bulk_deletes_are_read_before_they_run(config, host_session, model):
    first_path = committed_file(host_session, "Demo", "1.0", "demo-1.0.tar.gz", b"one").path
    other_path = committed_file(host_session, "Other", "2.0", "other-2.0.tar.gz", b"two").path
    store_served_file(config, other_path, b"two")
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending(config) == []
    column = {Project: Project.normalized_name == "demo", Release: Release.version == "1.0",
              File: File.filename == "demo-1.0.tar.gz"}[model]
    # Bulk deletes emit no per-object event: record_bulk_deletes runs from do_orm_execute.
    host_session.execute(delete(model).where(column).execution_options(synchronize_session=False))
    assert recorded(host_session) == {
        Project: [(REMOVE_PROJECT, None, "demo")],
        Release: [(REMOVE_RELEASE, None, "demo"), (PAGES, None, "demo")],
        File: [(REMOVE, first_path, None), (PAGES, None, "demo")],
    }[model]
    host_session.commit()  # after_commit queues the publish
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending(config) == []
    assert verify_like_a_client(config, first_path) is None
    assert verify_like_a_client(config, other_path) == b"two"
    page = verify_like_a_client(config, "demo/demo.html", page=True)
    assert page is None if model is Project else b"demo-1.0.tar.gz" not in page


def test_bulk_delete_of_another_model_records_nothing(config, host_session):
    from warehouse_tuf.models import Target

    host_session.execute(delete(Target))
    assert PENDING_KEY not in host_session.info
    host_session.rollback()


def test_rolled_back_upload_leaves_nothing_pending(config, host_session):
    add_file(host_session, "Demo", "1.0", "demo-1.0.tar.gz", b"sdist")
    host_session.flush()  # the listener recorded the change, in this transaction
    assert host_session.info[PENDING_KEY] is True
    host_session.rollback()
    assert PENDING_KEY not in host_session.info
    assert pending(config) == []


def test_forget_pending_drops_the_flag(config, plain_session):
    plain_session.info[PENDING_KEY] = True
    forget_pending(config, plain_session)
    assert PENDING_KEY not in plain_session.info


def test_queue_publish_publishes_what_the_transaction_recorded(config, plain_session):
    data = b"a distribution"
    file = add_file(plain_session, "Demo", "1.0", "demo-1.0-py3-none-any.whl", data)
    plain_session.add(JournalEntry(name="Demo", version="1.0", action="new release"))
    event.listen(plain_session, "after_flush", functools.partial(record_additions, config))
    plain_session.commit()
    path = file.path
    store_served_file(config, path, data)
    queue_publish(config, plain_session)
    assert PENDING_KEY not in plain_session.info
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending(config) == []
    assert verify_like_a_client(config, path) == data
    assert b"demo-1.0-py3-none-any.whl" in verify_like_a_client(config, "demo/demo.html", page=True)


def test_queue_publish_without_recorded_changes_queues_nothing(config, plain_session):
    add_file(plain_session, "Demo", "1.0", "demo-1.0.tar.gz", b"sdist")
    event.listen(plain_session, "after_flush", functools.partial(record_additions, config))
    plain_session.commit()
    forget_pending(config, plain_session)
    queue_publish(config, plain_session)
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert len(pending(config)) == 1  # nothing was queued, so nothing published


def test_queue_publish_never_raises_when_the_broker_is_down(tmp_path, database_url, caplog, plain_session):
    distributed = dev_config(tmp_path / "distributed", database_url, **{
        "dev.mode": "distributed", "celery.broker_url": "redis://127.0.0.1:1/0",
    })
    plain_session.info[PENDING_KEY] = True
    with caplog.at_level(logging.ERROR, logger="warehouse_tuf"):
        queue_publish(distributed, plain_session)
    assert "could not queue the publish task" in caplog.text
    distributed.registry["sqlalchemy.engine"].dispose()


def test_many_uploads_from_one_process_send_a_bounded_number_of_publish_messages(config, host_session):
    """A commit sends a publish message only when no publisher is requested or running: the
    running one (still looking for changes) publishes the uploads that follow."""
    task = config.registry["tuf.publish_task"]
    sent = []
    send = task.delay

    def counted(*args, **kwargs):
        sent.append(args)
        return send(*args, **kwargs)

    task.delay = counted
    try:
        files = [(committed_file(host_session, "Many", "1.0", f"many-1.0.{n}.tar.gz", b"sdist %d" % n), n)
                 for n in range(40)]
        wait_for_embedded_tasks(config.registry["celery.app"])
    finally:
        del task.delay
    assert 1 <= len(sent) <= 5, len(sent)
    assert pending(config) == []
    for file, n in (files[0], files[-1]):
        store_served_file(config, file.path, b"sdist %d" % n)
        assert verify_like_a_client(config, file.path) == b"sdist %d" % n


def test_a_publisher_that_finds_nothing_pending_withdraws_the_request(config, host_session):
    """Left standing, the request would keep every later commit from sending a message."""
    from warehouse_tuf import publish_requests
    from warehouse_tuf.models import PublishRequest

    engine = config.registry["sqlalchemy.engine"]
    file = committed_file(host_session, config=config)
    with Session(engine) as s:
        assert s.get(PublishRequest, 1).requested_at is None
    assert publish_requests.request(engine, config.registry["tuf.settings"].publish_interval)
    assert not publish_requests.request(engine, config.registry["tuf.settings"].publish_interval)
    host_session.delete(file)
    host_session.commit()  # the request stands: this commit sends nothing ...
    assert len(pending(config)) >= 1
    config.task(tasks.publish).delay()  # ... the publisher it stands for takes it
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending(config) == []
    with Session(engine) as s:
        assert s.get(PublishRequest, 1).requested_at is None
    assert verify_like_a_client(config, file.path) is None
