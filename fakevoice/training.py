"""Training: assemble a fastai Learner, fit with live metrics, checkpoint, write run artefacts.

The items come from :mod:`fakevoice.training_data`.

The job function (``fakevoice.jobs``) calls :func:`train` in a worker process with a
:class:`TrainingSink` that writes metrics to the store and tells whether a stop was asked for. This
module knows nothing of the store or of Streamlit.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import fastai.callback.schedule  # noqa: F401  (adds fit_one_cycle and lr_find to Learner)
import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientClip
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat

from fakevoice import metrics
from fakevoice.errors import EstimateUnavailableError, InvalidSpecError
from fakevoice.models import memory
from fakevoice.models.learners import build_learner_model
from fakevoice.models.registry import pick_device
from fakevoice.training_data import (
    PreparedData,
    class_weights,
    make_dataloaders,
    prepare_data,
)
from fakevoice.training_data import loader_workers as resolve_loader_workers
from fakevoice.trainspec import TrainSpec

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True)
class EpochRecord:
    """One row of a run's history (losses are mean cross-entropy; EER is a fraction, NaN when the
    epoch could not measure it)."""

    epoch: int
    train_loss: float
    valid_loss: float
    accuracy: float
    macro_f1: float
    eer: float
    seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "valid_loss": self.valid_loss,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "eer": self.eer,
            "seconds": self.seconds,
        }


class TrainingSink(Protocol):
    """Where a running training reports to (the store in a worker; a list in tests)."""

    def on_batch(self, epoch: int, batch: int, step: int, loss: float, lr: float) -> None: ...

    def on_epoch(self, record: EpochRecord) -> None: ...

    def on_progress(self, fraction: float, epoch: int) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class MemorySink:
    """A sink that keeps everything in memory; ``stop_after_batches`` simulates a stop request."""

    batches: list[tuple[int, int, int, float, float]] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    progress: list[float] = field(default_factory=list)
    stop_after_batches: int | None = None

    def on_batch(self, epoch: int, batch: int, step: int, loss: float, lr: float) -> None:
        self.batches.append((epoch, batch, step, loss, lr))

    def on_epoch(self, record: EpochRecord) -> None:
        self.epochs.append(record)

    def on_progress(self, fraction: float, epoch: int) -> None:
        self.progress.append(fraction)

    def should_stop(self) -> bool:
        return self.stop_after_batches is not None and len(self.batches) >= self.stop_after_batches


@dataclass
class TrainResult:
    """What a finished (or stopped) training produced."""

    status: str  # "succeeded" or "cancelled"
    epochs_done: int
    class_names: list[str]
    metrics: dict[str, Any]
    files: dict[str, str]  # file name -> sha256
    notice: str | None
    history: list[EpochRecord]


# --- callbacks -----------------------------------------------------------------------------------


class RunSinkCallback(Callback):
    """Pushes batch and epoch metrics to the sink, honours stop requests, checkpoints each epoch.

    Runs after fastai's Recorder (order 50) so the epoch's losses are known. fastai makes each
    callback an attribute of the learner under a name taken from its class (``run_sink``); the
    name must not be one of a callback's own attributes (``run`` is). A stop request raises
    ``CancelFitException`` within one batch; the last completed epoch's checkpoint stays the model.
    """

    order = 60

    def __init__(
        self,
        sink: TrainingSink,
        run_dir: Path,
        total_epochs: int,
        class_names: list[str],
        save_best: bool,
        early_stopping_patience: int | None,
        history: list[EpochRecord],
    ) -> None:
        super().__init__()
        self.sink = sink
        self.run_dir = run_dir
        self.total_epochs = total_epochs
        self.class_names = class_names
        self.save_best = save_best
        self.patience = early_stopping_patience
        self.history = history
        self.active = False
        self.cancelled = False
        self.early_stopped = False
        self._probs: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._epoch_start = 0.0
        self._train_losses: list[float] = []

    # fastai drives these by name.
    def before_fit(self) -> None:
        self.active = True

    def after_fit(self) -> None:
        self.active = False

    def before_epoch(self) -> None:
        self._epoch_start = time.monotonic()
        self._train_losses = []

    def before_validate(self) -> None:
        self._probs, self._targets = [], []

    def after_batch(self) -> None:
        if not self.active:
            return
        learn = self.learn
        if learn.training:
            loss = float(learn.loss.detach().cpu())
            self._train_losses.append(loss)
            # Counted from the epoch, so a resumed run continues the step axis of its history.
            step = int(learn.epoch) * int(learn.n_iter) + int(learn.iter)
            lr = float(learn.opt.hypers[-1]["lr"]) if learn.opt is not None else 0.0
            self.sink.on_batch(int(learn.epoch), int(learn.iter), step, loss, lr)
            fraction = (learn.epoch + (learn.iter + 1) / max(1, learn.n_iter)) / self.total_epochs
            self.sink.on_progress(min(1.0, fraction), int(learn.epoch))
            if self.sink.should_stop():
                self.cancelled = True
                raise CancelFitException()
        else:
            probs = torch.softmax(learn.pred.detach().float(), dim=1).cpu().numpy()
            self._probs.append(probs)
            self._targets.append(learn.yb[0].detach().cpu().numpy())

    def after_epoch(self) -> None:
        if not self.active or not self._probs:
            return
        learn = self.learn
        values = learn.recorder.values[-1] if learn.recorder.values else []
        train_loss = float(np.mean(self._train_losses)) if self._train_losses else math.nan
        valid_loss = float(values[1]) if len(values) > 1 else math.nan
        probs = np.concatenate(self._probs)
        targets = np.concatenate(self._targets).astype(np.int64)
        scores = epoch_scores(probs, targets, len(self.class_names))
        record = EpochRecord(
            epoch=int(learn.epoch),
            train_loss=train_loss,
            valid_loss=valid_loss,
            accuracy=scores["accuracy"],
            macro_f1=scores["macro_f1"],
            eer=scores["eer"],
            seconds=time.monotonic() - self._epoch_start,
        )
        self.history.append(record)
        self.sink.on_epoch(record)
        save_checkpoint(learn, self.run_dir, record.epoch, self.history)
        if self.save_best and is_best_epoch(self.history):
            learn.save(self.run_dir / CHECKPOINT_DIR / "best", with_opt=False)
        if self.patience is not None and has_stalled(self.history, self.patience):
            logger.info("early stopping after epoch %d", record.epoch)
            self.early_stopped = True
            raise CancelFitException()


def lowest_eer(history: list[EpochRecord]) -> float | None:
    """The lowest EER of ``history``; None when no epoch measured one (all NaN, or none).

    An epoch's EER is NaN when it could not be measured (a validation split without one of the
    two kinds): such an epoch is never the best, and ``min`` over NaN answers by the order.
    """
    return min((r.eer for r in history if not math.isnan(r.eer)), default=None)


def is_best_epoch(history: list[EpochRecord]) -> bool:
    """Whether the last epoch of ``history`` has the lowest EER so far (ties with an earlier one
    count); never for an epoch without an EER."""
    lowest = lowest_eer(history)
    return lowest is not None and history[-1].eer <= lowest


def has_stalled(history: list[EpochRecord], patience: int) -> bool:
    """Whether the last ``patience`` epochs brought no EER below the lowest before them (an epoch
    without an EER brings none). False while no earlier epoch has an EER: there is nothing to
    improve on, so a run that measures no EER trains all its epochs."""
    if len(history) <= patience:
        return False
    before = lowest_eer(history[:-patience])
    if before is None:
        return False
    recent = lowest_eer(history[-patience:])
    return recent is None or recent >= before


def epoch_scores(probs: np.ndarray, targets: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, macro F1 and EER (bona fide = class 0) of one validation pass."""
    predictions = probs.argmax(axis=1)
    cm = metrics.confusion_matrix(targets, predictions, n_classes)
    bonafide = targets == 0
    if bonafide.any() and (~bonafide).any():
        eer, _ = metrics.compute_eer(probs[bonafide, 0], probs[~bonafide, 0])
    else:
        eer = math.nan
    return {
        "accuracy": float(metrics.accuracy(cm)),
        "macro_f1": float(metrics.macro_f1(cm)),
        "eer": float(eer),
    }


