"""The development host's Pyramid app: Warehouse's conventions, warehouse-tuf enabled.

``configure(settings)`` returns the committed Configurator; ``make_wsgi_app``
the WSGI app; ``initialize(config)`` creates the tables and bootstraps the
repository with the development keys in ``dev/keys`` when it is not yet.

Settings (given to ``configure`` or from the environment; given ones win):

========================  =========================  ====================================================
setting                   environment                default
========================  =========================  ====================================================
``dev.mode``              ``TUF_DEV_MODE``           ``embedded`` (SQLite, tasks in process) or
                                                     ``distributed`` (PostgreSQL, Redis, workers, beat)
``dev.embedded_tasks``    ``TUF_DEV_EMBEDDED_TASKS`` embedded mode: where tasks run, ``thread`` (a thread of
                                                     this process) or ``process`` (a child process of its
                                                     own; ``serve`` and ``bench`` run this)
``dev.data``              ``TUF_DEV_DATA``           ``.dev-data`` in the repository (wherever the command
                                                     runs from): database (embedded), files, metadata
``dev.username``          ``TUF_DEV_USERNAME``       ``tuf-dev``: the one account for uploads/deletes
``dev.password``          ``TUF_DEV_PASSWORD``       ``tuf-dev``
``dev.admins``            ``TUF_DEV_ADMINS``         ``dev.username``: accounts that may see ``/admin/tuf/``
``database.url``          ``TUF_DEV_DATABASE_URL``   embedded: ``sqlite:///<data>/index.sqlite``;
                                                     distributed: ``postgresql+psycopg://postgres@
                                                     127.0.0.1:5432/warehouse_tuf_dev``
``celery.broker_url``     ``TUF_DEV_BROKER_URL``     distributed: ``redis://127.0.0.1:6379/10``
``files.path``            ``TUF_DEV_FILES_PATH``     ``<data>/packages``: distribution files, served
``archive_files.path``    ``TUF_DEV_ARCHIVE_PATH``   ``<data>/archive``: where uploads are stored first
``warehouse.env``         (none)                     ``Environment.development``: an enum member, as
                                                     Warehouse's (a string given is converted)
========================  =========================  ====================================================

and every ``tuf.*`` setting of the extension (``TUF_*``), whose defaults here
are: ``tuf.env`` = ``warehouse.env``'s value, metadata in ``<data>/tuf-metadata``,
``tuf.metadata_url`` the URL the running ``serve`` wrote to ``<data>/server-url``
(else ``http://127.0.0.1:$PORT/tuf/metadata/``, ``PORT`` defaulting to 8080),
hash-prefixed pages in ``<data>/tuf-simple``, the models of :mod:`dev.models`
(``JournalEntry`` included), the keys in ``dev/keys`` (INSECURE), and this
app's own session class. Pages are rendered by the extension's default
renderer, through this app's own ``/simple/<name>/`` view.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

import transaction
import zope.sqlalchemy
from pyramid.config import Configurator
from pyramid.scripting import prepare
from sqlalchemy import Integer, cast, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.orm import Session, sessionmaker

from dev.files import LocalFileStorage
from warehouse_tuf.interfaces import ITUFService
from warehouse_tuf.migrations import upgrade
from warehouse_tuf.settings import describe

DEV_KEYS_PATH = Path(__file__).parent / "keys"
#: The default data directory: in the repository, so commands find it from any directory.
DEFAULT_DATA = Path(__file__).resolve().parent.parent / ".dev-data"
#: Written by ``serve`` into the data directory: the base URL it serves on.
SERVER_URL_FILE = "server-url"


class Environment(str, enum.Enum):
    """``warehouse.env``: an enum member, as Warehouse's ``warehouse.config.Environment``."""

    production = "production"
    development = "development"


MODES = ("embedded", "distributed")
EMBEDDED_TASKS = ("thread", "process")

