"""AASIST and AASIST-L: raw-waveform spoofing detectors with spectro-temporal graph attention.

The architecture of Jung et al., "AASIST: Audio Anti-Spoofing using Integrated Spectro-Temporal
Graph Attention Networks" (ICASSP 2022), written for this project. Parameter names follow the
official release so its checkpoints load with ``load_state_dict(strict=True)``, and the forward pass
reproduces the official logits, quirks included (see :class:`ResidualBlock`).

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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fakevoice.models.aasist_graph import GraphAttention, GraphPool, HeteroGraphAttention

SAMPLE_RATE = 16000
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


# --- sinc front end ------------------------------------------------------------------------------


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def sinc_filter_bank(
    n_filters: int = 70, kernel_size: int = 129, sample_rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Fixed band-pass filters with band edges equally spaced on the mel scale from 0 to Nyquist.

    Each filter is the difference of two ideal low-pass sinc kernels (cut-offs at its band edges),
    Hamming-windowed.

    Args:
        n_filters: number of bands.
        kernel_size: taps per filter (odd, so the filters are symmetric).
        sample_rate: Hz.

    Returns:
        ``(n_filters, kernel_size)`` float32 impulse responses.
    """
    edges_mel = torch.linspace(0.0, _hz_to_mel(sample_rate / 2), n_filters + 1, dtype=torch.float64)
    edges = _mel_to_hz(edges_mel) / sample_rate  # cycles per sample
    half = (kernel_size - 1) / 2
    taps = torch.arange(-half, half + 1, dtype=torch.float64)
    low, high = edges[:-1, None], edges[1:, None]
    ideal = 2 * high * torch.sinc(2 * high * taps) - 2 * low * torch.sinc(2 * low * taps)
    window = torch.hamming_window(kernel_size, periodic=False, dtype=torch.float64)
    return (ideal * window).to(torch.float32)


