"""Ids of runs, verdicts and API tokens never come back on SQLite (``AUTOINCREMENT`` again).

The models ask SQLite for ``AUTOINCREMENT`` on every table whose ids name something a person or
a folder refers to (a run's folder and MLflow run, "verdict #12" for ``fakevoice label``, a
token to revoke). The revisions that rebuilt ``runs`` (0005, 0007, 0009), ``analyses`` (0006)
and ``api_tokens`` (0013) on SQLite copied them without it, so the id of the newest one deleted
was handed out again. This revision rebuilds each such table with it (its rows, indexes and
keys as they are; :func:`fakevoice.store.migrate.migration_connection` keeps SQLite's foreign
keys off meanwhile, so no row pointing at a run is touched). Other databases never reuse ids:
nothing to do.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("runs", "analyses", "api_tokens")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in TABLES:
        sql = bind.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": table},
        ).scalar()
        if sql is None or "AUTOINCREMENT" in sql.upper():
            continue
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    """Nothing: ids that are never reused are what every revision meant."""
