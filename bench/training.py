"""Training throughput per architecture, and specnet's time to its best validation EER.

Usage::

    .venv/bin/python bench/training.py                      # every arch, then specnet on 'demo'
    .venv/bin/python bench/training.py --skip-throughput --race-archs specnet,resnet18,aasist-l
    .venv/bin/python bench/training.py --race-archs all --budget 180   # about half an hour
    .venv/bin/python bench/training.py --skip-throughput --skip-race --loader-workers 8

Part 1 times a few optimiser steps per architecture on random inputs of the model's real input size
(224 x 224 spectrogram images, or 64600-sample waveforms for AASIST), from scratch
(``pretrained=False``), and prints items per second. Part 2 trains each arch of ``--race-archs``
(default specnet) on a built dataset with the real engine (:func:`fakevoice.training.train`, the
job's own code), printing every epoch as it ends, stops it after ``--budget`` seconds, and reports
how far each got: best validation EER, when, and when it first went under ``--target-eer``.
With ``--loader-workers N``, part 3 reads the dataset's training items through the run's loader
(:func:`fakevoice.training_data.make_dataloaders`) in the training process and then with N worker
processes, and prints items per second of a first epoch (decoding) and a second (from the shared
cache), with the workers' private memory.

Target (issue 3): specnet under 5 % EER on the default demo set in less than 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fakevoice.datasets.noise import noise_sort_key
from fakevoice.models.learners import TORCHVISION
from fakevoice.models.registry import get_arch, pick_device
from fakevoice.settings import get_settings
from fakevoice.training import seed_everything, train
from fakevoice.training_callbacks import MemorySink
from fakevoice.training_data import make_dataloaders, prepare_data
from fakevoice.training_history import EpochRecord
from fakevoice.trainspec import ARCH_NAMES, DEFAULT_CLIP_SAMPLES, WAVEFORM_ARCHS, TrainSpec


def items_per_second(
    arch: str, batch_size: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """Training and inference items/s of ``arch`` on random inputs (after one warm-up step)."""
    model = get_arch(arch).build(2)[0].to(device)
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


@dataclass
class BudgetSink(MemorySink):
    """Prints each epoch as it ends and asks the training to stop once ``budget`` seconds pass."""

    arch: str = ""
    budget: float = 180.0
    started: float = field(default_factory=time.perf_counter)
    elapsed_at_epoch: list[float] = field(default_factory=list)

    def on_epoch(self, record: EpochRecord) -> None:
        super().on_epoch(record)
        elapsed = time.perf_counter() - self.started
        self.elapsed_at_epoch.append(elapsed)
        print(
            f"{self.arch:<10} {record.epoch + 1:>5} {record.train_loss:>10.4f} "
            f"{record.valid_loss:>10.4f} {record.accuracy:>6.3f} {100 * record.eer:>7.2f} "
            f"{record.seconds:>7.1f} {elapsed:>8.1f}",
            flush=True,
        )

    def should_stop(self) -> bool:
        return time.perf_counter() - self.started > self.budget


@dataclass(frozen=True)
class RaceResult:
    arch: str
    epochs_done: int
    best_eer: float | None
    best_epoch: int | None
    seconds_to_best: float | None
    seconds_to_target: float | None
    fraction_of_first_epoch: float
    generator_eer: dict[str, float]
    noise_eer: dict[str, float]


def race(
    arch: str, dataset: str, epochs: int, batch_size: int, device: str, budget: float, target: float
) -> RaceResult:
    """Train ``arch`` on ``dataset`` with the real engine until ``epochs`` end or ``budget`` passes.

    Seconds are wall-clock from the call, so they include reading the manifest, building the
    model and the first pass over the images (decoding them into the training cache).
    """
    spec = TrainSpec(
        dataset=dataset, arch=arch, epochs=epochs, batch_size=batch_size, device=device
    )  # type: ignore[arg-type]
    sink = BudgetSink(arch=arch, budget=budget)
    with tempfile.TemporaryDirectory() as folder:
        result = train(spec, Path(folder) / "run", sink, get_settings().dataset_dir, resume=False)
    per_generator = dict(result.metrics.get("generator_eer", {}))
    per_noise = dict(result.metrics.get("noise_eer", {}))
    history, times = sink.epochs, sink.elapsed_at_epoch
    first_epoch = [p for p in sink.progress if p <= 1 / epochs]
    fraction = min(1.0, (max(first_epoch) if first_epoch else 0.0) * epochs)
    if not history:
        return RaceResult(arch, 0, None, None, None, None, fraction, {}, {})
    best = min(range(len(history)), key=lambda i: history[i].eer)
    reached = next((times[i] for i, r in enumerate(history) if r.eer < target), None)
    return RaceResult(
        arch,
        len(history),
        history[best].eer,
        best + 1,
        times[best],
        reached,
        fraction,
        per_generator,
        per_noise,
    )


def print_races(results: list[RaceResult], budget: float, target: float) -> None:
    print(f"\nhow far each arch gets in {budget:.0f} s (target: EER under {100 * target:g} %)")
    print(
        f"{'arch':<10} {'epochs':>6} {'best EER %':>10} {'at epoch':>8} {'at s':>7} {'target at s':>11}"
    )
    for r in results:
        if r.best_eer is None:
            print(
                f"{r.arch:<10} {0:>6} {'-':>10} {'-':>8} {'-':>7} {'-':>11}  "
                f"(no epoch finished: {100 * r.fraction_of_first_epoch:.0f} % of the first)"
            )
            continue
        target_at = f"{r.seconds_to_target:.1f}" if r.seconds_to_target is not None else "not met"
        print(
            f"{r.arch:<10} {r.epochs_done:>6} {100 * r.best_eer:>10.2f} {r.best_epoch:>8} "
            f"{r.seconds_to_best:>7.1f} {target_at:>11}"
        )
    generators = sorted({g for r in results for g in r.generator_eer})
    _print_eer_table(
        "bona fide against each generator", generators, [(r.arch, r.generator_eer) for r in results]
    )
    noises = sorted({n for r in results for n in r.noise_eer}, key=noise_sort_key)
    _print_eer_table("at each noise level", noises, [(r.arch, r.noise_eer) for r in results])


def _print_eer_table(
    title: str, columns: list[str], rows: list[tuple[str, dict[str, float]]]
) -> None:
    """One row per arch of the stored model's EER %, one column per generator or noise level."""
    if not columns:
        return
    print(f"\nEER % of the stored model (the best epoch), {title}:")
    print(f"{'arch':<10} " + " ".join(f"{c[:14]:>14}" for c in columns))
    for arch, eers in rows:
        if eers:
            cells = (eers.get(c) for c in columns)
            print(
                f"{arch:<10} "
                + " ".join(f"{100 * c:>14.1f}" if c is not None else f"{'-':>14}" for c in cells)
            )