class SincFrontEnd(nn.Module):
    """Filter the waveform with the fixed sinc bank (no trainable parameters, nothing stored).

    Input ``(B, S)`` float32 samples; output ``(B, n_filters, S - kernel_size + 1)``.
    """

    filters: torch.Tensor

    def __init__(self, n_filters: int, kernel_size: int, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"the sinc kernel size must be odd; got {kernel_size}")
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.sample_rate = sample_rate
        self.fast = True
        # Not persistent: the official checkpoints do not store the filters, they are derived.
        filters = sinc_filter_bank(n_filters, kernel_size, sample_rate)
        self.register_buffer("filters", filters[:, None, :], persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.fast:
            weight = self.filters
        else:
            bank = sinc_filter_bank(self.n_filters, self.kernel_size, self.sample_rate)
            weight = bank[:, None, :].to(waveform.device)
        return F.conv1d(waveform[:, None, :], weight.to(waveform.dtype))


# --- encoder -------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Two (2, 3) convolutions with a residual connection, then max-pooling time by 3.

    Input ``(B, C_in, F, T)``, output ``(B, C_out, F, T // 3)``.

    Blocks after the first own a ``bn1`` that the official model never applies to the first
    convolution's input (its output is overwritten); it is kept so checkpoints load strictly and
    skipped here because it cannot change the result.
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False) -> None:
        super().__init__()
        self.first = first
        self.fast = True
        if not first:
            self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        self.selu = nn.SELU()
        self.conv_downsample: nn.Conv2d | None = None
        if in_channels != out_channels:
            self.conv_downsample = nn.Conv2d(
                in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_fast_path(self.fast, self.training):
            return self._forward_fast(x)
        out = self.conv2(self.selu(self.bn2(self.conv1(x))))
        identity = x if self.conv_downsample is None else self.conv_downsample(x)
        return F.max_pool2d(out + identity, kernel_size=(1, 3))

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode path: ``bn2`` folded into ``conv1``, in-place activations, channels-last."""
        weight, bias = _fold_batch_norm(self.conv1, self.bn2)
        if x.shape[1] == 1 and x.device.type == "cpu":
            hidden, identity = _single_channel_convs(x, weight, bias, self.conv_downsample)
        else:
            hidden = F.conv2d(x, weight, bias, padding=(1, 1))
            identity = x if self.conv_downsample is None else self.conv_downsample(x)
        out = self.conv2(_selu_(hidden))
        return _max_pool_time(out.add_(identity))


def _use_fast_path(fast: bool, training: bool) -> bool:
    """The optimised path runs for inference only (eval mode, no autograd): it works in place."""
    return fast and not training and not torch.is_grad_enabled()


def _fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode statistics)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * scale[:, None, None, None], (bias - bn.running_mean) * scale + bn.bias


def _single_channel_convs(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, shortcut: nn.Conv2d | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first block's (2, 3) convolution and (1, 3) shortcut of a 1-channel input.

    On a CPU, oneDNN handles a single input channel poorly; six shifted copies of the input (plus
    a column of ones that carries the bias) and one matrix product are several times faster and
    give channels-last outputs directly.

    Args:
        x: ``(B, 1, H, T)``.
        weight: ``(C, 1, 2, 3)`` and bias ``(C,)`` of the main convolution (padding (1, 1)).
        shortcut: the ``(1, 3)`` convolution (padding (0, 1)), or ``None`` when ``C == 1``.

    Returns:
        ``(B, C, H + 1, T)`` and the shortcut ``(B, C, H, T)``, both channels-last.
    """
    batch, _, height, length = x.shape
    padded = F.pad(x[:, 0], (1, 1, 1, 1))  # (B, H + 2, T + 2)
    columns = [
        padded[:, kh : kh + height + 1, kw : kw + length] for kh in (0, 1) for kw in (0, 1, 2)
    ]
    columns.append(torch.ones_like(columns[0]))
    patches = torch.stack(columns, dim=-1)  # (B, H + 1, T, 7)
    kernel = torch.cat([weight.reshape(-1, 6), bias[:, None]], dim=1)  # (C, 7)
    hidden = (patches.reshape(-1, 7) @ kernel.t()).reshape(batch, height + 1, length, -1)
    if shortcut is None:
        return hidden.permute(0, 3, 1, 2), x
    # Row r of the patches holds input rows r - 1 and r; the shortcut reads row r (columns 3:6).
    assert shortcut.bias is not None
    rows = patches[:, :height, :, 3:].reshape(-1, 4)
    kernel = torch.cat([shortcut.weight.reshape(-1, 3), shortcut.bias[:, None]], dim=1)
    identity = (rows @ kernel.t()).reshape(batch, height, length, -1)
    return hidden.permute(0, 3, 1, 2), identity.permute(0, 3, 1, 2)


def _max_pool_time(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, (1, 3))`` as a reduction over a view (no indices computed).

    Input ``(B, C, H, W)``, output ``(B, C, H, W // 3)``; channels-last in, channels-last out.
    """
    frames = x.shape[-1] // 3
    grouped = x.permute(0, 2, 3, 1)[:, :, : 3 * frames].unflatten(2, (frames, 3))
    return grouped.amax(dim=3).permute(0, 3, 1, 2)


def _abs_max_pool_3x3(bands: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(bands[:, None].abs(), (3, 3))`` as two reductions over views.

    Input ``(B, n_filters, S')``, output ``(B, 1, n_filters // 3, S' // 3)``.
    """
    batch, n_filters, length = bands.shape
    groups, frames = n_filters // 3, length // 3
    per_band = bands[:, : 3 * groups, : 3 * frames].abs().unflatten(2, (frames, 3)).amax(dim=3)
    return per_band.view(batch, groups, 3, frames).amax(dim=2)[:, None]


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_CHUNK = 1 << 18


def _selu_(x: torch.Tensor) -> torch.Tensor:
    """SELU in place; on a CPU through ``exp`` (PyTorch's ``expm1``-based kernel is ~3x slower)."""
    if x.device.type != "cpu":
        return F.selu(x, inplace=True)
    if x.is_contiguous():
        flat = x.view(-1)
    elif x.is_contiguous(memory_format=torch.channels_last):
        flat = x.permute(0, 2, 3, 1).view(-1)
    else:
        return F.selu(x, inplace=True)
    # Chunks of 1 MB keep the seven passes in cache and the temporaries small.
    for chunk in flat.split(_SELU_CHUNK):
        negative = torch.clamp_max(chunk, 0.0).exp_().sub_(1.0).mul_(_SELU_ALPHA * _SELU_SCALE)
        chunk.clamp_min_(0.0).mul_(_SELU_SCALE).add_(negative)
    return x


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
        if _use_fast_path(self._fast, self.training):
            x = self.selu(self.first_bn(_abs_max_pool_3x3(bands)))
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
