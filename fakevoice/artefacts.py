"""The files a finished run leaves on disk, and the safe model bundle.

A run folder holds: ``model.pkl`` (fastai export, for fastai users), the safe bundle
(``model.safetensors`` + ``manifest.json``, what the server loads), ``history.csv``,
``confusion.json`` / ``confusion.png``, ``roc.json``, ``metrics.json``, ``loss_curve.png`` and
``valid_scores.csv`` (the final model's P(human) of every validation item).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import platform
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from safetensors.torch import save_file

import fakevoice
from fakevoice import metrics
from fakevoice.datasets.fingerprints import TRAINING_AUDIO, training_fingerprints
from fakevoice.datasets.noise import noise_sort_key
from fakevoice.errors import FakeVoiceError, InvalidSpecError
from fakevoice.metrics.calibration import fit_calibration
from fakevoice.metrics.familiarity import captured_features, fit_familiarity
from fakevoice.models.registry import arch_config
from fakevoice.store.records import EpochMetric

if TYPE_CHECKING:
    from fastai.learner import Learner

    from fakevoice.training_data import PreparedData
    from fakevoice.training_history import EpochRecord
    from fakevoice.trainspec import TrainSpec

logger = logging.getLogger(__name__)

BUNDLE_WEIGHTS = "model.safetensors"
BUNDLE_MANIFEST = "manifest.json"
MANIFEST_FORMAT = "fakevoice-model/1"
HISTORY_COLUMNS = ("epoch", "train_loss", "valid_loss", "accuracy", "macro_f1", "eer", "seconds")
VALID_SCORES = "valid_scores.csv"
VALID_SCORE_COLUMNS = ("item", "utterance", "speaker", "class", "noise", "p_human")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def model_manifest(
    spec: TrainSpec,
    class_names: list[str],
    feature_spec: dict[str, Any],
    arch_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON that lets any face of the workbench rebuild and feed the model without pickle.

    ``arch_config`` holds what, beyond the arch name, rebuilds the network (e.g. SpecNet's input
    pooling); it is left out when the architecture has none.
    """
    import fastai

    config = {"arch_config": arch_config} if arch_config is not None else {}
    return {
        "format": MANIFEST_FORMAT,
        "arch": spec.arch,
        **config,
        "task": spec.task,
        "class_names": class_names,
        "input_kind": spec.input_kind,
        "feature_spec": feature_spec if spec.input_kind == "image" else None,
        "normalize": "imagenet" if spec.input_kind == "image" else None,
        "sample_rate": 16000,
        "clip_samples": spec.clip_samples,
        "train_spec": spec.to_dict(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            "fakevoice": fakevoice.__version__,
            "torch": torch.__version__,
            "fastai": fastai.__version__,
            "python": platform.python_version(),
        },
    }


