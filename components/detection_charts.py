"""ROC and DET curves of bona fide vs spoof, for one model or several on one chart.

The DET curve (Martin et al., 1997) is what anti-spoofing papers plot: the miss rate (bona fide
rejected) against the false-alarm rate (spoof accepted), both on normal-deviate (probit) axes, so
that well-separated models spread out instead of hugging a corner as on a ROC. It is drawn from
the ROC points each report keeps (``miss = 1 - tpr``, ``false alarm = fpr``), so every stored run
and test has one; rates of 0 or 1 are drawn at the axes' ends (0.1 % and 99 %).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from scipy.stats import norm

from fakevoice.services.results import RocCurve

DET_RANGE = (0.001, 0.99)
DET_TICKS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)
_EER_COLOUR = "#d62728"


def roc_chart(roc: RocCurve) -> alt.LayerChart:
    """ROC (bona fide as the positive class) with the chance diagonal and the EER point."""
    curve = pd.DataFrame({"fpr": roc.fpr, "tpr": roc.tpr})
    x, y = _roc_axes()
    line = alt.Chart(curve).mark_line().encode(x, y)
    layers: list[alt.Chart] = [_diagonal("fpr", "tpr", 0.0, 1.0, x, y), line]
    if roc.eer_point is not None and roc.eer is not None:
        point = {"fpr": [roc.eer_point[0]], "tpr": [roc.eer_point[1]]}
        layers += _eer_marker(point, roc.eer, x, y)
    return alt.layer(*layers).properties(height=300)


def roc_overlay_chart(curves: dict[str, RocCurve]) -> alt.LayerChart:
    """Several ROC curves (one per model, named by the keys) over the chance diagonal."""
    frame = pd.concat(
        [pd.DataFrame({"fpr": c.fpr, "tpr": c.tpr, "model": name}) for name, c in curves.items()],
        ignore_index=True,
    )
    x, y = _roc_axes()
    lines = alt.Chart(frame).mark_line().encode(x, y, color=alt.Color("model:N", title="model"))
    return alt.layer(_diagonal("fpr", "tpr", 0.0, 1.0, x, y), lines).properties(height=320)


def det_points(roc: RocCurve) -> pd.DataFrame:
    """A ROC's points as a DET curve: ``false_alarm`` and ``miss`` rates (clipped to
    :data:`DET_RANGE`) and their normal deviates ``x`` and ``y``, in the ROC's order."""
    false_alarm = np.clip(np.asarray(roc.fpr, dtype=float), *DET_RANGE)
    miss = np.clip(1.0 - np.asarray(roc.tpr, dtype=float), *DET_RANGE)
    return pd.DataFrame(
        {
            "order": np.arange(false_alarm.size),
            "false_alarm": false_alarm,
            "miss": miss,
            "x": norm.ppf(false_alarm),
            "y": norm.ppf(miss),
        }
    )


def det_chart(curves: dict[str, RocCurve]) -> alt.LayerChart:
    """DET curves (one per model, named by the keys) on probit axes, with the EER line (where
    miss = false alarm) and, for a single model, its EER point."""
    frame = pd.concat(
        [det_points(c).assign(model=name) for name, c in curves.items()], ignore_index=True
    )
    x, y = _det_axes()
    tooltip = [
        "model:N",
        alt.Tooltip("false_alarm:Q", title="false alarm", format=".2%"),
        alt.Tooltip("miss:Q", title="miss", format=".2%"),
    ]
    line = alt.Chart(frame).mark_line(clip=True)
    if len(curves) > 1:
        line = line.encode(x, y, order="order:Q", tooltip=tooltip, color=alt.Color("model:N"))
    else:
        line = line.encode(x, y, order="order:Q", tooltip=tooltip)
    low, high = (float(v) for v in norm.ppf(DET_RANGE))
    layers: list[alt.Chart] = [_diagonal("x", "y", low, high, x, y), line]
    only = next(iter(curves.values())) if len(curves) == 1 else None
    if only is not None and only.eer is not None and 0.0 < only.eer < 1.0:
        deviate = float(norm.ppf(np.clip(only.eer, *DET_RANGE)))
        layers += _eer_marker({"x": [deviate], "y": [deviate]}, only.eer, x, y)
    return alt.layer(*layers).properties(height=300)


def render_roc_and_det(curves: dict[str, RocCurve], *, overlay: bool) -> None:
    """The ROC and the DET in two tabs (one curve, or one per model when ``overlay``)."""
    roc_tab, det_tab = st.tabs(["ROC", "DET"])
    with roc_tab:
        if overlay:
            st.altair_chart(roc_overlay_chart(curves), width="stretch")
        else:
            (curve,) = curves.values()
            st.altair_chart(roc_chart(curve), width="stretch")
    with det_tab:
        st.altair_chart(det_chart(curves), width="stretch")
        st.caption(
            "Miss rate (bona fide rejected) against false alarms (spoof accepted), on "
            "normal-deviate axes; the dashed line is where both are equal (the EER)."
        )


def _roc_axes() -> tuple[alt.X, alt.Y]:
    unit = alt.Scale(domain=[0, 1])
    x = alt.X("fpr:Q", title="false positive rate (spoof accepted)", scale=unit)
    y = alt.Y("tpr:Q", title="true positive rate (bona fide accepted)", scale=unit)
    return x, y


def _det_axes() -> tuple[alt.X, alt.Y]:
    ticks = [float(v) for v in norm.ppf(DET_TICKS)]
    scale = alt.Scale(domain=[float(v) for v in norm.ppf(DET_RANGE)], nice=False)
    label = "format(cumulativeNormal(datum.value) * 100, '.3~r') + ' %'"

    def axis(title: str) -> alt.Axis:
        return alt.Axis(values=ticks, labelExpr=label, title=title, grid=True)

    x = alt.X("x:Q", axis=axis("false alarm rate (spoof accepted)"), scale=scale)
    y = alt.Y("y:Q", axis=axis("miss rate (bona fide rejected)"), scale=scale)
    return x, y


def _diagonal(x_name: str, y_name: str, low: float, high: float, x: alt.X, y: alt.Y) -> alt.Chart:
    ends = pd.DataFrame({x_name: [low, high], y_name: [low, high]})
    return alt.Chart(ends).mark_line(strokeDash=[4, 4], color="gray", opacity=0.6).encode(x, y)


def _eer_marker(point: dict[str, list[float]], eer: float, x: alt.X, y: alt.Y) -> list[alt.Chart]:
    marker = alt.Chart(pd.DataFrame({**point, "label": f"EER {eer:.1%}"})).encode(
        x, y, tooltip=["label:N"]
    )
    return [
        marker.mark_point(filled=True, size=90, color=_EER_COLOUR),
        marker.mark_text(align="left", dx=8, dy=8, color=_EER_COLOUR).encode(text="label:N"),
    ]
