"""Training throughput per architecture, and specnet's time to its best validation EER.

Usage::

    .venv/bin/python bench/training.py                      # every arch, then specnet on 'demo'
    .venv/bin/python bench/training.py --archs specnet,resnet18 --dataset demo --epochs 8

Part 1 times a few optimiser steps per architecture on random inputs of the model's real input size
(224 x 224 spectrogram images, or 64600-sample waveforms for AASIST), from scratch
(``pretrained=False``), and prints items per second. Part 2 trains specnet on a built dataset with the
real engine (:func:`fakevoice.training.train`) and prints the epoch with the best validation EER and
the wall-clock time it took to get there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from fakevoice.models.learners import TORCHVISION, build_inference_model, pick_device
from fakevoice.settings import get_settings
from fakevoice.training import MemorySink, train
from fakevoice.trainspec import ARCH_NAMES, DEFAULT_CLIP_SAMPLES, WAVEFORM_ARCHS, TrainSpec


def items_per_second(
    arch: str, batch_size: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """Training and inference items/s of ``arch`` on random inputs (after one warm-up step)."""
    model = build_inference_model({"arch": arch, "class_names": ["bonafide", "spoof"]}).to(device)
    if arch in WAVEFORM_ARCHS:
        x = torch.randn(batch_size, DEFAULT_CLIP_SAMPLES, device=device) * 0.1
    else:
        x = torch.randn(batch_size, 3, 224, 224, device=device)
    y = torch.randint(0, 2, (batch_size,), device=device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_func = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimiser.zero_grad()
        loss_func(model(x), y).backward()
        optimiser.step()

    model.train()
    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    train_rate = steps * batch_size / (time.perf_counter() - start)
    model.eval()
    with torch.inference_mode():
        model(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        _sync(device)
    return train_rate, steps * batch_size / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_to_best_eer(dataset: str, epochs: int, batch_size: int, device: str) -> None:
    """Train specnet on ``dataset`` and print each epoch and when the best EER was reached."""
    spec = TrainSpec(
        dataset=dataset, arch="specnet", epochs=epochs, batch_size=batch_size, device=device
    )  # type: ignore[arg-type]
    sink = MemorySink()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = train(spec, Path(folder) / "run", sink, get_settings().dataset_dir, resume=False)
        total = time.perf_counter() - started
    print(f"\nspecnet on '{dataset}' ({epochs} epochs, batch {batch_size}):")
    print(f"{'epoch':>5} {'train loss':>10} {'valid loss':>10} {'acc':>6} {'EER %':>7} {'s':>6}")
    elapsed, best_at, best = 0.0, 0.0, None
    for record in result.history:
        elapsed += record.seconds
        print(
            f"{record.epoch:>5} {record.train_loss:>10.4f} {record.valid_loss:>10.4f} "
            f"{record.accuracy:>6.3f} {100 * record.eer:>7.2f} {record.seconds:>6.1f}"
        )
        if best is None or record.eer < best.eer:
            best, best_at = record, elapsed
    if best is not None:
        print(
            f"best EER {100 * best.eer:.2f} % at epoch {best.epoch} after {best_at:.1f} s of "
            f"training ({total:.1f} s in all, with data loading, checkpoints and artefacts)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCH_NAMES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per architecture")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)
    device = pick_device(args.device)

    if not args.skip_throughput:
        print(f"device {device}, {torch.get_num_threads()} torch threads, batch {args.batch_size}")
        print(f"{'arch':<10} {'train items/s':>14} {'infer items/s':>14}")
        for arch in args.archs.split(","):
            if arch not in TORCHVISION and arch not in ARCH_NAMES:
                print(f"{arch:<10} unknown architecture")
                continue
            train_rate, infer_rate = items_per_second(arch, args.batch_size, args.steps, device)
            print(f"{arch:<10} {train_rate:>14.1f} {infer_rate:>14.1f}", flush=True)

    if not (get_settings().dataset_dir / args.dataset / "manifest.csv").is_file():
        print(
            f"\nno dataset '{args.dataset}' under {get_settings().dataset_dir}: build it with "
            "`fakevoice dataset build-demo` to time specnet's best EER",
            file=sys.stderr,
        )
        return 0
    time_to_best_eer(args.dataset, args.epochs, 32, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
