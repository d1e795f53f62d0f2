"""Tests of stored models on a built dataset, as background jobs: queue, follow, read, stop, clear.

Scoring a dataset takes from seconds to half an hour (AASIST scores about three items a second on
a CPU; a test may score :data:`~fakevoice.services.evaluation.MAX_EVALUATE_ITEMS` items with up to
:data:`MAX_TESTED_MODELS` models), so a test is a job of kind ``evaluate``: the Evaluate page
queues it, a worker scores the items (:mod:`fakevoice.jobs.evaluation_job`), and the page shows
its progress and then its results, which outlive the browser tab. Each model's result is two files
in the job's folder, written as soon as that model is done: ``<n>-report.json`` (the metrics of
:func:`~fakevoice.services.evaluation.evaluate_on_dataset`) and ``<n>-scores.csv`` (one row per
item), ``n`` being the model's place in the spec. A stopped test keeps the models already done.
Only the owner and administrators see a test, as with every job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fakevoice import store
from fakevoice.cautions import TestedEer
from fakevoice.errors import ConflictError, InvalidSpecError
from fakevoice.services.datasets import dataset_path
from fakevoice.services.evaluation import (
    MAX_EVALUATE_ITEMS,
    SPLITS,
    DatasetEvaluation,
)
from fakevoice.services.runs import delete_run, get_job, queue_job, stop_run
from fakevoice.services.verdicts import get_model
from fakevoice.store.records import Actor, RunKind, RunRecord

logger = logging.getLogger(__name__)

KIND: RunKind = "evaluate"
MAX_TESTED_MODELS = 4
JOB_PREFIX = "test "  # a test's job is named after its models and dataset


@dataclass(frozen=True)
class EvaluationSpec:
    """What a test scores: these models (ids, in order) on ``limit`` items of ``dataset``."""

    models: tuple[int, ...]
    dataset: str
    split: str = "valid"
    limit: int = MAX_EVALUATE_ITEMS

    def __post_init__(self) -> None:
        if not 1 <= len(self.models) <= MAX_TESTED_MODELS:
            raise InvalidSpecError(f"A test takes 1 to {MAX_TESTED_MODELS} models.")
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.models):
            raise InvalidSpecError("Models are given by their ids.")
        if len(set(self.models)) != len(self.models):
            raise InvalidSpecError("Each model may be tested once per test.")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise InvalidSpecError("Name the dataset to test on.")
        if self.split not in SPLITS:
            raise InvalidSpecError(f"split must be 'valid' or 'all'; got {self.split!r}")
        limit = self.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidSpecError(
                f"limit must be a whole number of items, at least 1; got {limit!r}"
            )
        if limit > MAX_EVALUATE_ITEMS:
            raise InvalidSpecError(
                f"A test scores at most {MAX_EVALUATE_ITEMS} items; you asked for {limit}."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as stored in the job's row (``kind`` tells job backends what it is)."""
        return {
            "kind": KIND,
            "models": list(self.models),
            "dataset": self.dataset,
            "split": self.split,
            "limit": self.limit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationSpec:
        """The spec of a stored job (InvalidSpecError when it is not one)."""
        try:
            models = tuple(data["models"])
            return cls(models, data["dataset"], data.get("split", "valid"), data["limit"])
        except (KeyError, TypeError) as exc:
            raise InvalidSpecError(f"This is not the spec of a test: {exc}") from None


def results_dir(run_id: int) -> Path:
    """Where a test keeps its results: the job's folder, ``<data dir>/runs/<id>``."""
    from fakevoice.jobs.runner import run_dir_for

    return run_dir_for(run_id)


def result_files(folder: Path, index: int) -> tuple[Path, Path]:
    """The report and the scores of the spec's ``index``-th model in a test's folder."""
    return folder / f"{index}-report.json", folder / f"{index}-scores.csv"


def save_result(folder: Path, index: int, evaluation: DatasetEvaluation) -> None:
    """Write one model's result (``index``: its place in the spec); the report goes last, so a
    report on disk always has its scores beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    report, scores = result_files(folder, index)
    for path, data in ((scores, evaluation.scores_csv()), (report, evaluation.report_json())):
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(data)
        partial.replace(path)


def load_results(folder: Path, count: int) -> list[DatasetEvaluation]:
    """The results written so far, in the order of the spec's models (missing ones left out)."""
    found = []
    for index in range(count):
        report, scores = result_files(folder, index)
        if not (report.is_file() and scores.is_file()):
            continue
        table = pd.read_csv(scores, dtype={"item": str, "speaker": str, "class": str})
        found.append(DatasetEvaluation(json.loads(report.read_text(encoding="utf-8")), table))
    return found


def submit_evaluation(
    actor: Actor,
    model_ids: Sequence[int],
    dataset: str,
    split: str = "valid",
    *,
    limit: int = MAX_EVALUATE_ITEMS,
) -> RunRecord:
    """Queue a test of the models on the dataset; a worker scores it.

    Args:
        model_ids: 1 to :data:`MAX_TESTED_MODELS` models the actor may use; the first is the
            one the test is named after.
        split: ``"valid"`` (each model's own validation split when it was trained on this
            dataset, every item otherwise) or ``"all"``.
        limit: score at most this many items (a seeded random sample, the same for every model
            tested on every item).

    Raises:
        NotFoundError: a model or the dataset is not one the actor may use.
        InvalidSpecError: too many models, an unknown split or a bad limit.
        LimitExceededError: the actor has too many jobs queued or running.
    """
    spec = EvaluationSpec(tuple(model_ids), dataset, split, limit)
    models = [get_model(actor, model_id) for model_id in spec.models]
    dataset_path(dataset, actor=actor)  # NotFoundError for a dataset the actor cannot see
    more = f" and {len(models) - 1} more" if len(models) > 1 else ""
    run = queue_job(actor, f"{JOB_PREFIX}{models[0].name}{more} on {dataset}", spec.to_dict(), KIND)
    logger.info(
        "test %d queued by user %d: models %s on %s", run.id, actor.user_id, spec.models, dataset
    )
    return run


def list_evaluations(actor: Actor, *, limit: int | None = None) -> list[RunRecord]:
    """The actor's tests, newest first (the newest ``limit`` when given)."""
    with store.session_scope(readonly=True) as session:
        return store.list_runs(session, actor, kind=KIND, limit=limit)


def get_evaluation(actor: Actor, run_id: int) -> RunRecord:
    """One of the actor's tests (NotFoundError otherwise; InvalidSpecError for another job)."""
    return get_job(actor, run_id, KIND)


def evaluation_results(actor: Actor, run_id: int) -> list[DatasetEvaluation]:
    """What a test has found so far: one result per model done, in the order it was asked for."""
    run = get_evaluation(actor, run_id)
    return load_results(results_dir(run.id), len(run.spec.get("models", [])))


def models_done(run: RunRecord) -> int:
    """How many of a test's models have their result saved (a test the caller has read)."""
    count = len(run.spec.get("models", []))
    folder = results_dir(run.id)
    return sum(result_files(folder, index)[0].is_file() for index in range(count))


def latest_tests(actor: Actor, model_ids: Collection[int]) -> dict[int, TestedEer]:
    """What the actor's tests on a dataset found of each of ``model_ids``: the newest result
    that measures the model (:attr:`~fakevoice.cautions.TestedEer.measures`: an EER on items
    whose audio it was not trained on), else its newest result of any kind; a model without a
    result is left out. A stopped or failed test's finished models count; a cleared test's do
    not. Only the small report of a result is read (never its per-item scores), newest test
    first, and the reading stops once every model has a result that measures it: this runs for
    every verdict of a model without a validation EER of its own."""
    wanted = set(model_ids)
    found: dict[int, TestedEer] = {}
    for run in list_evaluations(actor):
        for index, model_id in enumerate(run.spec.get("models", [])):
            if model_id not in wanted or (model_id in found and found[model_id].measures):
                continue
            tested = _tested_eer(run, result_files(results_dir(run.id), index)[0])
            if tested is not None and (model_id not in found or tested.measures):
                found[model_id] = tested
        if all(model_id in found and found[model_id].measures for model_id in wanted):
            break
    return found


def _tested_eer(run: RunRecord, report_path: Path) -> TestedEer | None:
    """The summary of one model's saved report in a test (None: not saved, or unreadable)."""
    try:
        saved = datetime.fromtimestamp(report_path.stat().st_mtime, tz=UTC)
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    eer, items, trained_on = report.get("eer"), report.get("n"), report.get("trained_on", 0)
    return TestedEer(
        test_id=run.id,
        dataset=str(report.get("dataset") or run.dataset or "?"),
        saved=saved,
        eer=float(eer) if isinstance(eer, int | float) else None,
        items=items if isinstance(items, int) else 0,
        trained_on=trained_on if isinstance(trained_on, int) else None,
    )


def stop_evaluation(actor: Actor, run_id: int) -> RunRecord:
    """Stop a queued or running test (within a second); the models already done keep their
    results."""
    get_evaluation(actor, run_id)
    return stop_run(actor, run_id)


def clear_evaluation(actor: Actor, run_id: int) -> None:
    """Delete a finished test and its results.

    Raises:
        NotFoundError: no such test that the actor may see.
        ConflictError: the test is queued or running (stop it first).
    """
    run = get_evaluation(actor, run_id)
    if run.is_active:
        raise ConflictError(f"The test {run.name!r} is {run.status}; stop it first.")
    delete_run(actor, run_id)
