"""Tests of models on a dataset as background jobs: the spec and its checks, a real worker process
scoring two models, ownership, stop, a failure that keeps the models done, a lost job, clearing.

The models are the session's tiny specnet (trained once, see test_uploads), registered twice; the
dataset is the tiny one of test_training, copied into a fresh workbench.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_page_evaluate import run_queued_jobs
from test_results import run_worker, workbench_env
from test_training import DATASET, tiny_dataset_root
from test_uploads import bundle_zip, register_run_model, trained_run_dir
from workbench import active_workbench, make_user

from fakevoice import services, store
from fakevoice.cautions import ERRING_MODEL_EER, model_cautions
from fakevoice.errors import ConflictError, InvalidSpecError, LimitExceededError, NotFoundError
from fakevoice.services import profile, uploads
from fakevoice.services.evaluation_jobs import (
    MAX_TESTED_MODELS,
    EvaluationSpec,
    latest_tests,
    results_dir,
)
from fakevoice.store.records import Actor, ModelRecord


@pytest.fixture
def workbench(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = workbench_env(tmp_path, tiny_dataset_root(tmp_path_factory))
    with active_workbench(env) as active:
        yield active


@pytest.fixture
def owner(workbench: dict[str, str]) -> Actor:
    return make_user("owner")


@pytest.fixture
def models(owner: Actor, tmp_path_factory: pytest.TempPathFactory) -> list[ModelRecord]:
    folder = trained_run_dir(tmp_path_factory)
    return [register_run_model(owner, folder, name) for name in ("first", "second")]


def test_the_spec_is_checked_and_kept_as_json() -> None:
    spec = EvaluationSpec((3, 1), "demo", "all", 200)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["kind"] == "evaluate" and EvaluationSpec.from_dict(data) == spec
    for models, split, limit, message in [
        ((), "all", 10, "1 to 4 models"),
        (tuple(range(1, MAX_TESTED_MODELS + 2)), "all", 10, "1 to 4 models"),
        ((1, 1), "all", 10, "tested once"),
        ((True,), "all", 10, "by their ids"),
        ((1,), "train", 10, "split must be"),
        ((1,), "all", 0, "at least 1"),
        ((1,), "all", 10**6, "at most 5000 items"),
    ]:
        with pytest.raises(InvalidSpecError, match=message):
            EvaluationSpec(models, "demo", split, limit)
    with pytest.raises(InvalidSpecError, match="not the spec of a test"):
        EvaluationSpec.from_dict({"kind": "evaluate", "dataset": "demo"})


def test_a_worker_scores_each_model_and_only_the_owner_sees_the_results(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord]
) -> None:
    run = services.submit_evaluation(owner, [m.id for m in models], DATASET, "all", limit=20)
    assert run.kind == "evaluate" and run.status == "queued"
    assert run.name == f"test first and 1 more on {DATASET}"
    assert services.list_runs(owner) == []  # training runs are listed apart
    assert services.evaluation_results(owner, run.id) == []

    run_worker(workbench)
    done = services.get_evaluation(owner, run.id)
    assert done.status == "succeeded" and done.progress == 1.0 and done.total_epochs == 2
    first, second = services.evaluation_results(owner, run.id)
    assert [first.report["model"]["name"], second.report["model"]["name"]] == ["first", "second"]
    assert first.report["n"] == second.report["n"] == 20 and first.report["split"] == "all"
    # The same weights on the same sample of items: the same scores, read back from the files.
    assert list(first.scores["item"]) == list(second.scores["item"])
    assert first.scores["p_human"].tolist() == pytest.approx(second.scores["p_human"].tolist())
    header = first.scores_csv().decode().splitlines()[0]
    assert header.startswith("item,speaker,class,noise,p_human,predicted,p:")
    # Every class's probability per item is kept (a calibration is fitted on them).
    probabilities = first.probabilities()
    assert probabilities is not None and probabilities.shape == (len(first.scores), 3)
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(len(first.scores)), abs=1e-6)
    assert services.list_analyses(owner) == []  # a test is not a verdict

    stranger = make_user("stranger")
    for action in (services.get_evaluation, services.evaluation_results, services.clear_evaluation):
        with pytest.raises(NotFoundError):
            action(stranger, run.id)
    assert services.list_evaluations(stranger) == []
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    assert len(services.evaluation_results(root, run.id)) == 2

    again = services.submit_evaluation(
        owner, [models[0].id, models[1].id], DATASET, "all", limit=20
    )
    assert again.name == f"test first and 1 more on {DATASET} (2)"


def test_a_test_needs_models_and_a_dataset_the_actor_may_use(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord]
) -> None:
    stranger = make_user("stranger")
    with pytest.raises(NotFoundError):
        services.submit_evaluation(stranger, [models[0].id], DATASET)  # a private model
    with pytest.raises(NotFoundError, match="no dataset named"):
        services.submit_evaluation(owner, [models[0].id], "missing")
    with pytest.raises(InvalidSpecError, match="at most 5000 items"):
        services.submit_evaluation(owner, [models[0].id], DATASET, limit=5001)
    with store.session_scope() as session:
        training = store.create_run(session, owner, "a training run", {"epochs": 1})
    with pytest.raises(InvalidSpecError, match="not a test"):
        services.get_evaluation(owner, training.id)


def test_stopping_a_queued_test_cancels_it_and_clear_removes_it(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord]
) -> None:
    run = services.submit_evaluation(owner, [models[0].id], DATASET)
    with pytest.raises(ConflictError, match="stop it first"):
        services.clear_evaluation(owner, run.id)
    assert services.stop_evaluation(owner, run.id).status == "cancelled"
    assert run_queued_jobs() == []
    services.clear_evaluation(owner, run.id)
    assert services.list_evaluations(owner) == []


def test_a_test_counts_against_the_jobs_a_user_may_have(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from fakevoice.settings import get_settings

    monkeypatch.setenv("FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER", "1")
    get_settings.cache_clear()
    services.submit_evaluation(owner, [models[0].id], DATASET)
    with pytest.raises(LimitExceededError, match="dataset builds, renders or tests"):
        services.submit_evaluation(owner, [models[1].id], DATASET)


def test_a_stop_request_ends_a_running_test_at_its_next_progress_write(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord]
) -> None:
    from fakevoice.jobs.runner import execute_run

    run = services.submit_evaluation(owner, [models[0].id], DATASET)
    with store.session_scope() as session:
        store.claim_next_queued_run(session, "w1")
    services.stop_evaluation(owner, run.id)  # running: asked, not yet stopped
    assert services.get_evaluation(owner, run.id).status == "running"
    assert execute_run(run.id, "w1") == "cancelled"
    assert services.get_evaluation(owner, run.id).error == "Stopped on request."


def test_a_failing_model_fails_the_test_and_keeps_the_models_done(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord]
) -> None:
    run = services.submit_evaluation(owner, [m.id for m in models], DATASET, "all", limit=10)
    with store.session_scope() as session:
        store.delete_model(session, owner, models[1].id)
    assert run_queued_jobs() == ["failed"]
    failed = services.get_evaluation(owner, run.id)
    assert "no model" in (failed.error or "").lower()
    (kept,) = services.evaluation_results(owner, run.id)
    assert kept.report["model"]["name"] == "first"


def test_a_lost_test_is_left_to_the_next_worker_and_starts_over(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord]
) -> None:
    from fakevoice.jobs.runner import execute_run

    run = services.submit_evaluation(owner, [models[0].id], DATASET, "all", limit=10)
    with store.session_scope() as session:
        store.claim_next_queued_run(session, "dead-worker")
        store.set_status(session, run.id, "interrupted", worker_id="dead-worker")
    assert execute_run(run.id, "dead-worker") == "interrupted"  # no longer held by this worker
    assert services.resume_run(owner, run.id).status == "queued"
    assert run_queued_jobs() == ["succeeded"]
    (result,) = services.evaluation_results(owner, run.id)
    assert result.report["n"] == 10


def test_deleting_a_user_removes_their_tests_files(
    workbench: dict[str, str], owner: Actor, models: list[ModelRecord]
) -> None:
    run = services.submit_evaluation(owner, [models[0].id], DATASET, "all", limit=10)
    assert run_queued_jobs() == ["succeeded"]
    folder = results_dir(run.id)
    assert (folder / "0-scores.csv").is_file()
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    from fakevoice.services import profile

    profile.delete_user(root, owner.user_id)
    assert not folder.exists()


def test_a_model_a_queued_test_uses_is_not_deleted_until_the_test_is_stopped(
    workbench: dict[str, str], owner: Actor, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A model in a folder of its own (an uploaded bundle): deleting it removes that folder.
    bundle = bundle_zip(trained_run_dir(tmp_path_factory))
    model = uploads.import_uploaded_model(owner, "under test", "bundle.zip", bundle)
    run = services.submit_evaluation(owner, [model.id], DATASET)
    with pytest.raises(ConflictError, match="test of models uses model 'under test'"):
        profile.delete_model(owner, model.id)
    assert services.get_model(owner, model.id).name == "under test"  # rolled back, files kept
    assert Path(model.path).is_dir()
    services.stop_evaluation(owner, run.id)
    profile.delete_model(owner, model.id)
    assert not Path(model.path).exists()


def test_a_verdict_says_the_error_rate_is_unknown_until_the_model_is_tested_here(
    workbench: dict[str, str], owner: Actor, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_training import make_tiny_dataset
    from test_uploads import wav_bytes

    from fakevoice.settings import get_settings

    def unknown_quality(actor: Actor, model: ModelRecord) -> list[str]:
        scored = services.score_clip(actor, model.id, wav_bytes(2.0, seed=3), file_name="c.wav")
        assert scored.analysis.cautions == scored.verdict.cautions  # kept in the history too
        return [
            c
            for c in scored.verdict.cautions
            if c.startswith(("This model's error rate", "In your test on dataset"))
        ]

    # An uploaded bundle without figures: nobody here knows how often it errs.
    bundle = bundle_zip(trained_run_dir(tmp_path_factory))
    model = uploads.import_uploaded_model(owner, "shared with me", "bundle.zip", bundle)
    (caution,) = unknown_quality(owner, model)
    assert "it has no validation EER measured on this server" in caution
    assert "Test on a dataset (on the Evaluate page, or fakevoice evaluate --queue)" in caution

    # Three tests: on the dataset it was trained on (its recipe travels in the bundle), on one
    # it never heard, and on that one with human and machine labels swapped (where it fails).
    other, swapped = "fresh", "swapped"
    make_tiny_dataset(
        get_settings().dataset_dir / other, speakers=("new_a", "new_b"), first_seed=50_000
    )
    shutil.copytree(get_settings().dataset_dir / other, get_settings().dataset_dir / swapped)
    manifest = get_settings().dataset_dir / swapped / "manifest.csv"
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    rows["class"] = (
        rows["class"]
        .map({"bonafide": "griffinlim", "griffinlim": "bonafide"})
        .fillna(rows["class"])
    )
    rows.to_csv(manifest, index=False)
    own_data, run, failing = (
        services.submit_evaluation(owner, [model.id], dataset, "all", limit=20)
        for dataset in (DATASET, other, swapped)
    )
    assert unknown_quality(owner, model) == [caution]  # queued is not measured
    assert run_queued_jobs() == ["succeeded"] * 3
    found = {r.id: services.evaluation_results(owner, r.id)[0].report for r in (run, failing)}
    assert found[failing.id]["eer"] >= 0.4

    # The newest test that measured it speaks, in the words of a weak model's caution.
    tested = latest_tests(owner, [model.id])[model.id]
    assert (tested.test_id, tested.dataset, tested.items) == (failing.id, swapped, 20)
    assert tested.eer == found[failing.id]["eer"] and tested.measures
    date = f"{tested.saved:%Y-%m-%d}"
    weak = (
        f"In your test on dataset 'swapped' (test #{failing.id}, {date}) this model's EER was "
        f"{found[failing.id]['eer']:.1%} on 20 items: on that audio it told human from machine "
        "speech little better than chance (50 %). Do not rely on its verdict."
    )
    assert unknown_quality(owner, model) == [weak]
    # A copy calibrated on a test scores as the model it copies: by that model's newest test.
    copy = services.calibrate_on_test(owner, run.id, model.id, "calibrated")
    assert unknown_quality(owner, copy) == [weak]
    # Someone else using it has not measured it (the owner's test is the owner's to see).
    profile.set_model_public(owner, model.id, True)
    assert unknown_quality(make_user("reader"), model) == [caution]
    # A cleared test measures nothing any more: the test before it speaks.
    services.clear_evaluation(owner, failing.id)
    assert unknown_quality(owner, model) == model_cautions(
        model.metrics, tested=latest_tests(owner, [model.id])[model.id]
    )
    eer = found[run.id]["eer"]
    assert (unknown_quality(owner, model) == []) == (eer < ERRING_MODEL_EER)
    # A test on the audio it was trained on does not vouch for it: it flatters its EER.
    services.clear_evaluation(owner, run.id)
    (flattered,) = unknown_quality(owner, model)
    assert flattered.startswith(
        "This model's error rate is unknown: it has no validation EER measured on this server, "
        f"and your test on dataset '{DATASET}' (test #{own_data.id}, "
    )
    assert "held audio it was trained on (" in flattered and "which flatters its EER" in flattered
    assert unknown_quality(owner, copy) == [flattered]
    services.clear_evaluation(owner, own_data.id)
    assert unknown_quality(owner, model) == [caution]
    assert unknown_quality(owner, copy) == [caution]

    # Trained here: measured on its run's validation split, with or without an EER kept.
    with store.session_scope() as session:
        training = store.create_run(session, owner, "a training run", {"epochs": 1})
        trained = store.add_model(
            session,
            owner,
            name="trained here",
            arch=model.arch,
            class_names=model.class_names,
            sample_rate=model.sample_rate,
            clip_samples=model.clip_samples,
            path=model.path,
            files=model.files,
            feature_spec=model.feature_spec,
            metrics={"eer": None},
            run_id=training.id,
        )
    assert unknown_quality(owner, trained) == []
