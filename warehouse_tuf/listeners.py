"""The session listeners: how a host's upload, yank or deletion becomes a pending target
change (``pending.py``) in the same transaction, and how a commit that recorded one asks
for a publish (``publish_requests.py``). ``includeme`` attaches them to the host's Session.

They only add rows and read one after commit: no manager, no signing, no storage.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import ORMExecuteState, Session

    from warehouse_tuf import pending

log = logging.getLogger("warehouse_tuf")

#: Set in ``session.info`` when this transaction recorded a pending change.
PENDING_KEY = "warehouse_tuf.pending"
#: Projects whose pages this transaction already marked for re-signing (one row is enough).
PAGES_KEY = "warehouse_tuf.pages"


def record_removals(config: Any, session: Session, flush_context: Any, instances: Any) -> None:
    """``before_flush``: deleted files, releases and projects, read while their rows still exist.

    Projects and releases are recorded as such: their files may go by database
    cascade, with no ORM delete event of their own.
    """
    from warehouse_tuf import pending

    Project, Release, File = config.registry["tuf.models"]
    rows = []
    for obj in session.deleted:
        if isinstance(obj, File):
            rows += _unless_refused(pending.target_removed, obj.path)
        elif isinstance(obj, Release):
            rows.append(pending.release_removed(obj.project.normalized_name, obj.version))
        elif isinstance(obj, Project):
            rows += _unless_refused(pending.project_removed, obj.normalized_name)
    _record(session, rows)


def record_additions(config: Any, session: Session, flush_context: Any) -> None:
    """``after_flush``: new files and new journal entries, now that the database has named them.

    A new project's ``normalized_name`` is computed by the database, so it is
    read after the flush. Every change Warehouse shows on ``/simple/<name>/``
    writes a journal entry (and moves the serial the page shows), so the pages
    are re-signed for each project named by a new journal entry.
    """
    from warehouse_tuf import pending
    from warehouse_tuf.targets import file_hashes

    File = config.registry["tuf.models"][2]
    Journal = config.registry["tuf.journal_model"]
    algorithms = config.registry["tuf.settings"].hash_algorithms
    rows: list[pending.Row] = []
    projects: dict[str, None] = {}
    for obj in session.new:
        if isinstance(obj, File):
            release = obj.release
            rows += _unless_refused(
                pending.target_added, obj.path, obj.size, file_hashes(obj), algorithms,
                project=release.project.normalized_name, release=release.version,
            )
        elif isinstance(obj, Journal) and obj.name:
            projects[pending.normalize_project_name(obj.name)] = None
    marked = session.info.setdefault(PAGES_KEY, set())
    for project in projects:
        if project not in marked:
            rows += _unless_refused(pending.pages_changed, project)
    _record(session, rows)
    marked.update(projects)


def record_bulk_deletes(config: Any, state: ORMExecuteState) -> None:
    """``do_orm_execute``: bulk deletes emit no per-object events; read what they delete first."""
    if not state.is_delete or state.bind_mapper is None:
        return
    from sqlalchemy import select

    from warehouse_tuf import pending

    Project, Release, File = config.registry["tuf.models"]
    model = state.bind_mapper.class_
    if model not in (Project, Release, File):
        return
    where = state.statement.whereclause  # type: ignore[attr-defined]  # a Delete here
    session = state.session
    rows = []
    if model is Project:
        names = session.execute(_where(select(Project.normalized_name), where)).scalars().all()
        for name in names:
            rows += _unless_refused(pending.project_removed, name)
    elif model is Release:
        query = select(Project.normalized_name, Release.version).join(Release.project)
        for name, version in session.execute(_where(query, where)).all():
            rows += [pending.release_removed(name, version), *_unless_refused(pending.pages_changed, name)]
    else:
        query = select(File.path, Project.normalized_name).join(File.release).join(Release.project)
        for path, name in session.execute(_where(query, where)).all():
            rows += [*_unless_refused(pending.target_removed, path),
                     *_unless_refused(pending.pages_changed, name)]
    _record(session, rows)


def _unless_refused(make_row: Any, *args: Any, **kwargs: Any) -> list[pending.Row]:
    """``[make_row(...)]``, or ``[]`` when the target-path rule refuses what it names.

    Warehouse decides what it accepts; a file whose path no client could fetch
    safely stays unsigned (as ``tuf backfill`` skips it) rather than failing the
    host's transaction.
    """
    from warehouse_tuf.targets import InvalidTargetError

    try:
        return [make_row(*args, **kwargs)]
    except InvalidTargetError as error:
        log.warning("tuf: not signed: %s", error)
        return []


def _where(query: Any, where: Any) -> Any:
    return query if where is None else query.where(where)


def _record(session: Session, rows: list[pending.Row]) -> None:
    if rows:
        from warehouse_tuf import pending

        pending.record(session.connection(), rows)
        session.info[PENDING_KEY] = True


def queue_publish(config: Any, session: Session) -> None:
    """``after_commit``: make sure a publisher runs after this transaction, if it recorded changes.

    One message is sent only when no publisher is requested or running: one
    that is will see this commit (``publish_requests.py``).
    """
    if not session.info.pop(PENDING_KEY, False):
        return
    from warehouse_tuf import publish_requests
    from warehouse_tuf.models import engine_of

    engine = engine_of(session.get_bind())
    registry = config.registry
    try:
        if not publish_requests.request(engine, registry["tuf.settings"].publish_interval):
            return
    except Exception:
        log.exception("tuf: could not read the publish request; queueing the publish task")
    try:
        registry["tuf.publish_task"].delay()
    except Exception:
        # The change is committed and stays pending; the periodic safety net
        # publishes it once the broker is back. Never fail the host's request.
        log.exception("tuf: could not queue the publish task; the periodic publish will catch up")
        try:
            publish_requests.withdraw(engine)  # the next commit tries again
        except Exception:
            log.exception("tuf: could not withdraw the publish request")


def forget_pending(config: Any, session: Session) -> None:
    """``after_rollback``: what was recorded is gone with the transaction."""
    session.info.pop(PENDING_KEY, None)


def forget_marked_pages(config: Any, session: Session, transaction: Any) -> None:
    """``after_transaction_end``: a transaction or savepoint ended (not a flush's): mark pages afresh.

    A savepoint rolled back takes its rows with it, so pages are marked again
    after any savepoint ends; the flushes inside one transaction share the mark.
    """
    if transaction.nested or transaction.parent is None:
        session.info.pop(PAGES_KEY, None)
