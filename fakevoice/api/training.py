"""Training over HTTP: training runs as jobs (queue one, follow it: epochs, per-batch losses; stop,
resume, read its files, delete it), and every other job of the caller's. The datasets to train on
are :mod:`fakevoice.api.datasets`.

The same services as the Train and Profile pages and `fakevoice train | runs | stop | resume`: the
spec is a :class:`~fakevoice.trainspec.TrainSpec` (typed and bounded; an unknown option is
refused), checked against the server's limits and the dataset before it is queued, and trained by
a worker (`fakevoice worker`, or a Ray task on a GPU node). Only the owner (and administrators)
see a run; anonymous callers see none.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from fakevoice import services
from fakevoice.api.auth import FullAccessDep, SignedInDep
from fakevoice.api.routes import MAX_ID
from fakevoice.api.schemas import RunOut
from fakevoice.errors import EstimateUnavailableError
from fakevoice.services import profile
from fakevoice.services.results import artefact_bytes
from fakevoice.store.records import Actor, RunKind, RunRecord, RunStatus
from fakevoice.trainspec import TrainSpec

RunId = Annotated[int, Path(ge=1, le=MAX_ID)]
MAX_LOSSES = 5000  # per-batch losses in one answer; `after_step` pages on
# A run's files over HTTP: its fastai export goes through /v1/models/{id}/fastai, which checks
# the file against the hash the store kept.
RunFileName = Literal[
    "history.csv",
    "loss_curve.png",
    "confusion.png",
    "confusion.json",
    "metrics.json",
    "roc.json",
    "valid_scores.csv",
]
MEDIA_TYPES = {".csv": "text/csv", ".png": "image/png", ".json": "application/json"}


class TrainIn(BaseModel):
    """A training run to queue: its name (unique among your runs) and its recipe."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "specnet clean",
                    "spec": {
                        "dataset": "demo",
                        "arch": "specnet",
                        "epochs": 5,
                        "noise_levels": ["snr_inf", "snr_20db"],
                        "augment": {"freq_masks": 2, "mixup": 0.2},
                        "callbacks": {"early_stopping_patience": 3},
                    },
                },
                {
                    "spec": {
                        "dataset": "demo",
                        "arch": "aasist-l",
                        "batch_size": 8,
                        "device": "cuda",
                    }
                },
            ]
        },
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="default: '<arch>-<dataset>-<UTC time>'",
    )
    spec: TrainSpec = Field(
        description="the recipe; every option but `dataset` has a default. `learning_rate` "
        "null: fastai's lr_find suggestion. `epochs` at most the server's FAKEVOICE_MAX_EPOCHS"
    )


