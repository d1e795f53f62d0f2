"""fakevoice.sample_stream: audio put in a chunk at a time comes out as the whole array would."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import speechlike

from fakevoice.sample_stream import BLOCK_SAMPLES, SampleStream, resample


def chunks_of(x: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """``x`` cut at random places into pieces from empty to longer than a block."""
    cuts = np.sort(rng.integers(0, x.size, 40))
    cuts = np.concatenate([cuts, [BLOCK_SAMPLES // 3, x.size - 1]])
    return np.split(x, np.sort(cuts))


@pytest.mark.parametrize(("orig", "target"), [(44100, 16000), (16000, 16000), (8000, 22050)])
def test_chunks_come_out_as_the_whole_recording(orig: int, target: int) -> None:
    rng = np.random.default_rng(0)
    x = speechlike(7.3, orig) * np.linspace(1.0, 12.0, round(7.3 * orig), dtype=np.float32)
    x[: x.size // 3] = np.clip(x[: x.size // 3], -1.2, 1.2)  # flat early, below the final peak
    x[-200:] = 3.5  # the peak comes last, in a run of equal samples
    stream = SampleStream(orig, target)
    for chunk in chunks_of(x, rng):
        stream.add(chunk)
    samples, summary = stream.finish()

    np.testing.assert_array_equal(samples, resample(x, orig, target))
    assert samples.dtype == np.float32
    assert summary.n_samples == x.size and summary.n_invalid == 0
    assert summary.mean == pytest.approx(float(x.mean(dtype=np.float64)), abs=1e-12)
    assert (summary.minimum, summary.maximum) == (float(x.min()), 3.5)
    clipped = np.mean(np.abs(x) >= 0.999 * 3.5)
    assert summary.clipped_fraction == clipped
    assert clipped >= 200 / x.size


def test_invalid_samples_are_counted() -> None:
    x = speechlike(2.0, 48000)
    x[[5, 70000]] = np.nan
    x[100] = -np.inf
    stream = SampleStream(48000, 16000)
    stream.add(x[:60000])
    stream.add(x[60000:])
    _, summary = stream.finish()
    assert (summary.n_invalid, summary.n_samples) == (3, 96000)


def test_an_integer_file_counts_full_scale_of_one() -> None:
    x = np.clip(speechlike(2.0, 16000) * 10, -1.0, 1.0)
    stream = SampleStream(16000, 16000)
    stream.add(x)
    samples, summary = stream.finish()
    np.testing.assert_array_equal(samples, x)
    assert samples is not x
    assert summary.clipped_fraction == np.mean(np.abs(x) >= 0.999) > 0.1
