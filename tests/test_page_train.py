"""The Train page (AppTest, in-process): the form, user errors, the live panel, results, access.

Runs go into a real SQLite file; one is trained by a real ``fakevoice worker --once`` process on
the tiny dataset of test_training, so the results view shows real artefacts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from conftest import REPO
from sqlalchemy import update
from streamlit.testing.v1 import AppTest
from test_results import run_worker, workbench_env
from test_training import DATASET, quick_spec, tiny_dataset_root
from workbench import active_workbench, make_user

from fakevoice import services, store
from fakevoice.services import results
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, BatchMetric, EpochMetric
from fakevoice.store.tables import RunRow

USER_KEY = "fakevoice_user_id"


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = workbench_env(tmp_path_factory.mktemp("train-page"), tiny_dataset_root(tmp_path_factory))
    with active_workbench(env) as active:
        yield active


@pytest.fixture(scope="module")
def alice(workbench: dict[str, str]) -> Actor:
    return make_user("alice")


@pytest.fixture(scope="module")
def bob(workbench: dict[str, str]) -> Actor:
    return make_user("bob")


@pytest.fixture(scope="module")
def trained(workbench: dict[str, str], alice: Actor) -> int:
    """One epoch of specnet, trained by a real worker process."""
    run = services.submit_run(alice, "trained", quick_spec(epochs=1))
    run_worker(workbench)
    assert services.get_run(alice, run.id).status == "succeeded"
    return run.id


def train_page(actor: Actor | None, run_id: int | str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    if actor is not None:
        at.session_state[USER_KEY] = actor.user_id
    at.switch_page("pages/train.py")
    if run_id is not None:
        at.query_params["run"] = str(run_id)
    return at.run()


def messages(elements: object) -> str:
    return " | ".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def blocks(node: Any) -> list[Any]:
    """Every layout block under ``node`` (containers, columns, expanders...), depth first."""
    found = []
    for child in getattr(node, "children", {}).values():
        if type(child).__name__ == "Block":
            found.append(child)
        found.extend(blocks(child))
    return found


def run_names(actor: Actor) -> list[str]:
    return [r.name for r in services.list_runs(actor)]


def test_signed_out_gets_a_sign_in_prompt(workbench: dict[str, str]) -> None:
    at = train_page(None)
    assert not at.exception
    assert "Sign in" in messages(at.info)
    assert not at.button and not at.selectbox


def test_form_submits_a_queued_run_and_opens_its_panel(alice: Actor) -> None:
    at = train_page(alice)
    assert not at.exception, at.exception
    assert at.selectbox(key="train_dataset").value == DATASET
    # The selection notice: 2 speakers x 5 utterances x 3 classes, one noise level.
    assert "selects **30** spectrograms" in messages(at.info)
    table = at.dataframe[0].value
    assert table.to_dict() == {"clean": {"spk_a": 15, "spk_b": 15}}
    at.multiselect(key=f"train_speakers:{DATASET}").set_value(["spk_a"]).run()
    assert "selects **15** spectrograms" in messages(at.info)
    for widget in at.main:  # every input says what it does
        if getattr(widget, "type", None) in {"selectbox", "multiselect", "number_input", "slider"}:
            assert widget.help, widget.label

    at.text_input(key="train_run_name").set_value("first")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch_size").set_value(4)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error, messages(at.error)

    (run,) = [r for r in services.list_runs(alice) if r.name == "first"]
    assert run.status == "queued" and run.total_epochs == 1
    assert run.spec["speakers"] == ["spk_a"] and run.spec["noise_levels"] is None
    assert run.spec["batch_size"] == 4 and run.spec["arch"] == "specnet"
    assert at.query_params["run"] == str(run.id)
    # No worker runs here: the panel says so at once, and how to start one.
    (note,) = [m for m in messages(at.warning).split(" | ") if m.startswith("No worker")]
    assert note.startswith("No worker is running (") and "fakevoice worker" in note
    assert at.get("progress")
    with store.session_scope() as session:  # a worker reports itself: the job just waits its turn
        store.worker_seen(session, "local-page-test", backend="local", concurrency=1, running=0)
    at.run()
    assert "Queued: a worker takes it up" in messages(at.info)
    assert "No worker" not in messages(at.warning)
    with store.session_scope() as session:  # gone again, for the tests after this one
        store.worker_stopped(session, "local-page-test")
    assert at.text_input(key="train_run_name").value != "first"  # a fresh name for the next run

    at.button(key="train_stop").click().run()  # a queued run is cancelled at once
    assert services.get_run(alice, run.id).status == "cancelled"
    assert "Stopped after 0 epoch(s)" in messages(at.warning)


def test_train_again_puts_a_runs_options_into_the_form(alice: Actor) -> None:
    from dataclasses import replace

    from fakevoice.trainspec import AugmentSpec, CallbackSpec

    spec = replace(
        quick_spec(epochs=3, batch_size=8),
        learning_rate=None,
        speakers=("spk_b",),
        classes=("bonafide", "griffinlim"),
        split_by="generator",
        holdout=("griffinlim",),
        valid_fraction=0.3,
        seed=7,
        class_weighting=False,
        augment=AugmentSpec(time_shift=False, freq_masks=2, time_masks=0, mixup=0.3),
        callbacks=CallbackSpec(early_stopping_patience=4, save_best=False, grad_clip=2.5),
    )
    source = services.submit_run(alice, "recipe", spec)
    at = train_page(alice, source.id)
    at.button(key="train_again").click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert "run" not in at.query_params  # the form, not the panel
    assert "options of run 'recipe'" in messages(at.info)
    assert at.multiselect(key=f"train_speakers:{DATASET}").value == ["spk_b"]
    assert at.number_input(key="train_epochs").value == 3
    assert at.checkbox(key="train_lr_auto").value
    assert at.slider(key="train_freq_masks").value == 2
    assert at.checkbox(key="train_early_stopping_on").value
    assert at.number_input(key="train_grad_clip").value == 2.5
    assert at.multiselect(key=f"train_holdout:{DATASET}").value == ["griffinlim"]

    # Started as it is, the new run has the same recipe; a change changes only itself.
    at.text_input(key="train_run_name").set_value("again")
    at.number_input(key="train_seed").set_value(8)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error, messages(at.error)
    (again,) = [r for r in services.list_runs(alice) if r.name == "again"]
    assert again.spec == {**services.get_run(alice, source.id).spec, "seed": 8}

    # A run whose dataset has gone keeps its other options and says so.
    with store.session_scope() as session:
        gone = store.create_run(session, alice, "elsewhere", {**source.spec, "dataset": "gone"})
    at = train_page(alice, gone.id)
    at.button(key="train_again").click().run()
    assert not at.exception, at.exception
    assert "dataset 'gone' is not here any more" in messages(at.warning)
    assert at.number_input(key="train_epochs").value == 3
    for run in (source, again, gone):
        services.stop_run(alice, run.id)


def test_form_estimates_memory_and_warns_when_a_run_will_not_fit(alice: Actor) -> None:
    at = train_page(alice)
    assert "Training specnet at batch 32 needs about" in messages(at.caption)
    assert "this machine has" in messages(at.caption) and not at.warning
    at.selectbox(key="train_arch").set_value("aasist-l").run()
    at.number_input(key="train_batch_size").set_value(512).run()
    # AASIST-L keeps about half a GiB per clip for the backward pass: 512 clips fit nowhere here.
    warning = messages(at.warning)
    assert "Training aasist-l at batch 512 needs about" in warning
    assert "Lower the batch size to" in warning or "Even the smallest batch" in warning


def test_user_errors_show_messages_and_lose_nothing(alice: Actor) -> None:
    taken = services.submit_run(alice, "taken", quick_spec())
    before = run_names(alice)
    at = train_page(alice)

    at.text_input(key="train_run_name").set_value("taken")
    at.button(key="train_start").click().run()
    assert "already have a run named 'taken'" in messages(at.error)
    assert at.text_input(key="train_run_name").value == "taken"  # the form keeps its values

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKEVOICE_MAX_EPOCHS", "3")
        get_settings.cache_clear()
        at.text_input(key="train_run_name").set_value("long")
        at.number_input(key="train_epochs").set_value(10)
        at.button(key="train_start").click().run()
        assert "at most 3 epochs" in messages(at.error)
    get_settings.cache_clear()
    assert at.number_input(key="train_epochs").value == 10

    at.number_input(key="train_epochs").set_value(2)
    at.multiselect(key=f"train_classes:{DATASET}").set_value([]).run()
    assert "Choose at least one" in messages(at.warning)
    at.button(key="train_start").click().run()
    assert "classes is empty" in messages(at.error)

    at.multiselect(key=f"train_classes:{DATASET}").set_value(["world"]).run()
    at.button(key="train_start").click().run()
    assert "needs human (bonafide) items" in messages(at.error)

    assert not at.exception
    assert run_names(alice) == before  # nothing queued, nothing lost
    services.stop_run(alice, taken.id)  # so the worker of the next test does not train it


def test_suggest_fills_in_the_learning_rate(alice: Actor) -> None:
    at = train_page(alice)
    assert at.number_input(key="train_lr").value == pytest.approx(1e-3)
    at.number_input(key="train_batch_size").set_value(4)
    at.button(key="train_suggest_lr").click().run()
    assert not at.exception and not at.error, messages(at.error)
    suggested = at.number_input(key="train_lr").value
    assert 1e-5 <= suggested <= 1e-1 and suggested != pytest.approx(1e-3)


def test_a_trained_run_shows_results_and_downloads(alice: Actor, trained: int) -> None:
    at = train_page(alice, trained)
    assert not at.exception, at.exception
    assert "Finished after 1 epoch(s)" in messages(at.success)
    assert at.subheader[0].value == "Run 'trained'"
    labels = {button.label: button for button in at.download_button}
    assert set(labels) == {
        "fastai export (.pkl)",
        "Epoch history (CSV)",
        "Loss curve (PNG)",
        "Confusion matrix (PNG)",
        "Safe bundle (zip)",
        "Model card (Markdown)",
    }
    assert not any(button.disabled for button in labels.values())
    # One wrapping row of buttons as wide as their labels (five columns cut the labels short).
    (row,) = [b for b in blocks(at.main) if b.proto.id.endswith("-train_downloads")]
    assert {button.label for button in row.children.values()} == set(labels)
    assert row.proto.flex_container.wrap
    assert {m.label for m in at.metric} >= {"Accuracy", "Macro F1", "EER", "AUC"}
    # Too few validation items in the tiny dataset to fit a calibration; the page says so.
    assert any("no calibration kept with this model" in c.value for c in at.caption)
    # Loss curves, confusion matrix, ROC, DET and the reliability diagram.
    assert len(at.get("vega_lite_chart")) == 5
    assert [t.label for t in at.tabs][-2:] == ["ROC", "DET"]
    assert "EER against each generator" in " ".join(str(m.value) for m in at.markdown)
    (by_generator,) = [f.value for f in at.dataframe if "generator" in f.value.columns]
    assert set(by_generator["generator"]) == {"griffinlim", "world"}
    assert "EER at each noise level" in " ".join(str(m.value) for m in at.markdown)
    (by_noise,) = [f.value for f in at.dataframe if "noise" in f.value.columns]
    assert list(by_noise["noise"]) == ["clean"]
    (model,) = [m for m in services.list_models(alice) if m.run_id == trained]
    (link,) = [p for p in at.get("page_link") if p.proto.label == "Evaluate this model"]
    assert link.proto.query_string == f"model={model.id}"
    assert f"trained (#{trained})" in at.selectbox(key="train_open_choice").options
    # The EER says how far it could move, or that its utterances are too few to say.
    captions = [c.value for c in at.caption]
    assert any(
        "bootstrap over whole" in c or c.startswith("No interval for this EER") for c in captions
    )


def test_a_run_says_which_epoch_its_stored_model_is_from(alice: Actor, trained: int) -> None:
    from test_page_profile import finished_run

    # Save-best (the default) keeps the epoch of the lowest validation EER, here the first of
    # two (EER 25 %, then 40 %): the headline is that epoch's, not the table's last row's.
    run, _ = finished_run(alice, "best first", eer=0.4)
    at = train_page(alice, run.id)
    assert not at.exception, at.exception
    saved = [c.value for c in at.caption if c.value.startswith("The stored model is from")]
    assert saved == ["The stored model is from epoch 1 of 2 (lowest validation EER)."]
    (epochs,) = [f.value for f in at.dataframe if "valid_loss" in f.value.columns]
    assert list(epochs["epoch"]) == [1, 2]
    # A real run of one epoch says it too.
    at = train_page(alice, trained)
    saved = [c.value for c in at.caption if c.value.startswith("The stored model is from")]
    assert saved == ["The stored model is from epoch 1 of 1 (lowest validation EER)."]


def _metrics_view() -> None:
    import streamlit as st

    from components import report_view

    report_view.render_metrics(st.session_state["report"])


def test_calibrated_figures_say_what_they_were_before_calibration() -> None:
    # A run's headline is its calibrated model's, its epochs the network's own: the page shows
    # both accuracies, so it says which is which (figures of a real 1-epoch demo run).
    report = {
        "accuracy": 0.5247,
        "macro_f1": 0.443,
        "eer": 0.4574,
        "calibration": {"temperature": 0.99, "bias": [0.0, -0.23], "items": 970},
        "before_calibration": {"eer": 0.4574, "accuracy": 0.7082, "macro_f1": 0.5284},
    }
    at = AppTest.from_function(_metrics_view)
    at.session_state["report"] = report
    at.run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Accuracy"] == "52.5%"
    (before,) = [c.value for c in at.caption if "before calibration" in c.value]
    assert "accuracy 70.8%, macro F1 0.528, EER 45.7%" in before
    # No calibration (too few items, an imported model): one set of figures, nothing to explain.
    at = AppTest.from_function(_metrics_view)
    at.session_state["report"] = {**report, "calibration": None}
    at.run()
    assert not [c.value for c in at.caption if "before calibration" in c.value]


def test_another_users_run_is_not_found(bob: Actor, trained: int) -> None:
    at = train_page(bob, trained)
    assert not at.exception
    assert messages(at.error) == f"There is no run with id {trained}."
    assert not at.download_button and not at.get("vega_lite_chart")
    assert "trained" not in " ".join(str(s.value) for s in at.subheader)
    assert "No runs yet." in messages(at.caption)

    for odd in ("../1", "1" * 30, "²"):  # a path, too large for the database, Unicode's digit
        at = train_page(bob, odd)
        assert not at.exception
        assert "is not a run id" in messages(at.error)
    at = train_page(bob, "[Sign in again](https://evil.example)")  # shown as typed
    assert "\\[Sign in again\\]\\(https\\:" in messages(at.error)


def ended_run(actor: Actor, name: str) -> int:
    """A training run of ``actor``'s that started and failed (no worker, no files)."""
    with store.session_scope() as session:
        run = store.create_run(session, actor, name, {"arch": "specnet", "dataset": DATASET})
        store.set_status(session, run.id, "running")
        store.set_status(session, run.id, "failed", error="stopped by the test")
    return run.id


