"""Training engine: item selection, one real fit per architecture family, artefacts, stop, resume.

Everything runs the real code on a tiny dataset made once per session (64 x 64 spectrograms).
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import pickle
import pickletools
import shutil
import signal
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import speechlike
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision

from fakevoice.artefacts import HISTORY_COLUMNS, generator_eers, noise_eers
from fakevoice.datasets import loaders
from fakevoice.datasets.item_cache import SharedItemCache
from fakevoice.datasets.loaders import ImageItems, WaveformItems
from fakevoice.datasets.manifest import (
    DATASET_INFO_NAME,
    clip_path,
    image_path,
    item_id,
    manifest_frame,
    read_manifest,
    write_manifest,
)
from fakevoice.errors import DatasetError, InvalidSpecError
from fakevoice.features import RENDER_VERSION, FeatureSpec, render_image
from fakevoice.metrics import compute_eer
from fakevoice.metrics.calibration import MIN_ITEMS
from fakevoice.models.registry import pick_device
from fakevoice.png import save_png
from fakevoice.training import seed_everything, train
from fakevoice.training_callbacks import MemorySink
from fakevoice.training_checkpoints import load_checkpoint_state
from fakevoice.training_data import (
    MAX_AUTO_LOADER_WORKERS,
    PreparedData,
    class_names_for,
    class_weights,
    dataset_path,
    loader_workers,
    make_dataloaders,
    prepare_data,
    select_items,
    start_loader_worker,
)
from fakevoice.trainspec import AugmentSpec, CallbackSpec, TrainSpec

if TYPE_CHECKING:
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

DATASET = "tiny"
FEATURES = FeatureSpec(image_height=64, image_width=64)
SPEAKERS = ("spk_a", "spk_b")
UTTERANCES_PER_SPEAKER = 5
GENERATORS = ("griffinlim", "world")
RUN_FILES = (
    "model.pkl",
    "model.safetensors",
    "manifest.json",
    "history.csv",
    "confusion.json",
    "confusion.png",
    "roc.json",
    "metrics.json",
    "loss_curve.png",
    "valid_scores.csv",
)


# --- the tiny dataset ----------------------------------------------------------------------------


def _spoof(samples: np.ndarray, generator: str) -> np.ndarray:
    """Copy-synthesis of a clip, as the builder's vocoders do (Griffin-Lim phase, WORLD)."""
    import librosa

    if generator == "griffinlim":
        magnitude = np.abs(librosa.stft(samples, n_fft=512, hop_length=128))
        out = librosa.griffinlim(magnitude, n_iter=8, hop_length=128, random_state=0)
    else:
        import pyworld

        x = samples.astype(np.float64)
        f0, t = pyworld.harvest(x, 16000)
        sp = pyworld.cheaptrick(x, f0, t, 16000)
        ap = pyworld.d4c(x, f0, t, 16000)
        out = pyworld.synthesize(f0, sp, ap, 16000)
    out = np.asarray(out[: samples.size], dtype=np.float32)
    return (0.3 * out / max(1e-6, float(np.max(np.abs(out))))).astype(np.float32)


def make_tiny_dataset(
    folder: Path,
    features: FeatureSpec = FEATURES,
    speakers: tuple[str, ...] = SPEAKERS,
    utterances_per_speaker: int = UTTERANCES_PER_SPEAKER,
    first_seed: int = 0,
) -> Path:
    """A manifest-conformant dataset (docs/CONTRACTS.md): 10 utterances x 3 classes, clean only
    (by default; more with more ``speakers`` or ``utterances_per_speaker``)."""
    rows = []
    noise = "snr_inf"
    for s, speaker in enumerate(speakers):
        for u in range(utterances_per_speaker):
            utterance = f"{speaker}_u{u}"
            clean = speechlike(1.5, seed=first_seed + 100 * s + u)
            for label in ("bonafide", *GENERATORS):
                samples = clean if label == "bonafide" else _spoof(clean, label)
                item = item_id(utterance, label, noise)
                clip, image = (
                    clip_path(speaker, label, utterance),
                    image_path(noise, speaker, label, item),
                )
                (folder / clip).parent.mkdir(parents=True, exist_ok=True)
                sf.write(folder / clip, samples, 16000, subtype="PCM_16")
                save_png(render_image(samples, features), folder / image)
                rows.append(
                    {
                        "item": item,
                        "utterance": utterance,
                        "speaker": speaker,
                        "class": label,
                        "generator": "" if label == "bonafide" else label,
                        "noise": noise,
                        "clip_path": clip,
                        "image_path": image,
                        "duration": samples.size / 16000,
                        "language": "en",
                        "source": "synthetic",
                    }
                )
    write_manifest(folder, manifest_frame(rows))
    info = {
        "name": folder.name,
        "created": "2024-01-01T00:00:00+00:00",
        "seed": 0,
        "size": "tiny",
        "feature_spec": features.to_dict(),
        "generators": list(GENERATORS),
        "noise_levels": [noise],
        "sources": ["synthetic"],
        "counts": {"items": len(rows)},
        "version": 1,
        "render_version": RENDER_VERSION,
    }
    (folder / DATASET_INFO_NAME).write_text(json.dumps(info))
    return folder


def tiny_dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's dataset root holding ``tiny`` (made on first use, then shared)."""
    root = tmp_path_factory.getbasetemp() / "fixture-datasets"
    if not (root / DATASET / "manifest.csv").is_file():
        shutil.rmtree(root / DATASET, ignore_errors=True)
        make_tiny_dataset(root / DATASET)
    return root


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset_root(tmp_path_factory)


