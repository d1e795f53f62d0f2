"""Password reset codes and the time of the last password change.

A forgotten password is no longer replaced at once: the account gets a one-time code (kept as a
sha256 hash, with an expiry) and keeps its password until the code is used. The time of the
last password change lets the sign-in cookie of an older session be refused.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("reset_code_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reset_code_expires_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("password_changed_at", UTC_DATETIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("reset_code_expires_at")
        batch.drop_column("reset_code_hash")
