"""API tokens: add, list, revoke, and look up by hash (the secret itself is never stored).

Reading and revoking: the owner and administrators; someone else's token is NotFoundError (its
existence is not revealed), asking for all of another user's tokens PermissionDeniedError.
Looking a token up by hash is what authentication does and takes no actor: whoever holds the
secret acts as its owner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from fakevoice.errors import (
    ConflictError,
    InvalidSpecError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.store.records import Actor, field_names, record_from_row, to_record
from fakevoice.store.tables import TOKEN_SCOPES, ApiTokenRow, UserRow, utcnow

logger = logging.getLogger(__name__)

MAX_TOKEN_NAME_LENGTH = 64
MAX_ACTIVE_TOKENS = 50
# Writing the last-used time on every request would make every API call a database write;
# once a minute tells a person just as well whether a token is still in use.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenRecord:
    """An API token as its owner sees it (never the secret, never the hash).

    Attributes:
        prefix: the first characters of the secret, to tell tokens apart.
        last_used_at: when it last authenticated a request (to the minute), None if never.
        revoked_at: when it was revoked; a revoked token authenticates nothing.
        scope: what it may do: ``full`` (all its owner may) or ``verdicts`` (ask for verdicts,
            read and label the history, read models, runs and datasets; change nothing else).
    """

    id: int
    owner_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    scope: str = "full"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def _clean_token_name(name: str) -> str:
    text = name.strip()
    if not text or len(text) > MAX_TOKEN_NAME_LENGTH or not text.isprintable():
        raise InvalidSpecError(
            f"A token name must be 1 to {MAX_TOKEN_NAME_LENGTH} printable characters; got {name!r}."
        )
    return text


def add_token(
    session: Session,
    actor: Actor,
    *,
    name: str,
    prefix: str,
    token_hash: str,
    scope: str = "full",
) -> TokenRecord:
    """Register a token of the actor's, given the sha256 hex of its secret.

    Raises:
        InvalidSpecError: the name is empty or too long, or an unknown scope.
        ConflictError: an active token of the actor's has this name already (a revoked one's
            name may be given again, to the token that replaces it).
        LimitExceededError: the actor already has too many active tokens.
    """
    clean = _clean_token_name(name)
    if scope not in TOKEN_SCOPES:
        raise InvalidSpecError(
            f"A token's scope is one of {', '.join(TOKEN_SCOPES)}; got {scope!r}."
        )
    _require_user(session, actor.user_id, lock=True)
    active_names = [row.name for row in _active_rows(session, actor.user_id)]
    if clean in active_names:
        # Two tokens of one name cannot be told apart when one of them is to be revoked.
        raise ConflictError(
            f"You already have a token named {clean!r}; choose another name, or revoke that "
            "one first."
        )
    if len(active_names) >= MAX_ACTIVE_TOKENS:
        raise LimitExceededError(
            f"You already have {MAX_ACTIVE_TOKENS} active tokens; revoke one first."
        )
    row = ApiTokenRow(
        owner_id=actor.user_id, name=clean, prefix=prefix, token_hash=token_hash, scope=scope
    )
    session.add(row)
    session.flush()
    logger.info("user %d created API token %d (%s, %s)", actor.user_id, row.id, prefix, scope)
    return to_record(TokenRecord, row)


def list_tokens(session: Session, actor: Actor) -> list[TokenRecord]:
    """The actor's own tokens, newest first (revoked ones included)."""
    query = (
        select(ApiTokenRow)
        .where(ApiTokenRow.owner_id == actor.user_id)
        .order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id.desc())
    )
    return [to_record(TokenRecord, row) for row in session.scalars(query)]


