"""The Ray backend: the same job function as Ray tasks on a local Ray instance, a real SQLite file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_training import DATASET, quick_spec, read_history, tiny_dataset_root
from workbench import epochs_of, get_run, start_ray_worker, submit, wait_for

from fakevoice import store
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor

ray = pytest.importorskip("ray", reason="the Ray backend needs the 'ray' package")

# One Ray instance at a time: under pytest-xdist this file shares a worker with the other Ray
# file (SERIAL_GROUPS in tests/conftest.py).


@pytest.fixture(scope="module")
def ray_workbench(tmp_path_factory: pytest.TempPathFactory, ray_temp_dir: str) -> Iterator[Actor]:
    base = tmp_path_factory.mktemp("ray")
    datasets = base / "datasets"
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, datasets / DATASET)
    env = {
        "FAKEVOICE_DATA_DIR": str(base / "data"),
        "FAKEVOICE_DATASET_DIR": str(datasets),
        "FAKEVOICE_DATABASE_URL": f"sqlite:///{base / 'data' / 'ray.sqlite'}",
        "FAKEVOICE_JOB_BACKEND": "ray",
        "FAKEVOICE_HEARTBEAT_SECONDS": "0.5",
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _temp_dir=ray_temp_dir,
            )
        except Exception as exc:  # no shared memory, no free ports...
            pytest.skip(f"Ray cannot start here: {exc}")
        try:
            store.init_db()
            with store.session_scope() as session:
                actor = store.get_or_create_user(session, "ray-user").actor
            yield actor
        finally:
            ray.shutdown()
            store.dispose_engines()
    get_settings.cache_clear()


def test_ray_task_trains_a_run(ray_workbench: Actor) -> None:
    actor = ray_workbench
    run_id = submit(actor, "on ray", quick_spec(epochs=2), backend="ray")
    thread = start_ray_worker()
    thread.join(timeout=180)
    assert not thread.is_alive(), "the Ray worker did not finish"
    run = get_run(actor, run_id)
    assert run.status == "succeeded", run.error
    assert run.worker_id is not None and run.worker_id.startswith("ray-")
    assert epochs_of(actor, run_id) == [0, 1]
    with store.session_scope(readonly=True) as session:
        assert store.list_batch_metrics(session, actor, run_id)
        (model,) = [m for m in store.list_models(session, actor) if m.run_id == run_id]
    assert [int(r["epoch"]) for r in read_history(Path(model.path))] == [0, 1]


def test_ray_run_stops_on_request(ray_workbench: Actor) -> None:
    actor = ray_workbench
    run_id = submit(actor, "stop on ray", quick_spec(epochs=40), backend="ray")
    thread = start_ray_worker()
    wait_for(lambda: epochs_of(actor, run_id), 120, "the first epoch")
    with store.session_scope() as session:
        store.request_stop(session, actor, run_id)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the Ray worker did not finish"
    run = get_run(actor, run_id)
    assert run.status == "cancelled"
    assert 1 <= len(epochs_of(actor, run_id)) < 40, epochs_of(actor, run_id)


def test_the_operators_device_decides_a_runs_auto_on_ray(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAKEVOICE_DEVICE=cpu keeps runs whose device is auto off the cluster's GPUs (and the
    task is told the same); a run asking for CUDA still gets one; builds never do."""
    from fakevoice.jobs.ray_backend import settings_env, task_resources

    monkeypatch.setenv("FAKEVOICE_DEVICE", "cpu")
    get_settings.cache_clear()
    assert task_resources({"device": "auto"})["num_gpus"] == 0.0
    assert task_resources({"kind": "evaluate"})["num_gpus"] == 0.0  # names no device: auto
    assert task_resources({"device": "cuda"})["num_gpus"] == 1.0
    assert task_resources({"kind": "dataset", "device": "cuda"})["num_gpus"] == 0.0
    assert settings_env()["FAKEVOICE_DEVICE"] == "cpu"
    monkeypatch.setenv("FAKEVOICE_DEVICE", "cuda")
    get_settings.cache_clear()
    assert task_resources({"device": "auto"})["num_gpus"] == 1.0
    assert task_resources({"device": "auto"})["num_cpus"] == 1.0  # loader workers auto: unknown
    # A number of loader workers goes to the task, and counts in a training run's CPUs.
    monkeypatch.setenv("FAKEVOICE_TRAIN_LOADER_WORKERS", "3")
    get_settings.cache_clear()
    assert settings_env()["FAKEVOICE_TRAIN_LOADER_WORKERS"] == "3"
    assert task_resources({"device": "auto"}) == {"num_gpus": 1.0, "num_cpus": 4.0}
    assert task_resources({"kind": "evaluate"})["num_cpus"] == 1.0


def test_a_ray_task_given_no_gpu_is_told_to_use_none(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray hides no GPU from a task that asked for none: a dataset build (HiFi-GAN), a test of a
    model or a run on a GPU node took the node's GPU under the operator's auto, beside the task
    Ray gave it to. Such a task is told cpu for training, builds and verdicts alike; a task
    given a GPU scores clips where it trains (its resources followed FAKEVOICE_DEVICE)."""
    from fakevoice.jobs.ray_backend import settings_env, task_resources

    monkeypatch.setenv("FAKEVOICE_DEVICE", "auto")
    monkeypatch.setenv("FAKEVOICE_VERDICT_DEVICE", "auto")
    get_settings.cache_clear()
    build = settings_env(task_resources({"kind": "dataset"})["num_gpus"])
    assert build["FAKEVOICE_DEVICE"] == build["FAKEVOICE_VERDICT_DEVICE"] == "cpu"
    monkeypatch.setenv("FAKEVOICE_DEVICE", "cpu")
    get_settings.cache_clear()
    test_of_model = settings_env(task_resources({"kind": "evaluate"})["num_gpus"])
    assert test_of_model["FAKEVOICE_VERDICT_DEVICE"] == "cpu"
    asks_cuda = settings_env(task_resources({"device": "cuda"})["num_gpus"])
    assert asks_cuda["FAKEVOICE_DEVICE"] == "cpu"  # the run's own cuda still decides
    monkeypatch.setenv("FAKEVOICE_DEVICE", "cuda")
    monkeypatch.setenv("FAKEVOICE_VERDICT_DEVICE", "cpu")  # the API's, not a GPU task's
    get_settings.cache_clear()
    with_gpu = settings_env(task_resources({"kind": "evaluate"})["num_gpus"])
    assert with_gpu["FAKEVOICE_DEVICE"] == with_gpu["FAKEVOICE_VERDICT_DEVICE"] == "cuda"
