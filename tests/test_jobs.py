"""The local job backend end to end: a real ``fakevoice worker`` process, a real database.

Runs are queued straight in the store (as the services do); the worker trains them in child
processes; the test reads the outcome back from the store and the run folders. Each test runs on a
SQLite file; those where workers and runs meet in the database also run on a fresh database of the
session's PostgreSQL server (``postgres_url``), which the worker processes share with the test.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from conftest import speechlike
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from test_training import DATASET, quick_spec, read_history, tiny_dataset_root
from workbench import (
    active_workbench,
    epochs_of,
    get_run,
    make_user,
    start_worker,
    submit,
    wait_for,
)

from fakevoice import services, store
from fakevoice.artefacts import sha256_file
from fakevoice.cli import main
from fakevoice.datasets.shortcut_findings import AUDIT_VERSION
from fakevoice.datasets.shortcuts import read_audit
from fakevoice.jobs.local import run_process_name
from fakevoice.store.records import Actor

STALE_SECONDS = 2.0


# Process handling, start methods and a run's own failures do not depend on the database: those
# tests run on SQLite only; the ones where workers and runs meet in it (a stop, a killed worker's
# run resumed by the next) run on both.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database for the module: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('jobs-db') / 'jobs.sqlite'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = f"fv_jobs_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        store.dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="module")
def workbench(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[dict[str, str]]:
    """Settings for this module (and its worker processes): a fresh data folder and database."""
    base = tmp_path_factory.mktemp("jobs")
    datasets = base / "datasets"
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, datasets / DATASET)
    env = {
        "FAKEVOICE_DATA_DIR": str(base / "data"),
        "FAKEVOICE_DATASET_DIR": str(datasets),
        "FAKEVOICE_DATABASE_URL": database_url,
        "FAKEVOICE_HEARTBEAT_SECONDS": "0.5",
        "FAKEVOICE_STALE_SECONDS": str(STALE_SECONDS),
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "8",
        # Tiny models on a shared 2-core machine train several times faster on one thread.
        "OMP_NUM_THREADS": "1",
    }
    with active_workbench(env) as active:
        yield active


@pytest.fixture(scope="module")
def actor(workbench: dict[str, str]) -> Actor:
    return make_user("tester")


def finish(worker: subprocess.Popen[str], timeout: float = 120) -> str:
    """Wait for a ``--once`` worker to exit; return its output."""
    try:
        output, _ = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
        pytest.fail(f"the worker did not finish in {timeout} s:\n{output}")
    assert worker.returncode == 0, output
    return output


def models_of_run(actor: Actor, run_id: int) -> list[Any]:
    with store.session_scope(readonly=True) as session:
        return [m for m in store.list_models(session, actor) if m.run_id == run_id]


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@SQLITE_ONLY
def test_worker_trains_a_run_and_fails_a_vanished_dataset(
    workbench: dict[str, str], actor: Actor
) -> None:
    datasets = Path(workbench["FAKEVOICE_DATASET_DIR"])
    run_id = submit(actor, "first", quick_spec(epochs=2))
    shutil.copytree(datasets / DATASET, datasets / "vanishing")
    doomed = submit(actor, "doomed", quick_spec(dataset="vanishing"))
    shutil.rmtree(datasets / "vanishing")

    finish(start_worker(workbench, "--once"))

    run = get_run(actor, run_id)
    assert run.status == "succeeded", run.error
    assert run.progress == 1.0 and run.total_epochs == 2
    assert epochs_of(actor, run_id) == [0, 1]
    with store.session_scope(readonly=True) as session:
        batches = store.list_batch_metrics(session, actor, run_id)
    assert {b.epoch for b in batches} == {0, 1}
    assert [b.step for b in batches] == sorted({b.step for b in batches})
    (model,) = models_of_run(actor, run_id)
    assert model.arch == "specnet" and model.class_names == ["bonafide", "spoof"]
    assert (Path(model.path) / "model.safetensors").is_file()
    assert not (Path(model.path) / "checkpoints").exists()  # a finished run resumes no more
    assert [int(r["epoch"]) for r in read_history(Path(model.path))] == [0, 1]
    # The dataset kept no shortcut audit: the worker made one before training (and kept it).
    kept = read_audit(datasets / DATASET)
    assert kept is not None and kept.version == AUDIT_VERSION

    failed = get_run(actor, doomed)
    assert failed.status == "failed"
    assert failed.error is not None and "no built dataset named 'vanishing'" in failed.error
    assert "Traceback" not in failed.error and models_of_run(actor, doomed) == []


@SQLITE_ONLY
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_each_start_method_trains_and_names_the_run_process(
    workbench: dict[str, str], actor: Actor, method: str
) -> None:
    """``JOB_START_METHOD=spawn`` (a fresh interpreter per run, the fallback without pidfds)
    trains as the fork server's runs do; either way the run's process is named after the run."""
    run_id = submit(actor, f"{method} run", quick_spec(epochs=40))
    worker = start_worker({**workbench, "FAKEVOICE_JOB_START_METHOD": method}, "--once")
    try:
        wait_for(lambda: epochs_of(actor, run_id), 90, "the first epoch")
        (child,) = wait_for(lambda: training_children(worker), 10, "the run's process")
        name = Path(f"/proc/{child}/comm").read_text().strip()
        parent = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        with store.session_scope() as session:
            store.request_stop(session, actor, run_id)
    finally:
        finish(worker)
    assert name == run_process_name(run_id)
    assert (parent == worker.pid) == (method == "spawn")  # a forked run is the server's child
    run = get_run(actor, run_id)
    assert run.status == "cancelled" and models_of_run(actor, run_id), run.error


def test_stop_while_running_keeps_the_last_good_epoch(
    workbench: dict[str, str], actor: Actor
) -> None:
    run_id = submit(actor, "to stop", quick_spec(epochs=40))
    worker = start_worker(workbench, "--once")
    try:
        wait_for(lambda: len(epochs_of(actor, run_id)) >= 1, 90, "the first epoch")
        with store.session_scope() as session:
            store.request_stop(session, actor, run_id)
    finally:
        finish(worker)
    run = get_run(actor, run_id)
    assert run.status == "cancelled"
    done = epochs_of(actor, run_id)
    assert 1 <= len(done) < 40 and done == list(range(len(done)))
    assert run.progress == pytest.approx(len(done) / 40)  # the share of epochs it completed
    (model,) = models_of_run(actor, run_id)
    assert [int(r["epoch"]) for r in read_history(Path(model.path))] == done

    # Resumed and stopped again: the model stored at the first stop keeps its own files (moved
    # aside, byte for byte), so both models load; the run's folder holds the newer one.
    stored = {name: sha256_file(Path(model.path) / name) for name in model.files}
    services.resume_run(actor, run_id)
    worker = start_worker(workbench, "--once")
    try:
        wait_for(lambda: len(epochs_of(actor, run_id)) > len(done), 90, "another epoch")
        with store.session_scope() as session:
            store.request_stop(session, actor, run_id)
    finally:
        finish(worker)
    assert get_run(actor, run_id).status == "cancelled"
    first, second = sorted(models_of_run(actor, run_id), key=lambda m: m.id)
    assert first.id == model.id and Path(first.path) == Path(model.path) / f"model-{model.id}"
    assert {name: sha256_file(Path(first.path) / name) for name in first.files} == stored
    assert Path(second.path) == Path(model.path) and second.files != first.files
    clip = io.BytesIO()
    sf.write(clip, speechlike(1.5), 16000, format="WAV")
    for kept in (first, second):
        scored = services.score_clip(actor, kept.id, clip.getvalue(), file_name="a.wav")
        assert scored.analysis.model_id == kept.id


@SQLITE_ONLY
def test_a_run_stuck_after_its_stop_request_has_its_process_ended(
    workbench: dict[str, str], actor: Actor
) -> None:
    """Stop is a flag the run's process polls between batches: one stuck elsewhere (here reading
    an image that never comes, as on a hung network disk) is ended by the worker once the grace
    time has passed, and the run says so; it is never left running."""
    datasets = Path(workbench["FAKEVOICE_DATASET_DIR"])
    shutil.copytree(datasets / DATASET, datasets / "hanging")
    images = sorted((datasets / "hanging").rglob("*.png"))
    for image in images:  # every image a pipe nobody writes to: reading one waits for ever
        image.unlink()
        os.mkfifo(image)
    run_id = submit(actor, "stuck", quick_spec(dataset="hanging", epochs=3))
    worker = start_worker({**workbench, "FAKEVOICE_STOP_GRACE_SECONDS": "1"}, "--once")
    try:
        wait_for(lambda: get_run(actor, run_id).status == "running", 60, "the run to start")
        time.sleep(1.0)
        with store.session_scope() as session:
            store.request_stop(session, actor, run_id)
        wait_for(lambda: get_run(actor, run_id).status != "running", 60, "the run to end")
    finally:
        output = finish(worker)
        shutil.rmtree(datasets / "hanging", ignore_errors=True)
    run = get_run(actor, run_id)
    assert run.status == "cancelled", output
    assert run.error is not None and "the worker ended its process" in run.error


def training_children(worker: subprocess.Popen[str]) -> list[int]:
    """Process ids of the worker's training processes: its descendants named as a run's process
    (with the fork server they are its grandchildren; the server and the resource tracker are not
    runs)."""
    parents, names = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        names[pid] = stat[stat.index("(") + 1 : stat.rindex(")")]
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])

    def descends_from_worker(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == worker.pid:
                return True
        return False

    runs = {pid for pid, name in names.items() if name.startswith("fv-run-")}
    # A run's own data-loader workers inherit its name: only the one whose parent is no run.
    return [pid for pid in runs if parents.get(pid) not in runs and descends_from_worker(pid)]


@SQLITE_ONLY
def test_killed_training_process_fails_the_run_with_a_memory_hint(
    workbench: dict[str, str], actor: Actor
) -> None:
    run_id = submit(actor, "oom killed", quick_spec(epochs=40))
    worker = start_worker(workbench, "--once")
    try:
        wait_for(lambda: len(epochs_of(actor, run_id)) >= 1, 90, "the first epoch")
        (child,) = wait_for(lambda: training_children(worker), 10, "the training process")
        os.kill(child, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    finally:
        output = finish(worker)
    run = get_run(actor, run_id)
    assert run.status == "failed", output
    assert run.error is not None and "killed (signal 9)" in run.error
    assert "lower the batch size" in run.error and "Traceback" not in run.error


@SQLITE_ONLY
def test_a_killed_run_with_loader_workers_leaves_none_of_them(
    workbench: dict[str, str], actor: Actor
) -> None:
    """A run's data-loader workers are forked by its process (itself forked from the fork
    server, with threads of its own), not started by the fork server, and die with it."""
    run_id = submit(actor, "loader workers", quick_spec(epochs=40))
    worker = start_worker({**workbench, "FAKEVOICE_TRAIN_LOADER_WORKERS": "2"}, "--once")
    try:
        wait_for(lambda: len(epochs_of(actor, run_id)) >= 1, 90, "the first epoch")
        (run_process,) = wait_for(lambda: training_children(worker), 10, "the run's process")
        loaders = wait_for(
            lambda: found if len(found := live_children(run_process)) == 2 else None,
            60,
            "the run's two loader workers",
        )
        os.kill(run_process, signal.SIGKILL)
    finally:
        output = finish(worker)
    run = get_run(actor, run_id)
    assert run.status == "failed" and run.error is not None and "signal 9" in run.error, output
    assert wait_for(lambda: not any(map(is_running, loaders)), 30, "no loader worker left")


def live_children(parent: int) -> list[int]:
    """The processes whose parent is ``parent``, but zombies (ended, not yet reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def listed_workers(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    """What ``fakevoice workers --json`` lists."""
    capsys.readouterr()
    assert main(["workers", "--json", *args]) == 0
    return list(json.loads(capsys.readouterr().out))


def test_killed_worker_run_is_resumed_by_the_next_worker(
    workbench: dict[str, str], actor: Actor, capsys: pytest.CaptureFixture[str]
) -> None:
    runs_dir = Path(workbench["FAKEVOICE_DATA_DIR"]) / "runs"
    earlier = {p.name: folder_hashes(p) for p in runs_dir.iterdir()}
    assert earlier, "the earlier tests left runs to protect"
    epochs = 8
    run_id = submit(actor, "to kill", quick_spec(epochs=epochs))

    worker = start_worker(workbench)
    try:
        # The first epoch's checkpoint, not its metric row (written just before the checkpoint):
        # a kill between the two rightly restarts the run from scratch.
        state = runs_dir / str(run_id) / "checkpoints" / "state.json"
        wait_for(state.is_file, 90, "the first epoch's checkpoint")
        # The operator sees the worker alive, with its job in hand.
        (alive,) = [w for w in listed_workers(capsys) if w["pid"] == worker.pid]
        assert (alive["state"], alive["backend"], alive["running"]) == ("alive", "local", 1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    killed_at = epochs_of(actor, run_id)
    assert len(killed_at) < epochs, "the run finished before the kill; make it longer"
    assert get_run(actor, run_id).status == "running"  # nobody has noticed yet

    time.sleep(STALE_SECONDS + 0.5)  # the heartbeat goes stale
    assert listed_workers(capsys) == []  # a killed worker stops being seen
    assert main(["workers"]) == 0
    assert capsys.readouterr().out.startswith("no worker is running")
    next_worker = start_worker(workbench, "--once")
    output = finish(next_worker)
    assert "interrupted" in output
    states = {w["pid"]: w["state"] for w in listed_workers(capsys, "--all")}
    assert (states[worker.pid], states[next_worker.pid]) == ("silent", "stopped")

    run = get_run(actor, run_id)
    assert run.status == "succeeded", run.error
    assert run.resume_from_epoch is not None and run.resume_from_epoch >= 1
    assert run.notice is not None and re.search(
        rf"Its worker stopped; resumed after epoch {run.resume_from_epoch} on 20", run.notice
    ), run.notice
    assert epochs_of(actor, run_id) == list(range(epochs))
    assert [int(r["epoch"]) for r in read_history(runs_dir / str(run_id))] == list(range(epochs))
    assert {name: folder_hashes(runs_dir / name) for name in earlier} == earlier


@SQLITE_ONLY
def test_a_child_that_ended_its_run_is_left_to_finish(
    workbench: dict[str, str], actor: Actor
) -> None:
    """A run's process writes its final status, then still uploads, cleans up and exits: the
    worker's heartbeat leaves it be. A child whose run was taken from its worker is ended."""
    import multiprocessing

    from fakevoice.jobs.local import LocalWorker, _Active

    worker = LocalWorker(concurrency=2, worker_id="w-heart")
    context = multiprocessing.get_context("spawn")
    children = {}
    for name in ("finishing", "taken"):
        run_id = submit(actor, name, quick_spec())
        with store.session_scope() as session:
            assert store.claim_next_queued_run(session, "w-heart").id == run_id
        child = context.Process(target=time.sleep, args=(30,))
        child.start()
        worker.active[run_id] = _Active(run_id, child)
        children[name] = (run_id, child)
    with store.session_scope() as session:
        store.set_status(session, children["finishing"][0], "succeeded", worker_id="w-heart")
        store.set_status(session, children["taken"][0], "interrupted", worker_id="w-heart")
    try:
        worker._heartbeat()
        assert children["finishing"][1].is_alive()  # left to _reap
        assert children["finishing"][0] in worker.active
        assert not children["taken"][1].is_alive()  # ended: another worker resumes the run
        assert children["taken"][0] not in worker.active
    finally:
        for _, child in children.values():
            child.kill()
            child.join()
