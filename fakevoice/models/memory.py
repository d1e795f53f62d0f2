"""How much memory training an architecture takes, and how much the machine has.

A run that does not fit is killed by the operating system (or fails on the GPU) minutes after it
started, with nothing to say why. The estimate here lets the Train page and the worker say so
before, and name a batch size that fits.

The estimate traces one training forward pass of the registry's model on PyTorch's ``meta``
device (shapes only: no memory, no arithmetic, milliseconds even for AASIST and VGG) and adds up
the tensors autograd saves for the backward pass; those grow with the batch. On top come the
weights, their gradients and Adam's two moments (four copies of the parameters). The fastai
models wrap the same backbones with a slightly different head, so the figure is "about". Measured
on this project's CPU machine: AASIST-L at batch 32 is estimated at 14.3 GiB and its training
process peaked at about 15 GB resident.

Mixed precision (CUDA only) keeps most activations in float16: the trace then runs a float16 copy
of the model, so the saved tensors are counted at two bytes a value, while the weights, gradients
and Adam's moments stay float32 and autocast adds a float16 copy of the weights for the forward
pass. Autocast itself does not act on the meta device, and it keeps a few operations (softmax,
losses) in float32, so this figure too is "about", on the low side.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from fakevoice.errors import EstimateUnavailableError
from fakevoice.models.registry import IMAGE_SIZE, get_arch

logger = logging.getLogger(__name__)

GIB = 2**30
OPTIMIZER_COPIES = 4  # weights, gradients, and Adam's first and second moments
AUTOCAST_WEIGHT_SHARE = 0.5  # autocast's float16 copy of the float32 weights, per forward pass
FIT_SHARE = 0.8  # a batch size is advised when the estimate stays under this share of memory
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


@dataclass(frozen=True)
class MemoryEstimate:
    """Training memory of one architecture at one input size.

    Attributes:
        arch: registry name.
        batch_size: items per batch.
        bytes_per_item: activations kept for the backward pass, per item.
        parameter_bytes: the model's weights (float32).
        mixed_precision: traced for a mixed-precision (float16 autocast) run.
    """

    arch: str
    batch_size: int
    bytes_per_item: int
    parameter_bytes: int
    mixed_precision: bool = False

    @property
    def fixed_bytes(self) -> int:
        """What does not grow with the batch: weights, gradients, optimiser state, and with
        mixed precision autocast's float16 copy of the weights."""
        copies = OPTIMIZER_COPIES + (AUTOCAST_WEIGHT_SHARE if self.mixed_precision else 0)
        return math.ceil(copies * self.parameter_bytes)

    @property
    def total_bytes(self) -> int:
        """Activations of a whole batch plus weights, gradients and optimiser state."""
        return self.batch_size * self.bytes_per_item + self.fixed_bytes

    def largest_batch(self, available_bytes: int) -> int:
        """The largest batch size whose estimate stays under ``FIT_SHARE`` of ``available_bytes``
        (0 when not even one item fits)."""
        room = FIT_SHARE * available_bytes - self.fixed_bytes
        return max(0, math.floor(room / max(self.bytes_per_item, 1)))


@dataclass(frozen=True)
class MemoryAdvice:
    """An estimate set against the memory of the device that will train."""

    estimate: MemoryEstimate
    device: str  # "cpu" or "cuda"
    available_bytes: int | None  # None: unknown
    free: bool = False  # available_bytes is the GPU's free memory, not its total

    @property
    def fits(self) -> bool:
        """False when the estimate exceeds ``FIT_SHARE`` of the device's memory."""
        if self.available_bytes is None:
            return True
        return self.estimate.total_bytes <= FIT_SHARE * self.available_bytes

    def summary(self) -> str:
        """One line: the estimate and, when known, the device's memory."""
        where = "GPU memory" if self.device == "cuda" else "memory"
        line = (
            f"Training {self.estimate.arch} at batch {self.estimate.batch_size} needs about "
            f"{_gib(self.estimate.total_bytes)} of {where}"
        )
        if self.estimate.mixed_precision:
            line += " with mixed precision"
        if self.available_bytes is None:
            return line + "."
        if self.free:
            return line + f"; {_gib(self.available_bytes)} of this GPU's memory is free."
        return line + f"; this machine has {_gib(self.available_bytes)}."

    def warning(self) -> str | None:
        """What to do when the run will not fit, or None when it should."""
        if self.fits or self.available_bytes is None:
            return None
        largest = self.estimate.largest_batch(self.available_bytes)
        if largest >= 2:
            advice = f"Lower the batch size to {largest} or less."
        else:
            advice = "Even the smallest batch will not fit: use a machine with more memory."
        return f"{self.summary()} The run will probably be stopped for lack of memory. {advice}"


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


