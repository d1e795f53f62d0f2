"""The app factory: routes, request size limits, and errors as ``{"error": {code, message}}``.

Every :class:`~fakevoice.errors.FakeVoiceError` becomes a 4xx with its own message; malformed
requests (missing fields, unreadable forms, bodies over the limit) get words too. Anything else
is a bug: it is logged and answered 500 in the same shape, and the server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fakevoice import errors, services
from fakevoice.api.auth import (
    TOKEN_HINT,
    UnauthorizedError,
    anonymous_actor,
    authenticated_first,
)
from fakevoice.api.datasets import build_dataset_router
from fakevoice.api.docs_pages import add_docs_pages
from fakevoice.api.evaluations import build_evaluation_router
from fakevoice.api.headers import SecurityHeaders
from fakevoice.api.history import build_history_router
from fakevoice.api.models import build_model_router
from fakevoice.api.monitoring import ROUTE_PATH_KEY, ApiMetrics, MetricsMiddleware
from fakevoice.api.routes import ERRORS, build_router
from fakevoice.api.signatures import build_signature_router
from fakevoice.api.training import build_training_router
from fakevoice.decoding import size_text
from fakevoice.inference import DETECTORS
from fakevoice.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# First match wins: subclasses before their parents.
STATUS_BY_ERROR: tuple[tuple[type[errors.FakeVoiceError], int], ...] = (
    (UnauthorizedError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.ModelFileError, 409),
    (errors.FileTooLargeError, 413),
    (errors.LimitExceededError, 413),
    (errors.AudioError, 422),
    (errors.InvalidSpecError, 422),
)

HTTP_CODES = {
    400: ("bad_request", "The request could not be read: send a multipart form as /docs shows."),
    401: ("unauthorized", f"This needs a token: {TOKEN_HINT}."),
    404: ("not_found", "There is no such endpoint; /docs lists them."),
    405: ("method_not_allowed", "This endpoint does not take that method; /docs lists them."),
    413: ("too_large", "The request is larger than this server accepts."),
}

JSON_BODY_LIMIT = 1024 * 1024  # the largest body of a route that takes JSON (a recipe, a note)
_GENERIC_DETAILS = {"Bad Request", "There was an error parsing the body"}

DESCRIPTION = """Verdicts on voice recordings: **human**, **machine-generated** (with the most
likely generator) or **inconclusive**, from the workbench's stored detectors.

Send `Authorization: Bearer <token>` with a token from your profile page. Errors are
`{"error": {"code": ..., "message": ...}}` with a 4xx status.
"""


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    """The API's one error shape."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers or None
    )


def status_for(exc: errors.FakeVoiceError) -> int:
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(exc, kind)), 400)