def quick_spec(**changes: object) -> TrainSpec:
    """A specnet spec that trains in about a second on the tiny dataset."""
    base = TrainSpec(dataset=DATASET, arch="specnet", epochs=1, batch_size=4, device="cpu")
    return replace(base, **changes)  # type: ignore[arg-type]


def read_history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "history.csv").open() as handle:
        return list(csv.DictReader(handle))


def pickled_modules(export: Path) -> set[str]:
    """The modules whose classes and functions a fastai export's pickle names (read, never
    loaded: ``load_learner`` imports each of them)."""
    with zipfile.ZipFile(export) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    # fastai exports with pickle protocol 2, where every reference is a GLOBAL "module name".
    return {
        str(arg).split(" ")[0] for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"
    }


# --- selection -----------------------------------------------------------------------------------


def test_dataset_path_refuses_paths_and_missing(dataset_root: Path) -> None:
    assert dataset_path(dataset_root, DATASET) == dataset_root / DATASET
    with pytest.raises(InvalidSpecError, match="name of a built dataset"):
        dataset_path(dataset_root, "../tiny")
    with pytest.raises(DatasetError, match="no built dataset named 'absent'"):
        dataset_path(dataset_root, "absent")


def test_select_items_filters_and_names_unknown_values(dataset_root: Path) -> None:
    manifest = read_manifest(dataset_root / DATASET)
    picked = select_items(manifest, quick_spec(speakers=("spk_a",), classes=("bonafide", "world")))
    assert set(picked["speaker"]) == {"spk_a"}
    assert set(picked["class"]) == {"bonafide", "world"}
    assert len(picked) == UTTERANCES_PER_SPEAKER * 2
    with pytest.raises(InvalidSpecError, match="unknown speaker value.*spk_z; it has spk_a, "):
        select_items(manifest, quick_spec(speakers=("spk_z",)))
    many = manifest.assign(speaker=[f"spk_{i:03d}" for i in range(len(manifest))])
    with pytest.raises(InvalidSpecError, match=f"spk_011 and {len(manifest) - 12} more$"):
        select_items(many, quick_spec(speakers=("spk_z",)))  # an imported set's hundreds: cut


def test_select_items_does_not_call_a_class_of_other_speakers_unknown(dataset_root: Path) -> None:
    """A dataset's class that the chosen speakers lack (the demo's piper, copied for one
    speaker only) was refused as "unknown class value(s) in this dataset"."""
    manifest = read_manifest(dataset_root / DATASET)
    without = manifest[~((manifest["speaker"] == "spk_a") & (manifest["class"] == "world"))]
    picked = select_items(without, quick_spec(speakers=("spk_a",), classes=("bonafide", "world")))
    assert set(picked["class"]) == {"bonafide"} and set(picked["speaker"]) == {"spk_a"}


def test_class_names_and_labels(dataset_root: Path) -> None:
    manifest = read_manifest(dataset_root / DATASET)
    assert class_names_for(manifest, "binary") == ["bonafide", "spoof"]
    assert class_names_for(manifest, "multiclass") == ["bonafide", "griffinlim", "world"]
    data = prepare_data(quick_spec(task="multiclass"), dataset_root)
    for frame, labels in ((data.train, data.train_labels), (data.valid, data.valid_labels)):
        assert [data.class_names[i] for i in labels] == list(frame["class"])
    binary = prepare_data(quick_spec(), dataset_root)
    assert binary.train_labels == [int(c != "bonafide") for c in binary.train["class"]]
    # Grouped split: no utterance on both sides.
    assert not set(binary.train["utterance"]) & set(binary.valid["utterance"])
    assert binary.feature_spec["image_height"] == FEATURES.image_height


def test_generator_split_validates_on_unseen_attacks_only(dataset_root: Path) -> None:
    data = prepare_data(quick_spec(split_by="generator", holdout=("world",)), dataset_root)
    assert "world" not in set(data.train["class"])  # the unseen attack never reaches training
    assert set(data.valid["class"]) == {"bonafide", "world"}  # no seen-generator spoofs
    assert not set(data.train["utterance"]) & set(data.valid["utterance"])
    # Held-out spoofs of training utterances belong to neither side: they are left out.
    total = UTTERANCES_PER_SPEAKER * len(SPEAKERS) * (1 + len(GENERATORS))
    assert len(data.train) + len(data.valid) < total


def test_prepare_data_needs_both_kinds(dataset_root: Path) -> None:
    with pytest.raises(DatasetError, match="bona fide items and at least one generator"):
        prepare_data(quick_spec(classes=("world", "griffinlim")), dataset_root)


def test_class_weights_balance_the_classes() -> None:
    weights = class_weights([0, 1, 1, 1], 3).numpy()
    assert weights[0] == pytest.approx(3 * weights[1])
    assert weights.mean() == pytest.approx(1.0)
    assert np.isfinite(weights).all()  # the absent class gets a finite weight too


# --- fits ----------------------------------------------------------------------------------------