@lru_cache(maxsize=32)
def _traced(
    arch: str, input_shape: tuple[int, ...], n_classes: int, half: bool = False
) -> tuple[int, int]:
    """``(saved bytes per item, float32 parameter bytes)`` from a forward pass on the meta
    device (of a float16 copy of the model with ``half``)."""
    spec = get_arch(arch)
    batch = 2  # batch norm needs more than one value per channel in training mode
    saved: dict[int, int] = {}

    weights: set[int] = set()  # the parameters' storages: counted once, in the fixed term

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in weights:  # a layer keeps its weight for backward: no activation
            saved[storage._cdata] = storage.nbytes()  # one entry per storage, however many views
        return tensor

    try:
        with torch.device("meta"):
            model, _ = spec.build(n_classes)
            parameters = sum(p.numel() * p.element_size() for p in model.parameters())
            inputs = torch.empty((batch, *input_shape))
        if half:
            model, inputs = model.half(), inputs.half()
        weights.update(p.untyped_storage()._cdata for p in model.parameters())
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(inputs)
    except Exception as exc:  # an operation without a meta kernel, an input the model refuses
        logger.warning("no memory estimate for %s %s: %r", arch, input_shape, exc)
        raise EstimateUnavailableError(
            f"The training memory of {arch} cannot be estimated for inputs of shape "
            f"{tuple(input_shape)}."
        ) from None
    return math.ceil(sum(saved.values()) / batch), parameters


def estimate_training_memory(
    arch: str,
    batch_size: int,
    input_shape: tuple[int, ...],
    n_classes: int = 2,
    *,
    mixed_precision: bool = False,
) -> MemoryEstimate:
    """Estimate what training ``arch`` takes.

    Args:
        arch: registry name.
        batch_size: items per batch.
        input_shape: one item: ``(3, height, width)`` for image models, ``(samples,)`` for
            waveform models.
        n_classes: outputs (changes only the head).
        mixed_precision: the run trains with float16 autocast (CUDA only; a CPU run ignores it).

    Raises:
        InvalidSpecError: unknown architecture.
        EstimateUnavailableError: the model cannot be traced for this input (an operation
            without a meta kernel, or an input shape the model refuses).
    """
    shape = tuple(int(n) for n in input_shape)
    per_item, parameters = _traced(arch, shape, n_classes, mixed_precision)
    return MemoryEstimate(arch, int(batch_size), per_item, parameters, mixed_precision)


def input_shape(
    arch: str, feature_spec: dict[str, object] | None, clip_samples: int
) -> tuple[int, ...]:
    """One item's input as a run feeds it: ``(3, height, width)`` of the dataset's images for image
    models (224 x 224 when the dataset names none), ``(clip_samples,)`` for waveform models.

    Raises:
        InvalidSpecError: unknown architecture.
    """
    if get_arch(arch).input_kind == "waveform":
        return (int(clip_samples),)
    spec = feature_spec or {}
    height, width = spec.get("image_height", IMAGE_SIZE[0]), spec.get("image_width", IMAGE_SIZE[1])
    if not isinstance(height, int) or not isinstance(width, int):
        height, width = IMAGE_SIZE
    return (3, height, width)


def device_memory(device: torch.device | str, *, free: bool = False) -> int | None:
    """Memory of the device a run trains on, bytes; None when it cannot be read.

    CPU: the physical memory, or the container's (cgroup) limit when that is lower (``free`` is
    ignored: the kernel pages other processes out first). CUDA: the GPU's total memory, or with
    ``free`` what is free on it now plus what this process's allocator holds and would reuse
    (another process's run, a served model, another team's job take the rest). A run checked
    when it is queued is set against the total, since it may wait for the GPU; the worker checks
    again with the free memory when the run starts.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        if free:
            unused, _ = torch.cuda.mem_get_info(index)
            return int(unused) + int(torch.cuda.memory_reserved(index))
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def advise(
    arch: str,
    batch_size: int,
    input_shape: tuple[int, ...],
    device: torch.device | str,
    n_classes: int = 2,
    available_bytes: int | None = None,
    *,
    mixed_precision: bool = False,
    free: bool = False,
) -> MemoryAdvice:
    """The estimate for a run, set against the memory of ``device`` (or ``available_bytes``).

    ``mixed_precision`` counts only on CUDA (where training uses it); ``free`` sets a GPU run
    against the GPU's free memory rather than its total (:func:`device_memory`).
    """
    device = torch.device(device)
    amp = mixed_precision and device.type == "cuda"
    estimate = estimate_training_memory(
        arch, batch_size, input_shape, n_classes, mixed_precision=amp
    )
    if available_bytes is not None:
        available: int | None = available_bytes
    else:
        available = device_memory(device, free=free)
    return MemoryAdvice(estimate, device.type, available, free=free and device.type == "cuda")
