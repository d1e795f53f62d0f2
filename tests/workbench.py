"""A module's own workbench for tests: settings and the store pointed at a folder of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fakevoice import store
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor


@contextmanager
def active_workbench(
    env: dict[str, str], *, unset: tuple[str, ...] = ()
) -> Iterator[dict[str, str]]:
    """Within the block, settings come from ``env`` (environment variables, which worker processes
    started in it inherit) and its database exists; engines are closed at the end."""
    with pytest.MonkeyPatch.context() as patch:
        for key in unset:
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        store.init_db()
        try:
            yield env
        finally:
            store.dispose_engines()
    get_settings.cache_clear()


def make_user(name: str) -> Actor:
    """The user called ``name`` (made on first use) as an acting user."""
    with store.session_scope() as session:
        return store.get_or_create_user(session, name).actor
