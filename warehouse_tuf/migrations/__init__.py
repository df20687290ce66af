"""The extension's alembic migrations, with a version table of their own.

``warehouse tuf db upgrade`` (or :func:`upgrade`) applies them; they never
touch the host's ``alembic_version`` table or its migration history.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

VERSION_TABLE = "warehouse_tuf_alembic_version"


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """An ``include_name`` hook for the *host's* alembic environment.

    Warehouse's ``warehouse db revision --autogenerate`` and ``warehouse db check``
    compare the whole database with Warehouse's models, so they would propose
    dropping the extension's tables. Passing this hook to the host's
    ``context.configure(include_name=...)`` makes them leave these tables alone.
    """
    from warehouse_tuf.models import metadata

    return not (type_ == "table" and (name in metadata.tables or name == VERSION_TABLE))


def alembic_config(bind: Engine | Connection | str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    if isinstance(bind, str):
        config.set_main_option("sqlalchemy.url", bind)
    else:
        config.attributes["connection"] = bind
    return config


def upgrade(bind: Engine | Connection | str, revision: str = "head") -> None:
    """Bring the extension's tables to ``revision``."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    else:
        command.upgrade(alembic_config(bind), revision)
