"""Alembic environment and revisions of the store (a package so that installs carry them)."""
