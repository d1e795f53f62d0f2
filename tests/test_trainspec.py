"""TrainSpec: one validation boundary with messages a person understands, and a JSON round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakevoice.errors import InvalidSpecError
from fakevoice.trainspec import ARCH_NAMES, AugmentSpec, CallbackSpec, TrainSpec


def test_round_trip_through_json() -> None:
    spec = TrainSpec(
        dataset="demo",
        arch="aasist-l",
        task="multiclass",
        noise_levels=("snr_inf", "snr_10db"),
        speakers=("a", "b"),
        holdout=("world",),
        split_by="generator",
        learning_rate=None,
        clip_samples=32000,
        augment=AugmentSpec(freq_masks=2, noise_mix=0.3, mixup=0.2),
        callbacks=CallbackSpec(early_stopping_patience=3, grad_clip=1.0),
    )
    again = TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.input_kind == "waveform" and TrainSpec(dataset="d").input_kind == "image"


def test_from_dict_fills_defaults_and_sub_specs() -> None:
    spec = TrainSpec.from_dict({"dataset": "demo", "augment": {"mixup": 0.4}})
    assert spec.augment == AugmentSpec(mixup=0.4) and spec.callbacks == CallbackSpec()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": "resnet19"}, "arch must be one of specnet, resnet18, .*got 'resnet19'"),
        ({"task": "regression"}, "task must be one of binary, multiclass; got 'regression'"),
        ({"epochs": 0}, "epochs must be between 1 and 1000; got 0"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"batch_size": True}, "batch_size must be a number"),
        ({"learning_rate": 5.0}, "learning_rate must be between"),
        ({"valid_fraction": float("nan")}, "valid_fraction must be a number"),
        ({"speakers": ()}, "speakers is empty"),
        ({"dataset": " "}, "dataset must name a built dataset"),
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
        ({"clip_samples": 100}, "clip_samples must be between 8000"),
    ],
)
def test_invalid_values_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        TrainSpec(**{"dataset": "demo", **changes})


def test_from_dict_refuses_unknown_and_malformed_options() -> None:
    with pytest.raises(InvalidSpecError, match="unknown training option\\(s\\): callbackz"):
        TrainSpec.from_dict({"dataset": "demo", "callbackz": {}})
    with pytest.raises(InvalidSpecError, match="unknown augment option\\(s\\): flip"):
        TrainSpec.from_dict({"dataset": "demo", "augment": {"flip": True}})
    with pytest.raises(InvalidSpecError, match="speakers must be a list of names"):
        TrainSpec.from_dict({"dataset": "demo", "speakers": "alice"})
    with pytest.raises(
        InvalidSpecError, match="^the training options name no dataset to train on$"
    ):
        TrainSpec.from_dict({"arch": "specnet"})
    with pytest.raises(InvalidSpecError, match="mask_fraction must be between 0.0 and 0.3"):
        TrainSpec.from_dict({"dataset": "demo", "augment": {"mask_fraction": 0.9}})
    with pytest.raises(InvalidSpecError, match="grad_clip must be between"):
        TrainSpec.from_dict({"dataset": "demo", "callbacks": {"grad_clip": 0.0}})


def test_every_arch_is_accepted() -> None:
    for arch in ARCH_NAMES:
        assert TrainSpec(dataset="demo", arch=arch).arch == arch
