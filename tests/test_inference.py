"""The detector: safe bundle loading, windows, the verdict rule and the detector cache.

The model is a real specnet trained for one epoch on the session's tiny dataset.
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike
from test_training import DATASET, quick_spec, tiny_dataset_root

from fakevoice.errors import InvalidSpecError, ModelFileError
from fakevoice.features import FeatureSpec, db_to_image, spectrogram_db
from fakevoice.inference import Detector, DetectorCache, decide
from fakevoice.models.registry import build_inference_model
from fakevoice.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    fit_length,
    image_to_tensor,
    waveform_to_image_tensor,
    window_starts,
    windows,
)
from fakevoice.training import train
from fakevoice.training_callbacks import MemorySink

WINDOW = 16000  # samples: the trained model's clip length (1 s)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset_root(tmp_path_factory)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, dataset_root: Path) -> Path:
    root = dataset_root
    folder = tmp_path_factory.mktemp("inference") / "run"
    spec = quick_spec(task="multiclass", clip_samples=WINDOW)
    result = train(spec, folder, MemorySink(), root)
    assert result.status == "succeeded"
    return folder


@pytest.fixture(scope="module")
def detector(run_dir: Path) -> Detector:
    return Detector.from_bundle(run_dir)


# --- verdict rule --------------------------------------------------------------------------------


def test_decide_applies_the_threshold_and_names_the_generator() -> None:
    probs = {"bonafide": 0.45, "griffinlim": 0.15, "world": 0.40}
    assert decide(probs, "bonafide", 0.60) == ("inconclusive", "world")
    assert decide(probs, "bonafide", 0.55) == ("machine-generated", "world")
    assert decide({"bonafide": 0.7, "world": 0.1, "lpc": 0.2}, "bonafide", 0.6) == ("human", None)
    # A binary model knows no generator names.
    assert decide({"bonafide": 0.1, "spoof": 0.9}, "bonafide", 0.6) == ("machine-generated", None)
    with pytest.raises(InvalidSpecError, match="threshold must be between 0.5 and 1.0"):
        decide(probs, "bonafide", 0.3)


# --- windows -------------------------------------------------------------------------------------


def test_windows_overlap_by_half_and_end_at_the_clip_end() -> None:
    assert window_starts(40000, 16000) == [0, 8000, 16000, 24000]
    starts = window_starts(45000, 16000)
    assert starts[:4] == [0, 8000, 16000, 24000] and starts[-1] == 45000 - 16000
    assert np.diff(starts).max() <= 8000
    samples = np.arange(45000, dtype=np.float32)
    stacked, got = windows(samples, 16000)
    assert stacked.shape == (len(starts), 16000) and got == starts
    assert stacked[-1][-1] == samples[-1]


def test_short_clip_is_tiled() -> None:
    short = np.arange(5000, dtype=np.float32)
    stacked, starts = windows(short, 16000)
    assert starts == [0] and stacked.shape == (1, 16000)
    np.testing.assert_array_equal(stacked[0][:5000], short)
    np.testing.assert_array_equal(stacked[0][5000:10000], short)
    np.testing.assert_array_equal(fit_length(short, 12000)[10000:], short[:2000])


def test_an_image_is_normalised_channel_by_channel_as_imagenet_statistics_say() -> None:
    """The lookup table gives exactly the floats of ``(v / 255 - mean) / std`` for every byte
    value, in (3, H, W) order, for any image shape (a strided one too)."""
    rng = np.random.default_rng(3)
    for image in (
        rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3).astype(np.uint8),
        rng.integers(0, 256, (300, 41, 3), dtype=np.uint8)[::3, ::2],
    ):
        x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        got = image_to_tensor(image)
        assert got.dtype == torch.float32 and got.is_contiguous()
        assert torch.equal(got, torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))))


# --- the DC offset -------------------------------------------------------------------------------

PIXEL_STEP = 1 / 255 / float(IMAGENET_STD.min())  # one level of 255 in a normalised image


def untrained(arch: str) -> Detector:
    """A freshly initialised ``specnet`` (64 x 64 grey mel images) or ``aasist-l`` with 1 s
    windows: no training, no ImageNet weights."""
    image = arch == "specnet"
    spec = FeatureSpec(image_height=64, image_width=64, colormap="gray")
    manifest = {
        "arch": arch,
        "task": "binary",
        "class_names": ["bonafide", "spoof"],
        "input_kind": "image" if image else "waveform",
        "feature_spec": spec.to_dict() if image else None,
        "normalize": "imagenet" if image else None,
        "sample_rate": 16000,
        "clip_samples": WINDOW,
    }
    torch.manual_seed(0)
    return Detector(build_inference_model(manifest), manifest)


@pytest.mark.parametrize("arch", ["specnet", "aasist-l"])
@pytest.mark.parametrize("seconds", [0.8, 3.3])  # one window (whole, or tiled), or six
def test_a_dc_offset_changes_neither_the_model_input_nor_the_verdict(
    arch: str, seconds: float
) -> None:
    """A constant offset (a cheap sound card, an unsigned 8-bit WAV) says nothing of the voice:
    every window the model sees loses its own mean, so the clip with an offset gives the same
    input, window scores and probabilities as the clip without, however it is batched. Before,
    an offset of 0.3 moved this specnet's P(human) by 0.03 (the longer clip), and the official
    AASIST-L's log-odds of human on a clip like this by 7.6."""
    detector = untrained(arch)
    clip = speechlike(seconds, seed=5)
    clean_batch, starts = detector.model_inputs(clip)
    clean = detector.predict_samples(clip, 16000)
    tolerance = 1e-3 if detector.input_kind == "image" else 1e-5
    for offset in (0.3, -0.2):
        shifted = clip + np.float32(offset)
        batch, shifted_starts = detector.model_inputs(shifted)
        assert shifted_starts == starts and batch.shape == clean_batch.shape
        if detector.input_kind == "image":  # float32 rounding may tip a pixel by one level
            assert (batch - clean_batch).abs().max() <= PIXEL_STEP * 1.01
            assert (batch != clean_batch).float().mean() < 0.01
        else:
            torch.testing.assert_close(batch, clean_batch, rtol=0.0, atol=1e-6)
        verdict = detector.predict_samples(shifted, 16000)
        assert verdict.probabilities == pytest.approx(clean.probabilities, abs=tolerance)
        window_p = [w.p_human for w in verdict.windows]
        assert window_p == pytest.approx([w.p_human for w in clean.windows], abs=tolerance)
        one_at_a_time, _ = detector.window_log_probs(shifted, batch_size=1)
        assert np.exp(one_at_a_time[:, 0]) == pytest.approx(window_p, abs=tolerance)


