"""The results service: what a run produced, its downloads, ownership, and the lr suggestion.

A real ``fakevoice worker --once`` process trains a run on the tiny dataset of test_training into
a real SQLite file; the tests read it back through :mod:`fakevoice.services.results`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_training import DATASET, quick_spec, tiny_dataset_root
from workbench import active_workbench, make_user

from fakevoice import services
from fakevoice.bundle_figures import FIGURES_FILE
from fakevoice.errors import InvalidSpecError, NotFoundError, ServerConfigError
from fakevoice.services import results
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor

REPO = Path(__file__).resolve().parent.parent
FAKEVOICE = REPO / ".venv" / "bin" / "fakevoice"


def workbench_env(base: Path, datasets_from: Path) -> dict[str, str]:
    """Settings for a module and its worker processes: a fresh data folder, database, dataset."""
    datasets = base / "datasets"
    shutil.copytree(datasets_from / DATASET, datasets / DATASET)
    return {
        "FAKEVOICE_DATA_DIR": str(base / "data"),
        "FAKEVOICE_DATASET_DIR": str(datasets),
        "FAKEVOICE_DATABASE_URL": f"sqlite:///{base / 'data' / 'workbench.sqlite'}",
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "8",
        "OMP_NUM_THREADS": "1",  # tiny models on a shared machine train faster on one thread
    }


def run_worker(env: dict[str, str], timeout: float = 180) -> None:
    """Run a real worker process until the queue is empty."""
    done = subprocess.run(
        [str(FAKEVOICE), "worker", "--once"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = workbench_env(tmp_path_factory.mktemp("results"), tiny_dataset_root(tmp_path_factory))
    with active_workbench(env) as active:
        yield active


@pytest.fixture(scope="module")
def owner(workbench: dict[str, str]) -> Actor:
    return make_user("owner")


@pytest.fixture(scope="module")
def stranger(workbench: dict[str, str]) -> Actor:
    return make_user("stranger")


@pytest.fixture(scope="module")
def trained(workbench: dict[str, str], owner: Actor) -> int:
    """A two-epoch multiclass run, trained by a real worker."""
    run = services.submit_run(owner, "trained", quick_spec(epochs=2, task="multiclass"))
    run_worker(workbench)
    assert services.get_run(owner, run.id).status == "succeeded"
    return run.id


def test_run_results_of_a_trained_run(owner: Actor, trained: int) -> None:
    result = results.run_results(owner, trained)
    assert result.run.id == trained and result.run.status == "succeeded"
    assert list(result.history["epoch"]) == [0, 1]
    assert list(result.history.columns) == [
        "epoch", "train_loss", "valid_loss", "accuracy", "macro_f1", "eer", "seconds",
    ]  # fmt: skip
    assert result.history["valid_loss"].notna().all()
    assert set(result.batches["epoch"]) == {0, 1}
    assert list(result.batches["step"]) == sorted(result.batches["step"])
    assert result.files == results.ARTEFACT_NAMES and result.has_bundle
    assert result.metrics["class_names"] == ["bonafide", "griffinlim", "world"]
    assert result.confusion is not None
    assert result.confusion.class_names == ["bonafide", "griffinlim", "world"]
    assert sum(map(sum, result.confusion.counts)) == result.metrics["valid_items"]
    assert result.roc is not None and len(result.roc.fpr) == len(result.roc.tpr) >= 2
    eer = result.metrics["eer"]
    assert result.roc.eer == pytest.approx(eer)
    assert result.roc.eer_point == pytest.approx((eer, 1 - eer))
    (model,) = [m for m in services.list_models(owner) if m.run_id == trained]
    assert result.model_id == model.id


def test_artefacts_are_the_run_files(owner: Actor, trained: int) -> None:
    folder = Path(get_settings().data_dir) / "runs" / str(trained)
    for name in results.ARTEFACT_NAMES:
        assert results.artefact_bytes(owner, trained, name) == (folder / name).read_bytes()
    history = list(
        csv.DictReader(io.StringIO(results.artefact_bytes(owner, trained, "history.csv").decode()))
    )
    assert [row["epoch"] for row in history] == ["0", "1"]
    assert results.artefact_bytes(owner, trained, "loss_curve.png").startswith(b"\x89PNG")


def test_unknown_or_path_like_names_are_refused(owner: Actor, trained: int) -> None:
    outside = Path(get_settings().data_dir) / "secret.txt"
    outside.write_text("not a run file")
    for name in (
        "../x",
        "../../secret.txt",
        "/etc/passwd",
        "model.safetensors",
        "",
        "checkpoints/last.pth",
    ):
        with pytest.raises(NotFoundError, match="has no file called"):
            results.artefact_bytes(owner, trained, name)


def test_bundle_zip_holds_weights_and_manifest(owner: Actor, trained: int) -> None:
    folder = Path(get_settings().data_dir) / "runs" / str(trained)
    with zipfile.ZipFile(io.BytesIO(results.bundle_zip(owner, trained))) as archive:
        # The run stored its model: its bundle, with the validation figures signed here.
        assert sorted(archive.namelist()) == ["manifest.json", "model.safetensors", FIGURES_FILE]
        assert archive.read("model.safetensors") == (folder / "model.safetensors").read_bytes()
        manifest = json.loads(archive.read("manifest.json"))
        figures = json.loads(archive.read(FIGURES_FILE))["figures"]
    assert figures["eer"] == json.loads((folder / "metrics.json").read_text())["eer"]
    assert manifest["arch"] == "specnet"
    assert manifest["class_names"] == ["bonafide", "griffinlim", "world"]


def test_another_user_sees_nothing(stranger: Actor, trained: int) -> None:
    for call in (
        lambda: results.run_results(stranger, trained),
        lambda: results.artefact_bytes(stranger, trained, "model.pkl"),
        lambda: results.artefact_bytes(stranger, trained, "../x"),
        lambda: results.bundle_zip(stranger, trained),
    ):
        with pytest.raises(NotFoundError, match=f"no run with id {trained}"):
            call()


def test_a_queued_run_has_no_files_yet(owner: Actor) -> None:
    run = services.submit_run(owner, "waiting", quick_spec())
    result = results.run_results(owner, run.id)
    assert result.run.status == "queued"
    assert result.history.empty and result.batches.empty
    assert result.files == () and not result.has_bundle
    assert result.metrics == {} and result.confusion is None and result.roc is None
    assert result.model_id is None
    with pytest.raises(NotFoundError, match="has no model.pkl"):
        results.artefact_bytes(owner, run.id, "model.pkl")
    with pytest.raises(NotFoundError, match="has no saved model"):
        results.bundle_zip(owner, run.id)
    services.stop_run(owner, run.id)


def test_suggest_learning_rate(owner: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    # The app's own cuDNN settings (it goes on scoring clips) are left as they were.
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    lr = results.suggest_learning_rate(owner, quick_spec(batch_size=4, epochs=500))
    assert math.isfinite(lr) and 1e-5 <= lr <= 1e-1
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    with pytest.raises(InvalidSpecError, match="unknown speaker"):
        results.suggest_learning_rate(owner, quick_spec(speakers=("nobody",)))
    with pytest.raises(NotFoundError, match="no dataset named"):
        results.suggest_learning_rate(owner, quick_spec(dataset="../" + DATASET))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_suggest_learning_rate_runs_where_this_process_scores_clips(
    owner: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finder runs in the app's (or API's) own process, not on the worker that will train
    the run: a run asking for CUDA, or an operator's FAKEVOICE_DEVICE=cuda meant for the GPU
    worker, still gets a suggestion from an app server without a GPU (it was refused as if the
    run could not train); FAKEVOICE_VERDICT_DEVICE, this process's own device, decides."""
    assert 1e-5 <= results.suggest_learning_rate(owner, quick_spec(device="cuda")) <= 1e-1
    monkeypatch.setenv("FAKEVOICE_DEVICE", "cuda")
    get_settings.cache_clear()
    try:
        assert 1e-5 <= results.suggest_learning_rate(owner, quick_spec(device="auto")) <= 1e-1
        monkeypatch.setenv("FAKEVOICE_VERDICT_DEVICE", "cuda")
        get_settings.cache_clear()
        with pytest.raises(ServerConfigError, match="FAKEVOICE_VERDICT_DEVICE is cuda"):
            results.suggest_learning_rate(owner, quick_spec())
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
