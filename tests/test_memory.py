"""Training memory estimates: traced on the meta device, set against the machine's memory."""

from __future__ import annotations

import pytest
import torch

from fakevoice.errors import EstimateUnavailableError, InvalidSpecError
from fakevoice.models import memory
from fakevoice.models.registry import get_arch

IMAGE = (3, 224, 224)
WAVE = (64600,)


def saved_bytes_on_cpu(arch: str, shape: tuple[int, ...], batch: int) -> int:
    """What autograd really keeps for the backward pass of a CPU forward pass, the weights a
    layer keeps for it left out (they are there whatever the batch)."""
    model, _ = get_arch(arch).build(2)
    model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.untyped_storage().data_ptr() not in weights:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(batch, *shape))
    return sum(saved.values())


@pytest.mark.parametrize("arch", ["specnet", "alexnet"])
def test_meta_trace_matches_a_real_forward_pass(arch: str) -> None:
    # Within 10 %: the CPU kernels keep a few buffers differently (here about 5 % fewer bytes).
    # Per item, as the batch grows: AlexNet's 61 M weights, which its linear layers keep for
    # the backward pass, had been counted as activations of every item.
    estimate = memory.estimate_training_memory(arch, 4, IMAGE)
    per_item = (saved_bytes_on_cpu(arch, IMAGE, 4) - saved_bytes_on_cpu(arch, IMAGE, 2)) / 2
    assert estimate.bytes_per_item == pytest.approx(per_item, rel=0.1)
    model, _ = get_arch(arch).build(2)
    assert estimate.parameter_bytes == sum(p.numel() * 4 for p in model.parameters())


def test_estimate_grows_with_batch_and_input() -> None:
    small = memory.estimate_training_memory("specnet", 8, IMAGE)
    double = memory.estimate_training_memory("specnet", 16, IMAGE)
    assert double.total_bytes - small.total_bytes == 8 * small.bytes_per_item
    wide = memory.estimate_training_memory("specnet", 8, (3, 224, 448))
    assert wide.bytes_per_item > 1.8 * small.bytes_per_item
    # The waveform models keep far more per item than the compact CNN: AASIST-L at batch 32
    # is several GiB (a CPU run at that size peaked at about 15 GB resident here).
    aasist = memory.estimate_training_memory("aasist-l", 32, WAVE)
    assert aasist.bytes_per_item > 50 * small.bytes_per_item
    assert 8 * memory.GIB < aasist.total_bytes < 24 * memory.GIB


