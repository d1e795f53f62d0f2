"""Why a detector decided as it did: where in time and in which frequency bands of a window the
model's decision is most sensitive to the audio.

The explained window is the clip's most machine-like one (lowest P(human)) unless another is
asked for. The attribution is SmoothGrad (Smilkov et al., 2017): the gradient of the window's
log-odds of *human* (``log P(human) - log P(not human)``) with respect to the model's input,
averaged over a few copies of the input with a little Gaussian noise (seeded: the same clip gets
the same explanation).

* Image models (spectrograms): the mean absolute gradient per pixel, summed over the colour
  channels, is the heatmap; its rows are frequency bins (low at the bottom) and its columns time,
  so it sums into frequency bands (equal groups of rows: mel-spaced for mel images) and time
  slices. Cepstral images (MFCC, LFCC) have coefficients instead of frequencies.
* Waveform models (AASIST): the mean absolute gradient per sample sums into time slices; the
  power spectrum of the mean gradient says to which frequencies of the input the decision is
  sensitive, summed into mel-spaced bands.

This shows where the model looks, not proof of how the clip was made: a detector can rely on
cues that are not synthesis artefacts (silence, the channel, loudness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from fakevoice.features import bin_axis
from fakevoice.inference import Detector, WindowScore, forward_thread
from fakevoice.preprocess import IMAGENET_MEAN, IMAGENET_STD, window_starts
from fakevoice.spectral import mel_edges

SMOOTHGRAD_SAMPLES = 8
NOISE_LEVEL = {"image": 0.10, "waveform": 0.02}  # noise sd as a share of the input's range
N_BANDS = 8
N_SEGMENTS = 16
KEPT_HEATMAP_CELLS = 32
"""Cells a side of the heatmap kept with a verdict in the history (a few KB of JSON; the
spectrogram it lay over is not kept, the clip neither)."""
SEED = 20261206
METHOD = (
    "SmoothGrad: the gradient of the window's log-odds of human with respect to the model's "
    f"input, averaged over {SMOOTHGRAD_SAMPLES} slightly noisy copies"
)


@dataclass(frozen=True)
class Band:
    """A frequency band (or a range of cepstral coefficients) and its share of the attribution."""

    low: float
    high: float
    unit: Literal["Hz", "coefficient"]
    share: float

    def label(self) -> str:
        """``"2.5–3.7 kHz"``, ``"180–370 Hz"`` or ``"coefficients 0–4"``."""
        if self.unit == "coefficient":
            return f"coefficients {self.low:.0f}–{self.high:.0f}"
        if self.high >= 1000:
            return f"{self.low / 1000:.1f}–{self.high / 1000:.1f} kHz"
        return f"{self.low:.0f}–{self.high:.0f} Hz"


@dataclass(frozen=True)
class Explanation:
    """Where a model's decision on one window is most sensitive to the audio.

    Attributes:
        start / end: The window explained, seconds from the clip's start.
        p_human: That window's P(human).
        bands: Share of the attribution per band, lowest first; the shares sum to 1.
        segments: Share per equal slice of the window's time, first first; they sum to 1.
        heatmap: ``(H, W)`` in ``[0, 1]`` over the model's image (row 0 is the top: the highest
            frequency), image models only.
        image: The window's model image ``(H, W, 3)`` uint8, image models only.
    """

    start: float
    end: float
    p_human: float
    bands: list[Band]
    segments: list[float]
    heatmap: np.ndarray | None = field(default=None, repr=False)
    image: np.ndarray | None = field(default=None, repr=False)
    method: str = METHOD

    def to_dict(self, heatmap_size: int = KEPT_HEATMAP_CELLS) -> dict[str, object]:
        """JSON-ready, as kept with a verdict and written in reports: the heatmap at most
        ``heatmap_size`` cells a side (None for waveform models; none at all with 0)."""
        out: dict[str, object] = {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "p_human": self.p_human,
            "bands": [vars(b) for b in self.bands],
            "segments": self.segments,
            "method": self.method,
        }
        if heatmap_size > 0:
            out["heatmap"] = heatmap_cells(self, heatmap_size)
        return out

    @classmethod
    def from_dict(cls, data: object) -> Explanation | None:
        """The explanation :meth:`to_dict` wrote (kept with a verdict in the history), with its
        heatmap as kept (coarse cells; none when kept without) and no image; None when ``data``
        is not one."""
        if not isinstance(data, dict):
            return None
        try:
            bands = [
                Band(float(b["low"]), float(b["high"]), b["unit"], float(b["share"]))
                for b in data["bands"]
            ]
            cells = data.get("heatmap")
            heatmap = np.asarray(cells, dtype=np.float32) if cells else None
            if heatmap is not None and (heatmap.ndim != 2 or not np.isfinite(heatmap).all()):
                heatmap = None
            return cls(
                start=float(data["start"]),
                end=float(data["end"]),
                p_human=float(data["p_human"]),
                bands=bands,
                segments=[float(share) for share in data["segments"]],
                heatmap=heatmap,
                method=str(data.get("method") or METHOD),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def top_bands(self, count: int = 3) -> list[Band]:
        """The bands with the largest shares, largest first."""
        return sorted(self.bands, key=lambda b: b.share, reverse=True)[:count]

    def summary(self) -> str:
        """One line: the window and the bands the decision is most sensitive to."""
        bands = ", ".join(f"{b.label()} ({100 * b.share:.0f} %)" for b in self.top_bands())
        return (
            f"window {self.start:.2f}-{self.end:.2f} s (P(human) {self.p_human:.3f}) is most "
            f"sensitive to {bands}"
        )


def most_machine_like(windows: Sequence[WindowScore]) -> int:
    """The index of the verdict timeline's window with the lowest P(human) (the first of equals),
    the one :func:`explain` chooses by itself: a caller that scored the clip already passes it
    and spares the explanation scoring every window again."""
    return min(range(len(windows)), key=lambda i: windows[i].p_human)


def window_count(detector: Detector, n_samples: int) -> int:
    """How many windows the detector scores in a clip of ``n_samples`` at its own rate."""
    return len(window_starts(n_samples, detector.window))


def explain(
    detector: Detector,
    samples: np.ndarray,
    sample_rate: int,
    *,
    window: int | None = None,
) -> Explanation:
    """Explain the detector's decision on one window of a clip.

    Args:
        samples: ``(n,)`` float32 mono at ``sample_rate`` Hz (resampled to the model's rate).
        window: Index of the window (as in the verdict's timeline, see
            :func:`most_machine_like`); default: the window with the lowest P(human), found by
            scoring every window. Given, only that window is scored.

    Raises:
        IndexError: ``window`` is not a window of this clip.
    """
    if sample_rate != detector.sample_rate:
        from fakevoice.audio import resample

        samples = resample(samples, sample_rate, detector.sample_rate)
    starts = window_starts(samples.size, detector.window)
    b = detector.bonafide_index
    if window is None:
        every, _ = detector.window_log_probs(samples)
        index = int(every[:, b].argmin())
    elif 0 <= window < len(starts):
        index = window
    else:
        raise IndexError(f"window {window} of {len(starts)}")
    first = starts[index]
    audio = samples[first : first + detector.window]  # a short clip is tiled, as when scored
    # That window's row of every window's scores, or (given) that window scored alone.
    row = every[index] if window is None else detector.window_log_probs(audio)[0][0]
    p_human = float(np.exp(row[b]))
    with torch.inference_mode():
        x, _ = detector.model_inputs(audio)
    mean_abs, mean_signed = _smoothgrad(detector, x)
    start = first / detector.sample_rate
    end = min(samples.size, first + detector.window) / detector.sample_rate
    # A clip shorter than the window was tiled to fill it for a waveform model: its time folds
    # back onto the clip. An image model's image holds the clip once, across its whole width.
    covered = (end - start) / (detector.window / detector.sample_rate)
    if detector.input_kind == "waveform":
        return Explanation(
            start,
            end,
            p_human,
            bands=_spectrum_bands(mean_signed, detector.sample_rate),
            segments=_time_shares(mean_abs, covered),
        )
    heat = mean_abs.sum(axis=0)  # (H, W): channels summed
    return Explanation(
        start,
        end,
        p_human,
        bands=_row_bands(heat, detector),
        segments=_time_shares(heat.sum(axis=0), 1.0),
        heatmap=(heat / heat.max() if heat.max() > 0 else heat).astype(np.float32),
        image=_denormalised(x[0].numpy()),
    )


def _smoothgrad(detector: Detector, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean |gradient| and mean gradient of the log-odds of human over noisy copies of ``x``
    (``(1, ...)``); both shaped as one input without the batch axis.

    One copy per pass on the process's model thread (:func:`forward_thread`): verdicts asked
    meanwhile wait for one pass at most, not for the whole explanation, and the backward pass
    keeps one input's activations (AASIST's are large), not eight.
    """
    generator = torch.Generator().manual_seed(SEED)
    spread = float(x.max() - x.min()) or 1.0
    sigma = NOISE_LEVEL[detector.input_kind] * spread
    noise = torch.randn((SMOOTHGRAD_SAMPLES, *x.shape[1:]), generator=generator) * sigma
    total_abs = np.zeros(x.shape[1:], dtype=np.float64)
    total = np.zeros(x.shape[1:], dtype=np.float64)
    for copy in noise:
        gradient = forward_thread().submit(_gradient, detector, x + copy).result()
        total_abs += np.abs(gradient)
        total += gradient
    return total_abs / SMOOTHGRAD_SAMPLES, total / SMOOTHGRAD_SAMPLES


def _gradient(detector: Detector, x: torch.Tensor) -> np.ndarray:
    """The gradient of the log-odds of human with respect to the input ``x`` (``(1, ...)``),
    without the batch axis."""
    inputs = x.to(detector.device).requires_grad_(True)
    with torch.enable_grad():
        log_probs = torch.log_softmax(detector.model(inputs).float(), dim=1)[0]
        b = detector.bonafide_index
        others = torch.cat([log_probs[:b], log_probs[b + 1 :]])
        log_odds = log_probs[b] - torch.logsumexp(others, dim=0)
        (gradient,) = torch.autograd.grad(log_odds, inputs)
    return gradient[0].detach().cpu().double().numpy()


def _shares(values: np.ndarray) -> list[float]:
    total = float(values.sum())
    if total <= 0 or not np.isfinite(total):
        return [1.0 / values.size] * values.size
    return [float(v) / total for v in values]


def _time_shares(profile: np.ndarray, covered: float) -> list[float]:
    """Shares of a window's attribution over time (``profile``: one value per sample or image
    column) in :data:`N_SEGMENTS` equal slices of the audio it holds: the whole window, or, for
    a clip tiled to fill it, the first ``covered`` part of it (each repeat folded onto it)."""
    where = (np.arange(profile.size) + 0.5) / profile.size  # 0..1 over the window
    folded = np.mod(where, covered) / covered  # 0..1 over the audio itself
    which = np.minimum((folded * N_SEGMENTS).astype(int), N_SEGMENTS - 1)
    return _shares(np.bincount(which, weights=profile, minlength=N_SEGMENTS))


def _row_bands(heat: np.ndarray, detector: Detector) -> list[Band]:
    """Sum the heatmap's rows into :data:`N_BANDS` bands of equal height, lowest first."""
    axis, unit = bin_axis(detector.feature_spec)
    height = heat.shape[0]
    per_row = heat.sum(axis=1)[::-1]  # lowest frequency first
    groups = np.array_split(np.arange(height), N_BANDS)
    shares = _shares(np.array([per_row[g].sum() for g in groups]))
    positions = np.arange(axis.size)

    def value_at(row_edge: int) -> float:
        # Row edges (from the bottom) to bin coordinates, as the image was resized from bins.
        where = np.clip(row_edge / height * axis.size - 0.5, 0, axis.size - 1)
        return float(np.interp(where, positions, axis))

    return [
        Band(value_at(int(g[0])), value_at(int(g[-1]) + 1), unit, share)
        for g, share in zip(groups, shares, strict=True)
    ]


def _spectrum_bands(gradient: np.ndarray, sample_rate: int) -> list[Band]:
    """The gradient's power spectrum summed into :data:`N_BANDS` mel-spaced bands."""
    power = np.abs(np.fft.rfft(gradient)) ** 2
    frequencies = np.fft.rfftfreq(gradient.size, d=1.0 / sample_rate)
    edges = mel_edges(0.0, sample_rate / 2, N_BANDS)
    which = np.clip(np.searchsorted(edges, frequencies, side="right") - 1, 0, N_BANDS - 1)
    shares = _shares(np.bincount(which, weights=power, minlength=N_BANDS))
    return [Band(float(edges[i]), float(edges[i + 1]), "Hz", shares[i]) for i in range(N_BANDS)]


def _denormalised(x: np.ndarray) -> np.ndarray:
    """A normalised ``(3, H, W)`` model input back to the ``(H, W, 3)`` uint8 image."""
    image = x.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def heatmap_cells(explanation: Explanation, size: int) -> list[list[float]] | None:
    """The heatmap averaged down to at most ``size`` cells a side (box filter), rounded, as
    nested lists (row 0 the highest frequency); None for waveform models."""
    heatmap = explanation.heatmap
    if heatmap is None:
        return None
    height, width = heatmap.shape
    if height > size or width > size:
        scale = size / max(height, width)
        shape = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = Image.fromarray(heatmap.astype(np.float32)).resize(shape, Image.Resampling.BOX)
        heatmap = np.asarray(resized)
    return [[round(float(v), 4) for v in row] for row in heatmap]


def overlay(explanation: Explanation, strength: float = 0.85) -> np.ndarray | None:
    """The explained image in grey with the heatmap laid over it in red ``(H, W, 3)`` uint8
    (image models; None for waveform models). The heat is scaled to its 99th percentile (one hot
    pixel does not wash the rest out) and raised to 1.5, so that only the strong areas colour."""
    if explanation.image is None or explanation.heatmap is None:
        return None
    heat = explanation.heatmap.astype(np.float64)
    top = float(np.quantile(heat, 0.99)) or float(heat.max()) or 1.0
    alpha = strength * np.clip(heat / top, 0.0, 1.0)[:, :, None] ** 1.5
    grey = explanation.image.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.8
    red = np.array([255.0, 30.0, 10.0])
    blended = grey * (1 - alpha) + red * alpha
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
