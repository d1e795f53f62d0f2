"""How familiar a judged clip was to its model (``analyses.typicality``).

A verdict of a model that keeps a familiarity reference (:mod:`fakevoice.metrics.familiarity`)
has a typicality: the share of the model's validation clips at least as unusual as the clip. The
history kept only the caution it may raise (under 0.001); it now keeps the number, so an analyst
can sort or filter on it afterwards and a history report carries it. Verdicts made before this
revision, and verdicts of models without a reference, have none (NULL).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("typicality", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("typicality")
