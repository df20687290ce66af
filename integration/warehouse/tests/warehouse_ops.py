"""Operations on a running Warehouse done through Warehouse's own code, in a scripting request.

Run with the Warehouse venv's python, the Warehouse tree on PYTHONPATH and the
Warehouse environment (DATABASE_URL, ...)::

    python warehouse_ops.py create-user USERNAME PASSWORD EMAIL   -> prints the API token
    python warehouse_ops.py files PROJECT                          -> JSON list of File rows
    python warehouse_ops.py yank PROJECT VERSION USERNAME
    python warehouse_ops.py delete-release PROJECT VERSION USERNAME
    python warehouse_ops.py delete-project PROJECT USERNAME
    python warehouse_ops.py invite-role PROJECT USERNAME ROLE SUBMITTER
    python warehouse_ops.py accept-role PROJECT USERNAME
    python warehouse_ops.py queue-sync-file-to-cache FILE_PATH   -> the Celery task id
    python warehouse_ops.py db-check [--without-include-name]
    python warehouse_ops.py make-admin USERNAME                    -> superuser with TOTP set
    python warehouse_ops.py login-cookie USERNAME                  -> {"cookie": "session_id=..."}

Every command prints one JSON value on its last line of stdout. Nothing here
edits Warehouse: the views and helpers are called as Warehouse calls them
(``ManageProjectRelease(release, request).yank_project_release()``,
``manage_project_roles(project, request)``, ``verify_project_role(request)``, ...),
with the request carrying what the HTTP layer would give them (user, POST, session).
"""

from __future__ import annotations

import json
import sys
import time

import transaction
from packaging.utils import canonicalize_name
from pyramid.request import Request
from pyramid.scripting import prepare
from sqlalchemy import select
from warehouse.config import configure


class _Session(dict):
    """The parts of a session the manage views use (flash messages only)."""

    def __init__(self) -> None:
        super().__init__()
        self.flashed: list[tuple[str, str]] = []

    def flash(self, msg, queue="", allow_duplicate=True):
        self.flashed.append((queue, str(msg)))


def _request(config, post=None):
    blank = Request.blank("/", POST=post) if post is not None else None
    env = prepare(request=blank, registry=config.registry)
    request = env["request"]
    # As warehouse.tasks.WarehouseTask.get_request does: an explicit transaction manager, so the
    # session listeners (and the tasks queued after commit) behave as in a web request.
    request.tm = transaction.TransactionManager(explicit=True)
    request.tm.begin()
    request.session = _Session()
    # What Warehouse's NewRequest subscriber and the router give a web request (the e-mail
    # templates the manage views render read them).
    request.timings = {"new_request_start": time.time() * 1000}
    request.matched_route = None
    request.remote_addr = "127.0.0.1"
    request.remote_addr_hashed = "0" * 64
    return env, request


def _user(request, username):
    from warehouse.accounts.models import User

    return request.db.scalars(select(User).where(User.username == username)).unique().one()


def _release(request, project_name, version):
    from warehouse.packaging.models import Project, Release

    return request.db.scalars(
        select(Release).join(Project).where(
            Project.normalized_name == canonicalize_name(project_name), Release.version == version
        )
    ).unique().one()


def create_user(config, username, password, email):
    from warehouse.accounts.interfaces import IUserService
    from warehouse.accounts.models import Email
    from warehouse.macaroons import caveats
    from warehouse.macaroons.interfaces import IMacaroonService

    env, request = _request(config)
    users = request.find_service(IUserService, context=None)
    user = users.create_user(username, username, password)
    # A verified primary address, as forklift requires (no rate limiter involved: a direct row).
    request.db.add(Email(email=email, user=user, primary=True, verified=True, public=False))
    macaroons = request.find_service(IMacaroonService, context=None)
    token, _ = macaroons.create_macaroon(
        location=config.registry.settings["warehouse.domain"],
        description="warehouse-tuf end-to-end",
        scopes=[caveats.RequestUser(user_id=str(user.id))],
        user_id=user.id,
    )
    user_id = str(user.id)
    request.tm.commit()
    env["closer"]()
    return {"token": token, "user_id": user_id}


def files(config, project_name):
    from warehouse.packaging.models import File, Project, Release

    env, request = _request(config)
    rows = request.db.execute(
        select(File.filename, File.path, File.size, File.sha256_digest, File.cached, Release.version)
        .join(Release, File.release_id == Release.id).join(Project, Release.project_id == Project.id)
        .where(Project.normalized_name == canonicalize_name(project_name))
        .order_by(File.filename)
    ).all()
    request.tm.abort()
    env["closer"]()
    return [{"filename": f, "path": p, "size": s, "sha256": h.lower(), "cached": c, "version": v}
            for f, p, s, h, c, v in rows]


def _manage(config, project_name, version, username, method, post):
    from warehouse.manage.views import ManageProjectRelease

    env, request = _request(config, post)
    request.user = _user(request, username)
    release = _release(request, project_name, version)
    response = getattr(ManageProjectRelease(release, request), method)()
    flashed = request.session.flashed
    request.tm.commit()
    env["closer"]()
    return {"status": getattr(response, "status_code", None), "flashed": flashed}


def yank(config, project_name, version, username):
    return _manage(config, project_name, version, username, "yank_project_release",
                   {"confirm_yank_version": version, "yanked_reason": "end-to-end test"})


def delete_release(config, project_name, version, username):
    return _manage(config, project_name, version, username, "delete_project_release",
                   {"confirm_delete_version": version})


