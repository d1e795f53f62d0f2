"""Accounts: registration, password checks (bcrypt), resets by mail, details.

Pure logic over the store; what a browser sign-in needs (the cookie key, the credentials for
streamlit-authenticator, which sign-ins are over) is :mod:`fakevoice.sign_ins`, and the Streamlit
side (forms, the cookie) lives in ``components/auth.py``. Passwords are
kept as bcrypt hashes in ``users.password_hash``; bcrypt reads at most 72 bytes, so longer
passwords are refused with a message before bcrypt sees them (never silently cut).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

import bcrypt
from sqlalchemy.exc import IntegrityError

from fakevoice import mail, store
from fakevoice.errors import FakeVoiceError, InvalidSpecError
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, UserRecord
from fakevoice.store.runs import has_control_characters
from fakevoice.store.tables import utcnow
from fakevoice.store.users import (
    clear_sign_in_failures,
    get_user_by_email,
    record_sign_in_failure,
    set_password_hash,
    set_reset_code,
    sign_in_paused_until,
    update_user,
    user_with_reset_code,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_BYTES = 72
MAX_DISPLAY_NAME_CHARS = 128
MAX_EMAIL_CHARS = 320
USERNAME_RULE = (
    "3 to 32 characters: lower-case letters, digits, '.', '_' or '-', "
    "starting with a letter or a digit"
)
RESET_CODE_MINUTES = 30
RESET_CODE_BYTES = 9  # 12 URL-safe characters, 72 random bits
MAX_RESET_CODE_CHARS = 64

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,31}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

OPERATOR = Actor(user_id=0, is_admin=True)
"""The server operator at the command line (``fakevoice user ...``): an administrator without a
user row, since whoever runs the CLI on the server can read its files anyway."""


class AuthenticationError(FakeVoiceError):
    """Wrong user name or password (which of the two is not said)."""

    code = "unauthorized"


class SignInPausedError(AuthenticationError):
    """Too many wrong passwords for a user name lately: its sign-ins pause for a while."""

    code = "too_many_attempts"


# --- checks ----------------------------------------------------------------------------------


def normalise_username(username: str) -> str:
    """``username`` stripped and lower-cased; InvalidSpecError when it breaks the naming rule."""
    name = username.strip().lower() if isinstance(username, str) else ""
    if not _USERNAME.fullmatch(name):
        raise InvalidSpecError(f"A user name must be {USERNAME_RULE}; got {username!r}.")
    return name


def check_password(password: str) -> None:
    """Refuse a password bcrypt cannot take whole, or one too short to resist guessing.

    Raises:
        InvalidSpecError: fewer than 8 characters, or more than 72 bytes in UTF-8.
    """
    size = len(password.encode("utf-8"))
    if size > MAX_PASSWORD_BYTES:
        raise InvalidSpecError(
            f"A password can be at most {MAX_PASSWORD_BYTES} bytes long; yours is {size} bytes "
            "(letters outside plain ASCII take 2 to 4 bytes each). Choose a shorter one."
        )
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidSpecError(f"A password needs at least {MIN_PASSWORD_CHARS} characters.")


def check_email(email: str | None) -> str | None:
    """The address stripped, None when empty; InvalidSpecError when it is not an address."""
    address = (email or "").strip()
    if not address:
        return None
    if (
        len(address) > MAX_EMAIL_CHARS
        or not _EMAIL.fullmatch(address)
        or has_control_characters(address)
    ):
        raise InvalidSpecError(f"{address!r} is not an e-mail address (name@example.org).")
    return address


def check_display_name(display_name: str | None, default: str) -> str:
    """The display name stripped (``default`` when empty); InvalidSpecError when too long."""
    name = (display_name or "").strip() or default
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidSpecError(f"A name can be at most {MAX_DISPLAY_NAME_CHARS} characters long.")
    if has_control_characters(name):
        raise InvalidSpecError("A name cannot hold control characters (tabs, line ends...).")
    return name


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """The bcrypt hash of an acceptable password (see :func:`check_password`)."""
    check_password(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")


def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether ``password`` matches the stored hash (False for no hash or an over-long password)."""
    encoded = password.encode("utf-8")
    if not password_hash or len(encoded) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except ValueError:  # a damaged hash in the database
        logger.error("a stored password hash is not a bcrypt hash")
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt())


# --- use-cases -------------------------------------------------------------------------------


def reserved_usernames() -> set[str]:
    """The names of the server's own accounts: the CLI's and the one anonymous API verdicts go
    to (as their settings name them), normalised as user names are."""
    settings = get_settings()
    names = set()
    for name in (settings.cli_user, settings.api_anonymous_user):
        try:
            names.add(normalise_username(name))
        except InvalidSpecError:
            continue  # a name no one could register anyway
    return names


