"""Train page: choose the data, the model and the training options, start a run, watch it learn,
stop it, and see its results.

Training never runs here: "Start training" queues a job that a worker process executes, and the
live panel only reads progress from the store. The open run's id sits in the URL (``?run=<id>``),
so the panel survives reloads and opens from another tab.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from components import training_view
from components.auth import require_actor
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.models.registry import get_arch
from fakevoice.services import results
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, RunRecord
from fakevoice.trainspec import (
    ARCH_NAMES,
    DEFAULT_CLIP_SAMPLES,
    HARD_MAX_EPOCHS,
    WAVEFORM_ARCHS,
    AugmentSpec,
    CallbackSpec,
    TrainSpec,
)

RUN_PARAM = "run"  # query parameter holding the open run's id
REFRESH_SECONDS = 1.5
SAMPLE_RATE = 16000
NAME_KEY = "train_run_name"
LR_KEY = "train_lr"
SUGGESTED_LR = "train_lr_suggested"  # set by "Suggest", copied into the widget on the next run
RESET_NAME = "train_reset_name"
BATCH_CACHE = "train_batch_cache"
TASK_LABELS = {
    "binary": "binary: human vs machine",
    "multiclass": "multiclass: human vs each generator",
}
SPLIT_LABELS = {
    "utterance": "by utterance (a sentence never in both)",
    "speaker": "by speaker (unseen voices)",
    "generator": "by generator (unseen attacks)",
}

SpecBuilder = Callable[[], TrainSpec]


# --- the form ------------------------------------------------------------------------------------


def _subset(chosen: list[str], every: list[str]) -> tuple[str, ...] | None:
    """None (= all) when everything is chosen, else the chosen values (empty stays empty)."""
    return None if set(chosen) == set(every) else tuple(chosen)


def _default_name() -> str:
    return f"run {datetime.now():%Y-%m-%d %H:%M:%S}"


def _selection(name: str) -> tuple[tuple[str, ...] | None, ...]:
    """Noise levels, speakers and classes, with the notice of what the choice selects."""
    overview = services.dataset_overview(name)
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
                name, tuple(noise), tuple(chosen_speakers), tuple(classes)
            )
        except FakeVoiceError as exc:
            st.warning(str(exc))
        else:
            st.info(
                f"This choice selects **{int(table.to_numpy().sum()):,}** spectrograms; "
                "per speaker (rows) and noise level (columns):"
            )
            st.dataframe(table.rename(columns=services.noise_label), width="stretch")
    return (
        _subset(noise, overview.noise_levels),
        _subset(chosen_speakers, speakers),
        _subset(classes, overview.classes),
    )


def _model_options(name: str) -> dict[str, Any]:
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
        spec = services.dataset_overview(name).feature_spec
        st.caption(
            "Spectrograms as the dataset was built: "
            f"{spec.get('kind', 'mel')}, {spec.get('image_height', '?')} x "
            f"{spec.get('image_width', '?')} px (rebuild the dataset to change them)."
        )
        if arch != "specnet":
            options["pretrained"] = st.checkbox(
                "Start from ImageNet weights",
                key="train_pretrained",
                help="used when present in the offline torch cache; otherwise the run trains "
                "from scratch and says so",
            )
    return options


def _length_options() -> tuple[dict[str, Any], bool]:
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


def _memory_note(build: SpecBuilder) -> None:
    """The run's memory estimate, and a warning with a batch size that fits when it will not."""
    try:
        advice = services.memory_advice(build())
    except FakeVoiceError:
        return  # the spec itself is refused; "Start training" says why
    warning = advice.warning()
    if warning is not None:
        st.warning(warning, icon=":material/memory:")
    else:
        st.caption(advice.summary())


def _suggest(actor: Actor, build: SpecBuilder) -> None:
    """Run the learning-rate finder and put its suggestion into the learning-rate field."""
    try:
        with st.spinner("Trying learning rates on a few batches..."):
            suggestion = results.suggest_learning_rate(actor, build())
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    st.session_state[SUGGESTED_LR] = suggestion
    st.toast(f"Suggested learning rate: {suggestion:.1e}")
    st.rerun()


