"""AASIST / AASIST-L: official checkpoint compatibility, the two code paths, checkpoint import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED, speechlike
from safetensors.torch import save_file

from fakevoice.errors import ModelFileError
from fakevoice.models.aasist import (
    MIN_SAMPLES,
    SPECTRAL_NODES,
    build_aasist,
    count_parameters,
)
from fakevoice.models.aasist_encoder import (
    _max_pool_time,
    _selu_,
    abs_max_pool_3x3,
    sinc_filter_bank,
)
from fakevoice.models.checkpoints import detect_aasist_variant, load_official_aasist
from fakevoice.models.specnet import SpecNet

AASIST_DIR = SHARED / "aasist"
OFFICIAL = {"aasist": ("AASIST.pth", 297_866), "aasist-l": ("AASIST-L.pth", 85_306)}
needs_shared = pytest.mark.skipif(
    not (AASIST_DIR / "AASIST.pth").is_file(),
    reason="the official AASIST checkpoints (../shared/aasist) are not on this machine",
)


def _logits(model: torch.nn.Module, batch: torch.Tensor, fast: bool) -> torch.Tensor:
    model.fast = fast
    with torch.inference_mode():
        return model(batch)


@pytest.mark.parametrize("variant", ["aasist", "aasist-l"])
def test_parameter_count_and_state_dict_layout(variant: str) -> None:
    model = build_aasist(variant)
    assert count_parameters(model) == OFFICIAL[variant][1]
    keys = model.state_dict().keys()
    assert len(keys) == 229
    assert not any("filters" in key or "conv_time" in key for key in keys)
    # bn1 exists in every residual block after the first, as in the official weights.
    assert [f"encoder.{i}.0.bn1.weight" in keys for i in range(6)] == [False] + [True] * 5


def test_sinc_filters_pass_their_mel_band() -> None:
    bank = sinc_filter_bank(70, 129, 16000).double().numpy()
    assert bank.shape == (70, 129)
    assert np.allclose(bank, bank[:, ::-1])  # symmetric: linear phase
    mel_top = 2595 * np.log10(1 + 8000 / 700)
    edges = 700 * (10 ** (np.linspace(0, mel_top, 71) / 2595) - 1)
    freqs = np.fft.rfftfreq(8192, 1 / 16000)
    response = np.abs(np.fft.rfft(bank, 8192, axis=1))
    # 129 taps cannot resolve a 30-300 Hz band sharply; the energy centroid still sits in it.
    centroids = (response**2 * freqs).sum(axis=1) / (response**2).sum(axis=1)
    assert np.all(centroids > edges[:-1] - 50) and np.all(centroids < edges[1:] + 50)
    for k in range(70):
        far = (freqs < edges[k] - 1000) | (freqs > edges[k + 1] + 1000)
        assert response[k, far].max() < 0.02 * response[k].max(), k


def test_fast_pooling_and_selu_match_torch(rng: np.random.Generator) -> None:
    bands = torch.from_numpy(rng.standard_normal((2, 70, 1000)).astype(np.float32))
    expected = F.max_pool2d(bands[:, None].abs(), (3, 3))
    assert torch.equal(abs_max_pool_3x3(bands), expected)
    maps = torch.from_numpy(rng.standard_normal((2, 8, 5, 301)).astype(np.float32))
    for layout in (torch.contiguous_format, torch.channels_last):
        x = maps.contiguous(memory_format=layout)
        assert torch.equal(_max_pool_time(x), F.max_pool2d(x, (1, 3)))
        assert torch.allclose(_selu_(x.clone()), F.selu(x), atol=1e-6)


@pytest.mark.parametrize("variant", ["aasist", "aasist-l"])
def test_fast_and_reference_paths_give_the_same_logits(variant: str) -> None:
    torch.manual_seed(0)
    model = build_aasist(variant).eval()
    clips = torch.from_numpy(np.stack([speechlike(1.5, seed=s) for s in (1, 2)]))
    for batch in (clips, clips[:, : MIN_SAMPLES + 5]):
        reference, fast = _logits(model, batch, False), _logits(model, batch, True)
        assert reference.shape == (2, 2)
        torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-4)


def test_gradients_reach_the_input_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_aasist("aasist-l").eval()
    clip = torch.from_numpy(speechlike(1.0))[None].requires_grad_(True)
    model(clip)[0, 1].backward()  # autograd on: the in-place fast path must stand aside
    assert clip.grad is not None and torch.isfinite(clip.grad).all() and clip.grad.abs().sum() > 0


def test_short_input_is_refused() -> None:
    model = build_aasist("aasist-l").eval()
    with pytest.raises(ValueError, match="at least"):
        model(torch.zeros(1, MIN_SAMPLES - 1))
    with torch.inference_mode():
        assert model(torch.zeros(1, MIN_SAMPLES)).shape == (1, 2)


def test_spectral_nodes_follow_the_sinc_bank() -> None:
    model = build_aasist("aasist").eval()
    with torch.inference_mode():
        features = model.encode(torch.from_numpy(speechlike(1.0))[None])
    assert features.shape[1:3] == (64, SPECTRAL_NODES)


# --- official checkpoints ------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("variant", ["aasist", "aasist-l"])
def test_official_checkpoint_reproduces_reference_logits(variant: str) -> None:
    file_name, n_params = OFFICIAL[variant]
    detected, model = load_official_aasist(AASIST_DIR / file_name)  # strict load inside
    assert detected == variant
    assert count_parameters(model) == n_params
    assert not model.training
    inputs = np.load(AASIST_DIR / "reference_inputs.npz")
    reference = json.loads((AASIST_DIR / "reference_logits.json").read_text())["logits"]
    expected_by_clip = reference[file_name.removesuffix(".pth")]
    names = list(expected_by_clip)
    batch = torch.from_numpy(np.stack([inputs[name] for name in names]))
    assert batch.shape == (3, 64600) and batch.dtype == torch.float32
    expected = torch.tensor([expected_by_clip[name] for name in names])
    for fast in (False, True):
        assert (_logits(model, batch, fast) - expected).abs().max() < 1e-4


@needs_shared
def test_official_checkpoint_from_bytes() -> None:
    variant, model = load_official_aasist((AASIST_DIR / "AASIST-L.pth").read_bytes())
    assert variant == "aasist-l" and count_parameters(model) == 85_306


@needs_shared
def test_truncated_checkpoint_is_refused() -> None:
    data = (AASIST_DIR / "AASIST.pth").read_bytes()
    with pytest.raises(ModelFileError):
        load_official_aasist(data[: len(data) // 2])


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    tensors = tmp_path / "random.safetensors"
    save_file({"weight": torch.randn(4, 4)}, str(tensors))
    other_model = tmp_path / "specnet.pth"
    torch.save(SpecNet(2).state_dict(), other_model)
    for path in (text, tensors, other_model, tmp_path / "missing.pth"):
        with pytest.raises(ModelFileError) as info:
            load_official_aasist(path)
        assert str(info.value)[0].isupper()


def test_checkpoint_with_foreign_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"model": build_aasist("aasist-l"), "note": object()}, path)  # needs unpickling
    with pytest.raises(ModelFileError):
        load_official_aasist(path)


def test_own_aasist_weights_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    original = build_aasist("aasist-l", n_classes=3).eval()
    path = tmp_path / "mine.pth"
    torch.save(original.state_dict(), path)
    variant, loaded = load_official_aasist(path)
    assert variant == "aasist-l"
    assert detect_aasist_variant(original.state_dict()) == ("aasist-l", 3)
    clip = torch.from_numpy(speechlike(1.0))[None]
    torch.testing.assert_close(_logits(loaded, clip, True), _logits(original, clip, True))
