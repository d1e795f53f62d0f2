"""Sign-ins on a real SQLite file: the cookie key file, the credentials handed to
streamlit-authenticator, and which sign-ins are over (a password change, "Sign out everywhere",
one browser's "Sign out")."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import select

# The database fixture and the password are the account tests'.
from test_accounts import PASSWORD, db  # noqa: F401

from fakevoice import accounts, sign_ins, store
from fakevoice.errors import FakeVoiceError, NotFoundError, PermissionDeniedError
from fakevoice.settings import get_settings
from fakevoice.store.tables import EndedCookieRow, utcnow


def test_sign_ins_made_before_a_password_change_or_the_account_or_the_end_stop_working(
    db: Path,  # noqa: F811
) -> None:
    user = accounts.register("alice", PASSWORD, email="alice@example.org")
    made = user.created_at.timestamp()
    assert sign_ins.sign_in_still_valid(user, made + 5)
    assert not sign_ins.sign_in_still_valid(user, made - 5)  # an earlier account of this name
    assert not sign_ins.sign_in_still_valid(user, None)
    changed = accounts.change_password(user.id, PASSWORD, "a new secret 1")
    assert changed.password_changed_at is not None
    changed_at = changed.password_changed_at.timestamp()
    assert not sign_ins.sign_in_still_valid(changed, changed_at - 1)
    assert sign_ins.sign_in_still_valid(changed, changed_at + 1)
    ended = sign_ins.end_all_sessions(user.actor, user.id)
    assert ended.sessions_ended_at is not None
    ended_at = ended.sessions_ended_at.timestamp()
    assert ended_at >= changed_at
    assert not sign_ins.sign_in_still_valid(ended, ended_at - 0.001)
    assert sign_ins.sign_in_still_valid(ended, ended_at)
    assert accounts.authenticate("alice", "a new secret 1").id == user.id  # the password stays
    again = accounts.user_by_username("alice")
    assert again is not None and again.sessions_ended_at == ended.sessions_ended_at
    other = accounts.register("bob", PASSWORD)
    with pytest.raises(PermissionDeniedError, match="administrator"):
        sign_ins.end_all_sessions(other.actor, user.id)
    assert sign_ins.end_all_sessions(accounts.OPERATOR, other.id).sessions_ended_at is not None
    with pytest.raises(NotFoundError):
        sign_ins.end_all_sessions(accounts.OPERATOR, user.id + 100)


def test_a_signed_out_cookie_is_refused_until_it_would_expire(db: Path) -> None:  # noqa: F811
    alice, bob = accounts.register("alice", PASSWORD), accounts.register("bob", PASSWORD)
    expires = utcnow().timestamp() + 86_400.123456

    def ended_rows() -> set[tuple[int, float]]:
        with store.session_scope(readonly=True) as session:
            query = select(EndedCookieRow.user_id, EndedCookieRow.cookie_expires)
            return {(user_id, cookie) for user_id, cookie in session.execute(query)}

    assert not sign_ins.cookie_sign_in_ended(alice.id, expires)
    sign_ins.end_cookie_sign_in(alice.id, expires)
    sign_ins.end_cookie_sign_in(alice.id, expires)  # twice: still one row
    assert sign_ins.cookie_sign_in_ended(alice.id, expires)
    assert not sign_ins.cookie_sign_in_ended(alice.id, expires + 1e-6)  # another sign-in
    assert not sign_ins.cookie_sign_in_ended(bob.id, expires)  # another user's
    past = utcnow().timestamp() - 1
    sign_ins.end_cookie_sign_in(bob.id, past)
    sign_ins.end_cookie_sign_in(bob.id + 100, expires)  # a removed user: nothing to end
    assert ended_rows() == {(alice.id, expires), (bob.id, past)}
    sign_ins.end_cookie_sign_in(bob.id, expires)  # the next one forgets expired cookies
    assert ended_rows() == {(alice.id, expires), (bob.id, expires)}
    with store.session_scope() as session:
        store.delete_user(session, accounts.OPERATOR, alice.id)
    assert ended_rows() == {(bob.id, expires)}  # alice's went with her account


def test_cookie_expiry_is_read_from_the_signed_token() -> None:
    import jwt

    token = jwt.encode({"username": "alice", "exp_date": 1_000_000.25}, "k" * 32, algorithm="HS256")
    assert sign_ins.cookie_expiry(token, "k" * 32) == 1_000_000.25
    assert sign_ins.cookie_expiry(token, "another key" * 4) is None  # forged or from elsewhere
    assert sign_ins.cookie_expiry("not a token", "k" * 32) is None
    assert sign_ins.cookie_expiry(None, "k" * 32) is None
    no_expiry = jwt.encode({"username": "alice"}, "k" * 32, algorithm="HS256")
    assert sign_ins.cookie_expiry(no_expiry, "k" * 32) is None


def test_credentials_for_the_authenticator_come_from_the_database(db: Path) -> None:  # noqa: F811
    accounts.register("alice", PASSWORD, email="alice@example.org", display_name="Alice")
    accounts.register("root", PASSWORD, is_admin=True)
    with store.session_scope() as session:
        store.get_or_create_user(session, "local")  # no password: cannot sign in on the web
    users = sign_ins.credentials()["usernames"]
    assert set(users) == {"alice", "root"}
    assert users["alice"]["name"] == "Alice"
    assert users["alice"]["email"] == "alice@example.org"
    assert users["alice"]["password"].startswith("$2")
    assert users["root"]["roles"] == ["admin"]


def test_cookie_key_file_is_created_owner_only_and_reused(isolated_settings: Path) -> None:
    key = sign_ins.cookie_key()
    path = get_settings().data_dir / sign_ins.COOKIE_KEY_FILE
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= sign_ins.MIN_COOKIE_KEY_CHARS
    assert sign_ins.cookie_key() == key
    path.chmod(0o644)  # someone widened it: narrowed again, same key
    assert sign_ins.cookie_key() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cookie_key_from_settings_wins_and_writes_no_file(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKEVOICE_COOKIE_KEY", "k" * 40)
    get_settings.cache_clear()
    assert sign_ins.cookie_key() == "k" * 40
    assert not (get_settings().data_dir / sign_ins.COOKIE_KEY_FILE).exists()


def test_a_damaged_cookie_key_file_is_refused(isolated_settings: Path) -> None:
    path = get_settings().data_dir / sign_ins.COOKIE_KEY_FILE
    path.parent.mkdir(parents=True)
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(FakeVoiceError, match="damaged"):
        sign_ins.cookie_key()
