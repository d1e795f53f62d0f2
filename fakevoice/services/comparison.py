"""Runs side by side: their key figures in one table, their validation EER epoch by epoch, and
where their recipes differ.

One summary row per run serves ``fakevoice runs export`` (every run, as CSV, with its whole recipe
as ``spec.<option>`` columns) and the Profile page's comparison (the runs a user picks, with the
options where their recipes differ). Figures are fractions; a run that has not written them
yet leaves them blank. A finished run's final model adds ``eer@<noise level>`` and
``eer@<generator>`` columns (from its ``metrics.json``), so runs can be compared SNR by SNR and
attack by attack. Runs whose validation splits share items (the same dataset, split and seed)
are also compared item by item: each pair's EER difference on those items with its paired
bootstrap interval (:mod:`fakevoice.services.paired_tests`), from their ``valid_scores.csv``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fakevoice import store
from fakevoice.batch import spreadsheet_safe
from fakevoice.datasets.noise import noise_sort_key, parse_noise_name
from fakevoice.errors import FakeVoiceError, InvalidSpecError
from fakevoice.services.evaluation import DatasetEvaluation
from fakevoice.services.paired_tests import PairedEer, kept_pairs
from fakevoice.services.results import run_metrics, run_valid_scores
from fakevoice.store.records import Actor, EpochMetric, RunRecord
from fakevoice.trainspec import TrainSpec

SUMMARY_COLUMNS = (
    "id", "name", "arch", "dataset", "status", "epochs", "best_eer", "final_eer", "model_eer",
    "eer_low", "eer_high", "accuracy", "macro_f1", "created", "finished", "mlflow_run_id",
)  # fmt: skip
NUMERIC_COLUMNS = {
    "best_eer", "final_eer", "model_eer", "eer_low", "eer_high", "accuracy", "macro_f1"
}  # fmt: skip
MAX_COMPARED = 8
SPEC_PREFIX = "spec."  # the export's columns of a run's recipe


# How a recipe option left unset reads (a selection of all items, a callback that is off...).
UNSET_TEXT = {
    "noise_levels": "all",
    "speakers": "all",
    "classes": "all",
    "holdout": "seeded choice",
    "learning_rate": "found at start",
}


@dataclass(frozen=True)
class RunComparison:
    """Several runs of one user, side by side.

    Attributes:
        table: one row per run, :func:`summary_columns` in order.
        curves: long table ``run`` (name), ``epoch`` (from 1), ``eer``, ``valid_loss``.
        differences: the recipe options whose values differ between the runs
            (:func:`recipe_differences`); empty when the recipes are the same.
        pairs: the first run against each other whose final model scored validation items in
            common with it: their EER difference on those items with its paired bootstrap
            interval.
        without_scores: the finished runs that kept no validation scores (trained before runs
            kept them), which no pair can hold.
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    pairs: list[PairedEer] = field(default_factory=list)
    without_scores: list[str] = field(default_factory=list)

    def csv(self) -> str:
        """The table as CSV text (names cannot act as spreadsheet formulas)."""
        return self.table.map(spreadsheet_safe).to_csv(index=False)


def flat_spec(spec: Mapping[str, Any]) -> dict[str, str]:
    """A run's recipe on one level, as text: ``arch``, ``augment.mixup``,
    ``callbacks.grad_clip``...; the defaults of its day filled in (a recipe TrainSpec no longer
    reads is taken as it is), lists comma-separated, unset options in words ("all", "off")."""
    try:
        full = TrainSpec.from_dict(dict(spec)).to_dict()
    except (FakeVoiceError, TypeError):
        full = dict(spec)

    def text(key: str, value: Any) -> str:
        if value is None:
            return UNSET_TEXT.get(key, "off")
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    flat: dict[str, str] = {}
    for key, value in full.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": text(k, v) for k, v in value.items()})
        else:
            flat[key] = text(key, value)
    return flat