async def _fakevoice_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.FakeVoiceError)
    if isinstance(exc, errors.ServerConfigError):
        # The operator's to mend: the details (paths, settings) go to the log, not the client.
        logger.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            exc.code,
            "The server is misconfigured and cannot answer this now; its log says why.",
        )
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return error_response(status, exc.code, str(exc), **headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """A field as people read it: ``noise_levels[1]``, ``callbacks.grad_clip``."""
    text = ""
    for part in loc:
        if part in {"body", "query", "path", "header"}:
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "request"


async def _caller_refused(request: Request) -> JSONResponse | None:
    """The 401 of a caller the route would refuse for its token, or None: answered before a
    refusal that describes the route (its fields, its limits)."""
    try:
        await authenticated_first(request)
    except UnauthorizedError as refused:
        return await _fakevoice_error(request, refused)
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if (refused := await _caller_refused(request)) is not None:
        return refused
    problems = exc.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(
            400, "bad_request", "The body is not valid JSON; send a JSON object as /docs shows."
        )
    sentences = []
    for problem in problems[:5]:
        field = _field(problem.get("loc", ()))
        if problem.get("type") == "missing":
            sentences.append(f"The field '{field}' is required.")
        else:
            sentences.append(f"The field '{field}' is not valid: {problem.get('msg', '')}.")
    return error_response(422, "invalid_request", " ".join(sentences) or "The request is invalid.")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    # A form it could not read: its limits are the route's.
    if exc.status_code == 400 and (refused := await _caller_refused(request)) is not None:
        return refused
    code, message = HTTP_CODES.get(exc.status_code, (f"http_{exc.status_code}", str(exc.detail)))
    if exc.status_code == 400 and str(exc.detail) not in _GENERIC_DETAILS:
        # Starlette's words on a form it could not parse, e.g. more files than allowed.
        message = f"The request could not be read as a form: {exc.detail}"
    if exc.status_code == 413:
        limit = exc.limit if isinstance(exc, BodyTooLarge) else None
        limit = limit or request.scope.get("starlette.max_body_size")
        if isinstance(limit, int):
            message = _too_large(limit)
    return error_response(exc.status_code, code, message, **(exc.headers or {}))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(
        500, "internal_error", "Something went wrong on the server; the error was logged."
    )


def _too_large(limit: int) -> str:
    """A 413's words: the limit the request went over."""
    return f"The request is larger than this server accepts ({size_text(limit)})."


class BodyTooLarge(HTTPException):
    """A request body that went over its path's limit while it streamed in."""

    def __init__(self, limit: int) -> None:
        super().__init__(413)
        self.limit = limit


class ContentLengthLimit:
    """Hold every request body to its path's limit: the upload routes' own (``limits``, exact
    paths) or the JSON routes' (``default``).

    A declared Content-Length over it is answered at once, before routing, without reading a byte
    of the body. A body without one is counted as it streams and stopped at the limit
    (:class:`BodyTooLarge`, which the API answers as 413 in its error shape), before the route
    has checked the token: nobody can make the server hold an unbounded body.
    """

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int) -> None:
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            limit = self.limits.get(scope["path"], self.default)
            if scope["path"] in self.limits:
                # The route's own path (no ids in it): the metrics name it, though the request
                # may be answered here, before routing.
                scope[ROUTE_PATH_KEY] = scope["path"]
            if declared.isdigit() and int(declared) > limit:
                response = error_response(
                    413,
                    "too_large",
                    _too_large(limit),
                    Connection="close",
                )
                await response(scope, receive, send)
                return
            receive = _counted(receive, limit)
        await self.app(scope, receive, send)


def _counted(receive: Receive, limit: int) -> Receive:
    """``receive``, raising :class:`BodyTooLarge` once the body's bytes pass ``limit``."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route (or one of its dependencies, at any depth) declares."""
    names = {field.alias for field in getattr(dependant, "query_params", [])}
    for inner in getattr(dependant, "dependencies", []):
        names |= _query_names(inner)
    return names


def _declared(route: APIRoute, kind: str, names: Callable[[Any], set[str]]) -> frozenset[str]:
    """The names of ``kind`` (query, form) the route takes, worked out once and kept on it."""
    attribute = f"_fakevoice_{kind}_names"
    declared: frozenset[str] | None = getattr(route, attribute, None)
    if declared is None:
        declared = frozenset(names(route.dependant))
        setattr(route, attribute, declared)
    return declared


async def _refuse_unknown(
    what: str, given: Iterable[str], declared: frozenset[str], request: Request, path: str
) -> None:
    """Refuse the ``given`` names (query parameters, form fields) that are not ``declared``,
    naming at most five of them and those the route takes (to a caller the route would serve)."""
    unknown = sorted(set(given) - declared)
    if unknown:
        await authenticated_first(request)
        takes = f"it takes {', '.join(sorted(declared))}" if declared else "it takes none"
        raise errors.InvalidSpecError(
            f"Unknown {what}{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(name[:40]) for name in unknown[:5])} for {request.method} "
            f"{path}: {takes} (see /docs)."
        )


async def _known_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not take (``?find=`` for ``?q=`` was ignored, and
    a script believed it had narrowed its history)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        declared = _declared(route, "query", _query_names)
        await _refuse_unknown(
            "query parameter", request.query_params, declared, request, route.path
        )


def _form_names(dependant: Any) -> set[str]:
    """The form fields a route (or one of its dependencies, at any depth) declares; none for a
    route whose body is JSON or that takes no body."""
    names = {
        field.alias
        for field in getattr(dependant, "body_params", [])
        if isinstance(field.field_info, params.Form)  # File is a Form too
    }
    for inner in getattr(dependant, "dependencies", []):
        names |= _form_names(inner)
    return names


