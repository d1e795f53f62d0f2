"""Per-batch and per-epoch training metrics: the worker appends, the live chart reads (and the
operator's repair restores epochs that earlier upgrades deleted).

Reads are cheap: one primary-key lookup for the ownership check, then an indexed range scan of
plain columns (no ORM objects), so a page can poll every second with ``after_step``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from fakevoice.errors import NotFoundError, PermissionDeniedError
from fakevoice.store.records import Actor, BatchMetric, EpochMetric
from fakevoice.store.tables import BatchMetricRow, EpochMetricRow, RunRow, utcnow

logger = logging.getLogger(__name__)

_BATCH_COLUMNS = (
    BatchMetricRow.epoch,
    BatchMetricRow.batch,
    BatchMetricRow.step,
    BatchMetricRow.train_loss,
    BatchMetricRow.lr,
    BatchMetricRow.recorded_at,
)
_EPOCH_COLUMNS = (
    EpochMetricRow.epoch,
    EpochMetricRow.train_loss,
    EpochMetricRow.valid_loss,
    EpochMetricRow.accuracy,
    EpochMetricRow.macro_f1,
    EpochMetricRow.eer,
    EpochMetricRow.seconds,
)


def append_batch_metrics(session: Session, run_id: int, metrics: Sequence[BatchMetric]) -> int:
    """Insert batch metrics in one statement (job backends only). Returns how many."""
    if not metrics:
        return 0
    now = utcnow()
    rows = [
        {
            "run_id": run_id,
            "epoch": m.epoch,
            "batch": m.batch,
            "step": m.step,
            "train_loss": float(m.train_loss),
            "lr": None if m.lr is None else float(m.lr),
            "recorded_at": m.recorded_at or now,
        }
        for m in metrics
    ]
    session.execute(insert(BatchMetricRow), rows)
    return len(rows)


def append_epoch_metrics(session: Session, run_id: int, metrics: Sequence[EpochMetric]) -> int:
    """Store epoch summaries (job backends only); an epoch stored before is replaced (resume)."""
    if not metrics:
        return 0
    epochs = [m.epoch for m in metrics]
    session.execute(
        delete(EpochMetricRow).where(
            EpochMetricRow.run_id == run_id, EpochMetricRow.epoch.in_(epochs)
        )
    )
    session.execute(insert(EpochMetricRow), _epoch_rows(run_id, metrics))
    # An epoch done: whatever killed its workers before, the run is making progress.
    session.execute(update(RunRow).where(RunRow.id == run_id).values(worker_deaths=0))
    return len(metrics)


def restore_epoch_metrics(
    session: Session, actor: Actor, run_id: int, metrics: Sequence[EpochMetric]
) -> int:
    """Store the epochs a run lost: all of ``metrics`` when it has none, those before its first
    stored epoch when it has only later ones (a run resumed after losing them); administrators
    only: the operator's repair of the figures that earlier upgrades deleted, read back from the
    run's ``history.csv``.

    Returns:
        How many epochs were stored: none is replaced, so a second repair changes nothing.

    Raises:
        PermissionDeniedError: the actor is no administrator.
        NotFoundError: there is no such run.
    """
    if not actor.is_admin:
        raise PermissionDeniedError("Only an administrator may restore a run's epochs.")
    # The run's row locked (PostgreSQL) so that two repairs at once cannot both find them lost.
    if session.scalar(select(RunRow.id).where(RunRow.id == run_id).with_for_update()) is None:
        raise NotFoundError(f"There is no run with id {run_id}.")
    first = session.scalar(
        select(func.min(EpochMetricRow.epoch)).where(EpochMetricRow.run_id == run_id)
    )
    lost = [m for m in metrics if first is None or m.epoch < first]
    if not lost:
        return 0
    session.execute(insert(EpochMetricRow), _epoch_rows(run_id, lost))
    logger.info("run %d: %d epochs restored by user %d", run_id, len(lost), actor.user_id)
    return len(lost)


def _epoch_rows(run_id: int, metrics: Sequence[EpochMetric]) -> list[dict[str, Any]]:
    fields = ("epoch", "train_loss", "valid_loss", "accuracy", "macro_f1", "eer", "seconds")
    return [
        {"run_id": run_id, **{name: _measured(getattr(m, name)) for name in fields}}
        for m in metrics
    ]


def _measured(value: Any) -> Any:
    """``value``, or None for NaN: a figure an epoch could not measure (an EER without bona fide
    items) is NULL on every backend. SQLite turns NaN into NULL itself; PostgreSQL keeps it, and
    a NaN then wins or loses ``min`` by its place and is no JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def list_batch_metrics(
    session: Session, actor: Actor, run_id: int, *, after_step: int = -1, limit: int | None = None
) -> list[BatchMetric]:
    """Batch metrics of a run the actor may see, with ``step > after_step``, in step order.

    Raises:
        NotFoundError: no such run, or not the actor's (and the actor is no administrator).
    """
    _check_visible(session, actor, run_id)
    query = (
        select(*_BATCH_COLUMNS)
        .where(BatchMetricRow.run_id == run_id, BatchMetricRow.step > after_step)
        .order_by(BatchMetricRow.step, BatchMetricRow.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [BatchMetric(*row) for row in session.execute(query)]


def list_epoch_metrics(session: Session, actor: Actor, run_id: int) -> list[EpochMetric]:
    """Epoch metrics of a run the actor may see, in epoch order (None: a figure the epoch could
    not measure). Raises NotFoundError."""
    _check_visible(session, actor, run_id)
    query = (
        select(*_EPOCH_COLUMNS)
        .where(EpochMetricRow.run_id == run_id)
        .order_by(EpochMetricRow.epoch)
    )
    # Rows PostgreSQL stored with NaN before NaN was stored as NULL.
    return [EpochMetric(*(_measured(v) for v in row)) for row in session.execute(query)]


def last_epoch_metrics(
    session: Session, actor: Actor, run_ids: Collection[int] | None = None
) -> dict[int, EpochMetric]:
    """The last stored epoch of each of the actor's own runs that has one (only of ``run_ids``
    when given), by run id: one query however many runs, for the lists that show each run's
    latest figures."""
    last = (
        select(EpochMetricRow.run_id, func.max(EpochMetricRow.epoch).label("epoch"))
        .join(RunRow, RunRow.id == EpochMetricRow.run_id)
        .where(RunRow.owner_id == actor.user_id)
        .group_by(EpochMetricRow.run_id)
    )
    if run_ids is not None:
        last = last.where(EpochMetricRow.run_id.in_(run_ids))
    newest = last.subquery()
    query = select(EpochMetricRow.run_id, *_EPOCH_COLUMNS).join(
        newest,
        and_(EpochMetricRow.run_id == newest.c.run_id, EpochMetricRow.epoch == newest.c.epoch),
    )
    return {
        run_id: EpochMetric(*(_measured(v) for v in figures))
        for run_id, *figures in session.execute(query)
    }


def _check_visible(session: Session, actor: Actor, run_id: int) -> None:
    owners = session.execute(select(RunRow.owner_id).where(RunRow.id == run_id)).all()
    if not owners or not actor.can_read(owners[0][0]):
        raise NotFoundError(f"There is no run with id {run_id}.")
