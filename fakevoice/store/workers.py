"""Workers report themselves: which are alive, on which backend, with how many jobs in hand.

Like :mod:`fakevoice.store.job_queue` these functions take no acting user: job backends write
them, and readers (a queued job's note, ``/health``, ``fakevoice workers``) learn from them only
that workers run, never whose jobs they hold. A worker is alive when it has not shut down and was
seen within ``stale_seconds``, the same time after which its jobs count as orphaned.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from fakevoice.store.records import RunBackend, WorkerRecord, to_record
from fakevoice.store.tables import RUN_BACKENDS, WorkerRow, utcnow

FORGET_AFTER = timedelta(days=1)  # rows of workers unseen this long are removed


def worker_seen(
    session: Session, worker_id: str, *, backend: RunBackend, concurrency: int, running: int
) -> None:
    """Record that the worker is alive now (its first call records its start).

    One statement updates the row, so that a row another worker removes meanwhile (unseen for a
    day: a suspended machine) is simply written again.
    """
    now = utcnow()
    statement = (
        update(WorkerRow)
        .where(WorkerRow.id == worker_id)
        .values(concurrency=concurrency, running=running, seen_at=now, stopped_at=None)
    )
    if _rowcount(session, statement) == 0:
        session.add(
            WorkerRow(
                id=worker_id,
                backend=backend,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                concurrency=concurrency,
                running=running,
                started_at=now,
                seen_at=now,
            )
        )
    session.flush()


def worker_stopped(session: Session, worker_id: str) -> None:
    """Record that the worker shut down (its jobs ended or were marked interrupted)."""
    statement = (
        update(WorkerRow).where(WorkerRow.id == worker_id).values(stopped_at=utcnow(), running=0)
    )
    _rowcount(session, statement)


def list_workers(session: Session, *, since: datetime | None = None) -> list[WorkerRecord]:
    """Workers seen since ``since`` (all kept ones without it), most recently seen first."""
    statement = select(WorkerRow).order_by(WorkerRow.seen_at.desc(), WorkerRow.id)
    if since is not None:
        statement = statement.where(WorkerRow.seen_at >= since)
    return [to_record(WorkerRecord, row) for row in session.scalars(statement)]


def live_workers(
    session: Session,
    stale_seconds: float,
    *,
    backend: RunBackend | None = None,
    now: datetime | None = None,
) -> list[WorkerRecord]:
    """The workers alive at ``now`` (default: now), of ``backend`` only when given."""
    now = now or utcnow()
    workers = list_workers(session, since=now - timedelta(seconds=stale_seconds))
    return [
        w
        for w in workers
        if w.is_alive(now, stale_seconds) and (backend is None or w.backend == backend)
    ]


def live_worker_counts(session: Session, stale_seconds: float) -> dict[str, int]:
    """How many workers of each backend are alive now (every backend named, 0 included)."""
    counts = dict.fromkeys(RUN_BACKENDS, 0)
    for worker in live_workers(session, stale_seconds):
        counts[worker.backend] += 1
    return counts


def last_worker_seen(session: Session, backend: RunBackend) -> datetime | None:
    """When a worker of ``backend`` was last seen (None when none is on record)."""
    statement = select(WorkerRow.seen_at).where(WorkerRow.backend == backend)
    return session.scalar(statement.order_by(WorkerRow.seen_at.desc()).limit(1))


def forget_old_workers(session: Session, older_than: timedelta = FORGET_AFTER) -> int:
    """Remove the rows of workers unseen for ``older_than``; returns how many."""
    return _rowcount(session, delete(WorkerRow).where(WorkerRow.seen_at < utcnow() - older_than))


def _rowcount(session: Session, statement: Any) -> int:
    options = statement.execution_options(synchronize_session=False)
    return int(cast(CursorResult[Any], session.execute(options)).rowcount)
