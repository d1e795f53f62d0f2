"""The per-window timeline of a verdict, kept with it in the history.

A verdict on a long clip is made of overlapping model windows; where in a call the machine-like
stretch lies is what an analyst shows a colleague. ``analyses.windows`` keeps them (a JSON list of
``{"start", "end", "p_human", "top_class"}``, seconds and probability), so a verdict reopened from
the history, its report and the API show the timeline it was made with. Verdicts made before this
revision have none (NULL).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("windows", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("windows")
