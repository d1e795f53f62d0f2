"""Alembic revisions, one file each, named ``NNNN_what.py`` (Alembic skips this file)."""
