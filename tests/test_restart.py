"""Restarting the worker in the middle of a run: a real ``fakevoice worker`` process, stopped with
SIGTERM (a clean shutdown, as ``docker compose stop`` does) and with SIGKILL (a crash), then started
again. The run is marked interrupted, resumes from its last epoch and finishes with its whole
history; the runs before it keep their files and rows."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_jobs import (
    STALE_SECONDS,
    epochs_of,
    finish,
    folder_hashes,
    get_run,
    start_worker,
    submit,
    wait_for,
)
from test_training import DATASET, quick_spec, read_history, tiny_dataset_root
from workbench import active_workbench

from fakevoice import store
from fakevoice.store.records import Actor, EpochMetric


@pytest.fixture
def workbench(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    datasets = tmp_path / "datasets"
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, datasets / DATASET)
    env = {
        "FAKEVOICE_DATA_DIR": str(tmp_path / "data"),
        "FAKEVOICE_DATASET_DIR": str(datasets),
        "FAKEVOICE_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'restart.sqlite'}",
        "FAKEVOICE_HEARTBEAT_SECONDS": "0.5",
        "FAKEVOICE_STALE_SECONDS": str(STALE_SECONDS),
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "8",
        "FAKEVOICE_MLFLOW_TRACKING": "false",
        "OMP_NUM_THREADS": "1",
    }
    with active_workbench(env) as active:
        yield active


def epoch_rows(actor: Actor, run_id: int) -> list[EpochMetric]:
    with store.session_scope(readonly=True) as session:
        return store.list_epoch_metrics(session, actor, run_id)


def test_worker_restarts_mid_run_resume_it_and_keep_earlier_runs(
    workbench: dict[str, str],
) -> None:
    with store.session_scope() as session:
        actor = store.get_or_create_user(session, "restarter").actor
    runs_dir = Path(workbench["FAKEVOICE_DATA_DIR"]) / "runs"
    earlier_id = submit(actor, "earlier", quick_spec(epochs=2))
    finish(start_worker(workbench, "--once"))
    assert get_run(actor, earlier_id).status == "succeeded"
    earlier_files = folder_hashes(runs_dir / str(earlier_id))
    earlier_rows = epoch_rows(actor, earlier_id)

    epochs = 10
    run_id = submit(actor, "restarted", quick_spec(epochs=epochs))

    # 1. SIGTERM: the worker stops its child and marks the run interrupted before it exits.
    worker = start_worker(workbench)
    wait_for(lambda: len(epochs_of(actor, run_id)) >= 1, 90, "the first epoch")
    # The epoch's row is written just before its checkpoint: interrupt once both exist.
    checkpoint = runs_dir / str(run_id) / "checkpoints" / "state.json"
    wait_for(checkpoint.is_file, 90, "the first checkpoint")
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    run = get_run(actor, run_id)
    assert run.status == "interrupted", (run.status, output)
    assert run.error is not None and "shut down" in run.error
    after_term = epochs_of(actor, run_id)
    assert 1 <= len(after_term) < epochs and after_term == list(range(len(after_term)))

    # 2. Started again, the worker resumes the interrupted run at once; SIGKILL it mid-run.
    worker = start_worker(workbench)
    wait_for(
        lambda: len(epochs_of(actor, run_id)) > len(after_term), 90, "an epoch after the restart"
    )
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    resumed = get_run(actor, run_id)
    assert resumed.resume_from_epoch is not None and resumed.resume_from_epoch >= 1
    assert resumed.status == "running"  # nobody has noticed the crash yet
    assert len(epochs_of(actor, run_id)) < epochs, "the run finished before the kill"

    # 3. After the heartbeat goes stale, the next worker marks it interrupted and finishes it.
    time.sleep(STALE_SECONDS + 0.5)
    output = finish(start_worker(workbench, "--once"))
    assert "interrupted" in output
    run = get_run(actor, run_id)
    assert run.status == "succeeded", run.error
    assert epochs_of(actor, run_id) == list(range(epochs))
    assert [int(r["epoch"]) for r in read_history(runs_dir / str(run_id))] == list(range(epochs))

    assert folder_hashes(runs_dir / str(earlier_id)) == earlier_files
    assert epoch_rows(actor, earlier_id) == earlier_rows
    assert get_run(actor, earlier_id).status == "succeeded"
