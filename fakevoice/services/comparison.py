"""Runs side by side: their key figures in one table and their validation EER epoch by epoch.

One summary row per run serves ``fakevoice runs export`` (every run, as CSV) and the Profile
page's comparison (the runs a user picks). Figures are fractions; a run that has not written them
yet leaves them blank. A finished run's final model adds ``eer@<noise level>`` and
``eer@<generator>`` columns (from its ``metrics.json``), so runs can be compared SNR by SNR and
attack by attack.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fakevoice import store
from fakevoice.datasets.noise import noise_sort_key, parse_noise_name
from fakevoice.errors import InvalidSpecError
from fakevoice.services.results import run_metrics
from fakevoice.store.records import Actor, EpochMetric, RunRecord

SUMMARY_COLUMNS = (
    "id", "name", "arch", "dataset", "status", "epochs", "best_eer", "final_eer", "accuracy",
    "macro_f1", "created", "finished", "mlflow_run_id",
)  # fmt: skip
MAX_COMPARED = 8


@dataclass(frozen=True)
class RunComparison:
    """Several runs of one user, side by side.

    Attributes:
        table: one row per run, :func:`summary_columns` in order.
        curves: long table ``run`` (name), ``epoch`` (from 1), ``eer``, ``valid_loss``.
    """

    table: pd.DataFrame
    curves: pd.DataFrame

    def csv(self) -> str:
        return self.table.to_csv(index=False)


def _summary(run: RunRecord, epochs: list[EpochMetric]) -> dict[str, Any]:
    eers = [e.eer for e in epochs if e.eer is not None]
    last = epochs[-1] if epochs else None
    return {
        "id": run.id,
        "name": run.name,
        "arch": run.spec.get("arch", ""),
        "dataset": run.spec.get("dataset", ""),
        "status": run.status,
        "epochs": len(epochs),
        "best_eer": min(eers) if eers else "",
        "final_eer": eers[-1] if eers else "",
        "accuracy": last.accuracy if last and last.accuracy is not None else "",
        "macro_f1": last.macro_f1 if last and last.macro_f1 is not None else "",
        "created": run.created_at.isoformat(timespec="seconds"),
        "finished": run.finished_at.isoformat(timespec="seconds") if run.finished_at else "",
        "mlflow_run_id": run.mlflow_run_id or "",
        **report_eers(run_metrics(run)),
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
    """:data:`SUMMARY_COLUMNS`, then every ``eer@...`` column the rows have (:func:`eer_columns`)."""
    return [*SUMMARY_COLUMNS, *eer_columns(key for row in rows for key in row)]


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
    """One summary row per run of ``actor`` (all of them, newest first, or ``run_ids`` in order).

    Raises:
        NotFoundError: one of ``run_ids`` is not a run the actor may see.
    """
    return [_summary(run, epochs) for run, epochs in _runs_with_epochs(actor, run_ids)]


def summaries_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV text with :func:`summary_columns` (blank where a run has no figure)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=summary_columns(rows), lineterminator="\n", restval=""
    )
    writer.writeheader()
    writer.writerows(rows)
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
        if column in {"best_eer", "final_eer", "accuracy", "macro_f1"} or column.startswith("eer@"):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    points = [
        {"run": run.name, "epoch": e.epoch + 1, "eer": e.eer, "valid_loss": e.valid_loss}
        for run, epochs in runs
        for e in epochs
    ]
    curves = pd.DataFrame(points, columns=["run", "epoch", "eer", "valid_loss"])
    return RunComparison(table, curves)
