"""fastai Learners for every architecture, and the same models rebuilt for inference without pickle.

torchvision CNNs are assembled the way fastai's ``vision_learner`` does (``create_body`` cut at the
architecture's pooling layer + fastai's head), so the training model and the model rebuilt from a
safe bundle have identical structure. ImageNet weights are used only when they are already on disk
(the torch hub cache or a file given by the operator); otherwise the model starts from scratch and the
run says so. Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.vision.learner import add_head, create_body, model_meta, num_features_model
from torch import nn

from fakevoice.errors import ModelFileError
from fakevoice.models.registry import get_arch

logger = logging.getLogger(__name__)

TORCHVISION: dict[str, tuple[Callable[..., nn.Module], Any]] = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "vgg16_bn": (torchvision.models.vgg16_bn, torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1),
    "vgg19_bn": (torchvision.models.vgg19_bn, torchvision.models.VGG19_BN_Weights.IMAGENET1K_V1),
    "alexnet": (torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1),
}


def imagenet_weights_path(arch: str, weights_file: Path | None = None) -> Path | None:
    """Where ImageNet weights for ``arch`` are on disk, if anywhere (never downloads)."""
    if weights_file is not None:
        return weights_file if weights_file.is_file() else None
    _, weights = TORCHVISION[arch]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return cached if cached.is_file() else None


def vision_model(
    arch: str, n_out: int, state_dict: dict[str, torch.Tensor] | None = None
) -> nn.Module:
    """A torchvision body (optionally with ImageNet weights) with fastai's classification head."""
    constructor, _ = TORCHVISION[arch]
    base = constructor(weights=None)
    if state_dict is not None:
        try:
            base.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"The ImageNet weights file does not fit {arch}.") from exc
    meta = model_meta.get(constructor, {"cut": None})
    body = create_body(base, n_in=3, pretrained=state_dict is not None, cut=meta.get("cut"))
    n_features = num_features_model(nn.Sequential(*body.children()))
    return add_head(body, n_features, n_out)


def build_learner_model(
    arch: str,
    dls: DataLoaders,
    n_classes: int,
    *,
    loss_func: Any,
    pretrained: bool = False,
    weights_file: Path | None = None,
) -> tuple[Learner, str | None]:
    """A fastai Learner for ``arch``; returns it with a notice for the run when one is due."""
    notice: str | None = None
    if arch in TORCHVISION:
        state = None
        if pretrained:
            path = imagenet_weights_path(arch, weights_file)
            if path is None:
                notice = (
                    f"ImageNet weights for {arch} are not available offline; training from scratch."
                )
                logger.warning(notice)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        model = vision_model(arch, n_classes, state)
        constructor, _ = TORCHVISION[arch]
        splitter = model_meta.get(constructor, {}).get("split")
        kwargs: dict[str, Any] = {"splitter": splitter} if splitter is not None else {}
        return Learner(dls, model, loss_func=loss_func, **kwargs), notice
    entry = get_arch(arch)
    model, notice = entry.build(n_classes, pretrained=pretrained)
    return Learner(dls, model, loss_func=loss_func), notice
