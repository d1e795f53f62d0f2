"""A fourth kind of job: a dataset rendered again with other spectrogram features.

Rendering every clip of a dataset again takes from seconds to many minutes, so it runs in a worker
like a build, with progress, a stop flag and recovery when a worker dies, instead of in the
Datasets page's script, which stops when the tab closes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.create_check_constraint("kind", "kind IN ('train', 'dataset', 'evaluate', 'render')")


def downgrade() -> None:
    op.execute("DELETE FROM runs WHERE kind = 'render'")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.create_check_constraint("kind", "kind IN ('train', 'dataset', 'evaluate')")
