"""Users: create, look up, list and delete (administrators only for the last two)."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fakevoice.errors import ConflictError, InvalidSpecError, NotFoundError, PermissionDeniedError
from fakevoice.store.records import Actor, UserRecord, to_record
from fakevoice.store.tables import UserRow

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


def _require_admin(actor: Actor, what: str) -> None:
    if not actor.is_admin:
        raise PermissionDeniedError(f"Only an administrator may {what}.")
