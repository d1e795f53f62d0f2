"""Sign-ins that are over (every one of a user before a time, or one browser's cookie), and the
cautions of a verdict.

``users.sessions_ended_at`` ("Sign out everywhere"): a sign-in cookie (or an open browser tab)
made before this time no longer signs the user in, as with a password change, but the password
stays. Rows made before this revision have none.

``ended_cookies``: "Sign out" in one browser also refuses that browser's cookie on the server (by
its user and signed expiry), so it cannot sign in again even when its deletion never reached the
browser (a tab closed at once). Rows go when their cookie would have expired anyway.

``analyses.cautions``: why a verdict deserves less trust (:mod:`fakevoice.cautions`), kept with
it for the history. Verdicts logged before this revision have none recorded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


UTC_DATETIME = sa.DateTime(timezone=True)
NO_ID_REUSE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("sessions_ended_at", UTC_DATETIME, nullable=True))
    op.create_table(
        "ended_cookies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("cookie_expires", sa.Float(), nullable=False),
        sa.Column("ended_at", UTC_DATETIME, nullable=False),
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
        **NO_ID_REUSE,
    )
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(
            sa.Column("cautions", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("cautions")
    op.drop_table("ended_cookies")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sessions_ended_at")
