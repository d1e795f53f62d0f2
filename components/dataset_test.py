"""The Evaluate page's "Test on a dataset" mode: one or several models scored on a built dataset.

Each item is scored through each model's own preprocessing, in this script run with a progress
bar (bounded by "At most"); nothing is logged as a verdict. One model gets the full view (metrics,
confusion matrix, ROC, EER per generator and per noise level, per-class table, downloads); several
get a table side by side and their ROC curves on one chart, with each model's full view below.
"""

from __future__ import annotations

import streamlit as st

from components import training_view
from components.verdict_view import model_label
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.services import results
from fakevoice.services.evaluation import MAX_EVALUATE_ITEMS, evaluations_table
from fakevoice.store.records import Actor, ModelRecord

SPLIT_LABELS = {
    "valid": "its validation split (when trained on this dataset)",
    "all": "every item",
}
DEFAULT_TEST_ITEMS = 500
MAX_TESTED_MODELS = 4
RESULT_KEY = "eval_test_result"


def render(actor: Actor, model: ModelRecord, models: list[ModelRecord]) -> None:
    """The form, the run of the test, and the result of the last test of this model."""
    names = services.dataset_names(actor=actor)
    if not names:
        st.info(f"There is no built dataset to test on. {services.BUILD_HINT}")
        return
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
        format_func=lambda i: model_label(others[i], actor.user_id),
        max_selections=MAX_TESTED_MODELS - 1,
        key="eval_test_others",
        help="more models on the same items, side by side",
    )
    chosen = [model, *(others[i] for i in extra)]
    if st.button("Run the test", key="eval_test_run", icon=":material/play_arrow:"):
        _run(actor, chosen, dataset, split, int(limit))
    stored = st.session_state.get(RESULT_KEY)
    if stored is None or stored[0] != model.id:
        st.info("Choose a dataset and press Run the test.")
        return
    evaluations: list[services.DatasetEvaluation] = stored[1]
    if len(evaluations) == 1:
        _show_one(evaluations[0], key="eval_test")
        return
    _show_side_by_side(evaluations)


def _run(actor: Actor, chosen: list[ModelRecord], dataset: str, split: str, limit: int) -> None:
    """Score the dataset with each chosen model; keep the results, or say why not."""
    bar = st.progress(0.0, text="Scoring...")
    evaluations = []
    try:
        for index, tested in enumerate(chosen):

            def progress(
                done: int, total: int, index: int = index, name: str = tested.name
            ) -> None:
                share = (index + done / total) / len(chosen)
                bar.progress(share, text=f"{name}: scored {done} of {total} items")

            evaluations.append(
                services.evaluate_on_dataset(
                    actor, tested.id, dataset, split, limit=limit, on_progress=progress
                )
            )
    except FakeVoiceError as exc:
        st.error(str(exc))  # an earlier result stays below
    else:
        st.session_state[RESULT_KEY] = (chosen[0].id, evaluations)
    bar.empty()


def _show_side_by_side(evaluations: list[services.DatasetEvaluation]) -> None:
    first = evaluations[0].report
    same = all(e.report["split"] == "all" and e.report["n"] == first["n"] for e in evaluations)
    items = (
        f"the same {first['n']} of {first['items_available']} items"
        if same
        else "items that differ (a model trained on this dataset is tested on its own "
        "validation split; see the items column)"
    )
    st.caption(f"{len(evaluations)} models on {items} of **{first['dataset']}**.")
    table = evaluations_table(evaluations)
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            **training_view.percent_columns(table.columns, {"accuracy", "eer"}),
            "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
            "auc": st.column_config.NumberColumn("AUC", format="%.3f"),
        },
    )
    curves = {
        e.report["model"]["name"]: roc
        for e in evaluations
        if (roc := results.report_roc(e.report)) is not None
    }
    if curves:
        st.markdown("**ROC** (bona fide vs spoof), one curve per model")
        st.altair_chart(training_view.roc_overlay_chart(curves), width="stretch")
    st.download_button(
        "Side by side (CSV)",
        table.to_csv(index=False),
        file_name=f"models-on-{training_view.file_stem(first['dataset'])}.csv",
        mime="text/csv",
        key="eval_test_table_csv",
        on_click="ignore",
    )
    for evaluation in evaluations:
        model = evaluation.report["model"]
        with st.expander(f"{model['name']} in detail"):
            _show_one(evaluation, key=f"eval_test_{model['id']}")


def _show_one(evaluation: services.DatasetEvaluation, key: str) -> None:
    report = evaluation.report
    st.caption(
        f"{report['n']} of {report['items_available']} items of **{report['dataset']}** "
        f"({SPLIT_LABELS[report['split']]}) scored with **{report['model']['name']}**."
    )
    training_view.render_metrics(report)
    training_view.render_confusion_and_roc(
        results.report_confusion(report), results.report_roc(report), "tested items"
    )
    training_view.render_generator_eer(report)
    training_view.render_per_class(report)
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
