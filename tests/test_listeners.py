"""The session listeners, called directly with real sessions (Warehouse's style), on both databases."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dev.models import File, Project, Release
from dev.tasks import wait_for_embedded_tasks
from tests.devhost import add_file, dev_config, pending, verify_like_a_client
from warehouse_tuf import (
    PENDING_KEY,
    forget_pending,
    queue_publish,
    record_index_changes,
)
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


def committed_file(session: Session, project="Demo", version="1.0", filename="demo-1.0.tar.gz",
                   data=b"sdist") -> File:
    file = add_file(session, project, version, filename, data)
    session.commit()
    return file


def test_new_file_records_its_target_and_the_project_pages(config, plain_session):
    file = add_file(plain_session, "Demo_Pkg", "1.0", "demo_pkg-1.0-py3-none-any.whl", b"wheel")
    record_index_changes(config, plain_session, None, None)
    path = file.path
    plain_session.commit()
    assert pending(config) == [(ADD, path, "demo-pkg"), (PAGES, None, "demo-pkg")]
    assert plain_session.info[PENDING_KEY] is True


def test_deleted_file_removes_its_target_and_renders_the_pages(config, plain_session):
    file = committed_file(plain_session)
    path = file.path
    plain_session.delete(file)
    record_index_changes(config, plain_session, None, None)
    plain_session.commit()
    assert pending(config) == [(REMOVE, path, None), (PAGES, None, "demo")]


def test_deleted_release_removes_the_release_whatever_the_cascade_deletes(config, plain_session):
    file = committed_file(plain_session)
    plain_session.delete(file.release)
    record_index_changes(config, plain_session, None, None)
    plain_session.commit()
    assert pending(config) == [(REMOVE_RELEASE, None, "demo"), (PAGES, None, "demo")]
    assert plain_session.scalar(select(File)) is None  # gone by ON DELETE CASCADE


def test_deleted_project_removes_the_project_and_renders_nothing(config, plain_session):
    file = committed_file(plain_session)
    plain_session.delete(file.release.project)
    record_index_changes(config, plain_session, None, None)
    plain_session.commit()
    assert pending(config) == [(REMOVE_PROJECT, None, "demo")]
    assert plain_session.scalar(select(Release)) is None


@pytest.mark.parametrize("change", ["yank", "unyank"])
def test_yank_and_unyank_render_the_pages_again(config, plain_session, change):
    file = committed_file(plain_session)
    file.release.yanked = change == "unyank"
    plain_session.commit()
    file.release.yanked = change == "yank"
    record_index_changes(config, plain_session, None, None)
    plain_session.commit()
    assert pending(config) == [(PAGES, None, "demo")]


def test_changes_to_other_models_record_nothing(config, plain_session):
    from warehouse_tuf.models import Target

    plain_session.add(Target(path="x/y", bin_index=0, length=1, hashes={}, kind="file"))
    record_index_changes(config, plain_session, None, None)
    assert PENDING_KEY not in plain_session.info
    plain_session.rollback()
    assert pending(config) == []


@pytest.mark.parametrize("model", [Project, Release, File])
def test_bulk_deletes_are_read_before_they_run(config, host_session, model):
    first_path = committed_file(host_session, "Demo", "1.0", "demo-1.0.tar.gz", b"one").path
    other_path = committed_file(host_session, "Other", "2.0", "other-2.0.tar.gz", b"two").path
    config.registry["dev.files"].put(other_path, b"two")
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending(config) == []
    column = {Project: Project.normalized_name == "demo", Release: Release.version == "1.0",
              File: File.filename == "demo-1.0.tar.gz"}[model]
    # Bulk deletes emit no per-object event: record_bulk_deletes runs from do_orm_execute.
    host_session.execute(delete(model).where(column).execution_options(synchronize_session=False))
    recorded = host_session.execute(
        select(PendingChange.kind, PendingChange.path, PendingChange.project).order_by(PendingChange.id)
    ).all()
    assert [tuple(row) for row in recorded] == {
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
    record_index_changes(config, plain_session, None, None)
    plain_session.commit()
    path = file.path
    config.registry["dev.files"].put(path, data)
    queue_publish(config, plain_session)
    assert PENDING_KEY not in plain_session.info
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert pending(config) == []
    assert verify_like_a_client(config, path) == data
    assert b"demo-1.0-py3-none-any.whl" in verify_like_a_client(config, "demo/demo.html", page=True)


def test_queue_publish_without_recorded_changes_queues_nothing(config, plain_session):
    add_file(plain_session, "Demo", "1.0", "demo-1.0.tar.gz", b"sdist")
    record_index_changes(config, plain_session, None, None)
    plain_session.commit()
    forget_pending(config, plain_session)
    queue_publish(config, plain_session)
    wait_for_embedded_tasks(config.registry["celery.app"])
    assert len(pending(config)) == 2  # nothing was queued, so nothing published


def test_queue_publish_never_raises_when_the_broker_is_down(tmp_path, database_url, caplog, plain_session):
    distributed = dev_config(tmp_path / "distributed", database_url, **{
        "dev.mode": "distributed", "celery.broker_url": "redis://127.0.0.1:1/0",
    })
    plain_session.info[PENDING_KEY] = True
    with caplog.at_level(logging.ERROR, logger="warehouse_tuf"):
        queue_publish(distributed, plain_session)
    assert "could not queue the publish task" in caplog.text
    distributed.registry["sqlalchemy.engine"].dispose()
