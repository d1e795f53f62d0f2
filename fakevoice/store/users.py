"""Users: create, look up, update, list and delete (administrators only for the last two)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fakevoice.errors import ConflictError, InvalidSpecError, NotFoundError, PermissionDeniedError
from fakevoice.store.db import lower_text
from fakevoice.store.records import Actor, UserRecord, to_record
from fakevoice.store.tables import EndedCookieRow, SignInFailureRow, UserRow, utcnow

logger = logging.getLogger(__name__)

MAX_USERNAME_LENGTH = 64


def _clean_username(username: str) -> str:
    name = username.strip()
    if not name or len(name) > MAX_USERNAME_LENGTH or any(c.isspace() for c in name):
        raise InvalidSpecError(
            f"A user name must be 1 to {MAX_USERNAME_LENGTH} characters without spaces; "
            f"got {username!r}."
        )
    return name


def create_user(
    session: Session,
    username: str,
    *,
    display_name: str | None = None,
    email: str | None = None,
    password_hash: str | None = None,
    is_admin: bool = False,
) -> UserRecord:
    """Add a user. Raises ConflictError when the user name is taken."""
    name = _clean_username(username)
    if session.scalar(select(UserRow.id).where(UserRow.username == name)) is not None:
        raise ConflictError(f"The user name {name!r} is already taken.")
    row = UserRow(
        username=name,
        display_name=display_name if display_name is not None else name,
        email=email,
        password_hash=password_hash,
        is_admin=is_admin,
    )
    session.add(row)
    session.flush()
    logger.info("created user %s (id %d, admin=%s)", name, row.id, is_admin)
    return to_record(UserRecord, row)


def get_user(session: Session, user_id: int) -> UserRecord:
    """The user with this id. Raises NotFoundError."""
    row = session.get(UserRow, user_id)
    if row is None:
        raise NotFoundError(f"There is no user with id {user_id}.")
    return to_record(UserRecord, row)


def usernames(session: Session, user_ids: Collection[int]) -> dict[int, str]:
    """The user name of each of these users, by id, in one query (ids of no user left out)."""
    if not user_ids:
        return {}
    query = select(UserRow.id, UserRow.username).where(UserRow.id.in_(user_ids))
    return {user_id: name for user_id, name in session.execute(query)}


def get_user_by_username(session: Session, username: str) -> UserRecord | None:
    """The user with this user name, or None."""
    row = session.scalar(select(UserRow).where(UserRow.username == username.strip()))
    return None if row is None else to_record(UserRecord, row)


def get_or_create_user(session: Session, username: str, *, is_admin: bool = False) -> UserRecord:
    """The user with this name, created first when missing (the local single-user default)."""
    user = get_user_by_username(session, username)
    return user if user is not None else create_user(session, username, is_admin=is_admin)


def list_users(session: Session, actor: Actor) -> list[UserRecord]:
    """Every user, by name. Administrators only (PermissionDeniedError otherwise)."""
    _require_admin(actor, "list users")
    rows = session.scalars(select(UserRow).order_by(UserRow.username))
    return [to_record(UserRecord, row) for row in rows]


def delete_user(session: Session, actor: Actor, user_id: int) -> UserRecord:
    """Delete a user with their runs, metrics, models and analyses (rows only: the caller removes
    their folders). Administrators only. Returns the deleted user."""
    _require_admin(actor, "delete users")
    user = get_user(session, user_id)
    session.execute(delete(UserRow).where(UserRow.id == user_id))
    logger.info("user %s (id %d) deleted by user %d", user.username, user_id, actor.user_id)
    return user


def get_user_by_email(session: Session, email: str) -> UserRecord | None:
    """The first user (lowest id) with this e-mail address, compared without case, or None."""
    address = email.strip().lower()
    if not address:
        return None
    query = select(UserRow).where(lower_text(UserRow.email) == address).order_by(UserRow.id)
    row = session.scalars(query).first()
    return None if row is None else to_record(UserRecord, row)


def users_with_password(session: Session) -> list[UserRecord]:
    """Every user who can sign in with a password, by name.

    Server-side only (the sign-in layer builds its credentials from it); never show the result.
    """
    query = select(UserRow).where(UserRow.password_hash.is_not(None)).order_by(UserRow.username)
    return [to_record(UserRecord, row) for row in session.scalars(query)]


def update_user(
    session: Session,
    user_id: int,
    *,
    display_name: str | None = None,
    email: str | None = None,
    clear_email: bool = False,
) -> UserRecord:
    """Change a user's display name and / or e-mail (None leaves a field as it is; ``clear_email``
    removes the address). The caller checks that the acting user may do this. NotFoundError."""
    row = _row(session, user_id)
    if display_name is not None:
        row.display_name = display_name
    if clear_email:
        row.email = None
    elif email is not None:
        row.email = email
    session.flush()
    return to_record(UserRecord, row)


def set_password_hash(session: Session, user_id: int, password_hash: str) -> UserRecord:
    """Store a new password hash (the caller hashed it); any reset code is void. NotFoundError."""
    row = _row(session, user_id)
    row.password_hash = password_hash
    row.password_changed_at = utcnow()
    row.reset_code_hash = None
    row.reset_code_expires_at = None
    session.flush()
    logger.info("password changed for user %s (id %d)", row.username, user_id)
    return to_record(UserRecord, row)


def end_sessions(session: Session, actor: Actor, user_id: int) -> UserRecord:
    """End every sign-in of the user made before now (the password stays). The user themselves
    or an administrator (PermissionDeniedError otherwise); NotFoundError."""
    if actor.user_id != user_id:
        _require_admin(actor, "sign other users out")
    row = _row(session, user_id)
    row.sessions_ended_at = utcnow()
    session.flush()
    logger.info(
        "every session of user %s (id %d) ended by user %d", row.username, user_id, actor.user_id
    )
    return to_record(UserRecord, row)


def end_cookie(session: Session, user_id: int, cookie_expires: float) -> None:
    """Refuse from now on the sign-in cookie of ``user_id`` with this signed expiry (epoch
    seconds); cookies whose expiry has passed are forgotten on the way. NotFoundError."""
    _row(session, user_id)
    now = utcnow().timestamp()
    session.execute(delete(EndedCookieRow).where(EndedCookieRow.cookie_expires < now))
    if not cookie_ended(session, user_id, cookie_expires):
        session.add(EndedCookieRow(user_id=user_id, cookie_expires=cookie_expires))
        session.flush()


def cookie_ended(session: Session, user_id: int, cookie_expires: float) -> bool:
    """Whether that sign-in cookie was ended with :func:`end_cookie`."""
    query = select(EndedCookieRow.id).where(
        EndedCookieRow.user_id == user_id, EndedCookieRow.cookie_expires == cookie_expires
    )
    return session.scalars(query).first() is not None


def set_reset_code(
    session: Session, user_id: int, code_hash: str, expires_at: datetime
) -> UserRecord:
    """Give the user a password reset code (its hash); it replaces an earlier one. NotFoundError."""
    row = _row(session, user_id)
    row.reset_code_hash = code_hash
    row.reset_code_expires_at = expires_at
    session.flush()
    return to_record(UserRecord, row)


def user_with_reset_code(session: Session, user_id: int, code_hash: str) -> UserRecord | None:
    """The user when ``code_hash`` is their current, unexpired reset code; else None."""
    row = session.get(UserRow, user_id)
    if row is None or row.reset_code_hash is None or row.reset_code_expires_at is None:
        return None
    if not hmac.compare_digest(row.reset_code_hash, code_hash):
        return None
    if row.reset_code_expires_at <= utcnow():
        return None
    return to_record(UserRecord, row)


def set_admin(session: Session, user_id: int, is_admin: bool) -> UserRecord:
    """Grant or take back the administrator role (server operators only). NotFoundError."""
    row = _row(session, user_id)
    row.is_admin = bool(is_admin)
    session.flush()
    return to_record(UserRecord, row)


def _row(session: Session, user_id: int) -> UserRow:
    row = session.get(UserRow, user_id)
    if row is None:
        raise NotFoundError(f"There is no user with id {user_id}.")
    return row


def _require_admin(actor: Actor, what: str) -> None:
    if not actor.is_admin:
        raise PermissionDeniedError(f"Only an administrator may {what}.")


# --- wrong passwords ---------------------------------------------------------------------------


def sign_in_paused_until(
    session: Session, username: str, *, max_failures: int, pause: timedelta, lock: bool = False
) -> datetime | None:
    """When sign-ins with ``username`` may go on again: ``max_failures`` wrong passwords were
    typed for it, the last less than ``pause`` ago; None when they may go on now. With ``lock``
    the count's row stays locked to the transaction (to count an attempt in the same one)."""
    row = session.get(SignInFailureRow, username[:MAX_USERNAME_LENGTH], with_for_update=lock)
    if row is None or row.failures < max_failures:
        return None
    until = row.last_failed_at + pause
    return until if until > utcnow() else None


def record_sign_in_failure(session: Session, username: str, *, pause: timedelta) -> int:
    """Count a wrong password typed for ``username``; returns how many in a row. A count whose
    last failure is ``pause`` old starts again, and such stale counts of other names are
    dropped (the table holds only names tried lately)."""
    now = utcnow()
    key = username[:MAX_USERNAME_LENGTH]
    session.execute(
        delete(SignInFailureRow).where(
            SignInFailureRow.last_failed_at < now - pause, SignInFailureRow.username != key
        )
    )
    row = session.get(SignInFailureRow, key, with_for_update=True)
    if row is None:
        row = SignInFailureRow(username=key, failures=0, last_failed_at=now)
        session.add(row)
    elif row.last_failed_at < now - pause:
        row.failures = 0
    row.failures += 1
    row.last_failed_at = now
    session.flush()
    return row.failures


def clear_sign_in_failures(session: Session, username: str) -> None:
    """Forget the wrong passwords typed for ``username`` (it signed in, or its password was
    reset)."""
    session.execute(
        delete(SignInFailureRow).where(SignInFailureRow.username == username[:MAX_USERNAME_LENGTH])
    )