def _augment_options(arch: str) -> AugmentSpec:
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


def _callback_options() -> CallbackSpec:
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


def _split_options(classes: tuple[str, ...] | None, name: str) -> dict[str, Any]:
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
                c for c in (classes or services.dataset_overview(name).classes) if c != "bonafide"
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


def _new_run(actor: Actor, names: list[str]) -> None:
    """The whole form and the "Start training" button."""
    if st.session_state.pop(RESET_NAME, False) or NAME_KEY not in st.session_state:
        st.session_state[NAME_KEY] = _default_name()
    top = st.columns([2, 3])
    name = top[0].selectbox(
        "Dataset", names, key="train_dataset", help="a built dataset (see the Datasets page)"
    )
    run_name = top[1].text_input(
        "Run name", key=NAME_KEY, max_chars=128, help="unique among your runs; names its model"
    )
    noise_levels, speakers, classes = _selection(name)
    st.markdown("**Model**")
    options = _model_options(name)
    st.markdown("**Training**")
    lengths, suggest = _length_options()
    options.update(lengths)
    options["augment"] = _augment_options(options["arch"])
    options["callbacks"] = _callback_options()
    options.update(_split_options(classes, name))

    def build() -> TrainSpec:
        return TrainSpec(
            dataset=name,
            noise_levels=noise_levels,
            speakers=speakers,
            classes=classes,
            **options,
        )

    _memory_note(build)
    if suggest:
        _suggest(actor, build)
    if st.button("Start training", key="train_start", type="primary", icon=":material/play_arrow:"):
        try:
            run = services.submit_run(actor, run_name, build())
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        st.session_state[RESET_NAME] = True
        st.query_params[RUN_PARAM] = str(run.id)
        st.rerun()


# --- the run panel -------------------------------------------------------------------------------


def _progress_tables(actor: Actor, run_id: int) -> tuple[RunRecord, pd.DataFrame, pd.DataFrame]:
    """The run, all its batch losses and its epochs; batches are fetched incrementally."""
    cache = st.session_state.get(BATCH_CACHE)
    after = -1
    if cache is not None and cache["run_id"] == run_id and not cache["frame"].empty:
        after = int(cache["frame"]["step"].iloc[-1])
    progress = services.run_progress(actor, run_id, after_step=after)
    run = progress.run
    if cache is None or cache["run_id"] != run_id or cache["started_at"] != run.started_at:
        if after >= 0:  # the run restarted (resumed): read its batches again from the start
            progress = services.run_progress(actor, run_id)
        frame = results.batch_frame(progress.batches)
    else:
        frame = pd.concat([cache["frame"], results.batch_frame(progress.batches)])
    st.session_state[BATCH_CACHE] = {
        "run_id": run_id,
        "started_at": run.started_at,
        "frame": frame.reset_index(drop=True),
    }
    return run, frame, results.history_frame(progress.epochs)


def _live_panel(actor: Actor, run_id: int) -> None:
    """Progress, loss curves, epoch table and the Stop button; re-runs itself while active."""
    # A fragment's own reruns bypass main()'s handler, so it reports errors itself.
    try:
        _live_panel_body(actor, run_id)
    except FakeVoiceError as exc:
        st.error(str(exc))


def _live_panel_body(actor: Actor, run_id: int) -> None:
    stop_column, status_column = st.columns([1, 5])
    if stop_column.button(
        "Stop", key="train_stop", icon=":material/stop_circle:", help="stops within one batch"
    ):
        services.stop_run(actor, run_id)
    run, batches, history = _progress_tables(actor, run_id)
    if not run.is_active:
        st.rerun()  # the whole page, to show the results without the timer
    if run.status == "queued":
        status_column.info(
            "Queued: waiting for a worker (`fakevoice worker`, which `make run` starts)."
        )
    elif run.stop_requested:
        status_column.warning("Stopping at the end of the current batch...")
    else:
        status_column.caption(f"Running on {run.worker_id or 'a worker'}.")
    epoch = min(run.current_epoch + 1, max(1, run.total_epochs))
    st.progress(
        min(1.0, max(0.0, run.progress)),
        text=f"Epoch {epoch} of {run.total_epochs} ({run.progress:.0%} of the run)",
    )
    if run.notice:
        st.caption(run.notice)
    training_view.render_loss_chart(batches, history)
    training_view.render_epoch_table(history)


