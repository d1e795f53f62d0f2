"""The job function: execute one training run claimed from the store.

Both backends call :func:`execute_run` — the local worker in a child process, Ray as a remote task —
so a run behaves the same wherever it executes. The function talks to the store only; it writes
per-batch and per-epoch metrics as it goes, honours the stop flag within one batch, and always
leaves the run in a final status (or "running" with a heartbeat while it is alive).
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.orm import Session

from fakevoice import store
from fakevoice.errors import FakeVoiceError
from fakevoice.jobs.progress import finish_job, unexpected_error_text
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, BatchMetric, EpochMetric

if TYPE_CHECKING:  # the training engine (torch, fastai, MLflow): imported by training runs only
    from fakevoice.tracking import RunTracker
    from fakevoice.training import TrainResult
    from fakevoice.training_history import EpochRecord

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
STOP_CHECK_SECONDS = 0.2
KEPT_MODEL_PREFIX = "model-"  # a model stored before the run trained again keeps its files here


class RunLost(FakeVoiceError):
    """The run was taken away from this worker (marked interrupted or deleted) while training."""


def run_dir_for(run_id: int) -> Path:
    """Where a run's artefacts live: ``<data dir>/runs/<id>``."""
    return get_settings().data_dir / "runs" / str(run_id)


class StoreSink:
    """A training sink writing to the store, batching writes so training is not slowed down."""

    def __init__(self, run_id: int, worker_id: str, tracker: RunTracker | None = None) -> None:
        self.run_id = run_id
        self.worker_id = worker_id
        self.tracker = tracker
        self._pending: list[BatchMetric] = []
        self._last_flush = 0.0
        self._last_stop_check = 0.0
        self._stop = False
        self._progress: tuple[float, int] | None = None

    def on_batch(self, epoch: int, batch: int, step: int, loss: float, lr: float) -> None:
        self._pending.append(
            BatchMetric(epoch=epoch, batch=batch, step=step, train_loss=loss, lr=lr)
        )
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def on_epoch(self, record: EpochRecord) -> None:
        self.flush()
        with store.session_scope() as session:
            metric = EpochMetric(
                epoch=record.epoch,
                train_loss=record.train_loss,
                valid_loss=record.valid_loss,
                accuracy=record.accuracy,
                macro_f1=record.macro_f1,
                eer=record.eer,
                seconds=record.seconds,
            )
            store.append_epoch_metrics(session, self.run_id, [metric])
        if self.tracker is not None:
            self.tracker.log_epoch(record)

    def on_progress(self, fraction: float, epoch: int) -> None:
        self._progress = (fraction, epoch)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_stop_check >= STOP_CHECK_SECONDS:
            self._last_stop_check = now
            with store.session_scope(readonly=True) as session:
                self._stop = store.is_stop_requested(session, self.run_id)
        return self._stop

    def flush(self) -> None:
        """Write pending batch metrics and progress (which is also a heartbeat)."""
        self._last_flush = time.monotonic()
        with store.session_scope() as session:
            if self._pending:
                store.append_batch_metrics(session, self.run_id, self._pending)
                self._pending = []
            if self._progress is not None:
                fraction, epoch = self._progress
                alive = store.record_progress(
                    session, self.run_id, self.worker_id, progress=fraction, current_epoch=epoch
                )
                if not alive:
                    raise RunLost("This run is no longer held by this worker; training stopped.")


