"""The Evaluate page's "Test on a dataset" mode: one or several models scored on a built dataset.

"Run the test" queues a background job (:mod:`fakevoice.services.evaluation_jobs`): a worker
scores each item through each model's own preprocessing, so a long test (AASIST on thousands of
items) goes on when the tab closes. The list of the user's tests follows their progress (refreshed
every 2 s while one runs) and offers Stop, Resume, Show and Clear; nothing is logged as a verdict.
The test shown gets the full view for one model (metrics, confusion matrix, ROC, EER per generator
and per noise level, per-class table, downloads); several models get a table side by side and
their ROC curves on one chart, with each model's full view below.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from components import (
    detection_charts,
    job_list,
    report_view,
    training_view,
    which_is_better,
)
from components.user_text import plain
from components.verdict_view import model_label, shared_by
from fakevoice import services
from fakevoice.batch import spreadsheet_safe
from fakevoice.errors import FakeVoiceError
from fakevoice.metrics.calibration import calibration_line
from fakevoice.services import paired_tests, results
from fakevoice.services.evaluation import (
    MAX_EVALUATE_ITEMS,
    trained_on_words,
    unfamiliar_words,
    unseen_words,
)
from fakevoice.services.evaluation_jobs import MAX_TESTED_MODELS, models_done
from fakevoice.services.fusion import evaluations_table, fuse
from fakevoice.store.records import Actor, ModelRecord, RunRecord

SPLIT_LABELS = {
    "valid": "its validation split (when trained on this dataset)",
    "all": "every item",
}
DEFAULT_TEST_ITEMS = 500
SHOWN_TESTS = 6
SHOWN_KEY = "eval_test_shown"  # the id of the test whose results are shown
ENDED_WITH_RESULTS = ("succeeded", "cancelled", "failed")  # a failed test keeps the models done


def render(
    actor: Actor, model: ModelRecord, models: list[ModelRecord], owners: Mapping[int, str]
) -> None:
    """The form that queues a test, the list of the user's tests, and the results of one
    (``owners``: the owner's user name by model id, for the models to test beside it and to name
    another user's model among the results)."""
    names = services.dataset_names(actor=actor)
    if names:
        _form(actor, model, models, owners, names)
    else:
        st.info(f"There is no built dataset to test on. {services.BUILD_HINT}")
    runs = services.list_evaluations(actor, limit=SHOWN_TESTS)
    if not runs:
        if names:
            st.info("Choose a dataset and press Run the test.")
        return
    job_list.panel(
        "Your tests",
        lambda: services.list_evaluations(actor, limit=SHOWN_TESTS),
        lambda run: _test_row(actor, run),
        first=runs,
    )
    _results(actor, runs, models, owners)


def _form(
    actor: Actor,
    model: ModelRecord,
    models: list[ModelRecord],
    owners: Mapping[int, str],
    names: list[str],
) -> None:
    columns = st.columns([2, 3, 2])
    dataset = columns[0].selectbox(
        "Dataset", names, key="eval_test_dataset", help="any built dataset (see Datasets)"
    )
    split = columns[1].radio(
        "Items",
        list(SPLIT_LABELS),
        format_func=SPLIT_LABELS.__getitem__,
        key="eval_test_split",
        help="a model trained on another dataset is tested on every item (a cross-dataset test)",
    )
    limit = columns[2].number_input(
        "At most",
        min_value=10,
        max_value=MAX_EVALUATE_ITEMS,
        value=DEFAULT_TEST_ITEMS,
        step=50,
        key="eval_test_limit",
        help="a seeded random sample when there are more (the same one for every model tested "
        "on every item); AASIST takes about 0.3 s per item on a CPU",
    )
    others = {m.id: m for m in models if m.id != model.id}
    extra = st.multiselect(
        "Also test",
        list(others),
        format_func=lambda i: model_label(others[i], actor.user_id, owners),
        max_selections=MAX_TESTED_MODELS - 1,
        key="eval_test_others",
        help="more models on the same items, side by side",
    )
    if not st.button(
        "Run the test",
        key="eval_test_run",
        icon=":material/play_arrow:",
        help="a background job: it goes on when you leave this page",
    ):
        return
    try:
        run = services.submit_evaluation(
            actor, [model.id, *extra], dataset, split, limit=int(limit)
        )
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.session_state[SHOWN_KEY] = run.id
    st.success(
        f"Queued '{plain(_titled(run))}'. Follow it below; it goes on when you leave this page."
    )


def _titled(run: RunRecord) -> str:
    """``"test resnet on demo (#12)"``: a test's name and the number a verdict's caution and
    ``fakevoice evaluate --results`` know it by."""
    return f"{run.name} (#{run.id})"


def _test_row(actor: Actor, run: RunRecord) -> None:
    left, right, clear = st.columns([8, 2, 2])
    count = len(run.spec.get("models", []))
    job_list.status_line(
        actor,
        run,
        plain(_titled(run)),  # named after models, another user's among them
        done="done",
        key="eval_test",
        stop=lambda: services.stop_evaluation(actor, run.id),
        columns=(left, right),
        detail=f", model {run.current_epoch + 1} of {count}"
        if count > 1 and run.started_at
        else "",
    )
    done = models_done(run) if run.status in ENDED_WITH_RESULTS else 0
    if done and run.status in ("cancelled", "failed") and count > 1:
        st.caption(f"{done} of {count} models were done when it ended; Show has their results.")
    if done and right.button("Show", key=f"eval_test_show:{run.id}", icon=":material/visibility:"):
        st.session_state[SHOWN_KEY] = run.id
        st.rerun()
    if not run.is_active and clear.button(
        "Clear", key=f"eval_test_clear:{run.id}", icon=":material/close:", help="delete this test"
    ):
        job_list.act(lambda: services.clear_evaluation(actor, run.id))


def _results(
    actor: Actor, runs: list[RunRecord], models: list[ModelRecord], owners: Mapping[int, str]
) -> None:
    """The results of the test chosen with Show (or just queued), else of the latest one done."""
    finished = [r for r in runs if r.status in ENDED_WITH_RESULTS and models_done(r)]
    wanted = st.session_state.get(SHOWN_KEY)
    chosen = next((r for r in runs if r.id == wanted), finished[0] if finished else None)
    if chosen is None:
        return
    try:
        evaluations = services.evaluation_results(actor, chosen.id)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if not evaluations:
        return
    st.markdown(f"**Results of {plain(chosen.name)} (#{chosen.id})**")
    _shortcut_note(actor, str(evaluations[0].report["dataset"]))
    if len(evaluations) == 1:
        _show_one(actor, chosen.id, evaluations[0], key="eval_test")
        return
    _show_side_by_side(
        actor, chosen.id, evaluations, _tested_names(actor, evaluations, models, owners)
    )


def _shortcut_note(actor: Actor, dataset: str) -> None:
    """What the tested dataset's shortcut audit found, if anything (nothing once it is gone)."""
    note = services.shortcut_warning(dataset, actor=actor, use="test")
    if note:
        st.warning(note, icon=":material/rule:")


def _tested_names(
    actor: Actor,
    evaluations: list[services.DatasetEvaluation],
    models: list[ModelRecord],
    owners: Mapping[int, str],
) -> dict[int, str]:
    """Each tested model's name by its id, another user's with its owner ("second · shared by
    alice"), as the page's model lists name it: two people's models may share a name. A model no
    longer listed (deleted, or no longer shared) keeps its name alone."""
    listed = {m.id: m for m in models}
    names: dict[int, str] = {}
    for evaluation in evaluations:
        tested = evaluation.report["model"]
        model = listed.get(tested["id"])
        shared = shared_by(model, actor.user_id, owners) if model is not None else None
        names[tested["id"]] = tested["name"] if shared is None else f"{tested['name']} · {shared}"
    return names


def _show_side_by_side(
    actor: Actor,
    run_id: int,
    evaluations: list[services.DatasetEvaluation],
    names: Mapping[int, str],
) -> None:
    """Several models' results: a table, their fusion, which is better, their ROC and DET
    curves, and each one in detail (``names``: the models' by id, from :func:`_tested_names`)."""
    first = evaluations[0].report
    same = all(e.report["split"] == "all" and e.report["n"] == first["n"] for e in evaluations)
    items = (
        f"the same {first['n']} of {first['items_available']} items of **{first['dataset']}**"
        if same
        else f"**{first['dataset']}**, each on items of its own (a model trained on this "
        "dataset is tested on its own validation split; see the items column)"
    )
    st.caption(f"{len(evaluations)} models on {items}.")
    fusion = fuse(evaluations)
    table = evaluations_table(evaluations, fusion)
    table["model"] = table["model_id"].map(names).fillna(table["model"])  # fusion rows keep theirs
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            **training_view.percent_columns(table.columns, {"accuracy", "eer"}),
            "model_id": st.column_config.NumberColumn("model id", format="%d"),
            "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
            "auc": st.column_config.NumberColumn("AUC", format="%.3f"),
        },
        placeholder="—",
    )
    for evaluation in evaluations:  # a cross-dataset test on audio the model does not know
        name = plain(names[evaluation.report["model"]["id"]])
        if (unfamiliar := unfamiliar_words(evaluation.report.get("unfamiliar"))) is not None:
            st.caption(f"**{name}**: {unfamiliar}")
        if (unseen := unseen_words(evaluation.report.get("unseen"))) is not None:
            st.caption(f"**{name}**: {unseen}")
        if (flattered := trained_on_words(evaluation.report)) is not None:
            st.warning(f"**{name}**: {flattered}")
    if fusion is not None:
        learned = fusion.learned
        weights = (
            ", ".join(f"{name} {weight:.2f}" for name, weight in learned["weights"].items())
            if learned
            else ""
        )
        st.caption(
            f"The fusion rows combine the models' scores on the {fusion.items} items they all "
            "scored, as systems are combined in ASVspoof: first the plain mean of their log-odds "
            "of human"
            + (
                f"; then a logistic regression on them whose weights ({weights}) are learnt on "
                f"some utterances and scored on the others ({learned['folds']} folds), so a "
                "model that only adds noise counts little"
                if learned
                else ""
            )
            + ". Models that err on different items gain the most; how alike their scores are:"
        )
        st.dataframe(fusion.correlation.round(2), placeholder="—")
    _which_is_better(run_id, evaluations)
    curves = {
        names[e.report["model"]["id"]]: roc
        for e in evaluations
        if (roc := results.report_roc(e.report)) is not None
    }
    if curves:
        st.markdown("**ROC and DET** (bona fide vs spoof), one curve per model")
        detection_charts.render_roc_and_det(curves, overlay=True)
    st.download_button(
        "Side by side (CSV)",
        table.map(spreadsheet_safe).to_csv(index=False),  # model names are their owners' words
        file_name=f"models-on-{training_view.file_stem(first['dataset'])}.csv",
        mime="text/csv",
        key="eval_test_table_csv",
        on_click="ignore",
    )
    for evaluation in evaluations:
        model = evaluation.report["model"]
        with st.expander(f"{plain(names[model['id']])} in detail"):
            _show_one(actor, run_id, evaluation, key=f"eval_test_{model['id']}")


