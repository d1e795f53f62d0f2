"""Tests of stored models on a built dataset, over HTTP: queue one, then read its progress and
results (a moderation pipeline checking a new model against its reference set, say).

The work is a job like any other (:mod:`fakevoice.services.evaluation_jobs`): a worker scores it
with each model's own preprocessing, on a GPU node when the job backend is Ray. Only its owner
(and administrators) see it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from fakevoice import services
from fakevoice.api.auth import SignedInDep
from fakevoice.api.routes import MAX_ID
from fakevoice.api.schemas import RunOut
from fakevoice.services.evaluation import MAX_EVALUATE_ITEMS
from fakevoice.services.evaluation_jobs import MAX_TESTED_MODELS


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


class EvaluationOut(BaseModel):
    """A test: the job (status, progress: the model in progress is ``current_epoch``) and the
    report of each model done so far, in the order asked (metrics, ROC, EER per generator and
    per noise level)."""

    job: RunOut
    results: list[dict[str, Any]]


def build_evaluation_router() -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/evaluations",
        tags=["tests"],
        summary="Queue a test of models on a dataset",
        status_code=202,
    )
    def submit(body: EvaluationIn, caller: SignedInDep) -> EvaluationOut:
        """A worker scores the items; `GET /v1/evaluations/{id}` follows it."""
        actor = caller.actor
        ids = [services.find_model(actor, key).id for key in body.models]
        run = services.submit_evaluation(actor, ids, body.dataset, body.split, limit=body.limit)
        return EvaluationOut(job=RunOut.of(run, []), results=[])

    @router.get("/v1/evaluations/{run_id}", tags=["tests"], summary="A test and its results")
    def read(run_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: SignedInDep) -> EvaluationOut:
        run = services.get_evaluation(caller.actor, run_id)
        results = services.evaluation_results(caller.actor, run_id)
        return EvaluationOut(job=RunOut.of(run, []), results=[e.report for e in results])

    return router
