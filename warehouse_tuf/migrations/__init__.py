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
