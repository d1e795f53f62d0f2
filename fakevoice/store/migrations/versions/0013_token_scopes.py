"""What an API token may do: everything its owner may (``full``), or only ask for verdicts.

A token kept in a call centre's or a moderation pipeline's configuration needs to ask for
verdicts and read (and label) its owner's history, not to train, delete models or datasets, or
upload models. ``api_tokens.scope`` says which: ``full`` or ``verdicts``. Tokens made before this
revision keep what they could do: ``full``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column("scope", sa.String(length=16), nullable=False, server_default="full")
        )
        batch.create_check_constraint("scope", "scope IN ('full', 'verdicts')")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint(op.f("ck_api_tokens_scope"), type_="check")
        batch.drop_column("scope")
