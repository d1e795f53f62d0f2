"""Indexes for the lists a busy user's records make long.

A year of a busy team leaves one user thousands of jobs, hundreds of models and a hundred
thousand verdicts, and a server a hundred such users. Each index serves a query that read every
row of a user's (or every row) without it:

* ``runs (owner_id, kind, created_at)``: a user's jobs of one kind, newest first, a page at a
  time (``GET /v1/runs``, the latest builds, renders and tests on the pages) without sorting
  all of them;
* ``analyses (owner_id, file_sha256)``: "was this exact file judged before?", asked after every
  verdict on the Evaluate page, without reading the user's whole history;
* ``analyses (model_id)`` and ``models (run_id)``: deleting a model sets its verdicts' model to
  NULL, and deleting a run its models' run: each was a scan of every verdict (every model) on
  the server; a run's model is also looked up by its run.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_runs_owner_id_kind_created_at", "runs", ["owner_id", "kind", "created_at"]),
    ("ix_analyses_owner_id_file_sha256", "analyses", ["owner_id", "file_sha256"]),
    ("ix_analyses_model_id", "analyses", ["model_id"]),
    ("ix_models_run_id", "models", ["run_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(op.f(name), table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(op.f(name), table_name=table)
