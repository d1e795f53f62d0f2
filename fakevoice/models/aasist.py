"""AASIST and AASIST-L: raw-waveform spoofing detectors with spectro-temporal graph attention.

The architecture of Jung et al., "AASIST: Audio Anti-Spoofing using Integrated Spectro-Temporal
Graph Attention Networks" (ICASSP 2022), written for this project. Parameter names follow the
official release so its checkpoints load with ``load_state_dict(strict=True)``, and the forward pass
reproduces the official logits, quirks included (see
:class:`~fakevoice.models.aasist_encoder.ResidualBlock`). This module holds the variants' configs
and assembles the model from its layers: the sinc front end and residual encoder
(:mod:`fakevoice.models.aasist_encoder`) and the graph layers
(:mod:`fakevoice.models.aasist_graph`).

Data flow for a batch of ``B`` clips of ``S`` samples at 16 kHz (``S = 64600`` officially)::

    (B, S) --sinc band-pass bank--> (B, 70, S - 128) --|.|, 3x3 max pool--> (B, 1, 23, T0)
      --6 residual blocks (each max-pools time by 3)--> (B, C, 23, T)
      --max over time--> 23 spectral nodes --GAT--> graph pool  (B, int(23 r0), D0)
      --max over freq--> T temporal nodes  --GAT--> graph pool  (B, int(T r1), D0)
      --two branches of 2 heterogeneous stacking GAT layers with a stack ("master") node-->
      --element-wise max of the branches, readout (max |.|, mean, stack node)--> (B, 5 * D1)
      --linear--> (B, n_classes) logits; index 1 is bona fide, index 0 spoof.

Two code paths give the same logits (within float rounding). ``fast=False`` is the plain eager
reading of the published model (filter bank rebuilt per call, every layer as written) and is what
training always runs. ``fast=True`` (default) keeps the filter bank as a buffer and, for inference
(eval mode with autograd off), folds each block's ``bn2`` into ``conv1``, runs the encoder
channels-last, computes the single-channel first convolution as one matrix product, pools with
reductions over views instead of ``max_pool2d`` (which also builds indices) and applies SELU in
place in cache-sized chunks; ``bench/inference.py`` measures the difference (about 2.5x on CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fakevoice.models.aasist_encoder import (
    ResidualBlock,
    SincFrontEnd,
    abs_max_pool_3x3,
    use_fast_path,
)
from fakevoice.models.aasist_graph import GraphAttention, GraphPool, HeteroGraphAttention

CLIP_SAMPLES = 64600  # the official 4.04 s crop
SPECTRAL_NODES = 23  # 70 sinc bands max-pooled by 3; fixed by the checkpoint's pos_S
MIN_SAMPLES = 2316  # sinc kernel (129) - 1 + 3 ** 7: the shortest input keeping one time step


@dataclass(frozen=True)
class AasistConfig:
    """Hyper-parameters of an AASIST variant.

    Attributes:
        sinc_channels: number of mel-spaced sinc band-pass filters (70).
        sinc_kernel: filter length in samples, odd (129).
        blocks: ``(in_channels, out_channels)`` of the six residual blocks.
        gat_dims: node feature sizes after the first GAT layers and after the HS-GAL layers.
        pool_ratios: share of nodes kept by the spectral, temporal and HS-GAL graph pools
            (the fourth entry is part of the official config and unused).
        temperatures: softmax temperatures of the spectral GAT, temporal GAT and HS-GAL layers
            (the fourth entry is part of the official config and unused).
    """

    sinc_channels: int
    sinc_kernel: int
    blocks: tuple[tuple[int, int], ...]
    gat_dims: tuple[int, int]
    pool_ratios: tuple[float, float, float, float]
    temperatures: tuple[float, float, float, float]

    @classmethod
    def from_official(cls, model_config: Mapping[str, Any]) -> AasistConfig:
        """Build from the ``model_config`` dict of an official AASIST ``.conf`` file."""
        filts = model_config["filts"]
        kernel = int(model_config["first_conv"])
        last = (int(filts[4][0]), int(filts[4][1]))
        blocks = tuple((int(a), int(b)) for a, b in filts[1:4]) + (last, last, last)
        return cls(
            sinc_channels=int(filts[0]),
            sinc_kernel=kernel + 1 if kernel % 2 == 0 else kernel,
            blocks=blocks,
            gat_dims=(int(model_config["gat_dims"][0]), int(model_config["gat_dims"][1])),
            pool_ratios=tuple(float(r) for r in model_config["pool_ratios"]),  # type: ignore[arg-type]
            temperatures=tuple(float(t) for t in model_config["temperatures"]),  # type: ignore[arg-type]
        )


AASIST_CONFIG = AasistConfig.from_official(
    {
        "first_conv": 128,
        "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
        "gat_dims": [64, 32],
        "pool_ratios": [0.5, 0.7, 0.5, 0.5],
        "temperatures": [2.0, 2.0, 100.0, 100.0],
    }
)
AASIST_L_CONFIG = AasistConfig.from_official(
    {
        "first_conv": 128,
        "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
        "gat_dims": [24, 32],
        "pool_ratios": [0.4, 0.5, 0.7, 0.5],
        "temperatures": [2.0, 2.0, 100.0, 100.0],
    }
)


# --- the model -----------------------------------------------------------------------------------


class Aasist(nn.Module):
    """AASIST / AASIST-L on raw 16 kHz waveforms.

    Args:
        config: the variant (:data:`AASIST_CONFIG` or :data:`AASIST_L_CONFIG`).
        n_classes: number of output logits (2 for the official bona fide / spoof models).
        fast: use the optimised inference path (same logits as the reference path).

    Input ``(B, S)`` float32 samples at 16 kHz, no normalisation, ``S >= MIN_SAMPLES``
    (``64600`` as trained officially); output ``(B, n_classes)`` logits.
    """

    def __init__(
        self, config: AasistConfig = AASIST_CONFIG, n_classes: int = 2, fast: bool = True
    ) -> None:
        super().__init__()
        self.config = config
        d0, d1 = config.gat_dims
        c_last = config.blocks[-1][1]
        t_spec, t_time, t_hetero = config.temperatures[:3]
        r_spec, r_time, r_hetero = config.pool_ratios[:3]

        self.conv_time = SincFrontEnd(config.sinc_channels, config.sinc_kernel)
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU()
        # Nested Sequentials reproduce the official parameter names (encoder.<i>.0.conv1...).
        self.encoder = nn.Sequential(
            *(
                nn.Sequential(ResidualBlock(c_in, c_out, first=i == 0))
                for i, (c_in, c_out) in enumerate(config.blocks)
            )
        )
        self.pos_S = nn.Parameter(torch.randn(1, SPECTRAL_NODES, c_last))  # noqa: N815
        self.master1 = nn.Parameter(torch.randn(1, 1, d0))
        self.master2 = nn.Parameter(torch.randn(1, 1, d0))

        self.GAT_layer_S = GraphAttention(c_last, d0, t_spec)  # noqa: N815
        self.GAT_layer_T = GraphAttention(c_last, d0, t_time)  # noqa: N815
        self.HtrgGAT_layer_ST11 = HeteroGraphAttention(d0, d1, t_hetero)  # noqa: N815
        self.HtrgGAT_layer_ST12 = HeteroGraphAttention(d1, d1, t_hetero)  # noqa: N815
        self.HtrgGAT_layer_ST21 = HeteroGraphAttention(d0, d1, t_hetero)  # noqa: N815
        self.HtrgGAT_layer_ST22 = HeteroGraphAttention(d1, d1, t_hetero)  # noqa: N815

        self.pool_S = GraphPool(r_spec, d0)  # noqa: N815
        self.pool_T = GraphPool(r_time, d0)  # noqa: N815
        self.pool_hS1 = GraphPool(r_hetero, d1)  # noqa: N815
        self.pool_hT1 = GraphPool(r_hetero, d1)  # noqa: N815
        self.pool_hS2 = GraphPool(r_hetero, d1)  # noqa: N815
        self.pool_hT2 = GraphPool(r_hetero, d1)  # noqa: N815

        self.branch_drop = nn.Dropout(0.2)
        self.readout_drop = nn.Dropout(0.5)
        self.out_layer = nn.Linear(5 * d1, n_classes)
        self.fast = fast

    @property
    def fast(self) -> bool:
        """Whether the optimised path is on (the logits are the same either way)."""
        return self._fast

    @fast.setter
    def fast(self, value: bool) -> None:
        self._fast = bool(value)
        for module in self.modules():
            if isinstance(module, SincFrontEnd | ResidualBlock):
                module.fast = self._fast

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """Sinc front end and residual encoder: ``(B, S) -> (B, C, 23, T)`` feature maps."""
        if waveform.ndim != 2 or waveform.shape[-1] < MIN_SAMPLES:
            raise ValueError(
                f"AASIST expects (batch, samples) with at least {MIN_SAMPLES} samples; "
                f"got shape {tuple(waveform.shape)}"
            )
        bands = self.conv_time(waveform)  # (B, 70, S')
        if use_fast_path(self._fast, self.training):
            x = self.selu(self.first_bn(abs_max_pool_3x3(bands)))
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = self.selu(self.first_bn(F.max_pool2d(bands[:, None].abs(), kernel_size=(3, 3))))
        return self.encoder(x).contiguous()

    def _branch(
        self,
        nodes_t: torch.Tensor,
        nodes_s: torch.Tensor,
        master: torch.Tensor,
        layers: tuple[HeteroGraphAttention, HeteroGraphAttention],
        pools: tuple[GraphPool, GraphPool],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One HS-GAL inference branch: HS-GAL, graph pooling, a second HS-GAL added residually."""
        nodes_t, nodes_s, master = layers[0](nodes_t, nodes_s, master)
        nodes_t, nodes_s = pools[0](nodes_t), pools[1](nodes_s)
        aug_t, aug_s, aug_master = layers[1](nodes_t, nodes_s, master)
        return (
            self.branch_drop(nodes_t + aug_t),
            self.branch_drop(nodes_s + aug_s),
            self.branch_drop(master + aug_master),
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for waveforms ``(B, S)``."""
        features = self.encode(waveform).abs()
        spectral = features.amax(dim=3).transpose(1, 2) + self.pos_S  # (B, 23, C)
        temporal = features.amax(dim=2).transpose(1, 2)  # (B, T, C)
        nodes_s = self.pool_S(self.GAT_layer_S(spectral))
        nodes_t = self.pool_T(self.GAT_layer_T(temporal))

        t1, s1, m1 = self._branch(
            nodes_t,
            nodes_s,
            self.master1,
            (self.HtrgGAT_layer_ST11, self.HtrgGAT_layer_ST12),
            (self.pool_hT1, self.pool_hS1),
        )
        t2, s2, m2 = self._branch(
            nodes_t,
            nodes_s,
            self.master2,
            (self.HtrgGAT_layer_ST21, self.HtrgGAT_layer_ST22),
            (self.pool_hT2, self.pool_hS2),
        )
        nodes_t, nodes_s, master = (
            torch.maximum(t1, t2),
            torch.maximum(s1, s2),
            torch.maximum(m1, m2),
        )
        readout = torch.cat(
            [
                nodes_t.abs().amax(dim=1),
                nodes_t.mean(dim=1),
                nodes_s.abs().amax(dim=1),
                nodes_s.mean(dim=1),
                master[:, 0],
            ],
            dim=1,
        )
        return self.out_layer(self.readout_drop(readout))


def build_aasist(variant: str = "aasist", n_classes: int = 2, fast: bool = True) -> Aasist:
    """An untrained AASIST (``"aasist"``) or AASIST-L (``"aasist-l"``) with ``n_classes`` outputs."""
    configs = {"aasist": AASIST_CONFIG, "aasist-l": AASIST_L_CONFIG}
    if variant not in configs:
        raise ValueError(f"variant must be one of {', '.join(configs)}; got {variant!r}")
    return Aasist(configs[variant], n_classes=n_classes, fast=fast)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