@pytest.mark.parametrize("arch", ["specnet", "aasist-l"])
def test_windows_without_an_offset_reach_the_model_as_before(arch: str) -> None:
    """A 400 Hz tone holds whole periods in every window (starts and length are multiples of 40
    samples): each window's mean is nought, and the model gets what it got before the mean was
    taken off (the window itself, or its image rendered without the step)."""
    detector = untrained(arch)
    tone = (0.3 * np.sin(2 * np.pi * 400 * np.arange(52800) / 16000)).astype(np.float32)
    stacked, starts = windows(tone, WINDOW)
    assert len(starts) == 6 and all(s % 40 == 0 for s in starts)
    batch, _ = detector.model_inputs(tone)
    if detector.input_kind == "waveform":
        torch.testing.assert_close(batch, torch.from_numpy(stacked), rtol=0.0, atol=1e-6)
        return
    spec = detector.feature_spec
    before = torch.stack(
        [image_to_tensor(db_to_image(spectrogram_db(w, spec), spec)) for w in stacked]
    )
    assert (batch - before).abs().max() <= PIXEL_STEP * 1.01
    assert (batch != before).float().mean() < 0.01


# --- the detector --------------------------------------------------------------------------------


def test_bundle_manifest_describes_the_model(detector: Detector) -> None:
    assert detector.class_names == ["bonafide", "griffinlim", "world"]
    assert detector.window == WINDOW and detector.input_kind == "image"
    assert detector.feature_spec.image_height == 64


