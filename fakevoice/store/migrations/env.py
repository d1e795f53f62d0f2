"""Alembic environment: runs on the connection :func:`fakevoice.store.migrate.upgrade` passes in,
or opens the store's engine for the configured URL (pragmas included) when used otherwise."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from fakevoice.store.tables import Base

# Any constant works: it only has to be the same in every process that migrates this database.
_POSTGRES_MIGRATION_LOCK = 7_318_204_551

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_POSTGRES_MIGRATION_LOCK})")
        context.run_migrations()


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from fakevoice.store.migrate import migration_connection

    with migration_connection(config.get_main_option("sqlalchemy.url")) as connection:
        _run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