def loader_rates(dataset: str, workers: int, batch_size: int) -> tuple[float, float, float]:
    """Training items per second the run's loader gives (no model) in a first epoch, which
    decodes every item, and a second, which reads the shared cache; and the workers' private
    memory during the second epoch, MB each (0 without workers)."""
    spec = TrainSpec(dataset=dataset, arch="specnet", batch_size=batch_size, device="cpu")
    data = prepare_data(spec, get_settings().dataset_dir)
    seed_everything(spec.seed)
    loader = make_dataloaders(data, spec, torch.device("cpu"), workers).train
    rates, private_mb = [], 0.0
    for epoch in range(2):
        start, items = time.perf_counter(), 0
        for i, (x, _) in enumerate(loader):
            items += len(x)
            if epoch == 1 and i == len(loader) // 2:
                private_mb = _children_private_mb()
        rates.append(items / (time.perf_counter() - start))
    return rates[0], rates[1], private_mb


def _children_private_mb() -> float:
    """Mean private memory (resident, not shared) of this process's children, MB."""
    children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
    sizes = []
    for pid in children:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        kib = sum(int(line.split()[1]) for line in rollup if line.startswith("Private_"))
        sizes.append(kib / 1024)
    return sum(sizes) / len(sizes) if sizes else 0.0


def print_loader_rates(dataset: str, workers: int, batch_size: int) -> None:
    print(f"\nloading '{dataset}' training items, batch {batch_size} (no model)")
    print(f"{'workers':>7} {'1st epoch items/s':>18} {'2nd epoch items/s':>18} {'MB/worker':>10}")
    for count in (0, workers):
        first, second, private_mb = loader_rates(dataset, count, batch_size)
        print(f"{count:>7} {first:>18.0f} {second:>18.0f} {private_mb:>10.0f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCH_NAMES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per architecture")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each race (one cycle)")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per arch's race")
    parser.add_argument("--target-eer", type=float, default=0.05)
    parser.add_argument(
        "--race-archs", default="specnet", help="archs trained on the dataset ('all' for every one)"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--loader-workers",
        type=int,
        default=0,
        help="also time the dataset's loading with this many worker processes against none",
    )
    parser.add_argument("--skip-race", action="store_true")
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
    if args.loader_workers > 0:
        print_loader_rates(args.dataset, args.loader_workers, 32)
    if args.skip_race:
        return 0
    archs = list(ARCH_NAMES) if args.race_archs == "all" else args.race_archs.split(",")
    print(
        f"\ntraining on '{args.dataset}' with the real engine, batch 32, {args.epochs} epochs, "
        f"stopped after {args.budget:.0f} s"
    )
    print(
        f"{'arch':<10} {'epoch':>5} {'train loss':>10} {'valid loss':>10} {'acc':>6} "
        f"{'EER %':>7} {'epoch s':>7} {'total s':>8}"
    )
    results = [
        race(arch, args.dataset, args.epochs, 32, args.device, args.budget, args.target_eer)
        for arch in archs
    ]
    print_races(results, args.budget, args.target_eer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
