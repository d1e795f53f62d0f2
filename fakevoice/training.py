"""Training: assemble a fastai Learner, fit it with the run's callback, write run artefacts.

The items come from :mod:`fakevoice.training_data`; the run's history and its best-epoch rules
from :mod:`fakevoice.training_history`; the callback that reports, stops and checkpoints from
:mod:`fakevoice.training_callbacks`; the checkpoint files from
:mod:`fakevoice.training_checkpoints`.

The job function (``fakevoice.jobs``) calls :func:`train` in a worker process with a
:class:`~fakevoice.training_callbacks.TrainingSink` that writes metrics to the store and tells
whether a stop was asked for. This module knows nothing of the store or of Streamlit.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fastai.callback.schedule  # noqa: F401  (adds fit_one_cycle and lr_find to Learner)
import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientClip
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat

from fakevoice.errors import EstimateUnavailableError, InvalidSpecError
from fakevoice.models import memory
from fakevoice.models.learners import build_learner_model
from fakevoice.models.registry import pick_device
from fakevoice.training_callbacks import (
    LossScaleResume,
    RunSinkCallback,
    TrainingSink,
    plateau_callback,
)
from fakevoice.training_checkpoints import (
    CHECKPOINT_DIR,
    Checkpoint,
    has_checkpoint,
    load_checkpoint,
    load_checkpoint_state,
)
from fakevoice.training_data import (
    PreparedData,
    class_weights,
    make_dataloaders,
    prepare_data,
)
from fakevoice.training_data import loader_workers as resolve_loader_workers
from fakevoice.training_history import EpochRecord
from fakevoice.trainspec import TrainSpec

logger = logging.getLogger(__name__)


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
    """Seed Python's, NumPy's and torch's generators (a run's weights and batches follow).

    On a GPU, cuDNN is also asked for deterministic convolutions and not to benchmark its
    algorithms per shape (which picks by timing, so differently from run to run): two runs of one
    recipe and seed then agree on the same machine. A few CUDA operations have no deterministic
    kernel (atomic additions in some backward passes), so GPU runs agree closely rather than bit
    for bit; CPU runs agree exactly.
    """
    random.seed(seed)
    torch.manual_seed(seed)  # every CUDA device too
    np.random.seed(seed % (2**32))
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


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
        advice = memory.advise(
            spec.arch,
            spec.batch_size,
            shape,
            device,
            n_classes,
            mixed_precision=spec.callbacks.mixed_precision,
            free=True,
        )
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
    fit_cbs: list[Callback] = []
    if state is not None:
        history = state.history
        load_checkpoint(learn, run_dir, "last", device, with_opt=True)
        start_epoch = state.epoch + 1
        if state.scaler is not None:
            fit_cbs.append(LossScaleResume(state.scaler))
        logger.info("resuming %s after epoch %d", run_dir.name, state.epoch)

    # Before the run's callback joins: the finder's own fit (its batches, its sweep of learning
    # rates over many short epochs) is no part of the run's history or progress. A resumed run
    # keeps the rate it started with, the finder's answer included.
    if spec.learning_rate is not None:
        lr = spec.learning_rate
    elif state is not None and state.learning_rate is not None:
        lr = state.learning_rate
        logger.info("resuming with the learning rate the finder chose: %.3g", lr)
    else:
        lr = suggest_learning_rate(learn)
    callback = RunSinkCallback(
        sink,
        run_dir,
        spec.epochs,
        data.class_names,
        spec.callbacks.save_best,
        spec.callbacks.early_stopping_patience,
        history,
        learning_rate=lr,
    )
    learn.add_cb(callback)
    if start_epoch < spec.epochs:
        with learn.no_logging():
            if spec.callbacks.reduce_lr_patience is not None:
                # Resumed: from the rate the plateaus had brought it to (their count restarts).
                now = state.current_learning_rate if state is not None else None
                plateau = plateau_callback(spec.callbacks.reduce_lr_patience, start_epoch)
                learn.fit(
                    spec.epochs,
                    now if now is not None else lr,
                    cbs=[plateau, *fit_cbs],
                    start_epoch=start_epoch,
                )
            else:
                learn.fit_one_cycle(spec.epochs, lr, start_epoch=start_epoch, cbs=fit_cbs)
    # Out before the export: fastai pickles a learner's callbacks, and a model.pkl naming this
    # one would load only where the training modules are, under the same names.
    learn.remove_cb(callback)

    status = "cancelled" if callback.cancelled else "succeeded"
    if not history:
        return TrainResult(status, 0, data.class_names, {}, {}, notice, history)
    kept: Checkpoint = (
        "best" if spec.callbacks.save_best and has_checkpoint(run_dir, "best") else "last"
    )
    load_checkpoint(learn, run_dir, kept, device, with_opt=False)
    # Stopped: the share of its epochs it completed (epochs count from 0).
    done = history[-1].epoch + 1
    sink.on_progress(1.0 if status == "succeeded" else done / spec.epochs, history[-1].epoch)
    report, files = write_run_artefacts(learn, spec, data, history, run_dir, learning_rate=lr)
    return TrainResult(status, len(history), data.class_names, report, files, notice, history)