def test_detector_matches_the_training_model(
    run_dir: Path, detector: Detector, dataset_root: Path
) -> None:
    """The safe bundle rebuilds the exact model fastai exported (same outputs on the same input)."""
    from fastai.learner import load_learner

    learn = load_learner(run_dir / "model.pkl", cpu=True)
    clip, rate = sf.read(next((dataset_root / DATASET / "clips").rglob("*.wav")), dtype="float32")
    assert rate == 16000
    batch, _ = detector.model_inputs(clip)
    with torch.no_grad():
        expected = torch.log_softmax(learn.model.eval()(batch), dim=1).numpy()
    # The bundle keeps the calibration fitted on the validation split, and the detector uses it.
    kept = json.loads((run_dir / "manifest.json").read_text()).get("calibration")
    assert kept == json.loads((run_dir / "metrics.json").read_text())["calibration"]
    if kept is not None:
        assert detector.calibration is not None and detector.calibration.items == kept["items"]
        expected = detector.calibration.apply(expected)
    got, _ = detector.window_log_probs(clip)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_kept_calibration_changes_the_probabilities_as_fitted(
    run_dir: Path, detector: Detector
) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    uncalibrated = Detector(detector.model, {**manifest, "calibration": None})
    softer = Detector(
        detector.model, {**manifest, "calibration": {"temperature": 2.0, "bias": [0.0, 0.5, -0.5]}}
    )
    assert uncalibrated.calibration is None
    samples = speechlike(2.5, seed=3)
    raw, _ = uncalibrated.window_log_probs(samples)
    scaled = raw / 2.0 + np.array([0.0, 0.5, -0.5])
    expected = scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)
    np.testing.assert_allclose(softer.window_log_probs(samples)[0], expected, rtol=1e-6)
    verdict = softer.predict_samples(samples, 16000)
    assert sum(verdict.probabilities.values()) == pytest.approx(1.0)
    # A bundle from elsewhere with nonsense in it is used as it is, not trusted.
    odd = Detector(detector.model, {**manifest, "calibration": {"temperature": -1, "bias": []}})
    assert odd.calibration is None


def test_long_clip_verdict_averages_the_windows(detector: Detector) -> None:
    samples = speechlike(3.3, seed=7)
    verdict = detector.predict_samples(samples, 16000, threshold=0.6)
    starts = window_starts(samples.size, WINDOW)
    assert [w.start for w in verdict.windows] == [s / 16000 for s in starts]
    assert verdict.windows[-1].end == pytest.approx(3.3)
    log_probs, _ = detector.window_log_probs(samples)
    mean = log_probs.mean(axis=0)
    expected = np.exp(mean) / np.exp(mean).sum()
    np.testing.assert_allclose(list(verdict.probabilities.values()), expected, rtol=1e-5)
    assert sum(verdict.probabilities.values()) == pytest.approx(1.0)
    assert verdict.p_human == pytest.approx(verdict.probabilities["bonafide"])
    for window, row in zip(verdict.windows, np.exp(log_probs), strict=True):
        assert window.p_human == pytest.approx(row[0], rel=1e-5)
    assert verdict.duration == pytest.approx(3.3) and verdict.sample_rate == 16000


def test_a_long_clip_is_scored_a_batch_of_windows_at_a_time(detector: Detector) -> None:
    """A long clip's windows overlap by half: cut out and rendered all at once, they took twice
    the clip's memory and an image per window on top (2.8 GB for ten minutes with a half-second
    window and 224 x 224 images). A batch at a time, the clip itself is the most held; the
    windows' scores are the same."""
    samples = np.tile(speechlike(5.0, seed=4), 24)  # two minutes: 239 windows of 1 s
    starts = window_starts(samples.size, WINDOW)
    whole, _ = detector.model_inputs(samples)
    with torch.inference_mode():
        expected = torch.log_softmax(detector.model(whole), dim=1).numpy()
    if detector.calibration is not None:
        expected = detector.calibration.apply(expected)
    del whole
    tracemalloc.start()
    try:
        log_probs, got_starts = detector.window_log_probs(samples)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got_starts == starts and log_probs.shape == (len(starts), 3)
    np.testing.assert_allclose(log_probs, expected, rtol=1e-5, atol=1e-5)
    assert peak < samples.nbytes / 2