def test_advice_names_a_batch_size_that_fits() -> None:
    estimate = memory.estimate_training_memory("aasist-l", 32, WAVE)
    advice = memory.advise("aasist-l", 32, WAVE, "cpu", available_bytes=8 * memory.GIB)
    assert not advice.fits
    warning = advice.warning()
    assert warning is not None and "8.0 GiB" in warning
    largest = estimate.largest_batch(8 * memory.GIB)
    assert 2 <= largest < 32 and f"batch size to {largest} or less" in warning
    fitting = memory.estimate_training_memory("aasist-l", largest, WAVE)
    assert fitting.total_bytes <= memory.FIT_SHARE * 8 * memory.GIB
    assert memory.estimate_training_memory("aasist-l", largest + 1, WAVE).total_bytes > (
        memory.FIT_SHARE * 8 * memory.GIB
    )

    roomy = memory.advise("aasist-l", 32, WAVE, "cpu", available_bytes=64 * memory.GIB)
    assert roomy.fits and roomy.warning() is None
    assert "this machine has 64.0 GiB" in roomy.summary()
    tiny = memory.advise("aasist-l", 32, WAVE, "cpu", available_bytes=memory.GIB // 4)
    assert "Even the smallest batch will not fit" in str(tiny.warning())
    unknown = memory.MemoryAdvice(estimate, "cuda", None)
    assert unknown.fits and unknown.warning() is None and "GPU memory" in unknown.summary()


def test_input_shape_follows_the_dataset_and_the_clip_length() -> None:
    assert memory.input_shape("specnet", {"image_height": 128, "image_width": 300}, 64600) == (
        3,
        128,
        300,
    )
    assert memory.input_shape("resnet18", {}, 64600) == IMAGE
    assert memory.input_shape("aasist", {"image_height": 128}, 32000) == (32000,)
    with pytest.raises(InvalidSpecError, match="arch must be one of"):
        memory.input_shape("no-such-net", {}, 64600)


def test_this_machine_reports_its_memory() -> None:
    total = memory.device_memory("cpu")
    assert total is not None and total > 256 * 2**20


def test_an_input_the_model_refuses_is_a_clear_error_not_a_crash() -> None:
    # The worker and the pages catch it: an estimate only informs, it never stops a run.
    with pytest.raises(EstimateUnavailableError, match="cannot be estimated for inputs"):
        memory.estimate_training_memory("specnet", 8, (3, 4, 4))
    with pytest.raises(EstimateUnavailableError, match="aasist-l"):
        memory.advise("aasist-l", 8, (100,), "cpu")


def test_mixed_precision_keeps_activations_in_half_and_weights_in_float32() -> None:
    full = memory.estimate_training_memory("specnet", 16, IMAGE)
    amp = memory.estimate_training_memory("specnet", 16, IMAGE, mixed_precision=True)
    # float16 activations: about half the bytes per item (a few buffers, e.g. pooling indices,
    # keep their own type); the float32 weights, gradients and Adam's moments are unchanged,
    # and autocast adds a float16 copy of the weights.
    assert 0.4 * full.bytes_per_item < amp.bytes_per_item < 0.6 * full.bytes_per_item
    assert amp.parameter_bytes == full.parameter_bytes
    assert amp.fixed_bytes == pytest.approx(4.5 * full.parameter_bytes, abs=1)
    assert amp.largest_batch(8 * memory.GIB) > full.largest_batch(8 * memory.GIB)
    waves = memory.estimate_training_memory("aasist-l", 32, WAVE, mixed_precision=True)
    assert (
        waves.bytes_per_item
        < 0.6 * memory.estimate_training_memory("aasist-l", 32, WAVE).bytes_per_item
    )

    on_gpu = memory.advise(
        "specnet", 16, IMAGE, "cuda", available_bytes=8 * memory.GIB, mixed_precision=True
    )
    assert on_gpu.estimate == amp and "with mixed precision" in on_gpu.summary()
    # A CPU run trains in float32 whatever the spec asks: its estimate says so.
    on_cpu = memory.advise(
        "specnet", 16, IMAGE, "cpu", available_bytes=8 * memory.GIB, mixed_precision=True
    )
    assert on_cpu.estimate == full and "mixed precision" not in on_cpu.summary()


def test_a_gpu_run_starting_is_set_against_the_free_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # torch's CUDA queries stand in for a GPU here (none on this machine): 24 GiB in all, 3 GiB
    # free because another process holds the rest, 1 GiB held by this process's own allocator.
    class Properties:
        total_memory = 24 * memory.GIB

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Properties())
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (3 * memory.GIB, 24 * memory.GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index: memory.GIB)
    assert memory.device_memory("cuda") == 24 * memory.GIB
    assert memory.device_memory("cuda:0", free=True) == 4 * memory.GIB

    queued = memory.advise("aasist-l", 16, WAVE, "cuda")
    assert queued.fits and "this machine has 24.0 GiB" in queued.summary()
    starting = memory.advise("aasist-l", 16, WAVE, "cuda", free=True)
    assert not starting.fits
    warning = str(starting.warning())
    assert "4.0 GiB of this GPU's memory is free" in warning and "Lower the batch size" in warning
    # On a CPU ``free`` changes nothing: the machine's memory is what counts.
    assert memory.advise("specnet", 8, IMAGE, "cpu", free=True).free is False
