"""Recording cues of a clip that say nothing about the voice: length, silence, level, bandwidth.

A detector learns whatever separates its classes most easily. When human and machine clips of a
dataset differ in how they were recorded or cut (the silence before the speech, the level, the
band limit, exact digital zeros), a model can reach a low EER on that dataset without hearing
the synthesis at all, and fails on recordings that differ the other way. ASVspoof 2019 LA is the
known case: the length of the leading silence alone separates its classes well (Müller et al.,
"Speech is Silver, Silence is Golden", 2021). :mod:`fakevoice.datasets.shortcuts` measures how
well these cues separate a dataset's classes; this module only computes them for one clip.

Every cue is a plain function of the samples; frames are 25 ms every 10 ms at 16 kHz. The DC
offset itself never reaches a model (:func:`fakevoice.features.remove_dc`), but classes that
differ in it were recorded differently, and the rest of a recording chain (its hum, noise and
band) does reach it: the cue stays, and it is the only one an offset moves. The level, peak,
noise floor, silences and bandwidth are those of the clip less its mean, as a model hears it.
Digital silence is a sample equal to the one before and within -60 dBFS of the clip's mean, not
an exact zero: a zero less the clip's mean is no longer zero (a speech clip's mean is often
several PCM16 steps), and a run of zeros under an offset is still silence to a model; a clipped
stretch repeats its samples too, far from the mean, and is counted as clipping only. Clipped samples are counted as stored: full scale
is where the converter stopped, offset or not.
"""

from __future__ import annotations

import numpy as np

from fakevoice.features import remove_dc

FRAME_SECONDS = 0.025
HOP_SECONDS = 0.010
SILENCE_BELOW_PEAK_DB = 35.0  # a frame this far under the loudest frame counts as silence
BANDWIDTH_ENERGY = 0.99  # the bandwidth holds this share of the clip's energy
FLOOR_PERCENTILE = 10.0  # the noise floor: this percentile of the frames' levels
CLIPPED_ABOVE = 0.999  # |sample| at or above this (full scale = 1) counts as clipped
SAME_BELOW = 0.5 / 32768  # under half a PCM16 step apart: the same sample value
QUIET_BELOW = 1e-3  # |sample - the clip's mean| under -60 dBFS: silent, not a flat top
POWER_FLOOR = 1e-12  # keeps the log of a silent frame finite (-120 dB)
SPECTRUM_CHUNK = 1024  # frames transformed at once

CUE_NAMES: tuple[str, ...] = (
    "duration_s",
    "leading_silence_s",
    "trailing_silence_s",
    "level_dbfs",
    "peak_dbfs",
    "noise_floor_db",
    "bandwidth_hz",
    "digital_zeros",
    "clipped",
    "dc_offset",
)

CUE_LABELS: dict[str, str] = {
    "duration_s": "length",
    "leading_silence_s": "silence before the speech",
    "trailing_silence_s": "silence after the speech",
    "level_dbfs": "loudness",
    "peak_dbfs": "peak level",
    "noise_floor_db": "noise floor",
    "bandwidth_hz": "bandwidth",
    "digital_zeros": "share of digital silence",
    "clipped": "share of clipped samples",
    "dc_offset": "DC offset",
}

CUE_UNITS: dict[str, str] = {
    "duration_s": "s",
    "leading_silence_s": "s",
    "trailing_silence_s": "s",
    "level_dbfs": "dBFS (RMS)",
    "peak_dbfs": "dBFS",
    "noise_floor_db": "dBFS (quietest 10 % of frames)",
    "bandwidth_hz": f"Hz ({BANDWIDTH_ENERGY:.0%} of the energy below)",
    "digital_zeros": "fraction of samples (each equal to the one before, at the clip's mean)",
    "clipped": "fraction of samples",
    "dc_offset": "full scale",
}


