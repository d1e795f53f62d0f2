"""Where a running fit reports to: the :class:`TrainingSink` protocol, an in-memory sink, and
:class:`RunSinkCallback`, the fastai callback that feeds a sink, stops on request and checkpoints.

The job runner's sink writes to the store (``fakevoice.jobs.runner.StoreSink``); tests and the
benchmarks use :class:`MemorySink`. :func:`fakevoice.training.train` adds the callback for the
run's own fit and removes it before the model is exported, so no ``model.pkl`` names it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException

from fakevoice.training_checkpoints import save_best_checkpoint, save_checkpoint
from fakevoice.training_history import EpochRecord, epoch_scores, has_stalled, is_best_epoch

logger = logging.getLogger(__name__)


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
        learning_rate: float | None = None,
    ) -> None:
        super().__init__()
        self.learning_rate = learning_rate
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
        save_checkpoint(
            learn, self.run_dir, record.epoch, self.history, learning_rate=self.learning_rate
        )
        if self.save_best and is_best_epoch(self.history):
            save_best_checkpoint(learn, self.run_dir)
        if self.patience is not None and has_stalled(self.history, self.patience):
            logger.info("early stopping after epoch %d", record.epoch)
            self.early_stopped = True
            raise CancelFitException()


class LossScaleResume(Callback):
    """Gives a resumed mixed-precision run back its loss scale.

    fastai's ``MixedPrecision`` (order 10) makes a fresh ``GradScaler`` at every fit, whose scale
    starts at 65536 and halves on each batch whose gradients overflow: a resumed run would skip
    several batches finding the scale again. This callback runs after it in ``before_fit`` and
    loads the state the checkpoint kept. Given to the run's fit only (not the learner), so the
    learning-rate finder keeps its own and the export names no callback of ours.
    """

    order = 11

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.state = state

    def before_fit(self) -> None:
        scaler = getattr(self.learn, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            scaler.load_state_dict(self.state)


def plateau_callback(patience: int, start_epoch: int) -> Callback:
    """fastai's ReduceLROnPlateau for a fit that starts at ``start_epoch`` (a resumed run).

    fastai skips a resumed fit's earlier epochs by cancelling them, and still calls each
    callback's ``after_epoch`` for them: with nothing validated, ReduceLROnPlateau read a value
    the epoch never recorded (IndexError), and every resumed run with a plateau schedule failed.
    The epochs before ``start_epoch`` are left out of its count.
    """
    from fastai.callback.tracker import ReduceLROnPlateau

    class ResumedPlateau(ReduceLROnPlateau):
        def after_epoch(self) -> None:
            if self.epoch >= start_epoch:
                super().after_epoch()

    return ResumedPlateau(patience=patience)
