"""SpecNet: a compact CNN for spectrogram images that trains in minutes on a CPU.

The image is first averaged over 2 x 2 pixels (``input_pool``): the default 224-row image holds
only 128 mel bands, so little is lost, and every later layer costs a quarter. Five conv-BN-ReLU-maxpool
blocks (16, 32, 64, 128, 128 channels) then shrink it 32-fold; the feature map is averaged over
frequency, then mean- and max-pooled over time, so the head sees both how a cue looks on average
and its strongest occurrence. About 0.25 M parameters and 0.056 GMAC per 224 x 224 image
(ResNet-18: 11.7 M and 1.8 GMAC). Activations run in channels-last layout, which oneDNN convolves
two to three times faster on a CPU than the default layout at these small channel counts.

Bundles written before the stem existed carry no ``arch_config`` in their manifest; they are
rebuilt with ``input_pool=1`` (see :meth:`SpecNet.from_config`), so their weights keep meaning what
they were trained to mean.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 128)
INPUT_POOLS: tuple[int, ...] = (1, 2, 4)
DEFAULT_INPUT_POOL = 2
LEGACY_INPUT_POOL = 1  # bundles whose manifest has no arch_config were trained without the stem


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU, 2x2 max pool: ``(B, C_in, H, W) -> (B, C_out, H/2, W/2)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SpecNet(nn.Module):
    """Compact spectrogram classifier.

    Args:
        n_classes: number of output logits.
        channels: output channels of the conv blocks; each block halves height and width.
        dropout: dropout before the linear head.
        in_channels: image channels (3 for the RGB images fastai and the workbench produce).
        input_pool: side of the average-pooling window applied to the image first (1: none).

    Input ``(B, in_channels, H, W)`` ImageNet-normalised images with frequency along H (low at the
    bottom) and time along W, ``H, W >= 2 ** len(channels)`` (an image under
    ``input_pool * 2 ** len(channels)`` pixels is pooled less); output ``(B, n_classes)`` logits.
    """

    def __init__(
        self,
        n_classes: int = 2,
        channels: tuple[int, ...] = DEFAULT_CHANNELS,
        dropout: float = 0.3,
        in_channels: int = 3,
        input_pool: int = DEFAULT_INPUT_POOL,
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1; got {n_classes}")
        if input_pool not in INPUT_POOLS:
            raise ValueError(f"input_pool must be one of {INPUT_POOLS}; got {input_pool!r}")
        self.input_pool = input_pool
        self.min_side_after_pool = 2 ** len(channels)
        widths = (in_channels, *channels)
        self.features = nn.Sequential(
            *(conv_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels[-1], n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def config(self) -> dict[str, Any]:
        """What a bundle's manifest records (``arch_config``) to rebuild this exact network."""
        return {"input_pool": self.input_pool}

    @classmethod
    def from_config(cls, n_classes: int, config: dict[str, Any] | None) -> SpecNet:
        """The network a manifest describes; ``None`` (an older bundle) means no input pooling.

        Raises:
            ValueError: the config holds an unknown key or an unsupported value.
        """
        if config is None:
            return cls(n_classes=n_classes, input_pool=LEGACY_INPUT_POOL)
        unknown = sorted(set(config) - {"input_pool"})
        if unknown:
            raise ValueError(f"unknown SpecNet setting(s): {', '.join(map(str, unknown))}")
        pool = config.get("input_pool", DEFAULT_INPUT_POOL)
        if isinstance(pool, bool) or not isinstance(pool, int):
            raise ValueError(f"input_pool must be a whole number; got {pool!r}")
        return cls(n_classes=n_classes, input_pool=pool)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for images ``(B, C, H, W)``."""
        pool = self.input_pool
        while pool > 1 and min(images.shape[-2:]) < pool * self.min_side_after_pool:
            pool //= 2  # small images are pooled less, so any image of 32 pixels or more works
        if pool > 1:
            images = nn.functional.avg_pool2d(images, pool)
        images = images.contiguous(memory_format=torch.channels_last)
        per_frame = self.features(images).mean(dim=2)  # (B, C, W'): average over frequency
        pooled = torch.cat([per_frame.mean(dim=2), per_frame.amax(dim=2)], dim=1)
        return self.head(self.dropout(pooled))
