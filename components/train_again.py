"""Train again: an earlier run's whole recipe put into the Train page's form (the widgets of
:mod:`components.train_options`), to change one thing and compare."""

from __future__ import annotations

import streamlit as st

from components.train_options import LR_KEY, SAMPLE_RATE
from fakevoice import services
from fakevoice.store.records import Actor
from fakevoice.trainspec import TrainSpec


def _kept(
    chosen: tuple[str, ...] | None, every: list[str], what: str, notes: list[str]
) -> list[str]:
    """The values of ``every`` a run chose (all when it chose all), noting those now gone."""
    if chosen is None:
        return list(every)
    gone = [value for value in chosen if value not in every]
    if gone:
        notes.append(f"{what} no longer in the dataset: {', '.join(gone)}.")
    return [value for value in every if value in chosen]


def prefill(actor: Actor, spec: TrainSpec, names: list[str]) -> list[str]:
    """Put ``spec`` into the form's widgets; call it before they are drawn in this script run.

    Returns:
        What could not be kept, in sentences (a dataset or values it no longer has).
    """
    state = st.session_state
    notes: list[str] = []
    augment, callbacks = spec.augment, spec.callbacks
    state.update(
        {
            "train_arch": spec.arch,
            "train_task": spec.task,
            "train_clip_seconds": spec.clip_samples / SAMPLE_RATE,
            "train_pretrained": spec.pretrained,
            "train_epochs": spec.epochs,
            "train_batch_size": spec.batch_size,
            "train_lr_auto": spec.learning_rate is None,
            "train_time_shift": augment.time_shift,
            "train_noise_mix": augment.noise_mix,
            "train_freq_masks": augment.freq_masks,
            "train_time_masks": augment.time_masks,
            "train_mask_fraction": augment.mask_fraction,
            "train_mixup": augment.mixup,
            "train_save_best": callbacks.save_best,
            "train_mixed_precision": callbacks.mixed_precision,
            "train_split_by": spec.split_by,
            "train_valid_fraction": spec.valid_fraction,
            "train_seed": spec.seed,
            "train_class_weighting": spec.class_weighting,
            "train_device": spec.device,
        }
    )
    if spec.learning_rate is not None:
        state[LR_KEY] = spec.learning_rate
    for key, value in (  # a callback's checkbox, and its number when it is on
        ("train_early_stopping", callbacks.early_stopping_patience),
        ("train_reduce_lr", callbacks.reduce_lr_patience),
        ("train_grad_clip", callbacks.grad_clip),
    ):
        state[f"{key}_on"] = value is not None
        if value is not None:
            state[key] = value
    if spec.dataset not in names:
        notes.append(f"Its dataset {spec.dataset!r} is not here any more: choose another.")
        return notes
    name = spec.dataset
    state["train_dataset"] = name
    overview = services.dataset_overview(name, actor=actor)
    state[f"train_noise:{name}"] = _kept(
        spec.noise_levels, overview.noise_levels, "Noise levels", notes
    )
    speakers = [str(s) for s in overview.by_speaker.index]
    state[f"train_speakers:{name}"] = _kept(spec.speakers, speakers, "Speakers", notes)
    classes = _kept(spec.classes, overview.classes, "Classes", notes)
    state[f"train_classes:{name}"] = classes
    generators = [c for c in classes if c != "bonafide"]
    state[f"train_holdout:{name}"] = _kept(spec.holdout or (), generators, "Held out", notes)
    return notes
