"""Who is calling: a bearer token's owner, or (when the settings allow it) anonymous.

Anonymous callers act as one server account (``api_anonymous_user``) so their verdicts are
logged like everyone's, but they may only use public models and cannot read runs or history.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from fakevoice import services, store
from fakevoice.errors import FakeVoiceError, NotFoundError, PermissionDeniedError
from fakevoice.services import tokens
from fakevoice.settings import Settings
from fakevoice.store.records import Actor, ModelRecord

REVOKED = "This token is unknown or was revoked."
TOKEN_HINT = "send 'Authorization: Bearer <token>' with a token from your profile page"

_AUTHENTICATION_KEPT = "_fakevoice_authentication"  # an attribute of a route, once worked out

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API token created on the profile page (it starts with fv_).",
)


class UnauthorizedError(FakeVoiceError):
    """The request carries no valid token where one is needed."""

    code = "unauthorized"


@dataclass(frozen=True)
class Caller:
    """The acting user of a request; ``anonymous`` when no token was sent."""

    actor: Actor
    anonymous: bool = False
    scope: str = "full"  # the token's: "full", or "verdicts" (fakevoice.services.tokens)

    def check_model(self, model: ModelRecord) -> ModelRecord:
        """The model, if this caller may use it (anonymous callers: public models only)."""
        if self.anonymous and not model.is_public:
            raise NotFoundError(
                "There is no public model with that id or name; other models need a token."
            )
        return model


_anonymous: dict[str, Actor] = {}
_anonymous_lock = threading.Lock()


def anonymous_actor(name: str) -> Actor:
    """The account anonymous verdicts are logged under (created on first use)."""
    with _anonymous_lock:
        actor = _anonymous.get(name)
        if actor is None:
            with store.session_scope() as session:
                user = store.get_or_create_user(session, name)
            # Never an administrator, whatever the account row says.
            actor = _anonymous[name] = Actor(user_id=user.id, is_admin=False)
    return actor


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Caller:
    """The caller of a request (a FastAPI dependency; runs in the thread pool).

    Raises:
        UnauthorizedError: a bad, unknown or revoked token, or none where anonymous use is off.
    """
    if credentials is None:
        return _without_token(request)
    found = tokens.authenticate(credentials.credentials)
    if found is None:
        raise UnauthorizedError(REVOKED)
    return Caller(found.actor, scope=found.scope)


def caller_and_model(
    request: Request, credentials: HTTPAuthorizationCredentials | None, model_key: str
) -> tuple[Caller, ModelRecord]:
    """The caller of a verdict request and the model it names, checked as :func:`get_caller` and
    :meth:`Caller.check_model` do, in one database transaction for a token's caller.

    Raises:
        UnauthorizedError: as :func:`get_caller`.
        NotFoundError: no model of that name or id that the caller may use.
    """
    if credentials is None:
        caller = _without_token(request)
        return caller, caller.check_model(services.find_model(caller.actor, model_key))
    found = tokens.authenticate_for_model(credentials.credentials, model_key)
    if found is None:
        raise UnauthorizedError(REVOKED)
    if found.model is None:
        raise services.model_not_found(model_key)
    return Caller(found.actor, scope=found.scope), found.model


def _without_token(request: Request) -> Caller:
    if "authorization" in request.headers:
        raise UnauthorizedError(f"The Authorization header is not a bearer token; {TOKEN_HINT}.")
    settings: Settings = request.app.state.settings
    if settings.api_allow_anonymous:
        return Caller(anonymous_actor(settings.api_anonymous_user), anonymous=True)
    raise UnauthorizedError(f"This API needs a token: {TOKEN_HINT}.")


def get_signed_in(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    """A caller with a token (history and runs are never anonymous)."""
    if caller.anonymous:
        raise UnauthorizedError(f"This needs a token: {TOKEN_HINT}.")
    return caller


def get_full_access(caller: Annotated[Caller, Depends(get_signed_in)]) -> Caller:
    """A caller whose token may change things (train, upload, share, delete), not only ask for
    verdicts."""
    if caller.scope != "full":
        raise PermissionDeniedError(
            "This token may only ask for verdicts and read or label your history; training, "
            "uploading, sharing and deleting need a token with full access (Profile > API "
            "tokens)."
        )
    return caller


def _authentication(route: APIRoute) -> tuple[bool, bool]:
    """Whether the route reads the bearer token, and whether it needs a signed-in caller (not
    anonymous), worked out once from its dependencies and kept on it."""
    kept: tuple[bool, bool] | None = getattr(route, _AUTHENTICATION_KEPT, None)
    if kept is None:
        calls: set[Any] = set()
        waiting = [route.dependant]
        while waiting:
            dependant = waiting.pop()
            calls.add(dependant.call)
            waiting.extend(dependant.dependencies)
        kept = (bearer_scheme in calls, get_signed_in in calls)
        setattr(route, _AUTHENTICATION_KEPT, kept)
    return kept


async def authenticated_first(request: Request) -> None:
    """Refuse a request the route would refuse for its token (none, unknown or revoked), before
    a refusal that describes the request (an unknown field, a missing one, a bad value): someone
    without a token learns nothing of what a route takes. Only on the way to such a refusal,
    so the routes' own token check stays the only one on the way to an answer.

    Raises:
        UnauthorizedError: as :func:`get_caller` and ``get_signed_in``.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    reads_token, signed_in = _authentication(route)
    if not reads_token:
        return
    credentials = await bearer_scheme(request)
    caller = await run_in_threadpool(get_caller, request, credentials)
    if signed_in:
        get_signed_in(caller)


CallerDep = Annotated[Caller, Depends(get_caller)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
SignedInDep = Annotated[Caller, Depends(get_signed_in)]
FullAccessDep = Annotated[Caller, Depends(get_full_access)]