class QueuedRun(BaseModel):
    """The queued run, and what to know before it trains: its memory estimate when it does not fit
    this machine, the dataset's shortcuts, an older renderer's images."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run": {
                        "id": 12,
                        "name": "specnet clean",
                        "kind": "train",
                        "status": "queued",
                        "progress": 0.0,
                        "current_epoch": 0,
                        "total_epochs": 5,
                        "arch": "specnet",
                        "dataset": "demo",
                        "created_at": "2026-12-06T16:00:00Z",
                        "started_at": None,
                        "finished_at": None,
                        "error": None,
                        "notice": None,
                        "epochs": [],
                        "spec": {"dataset": "demo", "arch": "specnet", "epochs": 5, "...": "..."},
                        "model_id": None,
                    },
                    "warning": None,
                    "shortcuts": None,
                    "renderer": None,
                }
            ]
        }
    )

    run: RunOut
    warning: str | None = Field(
        description="e.g. the estimated memory and a batch size that fits; the run is queued "
        "either way (the worker checks again with its own memory)"
    )
    shortcuts: str | None = Field(
        default=None,
        description="when the dataset's shortcut audit found simple cues (silence, level, "
        "bandwidth...) that tell some of the chosen generators from the human clips: which, in "
        "words (GET /v1/datasets/{name}/shortcuts has the details)",
    )
    renderer: str | None = Field(
        default=None,
        description="for an image model, when an older renderer made the dataset's images (they "
        "differ from the inputs its verdicts will give the model): what to render again, and how",
    )


class RunsPage(BaseModel):
    items: list[RunOut] = Field(description="newest first; without epochs (read one run for them)")
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")
    total: int


class LossOut(BaseModel):
    step: int = Field(description="batches since the run started (0-based)")
    epoch: int
    batch: int
    train_loss: float
    lr: float | None


class LossesOut(BaseModel):
    run: RunOut = Field(description="the run as it is now, without epochs")
    losses: list[LossOut] = Field(description=f"after `after_step`, at most {MAX_LOSSES}")
    next_after_step: int | None = Field(
        description="ask again with this `after_step` for the rest; null when this is all so far"
    )


def _run_model_id(actor: Actor, run: RunRecord) -> int | None:
    if run.kind != "train" or run.status not in {"succeeded", "cancelled"}:
        return None
    return services.run_model_id(actor, run.id)


def build_training_router() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/runs", tags=["runs"], summary="Queue a training run", status_code=202)
    def submit(body: TrainIn, caller: FullAccessDep) -> QueuedRun:
        """Checked before it is queued: the dataset is yours or shared, the selection holds
        human items and a generator's, the epochs are within the server's limit, your runs
        queued or running are within yours (413 otherwise), the name is free (409). A worker
        trains it; `GET /v1/runs/{id}` follows it."""
        actor = caller.actor
        spec = body.spec
        run = services.submit_run(actor, body.name or services.default_run_name(spec), spec)
        try:
            warning = services.memory_advice(spec, actor=actor).warning()
        except EstimateUnavailableError:
            warning = None  # the run is queued; an estimate only informs
        shortcuts = services.shortcut_warning(spec.dataset, spec.classes, actor=actor)
        renderer = services.render_warning(spec.dataset, spec.arch, actor=actor)
        return QueuedRun(
            run=RunOut.of(run, []), warning=warning, shortcuts=shortcuts, renderer=renderer
        )

    @router.get("/v1/runs", tags=["runs"], summary="Your jobs, newest first")
    def list_runs(
        caller: SignedInDep,
        kind: Annotated[
            RunKind | None,
            Query(description="train, dataset, evaluate or render; every kind when left out"),
        ] = None,
        status: Annotated[list[RunStatus] | None, Query(description="repeatable")] = None,
        all_users: Annotated[
            bool, Query(description="everyone's jobs (administrators only)")
        ] = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> RunsPage:
        statuses = tuple(status) if status else None
        page = services.list_runs(
            caller.actor,
            all_users=all_users,
            kind=kind,
            statuses=statuses,
            limit=limit,
            offset=offset,
        )
        total = services.count_runs(caller.actor, all_users=all_users, kind=kind, statuses=statuses)
        more = offset + len(page) < total
        return RunsPage(
            items=[RunOut.of(run, []) for run in page],
            limit=limit,
            offset=offset,
            next_offset=offset + len(page) if more else None,
            total=total,
        )

    @router.get("/v1/runs/{run_id}", tags=["runs"], summary="A job; a training run's epochs")
    def get_run(run_id: RunId, caller: SignedInDep) -> RunOut:
        """Any job of yours (`kind`): a training run with its epochs and, once it has stored
        one, its model (`model_id`, for `POST /v1/predict`); the build of a dataset from your
        recordings; a test of models (`GET /v1/evaluations/{id}` has its results); a dataset
        rendered again."""
        actor = caller.actor
        progress = services.run_progress(actor, run_id, after_step=MAX_ID)
        return RunOut.of(progress.run, progress.epochs, model_id=_run_model_id(actor, progress.run))

    @router.get(
        "/v1/runs/{run_id}/losses", tags=["runs"], summary="A training run's per-batch losses"
    )
    def losses(
        run_id: RunId,
        caller: SignedInDep,
        after_step: Annotated[
            int, Query(ge=-1, le=MAX_ID, description="the last step you have; -1: from the start")
        ] = -1,
    ) -> LossesOut:
        """The live loss curve: poll with the `next_after_step` of the last answer (or the last
        step you have) to get only what is new."""
        progress = services.run_progress(caller.actor, run_id, after_step=after_step)
        batches = progress.batches[:MAX_LOSSES]
        return LossesOut(
            run=RunOut.of(progress.run, []),
            losses=[LossOut(**{k: getattr(b, k) for k in LossOut.model_fields}) for b in batches],
            next_after_step=batches[-1].step if len(progress.batches) > MAX_LOSSES else None,
        )

    @router.get(
        "/v1/runs/{run_id}/files/{file_name}",
        tags=["runs"],
        summary="One of a training run's files",
        response_class=Response,
        responses={
            200: {"content": {t: {} for t in MEDIA_TYPES.values()}},
        },
    )
    def run_file(run_id: RunId, file_name: RunFileName, caller: SignedInDep) -> Response:
        """`history.csv` (epoch, losses, accuracy, macro F1, EER, seconds), `metrics.json`,
        `confusion.json` and `.png`, `roc.json`, `loss_curve.png`, `valid_scores.csv` (the
        final model's P(human) of every validation item): written when training ends
        (404 before). The model itself: `GET /v1/models/{model_id}/bundle` or `/fastai`."""
        data = artefact_bytes(caller.actor, run_id, file_name)
        suffix = file_name[file_name.rindex(".") :]
        return Response(
            data,
            media_type=MEDIA_TYPES[suffix],
            headers={"Content-Disposition": f'attachment; filename="run-{run_id}-{file_name}"'},
        )

    @router.post("/v1/runs/{run_id}/stop", tags=["runs"], summary="Stop a queued or running job")
    def stop(run_id: RunId, caller: FullAccessDep) -> RunOut:
        """A queued job is cancelled at once; a running one stops within a batch (a training run
        keeps its best model so far and its history). A job that has ended is answered as it
        is."""
        return RunOut.of(services.stop_run(caller.actor, run_id), [])

    @router.post("/v1/runs/{run_id}/resume", tags=["runs"], summary="Queue a stopped run again")
    def resume(run_id: RunId, caller: FullAccessDep) -> RunOut:
        """A stopped, failed or interrupted training run goes on from its last checkpoint
        (409 for one queued, running or finished)."""
        return RunOut.of(services.resume_run(caller.actor, run_id), [])

    @router.delete(
        "/v1/runs/{run_id}",
        tags=["runs"],
        summary="Delete a job that has ended",
        status_code=204,
        response_class=Response,
    )
    def delete(run_id: RunId, caller: FullAccessDep) -> Response:
        """As its page does: a training run goes with the model it stored and their files
        (verdicts made with the model stay in the history); a test with its results; a dataset
        build or render leaves its list (the dataset stays). 409 while it is queued or running,
        or while a test of models is to score its model."""
        profile.delete_job(caller.actor, run_id)
        return Response(status_code=204)

    return router