def execute_run(run_id: int, worker_id: str) -> str:
    """Train run ``run_id`` (already claimed as running by ``worker_id``) to a final status; a job
    of kind ``dataset`` builds its dataset instead (:mod:`fakevoice.jobs.dataset_job`), one of
    kind ``evaluate`` tests models on a dataset (:mod:`fakevoice.jobs.evaluation_job`), and one of
    kind ``render`` renders a dataset again (:mod:`fakevoice.jobs.render_job`).

    Returns:
        The final status written to the store.
    """
    with store.session_scope() as session:
        run = store.get_run_for_worker(session, run_id)
    if run.kind == "dataset":
        from fakevoice.jobs.dataset_job import execute_dataset_build

        return execute_dataset_build(run, worker_id)
    if run.kind == "evaluate":
        from fakevoice.jobs.evaluation_job import execute_evaluation

        return execute_evaluation(run, worker_id)
    if run.kind == "render":
        from fakevoice.jobs.render_job import execute_render

        return execute_render(run, worker_id)
    from fakevoice.services.datasets import audited_shortcut_warning
    from fakevoice.tracking import RunTracker
    from fakevoice.training import train
    from fakevoice.training_checkpoints import CHECKPOINT_DIR
    from fakevoice.trainspec import TrainSpec

    run_dir = run_dir_for(run_id)
    tracker = RunTracker(on_notice=lambda text: add_notice(run_id, text))
    # A run queued with a resume epoch continues from its checkpoint (and its MLflow run); one
    # queued without (new, or restarted from scratch) must not pick up an old checkpoint.
    resume = run.resume_from_epoch is not None
    try:
        spec = TrainSpec.from_dict(run.spec)
        with store.session_scope() as session:
            store.set_run_info(session, run_id, artefact_dir=str(run_dir), total_epochs=spec.epochs)
        mlflow_run_id = tracker.start(
            run_id=run_id,
            run_name=run.name,
            owner_id=run.owner_id,
            spec=run.spec,
            resume_mlflow_run_id=run.mlflow_run_id if resume else None,
        )
        if mlflow_run_id is not None and mlflow_run_id != run.mlflow_run_id:
            with store.session_scope() as session:
                store.set_run_info(session, run_id, mlflow_run_id=mlflow_run_id)
        sink = StoreSink(run_id, worker_id, tracker)

        def on_notice(text: str) -> None:
            add_notice(run_id, text)

        if not resume:
            shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
            # The submission read the kept audit only; one the dataset lacks is made here, with
            # the owner's rights (an administrator's run may be on another user's dataset).
            with store.session_scope(readonly=True) as session:
                owner = store.get_user(session, run.owner_id).actor
            warning = audited_shortcut_warning(spec.dataset, spec.classes, actor=owner)
            if warning is not None:
                on_notice(warning)
        _keep_earlier_models(run_id, run_dir)
        result = train(
            spec,
            run_dir,
            sink,
            get_settings().dataset_dir,
            resume=resume,
            on_notice=on_notice,
            server_device=get_settings().device,
            loader_workers=get_settings().train_loader_workers,
        )
        sink.flush()
    except RunLost as exc:
        logger.warning("run %d: %s", run_id, exc)
        return "interrupted"
    except FakeVoiceError as exc:
        tracker.finish("failed", None, {})
        return finish_job(run_id, worker_id, "failed", str(exc))
    except Exception as exc:  # a bug, a full disk, an out-of-memory: the run must still end
        logger.error("run %d failed:\n%s", run_id, traceback.format_exc())
        tracker.finish("failed", None, {})
        message = unexpected_error_text(exc, "training", run_dir)
        return finish_job(run_id, worker_id, "failed", message)
    status = _complete(run.owner_id, run.name, run_id, worker_id, run_dir, result)
    tracker.finish(status, run_dir if result.files else None, result.metrics)
    return status


def add_notice(run_id: int, text: str) -> None:
    """Add a line for the user to the run's notice, keeping the lines already there."""
    with store.session_scope() as session:
        current = store.get_run_for_worker(session, run_id).notice
        if current and text in current:
            return
        store.set_run_info(session, run_id, notice=f"{current} {text}" if current else text)


def _complete(
    owner_id: int, name: str, run_id: int, worker_id: str, run_dir: Path, result: TrainResult
) -> str:
    status: Literal["succeeded", "cancelled"] = (
        "succeeded" if result.status == "succeeded" else "cancelled"
    )
    with store.session_scope() as session:
        if result.files:
            first = result.history[0].epoch if result.history else 0
            logger.info("run %d trained epochs %d..%d", run_id, first, result.epochs_done)
            manifest_meta = _bundle_meta(run_dir)
            store.add_model(
                session,
                Actor(user_id=owner_id),
                name=_unique_model_name(session, owner_id, name),
                arch=str(manifest_meta.get("arch")),
                class_names=result.class_names,
                sample_rate=int(manifest_meta.get("sample_rate", 16000)),
                clip_samples=int(manifest_meta.get("clip_samples", 0)),
                path=str(run_dir),
                files=result.files,
                feature_spec=manifest_meta.get("feature_spec"),
                metrics=result.metrics,
                run_id=run_id,
            )
        error = None if status == "succeeded" else "Stopped on request."
        store.set_status(session, run_id, status, worker_id=worker_id, error=error)
    if status == "succeeded":
        # Only a stopped, failed or interrupted run resumes from its checkpoints (the last epoch's
        # weights with the optimiser's state, the best epoch's): a finished run's would be about
        # four times its model's size on disk for nothing.
        from fakevoice.training_checkpoints import CHECKPOINT_DIR

        shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    return status


def _keep_earlier_models(run_id: int, run_dir: Path) -> None:
    """Copy the files of a model this run stored before (it was stopped, then resumed or
    restarted) into a folder of their own and point the model there: training writes the run's
    files again, and a stored model's files must stay the ones it was stored with."""
    with store.session_scope(readonly=True) as session:
        earlier = store.models_in_folder(session, run_id, str(run_dir))
    for model in earlier:
        folder = run_dir / f"{KEPT_MODEL_PREFIX}{model.id}"
        folder.mkdir(exist_ok=True)
        for name in model.files:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, folder / name)
        with store.session_scope() as session:
            store.move_model_files(session, model.id, str(folder))
        logger.info("run %d: model %d kept in %s before training again", run_id, model.id, folder)


def _bundle_meta(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / "manifest.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def _unique_model_name(session: Session, owner_id: int, name: str) -> str:
    taken = {
        m.name
        for m in store.list_models(session, Actor(user_id=owner_id))
        if m.owner_id == owner_id
    }
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"
