"""The sha256 of the audio each verdict judged.

A verdict is evidence only if it says which file it is about: the hash of the bytes the user
gave (the upload, the recording or the batch entry) is kept beside the client's file name, shown
in the history, returned by the API and written into the verdict report. Verdicts made before
this revision have none.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("file_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("file_sha256")
