"""Runs become jobs of two kinds: training runs and dataset builds.

A dataset built from a user's uploaded recordings takes minutes (spoofs are synthesised, noise is
mixed, images rendered), so it is a job like a training run: queued by the page, executed by a
worker, with progress, a stop flag, a heartbeat and recovery when a worker dies. ``kind`` tells
the two apart; listings of runs show training runs only. Rows made before this revision are
training runs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="train")
        )
        batch.create_check_constraint("kind", "kind IN ('train', 'dataset')")


def downgrade() -> None:
    op.execute("DELETE FROM runs WHERE kind != 'train'")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.drop_column("kind")
