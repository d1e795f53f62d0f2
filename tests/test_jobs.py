"""The local job backend end to end: a real ``fakevoice worker`` process, a real database.

Runs are queued straight in the store (as the services do); the worker trains them in child
processes; the test reads the outcome back from the store and the run folders. Every test runs on a
SQLite file and on a fresh database of the session's PostgreSQL server (``postgres_url``), which
the worker processes share with the test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from test_training import DATASET, quick_spec, read_history, tiny_dataset_root
from workbench import (
    FAKEVOICE,
    active_workbench,
    epochs_of,
    get_run,
    make_user,
    start_worker,
    submit,
    wait_for,
)

from fakevoice import store
from fakevoice.jobs.local import run_process_name
from fakevoice.store.records import Actor

STALE_SECONDS = 2.0


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
    assert [int(r["epoch"]) for r in read_history(Path(model.path))] == [0, 1]

    failed = get_run(actor, doomed)
    assert failed.status == "failed"
    assert failed.error is not None and "no built dataset named 'vanishing'" in failed.error
    assert "Traceback" not in failed.error and models_of_run(actor, doomed) == []


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_each_start_method_trains_and_names_the_run_process(
    workbench: dict[str, str], actor: Actor, method: str
) -> None:
    """``JOB_START_METHOD=spawn`` (a fresh interpreter per run, the fallback without pidfds)
    trains as the fork server's runs do; either way the run's process is named after the run."""
    if workbench["FAKEVOICE_DATABASE_URL"].startswith("postgresql"):
        pytest.skip("the start method does not touch the store; SQLite runs it")
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
    (model,) = models_of_run(actor, run_id)
    assert [int(r["epoch"]) for r in read_history(Path(model.path))] == done


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

    return [
        pid
        for pid, name in names.items()
        if name.startswith("fv-run-") and descends_from_worker(pid)
    ]


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


def test_killed_worker_run_is_resumed_by_the_next_worker(
    workbench: dict[str, str], actor: Actor
) -> None:
    runs_dir = Path(workbench["FAKEVOICE_DATA_DIR"]) / "runs"
    earlier = {p.name: folder_hashes(p) for p in runs_dir.iterdir()}
    assert earlier, "the earlier tests left runs to protect"
    epochs = 20
    run_id = submit(actor, "to kill", quick_spec(epochs=epochs))

    worker = start_worker(workbench)
    try:
        # The first epoch's checkpoint, not its metric row (written just before the checkpoint):
        # a kill between the two rightly restarts the run from scratch.
        state = runs_dir / str(run_id) / "checkpoints" / "state.json"
        wait_for(state.is_file, 90, "the first epoch's checkpoint")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    killed_at = epochs_of(actor, run_id)
    assert len(killed_at) < epochs, "the run finished before the kill; make it longer"
    assert get_run(actor, run_id).status == "running"  # nobody has noticed yet

    time.sleep(STALE_SECONDS + 0.5)  # the heartbeat goes stale
    output = finish(start_worker(workbench, "--once"))
    assert "interrupted" in output

    run = get_run(actor, run_id)
    assert run.status == "succeeded", run.error
    assert run.resume_from_epoch is not None and run.resume_from_epoch >= 1
    assert epochs_of(actor, run_id) == list(range(epochs))
    assert [int(r["epoch"]) for r in read_history(runs_dir / str(run_id))] == list(range(epochs))
    assert {name: folder_hashes(runs_dir / name) for name in earlier} == earlier


# --- the command line ---------------------------------------------------------------------------


def test_cli_trains_lists_predicts_and_evaluates(workbench: dict[str, str], tmp_path: Path) -> None:
    if workbench["FAKEVOICE_DATABASE_URL"].startswith("postgresql"):
        pytest.skip("PostgreSQL runs the core job tests only; the CLI's store use is the same")
    import json

    import numpy as np
    import soundfile as sf
    from conftest import speechlike

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(FAKEVOICE), *args],
            env={**os.environ, **workbench},
            capture_output=True,
            text=True,
            timeout=180,
        )

    trained = cli(
        "train", "--dataset", DATASET, "--arch", "specnet", "--epochs", "1", "--batch-size", "4",
        "--name", "cli-run", "--inline", "--json",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    run = json.loads(trained.stdout)
    assert run["status"] == "succeeded" and run["name"] == "cli-run"
    assert [e["epoch"] for e in run["epochs_history"]] == [0]

    listed = cli("runs", "--json")
    assert listed.returncode == 0
    assert "cli-run" in [r["name"] for r in json.loads(listed.stdout)]
    jobs = cli("runs", "--jobs")
    assert jobs.returncode == 0 and "  train    cli-run" in jobs.stdout
    stopped = cli("stop", "cli-run")
    assert stopped.returncode == 0 and "succeeded" in stopped.stdout

    clip = tmp_path / "clip.wav"
    sf.write(clip, speechlike(5.0, seed=5), 16000)
    predicted = cli("predict", "--model", "cli-run", str(clip), "--json")
    assert predicted.returncode == 0, predicted.stderr
    (result,) = json.loads(predicted.stdout)["results"]
    assert result["label"] in {"human", "machine-generated", "inconclusive"}
    assert np.isclose(result["p_human"] + result["p_fake"], 1.0)
    assert len(result["windows"]) >= 2
    assert result["cautions"] == []
    phone = tmp_path / "phone.wav"
    sf.write(phone, speechlike(5.0, 8000, seed=6), 8000)  # longer than the 4 s window
    printed = cli("predict", "--model", "cli-run", str(phone))
    assert printed.returncode == 0, printed.stderr
    verdict_line, caution_line = printed.stdout.splitlines()
    assert verdict_line.startswith(f"{phone}: ") and "P(human) = " in verdict_line
    assert caution_line.startswith("  caution: The file was recorded at 8 kHz")

    history = cli("history", "--find", "PHONE", "--json")
    assert history.returncode == 0, history.stderr
    found = json.loads(history.stdout)
    assert found["total"] == 1 and found["items"][0]["file_name"] == "phone.wav"
    assert found["items"][0]["source"] == "cli"
    listed = cli("history", "--model", "cli-run", "--since", "2000-01-01")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2
    phone_id = found["items"][0]["id"]
    labelled = cli("label", str(phone_id), "--outcome", "machine-generated", "--note", "case 1")
    assert labelled.returncode == 0, labelled.stderr
    assert labelled.stdout.strip() == (
        f"verdict {phone_id} (phone.wav): really machine-generated; note: case 1"
    )
    known = json.loads(cli("history", "--outcome", "known", "--json").stdout)
    assert [(a["id"], a["note"]) for a in known["items"]] == [(phone_id, "case 1")]
    report = cli("history", "--report", str(phone_id))
    assert report.returncode == 0 and report.stdout.startswith("# Verdict: ")
    assert "- Recorded by the analyst: **machine-generated**" in report.stdout
    as_json = json.loads(cli("history", "--report", str(phone_id), "--json").stdout)
    assert as_json["outcome"] == {"really": "machine-generated", "note": "case 1"}
    exported = cli("history", "--verdict", result["label"], "--csv", "-")
    assert exported.returncode == 0 and exported.stdout.startswith("id,time_utc,file,")
    assert exported.stdout.count("clip.wav") == 1

    evaluated = cli("evaluate", "--model", "cli-run", "--dataset", DATASET, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["dataset"] == DATASET and 0.0 <= report["accuracy"] <= 1.0
    assert set(report["generator_eer"]) == {"griffinlim", "world"}
    assert list(report["noise_eer"]) == ["snr_inf"]  # the tiny dataset is clean only
    scores = tmp_path / "scores.csv"
    printed = cli(
        "evaluate", "--model", "cli-run", "--dataset", DATASET, "--split", "all",
        "--limit", "12", "--scores", str(scores),
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "(all, 12 items)" in printed.stdout
    rows = scores.read_text().splitlines()
    classes = "p:bonafide,p:spoof"  # the run is binary: every class's probability follows
    assert rows[0] == f"item,speaker,class,noise,p_human,predicted,{classes}"
    assert len(rows) == 13
    assert "(all, " in printed.stdout and "EER at each noise level:" in printed.stdout
    assert "clean" in printed.stdout and "griffinlim" in printed.stdout

    # Two models at once, in this process; the same queued as a job for a worker.
    both = cli(
        "evaluate", "--model", "cli-run", "--model", "cli-run", "--dataset", DATASET,
        "--split", "all", "--limit", "8", "--json", "--scores", str(scores),
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert [r["n"] for r in json.loads(both.stdout)] == [8, 8]
    assert scores.read_text().splitlines()[0] == (
        f"model,item,speaker,class,noise,p_human,predicted,{classes}"
    )
    queued = cli(
        "evaluate", "--model", "cli-run", "--dataset", DATASET, "--split", "all", "--limit", "8",
        "--queue", "--json",
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    test = json.loads(queued.stdout)
    assert test["status"] == "queued" and test["name"] == f"test cli-run on {DATASET}"
    early = cli("evaluate", "--results", str(test["id"]))
    assert early.returncode == 2 and "is queued; it has no result yet" in early.stderr
    worker = subprocess.Popen(
        [str(FAKEVOICE), "worker"],
        env={**os.environ, **workbench},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # --wait: queued, scored by the worker, shown when done
        waited = cli(
            "evaluate", "--model", "cli-run", "--dataset", DATASET, "--split", "all",
            "--limit", "6", "--queue", "--wait",
        )  # fmt: skip
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith(f"model cli-run on {DATASET} (all, 6 items)")
    shown = cli("evaluate", "--results", str(test["id"]), "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["n"] == 8 and report["model"]["name"] == "cli-run"

    # A copy calibrated on a dataset's labels: not on 8 items, on the whole tiny dataset yes.
    few = cli("calibrate", "--model", "cli-run", "--results", str(test["id"]))
    assert few.returncode == 2 and "needs at least 20 scored items" in few.stderr
    calibrated = cli(
        "calibrate", "--model", "cli-run", "--dataset", DATASET, "--name", "cli-run tuned",
        "--json",
    )  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stderr
    copy = json.loads(calibrated.stdout)
    assert copy["name"] == "cli-run tuned" and copy["calibration"]["dataset"] == DATASET
    assert copy["calibration"]["items"] >= 20 and copy["calibration"]["temperature"] > 0
    listed_models = json.loads(cli("models", "--json").stdout)
    assert {"cli-run", "cli-run tuned"} <= {m["name"] for m in listed_models}

    for bad in (
        ("train", "--dataset", DATASET, "--epochs", "0", "--inline"),
        ("evaluate", "--dataset", DATASET),
        ("evaluate", "--results", str(test["id"]), "--model", "cli-run"),
        ("calibrate", "--model", "cli-run"),
        ("calibrate", "--model", "cli-run", "--dataset", DATASET, "--name", "cli-run tuned"),
        ("predict", "--model", "no-such-model", str(clip)),
        ("history", "--since", "yesterday"),
        ("history", "--since", "2026-02-01", "--until", "2026-01-01"),
        ("label", "999999", "--outcome", "human"),
        ("history", "--report", "999999"),
        ("label", "1"),
    ):
        failed = cli(*bad)
        assert failed.returncode == 2, (bad, failed.stderr)
        # One line and nothing else: no traceback, no warnings of the libraries underneath.
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fakevoice: "), failed.stderr
