"""What a training run produced, as pages, API and CLI read it (this never imports streamlit).

* :func:`run_results`: the run with its epoch history, per-batch losses, metrics, confusion matrix,
  ROC curve with its EER point, and which artefact files exist;
* :func:`artefact_bytes` / :func:`bundle_zip`: the downloadable files of a run, by name from a fixed
  list (a requested name never becomes a path by itself);
* :func:`suggest_learning_rate`: fastai's learning-rate finder on a small share of the selection,
  in-process, for the page's "Suggest" button.

Every function asks the store for the run first, so a run the actor may not see raises
:class:`~fakevoice.errors.NotFoundError` before any file is touched.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import math
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fakevoice import store
from fakevoice.artefacts import BUNDLE_MANIFEST, BUNDLE_WEIGHTS, HISTORY_COLUMNS, VALID_SCORES
from fakevoice.errors import DatasetError, NotFoundError
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, BatchMetric, EpochMetric, RunRecord
from fakevoice.training_history import best_epoch
from fakevoice.trainspec import CallbackSpec, TrainSpec

logger = logging.getLogger(__name__)

ARTEFACT_NAMES: tuple[str, ...] = (
    "model.pkl",
    "history.csv",
    "loss_curve.png",
    "confusion.png",
    "confusion.json",
    "metrics.json",
    "roc.json",
    VALID_SCORES,
)
BUNDLE_FILES: tuple[str, ...] = (BUNDLE_WEIGHTS, BUNDLE_MANIFEST)
BATCH_COLUMNS = ("step", "epoch", "batch", "train_loss")
LR_FIND_ITERATIONS = 40  # enough for fastai's valley suggestion, seconds on a CPU with specnet
LR_FIND_MAX_BATCH = 16
MAX_JSON_BYTES = 8 * 1024 * 1024  # the run's own JSON files are small; refuse anything odd
MAX_BATCH_POINTS = 1500
TRAIN_SERIES = "train (per batch)"
VALID_SERIES = "valid (per epoch)"


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of true (rows) x predicted (columns) classes on the validation split."""

    class_names: list[str]
    counts: list[list[int]]


@dataclass(frozen=True)
class RocCurve:
    """Bona fide vs spoof ROC with ``P(bonafide)`` as the score (bona fide is the positive class).

    Attributes:
        fpr: False-positive rates (spoof accepted as bona fide), ``(n,)``, 0-1.
        tpr: True-positive rates (bona fide accepted), ``(n,)``, 0-1.
        auc: Area under the curve, or None.
        eer: Equal error rate (fraction), or None.
        eer_point: ``(fpr, tpr)`` where both error rates equal the EER: ``(eer, 1 - eer)``.
    """

    fpr: list[float]
    tpr: list[float]
    auc: float | None
    eer: float | None
    eer_point: tuple[float, float] | None


@dataclass(frozen=True)
class RunResults:
    """Everything a results view draws for one run.

    Attributes:
        run: The run record.
        history: One row per finished epoch; columns as ``history.csv`` (``epoch``, ``train_loss``,
            ``valid_loss``, ``accuracy``, ``macro_f1``, ``eer``, ``seconds``).
        batches: One row per training batch; columns ``step``, ``epoch``, ``batch``,
            ``train_loss``.
        metrics: Contents of ``metrics.json`` (empty until the run has written it).
        confusion: The validation confusion matrix, or None.
        roc: The validation ROC curve with its EER point, or None.
        files: Names of the downloadable artefacts present, in :data:`ARTEFACT_NAMES` order.
        has_bundle: Whether the safe bundle (safetensors + manifest) exists.
        model_id: The stored model this run produced, or None.
        model_epoch: The epoch (counted from 0, as in ``history``) whose weights the run's saved
            model holds (:func:`saved_epoch`), or None while it is active or has saved none.
        saved_best: Whether that epoch was kept for its lowest validation EER (save-best) rather
            than for being the last.
    """

    run: RunRecord
    history: pd.DataFrame
    batches: pd.DataFrame
    metrics: dict[str, Any]
    confusion: ConfusionMatrix | None
    roc: RocCurve | None
    files: tuple[str, ...]
    has_bundle: bool
    model_id: int | None
    model_epoch: int | None
    saved_best: bool


