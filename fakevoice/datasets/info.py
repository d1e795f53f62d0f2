"""What a built dataset says about itself: ``dataset.json`` and ``ATTRIBUTION``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fakevoice.datasets.catalog import count_summary
from fakevoice.datasets.generators import get_generator
from fakevoice.datasets.manifest import DATASET_INFO_NAME, MANIFEST_NAME, write_text_atomic
from fakevoice.datasets.noise import noise_name as noise_folder
from fakevoice.datasets.sources import Recording, source_info
from fakevoice.datasets.units import Plan
from fakevoice.features import RENDER_VERSION

DATASET_FORMAT_VERSION = 1


def write_info(
    out_dir: Path,
    frame: Any,
    plan: Plan,
    recordings: Sequence[Recording],
    kind: str,
    created: str,
    skipped: list[str],
) -> None:
    """Write ``dataset.json`` (what was built, how, from what) and ``ATTRIBUTION`` (the licences
    of the recordings and the generators used) beside the manifest."""
    sources = [source_info(name) for name in sorted(set(frame["source"]))]
    info = {
        "name": out_dir.name,
        "kind": kind,
        "created": created,
        "seed": plan.seed,
        "size": kind.removeprefix("demo-"),
        "feature_spec": plan.feature_spec,
        "generators": list(plan.generators),
        "noise_levels": [noise_folder(level) for level in plan.noise_levels],
        "equalised": plan.equalise,
        "sources": [asdict(s) for s in sources],
        "counts": count_summary(frame),
        "skipped": skipped,
        "recordings": len(recordings),
        "version": DATASET_FORMAT_VERSION,
        "render_version": RENDER_VERSION,
    }
    write_text_atomic(out_dir / DATASET_INFO_NAME, json.dumps(info, indent=2) + "\n")
    write_text_atomic(out_dir / "ATTRIBUTION", attribution(sources, plan))


def attribution(sources: list[Any], plan: Plan) -> str:
    """The text of ``ATTRIBUTION``: each source's licence, and the generators of the spoofs."""
    lines = [
        "This dataset was built on this machine by the Fake Voice Workbench. Do not redistribute",
        "it without honouring the licences of the recordings it was made from:",
        "",
    ]
    lines += [f"- {s.name}: {s.description}. Licence: {s.licence}." for s in sources]
    if plan.generators:
        lines += ["", "Spoofs were generated from them with:"]
        lines += [f"- {n}: {get_generator(n).description}" for n in plan.generators]
    lines += ["", f"Manifest: {MANIFEST_NAME}; details: {DATASET_INFO_NAME}.", ""]
    return "\n".join(lines)
