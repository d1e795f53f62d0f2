"""A third kind of job: a test of stored models on a built dataset.

Scoring a dataset with a model takes from seconds to half an hour (AASIST on a CPU scores about
three items a second, and a test may score 5,000 items with up to four models), so it runs in a
worker like training, with progress, a stop flag and recovery when a worker dies, instead of in the
Evaluate page's script, which stops when the tab closes. Its results are files in the job's folder.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.create_check_constraint("kind", "kind IN ('train', 'dataset', 'evaluate')")


def downgrade() -> None:
    op.execute("DELETE FROM runs WHERE kind = 'evaluate'")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.create_check_constraint("kind", "kind IN ('train', 'dataset')")
