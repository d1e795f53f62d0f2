"""What a judged clip really was, and a note, kept with its verdict.

An analyst often learns later whether a recording was a person or a machine (the caller was
reached, the fraud was confirmed). ``analyses.outcome`` records it (``human`` or
``machine-generated``; empty while unknown) and ``analyses.note`` keeps the owner's words (a case
number, say); the history is searched by note too, and the outcomes measure how each model has
done on the user's own confirmed cases. Verdicts made before this revision have neither.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("note", sa.String(length=500), nullable=True))
        batch.create_check_constraint("outcome", "outcome IN ('human', 'machine-generated')")


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_constraint(op.f("ck_analyses_outcome"), type_="check")
        batch.drop_column("note")
        batch.drop_column("outcome")
