"""Accounts on a real SQLite file: registration, bcrypt checks, resets through the log mail
backend, details, the cookie key file, the credentials handed to streamlit-authenticator."""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from fakevoice import accounts, store
from fakevoice.errors import (
    ConflictError,
    FakeVoiceError,
    InvalidSpecError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.mail import MailError
from fakevoice.settings import get_settings
from fakevoice.store.tables import EndedCookieRow, UserRow, utcnow

PASSWORD = "correct horse 42"


@pytest.fixture
def db(isolated_settings: Path) -> Iterator[Path]:
    store.init_db()
    yield isolated_settings
    store.dispose_engines()


def test_register_stores_a_bcrypt_hash_and_signs_in(db: Path) -> None:
    user = accounts.register("Alice", PASSWORD, email="alice@example.org", display_name="Alice A")
    assert user.username == "alice"
    assert user.display_name == "Alice A"
    assert user.password_hash is not None and user.password_hash.startswith("$2")
    assert PASSWORD not in user.password_hash
    assert accounts.authenticate("alice", PASSWORD).id == user.id
    assert accounts.authenticate("  ALICE ", PASSWORD).id == user.id


def test_wrong_password_and_unknown_user_get_the_same_message(db: Path) -> None:
    accounts.register("alice", PASSWORD)
    with pytest.raises(accounts.AuthenticationError) as wrong:
        accounts.authenticate("alice", PASSWORD + "x")
    with pytest.raises(accounts.AuthenticationError) as unknown:
        accounts.authenticate("nobody", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == "Wrong user name or password."


def test_password_over_72_bytes_gets_a_message_not_a_crash(db: Path) -> None:
    long_ascii = "a" * 73
    with pytest.raises(InvalidSpecError, match="at most 72 bytes.*73 bytes"):
        accounts.register("alice", long_ascii)
    # 25 characters, but 75 bytes in UTF-8: bytes count, not characters.
    with pytest.raises(InvalidSpecError, match="75 bytes"):
        accounts.register("alice", "€" * 25)
    accounts.register("alice", "a" * 72)  # exactly 72 bytes is fine
    assert accounts.authenticate("alice", "a" * 72).username == "alice"
    with pytest.raises(InvalidSpecError, match="72 bytes"):
        accounts.authenticate("alice", "a" * 100)


def test_username_and_password_rules(db: Path) -> None:
    for bad in ("", "ab", "has space", "-dash", "x" * 33, "ünïcode"):
        with pytest.raises(InvalidSpecError, match="user name must be"):
            accounts.register(bad, PASSWORD)
    with pytest.raises(InvalidSpecError, match="at least 8"):
        accounts.register("alice", "short")
    with pytest.raises(InvalidSpecError, match="not an e-mail"):
        accounts.register("alice", PASSWORD, email="not-an-address")
    with store.session_scope(readonly=True) as session:
        assert store.get_user_by_username(session, "alice") is None


def test_duplicate_user_name_is_refused(db: Path) -> None:
    accounts.register("alice", PASSWORD)
    with pytest.raises(ConflictError, match="already taken"):
        accounts.register("ALICE", "another password")
    assert accounts.authenticate("alice", PASSWORD).username == "alice"


def test_change_password(db: Path) -> None:
    user = accounts.register("alice", PASSWORD)
    with pytest.raises(accounts.AuthenticationError, match="current password is wrong"):
        accounts.change_password(user.id, "not it at all", "new password 1")
    accounts.change_password(user.id, PASSWORD, "new password 1")
    assert accounts.authenticate("alice", "new password 1").id == user.id
    with pytest.raises(accounts.AuthenticationError):
        accounts.authenticate("alice", PASSWORD)


def _mailed_code(caplog: pytest.LogCaptureFixture) -> tuple[str, str]:
    mails = [r.getMessage() for r in caplog.records if r.name == "fakevoice.mail"]
    assert len(mails) == 1, mails
    found = re.search(r"Your reset code: (\S+)", mails[0])
    assert found is not None, mails[0]
    return mails[0], found.group(1)


def test_reset_mails_a_one_time_code_and_keeps_the_password_until_it_is_used(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user = accounts.register("alice", PASSWORD, email="alice@example.org")
    with caplog.at_level(logging.INFO, logger="fakevoice"):
        accounts.request_password_reset("alice")
    message, code = _mailed_code(caplog)
    assert "To: alice@example.org" in message
    # Asking for a reset locks nobody out: the old password works until the code is used.
    assert accounts.authenticate("alice", PASSWORD).id == user.id
    with pytest.raises(accounts.AuthenticationError, match="code is wrong"):
        accounts.reset_password("alice", "not-the-code", "a new secret 1")
    changed = accounts.reset_password("Alice@Example.org", f"  {code} ", "a new secret 1")
    assert changed.id == user.id and changed.password_changed_at is not None
    assert accounts.authenticate("alice", "a new secret 1").id == user.id
    with pytest.raises(accounts.AuthenticationError):
        accounts.authenticate("alice", PASSWORD)
    with pytest.raises(accounts.AuthenticationError, match="used already"):
        accounts.reset_password("alice", code, "another secret 2")  # one use only


def test_a_new_code_replaces_the_old_and_codes_expire(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    accounts.register("alice", PASSWORD, email="alice@example.org")
    with caplog.at_level(logging.INFO, logger="fakevoice"):
        accounts.request_password_reset("alice")
    _, first = _mailed_code(caplog)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fakevoice"):
        accounts.request_password_reset("alice@example.org")
    _, second = _mailed_code(caplog)
    assert first != second
    with pytest.raises(accounts.AuthenticationError):
        accounts.reset_password("alice", first, "a new secret 1")
    with pytest.raises(InvalidSpecError, match="at least 8"):
        accounts.reset_password("alice", second, "short")  # rules first; the code stays valid
    with store.session_scope() as session:  # half an hour later
        row = session.get(UserRow, accounts.user_by_username("alice").id)  # type: ignore[union-attr]
        assert row is not None and row.reset_code_expires_at is not None
        row.reset_code_expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(accounts.AuthenticationError, match="expired"):
        accounts.reset_password("alice", second, "a new secret 1")
    assert accounts.authenticate("alice", PASSWORD).username == "alice"


def test_sign_ins_made_before_a_password_change_or_the_account_or_the_end_stop_working(
    db: Path,
) -> None:
    user = accounts.register("alice", PASSWORD, email="alice@example.org")
    made = user.created_at.timestamp()
    assert accounts.sign_in_still_valid(user, made + 5)
    assert not accounts.sign_in_still_valid(user, made - 5)  # an earlier account of this name
    assert not accounts.sign_in_still_valid(user, None)
    changed = accounts.change_password(user.id, PASSWORD, "a new secret 1")
    assert changed.password_changed_at is not None
    changed_at = changed.password_changed_at.timestamp()
    assert not accounts.sign_in_still_valid(changed, changed_at - 1)
    assert accounts.sign_in_still_valid(changed, changed_at + 1)
    ended = accounts.end_all_sessions(user.actor, user.id)
    assert ended.sessions_ended_at is not None
    ended_at = ended.sessions_ended_at.timestamp()
    assert ended_at >= changed_at
    assert not accounts.sign_in_still_valid(ended, ended_at - 0.001)
    assert accounts.sign_in_still_valid(ended, ended_at)
    assert accounts.authenticate("alice", "a new secret 1").id == user.id  # the password stays
    again = accounts.user_by_username("alice")
    assert again is not None and again.sessions_ended_at == ended.sessions_ended_at
    other = accounts.register("bob", PASSWORD)
    with pytest.raises(PermissionDeniedError, match="administrator"):
        accounts.end_all_sessions(other.actor, user.id)
    assert accounts.end_all_sessions(accounts.OPERATOR, other.id).sessions_ended_at is not None
    with pytest.raises(NotFoundError):
        accounts.end_all_sessions(accounts.OPERATOR, user.id + 100)


def test_a_signed_out_cookie_is_refused_until_it_would_expire(db: Path) -> None:
    alice, bob = accounts.register("alice", PASSWORD), accounts.register("bob", PASSWORD)
    expires = utcnow().timestamp() + 86_400.123456

    def ended_rows() -> set[tuple[int, float]]:
        with store.session_scope(readonly=True) as session:
            query = select(EndedCookieRow.user_id, EndedCookieRow.cookie_expires)
            return {(user_id, cookie) for user_id, cookie in session.execute(query)}

    assert not accounts.cookie_sign_in_ended(alice.id, expires)
    accounts.end_cookie_sign_in(alice.id, expires)
    accounts.end_cookie_sign_in(alice.id, expires)  # twice: still one row
    assert accounts.cookie_sign_in_ended(alice.id, expires)
    assert not accounts.cookie_sign_in_ended(alice.id, expires + 1e-6)  # another sign-in
    assert not accounts.cookie_sign_in_ended(bob.id, expires)  # another user's
    past = utcnow().timestamp() - 1
    accounts.end_cookie_sign_in(bob.id, past)
    accounts.end_cookie_sign_in(bob.id + 100, expires)  # a removed user: nothing to end
    assert ended_rows() == {(alice.id, expires), (bob.id, past)}
    accounts.end_cookie_sign_in(bob.id, expires)  # the next one forgets expired cookies
    assert ended_rows() == {(alice.id, expires), (bob.id, expires)}
    with store.session_scope() as session:
        store.delete_user(session, accounts.OPERATOR, alice.id)
    assert ended_rows() == {(bob.id, expires)}  # alice's went with her account


def test_cookie_expiry_is_read_from_the_signed_token() -> None:
    import jwt

    token = jwt.encode({"username": "alice", "exp_date": 1_000_000.25}, "k" * 32, algorithm="HS256")
    assert accounts.cookie_expiry(token, "k" * 32) == 1_000_000.25
    assert accounts.cookie_expiry(token, "another key" * 4) is None  # forged or from elsewhere
    assert accounts.cookie_expiry("not a token", "k" * 32) is None
    assert accounts.cookie_expiry(None, "k" * 32) is None
    no_expiry = jwt.encode({"username": "alice"}, "k" * 32, algorithm="HS256")
    assert accounts.cookie_expiry(no_expiry, "k" * 32) is None


def test_reset_for_unknown_or_unreachable_accounts_sends_nothing_and_changes_nothing(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    accounts.register("bob", PASSWORD)  # no e-mail address
    with caplog.at_level(logging.INFO, logger="fakevoice"):
        accounts.request_password_reset("nobody")
        accounts.request_password_reset("bob")
    assert not [r for r in caplog.records if r.name == "fakevoice.mail"]
    assert accounts.authenticate("bob", PASSWORD).username == "bob"


def test_failed_smtp_keeps_no_code(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts.register("alice", PASSWORD, email="alice@example.org")
    monkeypatch.setenv("FAKEVOICE_MAIL_BACKEND", "smtp")  # but no host configured
    get_settings.cache_clear()
    with pytest.raises(MailError, match="smtp_host"):
        accounts.request_password_reset("alice")
    with store.session_scope() as session:
        row = session.get(UserRow, accounts.user_by_username("alice").id)  # type: ignore[union-attr]
        assert row is not None and row.reset_code_hash is None
    assert accounts.authenticate("alice", PASSWORD).username == "alice"


def test_update_details(db: Path) -> None:
    user = accounts.register("alice", PASSWORD, email="old@example.org")
    updated = accounts.update_details(user.id, display_name="Alice B", email="new@example.org")
    assert (updated.display_name, updated.email) == ("Alice B", "new@example.org")
    with pytest.raises(InvalidSpecError, match="not an e-mail"):
        accounts.update_details(user.id, display_name="Alice C", email="broken")
    cleared = accounts.update_details(user.id, display_name="  ", email="")
    assert (cleared.display_name, cleared.email) == ("alice", None)


def test_credentials_for_the_authenticator_come_from_the_database(db: Path) -> None:
    accounts.register("alice", PASSWORD, email="alice@example.org", display_name="Alice")
    accounts.register("root", PASSWORD, is_admin=True)
    with store.session_scope() as session:
        store.get_or_create_user(session, "local")  # no password: cannot sign in on the web
    users = accounts.credentials()["usernames"]
    assert set(users) == {"alice", "root"}
    assert users["alice"]["name"] == "Alice"
    assert users["alice"]["email"] == "alice@example.org"
    assert users["alice"]["password"].startswith("$2")
    assert users["root"]["roles"] == ["admin"]


def test_cookie_key_file_is_created_owner_only_and_reused(isolated_settings: Path) -> None:
    key = accounts.cookie_key()
    path = get_settings().data_dir / accounts.COOKIE_KEY_FILE
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= accounts.MIN_COOKIE_KEY_CHARS
    assert accounts.cookie_key() == key
    path.chmod(0o644)  # someone widened it: narrowed again, same key
    assert accounts.cookie_key() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cookie_key_from_settings_wins_and_writes_no_file(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKEVOICE_COOKIE_KEY", "k" * 40)
    get_settings.cache_clear()
    assert accounts.cookie_key() == "k" * 40
    assert not (get_settings().data_dir / accounts.COOKIE_KEY_FILE).exists()


def test_a_damaged_cookie_key_file_is_refused(isolated_settings: Path) -> None:
    path = get_settings().data_dir / accounts.COOKIE_KEY_FILE
    path.parent.mkdir(parents=True)
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(FakeVoiceError, match="damaged"):
        accounts.cookie_key()