def register(
    username: str,
    password: str,
    *,
    email: str | None = None,
    display_name: str | None = None,
    is_admin: bool = False,
    self_service: bool = False,
) -> UserRecord:
    """Create an account with a bcrypt-hashed password.

    Args:
        self_service: someone signing up on the page, who may not take the names of the
            server's own accounts (the CLI's, the anonymous API use's): whoever did would act as
            them. The operator (``fakevoice user create``) may.

    Raises:
        InvalidSpecError: the user name, password, e-mail or display name breaks a rule, or is
            one of the server's own accounts (``self_service``).
        ConflictError: the user name is taken.
    """
    name = normalise_username(username)
    if self_service and name in reserved_usernames():
        raise InvalidSpecError(f"The user name {name!r} is kept for the server; choose another.")
    address = check_email(email)
    shown = check_display_name(display_name, name)
    password_hash = hash_password(password)
    store.init_db()
    with store.session_scope() as session:
        return store.create_user(
            session,
            name,
            display_name=shown,
            email=address,
            password_hash=password_hash,
            is_admin=is_admin,
        )


def authenticate(username: str, password: str) -> UserRecord:
    """The user whose name and password these are.

    Raises:
        InvalidSpecError: the password is longer than bcrypt can check (72 bytes).
        AuthenticationError: unknown user or wrong password (the same message for both).
    """
    size = len(password.encode("utf-8"))
    if size > MAX_PASSWORD_BYTES:
        raise InvalidSpecError(
            f"A password is at most {MAX_PASSWORD_BYTES} bytes long; the one entered is "
            f"{size} bytes, so it cannot be right."
        )
    name = username.strip().lower() if isinstance(username, str) else ""
    if not name or has_control_characters(name):  # no account has one (nor can the store hold NUL)
        raise AuthenticationError("Wrong user name or password.")
    _reserve_attempt(name)
    with store.session_scope(readonly=True) as session:
        user = store.get_user_by_username(session, name)
    if user is None or user.password_hash is None:
        # The same bcrypt work as for a real user, so timing does not tell who exists.
        bcrypt.checkpw(password.encode("utf-8"), _dummy_hash())
        ok = False
    else:
        ok = verify_password(password, user.password_hash)
    _settle_attempt(name, ok)
    if not ok or user is None:
        raise AuthenticationError("Wrong user name or password.")
    return user


def _reserve_attempt(name: str) -> None:
    """Refuse a password check for ``name`` while its sign-ins pause; otherwise count this
    attempt as a wrong password before the password is checked (:func:`_settle_attempt` forgets
    the count when it was right). Check and count are one transaction: attempts made at once
    cannot all pass the check before any is counted.

    Raises:
        SignInPausedError: ``sign_in_max_failures`` wrong passwords were typed for the name, the
            last less than ``sign_in_pause_minutes`` ago.
    """
    settings = get_settings()
    pause = timedelta(minutes=settings.sign_in_pause_minutes)
    for attempt in range(2):  # two first failures of one name at once: one insert loses
        try:
            with store.session_scope() as session:
                until = sign_in_paused_until(
                    session,
                    name,
                    max_failures=settings.sign_in_max_failures,
                    pause=pause,
                    lock=True,
                )
                if until is None:
                    failures = record_sign_in_failure(session, name, pause=pause)
            break
        except IntegrityError:
            if attempt:
                raise
    if until is not None:
        minutes = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
        raise SignInPausedError(
            f"Too many wrong passwords for this user name: its sign-ins pause for {minutes} more "
            f"minute{'s' if minutes > 1 else ''}. Wait, or set a new password with 'Forgot your "
            "password?'."
        )
    if failures == settings.sign_in_max_failures:
        # Not any text typed as a name: it might be someone's password.
        shown = name if _USERNAME.fullmatch(name) else "(no account's name)"
        logger.warning("sign-ins with the name %s pause: wrong passwords", shown)


def _settle_attempt(name: str, ok: bool) -> None:
    """A right password forgets the name's count (the attempt was counted as wrong)."""
    if ok:
        with store.session_scope() as session:
            clear_sign_in_failures(session, name)