def save_bundle(model: torch.nn.Module, manifest: dict[str, Any], folder: Path) -> None:
    """Write ``model.safetensors`` (weights and buffers) and ``manifest.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = folder / (BUNDLE_WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": MANIFEST_FORMAT})
    tmp.replace(folder / BUNDLE_WEIGHTS)
    _atomic_write_text(folder / BUNDLE_MANIFEST, json.dumps(manifest, indent=2))


def write_history_csv(history: list[EpochRecord], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(HISTORY_COLUMNS))
        writer.writeheader()
        for record in history:
            writer.writerow(record.to_dict())
    tmp.replace(path)


def read_history_csv(path: Path) -> list[EpochMetric]:
    """The epochs of a ``history.csv`` as :func:`write_history_csv` wrote it, in its row order.

    Raises:
        InvalidSpecError: the file cannot be read, lacks one of :data:`HISTORY_COLUMNS`, holds a
            value that is not a number, an epoch that is not a whole number from 0, or an epoch
            twice.
    """
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidSpecError(f"{path.name} cannot be read: {exc}") from None
    missing = [name for name in HISTORY_COLUMNS if name not in columns]
    if missing:
        raise InvalidSpecError(f"{path.name} lacks the column(s) {', '.join(missing)}")
    epochs = [_history_row(row, f"{path.name} line {line}") for line, row in enumerate(rows, 2)]
    numbers = [e.epoch for e in epochs]
    if len(set(numbers)) < len(numbers):
        raise InvalidSpecError(f"{path.name} gives an epoch twice")
    return epochs


def _history_row(row: dict[str | Any, str | Any], where: str) -> EpochMetric:
    """One row of a ``history.csv`` (``where``: its file and line, for the error's words)."""
    values: dict[str, float] = {}
    for name in HISTORY_COLUMNS:
        text = row.get(name) or ""  # a short line leaves its last cells None
        try:
            values[name] = float(text)
        except (TypeError, ValueError):
            raise InvalidSpecError(f"{where}: {name} is not a number ({text!r})") from None
    epoch = values.pop("epoch")
    if not epoch.is_integer() or epoch < 0:
        raise InvalidSpecError(f"{where}: epoch must be a whole number from 0; got {epoch:g}")
    return EpochMetric(epoch=int(epoch), **values)


def plot_confusion(cm: np.ndarray, class_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(3.5, 0.7 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    peak = cm.max() if cm.size else 0
    for (i, j), value in np.ndenumerate(cm):
        colour = "white" if peak and value > peak / 2 else "black"
        ax.text(j, i, str(int(value)), ha="center", va="center", color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_loss_curve(history: list[EpochRecord], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch + 1 for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [r.train_loss for r in history], marker="o", label="train loss")
    ax.plot(epochs, [r.valid_loss for r in history], marker="o", label="valid loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def generator_eers(bonafide_scores: np.ndarray, classes: list[str]) -> dict[str, float]:
    """EER of the bona fide items against each generator's, by ``classes`` (the items' classes).

    Shows which attack a detector misses, also for a binary model; a generator without items, or
    a split without bona fide items, gets none.
    """
    labels = np.asarray(classes)
    human = labels == "bonafide"
    if not human.any():
        return {}
    return {
        name: float(metrics.compute_eer(bonafide_scores[human], bonafide_scores[labels == name])[0])
        for name in sorted(set(classes) - {"bonafide"})
    }


def eer_item_counts(classes: list[str], noises: list[str]) -> dict[str, dict[str, list[int]]]:
    """The items behind :func:`generator_eers` and :func:`noise_eers`: ``[human, machine]`` per
    generator and per noise level (every level, also one left out for lack of a class), so a
    view can say what each EER rests on."""
    labels, levels = np.asarray(classes), np.asarray(noises)
    human = labels == "bonafide"
    n_human = int(human.sum())
    return {
        "generator": {
            name: [n_human, int((labels == name).sum())]
            for name in sorted(set(classes) - {"bonafide"})
        },
        "noise": {
            level: [int((human & (levels == level)).sum()), int((~human & (levels == level)).sum())]
            for level in sorted(set(noises), key=noise_sort_key)
        },
    }


def left_out_of(eers: dict[str, Any], counts: object) -> dict[str, str]:
    """The keys of :func:`eer_item_counts` (noise levels, generators) that have items but no EER,
    each with the class it lacks: ``"human"`` or ``"machine"``."""
    if not isinstance(counts, dict):
        return {}
    return {
        key: "human" if n[0] == 0 else "machine"
        for key, n in counts.items()
        if key not in eers and isinstance(n, list) and len(n) == 2
    }


def noise_eers(
    bonafide_scores: np.ndarray, classes: list[str], noises: list[str]
) -> dict[str, float]:
    """EER at each noise level: the bona fide items of that level against its machine-made ones.

    How fast a detector degrades with noise (the demo set renders every clip at 5 SNRs). Keys are
    noise names, clean first then by falling SNR; a level without both kinds gets none.
    """
    labels, levels = np.asarray(classes), np.asarray(noises)
    human = labels == "bonafide"
    report = {}
    for level in sorted(set(noises), key=noise_sort_key):
        here = levels == level
        bonafide, spoof = bonafide_scores[here & human], bonafide_scores[here & ~human]
        if bonafide.size and spoof.size:
            report[level] = float(metrics.compute_eer(bonafide, spoof)[0])
    return report


def write_run_artefacts(
    learn: Learner,
    spec: TrainSpec,
    data: PreparedData,
    history: list[EpochRecord],
    run_dir: Path,
    learning_rate: float | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Evaluate the final model on the validation split and write every artefact of the run.

    ``learning_rate`` is the peak the run's schedule used (the finder's answer when the spec left
    it to the finder); the report keeps it as ``learning_rate``.

    Returns:
        The metrics report (as in ``metrics.json``) and ``{file name: sha256}`` of the artefacts.
    """
    with full_precision(learn), captured_features(learn.model) as features:
        probs_t, targets_t = learn.get_preds(dl=learn.dls.valid)
    probs = probs_t.double().numpy()
    targets = targets_t.numpy().astype(np.int64)
    # The probabilities are calibrated on this split, and the model keeps the calibration: the
    # report describes the model as the detector will run it.
    groups = data.valid["utterance"].astype(str).to_numpy() if "utterance" in data.valid else None
    calibration = fit_calibration(probs, targets, groups)
    raw = probs
    if calibration is not None:
        probs = np.exp(calibration.apply(np.log(np.clip(probs, 1e-300, None))))
    speakers = data.valid["speaker"].astype(str).to_numpy() if "speaker" in data.valid else None
    report = metrics.classification_report(
        targets, probs, data.class_names, bonafide_index=0, groups=groups, speakers=speakers
    )
    report["calibration"] = calibration.to_dict() if calibration is not None else None
    # The same items before the calibration, as the epochs' figures (history.csv) were measured:
    # the calibration moves accuracy (its threshold), and with more than two classes the EER
    # too, and it was fitted on these very items (so the calibrated figures flatter a little).
    before = metrics.classification_report(targets, raw, data.class_names, bonafide_index=0)
    report["before_calibration"] = {k: before.get(k) for k in ("eer", "accuracy", "macro_f1")}
    # How far the model's features usually lie from its classes, for the verdict's caution on a
    # clip unlike its validation audio (fakevoice.metrics.familiarity).
    familiarity = None
    if features and sum(len(f) for f in features) == len(targets):
        try:
            seen = (
                _detector_features(learn.model, spec, data)
                if spec.input_kind == "image"
                else torch.cat(features).numpy()
            )
            familiarity = fit_familiarity(seen, targets, groups, seed=spec.seed)
        except (ValueError, np.linalg.LinAlgError, FakeVoiceError) as error:
            logger.warning("no familiarity reference for %s: %s", run_dir.name, error)  # an extra
    report["familiarity_items"] = familiarity.items if familiarity is not None else None
    report["train_items"] = len(data.train)
    report["valid_items"] = len(data.valid)
    valid_classes = data.valid["class"].astype(str).tolist()
    report["generator_eer"] = generator_eers(probs[:, 0], valid_classes)
    valid_noises = data.valid["noise"].astype(str).tolist()
    report["noise_eer"] = noise_eers(probs[:, 0], valid_classes, valid_noises)
    report["eer_items"] = eer_item_counts(valid_classes, valid_noises)
    report["learning_rate"] = learning_rate

    learn.export(run_dir / "model.pkl")
    manifest = model_manifest(spec, data.class_names, data.feature_spec, arch_config(learn.model))
    if calibration is not None:
        manifest["calibration"] = calibration.to_dict()
    if familiarity is not None:
        manifest["familiarity"] = familiarity.to_dict()
    heard = training_fingerprints(data.dataset_dir, data.train)
    if heard is not None:  # a test on another dataset finds the same audio by them
        manifest[TRAINING_AUDIO] = heard
    save_bundle(learn.model, manifest, run_dir)
    write_history_csv(history, run_dir / "history.csv")
    cm = np.asarray(report["confusion_matrix"], dtype=np.int64)
    _atomic_write_text(
        run_dir / "confusion.json",
        json.dumps({"class_names": data.class_names, "counts": cm.tolist()}, indent=2),
    )
    plot_confusion(cm, data.class_names, run_dir / "confusion.png")
    _atomic_write_text(run_dir / "roc.json", json.dumps(report.get("roc", {})))
    _atomic_write_text(run_dir / "metrics.json", json.dumps(report, indent=2, default=float))
    plot_loss_curve(history, run_dir / "loss_curve.png")
    write_valid_scores(data.valid, probs[:, 0], run_dir / VALID_SCORES)

    names = (
        "model.pkl",
        BUNDLE_WEIGHTS,
        BUNDLE_MANIFEST,
        "history.csv",
        "confusion.json",
        "confusion.png",
        "roc.json",
        "metrics.json",
        "loss_curve.png",
        VALID_SCORES,
    )
    return report, {name: sha256_file(run_dir / name) for name in names}


def full_precision(learn: Learner) -> AbstractContextManager[Learner]:
    """Within, ``learn`` runs without its mixed-precision callback (a run with ``mixed_precision``
    on CUDA): the final figures, the calibration and the familiarity reference measure the model
    as the detector runs it, in float32, not the float16 of its training batches."""
    from fastai.callback.fp16 import MixedPrecision

    return learn.removed_cbs([cb for cb in learn.cbs if isinstance(cb, MixedPrecision)])


def _detector_features(model: torch.nn.Module, spec: TrainSpec, data: PreparedData) -> np.ndarray:
    """The features the model's last layer reads for each validation item (its first window)
    as the detector will make them: from the item's waveform, through the detector's own
    preprocessing. The training batches' images come from the dataset's PNGs, rendered before
    the clip was stored at 16 bits: close, but the reference is sensitive to small, steady
    shifts in directions the features hardly vary in, and must see what verdicts will see."""
    from fakevoice.datasets.manifest import load_item_waveform
    from fakevoice.features import FeatureSpec
    from fakevoice.preprocess import window_batch

    feature_spec = FeatureSpec.from_dict(data.feature_spec)
    device = next(model.parameters()).device
    model.eval()
    images: list[torch.Tensor] = []
    with torch.inference_mode(), captured_features(model) as captured:
        for row in cast(list[dict[str, Any]], data.valid.to_dict("records")):
            batch, _ = window_batch(
                load_item_waveform(data.dataset_dir, row), spec.clip_samples, feature_spec
            )
            images.append(batch[0])
            if len(images) == 32:
                model(torch.stack(images).to(device))
                images = []
        if images:
            model(torch.stack(images).to(device))
    return torch.cat(captured).numpy()


def write_valid_scores(valid: Any, p_human: np.ndarray, path: Path) -> None:
    """The final model's P(human) of every validation item (after calibration), with the item's
    utterance, speaker, class and noise: what a paired comparison of two runs on the same
    validation items draws from (:mod:`fakevoice.services.paired_tests`)."""
    columns = [c for c in VALID_SCORE_COLUMNS if c != "p_human"]
    frame = valid[columns].astype(str).reset_index(drop=True)
    frame["p_human"] = np.asarray(p_human, dtype=np.float64)
    _atomic_write_text(path, frame.to_csv(index=False))