def recipe_differences(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """The recipe options whose values differ between ``runs``: one row per option (index
    ``option``), one column per run (its name; ``name (id)`` when two share one)."""
    names = [run.name for run in runs]
    labels = [f"{r.name} ({r.id})" if names.count(r.name) > 1 else r.name for r in runs]
    flats = [flat_spec(run.spec) for run in runs]
    options = list(dict.fromkeys(key for flat in flats for key in flat))
    differing = [o for o in options if len({flat.get(o, "") for flat in flats}) > 1]
    frame = pd.DataFrame(
        {
            label: [flat.get(o, "") for o in differing]
            for label, flat in zip(labels, flats, strict=True)
        },
        index=pd.Index(differing, name="option"),
    )
    return frame


def _summary(run: RunRecord, epochs: list[EpochMetric]) -> dict[str, Any]:
    """``best_eer`` and ``final_eer``: the epochs' (as in ``history.csv``). The rest describe one
    model: the stored one when the run has finished (``model_eer``, its interval, accuracy and
    macro F1, from its ``metrics.json``: the best epoch's under save-best, calibrated as it
    serves verdicts), else the last epoch's accuracy and macro F1 (a row mixed the last epoch's
    accuracy with the stored best epoch's EER)."""
    eers = [e.eer for e in epochs if e.eer is not None]
    last = epochs[-1] if epochs else None
    metrics = run_metrics(run)
    # The stored model's EER interval (its validation split, whole utterances drawn again).
    kept = metrics.get("eer_interval")
    interval: dict[str, Any] = kept if isinstance(kept, dict) else {}

    def figure(name: str) -> object:
        value = metrics.get(name) if metrics else getattr(last, name, None)
        return value if isinstance(value, int | float) else ""

    return {
        "id": run.id,
        "name": run.name,
        "arch": run.spec.get("arch", ""),
        "dataset": run.spec.get("dataset", ""),
        "status": run.status,
        "epochs": len(epochs),
        "best_eer": min(eers) if eers else "",
        "final_eer": eers[-1] if eers else "",
        "model_eer": metrics.get("eer", "") if isinstance(metrics.get("eer"), float) else "",
        "eer_low": interval.get("low", ""),
        "eer_high": interval.get("high", ""),
        "accuracy": figure("accuracy"),
        "macro_f1": figure("macro_f1"),
        "created": run.created_at.isoformat(timespec="seconds"),
        "finished": run.finished_at.isoformat(timespec="seconds") if run.finished_at else "",
        "mlflow_run_id": run.mlflow_run_id or "",
        **report_eers(metrics),
    }


def report_eers(report: dict[str, Any]) -> dict[str, float]:
    """A classification report's EER at each noise level and against each generator, as
    ``eer@<noise level>`` and ``eer@<generator>`` entries (none when the report has neither)."""
    return {
        f"eer@{name}": value
        for key in ("noise_eer", "generator_eer")
        if isinstance(report.get(key), dict)
        for name, value in report[key].items()
    }


def eer_columns(columns: Iterable[str]) -> list[str]:
    """The ``eer@...`` columns among ``columns``, each once: noise levels first (clean, then by
    falling SNR), then generators (alphabetically)."""

    def order(column: str) -> tuple[int, Any]:
        name = column.removeprefix("eer@")
        try:
            parse_noise_name(name)
        except InvalidSpecError:
            return (1, name)
        return (0, noise_sort_key(name))

    return sorted({c for c in columns if c.startswith("eer@")}, key=order)


def summary_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """:data:`SUMMARY_COLUMNS`, then every ``spec.…`` column the rows have (the recipe, in the
    order of its options), then every ``eer@...`` column (:func:`eer_columns`)."""
    keys = [key for row in rows for key in row]
    spec = list(dict.fromkeys(key for key in keys if key.startswith(SPEC_PREFIX)))
    return [*SUMMARY_COLUMNS, *spec, *eer_columns(keys)]


def _runs_with_epochs(
    actor: Actor, run_ids: Sequence[int] | None
) -> list[tuple[RunRecord, list[EpochMetric]]]:
    """The runs (all of the actor's, newest first, or ``run_ids`` in order) with their epochs."""
    with store.session_scope(readonly=True) as session:
        if run_ids is None:
            runs = store.list_runs(session, actor)
        else:
            runs = [store.get_run(session, actor, run_id) for run_id in run_ids]
        return [(run, store.list_epoch_metrics(session, actor, run.id)) for run in runs]


def run_summaries(actor: Actor, run_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One summary row per run of ``actor`` (all of them, newest first, or ``run_ids`` in order),
    with its whole recipe as ``spec.<option>`` columns (:func:`flat_spec`).

    Raises:
        NotFoundError: one of ``run_ids`` is not a run the actor may see.
    """
    return [
        {
            **_summary(run, epochs),
            **{f"{SPEC_PREFIX}{k}": v for k, v in flat_spec(run.spec).items()},
        }
        for run, epochs in _runs_with_epochs(actor, run_ids)
    ]


def summaries_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV text with :func:`summary_columns` (blank where a run has no figure; names
    cannot act as spreadsheet formulas)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=summary_columns(rows), lineterminator="\n", restval=""
    )
    writer.writeheader()
    writer.writerows({name: spreadsheet_safe(value) for name, value in row.items()} for row in rows)
    return buffer.getvalue()


def compare_runs(actor: Actor, run_ids: Sequence[int]) -> RunComparison:
    """The chosen runs (at most :data:`MAX_COMPARED`) side by side.

    Raises:
        InvalidSpecError: no run, or more than :data:`MAX_COMPARED`.
        NotFoundError: a run the actor may not see.
    """
    ids = list(dict.fromkeys(int(i) for i in run_ids))
    if not 1 <= len(ids) <= MAX_COMPARED:
        raise InvalidSpecError(f"Compare 1 to {MAX_COMPARED} runs; got {len(ids)}.")
    runs = _runs_with_epochs(actor, ids)
    rows = [_summary(run, epochs) for run, epochs in runs]
    table = pd.DataFrame(rows, columns=summary_columns(rows))
    for column in table.columns:
        if column in NUMERIC_COLUMNS or column.startswith("eer@"):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    points = [
        {"run": run.name, "epoch": e.epoch + 1, "eer": e.eer, "valid_loss": e.valid_loss}
        for run, epochs in runs
        for e in epochs
    ]
    curves = pd.DataFrame(points, columns=["run", "epoch", "eer", "valid_loss"])
    scored = {run.id: _valid_scores(run) for run, _ in runs}
    return RunComparison(
        table,
        curves,
        recipe_differences([run for run, _ in runs]),
        # Each run against the first chosen (a baseline and its variants): at most 7 pairs,
        # drawn once per set of runs as they ended with the scores they kept.
        kept_pairs(
            ("runs", *((run.id, run.finished_at, scored[run.id] is None) for run, _ in runs)),
            [s for s in scored.values() if s is not None],
            against_first=True,
        ),
        [run.name for run, _ in runs if run.status == "succeeded" and scored[run.id] is None],
    )


def _valid_scores(run: RunRecord) -> DatasetEvaluation | None:
    """A finished run's validation scores in the shape of a test's (its name standing for the
    model), or None when it kept none (a run from before they were kept, or one unfinished)."""
    scores = run_valid_scores(run)
    if scores is None:
        return None
    return DatasetEvaluation({"model": {"id": run.id, "name": run.name}}, scores)
