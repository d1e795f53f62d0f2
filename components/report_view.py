"""Streamlit views of a classification report, a training run's (its validation split) or a
test's on a dataset: headline metrics with the EER's interval and the calibration, the
confusion matrix beside the ROC and DET with the EER point (:mod:`components.detection_charts`),
the reliability diagram, per-class figures and the EER against each generator and at each noise
level.

Each function takes the report as :mod:`fakevoice.services` returned it and only renders it.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from components import detection_charts
from fakevoice import services
from fakevoice.artefacts import left_out_of
from fakevoice.metrics.bootstrap import MIN_GROUPS, interval_words
from fakevoice.metrics.calibration import calibration_line
from fakevoice.services.results import ConfusionMatrix, RocCurve

FEW_ITEMS = 10  # fewer items than this on a side: one item moves the EER by 10 points or more


def render_metrics(report: dict[str, Any]) -> None:
    """Accuracy, macro F1, EER and AUC of a classification report, and its notes."""
    columns = st.columns(4)
    columns[0].metric("Accuracy", _percent(report.get("accuracy")), help="share of items right")
    macro_f1 = report.get("macro_f1")
    columns[1].metric(
        "Macro F1",
        f"{macro_f1:.3f}" if isinstance(macro_f1, int | float) else "n/a",
        help="mean of the per-class F1 scores",
    )
    columns[2].metric(
        "EER",
        _percent(report.get("eer")),
        help="equal error rate: where spoofs accepted = humans rejected (lower is better)",
    )
    auc = report.get("auc")
    columns[3].metric(
        "AUC",
        f"{auc:.3f}" if isinstance(auc, int | float) else "n/a",
        help="area under the ROC curve (1 is perfect, 0.5 is chance)",
    )
    interval = report.get("eer_interval")
    if isinstance(interval, dict):
        st.caption(f"{interval_words(interval)}.")
    elif isinstance(report.get("eer"), int | float) and "eer_interval" in report:
        st.caption(
            f"No interval for this EER: it rests on too few utterances (under {MIN_GROUPS}, or "
            "too few of one class) to say how far it could move. Treat it as a rough figure."
        )
    for note in report.get("notes") or []:
        st.caption(str(note))
    ece = report.get("ece")
    if "calibration" in report:  # a run's own report: say what was fitted
        st.caption(f"Probabilities {calibration_line(report['calibration'])}.")
        before = before_calibration_words(report)
        if before:
            st.caption(before)
    elif isinstance(ece, int | float):  # a test on a dataset: how honest they were there
        st.caption(
            f"Expected calibration error here: {ece:.1%} (the gap between how sure the model "
            "was and how often it was right; 0 is honest)."
        )


def before_calibration_words(report: dict[str, Any]) -> str | None:
    """What a calibrated run's figures were before its calibration, as its epochs were measured.

    The headline figures are the calibrated model's (as it gives verdicts); each epoch's are the
    network's own. Calibration moves the accuracy (its decision threshold), so without this
    line a page shows two accuracies that seem to disagree.

    Returns:
        A sentence, or None when the report has no calibration or no figures from before it.
    """
    before = report.get("before_calibration")
    if not isinstance(report.get("calibration"), dict) or not isinstance(before, dict):
        return None
    accuracy, macro_f1 = before.get("accuracy"), before.get("macro_f1")
    figures = [
        f"accuracy {_percent(accuracy)}" if isinstance(accuracy, int | float) else "",
        f"macro F1 {macro_f1:.3f}" if isinstance(macro_f1, int | float) else "",
        f"EER {_percent(before.get('eer'))}" if isinstance(before.get("eer"), int | float) else "",
    ]
    shown = ", ".join(f for f in figures if f)
    if not shown:
        return None
    return (
        "The figures above are the calibrated model's, as it gives verdicts; before calibration, "
        f"as each epoch's figures are measured: {shown}."
    )


def render_confusion_and_roc(
    confusion: ConfusionMatrix | None, roc: RocCurve | None, items: str
) -> None:
    """The confusion matrix and the ROC with its EER point, side by side."""
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Confusion matrix** ({items})")
        if confusion is not None:
            st.altair_chart(confusion_chart(confusion))
        else:
            st.caption("No confusion matrix was written for this run.")
    with right:
        st.markdown("**ROC and DET** (bona fide vs spoof) with the EER point")
        if roc is not None:
            detection_charts.render_roc_and_det({"model": roc}, overlay=False)
        else:
            st.caption(f"No ROC curve: the {items} needs both human and machine items.")


def confusion_chart(confusion: ConfusionMatrix) -> alt.LayerChart:
    """Heatmap of true (rows) x predicted (columns) counts, with the counts written in."""
    names = confusion.class_names
    frame = pd.DataFrame(
        [
            {"actual": names[i], "predicted": names[j], "count": count}
            for i, row in enumerate(confusion.counts)
            for j, count in enumerate(row)
        ]
    )
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:N", sort=names, title="predicted"),
        y=alt.Y("actual:N", sort=names, title="actual"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=["actual:N", "predicted:N", "count:Q"],
    )
    peak = max((max(row) for row in confusion.counts if row), default=0)
    text = base.mark_text(fontSize=14).encode(
        text="count:Q",
        color=alt.condition(f"datum.count > {peak / 2}", alt.value("white"), alt.value("black")),
    )
    size = max(220, 60 * len(names))
    return alt.layer(cells, text).properties(width=size, height=size)


def render_reliability(report: dict[str, Any]) -> None:
    """The reliability diagram: how often the top class was right against how sure the model
    was, per confidence bin (metrics.json's ``reliability``), with the diagonal of honesty."""
    rows = report.get("reliability")
    if not isinstance(rows, list) or not rows:
        return
    frame = pd.DataFrame(rows)
    frame["bin"] = [f"{r['from']:.2f}-{r['to']:.2f}" for r in rows]
    unit = alt.Scale(domain=[0, 1])
    points = (
        alt.Chart(frame)
        .mark_circle(opacity=0.8)
        .encode(
            x=alt.X("confidence:Q", title="confidence (top probability)", scale=unit),
            y=alt.Y("accuracy:Q", title="share right", scale=unit),
            size=alt.Size("n:Q", title="items"),
            tooltip=["bin", "n", alt.Tooltip("confidence:Q", format=".3f"), "accuracy"],
        )
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]}))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x="x:Q", y="y:Q")
    )
    st.markdown("**Reliability** (how sure against how often right)")
    st.altair_chart((diagonal + points).properties(height=260), width="stretch")
    st.caption(
        "Each point is a bin of items by the model's top probability. On the dashed line the "
        "model is as sure as it is right; below it, over-confident; above it, too modest."
    )