_HOST_SETTINGS = (
    # (setting, environment variable, default or None when it depends on others)
    ("dev.mode", "TUF_DEV_MODE", "embedded"),
    ("dev.embedded_tasks", "TUF_DEV_EMBEDDED_TASKS", "thread"),
    ("dev.data", "TUF_DEV_DATA", str(DEFAULT_DATA)),
    ("dev.username", "TUF_DEV_USERNAME", "tuf-dev"),
    ("dev.password", "TUF_DEV_PASSWORD", "tuf-dev"),
    ("database.url", "TUF_DEV_DATABASE_URL", None),
    ("celery.broker_url", "TUF_DEV_BROKER_URL", "redis://127.0.0.1:6379/10"),
    ("files.path", "TUF_DEV_FILES_PATH", None),
    ("archive_files.path", "TUF_DEV_ARCHIVE_PATH", None),
)
_TUF_ENVVARS = {key: envvar for key, envvar, _, _ in describe()}


def _tuf_envvar(key: str) -> str:
    return _TUF_ENVVARS.get(key) or "TUF_" + key.removeprefix("tuf.").replace(".", "_").upper()


def _resolve_settings(given: dict[str, Any], environ: Any) -> dict[str, Any]:
    settings = dict(given)
    for key, envvar, default in _HOST_SETTINGS:
        if key not in settings and envvar in environ:
            settings[key] = environ[envvar]
        elif key not in settings and default is not None:
            settings[key] = default
    settings.setdefault("dev.admins", environ.get("TUF_DEV_ADMINS", settings["dev.username"]))
    if settings["dev.mode"] not in MODES:
        raise ValueError(f"dev.mode (TUF_DEV_MODE) = {settings['dev.mode']!r}: use one of {MODES}")
    if settings["dev.embedded_tasks"] not in EMBEDDED_TASKS:
        raise ValueError(f"dev.embedded_tasks (TUF_DEV_EMBEDDED_TASKS) = {settings['dev.embedded_tasks']!r}: "
                         f"use one of {EMBEDDED_TASKS}")
    data = Path(settings["dev.data"]).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings["dev.data"] = str(data)
    settings.setdefault("files.path", str(data / "packages"))
    settings.setdefault("archive_files.path", str(data / "archive"))
    settings["warehouse.env"] = Environment(settings.get("warehouse.env", Environment.development))
    settings.setdefault(
        "database.url",
        f"sqlite:///{data / 'index.sqlite'}" if settings["dev.mode"] == "embedded"
        else "postgresql+psycopg://postgres@127.0.0.1:5432/warehouse_tuf_dev",
    )
    tuf_defaults = {
        # Explicit: the extension defaults to production when neither is set.
        "tuf.env": settings["warehouse.env"].value,
        "tuf.storage.path": str(data / "tuf-metadata"),
        "tuf.simple.path": str(data / "tuf-simple"),
        "tuf.dev_keys_path": str(DEV_KEYS_PATH),
        "tuf.metadata_url": f"{server_url(data, environ)}/tuf/metadata/",
        "tuf.models.project": "dev.models.Project",
        "tuf.models.release": "dev.models.Release",
        "tuf.models.file": "dev.models.File",
        "tuf.models.journal": "dev.models.JournalEntry",
    }
    for key, value in tuf_defaults.items():
        # The environment must still be able to override these (the extension reads it).
        if key not in settings and _tuf_envvar(key) not in environ:
            settings[key] = value
    # Tasks use "tm.manager_hook" requests like Warehouse: one transaction manager per request.
    settings.setdefault("tm.manager_hook", lambda request: transaction.TransactionManager())
    return settings


def server_url(data: Path, environ: Any = os.environ) -> str:
    """The base URL of the host serving ``data``: what its ``serve`` recorded, else from ``PORT``."""
    try:
        return (data / SERVER_URL_FILE).read_text().strip()
    except OSError:
        return f"http://127.0.0.1:{environ.get('PORT') or 8080}"


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE, as on PostgreSQL
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the publisher
    cursor.close()


