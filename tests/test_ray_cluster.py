"""The Ray backend on a real two-node Ray cluster on loopback: a head and one worker node started
as ``ray start ... --block`` processes, the ``fakevoice`` Ray worker connecting by address. A job
trains and writes its metrics to the shared database, a stop request cancels one, and killing the
Ray worker process that runs a task leaves that run failed with a message."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_training import DATASET, quick_spec, tiny_dataset_root
from workbench import epochs_of, get_run, start_ray_worker, submit, wait_for

from fakevoice import store
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor

ray = pytest.importorskip("ray", reason="the Ray backend needs the 'ray' package")

# One Ray instance at a time: under pytest-xdist this file shares a worker with the other Ray
# file (SERIAL_GROUPS in tests/conftest.py).

RAY = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "ray"
TASK_TITLE = "ray::_remote_execute"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, ray_temp_dir: str) -> Iterator[Actor]:
    base = tmp_path_factory.mktemp("raycluster")
    datasets = base / "datasets"
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, datasets / DATASET)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {
        "FAKEVOICE_DATA_DIR": str(base / "data"),
        "FAKEVOICE_DATASET_DIR": str(datasets),
        "FAKEVOICE_DATABASE_URL": f"sqlite:///{base / 'data' / 'cluster.sqlite'}",
        "FAKEVOICE_JOB_BACKEND": "ray",
        "FAKEVOICE_RAY_ADDRESS": address,
        "FAKEVOICE_HEARTBEAT_SECONDS": "0.5",
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "8",
        "FAKEVOICE_MLFLOW_TRACKING": "false",
        "OMP_NUM_THREADS": "1",
        # Ray 2.5x turns token authentication on for `ray start`; a loopback test cluster has none.
        "RAY_AUTH_MODE": "disabled",
    }
    ray_env = {**os.environ, **env, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--include-dashboard", "false", "--temp-dir", ray_temp_dir, *common],
        env=ray_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    node: subprocess.Popen[bytes] | None = None
    node_log = base / "ray-node.log"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            get_settings.cache_clear()
            deadline = time.monotonic() + 60
            while True:
                try:
                    ray.init(
                        address=address,
                        _node_ip_address="127.0.0.1",
                        log_to_driver=False,
                        configure_logging=False,
                    )
                    break
                except Exception as exc:
                    if time.monotonic() > deadline or head.poll() is not None:
                        pytest.skip(f"Ray cannot start a head node here: {exc}")
                    time.sleep(1.0)
            node = subprocess.Popen(
                [str(RAY), "start", "--address", address, "--node-ip-address", "127.0.0.1",
                 *common],
                env=ray_env, stdout=node_log.open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            while len([n for n in ray.nodes() if n["Alive"]]) < 2:
                if time.monotonic() > deadline + 30 or node.poll() is not None:
                    log = node_log.read_text(errors="replace")[-600:]
                    pytest.skip(f"the Ray worker node did not join the head: {log}")
                time.sleep(0.5)
            store.init_db()
            with store.session_scope() as session:
                actor = store.get_or_create_user(session, "cluster-user").actor
            yield actor
            ray.shutdown()
            store.dispose_engines()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for process in (node, head):
            if process is not None:
                _stop(process)
        get_settings.cache_clear()


def task_pids() -> list[int]:
    """Processes whose title says they execute the job task (Ray renames its worker processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(TASK_TITLE.encode()):
            pids.append(int(entry.name))
    return pids


def test_cluster_trains_and_stops_runs(cluster: Actor) -> None:
    actor = cluster
    trained = submit(actor, "on the cluster", quick_spec(epochs=2), backend="ray")
    stopped = submit(actor, "stopped on the cluster", quick_spec(epochs=40), backend="ray")
    thread = start_ray_worker()
    wait_for(lambda: epochs_of(actor, stopped), 120, "the first epoch")
    with store.session_scope() as session:
        store.request_stop(session, actor, stopped)
    thread.join(timeout=180)
    assert not thread.is_alive(), "the Ray worker did not finish"

    run = get_run(actor, trained)
    assert run.status == "succeeded", run.error
    assert run.worker_id is not None and run.worker_id.startswith("ray-")
    assert epochs_of(actor, trained) == [0, 1]
    with store.session_scope(readonly=True) as session:
        assert store.list_batch_metrics(session, actor, trained)
    run = get_run(actor, stopped)
    assert run.status == "cancelled"
    assert 1 <= len(epochs_of(actor, stopped)) < 40


def test_killed_ray_worker_fails_the_run_with_a_message(cluster: Actor) -> None:
    actor = cluster
    run_id = submit(actor, "killed on the cluster", quick_spec(epochs=40), backend="ray")
    thread = start_ray_worker()
    wait_for(lambda: epochs_of(actor, run_id), 120, "the first epoch")
    (pid,) = task_pids()
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the Ray worker did not finish"
    run = get_run(actor, run_id)
    assert run.status == "failed"
    assert run.error is not None and "Ray task running this job failed" in run.error
    assert "Traceback" not in run.error
    assert 1 <= len(epochs_of(actor, run_id)) < 40
