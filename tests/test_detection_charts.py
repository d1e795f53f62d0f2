"""ROC and DET charts: the DET's points are the ROC's on normal-deviate axes, and the charts are
valid Vega-Lite with axes labelled in percent."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from components.detection_charts import DET_RANGE, det_chart, det_points, roc_overlay_chart
from fakevoice.services.results import RocCurve

CURVE = RocCurve(
    fpr=[0.0, 0.0, 0.1, 0.25, 0.5, 1.0],
    tpr=[0.0, 0.5, 0.75, 0.75, 0.9, 1.0],
    auc=0.8,
    eer=0.25,
    eer_point=(0.25, 0.75),
)


def test_det_points_are_miss_and_false_alarm_as_normal_deviates() -> None:
    points = det_points(CURVE)
    assert list(points["order"]) == list(range(6))
    assert points["false_alarm"].tolist() == pytest.approx([0.001, 0.001, 0.1, 0.25, 0.5, 0.99])
    assert points["miss"].tolist() == pytest.approx([0.99, 0.5, 0.25, 0.25, 0.1, 0.001])
    assert points["x"].tolist() == pytest.approx(norm.ppf(points["false_alarm"]).tolist())
    # The EER point (miss = false alarm = 25 %) lies on the diagonal.
    at_eer = points[points["false_alarm"] == 0.25]
    assert at_eer["x"].iloc[0] == pytest.approx(at_eer["y"].iloc[0])
    assert np.isfinite(points[["x", "y"]].to_numpy()).all()  # 0 and 1 are clipped, not infinite


def test_det_chart_is_valid_vega_lite_in_percent() -> None:
    spec = det_chart({"one": CURVE}).to_dict()  # validates against the Vega-Lite schema
    layers = spec["layer"]
    axis = layers[1]["encoding"]["x"]["axis"]
    assert "cumulativeNormal(datum.value)" in axis["labelExpr"]
    assert axis["values"][0] == pytest.approx(norm.ppf(DET_RANGE[0]))
    labels = [layer.get("mark", {}) for layer in layers]
    assert len(layers) == 4 and any(
        "EER 25.0%" in str(layer) for layer in spec["datasets"].values()
    )
    assert labels[1]["type"] == "line"
    several = det_chart({"one": CURVE, "two": CURVE}).to_dict()
    assert (
        len(several["layer"]) == 2 and several["layer"][1]["encoding"]["color"]["field"] == "model"
    )
    assert len(roc_overlay_chart({"one": CURVE, "two": CURVE}).to_dict()["layer"]) == 2