def runs_table(at: AppTest) -> list[str]:
    """The names in the "My runs" table, top to bottom."""
    (table,) = [f.value for f in at.dataframe if "progress" in f.value.columns]
    return list(table["name"])


def test_my_runs_show_a_page_at_a_time_and_find_any_run(workbench: dict[str, str]) -> None:
    carol = make_user("carol")
    ids = [ended_run(carol, f"Run {i:02d}") for i in range(25)]
    at = train_page(carol)
    assert not at.exception, at.exception
    newest = [f"Run {i:02d}" for i in range(24, 4, -1)]
    assert runs_table(at) == newest
    assert "25 runs; newest first (times in UTC), page 1 of 2." in messages(at.caption)
    assert at.selectbox(key="train_open_choice").options == [
        f"Run {i:02d} (#{ids[i]})" for i in range(24, 4, -1)
    ]
    at.number_input(key="train_runs_page").set_value(2).run()
    assert runs_table(at) == [f"Run {i:02d}" for i in range(4, -1, -1)]
    assert "page 2 of 2." in messages(at.caption)
    # Any run is found by a part of its name, in any case, and opened from the box.
    at.text_input(key="train_runs_find").input("run 1").run()
    assert not at.exception, at.exception
    assert runs_table(at) == [f"Run {i:02d}" for i in range(19, 9, -1)]
    assert "10 runs match; newest first (times in UTC), page 1 of 1." in messages(at.caption)
    at.selectbox(key="train_open_choice").select(ids[12]).run()
    at.button(key="train_open").click().run()
    assert at.query_params["run"] == str(ids[12])
    at.text_input(key="train_runs_find").input("no such run").run()
    assert "No run matches." in messages(at.caption)


