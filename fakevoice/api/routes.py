"""The verdict endpoints (predict, batch, explain), the model list, health and metrics (health's
answer is made in :mod:`fakevoice.api.health`); the history, models' files, datasets, runs, tests
and reports have modules of their own. Every one
calls :mod:`fakevoice.services` (ownership lives in the store); decoding and inference run in the
thread pool, never on the event loop.

Scoring (decoding, features, the model) is CPU work: at most ``api_scoring_threads`` requests of a
process do it at once, the rest wait their turn. More at once would only share the same cores
(with every clip's samples in memory at the same time) and keep the thread pool from the cheap
endpoints such as ``/health``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Path, Query, Request, Security, UploadFile
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fakevoice import batch, services
from fakevoice.api.auth import (
    Caller,
    CallerDep,
    CredentialsDep,
    UnauthorizedError,
    caller_and_model,
)
from fakevoice.api.health import HealthOut, health_report
from fakevoice.api.monitoring import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fakevoice.api.monitoring import ApiMetrics
from fakevoice.api.schemas import (
    BatchItemOut,
    BatchOut,
    ErrorBody,
    ExplanationOut,
    ModelOut,
    ModelRef,
    PredictionOut,
)
from fakevoice.errors import FileTooLargeError, InvalidSpecError
from fakevoice.inference import DEFAULT_THRESHOLD, DETECTORS
from fakevoice.settings import Settings
from fakevoice.store.records import MAX_ID, ModelRecord

logger = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024  # form fields and part headers beside the audio, bytes
_READ_CHUNK = 1 << 20

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "no token, or an unknown or revoked one",
        404: "no such model, run or endpoint that you may see",
        413: "the request, a file or a batch is too large",
        422: "the audio cannot be used, or a field is missing or out of range",
    }.items()
}

ModelKey = Annotated[
    str,
    Form(
        min_length=1,
        max_length=128,
        description="id or name of a model you may use (yours first, then public ones)",
        examples=["aasist-l"],
    ),
]
Threshold = Annotated[
    float,
    Form(description="confidence below which the verdict is inconclusive (0.5 to 1)"),
]
ModelId = Annotated[int, Path(ge=1, le=MAX_ID)]
# GET /v1/models answers a list (as it always has), a page at a time: the default page holds
# every model of a usual server, and the headers say how many there are and where to go on.
MODELS_PAGE = 100
MAX_MODELS_PAGE = 500
TOTAL_HEADER = "X-Total-Count"
NEXT_OFFSET_HEADER = "X-Next-Offset"
Answer = TypeVar("Answer")


def one_file_body_limit(settings: Settings) -> int:
    """The largest request body of an endpoint that takes one audio file (``POST /v1/predict``,
    ``POST /v1/explain``), bytes: the file and the form fields beside it."""
    return settings.max_upload_bytes + MULTIPART_OVERHEAD


def model_body_limit(settings: Settings) -> int:
    """The largest request body of ``POST /v1/models``, bytes: one model file and its name."""
    return settings.max_model_upload_bytes + MULTIPART_OVERHEAD


def scoring_threads(settings: Settings) -> int:
    """How many requests one API process scores at once (``api_scoring_threads``, 0: its cores)."""
    return settings.api_scoring_threads or len(os.sched_getaffinity(0))


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """An uploaded file's bytes, read in chunks and refused past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise FileTooLargeError(
                f"The file {upload.filename or ''!r} is larger than {limit // (1024 * 1024)} MiB."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _predict(
    caller: Caller, model: ModelRecord, data: bytes, name: str, threshold: float
) -> PredictionOut:
    started = time.perf_counter()
    scored = services.score_clip(
        caller.actor,
        model,
        data,
        file_name=batch.display_name(name),
        threshold=threshold,
        origin="api",
    )
    elapsed = 1000 * (time.perf_counter() - started)
    return PredictionOut.of(scored.verdict, scored.model, scored.analysis, elapsed)


def _explain(
    caller: Caller, model: ModelRecord, data: bytes, window: int | None, analysis: int | None
) -> ExplanationOut:
    started = time.perf_counter()
    if analysis is not None:  # checked before the seconds of work
        _check_explained_verdict(caller, model, data, analysis)
    explained = services.explain_clip(caller.actor, model, data, window=window)
    if analysis is not None:
        services.keep_explanation(caller.actor, analysis, explained.explanation)
    elapsed = 1000 * (time.perf_counter() - started)
    return ExplanationOut.of(explained.explanation, explained.model, elapsed, analysis)