def test_verdict_follows_the_rule_on_a_real_model(detector: Detector) -> None:
    samples = speechlike(1.2, seed=3)
    sure = detector.predict_samples(samples, 16000, threshold=0.5)
    assert sure.label in {"human", "machine-generated"}
    if sure.label == "human":
        assert sure.p_human >= 0.5 and sure.generator is None
    else:
        fakes = {k: v for k, v in sure.probabilities.items() if k != "bonafide"}
        assert sure.generator == max(fakes, key=lambda k: fakes[k])
    strict = detector.predict_samples(samples, 16000, threshold=1.0)
    assert strict.label == "inconclusive"
    # A short clip is one image of the clip as it is (as a dataset renders its items), not of
    # the clip tiled to the window, which squeezed its time axis.
    batch, starts = detector.model_inputs(samples[:6000])
    expected = waveform_to_image_tensor(samples[:6000], detector.feature_spec)
    assert starts == [0] and batch.shape[0] == 1
    torch.testing.assert_close(batch[0], expected)
    tiled = waveform_to_image_tensor(fit_length(samples[:6000], WINDOW), detector.feature_spec)
    assert not torch.allclose(batch[0], tiled)


def test_from_bundle_refuses_missing_or_mismatched_files(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no safe bundle"):
        Detector.from_bundle(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(run_dir / "model.safetensors", broken)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["class_names"] = ["bonafide", "spoof"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="do not match the 'specnet' architecture"):
        Detector.from_bundle(broken)


def test_cache_keeps_the_most_recent_detectors(run_dir: Path) -> None:
    cache = DetectorCache(capacity=2)
    first = cache.get(run_dir, "a")
    assert cache.get(run_dir, "a") is first
    second = cache.get(run_dir, "b")
    cache.get(run_dir, "a")  # "a" is now the most recent
    cache.get(run_dir, "c")  # evicts "b"
    assert len(cache) == 2
    assert cache.get(run_dir, "a") is first
    assert cache.get(run_dir, "b") is not second


def _predict_in_child(detector: Detector, samples: np.ndarray, queue: object) -> None:
    torch.set_num_threads(1)
    log_probs, _ = detector.window_log_probs(samples)
    queue.put(log_probs)  # type: ignore[attr-defined]


def test_forward_passes_share_one_thread_and_survive_a_fork(detector: Detector) -> None:
    import multiprocessing
    import threading

    samples = speechlike(2.0, seed=11)
    expected, _ = detector.window_log_probs(samples)
    results: list[np.ndarray] = []
    names: set[str] = set()
    original = detector.model.forward

    def spy(x: torch.Tensor) -> torch.Tensor:
        names.add(threading.current_thread().name)
        return original(x)

    detector.model.forward = spy  # type: ignore[method-assign]
    try:
        threads = [
            threading.Thread(target=lambda: results.append(detector.window_log_probs(samples)[0]))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        del detector.model.forward
    assert len(results) == 4 and len(names) == 1 and next(iter(names)).startswith("fakevoice")
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    # A forked child (its parent's model thread does not come along) still gets an answer.
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_predict_in_child, args=(detector, samples, queue))
    child.start()
    try:
        np.testing.assert_allclose(queue.get(timeout=60), expected, rtol=1e-4, atol=1e-5)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()


def test_a_model_judges_its_own_validation_clips_as_its_run_scored_them(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The run's validation scores come from the dataset's images (each clip rendered whole);
    the detector renders a clip no longer than its window the same way, so a model's verdicts
    on its own validation clips are the scores its run reported (up to the 16-bit storage of
    the clips), not those of another picture of them."""
    import pandas as pd

    from fakevoice.artefacts import VALID_SCORES
    from fakevoice.datasets.manifest import load_item_waveform, read_manifest

    root = tiny_dataset_root(tmp_path_factory)
    spec = quick_spec(epochs=2)
    assert spec.clip_samples > 24000  # the tiny set's clips are 1.5 s: shorter than the window
    result = train(spec, tmp_path / "run", MemorySink(), root)
    assert result.status == "succeeded"
    scores = pd.read_csv(tmp_path / "run" / VALID_SCORES)
    rows = {row["item"]: row for row in read_manifest(root / "tiny").to_dict("records")}
    detector = Detector.from_bundle(tmp_path / "run")
    served = [
        detector.predict_samples(load_item_waveform(root / "tiny", rows[item]), 16000)
        for item in scores["item"]
    ]
    assert all(len(verdict.windows) == 1 for verdict in served)
    np.testing.assert_allclose([v.p_human for v in served], scores["p_human"], atol=0.02)
