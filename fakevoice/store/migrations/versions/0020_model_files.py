"""Each model's files with their SHA-256 in a table of their own, indexed by checksum.

An uploaded ``model.pkl`` is loaded only when this server wrote it: the upload asked every model
on the server for its list of files (a JSON column) and compared them one by one. The files and
their checksums now also sit in ``model_files`` (one row per file, removed with the model), so
the check is one lookup through ``model_files (sha256, file_name)``. Existing models' rows are
copied from their lists.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000  # models read (and their files written) at a time


def upgrade() -> None:
    model_files = op.create_table(
        "model_files",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_model_files_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "file_name", name=op.f("pk_model_files")),
    )
    op.create_index(
        op.f("ix_model_files_sha256_file_name"),
        "model_files",
        ["sha256", "file_name"],
        unique=False,
    )
    models = sa.table("models", sa.column("id", sa.Integer()), sa.column("files", sa.JSON()))
    connection = op.get_bind()
    last = 0
    while True:
        query = sa.select(models.c.id, models.c.files).where(models.c.id > last)
        found = connection.execute(query.order_by(models.c.id).limit(BATCH)).all()
        if not found:
            break
        rows = [
            {"model_id": model_id, "file_name": str(name), "sha256": str(digest).lower()}
            for model_id, files in found
            for name, digest in (files or {}).items()
        ]
        if rows:
            connection.execute(sa.insert(model_files), rows)
        last = found[-1][0]


def downgrade() -> None:
    op.drop_index(op.f("ix_model_files_sha256_file_name"), table_name="model_files")
    op.drop_table("model_files")