# fastai warns when a callback's class name makes it shadow one of the learner's attributes.
@pytest.mark.filterwarnings("error:You are shadowing an attribute")
def test_train_writes_every_artefact(dataset_root: Path, tmp_path: Path) -> None:
    sink = MemorySink()
    result = train(quick_spec(task="multiclass"), tmp_path / "run", sink, dataset_root)
    run_dir = tmp_path / "run"
    assert result.status == "succeeded"
    assert result.class_names == ["bonafide", "griffinlim", "world"]
    assert set(result.files) == set(RUN_FILES)
    for name in RUN_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    history = read_history(run_dir)
    assert tuple(history[0]) == HISTORY_COLUMNS
    assert [int(r["epoch"]) for r in history] == [0]
    row = history[0]
    for column in ("train_loss", "valid_loss", "seconds"):
        assert math.isfinite(float(row[column])) and float(row[column]) > 0
    assert 0.0 <= float(row["accuracy"]) <= 1.0 and 0.0 <= float(row["eer"]) <= 1.0
    # The sink saw every training batch, with a step axis, and a final progress of 1.
    assert len(sink.batches) >= 2 and [b[2] for b in sink.batches] == list(range(len(sink.batches)))
    assert sink.progress[-1] == 1.0 and len(sink.epochs) == 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["arch"] == "specnet" and manifest["input_kind"] == "image"
    assert manifest["class_names"] == result.class_names
    assert manifest["feature_spec"]["image_width"] == FEATURES.image_width
    confusion = json.loads((run_dir / "confusion.json").read_text())
    data = prepare_data(quick_spec(task="multiclass"), dataset_root)
    assert np.asarray(confusion["counts"]).sum() == len(data.valid)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["valid_items"] == len(data.valid)
    # Every validation item's P(human), in the split's order, for paired comparisons of runs.
    scores = pd.read_csv(run_dir / "valid_scores.csv", keep_default_na=False)
    assert list(scores.columns) == ["item", "utterance", "speaker", "class", "noise", "p_human"]
    assert list(scores["item"]) == list(data.valid["item"])
    assert scores["p_human"].between(0.0, 1.0).all()
    human = (scores["class"] == "bonafide").to_numpy()
    assert compute_eer(scores["p_human"][human], scores["p_human"][~human])[0] == pytest.approx(
        metrics["eer"]
    )
    # Calibrated on the validation split when it is big enough; the bundle keeps it.
    calibration = metrics["calibration"]
    assert (calibration is None) == (len(data.valid) < MIN_ITEMS)
    assert manifest.get("calibration") == calibration
    if calibration is not None:
        assert calibration["items"] == len(data.valid)
        assert calibration["nll_after"] <= calibration["nll_before"]
        assert len(calibration["bias"]) == len(result.class_names)
    assert 0.0 <= metrics["ece"] <= 1.0
    assert set(metrics["generator_eer"]) == set(GENERATORS)
    assert all(0.0 <= v <= 1.0 for v in metrics["generator_eer"].values())
    assert list(metrics["noise_eer"]) == ["snr_inf"]
    assert manifest["arch_config"] == {"input_pool": 2}  # rebuilds the trained network exactly
    assert json.loads((run_dir / "roc.json").read_text())
    assert (run_dir / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    # A user's load_learner imports what the export names: the run's own machinery (its
    # callback, history, checkpoints) stays out, so those modules may move without breaking it.
    named = pickled_modules(run_dir / "model.pkl")
    assert {"fastai.learner", "fakevoice.models.specnet"} <= named
    assert not named & {
        "fakevoice.training",
        "fakevoice.training_callbacks",
        "fakevoice.training_checkpoints",
        "fakevoice.training_history",
    }


def test_the_learning_rate_finder_of_a_run_is_no_part_of_its_history(
    dataset_root: Path, tmp_path: Path
) -> None:
    """A run without a learning rate finds one first; the finder's batches (about 100, over
    many short epochs) reached the sink as the run's own, and its progress as 100 %."""
    spec = quick_spec(learning_rate=None)
    sink = MemorySink()
    assert train(spec, tmp_path / "run", sink, dataset_root).status == "succeeded"
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    assert [b[2] for b in sink.batches] == list(range(n_batches))
    assert sink.progress == sorted(sink.progress) and sink.progress[-1] == 1.0


def test_generator_eers_tell_which_attack_is_missed() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.85, 0.75])  # probability of bona fide
    classes = ["bonafide"] * 3 + ["espeak"] * 2 + ["griffinlim"] * 2
    eers = generator_eers(scores, classes)
    assert eers["espeak"] == 0.0  # always below every human item
    assert 0.3 <= eers["griffinlim"] <= 0.7  # mixed in with the human items
    assert generator_eers(scores[3:], classes[3:]) == {}  # no bona fide items: nothing to say


def test_noise_eers_show_how_a_detector_degrades_with_noise() -> None:
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.4, 0.5, 0.55, 0.7])
    classes = ["bonafide", "bonafide", "world", "world"] * 2 + ["world"]
    noises = ["snr_inf"] * 4 + ["snr_-10db"] * 4 + ["snr_20db"]
    eers = noise_eers(scores, classes, noises)
    # Clean first, then by falling SNR; 20 dB has no human item, so no EER.
    assert list(eers) == ["snr_inf", "snr_-10db"]
    assert eers["snr_inf"] == 0.0 and eers["snr_-10db"] >= 0.25


