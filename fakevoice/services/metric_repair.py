"""Figures that earlier upgrades deleted, restored from the run folders (``fakevoice runs
repair-metrics``).

Before migrations ran with SQLite's foreign keys off (see
:func:`fakevoice.store.migrate.migration_connection`), upgrading a database across revisions 0005,
0007 or 0009 deleted every run's epoch and batch metrics and unlinked its models. A training
run's folder keeps its epochs in ``history.csv``: the repair stores them again for each ended
training run that has none, or only later ones (resumed from a checkpoint after losing them: the
epochs before the first it kept), and links a model to its run again when the model's files are
in that run's folder. Batch metrics (each batch's loss, the live curve) are kept nowhere else.

It is the operator's repair over every user's runs: administrators only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from fakevoice import store
from fakevoice.artefacts import read_history_csv
from fakevoice.errors import FakeVoiceError, NotFoundError, PermissionDeniedError
from fakevoice.services.profile import folder_run_id, run_folder
from fakevoice.store.records import (
    FINAL_STATUSES,
    Actor,
    EpochMetric,
    ModelRecord,
    RunRecord,
)

HISTORY_FILE = "history.csv"
# A file system's clock may lag the one that timed the run's start by a few milliseconds.
_CLOCK_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class RunRepair:
    """One ended training run that had lost epochs, and what the repair did (or would do).

    Attributes:
        run: The run.
        epochs: Epochs restored from its ``history.csv`` (a dry run: that would be); 0: none.
        kept_from: The first epoch (from 0) it still had, the ones before it lost; None: it
            had none.
        skipped: Why none was restored, in words; None when they were.
        unreadable: Its ``history.csv`` is there but could not be used (the operator's to look at).
    """

    run: RunRecord
    epochs: int = 0
    kept_from: int | None = None
    skipped: str | None = None
    unreadable: bool = False


@dataclass(frozen=True)
class ModelRelink:
    """A model without a run whose folder is a training run's, and whether it was (a dry run:
    would be) linked to that run again; ``skipped`` says why not."""

    model: ModelRecord
    run_id: int
    skipped: str | None = None


@dataclass(frozen=True)
class MetricRepair:
    """What :func:`repair_lost_metrics` found and did, run by run and model by model."""

    runs: list[RunRepair]
    models: list[ModelRelink]
    dry_run: bool


def repair_lost_metrics(actor: Actor, *, dry_run: bool = False) -> MetricRepair:
    """Restore the epochs of every ended training run that lost them (all, or those before the
    first it kept) from its ``history.csv``, and link models to their runs again (administrators only; ``dry_run``: change nothing).

    A run whose file is missing, unreadable, or older than its last start (an earlier attempt's)
    is skipped and said so; the others go on. A second repair restores nothing.

    Raises:
        PermissionDeniedError: the actor is no administrator.
    """
    if not actor.is_admin:
        raise PermissionDeniedError("Only an administrator may repair runs' metrics.")
    with store.session_scope(readonly=True) as session:
        ended = store.list_runs(session, actor, all_users=True, statuses=FINAL_STATUSES)
        lost = [(r, first) for r in ended if (first := _first_epoch(session, actor, r)) != 0]
        unlinked = [
            m for m in store.list_models(session, actor, all_users=True) if m.run_id is None
        ]
    runs = [_restore(actor, run, first, dry_run) for run, first in reversed(lost)]  # oldest first
    in_runs = [(m, run_id) for m in unlinked if (run_id := _run_of_folder(m)) is not None]
    models = [_relink(actor, model, run_id, dry_run) for model, run_id in reversed(in_runs)]
    return MetricRepair(runs=runs, models=models, dry_run=dry_run)


def _first_epoch(session: Session, actor: Actor, run: RunRecord) -> int | None:
    """The first epoch (from 0) of the run's stored ones; None when it has none."""
    return min((m.epoch for m in store.list_epoch_metrics(session, actor, run.id)), default=None)


def _restore(actor: Actor, run: RunRecord, first: int | None, dry_run: bool) -> RunRepair:
    """Restore the run's epochs before ``first`` (all when None) from its ``history.csv``."""
    found = _lost_epochs(run, first)
    if isinstance(found, RunRepair):
        return replace(found, kept_from=first)
    if dry_run:
        return RunRepair(run, epochs=len(found), kept_from=first)
    with store.session_scope() as session:
        stored = store.restore_epoch_metrics(session, actor, run.id, found)
    if not stored:  # another repair was quicker
        return RunRepair(run, kept_from=first, skipped="its epochs were stored meanwhile")
    return RunRepair(run, epochs=stored, kept_from=first)


def _lost_epochs(run: RunRecord, first: int | None) -> list[EpochMetric] | RunRepair:
    """The epochs before ``first`` (all when None) in the run's ``history.csv``, or why there
    are none to restore."""
    path = run_folder(run.id) / HISTORY_FILE
    try:
        if not path.is_file():
            return RunRepair(run, skipped=f"no {HISTORY_FILE}, nothing to restore")
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        # A run resumed from its checkpoint keeps its earlier epochs' file: they are its own.
        started = run.started_at if run.resume_from_epoch is None else None
        if started is not None and modified < started - _CLOCK_SLACK:
            earlier = f"its {HISTORY_FILE} is older than its last start (an earlier attempt's)"
            return RunRepair(run, skipped=f"{earlier}, not restored")
        epochs = read_history_csv(path)
    except OSError as exc:  # a folder this account may not read
        problem = f"{HISTORY_FILE} cannot be read: {exc.strerror or exc}; skipped"
        return RunRepair(run, skipped=problem, unreadable=True)
    except FakeVoiceError as exc:
        return RunRepair(run, skipped=f"{exc}; skipped", unreadable=True)
    lost = [e for e in epochs if first is None or e.epoch < first]
    if not lost:
        before = "" if first is None else f" before epoch {first + 1}, the first it kept"
        return RunRepair(
            run, skipped=f"its {HISTORY_FILE} holds no epoch{before}, nothing to restore"
        )
    return lost


def _run_of_folder(model: ModelRecord) -> int | None:
    """The id of the run whose folder holds the model's files (``runs/<id>``, or
    ``runs/<id>/model-<model id>`` for a model kept aside when its run trained again); None for
    a model stored elsewhere (an upload, an import)."""
    from fakevoice.jobs.runner import KEPT_MODEL_PREFIX

    run_id = folder_run_id(Path(model.path))
    if run_id is None:
        return None
    own = run_folder(run_id).resolve()
    kept_aside = own / f"{KEPT_MODEL_PREFIX}{model.id}"
    return run_id if Path(model.path).resolve() in (own, kept_aside) else None


def _relink(actor: Actor, model: ModelRecord, run_id: int, dry_run: bool) -> ModelRelink:
    if (why_not := _relink_refusal(actor, model, run_id)) is not None:
        return ModelRelink(model, run_id, skipped=why_not)
    if not dry_run:
        with store.session_scope() as session:
            store.relink_model(session, actor, model.id, run_id)
    return ModelRelink(model, run_id)


def _relink_refusal(actor: Actor, model: ModelRecord, run_id: int) -> str | None:
    """Why the model must not be linked to run ``run_id`` again, in words; None when it may:
    the run is there, a training run of the model's owner made before the model (a run id that
    came back after its run was deleted is a newer run's), and the model's files are all in it."""
    try:
        with store.session_scope(readonly=True) as session:
            run = store.get_run(session, actor, run_id)
    except NotFoundError:
        return f"run {run_id} is gone"
    if run.kind != "train" or run.owner_id != model.owner_id:
        return f"run {run_id} is not a training run of the model's owner"
    if run.created_at > model.created_at:
        return f"run {run_id} is newer than the model (its id was given to a later run)"
    missing = [name for name in model.files if not (Path(model.path) / name).is_file()]
    if missing:
        return f"its files are no longer all in run {run_id}'s folder ({', '.join(missing)})"
    return None