def test_live_panel_of_a_running_run_and_its_stop_button(alice: Actor) -> None:
    # The store is written as a worker writes it: claim, batches, one finished epoch, progress.
    run = services.submit_run(alice, "live", quick_spec(epochs=4))
    with store.session_scope() as session:
        claimed = store.claim_next_queued_run(session, "test-worker")
        assert claimed is not None and claimed.id == run.id
        store.append_batch_metrics(
            session,
            run.id,
            [BatchMetric(epoch=e, batch=b, step=3 * e + b, train_loss=1.0 - 0.1 * (3 * e + b))
             for e in (0, 1) for b in range(3)],
        )  # fmt: skip
        store.append_epoch_metrics(
            session, run.id, [EpochMetric(epoch=0, train_loss=0.9, valid_loss=0.8, eer=0.3)]
        )
        store.record_progress(session, run.id, "test-worker", progress=0.4, current_epoch=1)

    at = train_page(alice, run.id)
    assert not at.exception, at.exception
    (bar,) = at.get("progress")
    assert bar.proto.text == "Epoch 2 of 4 (40% of the run)"
    assert len(at.get("vega_lite_chart")) == 1
    table = at.dataframe[0].value
    assert list(table["epoch"]) == [1] and list(table["valid_loss"]) == [0.8]
    assert not at.download_button
    assert "No word from its worker" not in messages(at.warning)
    # Its worker falls silent (killed, say): the panel says so rather than "running".
    with store.session_scope() as session:
        session.execute(
            update(RunRow)
            .where(RunRow.id == run.id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    at = train_page(alice, run.id)
    assert "No word from its worker for 10 min" in messages(at.warning)

    at.button(key="train_stop").click().run()
    assert services.get_run(alice, run.id).stop_requested
    assert "Stopping" in messages(at.warning)
    with store.session_scope() as session:
        store.set_status(session, run.id, "cancelled", worker_id="test-worker")
    # Stopped before its final evaluation: the panel says so instead of why charts are empty.
    at = train_page(alice, run.id)
    assert not at.exception, at.exception
    assert "ended before its final evaluation" in messages(at.caption)
    assert "No ROC curve" not in messages(at.caption)


def test_loss_frame_places_batches_and_epochs_on_one_axis() -> None:
    batches = pd.DataFrame(
        {"step": range(6), "epoch": [0, 0, 0, 1, 1, 1], "batch": [0, 1, 2] * 2,
         "train_loss": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]}
    )  # fmt: skip
    history = pd.DataFrame({"epoch": [0, 1], "valid_loss": [0.85, float("nan")]})
    frame = results.loss_curve_points(batches, history)
    train = frame[frame["series"] == results.TRAIN_SERIES]
    assert list(train["x"]) == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    valid = frame[frame["series"] == results.VALID_SERIES]
    assert list(valid["x"]) == [1.0] and list(valid["loss"]) == [0.85]  # NaN dropped

    many = pd.DataFrame(
        {"step": range(6000), "epoch": [s // 1000 for s in range(6000)],
         "batch": [s % 1000 for s in range(6000)], "train_loss": [1.0] * 6000}
    )  # fmt: skip
    binned = results.loss_curve_points(many, history.iloc[:0])
    assert len(binned) == results.MAX_BATCH_POINTS
    assert binned["x"].iloc[-1] == pytest.approx(5.998, abs=0.01)


def test_images_an_older_renderer_made_are_named_before_training_an_image_model(
    alice: Actor,
) -> None:
    folder = services.dataset_path(DATASET, actor=alice)
    info_path = folder / "dataset.json"
    kept = info_path.read_text()
    info_path.write_text(json.dumps({**json.loads(kept), "render_version": 1}))
    try:
        at = train_page(alice)
        assert not at.exception, at.exception
        assert f"The images of '{DATASET}' were made by an older renderer" in messages(at.warning)
        at.selectbox(key="train_arch").set_value("aasist-l").run()  # reads the clips
        assert not at.exception, at.exception
        assert "older renderer" not in messages(at.warning)
    finally:
        info_path.write_text(kept)
    assert "older renderer" not in messages(train_page(alice).warning)


def test_a_shortcut_in_the_chosen_classes_is_named_before_training(alice: Actor) -> None:
    """The dataset's kept audit says simple cues give griffinlim away: the form says so while
    griffinlim is chosen, and not once it is left out."""
    from test_shortcuts import cue_frame

    from fakevoice.datasets.shortcuts import SHORTCUTS_NAME, audit_cues, write_audit

    frame = cue_frame(0, tts_lead_in=0.0)
    frame["class"] = frame["class"].replace({"tts": "griffinlim", "copy": "world"})
    folder = services.dataset_path(DATASET, actor=alice)
    write_audit(folder, audit_cues(frame))
    try:
        at = train_page(alice)
        assert not at.exception, at.exception
        warning = messages(at.warning)
        assert "Shortcut in this choice" in warning and "griffinlim (0% EER)" in warning
        assert "world" not in warning
        at.multiselect(key=f"train_classes:{DATASET}").set_value(["bonafide", "world"]).run()
        assert "Shortcut in this choice" not in messages(at.warning)
    finally:
        (folder / SHORTCUTS_NAME).unlink()