def test_the_model_keeps_the_calibration_fitted_on_its_validation_split(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastai.learner import load_learner

    from fakevoice.inference import Detector
    from fakevoice.metrics import calibration

    # The tiny dataset's validation split is smaller than a real fit wants: allow it here.
    monkeypatch.setattr(calibration, "MIN_ITEMS", 4)
    run_dir = tmp_path / "run"
    spec = quick_spec(task="multiclass", epochs=2)
    assert train(spec, run_dir, MemorySink(), dataset_root).status == "succeeded"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fitted = metrics["calibration"]
    assert fitted is not None and fitted["items"] == len(prepare_data(spec, dataset_root).valid)
    assert fitted["nll_after"] <= fitted["nll_before"]
    assert json.loads((run_dir / "manifest.json").read_text())["calibration"] == fitted
    # The detector gives the network's outputs through that calibration.
    detector = Detector.from_bundle(run_dir)
    assert detector.calibration is not None
    assert detector.calibration.temperature == pytest.approx(fitted["temperature"])
    clip = speechlike(1.0, 16000, seed=4)
    batch, _ = detector.model_inputs(clip)
    with torch.no_grad():
        raw = torch.log_softmax(load_learner(run_dir / "model.pkl").model.eval()(batch), dim=1)
    scaled = raw.double().numpy() / fitted["temperature"] + np.asarray(fitted["bias"])
    expected = scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)
    np.testing.assert_allclose(detector.window_log_probs(clip)[0], expected, atol=1e-5)


