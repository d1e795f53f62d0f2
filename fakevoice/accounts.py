"""Accounts: registration, password checks (bcrypt), resets by mail, details, the cookie key.

Pure logic over the store; the Streamlit side (forms, the sign-in cookie through
streamlit-authenticator) lives in ``components/auth.py`` and calls only this module. Passwords are
kept as bcrypt hashes in ``users.password_hash``; bcrypt reads at most 72 bytes, so longer
passwords are refused with a message before bcrypt sees them (never silently cut).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bcrypt

from fakevoice import mail, store
from fakevoice.errors import FakeVoiceError, InvalidSpecError, NotFoundError
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, UserRecord
from fakevoice.store.tables import utcnow
from fakevoice.store.users import (
    cookie_ended,
    end_cookie,
    end_sessions,
    get_user_by_email,
    set_password_hash,
    set_reset_code,
    update_user,
    user_with_reset_code,
    users_with_password,
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
COOKIE_KEY_FILE = "cookie.key"
MIN_COOKIE_KEY_CHARS = 32

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,31}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

OPERATOR = Actor(user_id=0, is_admin=True)
"""The server operator at the command line (``fakevoice user ...``): an administrator without a
user row, since whoever runs the CLI on the server can read its files anyway."""


class AuthenticationError(FakeVoiceError):
    """Wrong user name or password (which of the two is not said)."""

    code = "unauthorized"


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
    if len(address) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(address):
        raise InvalidSpecError(f"{address!r} is not an e-mail address (name@example.org).")
    return address


def check_display_name(display_name: str | None, default: str) -> str:
    """The display name stripped (``default`` when empty); InvalidSpecError when too long."""
    name = (display_name or "").strip() or default
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidSpecError(f"A name can be at most {MAX_DISPLAY_NAME_CHARS} characters long.")
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


def register(
    username: str,
    password: str,
    *,
    email: str | None = None,
    display_name: str | None = None,
    is_admin: bool = False,
) -> UserRecord:
    """Create an account with a bcrypt-hashed password.

    Raises:
        InvalidSpecError: the user name, password, e-mail or display name breaks a rule.
        ConflictError: the user name is taken.
    """
    name = normalise_username(username)
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
    with store.session_scope(readonly=True) as session:
        user = store.get_user_by_username(session, name) if name else None
    if user is None or user.password_hash is None:
        # The same bcrypt work as for a real user, so timing does not tell who exists.
        bcrypt.checkpw(password.encode("utf-8"), _dummy_hash())
        raise AuthenticationError("Wrong user name or password.")
    if not verify_password(password, user.password_hash):
        raise AuthenticationError("Wrong user name or password.")
    return user


def change_password(user_id: int, current_password: str, new_password: str) -> UserRecord:
    """Replace a user's password after checking the current one.

    Raises:
        AuthenticationError: the current password is wrong.
        InvalidSpecError: the new password breaks a rule.
    """
    with store.session_scope(readonly=True) as session:
        user = store.get_user(session, user_id)
    if not verify_password(current_password, user.password_hash):
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
        return set_password_hash(session, user.id, new_hash)


def cookie_expiry(token: object, key: str) -> float | None:
    """A sign-in cookie's signed expiry (epoch seconds); None if forged or unreadable.

    streamlit-authenticator signs ``{"username", "exp_date"}`` with HS256 and sets the expiry
    ``cookie_expiry_days`` after the cookie is made. It is a float with microseconds, so it tells
    one sign-in of a user from another.
    """
    import jwt

    if not isinstance(token, str):
        return None
    try:
        payload = jwt.decode(token, key, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    expires = payload.get("exp_date") if isinstance(payload, dict) else None
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return None
    return float(expires)


def end_cookie_sign_in(user_id: int, cookie_expires: float) -> None:
    """ "Sign out" in one browser: its cookie (the user's, with this signed expiry) is refused from
    now on, even if the browser never deletes it. Nothing happens for a removed user."""
    with store.session_scope() as session:
        try:
            end_cookie(session, user_id, cookie_expires)
        except NotFoundError:
            return


def cookie_sign_in_ended(user_id: int, cookie_expires: float) -> bool:
    """Whether the user signed out in the browser holding the cookie with this expiry."""
    with store.session_scope(readonly=True) as session:
        return cookie_ended(session, user_id, cookie_expires)


def sign_in_still_valid(user: UserRecord, signed_in_at: float | None) -> bool:
    """Whether a sign-in made at ``signed_in_at`` (epoch seconds) may still act as ``user``.

    A sign-in is a cookie (made when the user signed in) or an open browser session. It is over
    when it was made before the user's last password change (a reset ends other sessions), before
    "Sign out everywhere" (:func:`end_all_sessions`), or before the account was created (a cookie
    of a deleted account whose name was taken again).
    """
    if signed_in_at is None:
        return False
    since = max(
        moment.timestamp()
        for moment in (user.created_at, user.password_changed_at, user.sessions_ended_at)
        if moment is not None
    )
    return signed_in_at >= since


def end_all_sessions(actor: Actor, user_id: int) -> UserRecord:
    """Sign the user out in every browser: sign-ins made before now stop working.

    The password and API tokens stay as they are (tokens are revoked one by one).

    Raises:
        PermissionDeniedError: the actor is neither that user nor an administrator.
        NotFoundError: no such user.
    """
    with store.session_scope() as session:
        return end_sessions(session, actor, user_id)


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


def credentials() -> dict[str, Any]:
    """The credentials dict streamlit-authenticator expects, built from the database.

    ``{"usernames": {name: {"name", "email", "password" (bcrypt hash), "roles"}}}`` for every
    user who can sign in with a password. Rebuilt on each page run, so the database stays the
    only place where accounts change.
    """
    with store.session_scope(readonly=True) as session:
        users = users_with_password(session)
    return {
        "usernames": {
            user.username: {
                "name": user.display_name,
                "email": user.email or "",
                "password": user.password_hash,
                "roles": ["admin"] if user.is_admin else ["user"],
            }
            for user in users
        }
    }


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


# --- the sign-in cookie's key ----------------------------------------------------------------


def cookie_key() -> str:
    """The secret that signs sign-in cookies.

    ``settings.cookie_key`` (``FAKEVOICE_COOKIE_KEY``) when set; otherwise a random key generated
    once into ``<data dir>/cookie.key`` with owner-only permissions (0600) and read back after.
    There is no built-in default: a key everyone knows would let anyone forge a cookie.

    Raises:
        FakeVoiceError: the key file exists but is too short to be a key.
    """
    settings = get_settings()
    if settings.cookie_key is not None:
        return settings.cookie_key.get_secret_value()
    path = settings.data_dir / COOKIE_KEY_FILE
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("%s was readable by others (mode %o); made it owner-only", path, mode)
        path.chmod(0o600)
    key = path.read_text().strip()
    if len(key) < MIN_COOKIE_KEY_CHARS:
        raise FakeVoiceError(
            f"The cookie key file {path} is damaged (too short); delete it and restart."
        )
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        try:
            # link() fails when the file exists: two processes starting at once share one key.
            os.link(tmp, path)
            logger.info("generated a new cookie key in %s", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