def render_per_class(report: dict[str, object]) -> None:
    per_class = report.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return
    table = pd.DataFrame.from_dict(per_class, orient="index")
    table.index.name = "class"
    st.dataframe(table, width="stretch", placeholder="—")


def render_generator_eer(
    report: dict[str, object], cue_eers: dict[str, float] | None = None
) -> None:
    """Which attacks the model misses (the EER of bona fide against each generator's items), and
    how it copes with noise (the EER at each noise level), side by side; with ``cue_eers`` (the
    dataset's shortcut audit), what simple cues alone reach against each generator."""
    generators, noises = report.get("generator_eer"), report.get("noise_eer")
    counts = report.get("eer_items") if isinstance(report.get("eer_items"), dict) else {}
    tables = []
    cues = {g: cue_eers[g] for g in (generators or {}) if cue_eers and g in cue_eers}
    if isinstance(generators, dict) and generators:
        table = pd.DataFrame({"generator": list(generators), "EER": list(generators.values())})
        if cues:
            table["simple cues alone"] = [cues.get(g, float("nan")) for g in generators]
        _add_counts(table, list(generators), counts.get("generator"))
        tables.append(("EER against each generator", table.sort_values("EER", ascending=False)))
    left_out: list[str] = []
    if isinstance(noises, dict) and noises:
        labels = [services.noise_label(str(n)) for n in noises]
        table = pd.DataFrame({"noise": labels, "EER": list(noises.values())})
        by_level = counts.get("noise") if isinstance(counts.get("noise"), dict) else {}
        _add_counts(table, list(noises), by_level)
        left_out = [
            f"{services.noise_label(level)} (no {missing} item)"
            for level, missing in left_out_of(noises, by_level).items()
        ]
        tables.append(("EER at each noise level", table))
    if not tables:
        return
    few = any(
        "human items" in table
        and (table[["human items", "machine items"]].min(axis=1) < FEW_ITEMS).any()
        for _, table in tables
    )
    st.caption(
        "An EER of 50 % is a coin toss."
        + (f" A row on fewer than {FEW_ITEMS} items of a side is a rough figure." if few else "")
        + (f" Left out: {', '.join(left_out)}." if left_out else "")
        + (
            " Simple cues alone: the EER that silence, level, bandwidth and the like reach "
            "against that generator on the dataset's clean clips (its shortcut audit); a model "
            "no better than them may have learnt nothing else."
            if cues
            else ""
        )
    )
    percent = st.column_config.NumberColumn(format="percent")
    for column, (title, table) in zip(st.columns(len(tables)), tables, strict=True):
        column.markdown(f"**{title}**")
        column.dataframe(
            table.astype({"EER": float}),
            hide_index=True,
            width="stretch",
            column_config={"EER": percent, "simple cues alone": percent},
            placeholder="—",  # a generator the audit could not judge: a dash, not "None"
        )


def _add_counts(table: pd.DataFrame, keys: list[str], counts: object) -> None:
    """The human and machine items behind each row (reports from before they were kept have
    none: no columns then)."""
    if not isinstance(counts, dict) or not all(isinstance(counts.get(k), list) for k in keys):
        return
    table["human items"] = [int(counts[k][0]) for k in keys]
    table["machine items"] = [int(counts[k][1]) for k in keys]


def _percent(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "n/a"