def delete_project(config, project_name, username):
    from warehouse.packaging.models import Project
    from warehouse.utils.project import remove_project

    env, request = _request(config)
    request.user = _user(request, username)
    project = request.db.scalars(
        select(Project).where(Project.normalized_name == canonicalize_name(project_name))
    ).unique().one()
    remove_project(project, request, flash=False)
    request.tm.commit()
    env["closer"]()
    return {"deleted": project_name}


def _project(request, project_name):
    from warehouse.packaging.models import Project

    return request.db.scalars(
        select(Project).where(Project.normalized_name == canonicalize_name(project_name))
    ).unique().one()


def invite_role(config, project_name, username, role_name, submitter):
    """Warehouse's "add collaborator" form, as the project's owner posts it.

    For a project outside an organization, ``manage_project_roles`` invites the user: a
    ``RoleInvitation`` and the journal entry ``invite <role> <username>``, nothing the simple
    page lists but its serial.
    """
    from warehouse.manage.views import manage_project_roles

    env, request = _request(config, {"username": username, "role_name": role_name})
    request.user = _user(request, submitter)
    response = manage_project_roles(_project(request, project_name), request)
    flashed = request.session.flashed
    request.tm.commit()
    env["closer"]()
    return {"status": getattr(response, "status_code", None), "flashed": flashed}


def accept_role(config, project_name, username):
    """The invited user accepts (``verify_project_role``, POST): the ``Role`` row and the journal
    entry ``accepted <role> <username>``, written by Warehouse's view."""
    from warehouse.accounts.views import verify_project_role
    from warehouse.packaging.models import RoleInvitation

    env, request = _request(config)
    user = _user(request, username)
    invitation = request.db.scalars(
        select(RoleInvitation).where(RoleInvitation.user == user,
                                     RoleInvitation.project == _project(request, project_name))
    ).unique().one()
    token = invitation.token
    request.tm.abort()
    env["closer"]()

    env, request = _request(config, {"token": token, "accept": "Accept"})
    request.user = _user(request, username)
    response = verify_project_role(request)
    flashed = request.session.flashed
    request.tm.commit()
    env["closer"]()
    return {"status": getattr(response, "status_code", None), "flashed": flashed}


def queue_sync_file_to_cache(config, path):
    """Queue Warehouse's own ``sync_file_to_cache`` task for the File at ``path``, as forklift
    queues it after an upload's commit (here no request is current: sent at once)."""
    from sqlalchemy import create_engine
    from warehouse.packaging.models import File
    from warehouse.packaging.tasks import sync_file_to_cache

    engine = create_engine(config.registry.settings["database.url"])
    try:
        with engine.connect() as conn:
            file_id = conn.execute(select(File.id).where(File.path == path)).scalar_one()
    finally:
        engine.dispose()
    result = config.task(sync_file_to_cache).delay(str(file_id))
    return {"task_id": result.id, "file_id": str(file_id)}


def db_check(config, *flags):
    """alembic's ``check`` in Warehouse's own alembic environment (``config.alembic_config()``:
    warehouse/migrations/env.py, which the patch gives the extension's ``include_name`` hook).

    ``--without-include-name`` replaces the hook with one that includes everything: what the
    same check finds without it (the control that the check looks at the extension's tables).
    """
    import alembic.command
    from alembic.util.exc import AutogenerateDiffsDetected

    import warehouse_tuf.migrations

    if "--without-include-name" in flags:
        warehouse_tuf.migrations.include_name = lambda name, type_, parent_names: True
    try:
        alembic.command.check(config.alembic_config())
    except AutogenerateDiffsDetected as exc:
        return {"ok": False, "diffs": str(exc)}
    return {"ok": True, "diffs": ""}


def make_admin(config, username):
    """An admin, as Warehouse's ``group:admins`` knows one: ``is_superuser``, with two-factor
    authentication (a TOTP secret), which every admin permission requires."""
    import os

    env, request = _request(config)
    user = _user(request, username)
    user.is_superuser = True
    user.totp_secret = os.urandom(20)
    request.tm.commit()
    env["closer"]()
    return {"admin": username}


def login_cookie(config, username):
    """A logged-in session for ``username``, as Warehouse's login stores it: ``remember()``
    through Warehouse's security policy, the session's auth and password timestamps, saved to
    Redis by Warehouse's session factory, whose ``Set-Cookie`` is returned."""
    from pyramid.interfaces import ISessionFactory
    from pyramid.response import Response
    from pyramid.security import remember
    from warehouse.accounts.interfaces import IUserService

    env, request = _request(config)
    user = _user(request, username)
    request.session = request.registry.getUtility(ISessionFactory)(request)
    remember(request, str(user.id))
    request.session.record_auth_timestamp()
    users = request.find_service(IUserService, context=None)
    request.session.record_password_timestamp(users.get_password_timestamp(user.id))
    response = Response()
    request._process_response_callbacks(response)
    request.tm.abort()
    env["closer"]()
    return {"cookie": response.headers["Set-Cookie"].split(";", 1)[0]}


COMMANDS = {"create-user": create_user, "files": files, "yank": yank,
            "delete-release": delete_release, "delete-project": delete_project,
            "invite-role": invite_role, "accept-role": accept_role,
            "queue-sync-file-to-cache": queue_sync_file_to_cache, "db-check": db_check,
            "make-admin": make_admin, "login-cookie": login_cookie}


def main(argv: list[str]) -> None:
    command, *args = argv
    config = configure()
    config.commit()
    print(json.dumps(COMMANDS[command](config, *args)))


if __name__ == "__main__":
    main(sys.argv[1:])
