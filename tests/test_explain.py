"""Explanations of a verdict (``fakevoice.explain``, ``services.explain_clip``).

Known answers first: detectors whose networks are written here so that we know exactly which
samples, frequencies, rows and columns their decision depends on, run through the real
:class:`~fakevoice.inference.Detector` and the real explanation code. Then a real specnet trained
on the session's tiny dataset, through the service, in a real SQLite store.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speechlike
from test_uploads import AASIST_L, make_user, register_run_model, wav_bytes
from torch import nn

from fakevoice import services
from fakevoice.errors import InvalidSpecError, NotFoundError
from fakevoice.explain import N_BANDS, N_SEGMENTS, explain, most_machine_like, overlay
from fakevoice.features import FeatureSpec, bin_axis, spectrogram_db
from fakevoice.inference import Detector
from fakevoice.store.records import Actor

RATE = 16000
WINDOW = 16000  # 1 s


class Matched(nn.Module):
    """Waveform model: P(human) rises with the input's correlation with ``pattern`` on samples
    ``[first, last)`` and ignores every other sample."""

    def __init__(self, pattern: np.ndarray, first: int, last: int, gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("pattern", torch.from_numpy(pattern.astype(np.float32)))
        self.first, self.last, self.gain = first, last, gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.gain * (x[:, self.first : self.last] * self.pattern).sum(dim=1)
        return torch.stack([score, -score], dim=1)  # bonafide, spoof


class Loudness(nn.Module):
    """Waveform model: loud windows sound human, quiet ones machine-made."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 200.0 * (x**2).mean(dim=1) - 1.0
        return torch.stack([score, -score], dim=1)


class Corner(nn.Module):
    """Image model: looks only at rows ``[0, rows)`` (the highest frequencies) and columns
    ``[0, cols)`` (the window's start) of its spectrogram image."""

    def __init__(self, rows: int, cols: int) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, :, : self.rows, : self.cols] ** 2).mean(dim=(1, 2, 3)) - 1.0
        return torch.stack([score, -score], dim=1)


def waveform_detector(model: nn.Module) -> Detector:
    manifest = {
        "class_names": ["bonafide", "spoof"],
        "clip_samples": WINDOW,
        "input_kind": "waveform",
        "sample_rate": RATE,
    }
    return Detector(model, manifest)


def image_detector(model: nn.Module, spec: FeatureSpec) -> Detector:
    manifest = {
        "class_names": ["bonafide", "spoof"],
        "clip_samples": WINDOW,
        "input_kind": "image",
        "sample_rate": RATE,
        "feature_spec": spec.to_dict(),
    }
    return Detector(model, manifest)


# --- the axis of a spectrogram -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mel", "linear", "cqt", "mfcc", "lfcc"])
def test_bin_axis_names_every_row_of_the_spectrogram(kind: str) -> None:
    spec = FeatureSpec(kind=kind, fmin=50.0, fmax=7000.0, image_height=64, image_width=64)
    values, unit = bin_axis(spec)
    rows = spectrogram_db(speechlike(0.5, seed=1), spec).shape[0]
    assert values.shape == (rows,) and np.all(np.diff(values) > 0)
    if kind in {"mfcc", "lfcc"}:
        assert unit == "coefficient" and list(values) == list(range(spec.n_coeffs))
        return
    assert unit == "Hz" and 50.0 <= values[0] and values[-1] <= 7000.0
    if kind == "linear":
        np.testing.assert_allclose(np.diff(values), RATE / spec.n_fft)
    if kind == "cqt":
        np.testing.assert_allclose(values[1:] / values[:-1], 2 ** (1 / 24))


# --- known answers -------------------------------------------------------------------------------


