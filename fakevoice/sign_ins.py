"""Browser sign-ins: the key that signs their cookies, the credentials streamlit-authenticator
checks, and which sign-ins are over.

A sign-in is a cookie (made when the user signed in, named by its signed expiry) or an open
browser session. It ends with the user's "Sign out" in that browser (:func:`end_cookie_sign_in`),
with "Sign out everywhere" (:func:`end_all_sessions`), or with a password change; the
Streamlit side that asks these questions on every page run is ``components/auth.py``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fakevoice import secret_files, store
from fakevoice.errors import FakeVoiceError, NotFoundError
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, UserRecord
from fakevoice.store.users import cookie_ended, end_cookie, end_sessions, users_with_password

logger = logging.getLogger(__name__)

COOKIE_KEY_FILE = "cookie.key"
MIN_COOKIE_KEY_CHARS = 32


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

    The password and API tokens stay as they are (to end the tokens too:
    :func:`fakevoice.services.tokens.revoke_all_tokens`).

    Raises:
        PermissionDeniedError: the actor is neither that user nor an administrator.
        NotFoundError: no such user.
    """
    with store.session_scope() as session:
        return end_sessions(session, actor, user_id)


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
    fresh = (secrets.token_urlsafe(48) + "\n").encode()
    key = secret_files.read_or_create(path, fresh, "cookie key").decode(errors="replace").strip()
    if len(key) < MIN_COOKIE_KEY_CHARS:
        raise FakeVoiceError(
            f"The cookie key file {path} is damaged (too short); delete it and restart."
        )
    return key