def _check_explained_verdict(
    caller: Caller, model: ModelRecord, data: bytes, analysis_id: int
) -> None:
    """The verdict an explanation is to be kept with: the caller's own, on these very bytes,
    with this model."""
    if caller.anonymous:  # every anonymous caller shares one history: none may change it
        raise UnauthorizedError("Keeping an explanation with a verdict needs your token.")
    verdict = services.get_verdict(caller.actor, analysis_id)
    if verdict.file_sha256 != hashlib.sha256(data).hexdigest():
        raise InvalidSpecError(
            f"Verdict {analysis_id} was made on other bytes than this file's: send the file "
            "it judged."
        )
    if verdict.model_id != model.id:
        raise InvalidSpecError(
            f"Verdict {analysis_id} was made with another model: explain it with model "
            f"{verdict.model_id}."
        )


def _predict_batch(
    caller: Caller, model: ModelRecord, files: list[tuple[str, bytes]], threshold: float
) -> list[batch.BatchResult]:
    entries = batch.read_batch(files)
    return batch.score_batch(caller.actor, model.id, entries, threshold=threshold, origin="api")


metrics_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MetricsToken",
    description="The scraper's secret (FAKEVOICE_API_METRICS_TOKEN), when the server sets one.",
)


def build_router(settings: Settings, metrics: ApiMetrics | None = None) -> APIRouter:
    """The API's routes, with the request size limits of these settings (and ``GET /metrics``
    with ``metrics``)."""
    router = APIRouter(responses=ERRORS)
    upload_limit = settings.max_upload_bytes
    scoring = anyio.CapacityLimiter(scoring_threads(settings))

    def count(verdict: str | None, arch: str) -> None:
        if metrics is not None and verdict is not None:
            metrics.count_verdict(verdict, arch)

    async def score_upload(
        file: UploadFile,
        model: str,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None,
        work: Callable[[Caller, ModelRecord, bytes], Answer],
    ) -> tuple[ModelRecord, Answer]:
        """Read the upload, then the caller and the model (outside the scoring queue: a
        refusal never waits), then run ``work`` in the queue."""
        data = await read_upload(file, upload_limit)
        caller, record = await anyio.to_thread.run_sync(
            caller_and_model, request, credentials, model
        )
        return record, await anyio.to_thread.run_sync(work, caller, record, data, limiter=scoring)

    @router.post(
        "/v1/predict",
        tags=["verdicts"],
        summary="Verdict for one audio file",
        max_body_size=one_file_body_limit(settings),
    )
    async def predict(
        file: Annotated[
            UploadFile, File(description="audio: wav, flac, mp3, ogg, opus, webm, m4a, g722")
        ],
        model: ModelKey,
        request: Request,
        credentials: CredentialsDep,
        threshold: Threshold = DEFAULT_THRESHOLD,
    ) -> PredictionOut:
        """Decode the clip, score it with the model and log the verdict in your history.

        Long clips are scored window by window; `windows` is the timeline.
        """
        name = file.filename or "upload"
        record, answer = await score_upload(
            file,
            model,
            request,
            credentials,
            lambda caller, used, data: _predict(caller, used, data, name, threshold),
        )
        count(answer.verdict, record.arch)
        return answer

    @router.post(
        "/v1/explain",
        tags=["verdicts"],
        summary="Why a model decides as it does on one audio file",
        max_body_size=one_file_body_limit(settings),
    )
    async def explain(
        file: Annotated[UploadFile, File(description="audio, as for /v1/predict")],
        model: ModelKey,
        request: Request,
        credentials: CredentialsDep,
        window: Annotated[
            int | None,
            Form(
                ge=0,
                le=100_000,
                description="which window of the timeline (from 0); default: the most "
                "machine-like one",
            ),
        ] = None,
        analysis: Annotated[
            int | None,
            Form(
                ge=1,
                le=MAX_ID,
                description="a verdict of your history (its `analysis_id`) on this same file "
                "with this model: the explanation is kept with it",
            ),
        ] = None,
    ) -> ExplanationOut:
        """Where in the window, and in which frequency bands, the model's decision is most
        sensitive to the audio: SmoothGrad on the log-odds of human, summed into bands, time
        slices and (image models) a heatmap over the spectrogram. It takes several forward and
        backward passes (seconds on a CPU for AASIST and the large CNNs) and logs no verdict;
        with `analysis`, it is kept with that verdict of yours (its bands and time slices; the
        history and its report show them). It shows where the model looks, not proof of how the
        clip was made."""
        _, answer = await score_upload(
            file,
            model,
            request,
            credentials,
            lambda caller, used, data: _explain(caller, used, data, window, analysis),
        )
        return answer

    @router.post(
        "/v1/predict/batch",
        tags=["verdicts"],
        summary="Verdicts for several files or one zip",
        response_model=BatchOut,
        responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV"}},
        max_body_size=settings.api_max_request_bytes,
        form_limits={"max_files": settings.batch_max_files},
    )
    async def predict_batch(
        files: Annotated[
            list[UploadFile], File(description="audio files, or one zip of audio files")
        ],
        model: ModelKey,
        request: Request,
        credentials: CredentialsDep,
        threshold: Threshold = DEFAULT_THRESHOLD,
        format: Annotated[Literal["json", "csv"], Query(description="answer format")] = "json",
    ) -> Any:
        """One result per clip; a clip that cannot be scored has an `error` instead of a verdict
        and does not fail the others. Zips are expanded with limits on the number of clips,
        their total size and the expansion ratio; entries with absolute or `..` paths are refused.
        """
        started = time.perf_counter()
        uploads = [
            (f.filename or "upload", await read_upload(f, settings.api_max_request_bytes))
            for f in files
        ]
        caller, used = await anyio.to_thread.run_sync(caller_and_model, request, credentials, model)
        results = await anyio.to_thread.run_sync(
            _predict_batch, caller, used, uploads, threshold, limiter=scoring
        )
        for result in results:
            count(result.label, used.arch)
        if format == "csv":
            return Response(
                batch.results_csv(results),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="verdicts.csv"'},
            )
        return BatchOut(
            model=ModelRef.of(used),
            results=[BatchItemOut.of(r) for r in results],
            elapsed_ms=round(1000 * (time.perf_counter() - started), 2),
        )

    @router.get("/v1/models", tags=["models"], summary="Your models and the public ones")
    def list_models(
        caller: CallerDep,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=MAX_MODELS_PAGE)] = MODELS_PAGE,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
        q: Annotated[str, Query(max_length=200, description="a part of the model's name")] = "",
    ) -> list[ModelOut]:
        """Newest first, one page: the `X-Total-Count` header counts every match, and
        `X-Next-Offset` (only while more follow) is the `offset` of the next page."""
        actor, public_only = caller.actor, caller.anonymous
        found = services.list_models(
            actor, public_only=public_only, name=q, limit=limit + 1, offset=offset
        )
        total = services.count_models(actor, public_only=public_only, name=q)
        response.headers[TOTAL_HEADER] = str(total)
        if len(found) > limit:
            response.headers[NEXT_OFFSET_HEADER] = str(offset + limit)
        return [ModelOut.of(m, actor.user_id) for m in found[:limit]]

    @router.get("/v1/models/{model_id}", tags=["models"], summary="One model")
    def get_model(model_id: ModelId, caller: CallerDep) -> ModelOut:
        model = caller.check_model(services.get_model(caller.actor, model_id))
        return ModelOut.of(model, caller.actor.user_id)

    if metrics is not None:
        metrics.watch_scoring(scoring, lambda: len(DETECTORS))

        @router.get(
            "/metrics",
            tags=["service"],
            summary="Prometheus metrics",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}}},
        )
        def prometheus_metrics(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(metrics_bearer)],
        ) -> Response:
            """Requests by route and status, their durations, verdicts by label and model
            architecture, the scoring queue and the models in memory (Prometheus text format).
            When the server sets `FAKEVOICE_API_METRICS_TOKEN`, only a scraper sending it as a
            bearer token reads them."""
            wanted = settings.api_metrics_token
            if wanted is not None and not (
                credentials is not None
                and hmac.compare_digest(
                    credentials.credentials.encode(), wanted.get_secret_value().encode()
                )
            ):
                raise UnauthorizedError(
                    "The metrics need the scraper's token: send 'Authorization: Bearer <token>' "
                    "with the server's FAKEVOICE_API_METRICS_TOKEN."
                )
            return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @router.get(
        "/health",
        tags=["service"],
        summary="Database and model cache state",
        responses={200: {"model": HealthOut}, 503: {"model": HealthOut}},
    )
    def health() -> Response:
        body, status = health_report(settings, scoring)
        return Response(body.model_dump_json(), status_code=status, media_type="application/json")

    return router
