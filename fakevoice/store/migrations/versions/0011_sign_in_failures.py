"""Wrong passwords per user name, so that password guessing is paused.

bcrypt makes each guess cost a fifth of a second, but nothing stopped a script from trying
passwords on the sign-in form all day. ``sign_in_failures`` counts the wrong passwords typed for a
user name since its last sign-in (for names of no account too, so that a pause does not tell which
accounts exist); after a few, sign-ins with that name pause for a while.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)  # what UTCDateTime is underneath


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_sign_in_failures")),
    )


def downgrade() -> None:
    op.drop_table("sign_in_failures")
