"""Fingerprints of a dataset's clips: the same audio in another dataset is found again.

A model keeps the fingerprints of the clips it was trained on (``training_audio`` in its
manifest). A test on another dataset built from the same recordings (the same sources and seed,
other noise levels, a copy under another name) would otherwise look like a fair test while the
model has heard its speech; the test counts its items whose clip has one of those fingerprints.

A fingerprint is the first :data:`FINGERPRINT_HEX` hex digits of the SHA-256 of the clip's
16-bit samples (not of the file, whose header may differ between writers). Noise is added when
an item is loaded, so the noisy copies of a clip share its fingerprint; audio that was resampled,
trimmed or re-encoded differently is other audio here.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import soundfile as sf

from fakevoice.errors import DatasetError

logger = logging.getLogger(__name__)

TRAINING_AUDIO = "training_audio"
"""The key of a model manifest that holds the fingerprints of its training clips."""
FINGERPRINT_HEX = 16
"""Hex digits kept (64 bits): among a million clips a chance match is about one in 30 million."""
MAX_FINGERPRINTS = 50_000
"""At most this many clips are fingerprinted for a model (about 1 MB of its manifest); a model
trained on more keeps none, and tests on other datasets cannot tell whether they share audio."""
_FINGERPRINT = re.compile(rf"^[0-9a-f]{{{FINGERPRINT_HEX}}}$")


def clip_fingerprint(path: Path) -> str:
    """The fingerprint of one audio file's samples (as 16-bit integers, every channel).

    Raises:
        DatasetError: the file cannot be read.
    """
    try:
        samples, rate = sf.read(path, dtype="int16", always_2d=True)
    except (sf.LibsndfileError, OSError, RuntimeError) as error:
        raise DatasetError(f"The clip '{path.name}' cannot be read: {error}") from None
    digest = hashlib.sha256(f"{rate}:{samples.shape[1]}:".encode())
    digest.update(samples.tobytes())
    return digest.hexdigest()[:FINGERPRINT_HEX]


def training_fingerprints(dataset_dir: Path, items: pd.DataFrame) -> list[str] | None:
    """The sorted fingerprints of the distinct clips of ``items`` (a manifest frame), or None
    when there are more than :data:`MAX_FINGERPRINTS` or one cannot be read (logged)."""
    clips = sorted(set(items["clip_path"].astype(str)))
    if len(clips) > MAX_FINGERPRINTS:
        logger.info("%d training clips: too many to keep their fingerprints", len(clips))
        return None
    try:
        return sorted({clip_fingerprint(dataset_dir / clip) for clip in clips})
    except DatasetError as error:
        logger.warning("no fingerprints of the training clips: %s", error)
        return None


def valid_fingerprints(value: object) -> list[str] | None:
    """``value`` (from a manifest, perhaps uploaded) as a list of fingerprints, or None when it
    is not one: a list of at most :data:`MAX_FINGERPRINTS` strings of hex digits."""
    if not isinstance(value, list) or len(value) > MAX_FINGERPRINTS:
        return None
    if not all(isinstance(v, str) and _FINGERPRINT.match(v) for v in value):
        return None
    return sorted(set(value))


def items_heard(dataset_dir: Path, items: pd.DataFrame, heard: Iterable[str]) -> int:
    """How many of ``items`` (manifest rows) have a clip whose fingerprint is in ``heard``.

    Raises:
        DatasetError: a clip cannot be read.
    """
    known = set(heard)
    clips = items["clip_path"].astype(str)
    found = {clip: clip_fingerprint(dataset_dir / clip) in known for clip in set(clips)}
    return int(clips.map(found).sum())