def revoke_token(session: Session, actor: Actor, token_id: int) -> TokenRecord:
    """Revoke a token of the actor's (administrators: anyone's); revoking twice is harmless.

    Raises:
        NotFoundError: no such token, or not one the actor may revoke.
    """
    row = session.get(ApiTokenRow, token_id)
    if row is None or not actor.can_write(row.owner_id):
        raise NotFoundError(f"There is no API token with id {token_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        logger.info("API token %d revoked by user %d", token_id, actor.user_id)
    return to_record(TokenRecord, row)


def active_tokens(session: Session, actor: Actor, user_id: int) -> list[TokenRecord]:
    """The user's active tokens, newest first: the user themselves or an administrator.

    Raises:
        PermissionDeniedError: the actor is neither that user nor an administrator.
        NotFoundError: no such user.
    """
    return [to_record(TokenRecord, row) for row in _active_rows_of(session, actor, user_id)]


def revoke_all_tokens(session: Session, actor: Actor, user_id: int) -> list[TokenRecord]:
    """Revoke every active token of the user (each as :func:`revoke_token` does) and return them;
    the user themselves or an administrator. A user with no active token is no error.

    Raises:
        PermissionDeniedError: the actor is neither that user nor an administrator.
        NotFoundError: no such user.
    """
    # Locked: a token of theirs made meanwhile is either revoked here or made after.
    rows = _active_rows_of(session, actor, user_id, lock=True)
    return [revoke_token(session, actor, row.id) for row in rows]


def _active_rows_of(
    session: Session, actor: Actor, user_id: int, *, lock: bool = False
) -> list[ApiTokenRow]:
    """The user's active token rows, once the actor may handle them (see :func:`active_tokens`).
    A user's name and id are public (their profile page), so a refusal tells nothing; one token of
    someone else's is NotFoundError instead, as its id is not public."""
    if not actor.can_write(user_id):
        raise PermissionDeniedError("Only an administrator may handle another user's API tokens.")
    _require_user(session, user_id, lock=lock)
    return _active_rows(session, user_id)


def _require_user(session: Session, user_id: int, *, lock: bool = False) -> None:
    """NotFoundError for no such user. ``lock`` serialises "read the user's active tokens, then
    change them" per user on PostgreSQL (SQLite sessions already hold the write lock from BEGIN
    IMMEDIATE)."""
    query = select(UserRow.id).where(UserRow.id == user_id)
    if session.scalar(query.with_for_update() if lock else query) is None:
        raise NotFoundError(f"There is no user with id {user_id}.")


def _active_rows(session: Session, owner_id: int) -> list[ApiTokenRow]:
    """The active token rows of ``owner_id``, newest first (as :func:`list_tokens` orders)."""
    query = (
        select(ApiTokenRow)
        .where(ApiTokenRow.owner_id == owner_id, ApiTokenRow.revoked_at.is_(None))
        .order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id.desc())
    )
    return list(session.scalars(query))


def find_active_token(session: Session, token_hash: str) -> tuple[TokenRecord, Actor] | None:
    """The active token with this hash and the actor it stands for, or None."""
    found = session.execute(_ACTIVE_TOKEN, {"token_hash": token_hash}).first()
    if found is None:
        return None
    token = record_from_row(TokenRecord, found)
    return token, Actor(user_id=token.owner_id, is_admin=bool(found.is_admin))


# Every API request runs this query: built once, on table columns (see records.record_from_row).
_TOKENS = ApiTokenRow.__table__.c
_ACTIVE_TOKEN = (
    select(*(_TOKENS[name] for name in field_names(TokenRecord)), UserRow.__table__.c.is_admin)
    .join(UserRow.__table__, UserRow.__table__.c.id == _TOKENS.owner_id)
    .where(_TOKENS.token_hash == bindparam("token_hash"), _TOKENS.revoked_at.is_(None))
)


def touch_token(session: Session, token_id: int, when: datetime | None = None) -> None:
    """Record that a token was used (at most once per :data:`LAST_USED_RESOLUTION`)."""
    now = when or utcnow()
    session.execute(
        update(ApiTokenRow)
        .where(ApiTokenRow.id == token_id)
        .where(
            (ApiTokenRow.last_used_at.is_(None))
            | (ApiTokenRow.last_used_at < now - LAST_USED_RESOLUTION)
        )
        .values(last_used_at=now)
    )


def needs_touch(token: TokenRecord, when: datetime | None = None) -> bool:
    """Whether :func:`touch_token` would change this token's last-used time now."""
    now = when or utcnow()
    return token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION
