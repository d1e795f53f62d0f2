"""The Train page's option widgets: what to train on, which model, how long, how to augment, which
callbacks, and how to split; each returns the :class:`~fakevoice.trainspec.TrainSpec` fields it
sets. Widget keys start with ``train_`` (tests and the page's own state use them).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.models.registry import get_arch
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor
from fakevoice.trainspec import (
    ARCH_NAMES,
    DEFAULT_CLIP_SAMPLES,
    HARD_MAX_EPOCHS,
    WAVEFORM_ARCHS,
    AugmentSpec,
    CallbackSpec,
)

SAMPLE_RATE = 16000
LR_KEY = "train_lr"
SUGGESTED_LR = "train_lr_suggested"  # set by "Suggest", copied into the widget on the next run
TASK_LABELS = {
    "binary": "binary: human vs machine",
    "multiclass": "multiclass: human vs each generator",
}
SPLIT_LABELS = {
    "utterance": "by utterance (a sentence never in both)",
    "speaker": "by speaker (unseen voices)",
    "generator": "by generator (unseen attacks)",
}


def _subset(chosen: list[str], every: list[str]) -> tuple[str, ...] | None:
    """None (= all) when everything is chosen, else the chosen values (empty stays empty)."""
    return None if set(chosen) == set(every) else tuple(chosen)


def selection(actor: Actor, name: str) -> tuple[tuple[str, ...] | None, ...]:
    """Noise levels, speakers and classes, with the notice of what the choice selects."""
    overview = services.dataset_overview(name, actor=actor)
    speakers = list(overview.by_speaker.index)
    columns = st.columns(3)
    noise = columns[0].multiselect(
        "Noise levels",
        overview.noise_levels,
        default=overview.noise_levels,
        format_func=services.noise_label,
        key=f"train_noise:{name}",
        help="spectrograms made at these signal-to-noise ratios (clean = no added noise)",
    )
    chosen_speakers = columns[1].multiselect(
        "Speakers",
        speakers,
        default=speakers,
        key=f"train_speakers:{name}",
        help="whose utterances (and their machine-made copies) to train on",
    )
    classes = columns[2].multiselect(
        "Classes",
        overview.classes,
        default=overview.classes,
        key=f"train_classes:{name}",
        help="bonafide (human) and the generators; at least bonafide and one generator",
    )
    if not (noise and chosen_speakers and classes):
        st.warning("Choose at least one noise level, one speaker and one class.")
    else:
        try:
            table = services.selection_counts(
                name, tuple(noise), tuple(chosen_speakers), tuple(classes), actor=actor
            )
        except FakeVoiceError as exc:
            st.warning(str(exc))
        else:
            st.info(
                f"This choice selects **{int(table.to_numpy().sum()):,}** spectrograms; "
                "per speaker (rows) and noise level (columns):"
            )
            st.dataframe(
                table.rename(columns=services.noise_label), width="stretch", placeholder="—"
            )
            shortcuts = services.shortcut_warning(name, classes, actor=actor)
            if shortcuts:
                st.warning(shortcuts, icon=":material/rule:")
    return (
        _subset(noise, overview.noise_levels),
        _subset(chosen_speakers, speakers),
        _subset(classes, overview.classes),
    )


def model_options(actor: Actor, name: str) -> dict[str, Any]:
    """Architecture, task and the feature settings that apply to it."""
    left, right = st.columns(2)
    arch = left.selectbox(
        "Architecture",
        ARCH_NAMES,
        key="train_arch",
        format_func=lambda a: f"{a}: {get_arch(a).description}",
        help="CNNs read spectrogram images; AASIST and AASIST-L read the raw 16 kHz waveform",
    )
    task = right.radio(
        "Task",
        list(TASK_LABELS),
        format_func=TASK_LABELS.__getitem__,
        key="train_task",
        horizontal=True,
        help="binary answers human or machine; multiclass also names the likely generator",
    )
    options: dict[str, Any] = {"arch": arch, "task": task}
    if arch in WAVEFORM_ARCHS:
        seconds = st.number_input(
            "Clip length (seconds)",
            min_value=0.5,
            max_value=30.0,
            value=DEFAULT_CLIP_SAMPLES / SAMPLE_RATE,
            step=0.25,
            key="train_clip_seconds",
            help="the model hears windows this long (AASIST uses 4.04 s); longer clips are "
            "cropped, randomly while training; shorter ones are repeated",
        )
        options["clip_samples"] = int(round(seconds * SAMPLE_RATE))
    else:
        overview = services.dataset_overview(name, actor=actor)
        spec = overview.feature_spec
        st.caption(
            "Spectrograms as the dataset was built: "
            f"{spec.get('kind', 'mel')}, {spec.get('image_height', '?')} x "
            f"{spec.get('image_width', '?')} px (rebuild the dataset to change them)."
        )
        if overview.render_notice:
            st.warning(overview.render_notice, icon=":material/history:")
        if arch != "specnet":
            options["pretrained"] = st.checkbox(
                "Start from ImageNet weights",
                key="train_pretrained",
                help="used when present in the offline torch cache; otherwise the run trains "
                "from scratch and says so",
            )
    return options


def length_options() -> tuple[dict[str, Any], bool]:
    """Epochs, batch size and learning rate; also whether "Suggest" was clicked."""
    limit = get_settings().max_epochs
    columns = st.columns([1, 1, 1, 1])
    epochs = columns[0].number_input(
        "Epochs",
        min_value=1,
        max_value=HARD_MAX_EPOCHS,
        value=min(5, limit),
        step=1,
        key="train_epochs",
        help=f"passes over the training items; this server trains at most {limit} per run",
    )
    batch_size = columns[1].number_input(
        "Batch size",
        min_value=2,
        max_value=512,
        value=32,
        step=1,
        key="train_batch_size",
        help="items per step; lower it if memory runs out",
    )
    if SUGGESTED_LR in st.session_state:
        st.session_state[LR_KEY] = st.session_state.pop(SUGGESTED_LR)
    st.session_state.setdefault(LR_KEY, 1e-3)
    auto = columns[3].checkbox(
        "Find it at start",
        key="train_lr_auto",
        help="the run starts with fastai's learning-rate finder and uses its suggestion",
    )
    learning_rate = columns[2].number_input(
        "Learning rate",
        min_value=1e-6,
        max_value=1.0,
        step=1e-4,
        format="%.1e",
        key=LR_KEY,
        disabled=auto,
        help="peak rate of the one-cycle schedule; 1e-3 suits most models here",
    )
    suggest = columns[3].button(
        "Suggest",
        key="train_suggest_lr",
        icon=":material/auto_fix_high:",
        disabled=auto,
        help="runs fastai's learning-rate finder now on a small share of the selection "
        "(seconds for specnet; longer for big CNNs on a CPU)",
    )
    chosen = {
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "learning_rate": None if auto else float(learning_rate),
    }
    return chosen, suggest


def augment_options(arch: str) -> AugmentSpec:
    waveform = arch in WAVEFORM_ARCHS
    with st.expander("Augmentations", icon=":material/tune:"):
        time_shift = st.checkbox(
            "Random crop of the waveform" if waveform else "Random time shift",
            value=True,
            key="train_time_shift",
            help="so the model cannot rely on where the speech starts",
        )
        columns = st.columns(3)
        freq_masks = time_masks = 0
        mask_fraction = 0.1
        noise_mix = 0.0
        if waveform:
            noise_mix = columns[0].slider(
                "Noise mixing probability",
                0.0,
                1.0,
                0.0,
                0.05,
                key="train_noise_mix",
                help="share of training clips mixed with Gaussian noise at 5-30 dB SNR",
            )
        else:
            freq_masks = columns[0].slider(
                "Frequency masks",
                0,
                4,
                1,
                key="train_freq_masks",
                help="SpecAugment: bands of frequencies hidden in each training image",
            )
            time_masks = columns[1].slider(
                "Time masks",
                0,
                4,
                1,
                key="train_time_masks",
                help="SpecAugment: stretches of time hidden in each training image",
            )
            mask_fraction = columns[2].slider(
                "Largest mask width",
                0.0,
                0.3,
                0.1,
                0.01,
                key="train_mask_fraction",
                help="of the image side; wider masks are harder to learn from",
            )
        mixup = st.slider(
            "Mixup alpha",
            0.0,
            1.0,
            0.0,
            0.05,
            key="train_mixup",
            help="blends pairs of training items and their labels; 0 is off, 0.2-0.4 is typical",
        )
    return AugmentSpec(
        time_shift=time_shift,
        freq_masks=freq_masks,
        time_masks=time_masks,
        mask_fraction=mask_fraction,
        noise_mix=noise_mix,
        mixup=mixup,
    )


def _optional_number(
    label: str, key: str, value: float, low: float, high: float, step: float, tip: str
) -> float | None:
    """A checkbox that turns a callback on, with its number beside it."""
    left, right = st.columns([1, 1])
    on = left.checkbox(label, key=f"{key}_on", help=tip)
    number = right.number_input(
        f"{label}: value",
        min_value=low,
        max_value=high,
        value=value,
        step=step,
        key=key,
        disabled=not on,
        label_visibility="collapsed",
        help=tip,
    )
    return number if on else None


def callback_options() -> CallbackSpec:
    with st.expander("Callbacks", icon=":material/settings_suggest:"):
        save_best = st.checkbox(
            "Keep the best epoch",
            value=True,
            key="train_save_best",
            help="the final model is the epoch with the lowest validation EER, not the last one",
        )
        patience = _optional_number(
            "Early stopping (patience, epochs)",
            "train_early_stopping",
            3,
            1,
            100,
            1,
            "stop when the validation EER has not improved for this many epochs",
        )
        reduce_lr = _optional_number(
            "Reduce LR on plateau (patience, epochs)",
            "train_reduce_lr",
            2,
            1,
            100,
            1,
            "divide the learning rate by 10 when the validation loss stalls this long "
            "(replaces the one-cycle schedule)",
        )
        grad_clip = _optional_number(
            "Gradient clipping (max norm)",
            "train_grad_clip",
            1.0,
            0.01,
            100.0,
            0.1,
            "limit the gradient norm per step; steadies training with a high learning rate",
        )
        mixed_precision = st.checkbox(
            "Mixed precision",
            key="train_mixed_precision",
            help="faster with less memory on a GPU; ignored on a CPU",
        )
    return CallbackSpec(
        early_stopping_patience=int(patience) if patience is not None else None,
        save_best=save_best,
        reduce_lr_patience=int(reduce_lr) if reduce_lr is not None else None,
        grad_clip=grad_clip,
        mixed_precision=mixed_precision,
    )


def split_options(actor: Actor, classes: tuple[str, ...] | None, name: str) -> dict[str, Any]:
    with st.expander("Validation split, seed and device", icon=":material/call_split:"):
        columns = st.columns(3)
        split_by = columns[0].selectbox(
            "Split by",
            list(SPLIT_LABELS),
            format_func=SPLIT_LABELS.__getitem__,
            key="train_split_by",
            help="how items are kept apart between training and validation",
        )
        valid_fraction = columns[1].slider(
            "Validation share",
            0.05,
            0.5,
            0.2,
            0.05,
            key="train_valid_fraction",
            help="share of the groups (utterances, speakers or generators) kept for validation",
        )
        seed = columns[2].number_input(
            "Seed",
            min_value=0,
            max_value=2**31 - 1,
            value=0,
            key="train_seed",
            help="same seed, same split, shuffling and augmentations",
        )
        holdout: list[str] = []
        if split_by == "generator":
            generators = [
                c
                for c in (classes or services.dataset_overview(name, actor=actor).classes)
                if c != "bonafide"
            ]
            holdout = st.multiselect(
                "Generators held out",
                generators,
                key=f"train_holdout:{name}",
                help="these generators are seen only in validation (empty = a seeded choice)",
            )
        class_weighting = st.checkbox(
            "Weight classes",
            value=True,
            key="train_class_weighting",
            help="weight the loss by inverse class frequency, so a rare class counts as much",
        )
        device = st.selectbox(
            "Device",
            ["auto", "cpu", "cuda"],
            key="train_device",
            help="auto uses the worker's GPU when it has one",
        )
    return {
        "split_by": split_by,
        "valid_fraction": float(valid_fraction),
        "seed": int(seed),
        "holdout": tuple(holdout) or None,
        "class_weighting": class_weighting,
        "device": device,
    }
