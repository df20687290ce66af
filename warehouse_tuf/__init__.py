"""warehouse-tuf: PEP 458 signed TUF metadata for Warehouse, as a Pyramid extension.

Enable it with ``config.include("warehouse_tuf")``. From then on the session
listeners below turn every upload and deletion into a pending target change,
in the same transaction, and queue the publish task after commit.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, Session

from warehouse_tuf import tasks
from warehouse_tuf.interfaces import IMetadataStorage, ITUFService
from warehouse_tuf.services import TUFManager
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.targets import file_hashes

log = logging.getLogger("warehouse_tuf")

PENDING_KEY = "warehouse_tuf.pending"


def _manager(config: Any, session: Session) -> TUFManager:
    registry = config.registry
    return TUFManager(
        session, registry["tuf.settings"],
        registry["tuf.storage"], registry["tuf.simple_storage"],
        renderer=registry["tuf.renderer"],
    )


def record_index_changes(config: Any, session: Session, flush_context: Any, instances: Any) -> None:
    """``before_flush``: record the target changes of this flush, in its transaction."""
    Project, Release, File = config.registry["tuf.models"]
    changed = [o for o in (*session.new, *session.deleted, *session.dirty)
               if isinstance(o, (Project, Release, File))]
    if not changed:
        return
    manager = _manager(config, session)
    pages: dict[str, None] = {}
    for obj in session.new:
        if isinstance(obj, File):
            release = obj.release or session.get(Release, obj.release_id)
            project = release.project.normalized_name
            manager.record_target(obj.path, obj.size, file_hashes(obj),
                                  project=project, release=release.version)
            pages[project] = None
        elif isinstance(obj, Release):
            project = obj.project or session.get(Project, obj.project_id)
            pages[project.normalized_name] = None
        elif isinstance(obj, Project):
            pages[obj.normalized_name] = None
    for obj in session.deleted:
        if isinstance(obj, File):
            manager.record_removal(obj.path)
            pages[obj.release.project.normalized_name] = None
        elif isinstance(obj, Release):
            project = obj.project.normalized_name
            # Its files may go by database cascade, without ORM delete events.
            manager.record_release_removal(project, obj.version)
            pages[project] = None
        elif isinstance(obj, Project):
            manager.record_project_removal(obj.normalized_name)
            pages.pop(obj.normalized_name, None)
    for obj in session.dirty:
        if obj in session.deleted or not session.is_modified(obj, include_collections=False):
            continue
        if isinstance(obj, Release):  # yank, unyank, and anything else shown on the page
            pages[obj.project.normalized_name] = None
        elif isinstance(obj, Project):
            pages[obj.normalized_name] = None
    for project in pages:
        manager.record_pages_changed(project)
    session.info[PENDING_KEY] = True


def record_bulk_deletes(config: Any, state: ORMExecuteState) -> None:
    """``do_orm_execute``: bulk deletes emit no per-object events; read what they delete first."""
    if not state.is_delete or state.bind_mapper is None:
        return
    Project, Release, File = config.registry["tuf.models"]
    model = state.bind_mapper.class_
    if model not in (Project, Release, File):
        return
    where = state.statement.whereclause
    session = state.session
    manager = _manager(config, session)
    if model is Project:
        names = session.execute(_where(select(Project.normalized_name), where)).scalars().all()
        for name in names:
            manager.record_project_removal(name)
    elif model is Release:
        query = select(Project.normalized_name, Release.version).join(Release.project)
        for name, version in session.execute(_where(query, where)).all():
            manager.record_release_removal(name, version)
            manager.record_pages_changed(name)
    else:
        query = select(File.path, Project.normalized_name).join(File.release).join(Release.project)
        for path, name in session.execute(_where(query, where)).all():
            manager.record_removal(path)
            manager.record_pages_changed(name)
    session.info[PENDING_KEY] = True


def _where(query: Any, where: Any) -> Any:
    return query if where is None else query.where(where)


def queue_publish(config: Any, session: Session) -> None:
    """``after_commit``: queue one publish for everything this transaction recorded."""
    if not session.info.pop(PENDING_KEY, False):
        return
    try:
        config.task(tasks.publish).delay()
    except Exception:
        # The change is committed and stays pending; the periodic safety net
        # publishes it once the broker is back. Never fail the host's request.
        log.exception("tuf: could not queue the publish task; the periodic publish will catch up")


def forget_pending(config: Any, session: Session) -> None:
    """``after_rollback``: what was recorded is gone with the transaction."""
    session.info.pop(PENDING_KEY, None)


def includeme(config: Any) -> None:
    settings = TUFSettings.from_settings(config.get_settings())
    registry = config.registry
    registry["tuf.settings"] = settings
    registry["tuf.storage"] = config.maybe_dotted(settings.storage_backend).from_location(
        settings.storage_path
    )
    registry["tuf.simple_storage"] = config.maybe_dotted(settings.simple_backend).from_location(
        settings.simple_path
    )
    registry["tuf.renderer"] = (
        config.maybe_dotted(settings.simple_renderer) if settings.simple_renderer else None
    )
    registry["tuf.models"] = tuple(
        config.maybe_dotted(settings.models[name]) for name in ("project", "release", "file")
    )
    config.register_service(registry["tuf.storage"], IMetadataStorage, name="tuf.metadata")
    config.register_service(registry["tuf.simple_storage"], IMetadataStorage, name="tuf.simple")
    config.register_service_factory(TUFManager.create_service, ITUFService)

    celery_app = registry["celery.app"]
    for task in tasks.TASKS:
        celery_app.task(ignore_result=True, acks_late=True, name=f"{task.__module__}.{task.__name__}")(task)
    registry["tuf.dispatch"] = tasks.bin_dispatch(celery_app)

    if settings.enabled:
        session_class = config.maybe_dotted(config.get_settings().get("tuf.session_class", "warehouse.db.Session"))
        listeners = (
            ("before_flush", record_index_changes),
            ("do_orm_execute", record_bulk_deletes),
            ("after_commit", queue_publish),
            ("after_rollback", forget_pending),
        )
        for name, listener in listeners:
            event.listen(session_class, name, functools.partial(listener, config))

        from celery.schedules import crontab

        config.add_periodic_task(settings.publish_interval, tasks.publish_pending)
        config.add_periodic_task(crontab(minute="*/5"), tasks.refresh)
        config.add_periodic_task(crontab(minute=30, hour=3), tasks.gc)
