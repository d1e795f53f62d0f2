"""When a verdict deserves less trust: the clip's conditions against the model's.

A detector only knows the audio it learned from. The demo datasets hold 16 kHz speech with a band
up to 7 kHz, clips of a few seconds, never clipped. A clip far from that still gets probabilities,
often confident ones, that mean little. :func:`verdict_cautions` names each such mismatch in a
sentence for the person reading the verdict; the verdict itself is unchanged.

* **Narrow band**: a file recorded below the model's rate holds nothing above half its rate; a
  file at the model's rate with (almost) nothing above 4 kHz was once a telephone recording.
* **Short**: a clip shorter than the model's window gives the model little speech: a waveform
  model hears it repeated to fill the window (as AASIST's evaluation does), an image model sees
  it once across its image, as its dataset showed every clip.
* **Little sound**: a recording that is mostly background (a call on hold, long pauses) gives
  the model a second or less of anything to judge.
* **Clipped**: samples flattened at full scale add harmonics that neither class had in training.

:func:`model_cautions` adds what the model's own figures say: a model whose validation EER is
near chance gives confident-looking probabilities that mean little on any clip. A model with no
validation EER of its own (uploaded without figures, its figures dropped or only reported by
another server's bundle, an imported checkpoint) is judged by the newest of the acting user's
tests on a dataset that measured it (:class:`TestedEer`) with the same bars; one neither trained
here nor so tested errs at a rate nobody here knows. A test whose items hold audio the model was
trained on measures nothing: its EER there is flattered. And
:func:`familiarity_cautions` what the model's features say of the clip: one that lies further
from every class than nearly all of its validation clips is unlike the audio it learned from (a
language, line, room or generator it never met), whatever the checks of the file found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from fakevoice.bundle_figures import REPORTED, whose_bundle
from fakevoice.metrics.familiarity import UNFAMILIAR
from fakevoice.spectral import power_spectrogram

if TYPE_CHECKING:
    from fakevoice.audio import Audio

TELEPHONE_BAND_HZ = 4000.0
EMPTY_BAND_DB = -50.0
"""Power above :data:`TELEPHONE_BAND_HZ` this far below the whole clip's counts as no power."""
CLIPPED_SHARE = 0.001
"""More than this share of samples at full scale is a clipped recording."""
SOUND_RANGE_DB = 30.0
"""A frame within this many dB of the loudest frame counts as sound, quieter ones as background."""
MIN_SOUND_SECONDS = 1.0
MAX_BACKGROUND_SHARE = 0.5
"""A clip with less sound than :data:`MIN_SOUND_SECONDS` is named only when it is mostly
background: a short clip of steady speech is the "short" caution's business."""
MEASURE_HINT = "Test on a dataset (on the Evaluate page, or fakevoice evaluate --queue)"
"""Where a model is measured so that the measure is kept: a test of models on a dataset, as a
background job whose results stay listed (``fakevoice evaluate`` without ``--queue`` keeps
none)."""
WEAK_MODEL_EER = 0.4
"""A validation EER at least this high: the model is little better than chance (0.5)."""
ERRING_MODEL_EER = 0.2
"""A validation EER at least this high (and under :data:`WEAK_MODEL_EER`): the model misjudges
one clip in five or more of the kind it learnt from; its verdict is one hint among others."""
_FRAME_SECONDS = 0.025
_BAND_N_FFT = 512  # 31 Hz bins at 16 kHz, frames side by side: a power ratio needs no overlap