def save_checkpoint(learn: Learner, run_dir: Path, epoch: int, history: list[EpochRecord]) -> None:
    """Save weights + optimiser after ``epoch`` and the history so far (for resume)."""
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed: a worker killed mid-save must not leave a torn checkpoint.
    learn.save(folder / "last.partial", with_opt=True)
    (folder / "last.partial.pth").replace(folder / "last.pth")
    state = {"epoch": epoch, "history": [r.to_dict() for r in history]}
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(folder / "state.json")


def load_checkpoint_state(run_dir: Path) -> tuple[int, list[EpochRecord]] | None:
    """The last completed epoch and history of an interrupted run, if it has a checkpoint."""
    path = run_dir / CHECKPOINT_DIR / "state.json"
    if not path.is_file() or not (run_dir / CHECKPOINT_DIR / "last.pth").is_file():
        return None
    state = json.loads(path.read_text())
    history = [EpochRecord(**row) for row in state["history"]]
    return int(state["epoch"]), history


# --- assembly ------------------------------------------------------------------------------------


def build_learner(
    spec: TrainSpec, dls: DataLoaders, n_classes: int, weights: torch.Tensor | None
) -> tuple[Learner, str | None]:
    """A fastai Learner for the spec's architecture, with the typed callback menu applied."""
    loss_func = CrossEntropyLossFlat(weight=weights.to(dls.device) if weights is not None else None)
    learn, notice = build_learner_model(
        spec.arch, dls, n_classes, loss_func=loss_func, pretrained=spec.pretrained
    )
    learn.remove_cb(ProgressCallback)
    if spec.callbacks.grad_clip is not None:
        learn.add_cb(GradientClip(max_norm=spec.callbacks.grad_clip))
    if spec.augment.mixup > 0:
        learn.add_cb(MixUp(alpha=spec.augment.mixup))
    if spec.callbacks.mixed_precision and dls.device.type == "cuda":
        learn.add_cb(MixedPrecision())
    return learn, notice


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (a run's weights and batches follow)."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def suggest_learning_rate(learn: Learner, num_it: int = 100) -> float:
    """fastai's lr_find valley suggestion over ``num_it`` batches, bounded to a sane range.

    Raises:
        InvalidSpecError: The finder stopped before it had enough points for a suggestion (the
            loss blew up within the first few batches).
    """
    with learn.no_logging():
        try:
            suggestion = learn.lr_find(num_it=num_it, show_plot=False)
        except IndexError:  # fastai's valley() on the empty slice of a finder that stopped early
            raise InvalidSpecError(
                "The learning-rate finder stopped after a few batches because the loss blew up, "
                "so it has no suggestion. Set the learning rate yourself (1e-3 is a good start)."
            ) from None
    lr = float(getattr(suggestion, "valley", 1e-3))
    if not math.isfinite(lr):
        lr = 1e-3
    return float(min(max(lr, 1e-5), 1e-1))


def _warn_about_memory(
    spec: TrainSpec,
    data: PreparedData,
    device: torch.device,
    n_classes: int,
    on_notice: Callable[[str], None] | None,
) -> None:
    """Log the run's memory estimate; tell the user when it will not fit this machine."""
    shape = memory.input_shape(spec.arch, data.feature_spec, spec.clip_samples)
    try:
        advice = memory.advise(spec.arch, spec.batch_size, shape, device, n_classes)
    except EstimateUnavailableError as exc:  # an estimate informs; it never stops a run
        logger.info("%s", exc)
        return
    logger.info("%s", advice.summary())
    warning = advice.warning()
    if warning is not None:
        logger.warning("%s", warning)
        if on_notice is not None:
            on_notice(warning)


def train(
    spec: TrainSpec,
    run_dir: Path,
    sink: TrainingSink,
    dataset_root: Path,
    *,
    resume: bool = True,
    on_notice: Callable[[str], None] | None = None,
    server_device: str = "auto",
    loader_workers: int | Literal["auto"] = "auto",
) -> TrainResult:
    """Train a detector and write its artefacts under ``run_dir``.

    A stop request ends the fit within one batch; the artefacts are then written from the last
    completed epoch (or, with ``save_best``, the one with the lowest EER; an epoch whose EER is
    NaN is never the best, so a run that measures none keeps its last). With ``resume``, a run
    that has a checkpoint continues after its last completed epoch with its history intact. A spec's
    ``device`` auto takes ``server_device`` (the operator's ``FAKEVOICE_DEVICE``);
    ``loader_workers`` is the operator's ``FAKEVOICE_TRAIN_LOADER_WORKERS``
    (:func:`~fakevoice.training_data.loader_workers`).
    """
    from fakevoice.artefacts import write_run_artefacts

    seed_everything(spec.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(spec.device, server_device)
    data = prepare_data(spec, dataset_root)
    workers = resolve_loader_workers(loader_workers, device)
    logger.info("training on %s with %d data-loader worker(s)", device, workers)
    dls = make_dataloaders(data, spec, device, workers)
    n_classes = len(data.class_names)
    weights = class_weights(data.train_labels, n_classes) if spec.class_weighting else None
    learn, notice = build_learner(spec, dls, n_classes, weights)
    if notice and on_notice is not None:
        on_notice(notice)
    _warn_about_memory(spec, data, device, n_classes, on_notice)
    learn.path = run_dir
    learn.model_dir = CHECKPOINT_DIR

    history: list[EpochRecord] = []
    start_epoch = 0
    state = load_checkpoint_state(run_dir) if resume else None
    if state is not None:
        last_epoch, history = state
        learn.load(run_dir / CHECKPOINT_DIR / "last", with_opt=True, device=device)
        start_epoch = last_epoch + 1
        logger.info("resuming %s after epoch %d", run_dir.name, last_epoch)

    # Before the run's callback joins: the finder's own fit (its batches, its sweep of learning
    # rates over many short epochs) is no part of the run's history or progress.
    lr = spec.learning_rate if spec.learning_rate is not None else suggest_learning_rate(learn)
    callback = RunSinkCallback(
        sink,
        run_dir,
        spec.epochs,
        data.class_names,
        spec.callbacks.save_best,
        spec.callbacks.early_stopping_patience,
        history,
    )
    learn.add_cb(callback)
    if start_epoch < spec.epochs:
        with learn.no_logging():
            if spec.callbacks.reduce_lr_patience is not None:
                from fastai.callback.tracker import ReduceLROnPlateau

                learn.fit(
                    spec.epochs,
                    lr,
                    cbs=[ReduceLROnPlateau(patience=spec.callbacks.reduce_lr_patience)],
                    start_epoch=start_epoch,
                )
            else:
                learn.fit_one_cycle(spec.epochs, lr, start_epoch=start_epoch)
    learn.remove_cb(callback)

    status = "cancelled" if callback.cancelled else "succeeded"
    if not history:
        return TrainResult(status, 0, data.class_names, {}, {}, notice, history)
    best = run_dir / CHECKPOINT_DIR / "best.pth"
    if spec.callbacks.save_best and best.is_file():
        learn.load(run_dir / CHECKPOINT_DIR / "best", with_opt=False, device=device)
    else:
        learn.load(run_dir / CHECKPOINT_DIR / "last", with_opt=False, device=device)
    # Stopped: the share of its epochs it completed (epochs count from 0).
    done = history[-1].epoch + 1
    sink.on_progress(1.0 if status == "succeeded" else done / spec.epochs, history[-1].epoch)
    report, files = write_run_artefacts(learn, spec, data, history, run_dir)
    return TrainResult(status, len(history), data.class_names, report, files, notice, history)
