"""The detector: load a stored model once, score a clip through the model's own preprocessing.

Verdict rule (DESIGN.md): ``p_human = P(bonafide)``; if ``max(p_human, 1 - p_human) < threshold`` the
verdict is *inconclusive*, otherwise *human* or *machine-generated* (naming the most probable
generator class when the model knows generators). Audio is cut into model-length windows every half
window (the last aligned to the end; a short clip is tiled for a waveform model, rendered whole
for an image model, as its dataset rendered every item); the clip's class log-probabilities are
the mean of the windows' log-softmax outputs, renormalised.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file

from fakevoice.cautions import familiarity_cautions, verdict_cautions
from fakevoice.errors import InvalidSpecError, ModelFileError
from fakevoice.features import FeatureSpec
from fakevoice.metrics.calibration import Calibration
from fakevoice.metrics.familiarity import Familiarity, captured_features
from fakevoice.models.registry import build_inference_model
from fakevoice.preprocess import window_batch, window_batches

if TYPE_CHECKING:
    from fakevoice.audio import Audio

logger = logging.getLogger(__name__)

VerdictLabel = Literal["human", "machine-generated", "inconclusive"]
DEFAULT_THRESHOLD = 0.60
BONAFIDE = "bonafide"
_forward_thread: tuple[int, ThreadPoolExecutor] | None = None
_forward_thread_lock = threading.Lock()


def forward_thread() -> ThreadPoolExecutor:
    """The one thread that runs every detector's forward passes in this process, in turn.

    Made per process: a forked child inherits the executor but not its thread, and would wait
    for it for ever.
    """
    global _forward_thread
    with _forward_thread_lock:
        if _forward_thread is None or _forward_thread[0] != os.getpid():
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fakevoice-forward")
            _forward_thread = (os.getpid(), executor)
        return _forward_thread[1]


@dataclass(frozen=True)
class WindowScore:
    """One window of the timeline: where it lies (seconds) and how human it sounds."""

    start: float
    end: float
    p_human: float
    top_class: str


@dataclass(frozen=True)
class Verdict:
    """The answer for one clip."""

    label: VerdictLabel
    p_human: float
    p_fake: float
    generator: str | None
    probabilities: dict[str, float]
    threshold: float
    windows: list[WindowScore]
    duration: float
    sample_rate: int
    cautions: list[str] = field(default_factory=list)
    """Why the verdict deserves less trust (:mod:`fakevoice.cautions`); empty when none."""
    typicality: float | None = None
    """The share of the model's validation clips whose features lie at least as far from its
    classes as this clip's (its median window; :mod:`fakevoice.metrics.familiarity`): near 0 for
    a clip unlike the audio the model learned from. None for a model without a reference."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    probabilities: dict[str, float], bonafide: str, threshold: float
) -> tuple[VerdictLabel, str | None]:
    """Apply the verdict rule to class probabilities."""
    if not 0.5 <= threshold <= 1.0:
        raise InvalidSpecError(f"threshold must be between 0.5 and 1.0; got {threshold}")
    p_human = probabilities[bonafide]
    p_fake = 1.0 - p_human
    fakes = {k: v for k, v in probabilities.items() if k != bonafide}
    generator = max(fakes, key=lambda k: fakes[k]) if fakes else None
    if generator in {"spoof", None}:
        generator = None
    if max(p_human, p_fake) < threshold:
        return "inconclusive", generator
    return ("human", None) if p_human >= p_fake else ("machine-generated", generator)


