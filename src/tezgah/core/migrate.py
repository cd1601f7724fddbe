"""Alembic, driven from code: ``tezgah db upgrade|downgrade|current`` and the tests use this."""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config

from tezgah.core.db import ensure_sqlite_directory

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(database_url: str) -> Config:
    ensure_sqlite_directory(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' must be doubled for configparser interpolation (passwords may contain it).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["tezgah_database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str:
    config = alembic_config(database_url)
    buffer = io.StringIO()
    config.stdout = buffer
    command.current(config)
    return buffer.getvalue().strip()