def _include_db(config: Configurator) -> None:
    """``request.db``: a session on its own Connection, joined to ``request.tm``.

    As Warehouse's ``warehouse.db``: the session is bound to a Connection taken
    from the engine (not to the engine), registered with zope.sqlalchemy, and
    closed with its connection when the request finishes.
    """
    url = config.get_settings()["database.url"]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    config.registry["sqlalchemy.engine"] = engine

    def create_session(request: Any) -> Any:
        connection = request.registry["sqlalchemy.engine"].connect()
        session = request.registry["sqlalchemy.sessionmaker"](bind=connection)
        zope.sqlalchemy.register(session, transaction_manager=request.tm)

        @request.add_finished_callback
        def cleanup(request: Any) -> None:
            session.close()
            connection.close()

        return session

    config.add_request_method(create_session, name="db", reify=True)


#: Warehouse's second key of the journals lock (``_MONOTONIC_SEQUENCE``).
_MONOTONIC_SEQUENCE = 42


def _ensure_monotonic_journals(session: Session, flush_context: Any, instances: Any) -> None:
    """Serialize journal inserts on PostgreSQL, as Warehouse's ``ensure_monotonic_journals``.

    ``journals.id`` then grows in commit order: an advisory lock held until the
    transaction ends, taken before a flush that inserts a journal entry.
    """
    from dev.models import JournalEntry

    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite serializes writers anyway
    if any(isinstance(obj, JournalEntry) for obj in session.new):
        table_oid = cast(cast(JournalEntry.__tablename__, REGCLASS), Integer)
        session.execute(select(func.pg_advisory_xact_lock(table_oid, _MONOTONIC_SEQUENCE)))


def configure(settings: dict[str, Any] | None = None) -> Configurator:
    """The host's committed Configurator; see the module docstring for ``settings``."""
    settings = _resolve_settings(settings or {}, os.environ)
    # The app's own session class: the extension's listeners attach to it and to
    # nothing else, so several apps in one process (tests) never see each other.
    session_class = sessionmaker()
    settings.setdefault("tuf.session_class", session_class)
    config = Configurator(settings=settings)
    config.registry["sqlalchemy.sessionmaker"] = config.maybe_dotted(settings["tuf.session_class"])
    if not event.contains(config.registry["sqlalchemy.sessionmaker"], "before_flush",
                          _ensure_monotonic_journals):
        event.listen(config.registry["sqlalchemy.sessionmaker"], "before_flush", _ensure_monotonic_journals)
    config.include("pyramid_services")
    config.include("pyramid_tm")
    _include_db(config)
    config.include("dev.security")  # basic auth; the admin pages need admin:dashboard:read
    config.include("dev.tasks")
    # Uploads go to the archive; sync_file_to_cache copies them to the files storage (served).
    config.registry["dev.archive"] = LocalFileStorage(settings["archive_files.path"])
    config.registry["dev.files"] = LocalFileStorage(settings["files.path"])
    config.include("dev.rendering")
    config.include("dev.views")
    config.include("warehouse_tuf")  # the one line that enables the extension
    config.commit()
    return config


def make_wsgi_app(settings: dict[str, Any] | None = None) -> Any:
    return configure(settings).make_wsgi_app()


def initialize(config: Any) -> bool:
    """Create the host's and the extension's tables; bootstrap with dev keys if needed.

    Returns whether it bootstrapped now.
    """
    from dev.models import Base

    engine = config.registry["sqlalchemy.engine"]
    Base.metadata.create_all(engine)
    upgrade(engine)
    env = prepare(registry=config.registry)
    try:
        service = env["request"].find_service(ITUFService, context=None)
        if service.status()["bootstrapped"]:
            return False
        service.bootstrap_development()
        return True
    finally:
        env["closer"]()
