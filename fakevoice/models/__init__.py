"""Model zoo: the architecture registry, our compact CNN, AASIST / AASIST-L and checkpoint import.

Typical use::

    from fakevoice.models import get_arch, pick_device

    model, notice = get_arch("resnet18").build(n_classes=2, pretrained=True)
    model.to(pick_device())
"""

from __future__ import annotations

from fakevoice.models.aasist import (
    AASIST_CONFIG,
    AASIST_L_CONFIG,
    CLIP_SAMPLES,
    Aasist,
    AasistConfig,
    build_aasist,
    count_parameters,
)
from fakevoice.models.checkpoints import detect_aasist_variant, load_official_aasist
from fakevoice.models.registry import (
    ARCH_NAMES,
    ARCHS,
    ArchSpec,
    InputKind,
    get_arch,
    list_archs,
    pick_device,
)
from fakevoice.models.specnet import SpecNet

__all__ = [
    "AASIST_CONFIG",
    "AASIST_L_CONFIG",
    "ARCHS",
    "ARCH_NAMES",
    "Aasist",
    "AasistConfig",
    "ArchSpec",
    "CLIP_SAMPLES",
    "InputKind",
    "SpecNet",
    "build_aasist",
    "count_parameters",
    "detect_aasist_variant",
    "get_arch",
    "list_archs",
    "load_official_aasist",
    "pick_device",
]
