"""SpecNet: a compact CNN for spectrogram images that trains in minutes on a CPU.

Five conv-BN-ReLU-maxpool blocks (16, 32, 64, 128, 128 channels) shrink a ``3 x 224 x 224`` image
32-fold; the feature map is averaged over frequency, then mean- and max-pooled over time, so the
head sees both how a cue looks on average and its strongest occurrence. About 0.25 M parameters
and 0.22 GMAC per 224 x 224 image (ResNet-18: 11.7 M and 1.8 GMAC).
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 128)


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

    Input ``(B, in_channels, H, W)`` ImageNet-normalised images with frequency along H (low at the
    bottom) and time along W, ``H, W >= 2 ** len(channels)``; output ``(B, n_classes)`` logits.
    """

    def __init__(
        self,
        n_classes: int = 2,
        channels: tuple[int, ...] = DEFAULT_CHANNELS,
        dropout: float = 0.3,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1; got {n_classes}")
        widths = (in_channels, *channels)
        self.features = nn.Sequential(
            *(conv_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels[-1], n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for images ``(B, C, H, W)``."""
        per_frame = self.features(images).mean(dim=2)  # (B, C, W'): average over frequency
        pooled = torch.cat([per_frame.mean(dim=2), per_frame.amax(dim=2)], dim=1)
        return self.head(self.dropout(pooled))
