"""How long a training run takes to start: fork server against a fresh interpreter per run.

The local worker starts each run in its own process. With ``FAKEVOICE_JOB_START_METHOD=spawn``
that process is a new Python interpreter that imports torch, fastai and the engine before it can
train; with ``forkserver`` (the default) it is forked from a server that imported them once, when
the worker took its first training run. This bench starts a real ``fakevoice worker`` for each
method on the same small demo dataset, queues one short ``specnet`` run after another (each after
the last has finished) and prints, per method, the median and worst of:

* claim -> first batch: from the worker taking the run (status ``running``) until the run's first
  per-batch loss is in the store, i.e. the start-up cost a user watches on the Train page;
* queued -> succeeded: the whole one-epoch run as the user sees it.

The first run of each worker is shown apart: with the fork server it waits for the server's
imports, which it starts.

Run:  .venv/bin/python bench/jobs.py [--runs 5]
Everything lives in a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKEVOICE = REPO / ".venv" / "bin" / "fakevoice"
DATASET = "small"
METHODS = ("spawn", "forkserver")


@dataclass(frozen=True)
class Timing:
    to_first_batch: float
    to_succeeded: float


def build_dataset(root: Path) -> None:
    subprocess.run(
        [str(FAKEVOICE), "dataset", "build-demo", "--size", "small", "--out", str(root / DATASET)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def use_settings(env: dict[str, str]) -> None:
    """Point this process's settings and store at ``env`` (what the worker is started with)."""
    from fakevoice import store
    from fakevoice.settings import get_settings

    store.dispose_engines()
    os.environ.update(env)
    get_settings.cache_clear()
    store.init_db()


def time_runs(method: str, folder: Path, runs: int) -> list[Timing]:
    from fakevoice import store
    from fakevoice.trainspec import TrainSpec

    env = {
        "FAKEVOICE_DATA_DIR": str(folder / f"data-{method}"),
        "FAKEVOICE_DATASET_DIR": str(folder / "datasets"),
        "FAKEVOICE_DATABASE_URL": "",
        "FAKEVOICE_JOB_START_METHOD": method,
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.1",
    }
    use_settings(env)
    with store.session_scope() as session:
        actor = store.get_or_create_user(session, "bench").actor
    spec = TrainSpec(dataset=DATASET, arch="specnet", epochs=1, batch_size=8, device="cpu")
    worker = subprocess.Popen(
        [str(FAKEVOICE), "worker"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    timings = []
    try:
        time.sleep(5)  # the worker is up (its fork server starts with its first run)
        for index in range(runs):
            with store.session_scope() as session:
                run_id = store.create_run(session, actor, f"start {index}", spec.to_dict()).id
            queued = time.perf_counter()
            claimed = first_batch = None
            while True:
                with store.session_scope(readonly=True) as session:
                    run = store.get_run(session, actor, run_id)
                    if claimed is None and run.status != "queued":
                        claimed = time.perf_counter()
                    if first_batch is None and claimed is not None:
                        if store.list_batch_metrics(session, actor, run_id):
                            first_batch = time.perf_counter()
                if run.status in ("succeeded", "failed", "cancelled", "interrupted"):
                    break
                time.sleep(0.02)
            if run.status != "succeeded" or claimed is None or first_batch is None:
                raise SystemExit(f"{method}: run {run_id} ended {run.status}: {run.error}")
            timings.append(Timing(first_batch - claimed, time.perf_counter() - queued))
            print(
                f"{method:<11} run {index + 1}: claim -> first batch {first_batch - claimed:6.2f} s, "
                f"queued -> succeeded {timings[-1].to_succeeded:6.2f} s",
                flush=True,
            )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per start method")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="fv-bench-jobs-"))
    try:
        build_dataset(folder / "datasets")
        results = {method: time_runs(method, folder, args.runs) for method in METHODS}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\nrun start-up, {args.runs} one-epoch specnet runs per method (seconds)")
    print(
        f"{'method':<11} {'first: to batch':>15} {'median to batch':>15} {'worst to batch':>14} "
        f"{'median whole run':>16}"
    )
    for method, timings in results.items():
        later = timings[1:] or timings
        print(
            f"{method:<11} {timings[0].to_first_batch:>15.2f} "
            f"{statistics.median(t.to_first_batch for t in later):>15.2f} "
            f"{max(t.to_first_batch for t in later):>14.2f} "
            f"{statistics.median(t.to_succeeded for t in later):>16.2f}"
        )
    reference = statistics.median(
        t.to_first_batch for t in results["spawn"][1:] or results["spawn"]
    )
    fast = statistics.median(
        t.to_first_batch for t in results["forkserver"][1:] or results["forkserver"]
    )
    print(f"\nforkserver starts a run {reference - fast:.2f} s sooner ({reference / fast:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
