"""When a job was last queued (``runs.queued_at``), and how often its worker died under it in a
row (``runs.worker_deaths``).

A job that waits for a worker says so after a while (:func:`fakevoice.services.runs.worker_note`).
Measured from ``created_at``, a run resumed days after it was made read "queued for 2 days" the
moment it was queued again. ``queued_at`` is set when a job is made and each time it is queued
again; jobs made before this revision take their ``created_at``.

A run whose worker keeps dying under it (a node that runs out of memory in its validation, say)
was resumed for ever. ``worker_deaths`` counts those deaths since its last completed epoch; at
three the run fails instead of being resumed again.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("worker_deaths", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute("UPDATE runs SET queued_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("worker_deaths")
        batch.drop_column("queued_at")
