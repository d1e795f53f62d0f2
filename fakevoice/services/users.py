"""Who is acting: the command line's local account (accounts for the pages come with sign-in)."""

from __future__ import annotations

from fakevoice import store
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor


def ensure_database() -> None:
    """Migrate the configured database to the newest schema (cheap when it already is)."""
    store.init_db()


def cli_actor() -> Actor:
    """The account the command line acts as (``FAKEVOICE_CLI_USER``, default ``local``).

    The CLI runs on the server with access to its files, so it acts as one named local account;
    its runs and models are owned by that account like any other user's.
    """
    ensure_database()
    with store.session_scope() as session:
        user = store.get_or_create_user(session, get_settings().cli_user)
    return user.actor