def history_frame(epochs: list[EpochMetric]) -> pd.DataFrame:
    """Epoch metrics as a table with the columns of ``history.csv`` (epochs counted from 0)."""
    return pd.DataFrame(
        [{name: getattr(e, name) for name in HISTORY_COLUMNS} for e in epochs],
        columns=list(HISTORY_COLUMNS),
    )


def batch_frame(batches: list[BatchMetric]) -> pd.DataFrame:
    """Batch metrics as a table with the columns ``step``, ``epoch``, ``batch``, ``train_loss``."""
    return pd.DataFrame(
        [{name: getattr(b, name) for name in BATCH_COLUMNS} for b in batches],
        columns=list(BATCH_COLUMNS),
    )


def loss_curve_points(
    batches: pd.DataFrame, history: pd.DataFrame, max_points: int = MAX_BATCH_POINTS
) -> pd.DataFrame:
    """Long table (``x`` in epochs, ``loss``, ``series``) of the train and validation losses.

    Batch ``b`` of epoch ``e`` sits at ``x = e + (b + 1) / batches_per_epoch``; the validation loss
    of epoch ``e`` at ``x = e + 1``, the epoch's end. More than ``max_points`` batches are
    averaged in that many bins, so a long run still draws quickly; NaN losses are left out.

    Args:
        batches: As :attr:`RunResults.batches`.
        history: As :attr:`RunResults.history`.
    """
    parts = []
    if not batches.empty:
        per_epoch = int(batches["batch"].max()) + 1
        train = pd.DataFrame(
            {
                "x": batches["epoch"] + (batches["batch"] + 1) / per_epoch,
                "loss": batches["train_loss"].astype(float),
            }
        )
        if len(train) > max_points:
            bins = np.arange(len(train)) * max_points // len(train)
            train = train.groupby(bins).mean()
        parts.append(train.assign(series=TRAIN_SERIES))
    if not history.empty:
        valid = pd.DataFrame(
            {"x": history["epoch"] + 1.0, "loss": history["valid_loss"].astype(float)}
        )
        parts.append(valid.assign(series=VALID_SERIES))
    if not parts:
        return pd.DataFrame(columns=["x", "loss", "series"])
    frame = pd.concat(parts, ignore_index=True)
    return frame[np.isfinite(frame["loss"])]


def _run_dir(run: RunRecord) -> Path:
    from fakevoice.jobs.runner import run_dir_for

    return run_dir_for(run.id)


def _read_json(path: Path) -> Any:
    """A JSON file the run wrote, or None when it is missing, too large or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return None


def _confusion(folder: Path) -> ConfusionMatrix | None:
    data = _read_json(folder / "confusion.json")
    if not isinstance(data, dict):
        return None
    return report_confusion(
        {"class_names": data.get("class_names"), "confusion_matrix": data.get("counts")}
    )


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _roc(folder: Path, report: dict[str, Any]) -> RocCurve | None:
    return report_roc({"roc": _read_json(folder / "roc.json"), "eer": report.get("eer")})


def saved_epoch(run: RunRecord, epochs: list[EpochMetric]) -> tuple[int, bool] | None:
    """The epoch whose weights a finished run saved as its model, as training chose it: with
    save-best the epoch of the lowest validation EER (the last of equals), else (or when no epoch
    measured an EER) the last one.

    Returns:
        ``(epoch, by_lowest_eer)``, the epoch counted from 0; None for an active run or one
        without epochs.
    """
    if run.is_active or not epochs:
        return None
    callbacks = run.spec.get("callbacks")
    save_best = CallbackSpec.save_best  # the default of a recipe that does not say
    if isinstance(callbacks, dict) and isinstance(callbacks.get("save_best"), bool):
        save_best = callbacks["save_best"]
    best = best_epoch([e.eer for e in epochs]) if save_best else None
    if best is None:
        return epochs[-1].epoch, False
    return epochs[best].epoch, True


def run_metrics(run: RunRecord) -> dict[str, Any]:
    """A run's ``metrics.json`` (empty until it has written one); the caller has read the run."""
    report = _read_json(_run_dir(run) / "metrics.json")
    return report if isinstance(report, dict) else {}


