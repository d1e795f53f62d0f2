"""Why a verdict was made, kept with it in the history.

An analyst who asks why a verdict was given ("Why this verdict?" on the Evaluate page,
``fakevoice predict --explain``, ``POST /v1/explain`` with the verdict's id) shows it to a
colleague later: ``analyses.explanation`` keeps the explanation of the verdict's most machine-like
window (a JSON object: the window's ``start`` and ``end`` in seconds, its ``p_human``, the shares
per frequency band and per time slice, and the method), so the history, its reports and the API
show it again. Verdicts never explained, and those made before this revision, have none (NULL).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("explanation", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("explanation")
