"""Importing the official AASIST / AASIST-L checkpoints (``AASIST.pth``, ``AASIST-L.pth``).

Files are read with ``torch.load(..., weights_only=True)`` only: tensors and plain containers,
never arbitrary pickled objects. The variant is recognised from the tensor shapes, and the weights
must then load strictly into our :class:`~fakevoice.models.aasist.Aasist`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

from fakevoice.errors import ModelFileError
from fakevoice.models.aasist import AASIST_CONFIG, AASIST_L_CONFIG, Aasist, AasistConfig

logger = logging.getLogger(__name__)

AasistVariant = Literal["aasist", "aasist-l"]
VARIANT_CONFIGS: dict[AasistVariant, AasistConfig] = {
    "aasist": AASIST_CONFIG,
    "aasist-l": AASIST_L_CONFIG,
}
_NOT_AASIST = "This file is not an AASIST or AASIST-L checkpoint"


def read_state_dict(source: str | Path | bytes) -> dict[str, torch.Tensor]:
    """Read a PyTorch state dict safely (``weights_only=True``, onto the CPU).

    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a ``module.`` prefix
    (``nn.DataParallel``) are removed.

    Args:
        source: a file path, or the file's bytes.

    Raises:
        ModelFileError: the file is missing, unreadable, or not a dict of tensors.
    """
    if isinstance(source, bytes):
        handle: str | Path | io.BytesIO = io.BytesIO(source)
        name = "The uploaded file"
    else:
        handle = Path(source)
        name = f"The file '{handle.name}'"
        if not handle.is_file():
            raise ModelFileError(f"{name} does not exist.")
    try:
        loaded = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure means "not a checkpoint we accept"
        logger.info("torch.load refused %s: %s", name, exc)
        raise ModelFileError(
            f"{name} is not a PyTorch weights file that can be loaded safely."
        ) from None
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded:
        raise ModelFileError(f"{_NOT_AASIST}: it holds no named weights.")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise ModelFileError(f"{_NOT_AASIST}: it holds something other than named tensors.")
    state = dict(loaded)
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    tensor = state.get(key)
    return tuple(tensor.shape) if tensor is not None else ()


def detect_aasist_variant(state: Mapping[str, torch.Tensor]) -> tuple[AasistVariant, int]:
    """Which AASIST variant a state dict belongs to, from its tensor shapes.

    Args:
        state: parameter name -> tensor.

    Returns:
        The variant and its number of output classes (2 for the official models).

    Raises:
        ModelFileError: the shapes match neither AASIST nor AASIST-L.
    """
    out_shape = _shape(state, "out_layer.weight")
    if len(out_shape) != 2:
        raise ModelFileError(f"{_NOT_AASIST}: it has no AASIST output layer.")
    blocks = tuple(
        _shape(state, f"encoder.{i}.0.conv1.weight")[:2][::-1] for i in range(6)
    )  # (out, in) -> (in, out)
    gat_dims = (_shape(state, "master1")[-1:] or (0,))[0], out_shape[1] // 5
    for variant, config in VARIANT_CONFIGS.items():
        if blocks == config.blocks and gat_dims == config.gat_dims:
            return variant, out_shape[0]
    raise ModelFileError(f"{_NOT_AASIST}: its layer shapes match neither AASIST nor AASIST-L.")


def load_official_aasist(source: str | Path | bytes) -> tuple[AasistVariant, Aasist]:
    """Load an official AASIST or AASIST-L checkpoint into our model.

    Args:
        source: path to ``AASIST.pth`` / ``AASIST-L.pth`` (or a checkpoint of the same shape),
            or the file's bytes.

    Returns:
        ``("aasist" | "aasist-l", model)``; the model is on the CPU in eval mode.

    Raises:
        ModelFileError: the file is not a loadable AASIST checkpoint.
    """
    state = read_state_dict(source)
    variant, n_classes = detect_aasist_variant(state)
    model = Aasist(VARIANT_CONFIGS[variant], n_classes=n_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        logger.info("strict load failed: %s", exc)
        raise ModelFileError(
            f"{_NOT_AASIST}: it looks like {variant} but its weights do not fit the model."
        ) from None
    logger.info("loaded an official %s checkpoint (%d classes)", variant, n_classes)
    return variant, model.eval()