def run_valid_scores(run: RunRecord) -> pd.DataFrame | None:
    """A run's ``valid_scores.csv`` (its final model's P(human) of every validation item), or
    None when it has none or it cannot be read; the caller has read the run."""
    path = _run_dir(run) / VALID_SCORES
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"item": str, "class": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        logger.warning("cannot read %s: %s", path, error)
        return None
    if not {"item", "class", "p_human"} <= set(frame.columns):
        return None
    return frame


def report_confusion(report: dict[str, Any]) -> ConfusionMatrix | None:
    """The confusion matrix of a classification report (an evaluation's), or None."""
    names, counts = report.get("class_names"), report.get("confusion_matrix")
    if not isinstance(names, list) or not isinstance(counts, list):
        return None
    return ConfusionMatrix([str(n) for n in names], [[int(v) for v in row] for row in counts])


def report_roc(report: dict[str, Any]) -> RocCurve | None:
    """The ROC of a classification report (an evaluation's), or None when it has none."""
    roc = report.get("roc")
    if not isinstance(roc, dict) or not roc.get("fpr") or not roc.get("tpr"):
        return None
    eer = _finite(report.get("eer"))
    return RocCurve(
        fpr=[float(v) for v in roc["fpr"]],
        tpr=[float(v) for v in roc["tpr"]],
        auc=_finite(roc.get("auc")),
        eer=eer,
        eer_point=(eer, 1.0 - eer) if eer is not None else None,
    )


def run_results(actor: Actor, run_id: int) -> RunResults:
    """The run with its metrics and the artefacts it has written so far.

    Works for a run in any status: a queued run has empty tables, a running one has the epochs and
    batches so far, a finished (or stopped) one has its files too.

    Raises:
        NotFoundError: The actor may not see this run (or it does not exist).
    """
    with store.session_scope(readonly=True) as session:
        run = store.get_run(session, actor, run_id)
        epochs = store.list_epoch_metrics(session, actor, run_id)
        batches = store.list_batch_metrics(session, actor, run_id)
        models = store.list_models(session, actor, run_id=run_id)
    folder = _run_dir(run)
    report = run_metrics(run)
    has_bundle = all((folder / name).is_file() for name in BUNDLE_FILES)
    saved = saved_epoch(run, epochs) if has_bundle else None
    return RunResults(
        run=run,
        history=history_frame(epochs),
        batches=batch_frame(batches),
        metrics=report,
        confusion=_confusion(folder),
        roc=_roc(folder, report),
        files=tuple(name for name in ARTEFACT_NAMES if (folder / name).is_file()),
        has_bundle=has_bundle,
        model_id=models[0].id if models else None,
        model_epoch=saved[0] if saved else None,
        saved_best=saved[1] if saved else False,
    )


def artefact_bytes(actor: Actor, run_id: int, file_name: str) -> bytes:
    """The contents of one of the run's artefacts.

    Args:
        file_name: One of :data:`ARTEFACT_NAMES`; any other string is refused.

    Raises:
        NotFoundError: The actor may not see the run, the name is not a run artefact, or the run
            has not written that file (yet).
    """
    with store.session_scope(readonly=True) as session:
        run = store.get_run(session, actor, run_id)
    if file_name not in ARTEFACT_NAMES:
        raise NotFoundError(
            f"A run has no file called {file_name!r}; the files are {', '.join(ARTEFACT_NAMES)}."
        )
    path = _run_dir(run) / file_name
    try:
        return path.read_bytes()
    except OSError:
        raise NotFoundError(
            f"Run {run.name!r} has no {file_name} (yet): it is written when training ends."
        ) from None