def _which_is_better(run_id: int, evaluations: list[services.DatasetEvaluation]) -> None:
    """Each pair of models' EER difference with its bootstrap interval: can the test tell?"""
    with st.spinner("Drawing the test's items again..."):
        pairs = paired_tests.pairs_of_test(run_id, evaluations)
    which_is_better.render(pairs, "models")


def _show_one(actor: Actor, run_id: int, evaluation: services.DatasetEvaluation, key: str) -> None:
    report = evaluation.report
    # "all" needs no words: "30 of 30 items of demo" says it; a part is a seeded random sample.
    split = " (its validation split)" if report["split"] == "valid" else ""
    st.caption(
        f"{report['n']} of {report['items_available']} items of **{report['dataset']}**{split} "
        f"scored with **{plain(report['model']['name'])}**."
    )
    report_view.render_metrics(report)
    report_view.render_confusion_and_roc(
        results.report_confusion(report), results.report_roc(report), "tested items"
    )
    report_view.render_reliability(report)
    audit = services.kept_shortcuts(str(report["dataset"]), actor=actor)
    report_view.render_generator_eer(report, audit.generator_eers() if audit else None)
    report_view.render_per_class(report)
    stem = training_view.file_stem(f"{report['model']['name']}-on-{report['dataset']}")
    left, right = st.columns(2)
    left.download_button(
        "Scores per item (CSV)",
        evaluation.scores_csv(),
        file_name=f"{stem}-scores.csv",
        mime="text/csv",
        key=f"{key}_csv",
        on_click="ignore",
    )
    right.download_button(
        "Metrics (JSON)",
        evaluation.report_json(),
        file_name=f"{stem}-metrics.json",
        mime="application/json",
        key=f"{key}_json",
        on_click="ignore",
    )
    _calibrate(actor, run_id, evaluation, key)


