"""Benchmark: wav files to spectrogram PNGs, our pipeline against the original workbench's way.

Makes ``--n`` clips of ``--seconds`` seconds as 16 kHz PCM16 wav files in a temporary folder (real
speech: the Debian asterisk G.722 prompts decoded with PyAV, concatenated and cut; synthetic voiced
signals when those are not installed), then renders every clip to a 224 x 224 mel spectrogram PNG:

- ours:      ``fakevoice.audio.load_audio`` (``soundfile.read`` while that module is missing)
             + ``features.render_image`` + ``png.save_png``, in a process pool over the
             available cores, and once more in a single process;
- reference: ``librosa.load`` + ``librosa.feature.melspectrogram`` + ``librosa.power_to_db`` +
             a matplotlib figure (``librosa.display.specshow``, axis off) saved with
             ``plt.savefig``, one file after another, as the original workbench did.

Imports and one warm-up file per method are outside the timings; pool start-up is inside.

Usage: ``.venv/bin/python bench/spectrograms.py [--n 200] [--seconds 3] [--workers N]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakevoice.features import FeatureSpec, render_image  # noqa: E402
from fakevoice.png import save_png  # noqa: E402

SAMPLE_RATE = 16000
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
SPEC = FeatureSpec()  # mel, n_fft 512, hop 160, 128 mels, 80 dB, 224 x 224, magma

Job = tuple[Path, Path]  # (wav in, png out)


# --- clips ---------------------------------------------------------------------------------------


def asterisk_speech() -> Iterator[np.ndarray]:
    """Decoded asterisk prompts (float32, 16 kHz), cycling through the installed languages."""
    import av

    folders = sorted(p for p in ASTERISK_SOUNDS.iterdir() if p.is_dir())
    files = [sorted(folder.glob("*.g722")) for folder in folders]
    for index in range(max((len(f) for f in files), default=0)):
        for language_files in files:
            if index < len(language_files):
                with av.open(str(language_files[index]), format="g722") as container:
                    frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
                if frames:
                    yield (np.concatenate(frames) / 32768.0).astype(np.float32)


def synthetic_speech(seed: int = 0) -> Iterator[np.ndarray]:
    """Endless voiced test signals: harmonics of a wandering f0 with syllable-rate envelopes."""
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    while True:
        f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
        envelope = (0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 6) * t))) ** 2
        y = voiced * envelope + 0.01 * rng.standard_normal(t.size)
        yield (0.3 * y / np.abs(y).max()).astype(np.float32)


def make_clips(folder: Path, n: int, seconds: float) -> tuple[list[Path], str]:
    """Write ``n`` clips of ``seconds`` s as 16 kHz PCM16 wav; return paths and the source used."""
    use_asterisk = ASTERISK_SOUNDS.is_dir() and any(ASTERISK_SOUNDS.rglob("*.g722"))
    if use_asterisk:
        try:
            import av  # noqa: F401
        except ImportError:
            use_asterisk = False
    source = asterisk_speech() if use_asterisk else synthetic_speech()
    length = int(seconds * SAMPLE_RATE)
    paths: list[Path] = []
    buffer = np.zeros(0, dtype=np.float32)
    while len(paths) < n:
        while buffer.size < length:
            chunk = next(source, None)
            if chunk is None:  # ran out of prompts: go round again
                source = asterisk_speech() if use_asterisk else synthetic_speech()
                continue
            buffer = np.concatenate([buffer, chunk])
        path = folder / f"clip_{len(paths):04d}.wav"
        sf.write(path, buffer[:length], SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
        buffer = buffer[length:]
    name = "Debian asterisk G.722 prompts (PyAV)" if use_asterisk else "synthetic voiced signals"
    return paths, name


# --- our pipeline --------------------------------------------------------------------------------


def our_loader() -> tuple[Callable[[Path], np.ndarray], str]:
    """``fakevoice.audio.load_audio`` when it exists, else ``soundfile.read``."""
    try:
        from fakevoice.audio import load_audio
    except ImportError:

        def read(path: Path) -> np.ndarray:
            samples, _ = sf.read(path, dtype="float32")
            return np.asarray(samples)

        return read, "soundfile.read (fakevoice.audio not importable yet)"

    def load(path: Path) -> np.ndarray:
        return load_audio(path, SAMPLE_RATE).samples

    return load, "fakevoice.audio.load_audio"


LOAD, LOADER_NAME = our_loader()


def render_ours(job: Job) -> None:
    wav, png = job
    save_png(render_image(LOAD(wav), SPEC), png)


def run_ours(jobs: Sequence[Job], workers: int) -> float:
    start = time.perf_counter()
    if workers <= 1:
        for job in jobs:
            render_ours(job)
    else:
        chunksize = max(1, len(jobs) // (workers * 8))
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            for _ in pool.map(render_ours, jobs, chunksize=chunksize):
                pass
    return time.perf_counter() - start


# --- the original workbench's way ----------------------------------------------------------------


def run_reference(jobs: Sequence[Job]) -> float:
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def render(wav: Path, png: Path) -> None:
        y, sr = librosa.load(wav, sr=SAMPLE_RATE)
        mel = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=SPEC.n_fft, hop_length=SPEC.hop_length, n_mels=SPEC.n_mels
        )
        mel_db = librosa.power_to_db(mel, ref=np.max, top_db=SPEC.top_db)
        plt.figure(figsize=(SPEC.image_width / 100, SPEC.image_height / 100), dpi=100)
        librosa.display.specshow(
            mel_db, sr=sr, hop_length=SPEC.hop_length, y_axis="mel", cmap=SPEC.colormap
        )
        plt.axis("off")
        plt.savefig(png, bbox_inches="tight", pad_inches=0)
        plt.close()

    render(jobs[0][0], jobs[0][1].with_name("warmup.png"))  # lazy imports in librosa, matplotlib
    start = time.perf_counter()
    for job in jobs:
        render(*job)
    return time.perf_counter() - start


# --- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of clips (default 200)")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length, s (default 3)")
    parser.add_argument("--workers", type=int, default=cores, help=f"pool size (default {cores})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fakevoice-bench-") as tmp:
        root = Path(tmp)
        (root / "wav").mkdir()
        started = time.perf_counter()
        wavs, source = make_clips(root / "wav", args.n, args.seconds)
        print(f"{len(wavs)} clips of {args.seconds:g} s from {source} "
              f"({time.perf_counter() - started:.1f} s to prepare)")  # fmt: skip
        print(f"loader: {LOADER_NAME}; cores available: {cores}; spec: {SPEC}")

        def jobs(method: str) -> list[Job]:
            (root / method).mkdir()
            return [(wav, root / method / f"{wav.stem}.png") for wav in wavs]

        render_ours((wavs[0], root / "warmup.png"))  # filterbank caches, inherited by the fork
        rows = [
            (f"ours, {args.workers} processes", run_ours(jobs("ours_pool"), args.workers)),
            ("ours, 1 process", run_ours(jobs("ours_serial"), 1)),
            ("reference (librosa + matplotlib), serial", run_reference(jobs("reference"))),
        ]
        sizes = {
            method: np.mean([p.stat().st_size for p in (root / method).glob("*.png")]) / 1024
            for method in ("ours_pool", "reference")
        }

    reference_seconds = rows[-1][1]
    print()
    print(f"{'method':<42} {'files':>6} {'seconds':>8} {'files/s':>8} {'vs reference':>13}")
    for method, seconds in rows:
        ratio = reference_seconds / seconds
        print(f"{method:<42} {len(wavs):>6} {seconds:>8.2f} {len(wavs) / seconds:>8.1f} "
              f"{ratio:>12.1f}x")  # fmt: skip
    print(f"\nmean PNG size: ours {sizes['ours_pool']:.0f} KiB, "
          f"reference {sizes['reference']:.0f} KiB")  # fmt: skip


if __name__ == "__main__":
    main()
