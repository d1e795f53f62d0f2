"""Engines and sessions: SQLite in WAL mode by default, any SQLAlchemy URL otherwise.

One engine per URL and process (cached; a forked child forgets its parent's). With SQLite the
driver's own transaction handling is switched off and the store emits ``BEGIN`` itself:
``BEGIN IMMEDIATE`` for sessions that may write, so a read-then-write transaction holds the write
lock from its start (no "database is locked" when two processes race), and a plain deferred
``BEGIN`` for read-only sessions, which never wait for a writer in WAL mode.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, String, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from fakevoice.secret_files import keep_owner_only
from fakevoice.settings import get_settings

logger = logging.getLogger(__name__)

SQLITE_PRAGMAS: tuple[str, ...] = (
    "busy_timeout=10000",
    "journal_mode=WAL",
    "foreign_keys=ON",
    "synchronous=NORMAL",
)
_READONLY = "fakevoice_readonly"
_SQLITE_LOWER = "fakevoice_lower"  # Python's str.lower, registered on each SQLite connection


class lower_text(GenericFunction[str]):  # noqa: N801 -- an SQL function's name, as func.lower
    """``lower(text)`` for every alphabet: SQLite's own ``lower`` folds ASCII letters only (a
    search for "Ünï" missed "Ünïcødé.wav"), so on SQLite it is Python's ``str.lower``, which is
    what a search compares it with; PostgreSQL's ``lower`` folds by the database's locale."""

    type = String()
    inherit_cache = True


@compiles(lower_text)
def _lower_text(element: lower_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(lower_text, "sqlite")
def _lower_text_sqlite(element: lower_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{_SQLITE_LOWER}({compiler.process(element.clauses, **kw)})"


def _python_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def database_url(url: str | None = None) -> str:
    """The given URL, or the configured one (``settings.resolved_database_url``)."""
    return url or get_settings().resolved_database_url


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for ``url`` (default: the configured database), created on first use.

    Creating it makes the folder of a SQLite file; it does not create tables (see :func:`init_db`).
    """
    url = database_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every cached engine's connections and forget them (tests, process shutdown)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


def init_db(url: str | None = None) -> Engine:
    """Bring the database to the newest schema (Alembic ``upgrade head``) and return its engine."""
    from fakevoice.store.migrate import upgrade

    upgrade(url)
    return get_engine(url)


@contextmanager
def session_scope(url: str | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises.

    Args:
        url: database URL; default the configured one.
        readonly: the block only reads; on SQLite it then never waits for a writer, and its
            transaction is rolled back at the end instead of committed.

    Yields:
        A :class:`~sqlalchemy.orm.Session` to pass to the repository functions.
    """
    bind = connectable(url, readonly=readonly)
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        if readonly:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def connectable(url: str | None = None, *, readonly: bool = False) -> Engine:
    """The engine for ``url``, marked read-only when asked (see :func:`session_scope`)."""
    engine = get_engine(url)
    return engine.execution_options(**{_READONLY: True}) if readonly else engine


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        _owner_only(Path(database))
    engine = create_engine(url, connect_args={"timeout": 10.0})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    logger.debug("SQLite engine for %s", database)
    return engine


def _owner_only(database: Path) -> None:
    """Make the SQLite file (password and token hashes, notes) readable by the server's user only:
    created so when new (SQLite gives its journal files the same mode); an existing one that
    others may read is narrowed, as the secret files are."""
    try:
        os.close(os.open(database, os.O_RDONLY | os.O_CREAT, 0o600))
        keep_owner_only(database)
    except OSError as error:  # a file we may not even open (a shared volume): its owner's
        logger.info("cannot narrow the permissions of %s: %s", database, error)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None  # the store emits BEGIN itself (_sqlite_on_begin)
    dbapi_connection.create_function(_SQLITE_LOWER, 1, _python_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            _pragma_with_retry(cursor, pragma)
    finally:
        cursor.close()


def _pragma_with_retry(cursor: Any, pragma: str, *, seconds: float = 10.0) -> None:
    """Run one PRAGMA, retrying while another process holds the lock.

    Switching a new file to WAL needs an exclusive lock and SQLite does not always call the busy
    handler for it, so two processes opening a fresh database at once could see "database is locked".
    """
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            cursor.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _sqlite_on_begin(connection: Connection) -> None:
    readonly = connection.get_execution_options().get(_READONLY, False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _forget_engines_in_child() -> None:
    # Pooled connections must not be shared across fork(); the child opens its own.
    global _engines_lock
    _engines_lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_forget_engines_in_child)
