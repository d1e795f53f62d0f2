"""MLflow tracking of training runs: a real ``fakevoice worker`` trains, the MLflow client reads the
run back from the default local store; an unreachable tracking server never fails a run; and
``fakevoice runs export`` writes the runs' key figures as CSV."""

from __future__ import annotations

import csv
import io
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_jobs import finish
from test_training import DATASET, quick_spec, tiny_dataset_root
from workbench import active_workbench, get_run, make_user, start_worker, submit

from fakevoice import services, tracking
from fakevoice.cli import main
from fakevoice.services.results import run_metrics
from fakevoice.store.records import Actor

pytest.importorskip("mlflow", reason="MLflow tracking needs the 'mlflow-skinny' package")


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("tracking")
    datasets = base / "datasets"
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, datasets / DATASET)
    env = {
        "FAKEVOICE_DATA_DIR": str(base / "data"),
        "FAKEVOICE_DATASET_DIR": str(datasets),
        "FAKEVOICE_DATABASE_URL": f"sqlite:///{base / 'data' / 'tracking.sqlite'}",
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "8",
        "FAKEVOICE_CLI_USER": "tracker",
        "OMP_NUM_THREADS": "1",
    }
    with active_workbench(env, unset=("MLFLOW_TRACKING_URI",)) as active:
        yield active


@pytest.fixture(scope="module")
def actor(workbench: dict[str, str]) -> Actor:
    return make_user("tracker")


def test_flatten_params_names_nested_options() -> None:
    params = tracking.flatten_params(
        {"arch": "specnet", "noise_levels": ["snr_inf", "snr_20db"], "augment": {"mixup": 0.2},
         "learning_rate": None}
    )  # fmt: skip
    assert params == {
        "arch": "specnet",
        "noise_levels": "snr_inf,snr_20db",
        "augment.mixup": "0.2",
        "learning_rate": "none",
    }