def test_a_waveform_model_is_explained_by_the_samples_and_the_frequency_it_uses() -> None:
    # The decision depends on samples 4000-8000 only, through a 3 kHz pattern.
    first, last, hz = 4000, 8000, 3000.0
    pattern = np.sin(2 * np.pi * hz * np.arange(last - first) / RATE)
    detector = waveform_detector(Matched(pattern, first, last, gain=0.01))
    explanation = explain(detector, speechlike(1.0, seed=3), RATE)

    assert (explanation.start, explanation.end) == (0.0, 1.0)
    assert len(explanation.segments) == N_SEGMENTS
    assert sum(explanation.segments) == pytest.approx(1.0)
    per_segment = WINDOW // N_SEGMENTS
    inside = range(first // per_segment, last // per_segment)
    assert sum(explanation.segments[i] for i in inside) == pytest.approx(1.0, abs=1e-9)
    assert len(explanation.bands) == N_BANDS
    assert sum(b.share for b in explanation.bands) == pytest.approx(1.0)
    (band,) = [b for b in explanation.bands if b.low <= hz < b.high]
    assert band.share > 0.95 and explanation.top_bands(1) == [band]
    assert explanation.bands[0].low == 0.0
    assert explanation.bands[-1].high == pytest.approx(RATE / 2)
    assert explanation.heatmap is None and overlay(explanation) is None
    assert f"{band.label()} (" in explanation.summary()

    # A clip shorter than the window is tiled to fill it; its time slices fold onto the clip.
    short = waveform_detector(Matched(pattern[:2000], 0, 2000, gain=0.01))
    folded = explain(short, speechlike(0.25, seed=3), RATE)  # 4000 samples, 4 tiles
    assert (folded.start, folded.end) == (0.0, 0.25)
    assert sum(folded.segments[: N_SEGMENTS // 2]) == pytest.approx(1.0, abs=1e-9)


def test_an_image_model_is_explained_by_the_rows_and_columns_it_looks_at() -> None:
    spec = FeatureSpec(kind="mel", image_height=64, image_width=64)
    detector = image_detector(Corner(rows=8, cols=16), spec)
    explanation = explain(detector, speechlike(1.0, seed=4), RATE)

    assert explanation.heatmap is not None and explanation.heatmap.shape == (64, 64)
    assert explanation.heatmap.max() == pytest.approx(1.0)
    assert not explanation.heatmap[8:].any() and not explanation.heatmap[:, 16:].any()
    # The top eighth of the rows is the highest mel band; the first quarter of the columns is
    # the first four of sixteen time slices.
    shares = [b.share for b in explanation.bands]
    assert shares[-1] == pytest.approx(1.0) and sum(shares[:-1]) == pytest.approx(0.0)
    assert sum(explanation.segments[:4]) == pytest.approx(1.0)
    axis, _ = bin_axis(spec)
    assert explanation.bands[0].low == pytest.approx(axis[0])
    assert explanation.bands[-1].high == pytest.approx(axis[-1])
    assert all(a.high == pytest.approx(b.low) for a, b in pairwise(explanation.bands))
    picture = overlay(explanation)
    assert picture is not None and picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    # What the model saw is the rendered spectrogram of the window.
    assert explanation.image is not None and explanation.image.shape == (64, 64, 3)


def test_the_most_machine_like_window_is_explained_unless_another_is_asked_for() -> None:
    detector = waveform_detector(Loudness())
    loud, quiet = speechlike(1.5, seed=5) * 4, speechlike(1.5, seed=6) * 0.05
    samples = np.concatenate([loud, quiet, loud]).astype(np.float32)  # 4.5 s: 8 windows
    timeline = detector.predict_samples(samples, RATE).windows
    lowest = int(np.argmin([w.p_human for w in timeline]))
    explanation = explain(detector, samples, RATE)
    assert explanation.start == pytest.approx(timeline[lowest].start)
    assert explanation.p_human == pytest.approx(timeline[lowest].p_human, abs=1e-6)
    assert explanation.p_human < 0.5 < timeline[0].p_human
    # A caller that has the timeline names that window and spares scoring every window again.
    assert most_machine_like(timeline) == lowest
    named = explain(detector, samples, RATE, window=lowest)
    assert (named.start, named.segments) == (explanation.start, explanation.segments)
    assert named.p_human == pytest.approx(explanation.p_human, abs=1e-6)
    chosen = explain(detector, samples, RATE, window=0)
    assert chosen.start == 0.0 and chosen.p_human == pytest.approx(timeline[0].p_human, abs=1e-6)
    with pytest.raises(IndexError):
        explain(detector, samples, RATE, window=len(timeline))
    # The same clip gets the same explanation (the noise of SmoothGrad is seeded).
    assert explain(detector, samples, RATE).segments == explanation.segments


# --- a trained model, through the service --------------------------------------------------------


def test_a_trained_model_is_explained_and_nothing_is_logged(alice: Actor, run_dir: Path) -> None:
    model = register_run_model(alice, run_dir)
    clip = wav_bytes(3.0, seed=7)
    explained = services.explain_clip(alice, model.id, clip)
    e = explained.explanation
    assert explained.model.id == model.id and explained.info.duration == pytest.approx(3.0)
    spec = FeatureSpec.from_dict(model.feature_spec)
    assert e.heatmap is not None
    assert e.heatmap.shape == (spec.image_height, spec.image_width)
    assert sum(b.share for b in e.bands) == pytest.approx(1.0)
    assert all(0 <= s <= 1 for s in e.segments) and sum(e.segments) == pytest.approx(1.0)
    assert services.count_analyses(alice) == 0  # explaining is not a verdict

    second = services.explain_clip(alice, model.id, clip, window=2)
    assert second.explanation.start == pytest.approx(1.0)  # 1 s windows every 0.5 s
    with pytest.raises(InvalidSpecError, match="has 5 window"):
        services.explain_clip(alice, model.id, clip, window=5)
    bob = make_user("bob")
    with pytest.raises(NotFoundError):  # alice's model is private
        services.explain_clip(bob, model.id, clip)


@pytest.mark.parametrize("arch", ["specnet", "resnet18", "alexnet", "vgg16_bn"])
def test_every_image_architecture_is_explained(arch: str) -> None:
    from fakevoice.models.registry import build_inference_model

    spec = FeatureSpec(image_height=64, image_width=64)
    manifest = {
        "arch": arch,
        "task": "binary",
        "class_names": ["bonafide", "spoof"],
        "input_kind": "image",
        "feature_spec": spec.to_dict(),
        "normalize": "imagenet",
        "sample_rate": RATE,
        "clip_samples": WINDOW,
    }
    torch.manual_seed(0)
    e = explain(Detector(build_inference_model(manifest), manifest), speechlike(1.5), RATE)
    assert e.heatmap is not None and e.heatmap.shape == (64, 64) and e.heatmap.max() > 0
    assert sum(b.share for b in e.bands) == pytest.approx(1.0)


@pytest.mark.skipif(not AASIST_L.is_file(), reason="needs the official AASIST-L checkpoint")
def test_the_official_aasist_l_is_explained(alice: Actor) -> None:
    model = services.import_aasist(alice, AASIST_L, "aasist-l")
    e = services.explain_clip(alice, model, wav_bytes(2.0, seed=8)).explanation
    assert (e.start, e.end) == (0.0, 2.0)  # one window: the 2 s clip, tiled to fill it
    assert e.heatmap is None and len(e.bands) == N_BANDS
    assert sum(b.share for b in e.bands) == pytest.approx(1.0)
    assert sum(e.segments) == pytest.approx(1.0) and min(e.segments) > 0
