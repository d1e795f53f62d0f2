"""API tokens: the secret is shown once and stored only as a hash; revoke; last-used; ownership."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from fakevoice import services, store
from fakevoice.errors import (
    ConflictError,
    InvalidSpecError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.services import tokens
from fakevoice.store import tokens as token_store
from fakevoice.store.records import Actor


@pytest.fixture
def users(isolated_settings: Path) -> Iterator[tuple[Actor, Actor, Actor]]:
    services.ensure_database()
    with store.session_scope() as session:
        alice = store.create_user(session, "alice").actor
        bob = store.create_user(session, "bob").actor
        admin = store.create_user(session, "root", is_admin=True).actor
    yield alice, bob, admin
    store.dispose_engines()


def test_secret_is_shown_once_and_stored_only_as_a_hash(users: tuple[Actor, ...]) -> None:
    alice = users[0]
    record, secret = tokens.create_token(alice, "  call centre  ")
    assert secret.startswith("fv_") and len(secret) >= 40
    assert record.name == "call centre" and record.owner_id == alice.user_id
    assert secret.startswith(record.prefix) and len(record.prefix) == 11
    assert record.last_used_at is None and record.revoked_at is None
    with store.get_engine().connect() as connection:
        row = connection.execute(text("SELECT * FROM api_tokens")).mappings().one()
    assert secret not in {str(v) for v in row.values()}
    assert row["token_hash"] != secret and len(row["token_hash"]) == 64
    # Two tokens never share a secret.
    _, other = tokens.create_token(alice, "second")
    assert other != secret


def test_authenticate_returns_the_owner_and_records_last_use(users: tuple[Actor, ...]) -> None:
    alice, _, admin = users
    record, secret = tokens.create_token(alice, "ci")
    assert tokens.authenticate(secret) == tokens.Authenticated(alice, "full")
    assert record.scope == "full"
    used = tokens.list_tokens(alice)[0]
    assert used.id == record.id and used.last_used_at is not None
    assert used.last_used_at >= used.created_at
    _, admin_secret = tokens.create_token(admin, "ops")
    found = tokens.authenticate(admin_secret)
    assert found is not None and found.actor == Actor(user_id=admin.user_id, is_admin=True)
    # A token may be kept to verdicts only; it says so wherever it is read.
    narrow, narrow_secret = tokens.create_token(alice, "call centre", "verdicts")
    assert narrow.scope == "verdicts"
    assert tokens.authenticate(narrow_secret) == tokens.Authenticated(alice, "verdicts")
    assert [t.scope for t in tokens.list_tokens(alice)] == ["verdicts", "full"]
    with pytest.raises(InvalidSpecError, match="scope is one of full, verdicts"):
        tokens.create_token(alice, "odd", "admin")
    for bad in ("", "fv_", secret + "x", secret[:-1], "Bearer " + secret, "fv_" + "a" * 300):
        assert tokens.authenticate(bad) is None


def test_last_use_is_written_at_most_once_a_minute(users: tuple[Actor, ...]) -> None:
    alice = users[0]
    record, _ = tokens.create_token(alice, "busy")
    assert token_store.needs_touch(record)
    with store.session_scope() as session:
        token_store.touch_token(session, record.id)
    first = tokens.list_tokens(alice)[0]
    assert first.last_used_at is not None and not token_store.needs_touch(first)
    later = first.last_used_at + token_store.LAST_USED_RESOLUTION + timedelta(seconds=1)
    assert token_store.needs_touch(first, later)
    with store.session_scope() as session:
        token_store.touch_token(session, record.id, first.last_used_at + timedelta(seconds=5))
    assert tokens.list_tokens(alice)[0].last_used_at == first.last_used_at
    with store.session_scope() as session:
        token_store.touch_token(session, record.id, later)
    assert tokens.list_tokens(alice)[0].last_used_at == later


def test_revoked_token_authenticates_nothing(users: tuple[Actor, ...]) -> None:
    alice = users[0]
    record, secret = tokens.create_token(alice, "old")
    revoked = tokens.revoke_token(alice, record.id)
    assert revoked.revoked_at is not None and not revoked.is_active
    assert tokens.authenticate(secret) is None
    # Revoking again keeps the first time; the token stays listed.
    assert tokens.revoke_token(alice, record.id).revoked_at == revoked.revoked_at
    assert [t.id for t in tokens.list_tokens(alice)] == [record.id]


def test_tokens_belong_to_their_owner(users: tuple[Actor, ...]) -> None:
    alice, bob, admin = users
    record, secret = tokens.create_token(alice, "mine")
    assert tokens.list_tokens(bob) == []
    with pytest.raises(NotFoundError, match=f"no API token with id {record.id}"):
        tokens.revoke_token(bob, record.id)
    assert tokens.authenticate(secret) == tokens.Authenticated(alice, "full")
    with pytest.raises(NotFoundError):
        tokens.revoke_token(alice, record.id + 100)
    # An administrator may revoke anyone's token.
    assert tokens.revoke_token(admin, record.id).revoked_at is not None
    assert tokens.authenticate(secret) is None


def test_every_active_token_of_a_user_is_revoked_at_once(users: tuple[Actor, ...]) -> None:
    """For an account thought compromised: the user themselves or an administrator."""
    alice, bob, admin = users
    made = [tokens.create_token(alice, name) for name in ("ci", "call centre", "old")]
    tokens.revoke_token(alice, made[2][0].id)
    old_revoked_at = tokens.list_tokens(alice)[0].revoked_at
    _, bobs = tokens.create_token(bob, "bob's")
    assert [t.name for t in tokens.active_tokens(alice, alice.user_id)] == ["call centre", "ci"]

    assert tokens.revoke_all_tokens(alice, alice.user_id) == 2
    assert all(tokens.authenticate(secret) is None for _, secret in made)
    assert tokens.active_tokens(alice, alice.user_id) == []
    listed = tokens.list_tokens(alice)  # still listed, as revoked; the old one keeps its time
    assert [(t.name, t.is_active) for t in listed] == [
        ("old", False),
        ("call centre", False),
        ("ci", False),
    ]
    assert listed[0].revoked_at == old_revoked_at
    assert tokens.revoke_all_tokens(alice, alice.user_id) == 0  # again: nothing left, no error
    assert tokens.authenticate(bobs) == tokens.Authenticated(bob, "full")  # others' untouched

    # Someone else's: an administrator may; another user is refused and nothing changes.
    with pytest.raises(PermissionDeniedError, match="Only an administrator"):
        tokens.revoke_all_tokens(alice, bob.user_id)
    with pytest.raises(PermissionDeniedError, match="Only an administrator"):
        tokens.active_tokens(alice, bob.user_id)
    assert tokens.authenticate(bobs) == tokens.Authenticated(bob, "full")
    assert len(tokens.active_tokens(admin, bob.user_id)) == 1
    assert tokens.revoke_all_tokens(admin, bob.user_id) == 1
    assert tokens.authenticate(bobs) is None
    for ask in (tokens.revoke_all_tokens, tokens.active_tokens):
        with pytest.raises(NotFoundError, match="no user with id"):
            ask(admin, bob.user_id + 100)
    assert (tokens.tokens_in_words(1), tokens.tokens_in_words(0)) == ("1 API token", "0 API tokens")


def test_deleting_a_user_deletes_their_tokens(users: tuple[Actor, ...]) -> None:
    alice, _, admin = users
    _, secret = tokens.create_token(alice, "gone")
    with store.session_scope() as session:
        store.delete_user(session, admin, alice.user_id)
    assert tokens.authenticate(secret) is None


def test_names_and_counts_are_bounded(users: tuple[Actor, ...]) -> None:
    alice = users[0]
    for bad in ("", "   ", "x" * 65, "tab\there"):
        with pytest.raises(InvalidSpecError, match="token name"):
            tokens.create_token(alice, bad)
    created = [tokens.create_token(alice, f"t{i}")[0] for i in range(token_store.MAX_ACTIVE_TOKENS)]
    with pytest.raises(LimitExceededError, match="revoke one first"):
        tokens.create_token(alice, "one too many")
    tokens.revoke_token(alice, created[0].id)
    assert tokens.create_token(alice, "room again")[0].name == "room again"


def test_an_active_token_name_is_not_given_twice(users: tuple[Actor, ...]) -> None:
    """Two tokens of one name could not be told apart on the profile page, where one of them is
    to be revoked; a revoked token's name may go to the token that replaces it."""
    alice, bob, _ = users
    first, _ = tokens.create_token(alice, "ci")
    with pytest.raises(ConflictError, match="You already have a token named 'ci'"):
        tokens.create_token(alice, "  ci ", "verdicts")
    assert [t.name for t in tokens.list_tokens(alice)] == ["ci"]
    assert tokens.create_token(bob, "ci")[0].owner_id == bob.user_id  # names are per user
    tokens.revoke_token(alice, first.id)
    again, _ = tokens.create_token(alice, "ci")
    assert [(t.id, t.is_active) for t in tokens.list_tokens(alice)] == [
        (again.id, True),
        (first.id, False),
    ]
