"""What an early copy of revisions 0006 and 0014 left out: ``ended_cookies``,
``analyses.cautions`` and ``runs.worker_deaths``.

Those two revisions gained these after some databases had already been migrated past them
(before the workbench's first release), and Alembic never runs a revision twice: such a database
said it was at the head while it lacked them, and every query of runs failed ("no such column").
This revision adds each one that is missing and leaves a database that has them as it is; the
values are those the revisions give (no ended cookies, no cautions, no worker deaths).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns(table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("ended_cookies"):
        op.create_table(
            "ended_cookies",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("user_id", sa.Integer(), nullable=False),
            sa.Column("cookie_expires", sa.Float(), nullable=False),
            sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_ended_cookies_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_ended_cookies")),
            sa.UniqueConstraint(
                "user_id", "cookie_expires", name=op.f("uq_ended_cookies_user_id_cookie_expires")
            ),
            sqlite_autoincrement=True,
        )
    if "cautions" not in _columns("analyses"):
        with op.batch_alter_table("analyses") as batch:
            batch.add_column(
                sa.Column("cautions", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )
    if "worker_deaths" not in _columns("runs"):
        with op.batch_alter_table("runs") as batch:
            batch.add_column(
                sa.Column("worker_deaths", sa.Integer(), nullable=False, server_default="0")
            )


def downgrade() -> None:
    """Nothing: what this revision may add belongs to revisions 0006 and 0014."""