def _keeps_calibration(actor: Actor, model_id: int) -> bool:
    """Whether the model keeps a calibration (training leaves none on under 20 validation
    items); False for a model deleted since the test."""
    try:
        return isinstance(services.get_model(actor, model_id).metrics.get("calibration"), dict)
    except FakeVoiceError:
        return False


def _calibrate(actor: Actor, run_id: int, evaluation: services.DatasetEvaluation, key: str) -> None:
    """A copy of the model whose probabilities are calibrated on these items (a form)."""
    report = evaluation.report
    model, dataset = report["model"], report["dataset"]
    with st.expander("Calibrate a copy of this model on these items", icon=":material/tune:"):
        st.caption(
            "Fits a temperature and a bias per class on these scores, so that the copy's "
            "probabilities (and so its verdicts) mean on audio like this dataset's what they "
            "say. The copy is yours; the model itself stays as it is."
        )
        if report.get("split") == "valid":
            st.caption(
                "These are the model's own validation items: "
                + (
                    "training calibrated it on them already."
                    if _keeps_calibration(actor, int(model["id"]))
                    else "training calibrates a model on them (this one kept no calibration "
                    "from them)."
                )
                + " Calibrate on a dataset it was not trained on."
            )
        if evaluation.probabilities() is None:
            st.info("This test was made before tests kept every class's probability; run it again.")
            return
        with st.form(f"{key}_calibrate_form", border=False):
            name = st.text_input(
                "Name of the copy",
                value=f"{model['name']} on {dataset}",
                max_chars=128,
                key=f"{key}_calibrate_name",
            )
            made = st.form_submit_button(
                "Calibrate a copy", icon=":material/tune:", key=f"{key}_calibrate"
            )
        if made:
            try:
                copy = services.calibrate_on_test(actor, run_id, int(model["id"]), name)
            except FakeVoiceError as exc:
                st.error(str(exc))
                return
            st.success(
                f"Model '{copy.name}' is yours: probabilities "
                f"{calibration_line(copy.metrics.get('calibration'))}. Choose it in the Model "
                "box above (after the page reloads) to use it."
            )