def verdict_cautions(
    audio: Audio, model_rate: int, window: int, *, tiled: bool = True
) -> list[str]:
    """Sentences saying why a verdict on ``audio`` deserves less trust (empty: no reason found).

    Args:
        audio: the decoded clip (``audio.info`` describes the file as it was).
        model_rate: the sample rate the model was trained at, Hz.
        window: the model's window, samples at ``model_rate``.
        tiled: whether a clip shorter than the window is repeated to fill it (waveform models);
            an image model sees such a clip once, across its whole image.
    """
    cautions = []
    # A constant offset (DC) is power that is no sound: left in, it made the band above 4 kHz
    # look empty and every frame of background look as loud as the loudest.
    samples = audio.samples - np.float32(audio.samples.mean(dtype=np.float64))
    original = audio.info.sample_rate
    if original < model_rate:
        cautions.append(
            f"The file was recorded at {original / 1000:g} kHz, so it holds nothing above "
            f"{original / 2000:g} kHz; the model learned from {model_rate / 1000:g} kHz audio. "
            "Treat the verdict with care."
        )
    elif _band_db(samples, audio.sample_rate, TELEPHONE_BAND_HZ) < EMPTY_BAND_DB:
        cautions.append(
            f"The clip has almost nothing above {TELEPHONE_BAND_HZ / 1000:g} kHz, as a telephone "
            "recording; the model learned from wide-band audio. Treat the verdict with care."
        )
    if audio.duration * model_rate < window:
        how = (
            "it was repeated to fill it, so"
            if tiled
            else "the model saw it once, stretched across its image, so"
        )
        cautions.append(
            f"The clip ({audio.duration:.1f} s) is shorter than the model's window "
            f"({window / model_rate:.2f} s): {how} the verdict rests on little speech."
        )
    sound = _sound_seconds(samples, audio.sample_rate)
    if sound < MIN_SOUND_SECONDS and sound < MAX_BACKGROUND_SHARE * audio.duration:
        cautions.append(
            f"Only about {sound:.1f} s of the {audio.duration:.1f} s clip is louder than its "
            "background: the verdict rests on little sound."
        )
    if audio.info.clipped_fraction > CLIPPED_SHARE:
        cautions.append(
            f"The recording is clipped ({audio.info.clipped_fraction:.1%} of its samples at full "
            "scale): the distortion can look like synthesis."
        )
    return cautions


@dataclass(frozen=True)
class TestedEer:
    """What one of the user's tests on a dataset found of a model: the summary of its report.

    Attributes:
        test_id: the test's job id (``fakevoice evaluate --results <id>`` shows it).
        dataset: the dataset it was tested on.
        saved: when the model's result was saved, UTC.
        eer: its EER there (None: the items were all human or all machine, so none was measured).
        items: the items the EER rests on.
        trained_on: how many of those items hold audio the model was trained on (None: the test
            was on its own dataset, which changed since, so that is unknown).
    """

    test_id: int
    dataset: str
    saved: datetime
    eer: float | None
    items: int
    trained_on: int | None = 0

    @property
    def measures(self) -> bool:
        """Whether the test measured the model's error rate: an EER on audio it never heard."""
        return self.eer is not None and self.trained_on == 0


def model_cautions(
    metrics: Mapping[str, Any], *, measured_here: bool = False, tested: TestedEer | None = None
) -> list[str]:
    """A sentence when the model's own validation figures (``metrics.json``, kept in the store)
    say its verdicts mean little, or, when it has none, when the user's test of it says so or it
    was not measured here; empty for a good model.

    Args:
        metrics: the model's metrics as the store keeps them (``eer``: its own validation EER).
        measured_here: the model was trained here, so its error rate is known although it keeps
            no validation EER.
        tested: the user's test of the model that counts (one that :attr:`TestedEer.measures`
            when there is one); read only for a model without a validation EER of its own.
    """
    eer = metrics.get("eer")
    if isinstance(eer, int | float):
        items = metrics.get("valid_items")
        on = f" on {items} items" if isinstance(items, int) else ""
        # To a tenth of a point, as the model's line above a verdict gives it (45.8 %, not
        # 46 %), and so that 39.6 % (under the near-chance bar) never reads as 40 %.
        return _weak_model(eer, f"This model's own validation EER is {eer:.1%}{on}", own=True)
    if measured_here:
        return []
    if tested is not None and tested.measures and tested.eer is not None:
        found = (
            f"In your test on dataset {tested.dataset!r} ({_test_name(tested)}) this model's "
            f"EER was {tested.eer:.1%} on {tested.items:,} items"
        )
        return _weak_model(tested.eer, found, own=False)
    return [_unmeasured(metrics.get(REPORTED), tested, whose_bundle(metrics))]


def weak_model_sentence(eer: float, found: str, *, own: bool) -> str | None:
    """The sentence for a model that errs at ``eer`` (None under :data:`ERRING_MODEL_EER`), after
    the words saying where that was ``found``: on its own validation data (``own``) or in a
    test. The verdict's caution and the model card's weak spots both say it so."""
    if eer < ERRING_MODEL_EER:
        return None
    if eer < WEAK_MODEL_EER:
        how = (
            f"on audio like its training data it misjudges about {eer:.0%} of clips"
            if own
            else f"on that audio it misjudged about {eer:.0%} of clips"
        )
        return (
            f"{found}: {how} at its equal-error point. Weigh its verdict as one hint among "
            "others, not as a finding."
        )
    how = "even on audio like its training data it tells" if own else "on that audio it told"
    return (
        f"{found}: {how} human from machine speech little better than chance (50 %). Do not "
        "rely on its verdict."
    )