def bundle_zip(actor: Actor, run_id: int) -> bytes:
    """The run's safe model bundle (``model.safetensors`` + ``manifest.json``) as zip bytes:
    once the run stored its model, the model's bundle with its signed validation figures
    (:func:`~fakevoice.services.model_files.model_bundle`).

    Raises:
        NotFoundError: The actor may not see the run, or it has saved no model (yet).
        ModelFileError: The stored model's files changed on disk since it was stored.
    """
    from fakevoice.services.model_files import model_bundle

    with store.session_scope(readonly=True) as session:
        run = store.get_run(session, actor, run_id)
        folder = _run_dir(run)
        # The run's owner owns its models, and the actor may see the run: its owner or an admin.
        stored = store.models_in_folder(session, run_id, str(folder))
    if stored:
        return model_bundle(actor, stored[0]).data
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in BUNDLE_FILES:
                archive.write(folder / name, arcname=name)
    except OSError:
        raise NotFoundError(
            f"Run {run.name!r} has no saved model (yet): it is written when training ends."
        ) from None
    return buffer.getvalue()


def suggest_learning_rate(actor: Actor, spec: TrainSpec) -> float:
    """fastai's learning-rate finder (valley suggestion) on a small share of the spec's selection.

    Runs in the calling process, on its ``FAKEVOICE_VERDICT_DEVICE`` (not the run's device: the
    worker that trains the run may have a GPU this process lacks), on at most
    :data:`LR_FIND_ITERATIONS` batches of at most :data:`LR_FIND_MAX_BATCH` training items, so it
    takes seconds on a CPU for the compact CNN; the large CNNs take longer there. The result lies
    between 1e-5 and 1e-1.

    Args:
        actor: Who asks (the same checks as submitting a run apply to the spec).
        spec: The run as it would be submitted.

    Raises:
        NotFoundError / InvalidSpecError / DatasetError: The spec cannot run on this server, or
            the finder stopped too early to suggest anything.
    """
    import torch

    from fakevoice.models.registry import pick_device
    from fakevoice.services.runs import check_spec
    from fakevoice.training import build_learner, seed_everything
    from fakevoice.training import suggest_learning_rate as lr_find
    from fakevoice.training_data import class_weights, make_dataloaders, prepare_data

    check_spec(replace(spec, epochs=1), actor=actor)  # the epoch limit is the submit's business
    batch_size = min(spec.batch_size, LR_FIND_MAX_BATCH)
    small = replace(spec, batch_size=batch_size, pretrained=False, learning_rate=None)
    data = prepare_data(small, get_settings().dataset_dir)
    limit = LR_FIND_ITERATIONS * batch_size
    if len(data.train) > limit:
        keep = data.train.sample(n=limit, random_state=spec.seed).index
        data.train = data.train.loc[keep].reset_index(drop=True)
        data.train_labels = [data.train_labels[i] for i in keep]
    if len(data.train) < 2:
        raise DatasetError("The selection has too few training items to try learning rates.")
    # On this process's own device, as its verdicts are: the run's device (and the operator's
    # FAKEVOICE_DEVICE) is where the worker trains, which an app server without a GPU is not.
    device = pick_device(server=get_settings().verdict_device, setting="FAKEVOICE_VERDICT_DEVICE")
    # Seeded like the run (the same spec gives the same suggestion), without moving the caller's
    # own torch generator or its cuDNN settings (this process goes on scoring clips).
    cudnn = torch.backends.cudnn
    flags = (cudnn.deterministic, cudnn.benchmark)
    with torch.random.fork_rng(devices=[]):
        seed_everything(spec.seed)
        dls = make_dataloaders(data, small, device)
        n_classes = len(data.class_names)
        weights = class_weights(data.train_labels, n_classes) if spec.class_weighting else None
        learn, _ = build_learner(small, dls, n_classes, weights)
        with tempfile.TemporaryDirectory(prefix="fakevoice-lr-") as folder:
            learn.path = Path(folder)  # lr_find saves and restores the weights here
            learn.model_dir = "."
            suggestion = lr_find(learn, num_it=LR_FIND_ITERATIONS)
    cudnn.deterministic, cudnn.benchmark = flags
    if device.type == "cuda":  # the app lives on: give its GPU memory back now (fastai's cycles)
        del learn, dls
        gc.collect()
        torch.cuda.empty_cache()
    logger.info(
        "lr_find for user %d on %s/%s: %.2e", actor.user_id, spec.dataset, spec.arch, suggestion
    )
    return suggestion