def frames(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut a clip into overlapping frames (a read-only view: no copy of a long clip).

    Args:
        samples: ``(n,)`` float waveform, full scale 1.
        sample_rate: In Hz.

    Returns:
        ``(n_frames, frame_length)``: 25 ms frames every 10 ms; a clip shorter than one frame is
        one zero-padded frame.
    """
    frame_length = max(1, round(FRAME_SECONDS * sample_rate))
    hop_length = max(1, round(HOP_SECONDS * sample_rate))
    if samples.size < frame_length:
        return np.pad(samples, (0, frame_length - samples.size))[None, :]
    return np.lib.stride_tricks.sliding_window_view(samples, frame_length)[::hop_length]


def frame_levels_db(frame_matrix: np.ndarray) -> np.ndarray:
    """``(n_frames,)`` mean power of each frame in dB relative to full scale."""
    power = np.concatenate(
        [
            np.mean(frame_matrix[start : start + SPECTRUM_CHUNK].astype(np.float64) ** 2, axis=1)
            for start in range(0, frame_matrix.shape[0], SPECTRUM_CHUNK)
        ]
    )
    return 10.0 * np.log10(power + POWER_FLOOR)


def clip_cues(samples: np.ndarray, sample_rate: int) -> dict[str, float]:
    """The recording cues of one clip (:data:`CUE_NAMES`; words and units in :data:`CUE_LABELS`
    and :data:`CUE_UNITS`).

    Args:
        samples: ``(n,)`` float waveform, full scale 1 (as :func:`fakevoice.audio.load_audio`
            and the dataset's clips give it).
        sample_rate: In Hz.

    Returns:
        One float per name of :data:`CUE_NAMES`. Silence is the run of frames at the clip's
        start (end) more than 35 dB under its loudest frame; the bandwidth is the frequency under
        which 99 % of the clip's energy lies; the noise floor is the 10th percentile of the
        frames' levels. All three, the level and the peak are of the clip less its mean;
        ``digital_zeros`` is the share of samples equal to the one before (the first counts
        with the second) and within :data:`QUIET_BELOW` of the clip's mean.
    """
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    centred = remove_dc(samples)
    hop_seconds = max(1, round(HOP_SECONDS * sample_rate)) / sample_rate
    frame_matrix = frames(centred, sample_rate)
    levels = frame_levels_db(frame_matrix)
    active = levels > levels.max() - SILENCE_BELOW_PEAK_DB
    first = int(np.argmax(active))
    last = int(active.size - 1 - np.argmax(active[::-1]))
    window = np.hanning(frame_matrix.shape[1])
    power = np.zeros(frame_matrix.shape[1] // 2 + 1)
    for start in range(0, frame_matrix.shape[0], SPECTRUM_CHUNK):  # bounded memory for long clips
        chunk = frame_matrix[start : start + SPECTRUM_CHUNK] * window
        power += (np.abs(np.fft.rfft(chunk, axis=1)) ** 2).sum(axis=0)
    energy = np.cumsum(power)
    frequencies = np.fft.rfftfreq(frame_matrix.shape[1], 1.0 / sample_rate)
    if energy[-1] > 0:
        index = int(np.searchsorted(energy / energy[-1], BANDWIDTH_ENERGY))
        bandwidth = float(frequencies[min(index, frequencies.size - 1)])
    else:
        bandwidth = 0.0
    magnitude = np.abs(samples)
    steps = np.diff(samples, prepend=samples[1:2])
    size = max(1, samples.size)
    return {
        "duration_s": samples.size / sample_rate,
        "leading_silence_s": first * hop_seconds,
        "trailing_silence_s": (active.size - 1 - last) * hop_seconds,
        "level_dbfs": float(
            10.0 * np.log10(np.mean(centred.astype(np.float64) ** 2) + POWER_FLOOR)
        ),
        "peak_dbfs": float(20.0 * np.log10(float(np.abs(centred).max(initial=0.0)) + POWER_FLOOR)),
        "noise_floor_db": float(np.percentile(levels, FLOOR_PERCENTILE)),
        "bandwidth_hz": bandwidth,
        "digital_zeros": float(
            np.count_nonzero((np.abs(steps) < SAME_BELOW) & (np.abs(centred) < QUIET_BELOW)) / size
        ),
        "clipped": float(np.count_nonzero(magnitude >= CLIPPED_ABOVE) / size),
        "dc_offset": float(samples.mean()) if samples.size else 0.0,
    }
