"""One unit of a dataset build: a recording's clips, its spoofs, and their images.

A unit runs in a worker process (spawned, one thread each): it loads one recording, cuts it into
utterances, makes each generator's copy, puts every clip through the shared channel, writes the
16 kHz wav and renders one image per noise level. :func:`item_image` is the single rule that turns
a stored clip into an item's image; :mod:`fakevoice.datasets.render` uses it too.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakevoice.audio import TARGET_SAMPLE_RATE, load_audio, write_wav
from fakevoice.datasets import channel
from fakevoice.datasets.generators import TTS_SENTENCES, get_generator
from fakevoice.datasets.manifest import BONAFIDE, clip_path, image_path, item_id, read_clip
from fakevoice.datasets.noise import NoiseLevel, add_noise, item_seed
from fakevoice.datasets.noise import noise_name as noise_folder
from fakevoice.datasets.sources import Recording, split_at_silences
from fakevoice.errors import FakeVoiceError
from fakevoice.features import FeatureSpec, render_image
from fakevoice.png import save_png
from fakevoice.settings import get_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """Everything one unit needs besides its recording (sent to worker processes)."""

    out_dir: str
    seed: int
    generators: tuple[str, ...]
    noise_levels: tuple[NoiseLevel, ...]
    feature_spec: dict[str, Any]
    equalise: bool
    split_long: bool


@dataclass
class UnitResult:
    rows: list[dict[str, Any]]
    notes: list[str]


def worker_count(workers: int, units: int) -> int:
    """Processes for ``units`` pieces of work: ``workers``, or every core (or the
    ``build_workers`` setting) when 0, and never more than there are units."""
    if workers <= 0:
        workers = get_settings().build_workers or len(os.sched_getaffinity(0))
    return max(1, min(workers, units))


def init_worker() -> None:
    """One thread per worker process: the processes already use every core."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def item_image(stored: np.ndarray, level: NoiseLevel, item: str, spec: FeatureSpec) -> np.ndarray:
    """The image of one item: the stored 16 kHz clip, the item's seeded noise, then the features
    (:func:`~fakevoice.features.render_image`, which takes the clip's DC offset off first).

    Args:
        stored: the clip as written (PCM16 read back), ``(n,)`` float32.
        level: the item's noise level (SNR in dB, or None for clean).
        item: the item id (seeds the noise).
        spec: the dataset's features.
    """
    return render_image(add_noise(stored, level, item_seed(item)), spec)


def build_unit(recording: Recording, plan: Plan) -> UnitResult:
    """Load one recording and write the clips and images of its utterances."""
    notes: list[str] = []
    try:
        audio = load_audio(recording.path, TARGET_SAMPLE_RATE)
    except FakeVoiceError as error:
        logger.warning("Skipping %s: %s", recording.path.name, error)
        return UnitResult([], [f"unreadable recording {recording.key}: {error}"])
    samples = audio.samples
    pieces = (
        split_at_silences(samples, TARGET_SAMPLE_RATE) if plan.split_long else [(0, samples.size)]
    )
    spec = FeatureSpec.from_dict(plan.feature_spec)
    rows: list[dict[str, Any]] = []
    for index, (start, end) in enumerate(pieces):
        utterance = recording.key if len(pieces) == 1 else f"{recording.key}-p{index}"
        clean = samples[start:end]
        for label, clip in _clips(recording, utterance, clean, plan, notes):
            rows += _write_clip(recording, utterance, label, clip, plan, spec, notes)
    if not pieces:
        notes.append(f"recording {recording.key} has no piece of at least 1 s")
    return UnitResult(rows, notes)


def _clips(
    recording: Recording, utterance: str, clean: np.ndarray, plan: Plan, notes: list[str]
) -> list[tuple[str, np.ndarray]]:
    """The recording's own clip and the spoofs made from it, before the channel."""
    clips = [(recording.label, clean)]
    if recording.label != BONAFIDE:
        return clips
    for name in plan.generators:
        generator = get_generator(name)
        text = None
        if generator.kind == "tts":
            sentences = TTS_SENTENCES.get(recording.language, [])
            speaks = generator.languages is None or recording.language in generator.languages
            if not sentences or not speaks:
                notes.append(f"generator '{name}' does not speak '{recording.language}'")
                continue
            text = sentences[item_seed(plan.seed, utterance, "text") % len(sentences)]
        try:
            spoof = generator.synthesize(
                clean, TARGET_SAMPLE_RATE, text, recording.language,
                item_seed(plan.seed, utterance, name),
            )  # fmt: skip
        except (FakeVoiceError, ValueError, RuntimeError, FloatingPointError) as error:
            logger.warning("Generator %s failed on %s: %s", name, utterance, error)
            notes.append(f"generator '{name}' failed on a clip")
            continue
        clips.append((name, spoof))
    return clips


def _write_clip(
    recording: Recording,
    utterance: str,
    label: str,
    clip: np.ndarray,
    plan: Plan,
    spec: FeatureSpec,
    notes: list[str],
) -> list[dict[str, Any]]:
    """Channel, wav and one image per noise level; the manifest rows of this clip."""
    out_dir = Path(plan.out_dir)
    if plan.equalise:
        try:
            clip = channel.equalise(
                clip, TARGET_SAMPLE_RATE, item_seed(plan.seed, utterance, label)
            )
        except FakeVoiceError as error:
            notes.append(f"a '{label}' clip was unusable after the channel ({error})")
            return []
    relative_clip = clip_path(recording.speaker, label, utterance)
    (out_dir / relative_clip).parent.mkdir(parents=True, exist_ok=True)
    write_wav(out_dir / relative_clip, clip, TARGET_SAMPLE_RATE)
    stored = read_clip(out_dir, relative_clip)  # the PCM16 clip, exactly as models will read it
    rows = []
    for level in plan.noise_levels:
        noise = noise_folder(level)
        item = item_id(utterance, label, noise)
        relative_image = image_path(noise, recording.speaker, label, item)
        save_png(item_image(stored, level, item, spec), out_dir / relative_image)
        rows.append(
            {
                "item": item,
                "utterance": utterance,
                "speaker": recording.speaker,
                "class": label,
                "generator": "" if label == BONAFIDE else label,
                "noise": noise,
                "clip_path": relative_clip,
                "image_path": relative_image,
                "duration": round(stored.size / TARGET_SAMPLE_RATE, 4),
                "language": recording.language,
                "source": recording.source,
            }
        )
    return rows
