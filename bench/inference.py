"""Per-clip CPU latency of AASIST and AASIST-L: our optimised path against the plain eager one.

The reference row is the straightforward eager reading of the published model (``fast=False``:
filter bank rebuilt per call, every layer as written); the optimised rows are our default path
(precomputed sinc filters, ``bn2`` folded into ``conv1``, channels-last encoder, a matrix-product
first convolution, in-place exp-based SELU) and, with ``--compile``, the same under
``torch.compile`` (inductor) of either path. Batch 1, the first 64,600 samples of a generated 5 s clip, eval mode under
``torch.inference_mode``, median and min of ``--runs`` timed runs after warm-up.

Run:  .venv/bin/python bench/inference.py [--threads 2] [--runs 25] [--compile]
With the official checkpoints in ../shared/aasist/ they are loaded (the scores then mean
something); otherwise the models are randomly initialised, which does not change the cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fakevoice.models.aasist import CLIP_SAMPLES, Aasist, build_aasist
from fakevoice.models.checkpoints import load_official_aasist

SHARED_AASIST = Path(__file__).resolve().parents[2] / "shared" / "aasist"
CHECKPOINTS = {"aasist": "AASIST.pth", "aasist-l": "AASIST-L.pth"}
PUBLISHED_GMAC = {"aasist": 9.6, "aasist-l": 6.6}


def test_clip(seconds: float = 5.0, sample_rate: int = 16000) -> torch.Tensor:
    """``(1, 64600)`` float32: the first 64,600 samples of a voiced, noisy test signal."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    clip = 0.3 * voiced / np.max(np.abs(voiced)) + 0.01 * rng.standard_normal(t.size)
    return torch.from_numpy(clip[:CLIP_SAMPLES].astype(np.float32))[None]


def load_model(variant: str) -> Aasist:
    """The official weights when present, else a random initialisation; eval mode."""
    path = SHARED_AASIST / CHECKPOINTS[variant]
    if path.is_file():
        _, model = load_official_aasist(path)
    else:
        model = build_aasist(variant)
    return model.eval()


def time_runs(fn: Callable[[], object], runs: int, warmup: int = 3) -> tuple[float, float]:
    """Median and minimum wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def count_gmac(model: Aasist, clip: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass (convolutions and matrix products), in GMAC."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # the counter's module hooks do not work in inference mode
        model(clip)
    return counter.get_total_flops() / 2e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = test_clip()

    header = (
        f"{'model':<9} {'path':<22} {'median s':>9} {'min s':>8} {'GMAC/s':>7} {'max |dlogit|':>13}"
    )
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.runs} runs, input {tuple(clip.shape)}"
    )
    print(header)
    print("-" * len(header))
    for variant in ("aasist", "aasist-l"):
        model = load_model(variant)
        model.fast = False
        gmac = count_gmac(model, clip)
        with torch.inference_mode():
            reference = model(clip)
        paths: list[tuple[str, bool, Callable[[torch.Tensor], torch.Tensor]]] = [
            ("reference (eager)", False, model),
            ("fast (default)", True, model),
        ]
        if args.compile:
            paths.append(("reference + compile", False, torch.compile(model)))
            paths.append(("fast + compile", True, torch.compile(model)))
        for label, fast, fn in paths:
            model.fast = fast
            with torch.inference_mode():
                logits = fn(clip)  # also triggers compilation outside the timed runs
                median, minimum = time_runs(lambda fn=fn: fn(clip), args.runs)
            diff = float((logits - reference).abs().max())
            print(
                f"{variant:<9} {label:<22} {median:>9.3f} {minimum:>8.3f} "
                f"{gmac / median:>7.1f} {diff:>13.1e}"
            )
        print(
            f"{variant:<9} counted {gmac:.2f} GMAC per clip (published ~{PUBLISHED_GMAC[variant]})"
        )


if __name__ == "__main__":
    main()
