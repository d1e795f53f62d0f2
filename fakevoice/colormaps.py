"""Colour maps for spectrogram images, without matplotlib.

Each table is interpolated from 32 anchors taken at evenly spaced entries of matplotlib's
256-entry tables; the result is within 2 levels of 255 of matplotlib.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fakevoice.errors import InvalidSpecError

# 32 anchors (RGB hex) taken at evenly spaced entries of matplotlib's 256-entry tables.
ANCHORS: dict[str, str] = {
    "magma": (
        "000004 030312 0a0822 140e36 1e1149 2a115c 38106c 471078 54137d 601880 6d1d81 792282 "
        "882781 942c80 a1307e ae347b bd3977 ca3e72 d6456c e24d66 ec5860 f3655c f8745c fb835f "
        "fd9266 fea36f feb27a fec185 fecf92 fde0a1 fceeb0 fcfdbf"
    ),
    "viridis": (
        "440154 470d60 48186a 482475 472e7c 453882 424186 3e4c8a 3a548c 365d8d 32658e 2e6d8e "
        "2b758e 287d8e 25848e 228c8d 1f948c 1e9c89 20a386 25ab82 2eb37c 3aba76 48c16e 58c765 "
        "69cd5b 7fd34e 93d741 a8db34 bddf26 d5e21a eae51a fde725"
    ),
    "inferno": (
        "000004 040312 0b0724 160b39 230c4c 310a5c 3e0966 4d0d6c 5a116e 67166e 741a6e 801f6c "
        "8f2469 9b2964 a82e5f b43359 c13a50 cc4248 d74b3f e05536 e9612b ef6e21 f57b17 f8890c "
        "fb9706 fca80d fbb81d f9c72f f6d746 f2e865 f3f586 fcffa4"
    ),
    "gray": "000000 ffffff",
}
COLORMAPS: tuple[str, ...] = tuple(ANCHORS)


@lru_cache(maxsize=len(ANCHORS))
def colormap_lut(name: str) -> np.ndarray:
    """The 256-entry colour table of a named colour map: ``(256, 3)`` uint8, read-only.

    Raises:
        InvalidSpecError: unknown name.
    """
    if name not in COLORMAPS:
        raise InvalidSpecError(f"colormap must be one of {', '.join(COLORMAPS)}; got {name!r}")
    anchors = np.array(
        [[int(code[i : i + 2], 16) for i in (0, 2, 4)] for code in ANCHORS[name].split()],
        dtype=np.float64,
    )
    positions = np.round(np.linspace(0, 255, len(anchors)))
    entries = np.arange(256)
    table = np.stack([np.interp(entries, positions, anchors[:, c]) for c in range(3)], axis=1)
    lut = np.round(table).astype(np.uint8)
    lut.setflags(write=False)  # one table shared by every caller through the cache
    return lut
