"""Alembic migrations, configured in code (no ``alembic.ini``), so they run from an installed package.

The app, the worker and the CLI call :func:`upgrade` (through :func:`fakevoice.store.init_db`) at
start. Two processes starting together are safe: on SQLite the upgrade runs in one
``BEGIN IMMEDIATE`` transaction, on PostgreSQL under a transaction-scoped advisory lock.

A new revision, after changing :mod:`fakevoice.store.tables`, from a source checkout::

    from alembic import command
    from fakevoice.store.migrate import alembic_config
    command.revision(alembic_config("sqlite:///scratch.sqlite"), "add api tokens",
                     autogenerate=True, rev_id="0002")

(upgrade the scratch database to head first, then rename nothing: ``rev_id`` keeps files ordered).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from fakevoice.store.db import connectable, database_url
from fakevoice.store.tables import Base

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic configuration for ``url`` (default: the configured database).

    Args:
        url: SQLAlchemy URL the migrations run against when no connection is given.
        connection: an open connection (inside a transaction) that ``env.py`` uses as it is.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats '%' as interpolation; passwords in URLs may contain it.
    config.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def migration_connection(url: str | None = None) -> Iterator[Connection]:
    """A connection to ``url`` inside one transaction, for migrations.

    On SQLite, with its foreign keys off until the transaction ends: Alembic changes a table
    there by copying it into a new one and dropping the old, and a ``DROP TABLE`` with foreign
    keys on deletes the rows that point at it first (``ON DELETE CASCADE``). Migrating a
    database across the revisions that rebuilt ``runs`` (0005, 0007, 0009) deleted every run's
    epoch and batch metrics and unlinked its models before this. SQLite ignores the pragma inside
    a transaction, so it is set on the bare connection before it begins; the keys are checked
    before the transaction commits.
    """
    with connectable(url).connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left rows without their parent: {broken}")
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Switch SQLite's foreign keys on the DBAPI connection itself, outside any transaction
    (the store's connections run in autocommit mode between the BEGINs it emits)."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database at ``url`` (default: the configured one) to ``revision``."""
    with migration_connection(url) as connection:
        command.upgrade(alembic_config(url, connection), revision)
    logger.debug("database at revision %s", revision)


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with connectable(url, readonly=True).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def schema_differences(url: str | None = None) -> list[Any]:
    """Differences between the database's schema and the models (Alembic autogenerate's diff).

    An empty list means the migrated schema is exactly what :mod:`fakevoice.store.tables` says.
    """
    with connectable(url, readonly=True).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


@functools.lru_cache(maxsize=8)
def _drift(url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    differences = schema_differences(url)
    missing = tuple(str(d) for d in differences if _kind(d).startswith("add_"))
    extra = tuple(str(d) for d in differences if not _kind(d).startswith("add_"))
    if differences:
        logger.error(
            "the database's schema differs from this version's: %s",
            "; ".join(missing + extra),
        )
    return missing, extra


def _kind(difference: Any) -> str:
    """Alembic's name of a difference (``add_column``, ``remove_index``...); a list of column
    changes is one of ``modify_*``."""
    first = difference[0] if isinstance(difference, list) and difference else difference
    return str(first[0]) if isinstance(first, tuple) and first else "modify"


def schema_drift(url: str | None = None) -> tuple[list[str], list[str]]:
    """:func:`schema_differences` in words, measured (and logged) once per process and database
    (a schema changes only through migrations, which run when a process starts): what this
    version's models have and the database lacks (its queries of those fail), and the rest
    (tables, columns or indexes it has beyond them, changed types: an operator's own index, or
    a newer version's revision during a rolling upgrade). Both empty when the database is what
    the models say. A database at the head that lacks something was changed by hand, or
    migrated by a revision edited after it ran."""
    missing, extra = _drift(database_url(url))
    return list(missing), list(extra)
