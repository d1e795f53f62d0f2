"""``fakevoice dataset show NAME [--json]``: one dataset in detail, what a researcher checks
before training on it (:func:`fakevoice.services.dataset_details`)."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from fakevoice.cli import print_json
from fakevoice.cli_datasets import owner_words, shortcut_fields, shortcut_words, user_or_none

BUILD_FACTS = ("seed", "version", "size", "equalised", "recordings", "sources", "skipped")
"""What ``dataset.json`` keeps for repeating a build, as ``show --json`` gives it (None: not
kept)."""
RENDERED_FROM = "rendered_from"  # the source of a `dataset render`, kept in its dataset.json
NAMED_SPEAKERS = 12  # speakers ``show`` names (an ASVspoof import has a hundred)


def _counted(table: Any) -> list[dict[str, Any]]:
    """A count table of a dataset overview (index: value; items, clips) as records."""
    return [
        {"name": str(value), "items": int(row["items"]), "clips": int(row["clips"])}
        for value, row in table.iterrows()
    ]


def _show_dict(details: Any, owner: str | None) -> dict[str, Any]:
    from fakevoice.datasets.manifest import BONAFIDE, CLIP_SAMPLE_RATE
    from fakevoice.datasets.noise import noise_label

    overview = details.overview
    shortest, median, longest = details.clip_seconds
    return {
        "name": overview.name,
        "path": str(details.path),
        "owner": owner,
        "owner_id": overview.owner_id,
        "kind": overview.info["kind"],
        "created": overview.info["created"],
        "items": overview.items,
        "clips": overview.clips,
        "audio_hours": overview.audio_hours,
        "classes": _counted(overview.by_class),
        "generators": [c for c in overview.classes if c != BONAFIDE],
        "speakers": _counted(overview.by_speaker),
        "noise_levels": [
            {**row, "label": noise_label(row["name"])} for row in _counted(overview.by_noise)
        ],
        "sample_rate": CLIP_SAMPLE_RATE,
        "clip_seconds": {"shortest": shortest, "median": median, "longest": longest},
        "feature_spec": overview.feature_spec,
        "splits": {
            "valid_fraction": details.valid_fraction,
            "seed": details.split_seed,
            "by": {
                mode: {"error": split} if isinstance(split, str) else vars(split)
                for mode, split in details.splits.items()
            },
        },
        **shortcut_fields(overview.shortcuts, details.path),
        "shortcut_summary": None if overview.shortcuts is None else overview.shortcuts.summary(),
        "build": {key: details.build.get(key) for key in (*BUILD_FACTS, RENDERED_FROM)},
        "render_notice": overview.render_notice,
    }


def cmd_show(args: argparse.Namespace) -> int:
    from fakevoice import accounts, services, store

    services.ensure_database()
    # The operator's view, as `dataset list`: every dataset, whoever owns it.
    details = services.dataset_details(args.name, actor=accounts.OPERATOR)
    owner_id = details.overview.owner_id
    owner = None
    if owner_id is not None:
        with store.session_scope(readonly=True) as session:
            owner = owner_words(owner_id, user_or_none(session, owner_id))
    shown = _show_dict(details, owner)
    if args.json:
        print_json(shown)
        return 0
    for line in _show_lines(shown):
        print(line)
    return 0


def _wrapped(text: str, indent: str = "    ") -> list[str]:
    """``text`` in lines of at most 100 columns, the first indented by ``indent``, the others
    by four spaces."""
    return textwrap.wrap(text, width=100, initial_indent=indent, subsequent_indent="    ")


def _show_lines(d: dict[str, Any]) -> list[str]:
    """``dataset show`` in words: what a researcher checks before training on it."""
    build = d["build"]
    kind = f" ({d['kind']})" if d["kind"] else ""
    lines = [f"dataset '{d['name']}'{kind}, {d['owner'] or 'shared'}", f"  folder: {d['path']}"]
    made = [f"seed {build['seed']}"] if build["seed"] is not None else []
    if build["version"] is not None:
        made.append(f"dataset format version {build['version']}")
    if build[RENDERED_FROM]:
        made.append(f"rendered from '{build[RENDERED_FROM]}'")
    if build["recordings"] is not None:
        made.append(f"from {build['recordings']:,} recordings")
    if build["equalised"]:
        made.append("every clip through the same channel")
    built = d["created"] or "unknown"
    lines += _wrapped(f"built: {built}" + (f" ({', '.join(made)})" if made else ""), "  ")
    seconds = d["clip_seconds"]
    lines += [
        f"  {d['items']:,} images of {d['clips']:,} clips, "
        f"{d['audio_hours'] * 60:.1f} min of audio",
        f"  clips: {d['sample_rate']} Hz, {seconds['shortest']:.2f}-{seconds['longest']:.2f} s "
        f"(median {seconds['median']:.2f} s)",
    ]
    spec = dict(d["feature_spec"])
    if spec:
        size = f"{spec.pop('image_height', '?')}x{spec.pop('image_width', '?')}"
        rest = ", ".join(f"{key} {value}" for key, value in spec.items() if key != "kind")
        lines.append(f"  features: {spec.get('kind', '?')} images of {size} pixels")
        lines += _wrapped(rest)
    else:
        lines.append("  features: not recorded (its dataset.json names none)")
    lines.append(f"  {'class':<22} {'items':>7} {'clips':>7}")
    lines += [f"    {c['name']:<20} {c['items']:>7,} {c['clips']:>7,}" for c in d["classes"]]
    lines.append(f"  generators: {', '.join(d['generators']) or 'none'}")
    noise = [f"{n['label']} ({n['items']:,})" for n in d["noise_levels"]]
    lines += _wrapped(f"noise levels, items: {', '.join(noise)}", "  ")
    speakers = [f"{s['name']} ({s['items']:,})" for s in d["speakers"][:NAMED_SPEAKERS]]
    more = len(d["speakers"]) - NAMED_SPEAKERS
    lines += _wrapped(
        f"speakers ({len(d['speakers'])}), items: {', '.join(speakers)}"
        + (f" and {more} more" if more > 0 else ""),
        "  ",
    )
    splits = d["splits"]
    lines.append(
        f"  training's split ({splits['valid_fraction']:.0%} validation, seed {splits['seed']}), "
        "items train / valid:"
    )
    for mode, split in splits["by"].items():
        if "error" in split:
            lines.append(f"    --split-by {mode:<10} cannot: {split['error']}")
        else:
            unused = f", {split['unused']:,} on neither side" if split["unused"] else ""
            lines.append(
                f"    --split-by {mode:<10} {split['train']:,} / {split['valid']:,}{unused}"
            )
    lines.append(f"  shortcuts: {shortcut_words(d)}")
    lines += _wrapped(
        d["shortcut_summary"] or f"`fakevoice dataset audit {d['name']}` measures them"
    )
    if build["sources"]:
        sources = [s["name"] if isinstance(s, dict) else str(s) for s in build["sources"]]
        lines += _wrapped(f"sources: {', '.join(sources)} (licences: its ATTRIBUTION file)", "  ")
    if d["render_notice"]:
        lines += _wrapped(f"renderer: {d['render_notice']}", "  ")
    if build["skipped"]:
        lines.append(f"  skipped in the build: {len(build['skipped'])} (dataset.json lists them)")
    return lines