def _final_panel(actor: Actor, run: RunRecord) -> None:
    result = results.run_results(actor, run.id)
    epochs = len(result.history)
    if run.status == "succeeded":
        st.success(f"Finished after {epochs} epoch(s).")
    elif run.status == "cancelled":
        kept = (
            "the model of the last good epoch is kept."
            if result.has_bundle
            else "it stopped before an epoch finished, so no model was saved."
        )
        st.warning(f"Stopped after {epochs} epoch(s); {kept}")
    elif run.status == "failed":
        st.error(f"This run failed: {run.error or 'no reason was recorded.'}")
    else:
        st.warning(f"This run was interrupted: {run.error or 'its worker stopped.'}")
    if run.notice:
        st.caption(run.notice)
    if run.status != "succeeded" and st.button(
        "Resume",
        key="train_resume",
        icon=":material/replay:",
        help="queue this run again, from its last finished epoch when it has one",
    ):
        services.resume_run(actor, run.id)
        st.rerun()
    if result.files or not result.history.empty:
        training_view.render_results(actor, result)


def _run_panel(actor: Actor, raw_id: str) -> None:
    if not raw_id.isdigit():
        st.error(f"{raw_id!r} is not a run id.")
        return
    try:
        run = services.get_run(actor, int(raw_id))
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    header, close = st.columns([5, 1])
    header.subheader(f"Run {run.name!r}")
    if close.button("Close", key="train_close", icon=":material/close:"):
        del st.query_params[RUN_PARAM]
        st.rerun()
    spec = run.spec
    st.caption(
        f"{spec.get('arch')} · {spec.get('task')} · dataset {spec.get('dataset')} · "
        f"{run.total_epochs} epoch(s) · batch {spec.get('batch_size')} · "
        f"learning rate {spec.get('learning_rate') or 'found at start'}"
    )
    if run.is_active:
        st.fragment(run_every=REFRESH_SECONDS)(_live_panel)(actor, run.id)
    else:
        _final_panel(actor, run)


def _my_runs(actor: Actor) -> None:
    runs = services.list_runs(actor)
    if not runs:
        st.caption("No runs yet.")
        return
    table = pd.DataFrame(
        {
            "id": [r.id for r in runs],
            "name": [r.name for r in runs],
            "arch": [r.spec.get("arch") for r in runs],
            "dataset": [r.spec.get("dataset") for r in runs],
            "status": [r.status for r in runs],
            "progress": [r.progress for r in runs],
            "created": [r.created_at for r in runs],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress")},
    )
    by_id = {r.id: r for r in runs}
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    chosen = left.selectbox(
        "Open a run",
        list(by_id),
        format_func=lambda i: f"{by_id[i].name} ({by_id[i].status})",
        key="train_open_choice",
        help="show its live panel or results",
    )
    if right.button("Open", key="train_open", icon=":material/open_in_new:"):
        st.query_params[RUN_PARAM] = str(chosen)
        st.rerun()


def main() -> None:
    st.title("Train")
    actor = require_actor("train a detector")
    raw_id = st.query_params.get(RUN_PARAM)
    try:
        if raw_id is not None:
            _run_panel(actor, raw_id)
        names = services.dataset_names()
        with st.expander("New run", expanded=raw_id is None, icon=":material/add:"):
            if names:
                _new_run(actor, names)
            else:
                st.info(f"No dataset is built yet. {services.BUILD_HINT}")
        st.subheader("My runs")
        _my_runs(actor)
    except FakeVoiceError as exc:
        st.error(str(exc))


main()
