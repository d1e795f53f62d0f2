"""Benchmark: decoding long, high-rate, multi-channel files to 16 kHz mono, time and peak memory.

Each file is a square wave (low entropy, so a FLAC of minutes at 384 kHz is about a megabyte)
written a block at a time. Two paths decode it:

- ours:      ``fakevoice.audio.load_audio``, which downmixes, measures and resamples a block at a
             time (:class:`fakevoice.sample_stream.SampleStream`);
- reference: the whole-array way it replaced: every decoded frame downmixed and kept, joined at
             the file's rate, then resampled in one call (``fakevoice.sample_stream.resample``).

Peak memory is what ``tracemalloc`` sees (NumPy's arrays included; FFmpeg's and soxr's own
buffers, which are small and fixed, are not), in a run of its own; the time is of a run without
tracing. ``max |diff|`` compares the two outputs (0 means sample for sample the same).

Usage: ``.venv/bin/python bench/decoding.py [--seconds 120] [--long]`` (``--long`` adds the
590 s FLAC at 384 kHz that a review found decoding in 2.2 GiB).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakevoice.audio import TARGET_SAMPLE_RATE, load_audio  # noqa: E402
from fakevoice.sample_stream import resample  # noqa: E402

MIB = 2**20


def square_wave_file(container: str, seconds: float, sample_rate: int, channels: int) -> bytes:
    """A square wave at +-0.25 changing every 4,096 samples, written a block at a time."""
    buffer = io.BytesIO()
    n = round(seconds * sample_rate)
    half_period = 4096
    with sf.SoundFile(buffer, "w", sample_rate, channels, format=container) as handle:
        for start in range(0, n, 64 * half_period):
            index = np.arange(start, min(start + 64 * half_period, n))
            level = np.where(index // half_period % 2 == 0, 0.25, -0.25).astype(np.float32)
            handle.write(np.repeat(level[:, None], channels, axis=1))
    return buffer.getvalue()


def decode_whole(data: bytes) -> np.ndarray:
    """The reference: all frames (16-bit planar) downmixed to float32 and kept, joined, then
    resampled in one call."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [
            (
                frame.to_ndarray().reshape(len(frame.layout.channels), -1).mean(axis=0) / 32768.0
            ).astype(np.float32)
            for frame in container.decode(stream)
        ]
        rate = int(stream.codec_context.sample_rate)
    return resample(np.concatenate(frames), rate, TARGET_SAMPLE_RATE)


def measure(decode: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """Seconds of an untraced run, traced peak MiB of a second run, and the output."""
    start = time.perf_counter()
    samples = decode()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    try:
        decode()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak / MIB, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each file")
    parser.add_argument("--long", action="store_true", help="also 590 s of stereo at 384 kHz")
    args = parser.parse_args()
    cases = [("FLAC", 48000, 2, args.seconds), ("FLAC", 192000, 4, args.seconds)]
    if args.long:
        cases.append(("FLAC", 384000, 2, 590.0))
    header = (
        f"{'file':<28} {'MB':>6} {'output MiB':>10} {'path':<10} {'s':>7} {'peak MiB':>9} "
        f"{'max |diff|':>10}"
    )
    print(header)
    print("-" * len(header))
    for container, rate, channels, seconds in cases:
        data = square_wave_file(container, seconds, rate, channels)
        name = f"{container} {rate // 1000} kHz {channels} ch {seconds:g} s"
        ours = measure(
            lambda data=data, limit=seconds + 1: load_audio(data, max_seconds=limit).samples
        )
        reference = measure(lambda data=data: decode_whole(data))
        output = ours[2]
        for label, (elapsed, peak, samples) in (("ours", ours), ("reference", reference)):
            diff = float(np.max(np.abs(samples - output)))
            print(
                f"{name:<28} {len(data) / 1e6:>6.2f} {output.nbytes / MIB:>10.1f} {label:<10} "
                f"{elapsed:>7.2f} {peak:>9.1f} {diff:>10.1e}"
            )


if __name__ == "__main__":
    main()