def test_stop_keeps_the_last_good_epoch(dataset_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    spec = quick_spec(epochs=3, callbacks=CallbackSpec(save_best=False))
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    # Stop one batch into the second epoch: training ends exactly there.
    sink = MemorySink(stop_after_batches=n_batches + 1)
    result = train(spec, run_dir, sink, dataset_root)
    assert result.status == "cancelled"
    assert len(sink.batches) == n_batches + 1
    assert [r.epoch for r in result.history] == [0]
    assert [int(r["epoch"]) for r in read_history(run_dir)] == [0]
    assert (run_dir / "model.safetensors").is_file()
    state = load_checkpoint_state(run_dir)
    assert state is not None and state.epoch == 0


def test_stop_before_any_epoch_leaves_no_model(dataset_root: Path, tmp_path: Path) -> None:
    result = train(
        quick_spec(epochs=2), tmp_path / "run", MemorySink(stop_after_batches=1), dataset_root
    )
    assert result.status == "cancelled" and result.epochs_done == 0 and result.files == {}
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resume_continues_with_history_intact(dataset_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    spec = quick_spec(epochs=2)
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    first = train(spec, run_dir, MemorySink(stop_after_batches=n_batches + 1), dataset_root)
    assert first.status == "cancelled" and [r.epoch for r in first.history] == [0]
    sink = MemorySink()
    second = train(spec, run_dir, sink, dataset_root, resume=True)
    assert second.status == "succeeded"
    assert [r.epoch for r in second.history] == [0, 1]
    assert second.history[0] == first.history[0]
    assert [e.epoch for e in sink.epochs] == [1]  # only the new epoch was trained
    assert {b[0] for b in sink.batches} == {1}
    assert sink.batches[0][2] == n_batches  # the step axis continues
    assert [int(r["epoch"]) for r in read_history(run_dir)] == [0, 1]


def test_resume_keeps_the_learning_rate_the_finder_chose(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run asked the finder again, on its half-trained model: the rest of its one-cycle
    schedule peaked at another rate than the one it started with."""
    from fastai.callback.schedule import combined_cos
    from fastai.learner import Learner

    finder_calls = []
    real_finder = Learner.lr_find

    def counted(self: Learner, *args: object, **kwargs: object) -> object:
        finder_calls.append(1)
        return real_finder(self, *args, **kwargs)

    monkeypatch.setattr(Learner, "lr_find", counted)
    run_dir = tmp_path / "run"
    spec = quick_spec(epochs=2, learning_rate=None)
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    train(spec, run_dir, MemorySink(stop_after_batches=n_batches + 1), dataset_root)
    state = load_checkpoint_state(run_dir)
    assert state is not None and state.learning_rate is not None and len(finder_calls) == 1
    sink = MemorySink()
    resumed = train(spec, run_dir, sink, dataset_root, resume=True)
    assert resumed.status == "succeeded" and len(finder_calls) == 1
    # The second epoch follows the schedule of the rate the finder chose at the start.
    peak = state.learning_rate
    schedule = combined_cos(0.25, peak / 25.0, peak, peak / 1e5)
    total = spec.epochs * n_batches
    expected = [float(schedule(step / total)) for _, _, step, _, _ in sink.batches]
    assert [lr for *_, lr in sink.batches] == pytest.approx(expected, rel=1e-6)


def test_resume_on_a_plateau_schedule_goes_on_from_the_reduced_rate(
    dataset_root: Path, tmp_path: Path
) -> None:
    """A resumed run with a plateau schedule failed (fastai called ReduceLROnPlateau after the
    epochs it skipped, which measured nothing), and fastai's fit sets every group back to the
    rate it is given: it would have lost the reductions its plateaus had made."""
    run_dir = tmp_path / "run"
    spec = quick_spec(epochs=2, callbacks=CallbackSpec(reduce_lr_patience=3))
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    train(spec, run_dir, MemorySink(stop_after_batches=n_batches + 1), dataset_root)
    state = load_checkpoint_state(run_dir)
    assert state is not None and state.current_learning_rate == pytest.approx(1e-3)
    path = run_dir / "checkpoints" / "state.json"
    kept = json.loads(path.read_text())
    kept["current_learning_rate"] = 1e-4  # as a plateau in its first run would have left it
    path.write_text(json.dumps(kept))
    sink = MemorySink()
    resumed = train(spec, run_dir, sink, dataset_root, resume=True)
    assert resumed.status == "succeeded" and [r.epoch for r in resumed.history] == [0, 1]
    assert sink.batches and [lr for *_, lr in sink.batches] == pytest.approx(
        [1e-4] * len(sink.batches)
    )


def _set_eers(run_dir: Path, eers: list[float]) -> None:
    """Give the checkpointed epochs of ``run_dir`` these EERs (NaN: an epoch that measured none),
    as a resumed run reads them."""
    path = run_dir / "checkpoints" / "state.json"
    state = json.loads(path.read_text())
    for row, eer in zip(state["history"], eers, strict=True):
        row["eer"] = eer
    path.write_text(json.dumps(state))


def test_an_epoch_without_an_eer_never_counts_as_the_best(
    dataset_root: Path, tmp_path: Path
) -> None:
    """A first epoch with a NaN EER stood as the best (``min`` keeps a leading NaN): no later
    epoch was ever saved as the best model."""
    run_dir = tmp_path / "run"
    spec = quick_spec(epochs=2)
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    train(spec, run_dir, MemorySink(stop_after_batches=n_batches + 1), dataset_root)
    _set_eers(run_dir, [math.nan])
    (run_dir / "checkpoints" / "best.pth").unlink()  # that epoch, without an EER, is no best
    result = train(spec, run_dir, MemorySink(), dataset_root, resume=True)
    assert result.status == "succeeded" and [r.epoch for r in result.history] == [0, 1]
    assert math.isnan(result.history[0].eer) and 0.0 <= result.history[1].eer <= 1.0
    assert (run_dir / "checkpoints" / "best.pth").is_file()  # epoch 1, the only one measured


def test_early_stopping_waits_on_the_best_eer_not_on_a_nan(
    dataset_root: Path, tmp_path: Path
) -> None:
    """Early stopping compared with ``min`` of epochs led by a NaN EER, which is NaN: it never
    stopped. Epoch 1's EER of 0 cannot be beaten, so with patience 1 the run ends after
    epoch 2."""
    run_dir = tmp_path / "run"
    callbacks = CallbackSpec(early_stopping_patience=1)
    assert train(quick_spec(epochs=2), run_dir, MemorySink(), dataset_root).status == "succeeded"
    _set_eers(run_dir, [math.nan, 0.0])
    result = train(quick_spec(epochs=5, callbacks=callbacks), run_dir, MemorySink(), dataset_root)
    assert [r.epoch for r in result.history] == [0, 1, 2]


def test_a_run_that_measures_no_eer_keeps_its_last_model(
    dataset_root: Path, tmp_path: Path
) -> None:
    """A validation split without bona fide items gives every epoch a NaN EER: the run trains
    every epoch (early stopping has nothing to go by), saves no best and ends with its last
    model, its history saying NaN (no EER), never a number."""
    root = tmp_path / "datasets"
    shutil.copytree(dataset_root / DATASET, root / DATASET)
    valid = set(prepare_data(quick_spec(), dataset_root).valid["utterance"])
    manifest = read_manifest(root / DATASET)
    kept = ~(manifest["utterance"].isin(valid) & (manifest["class"] == "bonafide"))
    write_manifest(root / DATASET, manifest[kept])
    spec = quick_spec(epochs=3, callbacks=CallbackSpec(early_stopping_patience=1))
    assert set(prepare_data(spec, root).valid["class"]) == set(GENERATORS)
    run_dir = tmp_path / "run"
    result = train(spec, run_dir, MemorySink(), root)
    assert result.status == "succeeded" and [r.epoch for r in result.history] == [0, 1, 2]
    assert all(math.isnan(r.eer) for r in result.history)
    assert [row["eer"] for row in read_history(run_dir)] == ["nan"] * 3
    assert not (run_dir / "checkpoints" / "best.pth").exists()
    assert (run_dir / "model.safetensors").is_file()


def test_train_refuses_a_missing_dataset(dataset_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no built dataset named 'gone'"):
        train(quick_spec(dataset="gone"), tmp_path / "run", MemorySink(), dataset_root)


def test_aasist_l_trains_one_short_epoch(dataset_root: Path, tmp_path: Path) -> None:
    spec = TrainSpec(
        dataset=DATASET,
        arch="aasist-l",
        epochs=1,
        batch_size=4,
        clip_samples=16000,
        speakers=("spk_a",),
        classes=("bonafide", "world"),
        device="cpu",
        augment=AugmentSpec(noise_mix=0.5),
    )
    result = train(spec, tmp_path / "run", MemorySink(), dataset_root)
    assert result.status == "succeeded" and result.epochs_done == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["input_kind"] == "waveform" and manifest["clip_samples"] == 16000
    assert manifest["feature_spec"] is None
    assert math.isfinite(result.history[0].train_loss)


class _PredictionProbe(Callback):
    """Records, for each batch predicted outside training, the dtype of the model's output (as
    it came out: before MixedPrecision makes it float32) and the callbacks that ran it."""

    order = MixedPrecision.order - 1  # its after_pred runs before MixedPrecision's

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []
        self.callbacks: list[set[str]] = []

    def after_pred(self) -> None:
        if not self.learn.training:
            self.dtypes.append(self.learn.pred.dtype)
            self.callbacks.append({type(cb).__name__ for cb in self.learn.cbs})


def _final_predictions_with_mixed_precision(
    spec: TrainSpec, dataset_root: Path, run_dir: Path
) -> tuple[_PredictionProbe, Learner]:
    """Write a run's artefacts from a mixed-precision learner (untrained), probing its passes."""
    from fakevoice.artefacts import write_run_artefacts
    from fakevoice.training import build_learner

    data = prepare_data(spec, dataset_root)
    dls = make_dataloaders(data, spec, pick_device(spec.device))
    learn, _ = build_learner(spec, dls, len(data.class_names), None)
    if not any(isinstance(cb, MixedPrecision) for cb in learn.cbs):  # added on CUDA only
        learn.add_cb(MixedPrecision())
    probe = _PredictionProbe()
    learn.add_cb(probe)
    write_run_artefacts(learn, spec, data, [], run_dir)
    return probe, learn


def test_a_runs_final_figures_measure_the_model_without_mixed_precision(
    dataset_root: Path, tmp_path: Path
) -> None:
    """A mixed-precision run's validation predictions, which the report, the calibration and
    the familiarity reference are made of, ran under float16 autocast on CUDA, unlike the
    detector's float32; they are made without the MixedPrecision callback (kept on the learner
    for the export)."""
    spec = quick_spec(callbacks=CallbackSpec(mixed_precision=True))
    probe, learn = _final_predictions_with_mixed_precision(spec, dataset_root, tmp_path)
    assert probe.callbacks and all("MixedPrecision" not in names for names in probe.callbacks)
    assert any(isinstance(cb, MixedPrecision) for cb in learn.cbs)


@pytest.mark.cuda
def test_a_mixed_precision_runs_final_predictions_are_float32_on_cuda(
    dataset_root: Path, tmp_path: Path
) -> None:
    spec = quick_spec(device="cuda", callbacks=CallbackSpec(mixed_precision=True))
    probe, _ = _final_predictions_with_mixed_precision(spec, dataset_root, tmp_path)
    assert probe.dtypes and set(probe.dtypes) == {torch.float32}


@pytest.mark.cuda
def test_a_resumed_mixed_precision_run_keeps_its_loss_scale_on_cuda(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakevoice.training_callbacks import LossScaleResume

    run_dir = tmp_path / "run"
    spec = quick_spec(epochs=2, device="cuda", callbacks=CallbackSpec(mixed_precision=True))
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    train(spec, run_dir, MemorySink(stop_after_batches=n_batches + 1), dataset_root)
    state = load_checkpoint_state(run_dir)
    assert state is not None and state.scaler is not None
    # A scale a fresh GradScaler would not start at: the resumed fit must start from it.
    path = run_dir / "checkpoints" / "state.json"
    kept = json.loads(path.read_text())
    kept["scaler"]["scale"] = 1024.0
    path.write_text(json.dumps(kept))
    seen: list[float] = []
    real_before_fit = LossScaleResume.before_fit

    def noted(self: LossScaleResume) -> None:
        real_before_fit(self)
        seen.append(float(self.learn.scaler.get_scale()))

    monkeypatch.setattr(LossScaleResume, "before_fit", noted)  # notes, then does its work
    resumed = train(spec, run_dir, MemorySink(), dataset_root, resume=True)
    assert resumed.status == "succeeded" and seen == [1024.0]


def test_image_items_cache_decoded_images_within_their_bound(dataset_root: Path) -> None:
    data = prepare_data(quick_spec(), dataset_root)
    image_bytes = FEATURES.image_height * FEATURES.image_width * 3
    items = ImageItems(data.train, data.dataset_dir, data.train_labels, cache_bytes=2 * image_bytes)
    first = [items[i][0] for i in range(4)]
    assert len(items.cache) == 2 and items.cache.nbytes == 2 * image_bytes  # room for two images
    assert items.cache.get(1) is not None and items.cache.get(2) is None
    again = [items[i][0] for i in range(4)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)  # cached or decoded again, the same tensor
    uncached = ImageItems(data.train, data.dataset_dir, data.train_labels, cache_bytes=0)
    assert torch.equal(uncached[3][0], first[3]) and len(uncached.cache) == 0


def test_waveform_items_cache_noisy_clips_within_their_bound(dataset_root: Path) -> None:
    """The first epoch decodes each clip and makes its noise; later ones read the cache, which
    neither crops, noise mixing nor a caller changing the returned tensor alters."""
    data = prepare_data(quick_spec(arch="aasist-l"), dataset_root)
    clip = 16000
    plain = WaveformItems(data.train, data.dataset_dir, data.train_labels, clip)
    first = [plain[i][0] for i in range(4)]
    sizes = [plain.waveform(i).size for i in range(4)]
    room = (sizes[0] + sizes[1]) * 4  # float32: room for the first two items
    items = WaveformItems(data.train, data.dataset_dir, data.train_labels, clip, cache_bytes=room)
    for i in range(4):
        x = items[i][0]
        assert torch.equal(x, first[i])
        x.fill_(7.0)  # the caller's own copy
    assert len(items.cache) == 2 and items.cache.nbytes == room
    for i in range(4):
        assert torch.equal(items[i][0], first[i])  # cached or made again, the same samples
    assert items.cache.get(1) is not None and items.cache.get(2) is None
    assert not items.waveform(1).flags.writeable  # the cache's own memory
    uncached = WaveformItems(data.train, data.dataset_dir, data.train_labels, clip, cache_bytes=0)
    assert torch.equal(uncached[3][0], first[3]) and len(uncached.cache) == 0

    noisy = AugmentSpec(time_shift=True, noise_mix=1.0)
    augmented = WaveformItems(data.train, data.dataset_dir, data.train_labels, clip, noisy, 3)
    kept = [augmented.waveform(i).copy() for i in range(4)]
    for _ in range(2):  # two epochs of crops with noise mixed in
        assert all(augmented[i][0].shape == (clip,) for i in range(4))
    assert all(np.array_equal(augmented.waveform(i), kept[i]) for i in range(4))


def test_a_dc_offset_in_a_datasets_clip_reaches_no_training_item(tmp_path: Path) -> None:
    """A clip with a constant offset trains a model as the clip without does: a build gives its
    item the same image (its noise measured about the mean, its image rendered without it), and
    a waveform model the same crop, cut or tiled, augmented or not (to the clip's 16 bits)."""
    from fakevoice.audio import write_wav
    from fakevoice.datasets.units import item_image

    voice = speechlike(1.5, seed=9)
    spec = FeatureSpec(image_height=64, image_width=64, colormap="gray")
    clean_image = item_image(voice, 10.0, "item", spec).astype(int)
    for offset in (0.25, -0.2):
        image = item_image(voice + np.float32(offset), 10.0, "item", spec).astype(int)
        assert np.abs(image - clean_image).max() <= 1 and (image != clean_image).mean() < 0.01

    write_wav(tmp_path / "clean.wav", voice, 16000)
    write_wav(tmp_path / "offset.wav", voice + np.float32(0.25), 16000)

    def first_item(clip: str, clip_samples: int, augment: AugmentSpec | None) -> torch.Tensor:
        frame = pd.DataFrame({"item": ["item"], "noise": ["snr_10db"], "clip_path": [clip]})
        return WaveformItems(frame, tmp_path, [0], clip_samples, augment, seed=3)[0][0]

    for clip_samples in (16000, 32000):  # a crop of the 1.5 s clip, or the clip tiled
        for augment in (None, AugmentSpec(time_shift=True, noise_mix=1.0)):
            clean = first_item("clean.wav", clip_samples, augment)
            shifted = first_item("offset.wav", clip_samples, augment)
            assert abs(float(shifted.mean())) < 1e-3
            torch.testing.assert_close(shifted, clean, rtol=0.0, atol=1e-4)


def test_a_shared_item_cache_is_one_for_the_processes_forked_after_it() -> None:
    cache = SharedItemCache(n_items=3, capacity_bytes=40, dtype=np.float32)  # room for 10 floats
    child = multiprocessing.get_context("fork").Process(
        target=cache.put, args=(1, np.arange(6, dtype=np.float32).reshape(2, 3))
    )
    child.start()
    child.join()
    assert child.exitcode == 0
    got = cache.get(1)  # put by the child, read here
    assert got is not None and np.array_equal(got, np.arange(6).reshape(2, 3))
    assert not got.flags.writeable
    big = np.ones(5, dtype=np.float32)
    assert cache.put(2, big) is big and cache.get(2) is None  # 6 + 5 floats: no room
    assert cache.put(0, np.ones(2, dtype=np.float64)) is not None and cache.get(0) is None
    assert len(cache) == 1 and cache.nbytes == 24
    # A spawned worker's copy, or fastai's export's: empty, and its own.
    copy = pickle.loads(pickle.dumps(cache))  # noqa: S301 (bytes made just above)
    assert len(copy) == 0 and copy.capacity_bytes == 40
    copy.put(0, np.ones(2, dtype=np.float32))
    assert cache.get(0) is None


def test_a_run_checks_its_memory_as_it_will_train(
    dataset_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's check when a run starts: against the free memory of a GPU (another process
    may hold the rest), with the run's mixed precision."""
    from fakevoice.models import memory
    from fakevoice.training import _warn_about_memory

    asked: list[dict[str, object]] = []
    real_advise = memory.advise

    def advise(*args: Any, **kwargs: Any) -> memory.MemoryAdvice:
        asked.append(kwargs)
        return real_advise(*args, **kwargs)

    monkeypatch.setattr(memory, "advise", advise)
    spec = quick_spec(callbacks=CallbackSpec(mixed_precision=True))
    notices: list[str] = []
    _warn_about_memory(
        spec, prepare_data(spec, dataset_root), torch.device("cpu"), 2, notices.append
    )
    assert asked == [{"mixed_precision": True, "free": True}]
    assert notices == []  # a tiny model fits


def test_seeding_asks_cudnn_for_deterministic_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    # cuDNN's per-shape benchmark picks kernels by timing: two runs of one seed would differ on
    # a GPU. The flags are process-wide; the test puts them back.
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    seed_everything(3)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    first = torch.rand(4)
    seed_everything(3)
    assert torch.equal(first, torch.rand(4))


# --- data-loader workers -------------------------------------------------------------------------


def _workers_dataloaders(spec: TrainSpec, data: PreparedData) -> DataLoaders:
    """The run's loaders with two worker processes, seeded as a run is."""
    seed_everything(spec.seed)
    return make_dataloaders(data, spec, torch.device("cpu"), num_workers=2)


def test_loader_workers_augment_apart_and_alike_for_a_seed(dataset_root: Path) -> None:
    """Every training item is one image here: only the augmentations tell batches apart."""
    spec = quick_spec(augment=AugmentSpec(time_shift=True, freq_masks=1, time_masks=1))
    data = prepare_data(spec, dataset_root)
    data = replace(data, train=data.train.assign(image_path=data.train["image_path"].iloc[0]))

    def two_epochs() -> list[torch.Tensor]:
        dls = _workers_dataloaders(spec, data)
        return [x for _ in range(2) for x, _ in dls.train]

    first = two_epochs()
    per_epoch = len(first) // 2
    assert per_epoch >= 4
    # fastai gives batch i to worker i % 2: the two workers do not augment alike...
    assert not torch.equal(first[0], first[1])
    # ...nor does an epoch's worker repeat the one before it.
    assert not torch.equal(first[0], first[per_epoch])
    again = two_epochs()
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize(
    ("arch", "reader"), [("specnet", "Image"), ("aasist-l", "load_item_waveform")]
)
def test_loader_workers_fill_one_cache_that_later_epochs_read(
    dataset_root: Path, monkeypatch: pytest.MonkeyPatch, arch: str, reader: str
) -> None:
    spec = quick_spec(arch=arch, clip_samples=16000)
    data = prepare_data(spec, dataset_root)
    dls = _workers_dataloaders(spec, data)
    first = [x for x, _ in dls.valid]
    items = dls.valid.dataset
    assert len(items.cache) == len(items) > 0  # decoded in the workers, seen here

    def read_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("an item was read from its file again")

    if reader == "Image":
        monkeypatch.setattr(loaders.Image, "open", read_again)
    else:
        monkeypatch.setattr(loaders, "load_item_waveform", read_again)
    again = [x for x, _ in dls.valid]  # new workers, forked for this pass
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_a_run_with_loader_workers_stops_resumes_and_leaves_no_process(
    dataset_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    spec = quick_spec(epochs=2, augment=AugmentSpec(time_shift=True))
    n_batches = len(prepare_data(spec, dataset_root).train) // spec.batch_size
    before = set(multiprocessing.active_children())
    stop = MemorySink(stop_after_batches=n_batches + 1)
    first = train(spec, run_dir, stop, dataset_root, loader_workers=2)
    assert first.status == "cancelled" and [r.epoch for r in first.history] == [0]
    assert set(multiprocessing.active_children()) <= before  # the stopped epoch's workers too
    sink = MemorySink()
    second = train(spec, run_dir, sink, dataset_root, resume=True, loader_workers=2)
    assert second.status == "succeeded" and [r.epoch for r in second.history] == [0, 1]
    assert len(sink.batches) == n_batches and {b[0] for b in sink.batches} == {1}
    for record in second.history:
        assert math.isfinite(record.train_loss) and math.isfinite(record.valid_loss)
        assert 0.0 <= record.accuracy <= 1.0 and 0.0 <= record.eer <= 1.0
    assert (run_dir / "model.safetensors").is_file()
    assert set(multiprocessing.active_children()) <= before


def test_a_killed_training_process_takes_its_loader_workers_along(dataset_root: Path) -> None:
    spec = quick_spec()
    data = prepare_data(spec, dataset_root)
    context = multiprocessing.get_context("fork")
    pids = context.Queue()
    trainer = context.Process(target=_read_batches_forever, args=(spec, data, pids))
    trainer.start()
    try:
        workers = [pids.get(timeout=120) for _ in range(2)]
    finally:
        os.kill(trainer.pid, signal.SIGKILL)  # type: ignore[arg-type]
        trainer.join()
    deadline = time.monotonic() + 30  # they die at once; torch's own check comes every 5 s
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _read_batches_forever(spec: TrainSpec, data: PreparedData, pids: Any) -> None:
    """A stand-in for a training process: reads batches through two workers that say their pid."""

    def start_and_tell() -> None:
        start_loader_worker()
        pids.put(os.getpid())

    dls = make_dataloaders(data, spec, torch.device("cpu"), num_workers=2)
    dls.train.wif = start_and_tell
    while True:
        for _ in dls.train:
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_loader_workers_auto_are_none_on_a_cpu_and_spare_a_core_on_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert loader_workers(3, torch.device("cpu")) == 3  # the operator's number, as given
    assert loader_workers("auto", torch.device("cpu")) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert loader_workers("auto", torch.device("cuda")) == MAX_AUTO_LOADER_WORKERS == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    assert loader_workers("auto", torch.device("cuda")) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert loader_workers("auto", torch.device("cuda")) == 0


def test_a_finder_whose_loss_blows_up_at_once_says_so(tmp_path: Path) -> None:
    """fastai's finder stops when the loss passes four times its best; stopped within its first
    batches it has no points left for a suggestion, which is the user's words, not an IndexError."""
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner

    from fakevoice.training import suggest_learning_rate

    items = [(torch.randn(4), torch.tensor(i % 2)) for i in range(64)]
    dls = DataLoaders(DataLoader(items, bs=4, shuffle=True), DataLoader(items, bs=4), path=tmp_path)
    calls = []

    def exploding_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)  # 1, 10, 100, ...: past four times the best from the second batch on
        scale = 10.0 ** (len(calls) - 1)
        return torch.nn.functional.cross_entropy(output, target) * 0 + scale + output.sum() * 0

    learn = Learner(dls, torch.nn.Linear(4, 2), loss_func=exploding_loss, path=tmp_path)
    with pytest.raises(InvalidSpecError, match="Set the learning rate yourself"):
        suggest_learning_rate(learn, num_it=40)
    assert 2 <= len(calls) < 10, "the finder was meant to stop within its first batches"
