"""The architectures a user can train, by name, and the device they run on.

Image models (torchvision CNNs and :class:`~fakevoice.models.specnet.SpecNet`) take
ImageNet-normalised ``(B, 3, H, W)`` spectrogram images; waveform models (AASIST, AASIST-L) take
``(B, 64600)`` samples at 16 kHz. Every entry builds a fresh model with the requested number of
outputs. Nothing is ever downloaded: ImageNet weights are used only when they already sit in the
torch hub cache (``torch.hub.get_dir()/checkpoints/<torchvision file name>``) or are given as a
file; otherwise the model starts from scratch and :meth:`ArchSpec.build` says so in its notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from fakevoice.errors import InvalidSpecError, ModelFileError, ServerConfigError
from fakevoice.models.aasist import CLIP_SAMPLES, build_aasist
from fakevoice.models.checkpoints import read_state_dict
from fakevoice.models.specnet import SpecNet

logger = logging.getLogger(__name__)

InputKind = Literal["image", "waveform"]
DevicePreference = Literal["auto", "cpu", "cuda"]
IMAGE_SIZE = (224, 224)  # (height, width) pixels
DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ArchSpec:
    """One trainable architecture.

    Attributes:
        name: registry name, e.g. ``"resnet18"``.
        input_kind: ``"image"`` (``(B, 3, H, W)``) or ``"waveform"`` (``(B, samples)`` at 16 kHz).
        description: one line for people choosing a model.
        input_size: default input, ``(height, width)`` pixels or ``(samples,)``.
        fastai_vision: whether fastai's ``vision_learner`` applies (torchvision CNNs).
        head: state-dict prefix of the final classifier layer (replaced for ``n_classes``).
        factory: ``n_classes -> model`` with random weights.
        constructor: builds the torchvision model (``torchvision.models.<name>``, imported
            only when called); ``None`` for our own models.
        from_config: ``(n_classes, arch_config) -> model`` for architectures whose bundles record
            settings beyond the name (a manifest's ``arch_config``; ``None`` there means a bundle
            older than those settings); ``None`` for architectures without settings.
    """

    name: str
    input_kind: InputKind
    description: str
    input_size: tuple[int, ...]
    fastai_vision: bool
    head: str
    factory: Callable[[int], nn.Module] = field(repr=False, compare=False)
    constructor: Callable[..., nn.Module] | None = None
    from_config: Callable[[int, dict[str, Any] | None], nn.Module] | None = field(
        default=None, repr=False, compare=False
    )

    def check_config(self, config: object) -> None:
        """Refuse a manifest's ``arch_config`` that is not an object, or that gives settings to an
        architecture without any (``ModelFileError``)."""
        if config is not None and not isinstance(config, dict):
            raise ModelFileError("The model manifest's arch_config is not an object.")
        if self.from_config is None and config:
            raise ModelFileError(
                f"The model manifest gives settings ({', '.join(map(str, config))}) that "
                f"{self.name} does not have."
            )

    def rebuild(self, n_classes: int, config: object) -> nn.Module:
        """The network a bundle's manifest describes (random weights, to load the bundle's into).

        Raises:
            ModelFileError: ``config`` is not an object, or holds settings this architecture does
                not have or values it does not support (see :meth:`check_config`).
        """
        self.check_config(config)
        if self.from_config is None:
            return self.factory(n_classes)
        try:
            return self.from_config(n_classes, config if isinstance(config, dict) else None)
        except ValueError as exc:
            raise ModelFileError(f"The model manifest's arch_config is invalid: {exc}") from None

    def build(
        self, n_classes: int, pretrained: bool = False, weights_path: str | Path | None = None
    ) -> tuple[nn.Module, str | None]:
        """A new model with ``n_classes`` outputs and, where asked and possible, starting weights.

        Args:
            n_classes: number of output logits (at least 2).
            pretrained: start from ImageNet weights found offline (torchvision CNNs).
            weights_path: a weights file to start from (``.pth`` or ``.safetensors``: ImageNet
                weights of the torchvision model, an official AASIST checkpoint, or a state dict
                of this architecture); its classifier layer is kept only when it has
                ``n_classes`` outputs.

        Returns:
            The model (CPU, train mode) and a notice for the user, or ``None``.

        Raises:
            InvalidSpecError: ``n_classes`` below 2.
            ModelFileError: ``weights_path`` cannot be read or does not fit the architecture.
        """
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise InvalidSpecError(
                f"n_classes must be a whole number of at least 2; got {n_classes!r}"
            )
        model = self.factory(n_classes)
        if weights_path is not None:
            load_backbone(model, read_weights_file(weights_path), self.head)
            return model, None
        if not pretrained:
            return model, None
        cached = cached_imagenet_weights(self.name) if self.constructor is not None else None
        if cached is None:
            what = "ImageNet weights" if self.constructor is not None else "Pretrained weights"
            return model, f"{what} for {self.name} are not available offline; training from scratch"
        try:
            load_backbone(model, read_weights_file(cached), self.head)
        except ModelFileError as exc:
            logger.warning("ignoring cached ImageNet weights %s: %s", cached, exc)
            return (
                self.factory(n_classes),
                f"The cached ImageNet weights for {self.name} are damaged; training from scratch",
            )
        logger.info("%s starts from ImageNet weights %s", self.name, cached)
        return model, None


def _torchvision(name: str, description: str, head: str) -> ArchSpec:
    def constructor(**kwargs: Any) -> nn.Module:
        # torchvision costs about a second of imports (torch._dynamo through its ops): only the
        # torchvision CNNs pay it, not a command that lists runs or scores with specnet or AASIST.
        import torchvision

        model: nn.Module = getattr(torchvision.models, name)(**kwargs)
        return model

    return ArchSpec(
        name=name,
        input_kind="image",
        description=description,
        input_size=IMAGE_SIZE,
        fastai_vision=True,
        head=head,
        constructor=constructor,
        factory=lambda n: constructor(weights=None, num_classes=n),
    )


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            name="specnet",
            input_kind="image",
            description="Compact 5-block CNN (0.25 M parameters); trains in minutes on a CPU",
            input_size=IMAGE_SIZE,
            fastai_vision=False,
            head="head.",
            factory=lambda n: SpecNet(n_classes=n),
            from_config=SpecNet.from_config,
        ),
        _torchvision("resnet18", "ResNet-18 (11.7 M parameters)", "fc."),
        _torchvision("resnet34", "ResNet-34 (21.8 M parameters)", "fc."),
        _torchvision("resnet50", "ResNet-50 (25.6 M parameters); best with a GPU", "fc."),
        _torchvision(
            "vgg16_bn", "VGG-16 with batch norm (138 M parameters); needs a GPU", "classifier.6."
        ),
        _torchvision(
            "vgg19_bn", "VGG-19 with batch norm (144 M parameters); needs a GPU", "classifier.6."
        ),
        _torchvision(
            "alexnet", "AlexNet (61 M parameters); images of at least 64 x 64", "classifier.6."
        ),
        ArchSpec(
            name="aasist",
            input_kind="waveform",
            description="AASIST on raw 16 kHz audio (0.30 M parameters, 9.6 GMAC per 4 s clip)",
            input_size=(CLIP_SAMPLES,),
            fastai_vision=False,
            head="out_layer.",
            factory=lambda n: build_aasist("aasist", n_classes=n),
        ),
        ArchSpec(
            name="aasist-l",
            input_kind="waveform",
            description="AASIST-L, the light AASIST (85 k parameters, 6.6 GMAC per 4 s clip)",
            input_size=(CLIP_SAMPLES,),
            fastai_vision=False,
            head="out_layer.",
            factory=lambda n: build_aasist("aasist-l", n_classes=n),
        ),
    )
}
ARCH_NAMES: tuple[str, ...] = tuple(ARCHS)


def get_arch(name: str) -> ArchSpec:
    """The registry entry for ``name``.

    Raises:
        InvalidSpecError: an unknown name; the message lists the known ones.
    """
    try:
        return ARCHS[name]
    except (KeyError, TypeError):
        raise InvalidSpecError(
            f"arch must be one of {', '.join(ARCH_NAMES)}; got {name!r}"
        ) from None


def list_archs(input_kind: InputKind | None = None) -> list[ArchSpec]:
    """All entries, or those taking ``input_kind``, in registry order."""
    return [spec for spec in ARCHS.values() if input_kind in (None, spec.input_kind)]


def build_inference_model(manifest: dict[str, Any]) -> nn.Module:
    """Rebuild the module a safe bundle's weights belong to, from its manifest alone.

    Raises:
        ModelFileError: the manifest names no architecture we know, too few classes, or
            settings the architecture does not have.
    """
    arch = manifest.get("arch")
    class_names = manifest.get("class_names")
    if not isinstance(arch, str) or not isinstance(class_names, list) or len(class_names) < 2:
        raise ModelFileError("The model manifest is missing its architecture or class names.")
    try:
        entry = get_arch(arch)
    except InvalidSpecError as exc:
        raise ModelFileError(f"Unknown model architecture in the manifest: {exc}") from None
    if entry.fastai_vision:
        # The torchvision CNNs were trained with fastai's body and head; only they need fastai.
        from fakevoice.models.learners import vision_model

        entry.check_config(manifest.get("arch_config"))
        return vision_model(arch, len(class_names))
    return entry.rebuild(len(class_names), manifest.get("arch_config"))


def arch_config(model: nn.Module) -> dict[str, Any] | None:
    """The settings beyond the arch name that rebuild ``model`` (a manifest's ``arch_config``):
    what its ``config()`` says, for the architectures that have settings (see ``ArchSpec.rebuild``).
    """
    config = getattr(model, "config", None)
    return dict(config()) if callable(config) else None


# --- weights -------------------------------------------------------------------------------------


def imagenet_weight_files(name: str) -> list[Path]:
    """Where torchvision would cache ImageNet weights for ``name``, preferred file first."""
    import torchvision

    weights_enum = torchvision.models.get_model_weights(name)
    members = [weights_enum.DEFAULT, *weights_enum]  # type: ignore[attr-defined]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    names = dict.fromkeys(str(member.url).rsplit("/", 1)[-1] for member in members)
    return [folder / file_name for file_name in names]


def cached_imagenet_weights(name: str) -> Path | None:
    """The first cached ImageNet weights file for torchvision model ``name``, if any."""
    return next((path for path in imagenet_weight_files(name) if path.is_file()), None)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a PyTorch file (``weights_only=True``).

    Raises:
        ModelFileError: missing, unreadable or not a dict of tensors.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        return read_state_dict(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFileError(f"The model file '{path.name}' does not exist.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"'{path.name}' is not a readable safetensors file: {exc}") from None


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor], head: str) -> None:
    """Load ``state`` into ``model``; the classifier layer (``head`` prefix) only if it fits.

    Raises:
        ModelFileError: keys or shapes outside the classifier layer do not match.
    """
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(key for key in set(state) & set(own) if state[key].shape != own[key].shape)
    if unexpected or any(not key.startswith(head) for key in mismatched):
        wrong = (unexpected + [k for k in mismatched if not k.startswith(head)])[:3]
        raise ModelFileError(
            f"The weights do not fit this architecture (for example: {', '.join(wrong)})."
        )
    kept = {key: value for key, value in state.items() if key not in mismatched}
    missing = [key for key in own if key not in kept and not key.startswith(head)]
    if missing:
        raise ModelFileError(
            f"The weights file lacks parts of this architecture (for example: {', '.join(missing[:3])})."
        )
    model.load_state_dict(kept, strict=False)


# --- device --------------------------------------------------------------------------------------


def device_choice(preference: str, server: str) -> str:
    """What a run's ``device`` comes to on a server whose operator chose ``server``: the run's
    own ``cpu`` or ``cuda``, else (``auto``) the server's."""
    return server if preference == "auto" else preference


def pick_device(
    preference: str = "auto", server: str = "auto", setting: str = "FAKEVOICE_DEVICE"
) -> torch.device:
    """The torch device of a run or of a server's verdicts.

    Args:
        preference: what the run asks for: ``"cpu"``, ``"cuda"``, or ``"auto"``, which leaves
            the choice to ``server``.
        server: the operator's choice (``FAKEVOICE_DEVICE`` for runs,
            ``FAKEVOICE_VERDICT_DEVICE`` for verdicts): ``"auto"`` (CUDA when available, else
            the CPU), ``"cpu"`` (keep off a shared GPU) or ``"cuda"``.
        setting: the variable ``server`` came from, for the words of an error.

    Raises:
        InvalidSpecError: an unknown choice, or a run asking for ``"cuda"`` on a machine
            without a usable GPU.
        ServerConfigError: the operator's choice is ``cuda`` on a machine without one.
    """
    for name, value in (("device", preference), (setting, server)):
        if value not in DEVICE_CHOICES:
            raise InvalidSpecError(f"{name} must be one of auto, cpu, cuda; got {value!r}")
    choice = device_choice(preference, server)
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        raise InvalidSpecError(
            "This run asks for a GPU (device cuda), but this machine has none; use auto or cpu."
        )
    if choice == "cuda":
        raise ServerConfigError(
            f"{setting} is cuda, but this machine has no usable GPU: set it to auto or cpu."
        )
    return torch.device("cpu")
