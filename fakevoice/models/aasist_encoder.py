"""The front end and encoder of AASIST: the fixed sinc band-pass bank and the residual blocks.

They turn a batch of raw 16 kHz waveforms into the ``(B, C, 23, T)`` spectro-temporal feature
maps that :class:`fakevoice.models.aasist.Aasist` reads its graph nodes from. Parameter names
follow the official release (checkpoints load strictly). Besides each layer as published, the
module holds the kernels of the inference fast path (eval mode, autograd off): ``bn2`` folded into
``conv1``, the single-channel first convolution as one matrix product, pooling as reductions over
views, and SELU in place in cache-sized chunks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000


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
        if use_fast_path(self.fast, self.training):
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


def use_fast_path(fast: bool, training: bool) -> bool:
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


def abs_max_pool_3x3(bands: torch.Tensor) -> torch.Tensor:
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
