"""Tests of stored models on a built dataset, over HTTP: queue one, then read its progress and
results (a moderation pipeline checking a new model against its reference set, say), and make a
copy of a tested model calibrated on the items it scored.

The work is a job like any other (:mod:`fakevoice.services.evaluation_jobs`): a worker scores it
with each model's own preprocessing, on a GPU node when the job backend is Ray. Only its owner
(and administrators) see it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from fakevoice import services
from fakevoice.api.auth import FullAccessDep, SignedInDep
from fakevoice.api.routes import MAX_ID
from fakevoice.api.schemas import ModelOut, RunOut
from fakevoice.services.evaluation import MAX_EVALUATE_ITEMS
from fakevoice.services.evaluation_jobs import MAX_TESTED_MODELS
from fakevoice.services.fusion import fuse
from fakevoice.services.paired_tests import pairs_of_test


class EvaluationIn(BaseModel):
    """What to test: up to four models (ids or names) on a dataset you may use."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"models": ["aasist-l", 12], "dataset": "demo", "split": "all"}]
        },
    )
    models: list[int | str] = Field(min_length=1, max_length=MAX_TESTED_MODELS)
    dataset: str = Field(min_length=1, max_length=128)
    split: Literal["valid", "all"] = Field(
        default="valid",
        description="valid: each model's own validation split when it was trained on this "
        "dataset (every item otherwise); all: every item",
    )
    limit: int = Field(
        default=MAX_EVALUATE_ITEMS,
        ge=1,
        le=MAX_EVALUATE_ITEMS,
        description="at most this many items, a seeded sample (the same for every model)",
    )


class CalibrationIn(BaseModel):
    """Which model of a finished test to calibrate on the items it scored, and the copy's name."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "aasist-l", "name": "aasist-l on calls"}]},
    )
    model: int | str = Field(description="a model of the test, by id or name")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="the copy's name (default: '<model> on <dataset>')",
    )


class EvaluationOut(BaseModel):
    """A test: the job (status, progress: the model in progress is ``current_epoch``) and the
    report of each model done so far, in the order asked (metrics, ROC, EER per generator and
    per noise level)."""

    job: RunOut
    results: list[dict[str, Any]]
    fusion: dict[str, Any] | None = Field(
        default=None,
        description="two or more models: their scores fused (mean log-odds of human) on the "
        "items they all scored: EER, AUC, EER per generator and noise level, and how alike "
        "their scores are (correlation; null for a model whose scores are all the same)",
    )
    comparisons: list[dict[str, Any]] = Field(
        default_factory=list,
        description="two or more models: each pair's EER difference (first - second) on the "
        "items both scored, with its 95 % bootstrap interval over whole utterances (or speakers: "
        "`unit`), the share of draws in which the first is lower, whether the test tells them apart (`decided`) and a "
        "`summary` in words",
    )
    shortcuts: str | None = Field(
        default=None,
        description="when the dataset's shortcut audit found simple cues (silence, level, "
        "bandwidth...) that tell some generators from the human clips: which, in words",
    )


def build_evaluation_router() -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/evaluations",
        tags=["tests"],
        summary="Queue a test of models on a dataset",
        status_code=202,
    )
    def submit(body: EvaluationIn, caller: FullAccessDep) -> EvaluationOut:
        """A worker scores the items; `GET /v1/evaluations/{id}` follows it."""
        actor = caller.actor
        ids = [services.find_model(actor, key).id for key in body.models]
        run = services.submit_evaluation(actor, ids, body.dataset, body.split, limit=body.limit)
        return EvaluationOut(job=RunOut.of(run, []), results=[])

    @router.get("/v1/evaluations/{run_id}", tags=["tests"], summary="A test and its results")
    def read(run_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: SignedInDep) -> EvaluationOut:
        run = services.get_evaluation(caller.actor, run_id)
        results = services.evaluation_results(caller.actor, run_id)
        fusion = fuse(results)
        return EvaluationOut(
            job=RunOut.of(run, []),
            results=[e.report for e in results],
            fusion=fusion.to_dict() if fusion is not None else None,
            comparisons=[pair.to_dict() for pair in pairs_of_test(run_id, results)],
            shortcuts=services.shortcut_warning(run.dataset or "", actor=caller.actor, use="test"),
        )

    @router.post(
        "/v1/evaluations/{run_id}/calibrations",
        tags=["tests"],
        summary="A copy of a tested model, calibrated on the items the test scored",
        status_code=201,
    )
    def calibrate(
        run_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: CalibrationIn, caller: FullAccessDep
    ) -> ModelOut:
        """Fits a temperature and a bias per class on the model's scores in this test (20 items
        or more, every class's probability kept), composes them with the model's own
        calibration, and stores a copy of the model with them, owned by you. The model itself
        stays as it is."""
        actor = caller.actor
        model = services.find_model(actor, body.model)
        copy = services.calibrate_on_test(actor, run_id, model.id, body.name)
        return ModelOut.of(copy, actor.user_id)

    return router