async def _known_form_fields_only(request: Request) -> None:
    """Refuse a form field the route does not take (``-F treshold=0.9`` was ignored, and the
    verdict made at the default threshold as if it had been asked for)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared(route, "form", _form_names)
    if declared:  # a route that takes a form: parsed already for it (Starlette keeps it)
        form = await request.form()
        await _refuse_unknown("form field", form.keys(), declared, request, route.path)


# Query parameters whose values an access log never shows (none of them is one of ours: a token
# goes in the Authorization header, but a client may put it in the URL by mistake).
SECRET_QUERY_NAMES = frozenset({"token", "access_token", "api_key", "apikey", "key", "password"})


def redacted_path(path: str) -> str:
    """``path`` with the value of each query parameter that may be a secret (by its name, or a
    value that looks like one of our tokens) replaced by ``***``."""
    from urllib.parse import unquote_plus

    from fakevoice.services.tokens import SECRET_PREFIX

    base, mark, query = path.partition("?")
    if not mark:
        return path
    items = []
    for item in query.split("&"):
        name, equals, value = item.partition("=")
        secret = unquote_plus(name).lower() in SECRET_QUERY_NAMES
        if equals and (secret or unquote_plus(value).startswith(SECRET_PREFIX)):
            item = f"{name}=***"
        items.append(item)
    return f"{base}?{'&'.join(items)}"


class SecretQueryFilter(logging.Filter):
    """Keeps secrets sent in a URL out of uvicorn's access log (its record's third argument is
    the path with its query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redacted_path(args[2]), *args[3:])
        return True


# Set by `fakevoice api --workers N` to its own pid, for the worker processes uvicorn starts.
SUPERVISOR_ENV = "_FAKEVOICE_API_SUPERVISOR"


def _end_with_supervisor() -> None:
    """In a worker process of ``fakevoice api --workers N``: SIGTERM (a graceful shutdown) when
    the server process that started it dies. Killed with SIGKILL, the server would otherwise
    leave its workers serving, holding the port its next start needs."""
    import os
    import signal

    from fakevoice.processes import die_with_parent

    supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if not supervisor.isdigit() or int(supervisor) == os.getpid():
        return
    if not die_with_parent(signal.SIGTERM):  # not Linux: as before
        return
    if os.getppid() != int(supervisor):  # it died before this process could ask
        os.kill(os.getpid(), signal.SIGTERM)


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, SecretQueryFilter) for f in access.filters):
        access.addFilter(SecretQueryFilter())


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app (uvicorn: ``fakevoice.api:create_app`` with ``factory=True``).

    Args:
        settings: default :func:`~fakevoice.settings.get_settings`.
    """
    settings = settings or get_settings()
    _redact_access_log()
    _end_with_supervisor()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(services.ensure_database)
        if settings.api_allow_anonymous:
            await run_in_threadpool(anonymous_actor, settings.api_anonymous_user)
        DETECTORS.capacity = settings.model_cache_size
        logger.info("API ready (anonymous use %s)", settings.api_allow_anonymous)
        yield

    app = FastAPI(
        title="Fake Voice Workbench API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(_known_query_only), Depends(_known_form_fields_only)],
        docs_url=None,  # served from packaged files below, not from a CDN
        redoc_url=None,
    )
    add_docs_pages(app)
    app.state.settings = settings
    # Declared sizes are answered before routing, each path against its route's own limit
    # (filled in below, from the routes); inside the metrics, which count those answers too.
    app.state.body_limits = {}
    app.add_middleware(ContentLengthLimit, limits=app.state.body_limits, default=JSON_BODY_LIMIT)
    metrics = ApiMetrics() if settings.api_metrics else None
    if metrics is not None:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeaders)  # outermost: the answers before routing get them too
    scoring = build_router(settings, metrics)
    app.include_router(scoring)
    routers = [
        build_history_router(),
        build_evaluation_router(),
        build_model_router(settings),
        build_dataset_router(settings),
        build_training_router(),
        build_signature_router(),
    ]
    for router in routers:
        app.include_router(router, responses=ERRORS)
    app.state.body_limits.update(
        (route.path, route.max_body_size)
        for router in [scoring, *routers]
        for route in router.routes
        if isinstance(route, APIRoute) and route.max_body_size is not None
    )
    app.add_exception_handler(errors.FakeVoiceError, _fakevoice_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app
