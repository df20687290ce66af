"""Facts of real Warehouse that a look-alike host got wrong, each checked on its own.

Warehouse binds ``request.db`` to a Connection, keeps ``warehouse.env`` as an
``Environment`` enum member, and runs its own alembic autogenerate over the
whole database. Each test here fails without the fix it names.
"""

from __future__ import annotations

import enum

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect
from sqlalchemy.orm import Session

from dev.testing.tufclient import Client
from tests.conftest import make_configurator, make_settings
from tests.keyholders import run
from tests.test_services import publish_file
from warehouse_tuf.migrations import VERSION_TABLE, include_name, upgrade
from warehouse_tuf.services import TUFManager
from warehouse_tuf.settings import TUFSettings
from warehouse_tuf.storage import LocalStorage


class Environment(enum.StrEnum):
    """Warehouse's ``warehouse.config.Environment``."""

    production = "production"
    development = "development"


@pytest.mark.parametrize("member", list(Environment))
def test_tuf_env_follows_warehouse_env_given_as_an_enum_member(member):
    assert TUFSettings.from_settings({"warehouse.env": member}, environ={}).env == member.value


def test_tuf_env_follows_a_plain_enum_member_whose_str_is_not_its_value():
    class Env(enum.Enum):
        production = "production"

    assert str(Env.production) == "Env.production"
    assert TUFSettings.from_settings({"warehouse.env": Env.production}, environ={}).env == "production"


def test_tuf_env_is_production_when_neither_setting_is_given():
    assert TUFSettings.from_settings({}, environ={}).env == "production"
    assert TUFSettings.from_settings({}, environ={"TUF_ENV": "development"}).env == "development"


def test_a_manager_on_a_connection_bound_session_publishes_with_real_commits(engine, tmp_path):
    """Warehouse's ``request.db`` is bound to a Connection: the publish lock and its commits still work."""
    connection = engine.connect()
    session = Session(bind=connection)
    try:
        manager = TUFManager(session, make_settings(tmp_path), LocalStorage(tmp_path / "metadata"),
                             LocalStorage(tmp_path / "simple"))
        assert manager.engine is engine
        manager.bootstrap_development()
        path = publish_file(manager, tmp_path / "packages", "demo-1.0.tar.gz", b"sdist")
        session.commit()
        assert manager.publish().timestamp_version == 2
        # The caller's session never committed the manager's work: another connection sees it.
        with engine.connect() as other:
            assert other.exec_driver_sql("SELECT version FROM tuf_roles WHERE name = 'timestamp'").scalar() == 2
        assert Client(tmp_path / "metadata", tmp_path / "packages").download(path) == b"sdist"
    finally:
        session.close()
        connection.close()


def test_db_upgrade_creates_the_tables_through_a_connection_bound_request(tmp_path):
    """``tuf db upgrade`` used to run inside the CLI request's transaction, which is rolled back."""
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    config = make_configurator(engine, tmp_path)
    assert not inspect(engine).has_table("tuf_roles")
    for _ in range(2):  # idempotent
        assert "up to date" in run(config, "db", "upgrade").output
        engine.dispose()
        tables = set(inspect(engine).get_table_names())
        assert {"tuf_roles", "tuf_targets", "tuf_pending_changes", VERSION_TABLE} <= tables


def test_the_hosts_autogenerate_leaves_the_extensions_tables_alone(tmp_path):
    """Warehouse's ``db revision --autogenerate`` proposed dropping every table of the extension."""
    engine = create_engine(f"sqlite:///{tmp_path / 'host.sqlite'}")
    upgrade(engine)
    host_metadata = MetaData()  # the host's models know nothing of the extension's tables
    with engine.connect() as connection:
        plain = compare_metadata(MigrationContext.configure(connection), host_metadata)
        hooked = compare_metadata(
            MigrationContext.configure(connection, opts={"include_name": include_name}), host_metadata
        )
    assert {op[1].name for op in plain if op[0] == "remove_table"} >= {"tuf_roles", "tuf_targets"}
    assert hooked == []
