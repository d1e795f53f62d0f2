"""Accounts on a real SQLite file: registration, bcrypt checks, resets through the log mail
backend, details."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from fakevoice import accounts, store
from fakevoice.accounts import AuthenticationError
from fakevoice.errors import (
    ConflictError,
    InvalidSpecError,
)
from fakevoice.mail import MailError, outbox_dir
from fakevoice.settings import get_settings
from fakevoice.store.records import AnalysisFilter
from fakevoice.store.tables import SignInFailureRow, UserRow, utcnow

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
    """The one message the log backend kept since the last call, and the code in it; the log
    says where it is, never what it says."""
    notes = [r.getMessage() for r in caplog.records if r.name == "fakevoice.mail"]
    assert len(notes) == 1, notes
    assert "Your reset code" not in notes[0] and "kept in" in notes[0]
    kept = sorted(outbox_dir().glob("*.txt"), key=lambda p: p.stat().st_mtime_ns)
    assert kept and kept[-1].stat().st_mode & 0o077 == 0  # the server's user only
    message = kept[-1].read_text()
    for path in kept:
        path.unlink()
    found = re.search(r"Your reset code: (\S+)", message)
    assert found is not None, message
    return message, found.group(1)


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


def test_reset_for_unknown_or_unreachable_accounts_sends_nothing_and_changes_nothing(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    accounts.register("bob", PASSWORD)  # no e-mail address
    with caplog.at_level(logging.INFO, logger="fakevoice"):
        accounts.request_password_reset("nobody")
        accounts.request_password_reset("bob")
    assert not [r for r in caplog.records if r.name == "fakevoice.mail"]
    assert not outbox_dir().exists()
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


# --- password guessing ---------------------------------------------------------------------------


def _guess(name: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(accounts.AuthenticationError, match="Wrong user name or password"):
            accounts.authenticate(name, "a wrong guess")


def _age_failures(name: str, minutes: float) -> None:
    """As if the wrong passwords for ``name`` had been typed ``minutes`` earlier."""
    with store.session_scope() as session:
        row = session.get(SignInFailureRow, name)
        assert row is not None
        row.last_failed_at -= timedelta(minutes=minutes)


def test_wrong_passwords_pause_a_names_sign_ins_whether_or_not_it_exists(db: Path) -> None:
    accounts.register("alice", PASSWORD)
    limit = get_settings().sign_in_max_failures
    _guess("alice", limit)
    _guess("nobody", limit)
    # Now even the right password is refused, with the same words for both names.
    paused = []
    for name in ("alice", "ALICE ", "nobody"):
        with pytest.raises(accounts.SignInPausedError) as error:
            accounts.authenticate(name, PASSWORD)
        paused.append(str(error.value))
    assert paused[0] == paused[1] == paused[2]
    assert "pause for 15 more minutes" in paused[0] and "Forgot your password?" in paused[0]
    assert accounts.SignInPausedError.code == "too_many_attempts"
    # Attempts while paused do not count: the pause does not grow.
    with store.session_scope(readonly=True) as session:
        assert session.get(SignInFailureRow, "alice").failures == limit
    _age_failures("alice", 14.5)
    with pytest.raises(accounts.SignInPausedError, match="1 more minute\\."):
        accounts.authenticate("alice", PASSWORD)
    _age_failures("alice", 1)
    assert accounts.authenticate("alice", PASSWORD).username == "alice"  # the pause is over
    # A sign-in forgets the count: a few more wrong passwords do not pause it again.
    _guess("alice", limit - 1)
    assert accounts.authenticate("alice", PASSWORD).username == "alice"
    _guess("alice", limit - 1)
    assert accounts.authenticate("alice", PASSWORD).username == "alice"


def test_old_wrong_passwords_are_forgotten_and_a_reset_ends_a_pause(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    accounts.register("alice", PASSWORD, email="alice@example.org")
    limit = get_settings().sign_in_max_failures
    _guess("alice", limit - 1)
    _age_failures("alice", 16)  # older than the pause: the count starts again
    _guess("alice", limit - 1)
    assert accounts.authenticate("alice", PASSWORD).username == "alice"
    _guess("someone", 1)
    _age_failures("someone", 16)
    _guess("alice", limit)
    with store.session_scope(readonly=True) as session:  # stale names are dropped
        assert session.get(SignInFailureRow, "someone") is None
    with pytest.raises(accounts.SignInPausedError):
        accounts.authenticate("alice", PASSWORD)
    # The owner proves it by mail: the new password works at once.
    with caplog.at_level(logging.INFO, logger="fakevoice"):
        accounts.request_password_reset("alice")
    _, code = _mailed_code(caplog)
    accounts.reset_password("alice", code, "a new secret 1")
    assert accounts.authenticate("alice", "a new secret 1").username == "alice"


def test_the_pause_follows_the_settings(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEVOICE_SIGN_IN_MAX_FAILURES", "2")
    monkeypatch.setenv("FAKEVOICE_SIGN_IN_PAUSE_MINUTES", "90")
    get_settings.cache_clear()
    accounts.register("alice", PASSWORD)
    _guess("alice", 2)
    with pytest.raises(accounts.SignInPausedError, match="90 more minutes"):
        accounts.authenticate("alice", PASSWORD)


def test_wrong_current_passwords_count_too(db: Path) -> None:
    user = accounts.register("alice", PASSWORD)
    limit = get_settings().sign_in_max_failures
    for _ in range(limit):
        with pytest.raises(accounts.AuthenticationError, match="current password is wrong"):
            accounts.change_password(user.id, "a wrong guess", "a new secret 1")
    with pytest.raises(accounts.SignInPausedError):
        accounts.change_password(user.id, PASSWORD, "a new secret 1")
    with pytest.raises(accounts.SignInPausedError):
        accounts.authenticate("alice", PASSWORD)


def test_sign_up_cannot_take_the_servers_own_accounts(db: Path) -> None:
    """Whoever signed up as the CLI's account (or the anonymous API use's) would act as it: the
    page refuses those names; the operator may still create them."""
    for name in ("local", "Anonymous"):
        with pytest.raises(InvalidSpecError, match="kept for the server"):
            accounts.register(name, PASSWORD, self_service=True)
    assert accounts.register("local", PASSWORD).username == "local"  # fakevoice user create


def test_control_characters_never_reach_the_store(db: Path) -> None:
    """A NUL (which PostgreSQL refuses in text) or a line end in a name is answered in words."""
    accounts.register("bob", PASSWORD)
    with pytest.raises(AuthenticationError, match="Wrong user name or password"):
        accounts.authenticate("bob\x00", PASSWORD)
    accounts.request_password_reset("bob\x00")  # says nothing, as for any unknown name
    with pytest.raises(InvalidSpecError, match="control characters"):
        accounts.register("carol", PASSWORD, display_name="Carol\x00C")
    with pytest.raises(InvalidSpecError, match="not an e-mail address"):
        accounts.register("carol", PASSWORD, email="carol\x00@example.org")
    actor = accounts.authenticate("bob", PASSWORD).actor
    with store.session_scope() as session, pytest.raises(InvalidSpecError, match="control"):
        store.create_run(session, actor, "a\nrun", {})
    with store.session_scope(readonly=True) as session:
        assert store.list_analyses(session, actor, where=AnalysisFilter(text="a\x00b")) == []


def test_guesses_made_at_once_cannot_all_pass_the_pause(db: Path) -> None:
    """Each attempt is counted before its password is checked, in the transaction that checks
    the pause: twelve guesses at once get at most the allowed number of password checks."""
    from concurrent.futures import ThreadPoolExecutor

    accounts.register("alice", PASSWORD)
    allowed = get_settings().sign_in_max_failures

    def guess(i: int) -> str:
        try:
            accounts.authenticate("alice", f"wrong guess {i}")
        except accounts.SignInPausedError:
            return "paused"
        except accounts.AuthenticationError:
            return "checked"
        return "signed in"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(guess, range(12)))
    assert outcomes.count("checked") == allowed and outcomes.count("paused") == 12 - allowed
    with pytest.raises(accounts.SignInPausedError):
        accounts.authenticate("alice", PASSWORD)  # even the right one waits