def _weak_model(eer: float, found: str, *, own: bool) -> list[str]:
    sentence = weak_model_sentence(eer, found, own=own)
    return [] if sentence is None else [sentence]


def _test_name(tested: TestedEer) -> str:
    return f"test #{tested.test_id}, {tested.saved:%Y-%m-%d}"


def _unmeasured(reported: object, tested: TestedEer | None, bundle: str) -> str:
    """The caution for a model whose error rate nobody measured here (``tested``: the user's
    test of it that measured nothing, if any; ``bundle``: whose bundle reported figures came
    in, :func:`~fakevoice.bundle_figures.whose_bundle`)."""
    if isinstance(reported, Mapping) and isinstance(reported.get("eer"), int | float):
        what = (
            "This model's error rate was not measured on this server: the validation EER of "
            f"{reported['eer']:.1%} that {bundle} reports was measured and signed by another "
            "server"
        )
    else:
        what = (
            "This model's error rate is unknown: it has no validation EER measured on this server"
        )
    if tested is None:
        return (
            f"{what}, and you have not tested it on a dataset here. Weigh its verdict as an "
            f"unmeasured hint; {MEASURE_HINT} measures it."
        )
    test = f"your test on dataset {tested.dataset!r} ({_test_name(tested)})"
    if tested.trained_on is None:
        why = (
            f"{test} was on the dataset it was trained on, changed since, so it may hold audio "
            "the model learnt from"
        )
    elif tested.trained_on > 0:
        why = (
            f"{test} held audio it was trained on ({tested.trained_on:,} of its "
            f"{tested.items:,} items), which flatters its EER there"
        )
    else:
        why = f"{test} held only human or only machine items, so it measured no EER"
    return (
        f"{what}, and {why}. Weigh its verdict as an unmeasured hint; {MEASURE_HINT} on "
        "recordings it was not trained on measures it."
    )


def typicality_text(typicality: float) -> str:
    """A typicality with the digits that tell which side of the caution (0.001) it is on: cut,
    not rounded, below 0.01 (0.00096 reads 0.00096, never 0.0010)."""
    if typicality >= 0.01:
        return f"{typicality:.2f}"
    if typicality >= UNFAMILIAR:
        return f"{math.floor(typicality * 1e4) / 1e4:.4f}"
    if typicality >= 0.0001:
        return f"{math.floor(typicality * 1e5) / 1e5:.5f}"
    return "under 0.0001"


def familiarity_cautions(typicality: float, items: int) -> list[str]:
    """A sentence when the clip's typicality (:mod:`fakevoice.metrics.familiarity`) is under
    :data:`~fakevoice.metrics.familiarity.UNFAMILIAR`: its features lie further from the model's
    classes than that share of the ``items`` validation clips do."""
    if typicality >= UNFAMILIAR:
        return []
    where = (
        f"further from all of them than any of the {items} clips it was validated on"
        if typicality <= 0.0
        else f"further from all of them than {1 - typicality:.2%} of the {items} clips it was "
        "validated on"
    )
    return [
        "This clip is unlike the audio this model learned from: in the model's own features it "
        f"is neither like its human nor like its machine-made clips, {where}. A language, "
        "telephone line, room, codec or generator it never met can do this; its verdict may "
        "mean little here."
    ]


def _band_db(samples: np.ndarray, sample_rate: int, above_hz: float) -> float:
    """Power above ``above_hz`` relative to the whole clip's, dB (``-inf`` for none)."""
    if sample_rate / 2 <= above_hz or samples.size < _BAND_N_FFT:
        return 0.0  # no band to measure: nothing to say
    per_bin = power_spectrogram(samples, _BAND_N_FFT, _BAND_N_FFT).sum(axis=1, dtype=np.float64)
    total = float(per_bin.sum())
    if total <= 0.0:
        return 0.0
    freqs = np.fft.rfftfreq(_BAND_N_FFT, 1.0 / sample_rate)
    high = float(per_bin[freqs > above_hz].sum())
    return -np.inf if high <= 0.0 else 10.0 * np.log10(high / total)


def _sound_seconds(samples: np.ndarray, sample_rate: int) -> float:
    """Seconds of 25 ms frames within :data:`SOUND_RANGE_DB` of the loudest frame."""
    frame = max(1, int(_FRAME_SECONDS * sample_rate))
    frames = samples.size // frame
    if frames == 0:
        return samples.size / sample_rate
    power = np.square(samples[: frames * frame].astype(np.float64)).reshape(frames, frame).mean(1)
    loud = power >= power.max() * 10.0 ** (-SOUND_RANGE_DB / 10.0)
    return float(loud.sum()) * frame / sample_rate
