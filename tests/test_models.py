"""The architecture registry, SpecNet, offline pretrained weights and device choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import SHARED, speechlike
from safetensors.torch import save_file

from fakevoice.errors import InvalidSpecError, ModelFileError, ServerConfigError
from fakevoice.models import (
    ARCH_NAMES,
    count_parameters,
    get_arch,
    list_archs,
    pick_device,
    registry,
)
from fakevoice.models.registry import build_inference_model, imagenet_weight_files
from fakevoice.models.specnet import SpecNet

IMAGE_ARCHS = [spec.name for spec in list_archs("image")]
WAVEFORM_ARCHS = [spec.name for spec in list_archs("waveform")]


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, and any attempt to download weights fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    return Path(torch.hub.get_dir()) / "checkpoints"


def _train_step(model: torch.nn.Module, batch: torch.Tensor, n_classes: int) -> None:
    model.train()
    logits = model(batch)
    assert logits.shape == (batch.shape[0], n_classes)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(batch.shape[0]) % n_classes)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_registry_lists_every_architecture() -> None:
    assert set(ARCH_NAMES) == {
        "specnet", "resnet18", "resnet34", "resnet50", "vgg16_bn", "vgg19_bn", "alexnet",
        "aasist", "aasist-l",
    }  # fmt: skip
    assert set(WAVEFORM_ARCHS) == {"aasist", "aasist-l"}
    for spec in list_archs():
        assert spec.description
        if spec.input_kind == "image":
            assert spec.input_size == (224, 224)
            assert spec.fastai_vision == (spec.constructor is not None) == (spec.name != "specnet")
        else:
            assert spec.input_size == (64600,) and not spec.fastai_vision


def test_unknown_arch_lists_the_names() -> None:
    with pytest.raises(InvalidSpecError, match="resnet18, resnet34") as info:
        get_arch("resnet19")
    assert "'resnet19'" in str(info.value)


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("name", IMAGE_ARCHS)
def test_image_arch_trains_one_batch(name: str, n_classes: int, rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model, notice = get_arch(name).build(n_classes)
    assert notice is None
    images = torch.from_numpy(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
    _train_step(model, images, n_classes)


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("name", WAVEFORM_ARCHS)
def test_waveform_arch_trains_one_batch(name: str, n_classes: int) -> None:
    torch.manual_seed(0)
    model, notice = get_arch(name).build(n_classes)
    assert notice is None
    clips = torch.from_numpy(np.stack([speechlike(1.0, seed=s) for s in (0, 1)]))  # 16000 samples
    _train_step(model, clips, n_classes)


def test_specnet_is_compact_and_takes_any_image_size(rng: np.random.Generator) -> None:
    model = SpecNet(n_classes=3).eval()
    assert 100_000 <= count_parameters(model) <= 300_000
    with torch.no_grad():
        for height, width in ((224, 224), (128, 400), (32, 32)):
            images = torch.from_numpy(rng.standard_normal((1, 3, height, width)).astype(np.float32))
            assert model(images).shape == (1, 3)


def test_too_few_classes_refused() -> None:
    with pytest.raises(InvalidSpecError, match="at least 2"):
        get_arch("specnet").build(1)


# --- pretrained weights, offline ------------------------------------------------------------------


def test_missing_imagenet_weights_give_a_notice(offline_hub: Path) -> None:
    model, notice = get_arch("resnet18").build(2, pretrained=True)
    assert (
        notice == "ImageNet weights for resnet18 are not available offline; training from scratch"
    )
    assert model.fc.out_features == 2  # type: ignore[union-attr]
    _, notice = get_arch("specnet").build(2, pretrained=True)
    assert notice is not None and "from scratch" in notice


def test_cached_imagenet_weights_are_used(offline_hub: Path) -> None:
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18(weights=None)  # stands in for the real file
    offline_hub.mkdir(parents=True)
    target = imagenet_weight_files("resnet18")[0]
    assert target.parent == offline_hub and target.name.startswith("resnet18-")
    torch.save(imagenet.state_dict(), target)
    model, notice = get_arch("resnet18").build(3, pretrained=True)
    assert notice is None
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)  # type: ignore[union-attr]
    assert model.fc.out_features == 3  # type: ignore[union-attr]


def test_damaged_cached_weights_fall_back(offline_hub: Path) -> None:
    offline_hub.mkdir(parents=True)
    imagenet_weight_files("alexnet")[0].write_bytes(b"not a checkpoint")
    model, notice = get_arch("alexnet").build(2, pretrained=True)
    assert notice is not None and "from scratch" in notice
    assert model.classifier[6].out_features == 2  # type: ignore[index]


def test_weights_file_safetensors_keeps_backbone(tmp_path: Path) -> None:
    torch.manual_seed(2)
    trained = SpecNet(n_classes=4)
    path = tmp_path / "specnet.safetensors"
    save_file(trained.state_dict(), str(path))
    same, _ = get_arch("specnet").build(4, weights_path=path)
    fewer, _ = get_arch("specnet").build(2, weights_path=path)
    for name, value in trained.state_dict().items():
        assert torch.equal(same.state_dict()[name], value)
        if not name.startswith("head."):
            assert torch.equal(fewer.state_dict()[name], value)
    assert fewer.head.out_features == 2  # type: ignore[union-attr]


def test_weights_file_of_another_arch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ModelFileError, match="this architecture"):
        get_arch("resnet34").build(2, weights_path=path)
    with pytest.raises(ModelFileError):
        get_arch("specnet").build(2, weights_path=tmp_path / "absent.safetensors")


@pytest.mark.skipif(
    not (SHARED / "aasist" / "AASIST.pth").is_file(),
    reason="the official AASIST checkpoints (../shared/aasist) are not on this machine",
)
def test_official_aasist_as_starting_weights() -> None:
    official = torch.load(SHARED / "aasist" / "AASIST.pth", map_location="cpu", weights_only=True)
    model, notice = get_arch("aasist").build(5, weights_path=SHARED / "aasist" / "AASIST.pth")
    assert notice is None and model.out_layer.out_features == 5  # type: ignore[union-attr]
    assert torch.equal(model.state_dict()["pos_S"], official["pos_S"])
    with pytest.raises(ModelFileError):
        get_arch("aasist-l").build(2, weights_path=SHARED / "aasist" / "AASIST.pth")


# --- device ---------------------------------------------------------------------------------------


def test_pick_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(InvalidSpecError, match="auto, cpu, cuda"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidSpecError, match="GPU"):
            pick_device("cuda")
    # The operator's FAKEVOICE_DEVICE decides what a run's "auto" means; a run's own choice wins.
    assert pick_device("auto", server="cpu").type == "cpu"
    assert pick_device("cpu", server="cuda").type == "cpu"
    with pytest.raises(InvalidSpecError, match="FAKEVOICE_DEVICE must be one of"):
        pick_device("auto", server="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ServerConfigError, match="FAKEVOICE_DEVICE is cuda"):
            pick_device("auto", server="cuda")


def test_specnet_pools_its_input_and_records_how(rng: np.random.Generator) -> None:
    images = torch.from_numpy(rng.standard_normal((2, 3, 224, 224)).astype(np.float32))
    model = SpecNet(n_classes=2).eval()
    assert model.config() == {"input_pool": 2}
    legacy = SpecNet.from_config(2, None).eval()  # a bundle written before the stem existed
    assert legacy.input_pool == 1
    legacy.load_state_dict(model.state_dict())
    with torch.no_grad():
        pooled = torch.nn.functional.avg_pool2d(images, 2)
        # The stem is a plain 2 x 2 average: the legacy network fed pooled images agrees.
        assert torch.allclose(model(images), legacy(pooled), atol=1e-5)
        assert not torch.allclose(model(images), legacy(images), atol=1e-3)


def test_specnet_manifest_config_round_trips_and_bad_values_are_refused() -> None:
    manifest = {"arch": "specnet", "class_names": ["bonafide", "spoof"]}
    assert build_inference_model(manifest).input_pool == 1  # type: ignore[union-attr]
    rebuilt = build_inference_model({**manifest, "arch_config": {"input_pool": 4}})
    assert rebuilt.input_pool == 4  # type: ignore[union-attr]
    for bad in ({"input_pool": 3}, {"input_pool": "2"}, {"input_pool": True}, {"depth": 9}, [2]):
        with pytest.raises(ModelFileError, match="arch_config"):
            build_inference_model({**manifest, "arch_config": bad})


@pytest.mark.parametrize("arch", ["aasist-l", "resnet18"])
def test_settings_an_architecture_does_not_have_are_refused(arch: str) -> None:
    manifest = {"arch": arch, "class_names": ["bonafide", "spoof"]}
    for empty in (None, {}):  # no settings: the registry's network
        model = build_inference_model({**manifest, "arch_config": empty})
        assert registry.arch_config(model) is None
    with pytest.raises(ModelFileError, match=f"settings .*that {arch} does not have"):
        build_inference_model({**manifest, "arch_config": {"input_pool": 2}})
