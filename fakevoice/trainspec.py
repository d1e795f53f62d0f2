"""The typed, bounded description of a training run.

A :class:`TrainSpec` is the whole recipe of a run: which items of which dataset, which model, how long,
which augmentations and which callbacks. It is validated once, here, and stored as JSON on the run so a
run can be repeated or resumed exactly. No user text is ever executed: every option is a field with a
type and bounds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from pydantic import ConfigDict

from fakevoice.errors import InvalidSpecError

Task = Literal["binary", "multiclass"]
SplitBy = Literal["utterance", "speaker", "generator"]
Device = Literal["auto", "cpu", "cuda"]

ARCH_NAMES: tuple[str, ...] = (
    "specnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16_bn",
    "vgg19_bn",
    "alexnet",
    "aasist",
    "aasist-l",
)
WAVEFORM_ARCHS: frozenset[str] = frozenset({"aasist", "aasist-l"})
DEFAULT_CLIP_SAMPLES = 64600  # AASIST's 4.04 s at 16 kHz
HARD_MAX_EPOCHS = 1000


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidSpecError(f"{name} must be a number between {low} and {high}; got {value!r}")
    if not low <= value <= high:
        raise InvalidSpecError(f"{name} must be between {low} and {high}; got {value}")


def _check_whole(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpecError(f"{name} must be a whole number; got {value!r}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidSpecError(f"{name} must be true or false; got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise InvalidSpecError(f"{name} must be one of {allowed}; got {value!r}")


def _tuple_or_none(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidSpecError(f"{name} must be a list of names; got {value!r}")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class AugmentSpec:
    """Augmentations that make sense for spectrograms and waveforms (never flips or rotations).

    Attributes:
        time_shift: random circular time shift of the spectrogram image, or a random crop of the
            waveform (AASIST's training crop), so a model cannot rely on where speech starts.
        freq_masks: number of SpecAugment frequency masks per training image (0-4).
        time_masks: number of SpecAugment time masks per training image (0-4).
        mask_fraction: largest width of one mask, as a fraction of the image side (0-0.3).
        noise_mix: probability of mixing Gaussian noise into a training waveform at 5-30 dB SNR
            (waveform models only).
        mixup: mixup alpha (0 = off; 0.2-0.4 is typical).
    """

    # Over HTTP (pydantic validates the dataclass): an unknown option is refused, not dropped.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    time_shift: bool = True
    freq_masks: int = 1
    time_masks: int = 1
    mask_fraction: float = 0.1
    noise_mix: float = 0.0
    mixup: float = 0.0

    def __post_init__(self) -> None:
        _check_bool("time_shift", self.time_shift)
        for name in ("freq_masks", "time_masks"):
            _check_range(name, getattr(self, name), 0, 4)
            _check_whole(name, getattr(self, name))
        _check_range("mask_fraction", self.mask_fraction, 0.0, 0.3)
        _check_range("noise_mix", self.noise_mix, 0.0, 1.0)
        _check_range("mixup", self.mixup, 0.0, 1.0)


@dataclass(frozen=True)
class CallbackSpec:
    """The menu of training callbacks, each with typed, bounded parameters.

    Attributes:
        early_stopping_patience: stop after this many epochs without a better validation EER
            (None = off).
        save_best: keep the weights of the epoch with the best validation EER as the final model.
        reduce_lr_patience: divide the learning rate by 10 after this many epochs without a better
            validation loss (None = off).
        grad_clip: clip the gradient norm to this value (None = off).
        mixed_precision: use automatic mixed precision; only takes effect on a GPU.
    """

    # Over HTTP (pydantic validates the dataclass): an unknown option is refused, not dropped.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    early_stopping_patience: int | None = None
    save_best: bool = True
    reduce_lr_patience: int | None = None
    grad_clip: float | None = None
    mixed_precision: bool = False

    def __post_init__(self) -> None:
        for name in ("early_stopping_patience", "reduce_lr_patience"):
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, 1, 100)
                _check_whole(name, value)
        _check_bool("save_best", self.save_best)
        _check_bool("mixed_precision", self.mixed_precision)
        if self.grad_clip is not None:
            _check_range("grad_clip", self.grad_clip, 0.01, 100.0)


@dataclass(frozen=True)
class TrainSpec:
    """Everything a training run needs, validated once.

    Attributes:
        dataset: name of a built dataset (a folder under the dataset directory).
        arch: model architecture, one of :data:`ARCH_NAMES`.
        task: ``binary`` (bonafide vs spoof) or ``multiclass`` (bonafide vs each generator).
        noise_levels / speakers / classes: item selection (None = all).
        epochs: number of epochs (1 to the server's limit).
        batch_size: items per batch.
        learning_rate: peak learning rate of the one-cycle schedule; None = fastai's lr_find
            suggestion.
        split_by / valid_fraction / holdout: grouped, seeded validation split.
        class_weighting: weight the loss by inverse class frequency.
        pretrained: start from ImageNet weights when present offline (image models only).
        clip_samples: waveform length for raw-waveform models, and the window length the detector
            uses for image models' verdicts (samples at 16 kHz).
        device: ``auto`` picks CUDA when present.
        seed: random seed for the split, the shuffling and the augmentations.
    """

    # Over HTTP (pydantic validates the dataclass): an unknown option is refused, not dropped.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    dataset: str
    arch: str = "specnet"
    task: Task = "binary"
    noise_levels: tuple[str, ...] | None = None
    speakers: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float | None = 1e-3
    split_by: SplitBy = "utterance"
    valid_fraction: float = 0.2
    holdout: tuple[str, ...] | None = None
    class_weighting: bool = True
    pretrained: bool = False
    clip_samples: int = DEFAULT_CLIP_SAMPLES
    device: Device = "auto"
    seed: int = 0
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    callbacks: CallbackSpec = field(default_factory=CallbackSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise InvalidSpecError("dataset must name a built dataset")
        _check_choice("arch", self.arch, ARCH_NAMES)
        _check_choice("task", self.task, get_args(Task))
        _check_choice("split_by", self.split_by, get_args(SplitBy))
        _check_choice("device", self.device, get_args(Device))
        _check_range("epochs", self.epochs, 1, HARD_MAX_EPOCHS)
        _check_range("batch_size", self.batch_size, 2, 512)
        if self.learning_rate is not None:
            _check_range("learning_rate", self.learning_rate, 1e-6, 1.0)
        _check_range("valid_fraction", self.valid_fraction, 0.05, 0.5)
        _check_range("clip_samples", self.clip_samples, 8000, 16000 * 30)
        _check_range("seed", self.seed, 0, 2**31 - 1)
        for name in ("epochs", "batch_size", "clip_samples", "seed"):
            _check_whole(name, getattr(self, name))
        _check_bool("class_weighting", self.class_weighting)
        _check_bool("pretrained", self.pretrained)
        for name in ("noise_levels", "speakers", "classes", "holdout"):
            value = getattr(self, name)
            if value is not None and len(value) == 0:
                raise InvalidSpecError(f"{name} is empty: choose at least one, or leave it unset")

    @property
    def input_kind(self) -> Literal["image", "waveform"]:
        return "waveform" if self.arch in WAVEFORM_ARCHS else "image"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        """Build a spec from JSON-like data, refusing unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSpecError(f"unknown training option(s): {', '.join(unknown)}")
        if "dataset" not in data:
            raise InvalidSpecError("the training options name no dataset to train on")
        values = dict(data)
        for name in ("noise_levels", "speakers", "classes", "holdout"):
            if name in values:
                values[name] = _tuple_or_none(values[name], name)
        values["augment"] = _sub_spec(AugmentSpec, values.get("augment"), "augment")
        values["callbacks"] = _sub_spec(CallbackSpec, values.get("callbacks"), "callbacks")
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidSpecError(f"training options are incomplete: {exc}") from None


def _sub_spec(kind: type[Any], data: Any, name: str) -> Any:
    if data is None:
        return kind()
    if isinstance(data, kind):
        return data
    if not isinstance(data, dict):
        raise InvalidSpecError(f"{name} must be a mapping of options; got {data!r}")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidSpecError(f"unknown {name} option(s): {', '.join(unknown)}")
    return kind(**data)