def change_password(user_id: int, current_password: str, new_password: str) -> UserRecord:
    """Replace a user's password after checking the current one.

    Raises:
        AuthenticationError: the current password is wrong.
        InvalidSpecError: the new password breaks a rule.
    """
    with store.session_scope(readonly=True) as session:
        user = store.get_user(session, user_id)
    # A session left open is no licence to guess the password: wrong ones count as at sign-in.
    _reserve_attempt(user.username)
    ok = verify_password(current_password, user.password_hash)
    _settle_attempt(user.username, ok)
    if not ok:
        raise AuthenticationError("The current password is wrong.")
    new_hash = hash_password(new_password)
    with store.session_scope() as session:
        return set_password_hash(session, user_id, new_hash)


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()


def _find_account(session: Session, name_or_email: str) -> UserRecord | None:
    key = name_or_email.strip()
    user = store.get_user_by_username(session, key.lower())
    if user is None and "@" in key:
        user = get_user_by_email(session, key)
    return user


def request_password_reset(name_or_email: str) -> None:
    """Mail the account a one-time code that sets a new password (:func:`reset_password`).

    The password does not change until the code is used, so asking for a reset on someone else's
    account locks nobody out. The code works once, for :data:`RESET_CODE_MINUTES` minutes; a new
    request replaces it. Says nothing about whether the account exists (the page shows one answer
    for all cases); an account without an e-mail address cannot be reached (logged).

    Raises:
        MailError: the mail backend failed; no code is then kept.
    """
    key = name_or_email.strip() if isinstance(name_or_email, str) else ""
    if not key:
        raise InvalidSpecError("Enter your user name or e-mail address.")
    if has_control_characters(key):
        return  # no account is called that: the same silence as for any unknown name
    with store.session_scope() as session:
        user = _find_account(session, key)
        if user is None or user.password_hash is None:
            logger.info("password reset asked for an unknown account")
            return
        if not user.email:
            logger.warning("password reset for %s: the account has no e-mail", user.username)
            return
        code = secrets.token_urlsafe(RESET_CODE_BYTES)
        expires = utcnow() + timedelta(minutes=RESET_CODE_MINUTES)
        set_reset_code(session, user.id, _code_hash(code), expires)
        # Sent inside the transaction: when the mail fails, the code is rolled back.
        mail.send_mail(
            user.email,
            "Your Fake Voice Workbench password reset code",
            f"Hello {user.display_name},\n\n"
            f"someone (hopefully you) asked to reset the password of the account "
            f"{user.username!r}.\n\nYour reset code: {code}\n\n"
            f"Enter it with a new password under 'Forgot password' on the Home page within "
            f"{RESET_CODE_MINUTES} minutes. If you did not ask for this, ignore this mail: your "
            "password stays as it is.\n",
        )


def reset_password(name_or_email: str, code: str, new_password: str) -> UserRecord:
    """Set a new password with the code :func:`request_password_reset` mailed; the code is used up.

    Sessions signed in before the change lose their sign-in cookie (see ``components/auth.py``).

    Raises:
        InvalidSpecError: the new password breaks the password rules.
        AuthenticationError: unknown account, or a wrong, used or expired code (one message).
    """
    check_password(new_password)
    wrong = AuthenticationError(
        "That code is wrong, was used already or has expired; ask for a new one."
    )
    key = name_or_email.strip() if isinstance(name_or_email, str) else ""
    text = code.strip() if isinstance(code, str) else ""
    if not key or not text or len(text) > MAX_RESET_CODE_CHARS:
        raise wrong
    new_hash = hash_password(new_password)
    with store.session_scope() as session:
        user = _find_account(session, key)
        if user is None or user_with_reset_code(session, user.id, _code_hash(text)) is None:
            raise wrong
        clear_sign_in_failures(session, user.username)  # the owner proved it by mail
        return set_password_hash(session, user.id, new_hash)


def update_details(user_id: int, *, display_name: str, email: str | None) -> UserRecord:
    """Set a user's display name and e-mail address (an empty address removes it).

    Raises:
        InvalidSpecError: the name is too long or the address is not one.
    """
    with store.session_scope() as session:
        user = store.get_user(session, user_id)
        address = check_email(email)
        return update_user(
            session,
            user_id,
            display_name=check_display_name(display_name, user.username),
            email=address,
            clear_email=address is None,
        )


def user_by_username(username: str) -> UserRecord | None:
    """The user with this name (case as stored, or lower case), or None."""
    with store.session_scope(readonly=True) as session:
        return store.get_user_by_username(session, username) or store.get_user_by_username(
            session, username.strip().lower()
        )


# --- administration --------------------------------------------------------------------------


def list_users(actor: Actor) -> list[UserRecord]:
    """Every user, by name (administrators only: PermissionDeniedError)."""
    with store.session_scope(readonly=True) as session:
        return store.list_users(session, actor)
