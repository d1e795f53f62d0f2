"""Bearer tokens for the HTTP API: create (the secret is shown once), list, revoke, authenticate.

A secret is ``fv_`` followed by 43 URL-safe characters (256 random bits). The server keeps only
its sha256 (a high-entropy secret needs no slow password hash) and the first characters, so a
person can tell their tokens apart on the profile page.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fakevoice import store
from fakevoice.store import tokens as token_store
from fakevoice.store.records import Actor, ModelRecord
from fakevoice.store.tables import TOKEN_SCOPES
from fakevoice.store.tokens import MAX_TOKEN_NAME_LENGTH, TokenRecord

__all__ = [
    "MAX_TOKEN_NAME_LENGTH",
    "SECRET_PREFIX",
    "TOKEN_SCOPES",
    "Authenticated",
    "TokenRecord",
    "active_tokens",
    "authenticate",
    "authenticate_for_model",
    "create_token",
    "list_tokens",
    "revoke_all_tokens",
    "revoke_token",
    "tokens_in_words",
]

SECRET_PREFIX = "fv_"
SECRET_BYTES = 32
DISPLAY_CHARS = 8  # random characters kept for display, after SECRET_PREFIX
MAX_SECRET_LENGTH = 256


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Authenticated:
    """Whom a token stands for, what it may do, and the model a verdict request named.

    Attributes:
        scope: ``full`` or ``verdicts`` (:data:`TOKEN_SCOPES`).
        model: the model named, when one was asked for and the actor may use it; else None.
    """

    actor: Actor
    scope: str
    model: ModelRecord | None = None


def create_token(actor: Actor, name: str, scope: str = "full") -> tuple[TokenRecord, str]:
    """A new token of the actor's and its secret, which is never shown again.

    Args:
        scope: ``full`` (all the actor may do) or ``verdicts`` (ask for verdicts, read and label
            the history, read models, runs and datasets).

    Raises:
        InvalidSpecError: the name is empty or too long, or an unknown scope.
        ConflictError: the actor has an active token of this name.
        LimitExceededError: the actor has too many active tokens.
    """
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    prefix = secret[: len(SECRET_PREFIX) + DISPLAY_CHARS]
    with store.session_scope() as session:
        record = token_store.add_token(
            session, actor, name=name, prefix=prefix, token_hash=_hash(secret), scope=scope
        )
    return record, secret


def list_tokens(actor: Actor) -> list[TokenRecord]:
    """The actor's tokens, newest first, revoked ones included."""
    with store.session_scope(readonly=True) as session:
        return token_store.list_tokens(session, actor)


def revoke_token(actor: Actor, token_id: int) -> TokenRecord:
    """Revoke one of the actor's tokens (NotFoundError for anyone else's)."""
    with store.session_scope() as session:
        return token_store.revoke_token(session, actor, token_id)


def active_tokens(actor: Actor, user_id: int) -> list[TokenRecord]:
    """The user's active tokens, newest first: the user themselves or an administrator.

    Raises:
        PermissionDeniedError: the actor is neither that user nor an administrator.
        NotFoundError: no such user.
    """
    with store.session_scope(readonly=True) as session:
        return token_store.active_tokens(session, actor, user_id)


def revoke_all_tokens(actor: Actor, user_id: int) -> int:
    """Revoke every active token of the user at once (an account thought compromised): the user
    themselves or an administrator. Returns how many were revoked (0 when none was active).

    Raises:
        PermissionDeniedError: the actor is neither that user nor an administrator.
        NotFoundError: no such user.
    """
    with store.session_scope() as session:
        return len(token_store.revoke_all_tokens(session, actor, user_id))


def tokens_in_words(count: int) -> str:
    """``1 API token``, ``3 API tokens``: what :func:`revoke_all_tokens` did, for people."""
    return f"{count} API token{'' if count == 1 else 's'}"


def authenticate(secret: str) -> Authenticated | None:
    """The actor a secret stands for and its scope, or None for an unknown or revoked one.

    Updates the token's last-used time (to the minute, so most requests only read).
    """
    return authenticate_for_model(secret, None)


def authenticate_for_model(secret: str, model_key: str | None) -> Authenticated | None:
    """The actor a secret stands for and the model they name, read in one transaction (a verdict
    request needs both before it can start, and each transaction costs a round of file locking).

    Args:
        secret: the bearer token.
        model_key: a model's name or id as :func:`fakevoice.services.find_model` takes it, or None.

    Returns:
        None for an unknown or revoked token; otherwise the actor, the token's scope and the
        model, which is None when no model that the actor may use has that name or id (or none
        was asked for).
    """
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX) or len(text) > MAX_SECRET_LENGTH:
        return None
    token_hash = _hash(text)
    model = None
    with store.session_scope(readonly=True) as session:
        found = token_store.find_active_token(session, token_hash)
        if found is not None and model_key is not None:
            model = store.find_model_by_key(session, found[1], model_key)
    if found is None:
        return None
    token, actor = found
    if token_store.needs_touch(token):
        with store.session_scope() as session:
            token_store.touch_token(session, token.id)
    return Authenticated(actor, token.scope, model)