def test_worker_run_is_tracked_in_mlflow(workbench: dict[str, str], actor: Actor) -> None:
    from mlflow.tracking import MlflowClient

    run_id = submit(actor, "tracked", quick_spec(epochs=2))
    finish(start_worker(workbench, "--once"))

    run = get_run(actor, run_id)
    assert run.status == "succeeded", run.error
    assert run.mlflow_run_id, "the run does not name its MLflow run"
    assert (Path(workbench["FAKEVOICE_DATA_DIR"]) / "mlruns" / "mlflow.db").is_file()

    client = MlflowClient(tracking_uri=tracking.tracking_uri())
    logged = client.get_run(run.mlflow_run_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "tracked"
    assert logged.data.tags["fakevoice.run_id"] == str(run_id)
    params = logged.data.params
    assert params["arch"] == "specnet" and params["dataset"] == DATASET and params["epochs"] == "2"
    assert params["augment.mixup"] == "0.0"
    for name in ("train_loss", "valid_loss", "accuracy", "macro_f1", "eer"):
        history = client.get_metric_history(run.mlflow_run_id, name)
        assert sorted(m.step for m in history) == [0, 1], name
    assert 0.0 <= logged.data.metrics["final_accuracy"] <= 1.0
    interval = run_metrics(run).get("eer_interval")  # none from the tiny set's few utterances
    assert ("final_eer_low" in logged.data.metrics) == isinstance(interval, dict)
    top = {a.path for a in client.list_artifacts(run.mlflow_run_id)}
    assert {"history.csv", "confusion.json", "confusion.png", "metrics.json", "bundle"} <= top
    assert "valid_scores.csv" in top
    bundle = {a.path for a in client.list_artifacts(run.mlflow_run_id, "bundle")}
    assert bundle == {"bundle/model.safetensors", "bundle/manifest.json"}
    local = client.download_artifacts(
        run.mlflow_run_id, "history.csv", str(Path(workbench["FAKEVOICE_DATA_DIR"]))
    )
    assert Path(local).read_text().splitlines()[0].startswith("epoch,")


def test_unreachable_tracking_server_never_fails_a_run(
    workbench: dict[str, str], actor: Actor
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_id = submit(actor, "untracked", quick_spec(epochs=1))
    env = {**workbench, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}  # fmt: skip
    output = finish(start_worker(env, "--once"))
    run = get_run(actor, run_id)
    assert run.status == "succeeded", run.error
    assert run.mlflow_run_id is None
    assert run.notice is not None and "MLflow tracking failed" in run.notice, output
    assert "MLflow tracking failed" in output


def test_runs_export_writes_every_run_with_key_metrics(
    workbench: dict[str, str], actor: Actor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs.csv"
    assert main(["runs", "export", "--out", str(out)]) == 0  # the CLI, as the workbench's user
    assert capsys.readouterr().err == f"2 runs written to {out}\n"
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
    assert set(rows) == {"tracked", "untracked"}
    tracked = rows["tracked"]
    assert tracked["status"] == "succeeded" and tracked["arch"] == "specnet"
    assert tracked["epochs"] == "2" and tracked["dataset"] == DATASET
    assert 0.0 <= float(tracked["best_eer"]) <= float(tracked["final_eer"]) <= 1.0
    assert 0.0 <= float(tracked["accuracy"]) <= 1.0 and tracked["finished"]
    assert tracked["mlflow_run_id"] == get_run(actor, int(tracked["id"])).mlflow_run_id
    assert rows["untracked"]["mlflow_run_id"] == ""
    # Each run's final EER at each noise level, then against each generator.
    header = out.read_text().splitlines()[0].split(",")
    assert header[-3:] == ["eer@snr_inf", "eer@griffinlim", "eer@world"]
    assert all(0.0 <= float(tracked[column]) <= 1.0 for column in header[-3:])
    # And its whole recipe, option by option, between the figures and the EERs.
    spec = [column for column in header if column.startswith("spec.")]
    assert header.index(spec[0]) == header.index("mlflow_run_id") + 1
    assert header.index(spec[-1]) + 1 == header.index("eer@snr_inf")
    recipe = get_run(actor, int(tracked["id"])).spec
    assert tracked["spec.arch"] == recipe["arch"] and tracked["spec.dataset"] == DATASET
    assert tracked["spec.batch_size"] == str(recipe["batch_size"])
    assert tracked["spec.augment.mixup"] == str(recipe["augment"]["mixup"])
    assert tracked["spec.callbacks.grad_clip"] == "off"
    assert tracked["spec.noise_levels"] == "all"

    assert main(["runs", "export", "--out", str(tmp_path / "missing" / "x.csv")]) == 2
    said = capsys.readouterr().err
    assert said.startswith("fakevoice: Cannot write") and "Traceback" not in said, said


def test_a_deleted_run_leaves_no_mlflow_run_nor_artefacts(
    workbench: dict[str, str], actor: Actor
) -> None:
    from mlflow.tracking import MlflowClient

    from fakevoice.services import profile

    run_id = submit(actor, "to forget", quick_spec(epochs=1))
    finish(start_worker(workbench, "--once"))
    run = get_run(actor, run_id)
    assert run.status == "succeeded" and run.mlflow_run_id, run.error
    client = MlflowClient(tracking_uri=tracking.tracking_uri())
    artefacts = Path(client.get_run(run.mlflow_run_id).info.artifact_uri.removeprefix("file://"))
    assert (artefacts / "bundle" / "model.safetensors").is_file()
    another = artefacts.parent.parent / "another-run" / "artifacts" / "history.csv"
    another.parent.mkdir(parents=True)
    another.write_text("epoch\n")

    profile.delete_job(actor, run_id)  # as the Profile page and `fakevoice runs delete` do
    assert tracking.wait_until_forgotten(timeout=120)  # MLflow's copy goes in the background

    assert client.get_run(run.mlflow_run_id).info.lifecycle_stage == "deleted"
    assert not artefacts.parent.exists()
    assert another.read_text() == "epoch\n"  # another run's artefacts stay
    assert run_id not in {r.id for r in services.list_runs(actor, kind=None)}


def test_deleting_a_run_does_not_wait_on_a_tracking_server_that_hangs(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tracking server that takes connections and never answers: the delete returns while its
    MLflow run is still being forgotten; the run is gone from the store and its folder at once,
    and the forgetting ends (logged) when the server goes."""
    from fakevoice import store
    from fakevoice.services import profile
    from fakevoice.settings import get_settings

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # connections queue; nobody reads them
    monkeypatch.setenv(
        "FAKEVOICE_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.getsockname()[1]}"
    )
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    get_settings.cache_clear()
    store.init_db()
    owner = make_user("forgetful")
    with store.session_scope() as session:
        run = store.create_run(session, owner, "tracked elsewhere", quick_spec(epochs=1).to_dict())
        store.claim_next_queued_run(session, "w1")
        store.set_run_info(session, run.id, mlflow_run_id="0123456789abcdef")
        store.set_status(session, run.id, "failed", worker_id="w1", error="out of memory")
    folder = profile.run_folder(run.id)
    folder.mkdir(parents=True)
    (folder / "history.csv").write_text("epoch\n")
    try:
        profile.delete_run(owner, run.id)
        assert tracking.forgetting() == 1  # still waiting on the server
        assert not folder.exists()
        assert run.id not in {r.id for r in services.list_runs(owner, kind=None)}
    finally:
        server.close()  # the waiting request fails: the forgetting ends
        assert tracking.wait_until_forgotten(timeout=120)
        store.dispose_engines()