class Detector:
    """A stored model ready to score clips (load it once; it is safe to share between threads)."""

    def __init__(
        self, model: torch.nn.Module, manifest: dict[str, Any], device: torch.device | None = None
    ) -> None:
        self.manifest = manifest
        self.class_names: list[str] = list(manifest["class_names"])
        self.bonafide_index: int = int(manifest.get("bonafide_index", 0))
        self.sample_rate: int = int(manifest.get("sample_rate", 16000))
        self.window: int = int(manifest["clip_samples"])
        self.input_kind: str = manifest["input_kind"]
        self.feature_spec = (
            FeatureSpec.from_dict(manifest["feature_spec"])
            if self.input_kind == "image" and manifest.get("feature_spec")
            else FeatureSpec()
        )
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        # Fitted on the validation split after training (fakevoice.metrics.calibration); models
        # from elsewhere (official AASIST, older runs) have none and are used as they are.
        self.calibration = Calibration.from_dict(manifest.get("calibration"), len(self.class_names))
        # Fitted on the validation split too; older models and imported ones have none.
        self.familiarity = Familiarity.from_dict(manifest.get("familiarity"), len(self.class_names))
        if self.familiarity is not None and not self.familiarity.fits(self.model):
            logger.warning("%s: the familiarity reference does not fit the model", manifest["arch"])
            self.familiarity = None
        if (
            self.familiarity is not None
            and self.input_kind == "image"
            and self.familiarity.short_clips != "whole"
        ):  # made from tiled pictures of short clips, which this detector no longer makes
            self.familiarity = None

    @classmethod
    def from_bundle(cls, folder: Path, device: torch.device | None = None) -> Detector:
        """Load a safe bundle folder (``manifest.json`` + ``model.safetensors``); never unpickles."""
        manifest_path, weights_path = folder / "manifest.json", folder / "model.safetensors"
        if not manifest_path.is_file() or not weights_path.is_file():
            raise ModelFileError(
                "This model has no safe bundle (manifest.json + model.safetensors)."
            )
        try:
            manifest = json.loads(manifest_path.read_text())
            state = load_file(str(weights_path))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"The model files could not be read: {exc}") from None
        model = build_inference_model(manifest)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(
                f"The weights do not match the '{manifest.get('arch')}' architecture."
            ) from exc
        return cls(model, manifest, device)

    def model_inputs(self, samples: np.ndarray) -> tuple[torch.Tensor, list[int]]:
        """The batch the model sees for a clip: ``(n_windows, ...)`` and window starts."""
        return window_batch(samples, self.window, self._image_spec)

    @property
    def _image_spec(self) -> FeatureSpec | None:
        """How an image model renders a window; None for a waveform model."""
        return self.feature_spec if self.input_kind == "image" else None

    def window_log_probs(
        self, samples: np.ndarray, batch_size: int = 16
    ) -> tuple[np.ndarray, list[int]]:
        """Log-softmax outputs per window, ``(n_windows, n_classes)``, calibrated when the model
        keeps a calibration, and window starts."""
        log_probs, starts, _ = self.window_outputs(samples, batch_size)
        return log_probs, starts

    def window_outputs(
        self, samples: np.ndarray, batch_size: int = 16
    ) -> tuple[np.ndarray, list[int], np.ndarray | None]:
        """:meth:`window_log_probs`, with the features each window's class scores were read
        from, ``(n_windows, d)``, when the model keeps a familiarity reference (else None).

        The forward passes run on the process's one model thread (:func:`forward_thread`), one
        at a time, whichever thread asks: with OpenMP, every thread that calls into torch gets
        its own team of compute threads, and many teams on a few cores fight each other (with 16
        concurrent API requests, throughput fell by a third before this).
        """
        batches, starts = window_batches(samples, self.window, self._image_spec, batch_size)

        def forward(batch: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            with torch.inference_mode(), self._features() as features:
                logits = self.model(batch.to(self.device))
                return torch.log_softmax(logits.float(), dim=1).cpu(), features

        outputs: list[torch.Tensor] = []
        features: list[torch.Tensor] = []
        with torch.inference_mode():
            for batch in batches:  # cut out and rendered in this thread, one batch at a time
                log_probs, batch_features = forward_thread().submit(forward, batch).result()
                outputs.append(log_probs)
                features.extend(batch_features)
        scores = torch.cat(outputs).numpy()
        if self.calibration is not None:
            scores = self.calibration.apply(scores)
        return scores, starts, torch.cat(features).numpy() if features else None

    def _features(self) -> AbstractContextManager[list[torch.Tensor]]:
        """Where a forward pass leaves its features: nowhere without a familiarity reference."""
        if self.familiarity is None:
            return nullcontext([])
        return captured_features(self.model)

    def predict(self, audio: Audio, threshold: float = DEFAULT_THRESHOLD) -> Verdict:
        """Score a decoded clip (any rate: it is resampled to the model's rate) and decide, with
        the cautions that the clip's conditions call for."""
        verdict = self.predict_samples(
            audio.samples,
            audio.sample_rate,
            threshold,
            duration=audio.info.duration,
            original_rate=audio.info.sample_rate,
        )
        cautions = verdict_cautions(
            audio, self.sample_rate, self.window, tiled=self.input_kind == "waveform"
        )
        if self.familiarity is not None and verdict.typicality is not None:
            cautions += familiarity_cautions(verdict.typicality, self.familiarity.items)
        return replace(verdict, cautions=cautions)

    def predict_samples(
        self,
        samples: np.ndarray,
        sample_rate: int,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        duration: float | None = None,
        original_rate: int | None = None,
    ) -> Verdict:
        """Score ``(n,)`` float32 mono samples at ``sample_rate`` Hz and apply the verdict rule.

        Args:
            duration / original_rate: what to report for the clip as uploaded (default: these
                samples' own length in seconds and rate).
        """
        if sample_rate != self.sample_rate:
            from fakevoice.audio import resample

            samples = resample(samples, sample_rate, self.sample_rate)
        log_probs, starts, features = self.window_outputs(samples)
        mean = log_probs.mean(axis=0)
        clip = np.exp(mean - np.logaddexp.reduce(mean))
        probabilities = {name: float(p) for name, p in zip(self.class_names, clip, strict=True)}
        bonafide = self.class_names[self.bonafide_index]
        label, generator = decide(probabilities, bonafide, threshold)
        window_probs = np.exp(log_probs)
        timeline = [
            WindowScore(
                start=s / self.sample_rate,
                end=min(samples.size, s + self.window) / self.sample_rate,
                p_human=float(window_probs[i, self.bonafide_index]),
                top_class=self.class_names[int(window_probs[i].argmax())],
            )
            for i, s in enumerate(starts)
        ]
        p_human = probabilities[bonafide]
        return Verdict(
            label=label,
            p_human=p_human,
            p_fake=1.0 - p_human,
            generator=generator,
            probabilities=probabilities,
            threshold=threshold,
            windows=timeline,
            duration=duration if duration is not None else samples.size / self.sample_rate,
            sample_rate=original_rate if original_rate is not None else sample_rate,
            typicality=self._typicality(features),
        )

    def _typicality(self, features: np.ndarray | None) -> float | None:
        """The clip's typicality: that of its median window's distance from the classes."""
        if self.familiarity is None or features is None or not len(features):
            return None
        distance = float(np.median(self.familiarity.distances(features)))
        return float(self.familiarity.typicality(distance))


class DetectorCache:
    """A bounded, least-recently-used cache of loaded detectors, keyed by bundle folder, hash and
    device."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], Detector] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        folder: Path,
        key: str,
        device: torch.device | None = None,
        *,
        verify: Callable[[], None] | None = None,
    ) -> Detector:
        """The detector of ``folder``; loaded (after ``verify()`` passes) on a cache miss."""
        cache_key = (str(folder.resolve()), key, str(device or "cpu"))
        with self._lock:
            if cache_key in self._items:
                self._items.move_to_end(cache_key)
                return self._items[cache_key]
        if verify is not None:
            verify()
        detector = Detector.from_bundle(folder, device)
        with self._lock:
            self._items[cache_key] = detector
            self._items.move_to_end(cache_key)
            while len(self._items) > self.capacity:
                _, evicted = self._items.popitem(last=False)
                if evicted.device.type == "cuda":
                    # Its blocks go back to the GPU once no request holds it any more.
                    del evicted
                    torch.cuda.empty_cache()
        return detector

    def __len__(self) -> int:
        return len(self._items)


DETECTORS = DetectorCache()
