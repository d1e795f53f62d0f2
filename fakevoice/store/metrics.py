"""Per-batch and per-epoch training metrics: the worker appends, the live chart reads.

Reads are cheap: one primary-key lookup for the ownership check, then an indexed range scan of
plain columns (no ORM objects), so a page can poll every second with ``after_step``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from fakevoice.errors import NotFoundError
from fakevoice.store.records import Actor, BatchMetric, EpochMetric
from fakevoice.store.tables import BatchMetricRow, EpochMetricRow, RunRow, utcnow

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
    fields = ("epoch", "train_loss", "valid_loss", "accuracy", "macro_f1", "eer", "seconds")
    rows = [{"run_id": run_id, **{name: getattr(m, name) for name in fields}} for m in metrics]
    session.execute(insert(EpochMetricRow), rows)
    # An epoch done: whatever killed its workers before, the run is making progress.
    session.execute(update(RunRow).where(RunRow.id == run_id).values(worker_deaths=0))
    return len(rows)


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
    """Epoch metrics of a run the actor may see, in epoch order. Raises NotFoundError."""
    _check_visible(session, actor, run_id)
    query = (
        select(*_EPOCH_COLUMNS)
        .where(EpochMetricRow.run_id == run_id)
        .order_by(EpochMetricRow.epoch)
    )
    return [EpochMetric(*row) for row in session.execute(query)]


def _check_visible(session: Session, actor: Actor, run_id: int) -> None:
    owners = session.execute(select(RunRow.owner_id).where(RunRow.id == run_id)).all()
    if not owners or not actor.can_read(owners[0][0]):
        raise NotFoundError(f"There is no run with id {run_id}.")
