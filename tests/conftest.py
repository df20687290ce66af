"""Fixtures: real databases (SQLite and PostgreSQL), real storage, real clients.

PostgreSQL tests fail, never skip, when the server is missing: the suite is
only green when both database backends were exercised.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from warehouse_tuf.migrations import upgrade
from warehouse_tuf.services import TUFManager
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.storage import LocalStorage

POSTGRES_URL = os.environ.get("TUF_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _postgres_database():
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"tuf_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # a missing server must fail the run, not skip it
        pytest.fail(f"PostgreSQL is required at {POSTGRES_URL}: {exc}")
    url = admin.url.set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def pytest_generate_tests(metafunc):
    """Tests that use a database (``database_url``, directly or through a fixture) run on SQLite
    and on PostgreSQL, the latter marked ``postgres``; a test marked ``one_database`` (what it
    checks is decided before any query: refused input) runs once, on SQLite. Other tests run once."""
    if "database_url" not in metafunc.fixturenames:
        return
    backends = [pytest.param("sqlite", id="sqlite")]
    if metafunc.definition.get_closest_marker("one_database") is None:
        backends.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))
    metafunc.parametrize("database_url", backends, indirect=True)


@pytest.fixture
def database_url(request, tmp_path):
    """A fresh database of the backend ``pytest_generate_tests`` chose, migrated by ``engine``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite'}"
    else:
        yield from _postgres_database()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """One SQLite database migrated to the newest revision, for ``engine`` to copy."""
    path = tmp_path_factory.mktemp("migrated") / "index.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def engine(request, database_url):
    """The database with the extension's tables (``database_url`` itself stays empty)."""
    if database_url.startswith("sqlite:///"):
        # Copying a migrated database takes a tenth of migrating one (alembic loads every revision).
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), database_url.removeprefix("sqlite:///"))
    engine = create_engine(database_url)
    upgrade(engine)  # at the newest revision already on SQLite: a check
    yield engine
    engine.dispose()


def make_settings(tmp_path: Path, **overrides) -> TUFSettings:
    values = {"tuf.env": "development", "tuf.dev_keys_path": str(tmp_path / "keys"),
              "tuf.bin_count": 16, "tuf.simple_renderer": ""}
    values.update(overrides)
    return TUFSettings.from_settings(values, environ={})


@pytest.fixture
def targets_online():
    """The trust model (``tuf.targets_online``); a test module overrides this fixture with
    :func:`both_trust_models` to run its tests under both."""
    return False


@pytest.fixture
def settings(tmp_path, targets_online):
    return make_settings(tmp_path, **{"tuf.targets_online": targets_online})


#: ``targets_online = pytest.fixture(**BOTH_TRUST_MODELS)(both_trust_models)`` in a test module
#: runs its tests under PEP 458's model and the targets-online one.
BOTH_TRUST_MODELS = {"params": [False, True], "ids": ["pep458", "targets-online"]}


def both_trust_models(request) -> bool:
    return request.param


@pytest.fixture
def metadata_dir(tmp_path):
    return tmp_path / "metadata"


@pytest.fixture
def simple_dir(tmp_path):
    return tmp_path / "simple"


@pytest.fixture
def db(engine):
    session = Session(engine)
    yield session
    session.close()


@pytest.fixture
def manager(db, settings, metadata_dir, simple_dir):
    return TUFManager(db, settings, LocalStorage(metadata_dir), LocalStorage(simple_dir))


@pytest.fixture
def repo(manager):
    """A manager whose repository is bootstrapped with development keys."""
    manager.bootstrap_development()
    return manager


def make_configurator(engine, tmp_path: Path, **overrides):
    """A minimal host for the ``tuf`` CLI: pyramid_services, ``request.db`` (bound to a
    Connection, as in Warehouse), a Celery app.

    The host's session listeners are off (``tuf.enabled = false``): CLI tests
    record changes through the manager.
    """
    from celery import Celery
    from pyramid.config import Configurator

    settings = {
        "tuf.env": "development", "tuf.enabled": "false", "tuf.bin_count": 16, "tuf.simple_renderer": "",
        "tuf.dev_keys_path": str(tmp_path / "keys"),
        "tuf.storage.path": str(tmp_path / "metadata"), "tuf.simple.path": str(tmp_path / "simple"),
        "tuf.models.project": "dev.models.Project", "tuf.models.release": "dev.models.Release",
        "tuf.models.file": "dev.models.File", "tuf.models.journal": "dev.models.JournalEntry",
    }
    settings.update(overrides)
    config = Configurator(settings=settings)
    config.include("pyramid_services")
    config.registry["celery.app"] = Celery(set_as_current=False)

    def db(request):
        # Bound to a Connection, as Warehouse binds request.db (warehouse/db.py).
        connection = engine.connect()
        session = Session(bind=connection)

        def close(request):
            session.close()
            connection.close()

        request.add_finished_callback(close)
        return session

    config.add_request_method(db, "db", reify=True)
    config.include("warehouse_tuf")
    config.commit()
    return config


@pytest.fixture
def host_settings():
    """Settings of ``host_config``; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def host_config(tmp_path, database_url, host_settings):
    """The development host (dev/), configured and bootstrapped in this process."""
    from dev.tasks import wait_for_embedded_tasks
    from dev.testing.devhost import dev_config

    config = dev_config(tmp_path / "data", database_url, **host_settings)
    yield config
    wait_for_embedded_tasks(config.registry["celery.app"])
    config.registry["sqlalchemy.engine"].dispose()
