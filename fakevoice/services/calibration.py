"""A model's probabilities calibrated on a dataset of the user's: a calibrated copy of the model.

Training calibrates a model on its own validation split (:mod:`fakevoice.metrics.calibration`);
an official AASIST checkpoint comes with none, and any model meets other audio in the field (a
telephone line, another language) where its probabilities say something else. A user who has a
labelled dataset of that audio tests the model on it ("Test on a dataset", or ``fakevoice
evaluate``) and calibrates on the scores: a temperature and class biases are fitted on every
class's probability per item (the clip probabilities a verdict uses), composed with the model's own
calibration, and kept in a *copy* of the model (same weights, new manifest) owned by the user, so
the original and its other users are untouched and both can be compared.
"""

from __future__ import annotations

import logging
from typing import Any

from fakevoice import store
from fakevoice.bundle_figures import copied_metrics
from fakevoice.errors import InvalidSpecError, NotFoundError
from fakevoice.metrics.calibration import (
    MAX_BIAS,
    MAX_TEMPERATURE,
    MIN_ITEMS,
    MIN_TEMPERATURE,
    fit_calibration,
)
from fakevoice.services.evaluation import DatasetEvaluation
from fakevoice.services.evaluation_jobs import evaluation_results
from fakevoice.services.verdicts import (
    CALIBRATED_FROM,
    detector_for,
    get_model,
    store_bundle_as_model,
)
from fakevoice.store.records import Actor, ModelRecord

logger = logging.getLogger(__name__)


def calibrate_on_test(
    actor: Actor, run_id: int, model_id: int, name: str | None = None
) -> ModelRecord:
    """A copy of model ``model_id`` calibrated on what test ``run_id`` scored with it.

    Raises:
        NotFoundError: no such test of the actor's, or the model is not among its results.
        InvalidSpecError: the test kept too few items, or not every class's probability.
        ConflictError: the actor has a model called ``name`` already.
    """
    for evaluation in evaluation_results(actor, run_id):
        if evaluation.report.get("model", {}).get("id") == model_id:
            return calibrated_copy(actor, model_id, evaluation, name)
    raise NotFoundError(f"Test {run_id} has no result for model {model_id} (yet).")


def calibrated_copy(
    actor: Actor, model_id: int, evaluation: DatasetEvaluation, name: str | None = None
) -> ModelRecord:
    """Store, as the actor's, model ``model_id`` with its probabilities calibrated on the items
    of ``evaluation`` (which it scored); ``name`` defaults to "<model> on <dataset>".

    Raises:
        NotFoundError: the actor may not use the model.
        InvalidSpecError: fewer than 20 items, items of one class only, items the model was
            trained on, no per-class probabilities, or a fit beyond what a model may keep.
        ConflictError: the actor has a model called ``name`` already.
    """
    model = get_model(actor, model_id)
    trained_on = evaluation.report.get("trained_on")
    if "trained_on" in evaluation.report and trained_on is None:
        raise InvalidSpecError(
            "This test is on the dataset the model was trained on, which changed since: which of "
            "its items the model learnt from is unknown. Calibrate it on another dataset."
        )
    if isinstance(trained_on, int) and trained_on > 0:
        which = (
            "have the same audio as clips the model was trained on"
            if evaluation.report.get("trained_on_basis") == "audio"
            else "were in the model's training split"
        )
        raise InvalidSpecError(
            f"{trained_on} of this test's items {which}: a calibration fitted on them would "
            "make it over-confident. Calibrate it on its validation split (valid) or on "
            "recordings it has not heard."
        )
    detector = detector_for(model)
    dataset = str(evaluation.report.get("dataset", "?"))
    probs = evaluation.probabilities()
    if probs is None:
        raise InvalidSpecError(
            "This test was made before tests kept every class's probability; run it again, "
            "then calibrate on it."
        )
    targets = evaluation.targets(detector.bonafide_index)
    scored = targets >= 0
    classes = {detector.class_names[t] for t in targets[scored]}
    if len(classes) == 1:
        raise InvalidSpecError(
            f"Every item this test scored is of one class ({classes.pop()}): a calibration "
            "fitted on them would call every clip so. Test on human and machine items together."
        )
    # Held-out figures by speaker: a fit is measured on voices it did not see.
    speakers = evaluation.scores["speaker"] if "speaker" in evaluation.scores else None
    groups = None if speakers is None else speakers.astype(str).to_numpy()[scored]
    fitted = fit_calibration(probs[scored], targets[scored], groups)
    if fitted is None:
        raise InvalidSpecError(
            f"A calibration needs at least {MIN_ITEMS} scored items; this test has "
            f"{int(scored.sum())}. Test on more items first."
        )
    combined = fitted.after(detector.calibration)
    if not combined.usable():
        raise InvalidSpecError(
            f"The fit is too extreme to keep (a temperature outside {MIN_TEMPERATURE:g} to "
            f"{MAX_TEMPERATURE:g} or a bias beyond {MAX_BIAS:g}): the model's scores on this "
            "dataset say little about its classes."
        )
    kept: dict[str, Any] = {
        **combined.to_dict(),
        "dataset": dataset,
        "split": evaluation.report.get("split"),
    }
    source = f"{model.name} (model {model.id}) calibrated on {dataset}"
    manifest = {**detector.manifest, "calibration": kept, "source": source}
    # The copy's error rate is the tested model's, measured by the test it was fitted on.
    # Parts of an uploaded bundle that were not kept are missing from the copy too, but its
    # calibration is its own now.
    inherited = copied_metrics(model.metrics, model.id, renewed={"calibration"})
    metrics = {**inherited, "calibration": kept, "source": source, CALIBRATED_FROM: model.id}
    new_name = calibrated_copy_name(actor, model, dataset, name)
    copy = store_bundle_as_model(actor, new_name, detector.model, manifest, metrics=metrics)
    logger.info(
        "model %d: a copy of model %d calibrated on %s, for user %d",
        copy.id,
        model.id,
        dataset,
        actor.user_id,
    )
    return copy


def calibrated_copy_name(
    actor: Actor, model: ModelRecord, dataset: str, name: str | None = None
) -> str:
    """The name of ``model``'s copy calibrated on ``dataset``: ``name``, else "<model> on
    <dataset>". Asked before a dataset is scored for the copy, so that a name already taken is
    refused first, not after minutes of scoring.

    Raises:
        InvalidSpecError: the name is too long or holds control characters.
        ConflictError: the actor has a model of that name already.
    """
    wanted = name.strip() if name and name.strip() else f"{model.name} on {dataset}"
    with store.session_scope(readonly=True) as session:
        return store.check_model_name_free(session, actor.user_id, wanted)
