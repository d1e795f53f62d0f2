"""``fakevoice dataset build-demo | import-folder | import-asvspoof | render | audit | list |
show``: build spectrogram datasets and look at the ones built (:mod:`fakevoice.datasets`);
``show`` itself is in :mod:`fakevoice.cli_dataset_show`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fakevoice.cli import print_json


def _add_build_options(p: argparse.ArgumentParser, *, generators: bool = True) -> None:
    p.add_argument("--out", type=Path, default=None, help="output folder (default: dataset/<name>)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the build is deterministic)")
    if generators:  # an ASVspoof import takes the attacks of its protocols
        p.add_argument(
            "--generators",
            default=None,
            help="comma-separated generator names (default: every one available here)",
        )
    p.add_argument(
        "--noise",
        default=None,
        help="comma-separated SNRs in dB, 'clean' for none (default: clean,20,10,0,-10)",
    )
    p.add_argument("--workers", type=int, default=0, help="parallel processes (0 = all cores)")
    p.add_argument("--json", action="store_true", help="print the build report as JSON")


FEATURE_OPTIONS = {  # flag -> (FeatureSpec field, type, help)
    "--n-fft": ("n_fft", int, "FFT and window length, samples"),
    "--hop-length": ("hop_length", int, "frame step, samples"),
    "--n-mels": ("n_mels", int, "filters of the mel (mel, mfcc) or linear (lfcc) filterbank"),
    "--n-coeffs": ("n_coeffs", int, "cepstral coefficients kept (mfcc, lfcc)"),
    "--fmin": ("fmin", float, "lowest frequency, Hz"),
    "--fmax": ("fmax", float, "highest frequency, Hz (default: half the sample rate)"),
    "--top-db": ("top_db", float, "dynamic range kept below the loudest bin, dB"),
}


def _add_feature_options(p: argparse.ArgumentParser, default: str) -> None:
    from fakevoice.colormaps import COLORMAPS
    from fakevoice.features import FEATURE_KINDS

    group = p.add_argument_group(f"spectrogram features (default: {default})")
    group.add_argument("--features", choices=FEATURE_KINDS, default=None, help="feature kind")
    for flag, (_, kind, text) in FEATURE_OPTIONS.items():
        group.add_argument(flag, type=kind, default=None, help=text)
    group.add_argument(
        "--image-size", default=None, metavar="HxW", help="image rows x columns, e.g. 224x224"
    )
    group.add_argument("--colormap", choices=COLORMAPS, default=None, help="image colour map")


def _feature_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The feature spec fields given on the command line."""
    from fakevoice.errors import InvalidSpecError

    chosen: dict[str, Any] = {}
    if args.features is not None:
        chosen["kind"] = args.features
    for flag, (field, _, _) in FEATURE_OPTIONS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            chosen[field] = value
    if args.colormap is not None:
        chosen["colormap"] = args.colormap
    if args.image_size is not None:
        height, sep, width = args.image_size.lower().partition("x")
        if not (sep and height.strip().isdigit() and width.strip().isdigit()):
            raise InvalidSpecError(
                f"--image-size must be rows x columns, e.g. 224x224; got {args.image_size!r}"
            )
        chosen["image_height"], chosen["image_width"] = int(height), int(width)
    return chosen


def _feature_spec(args: argparse.Namespace) -> Any:
    """A FeatureSpec from the command line, or None when no feature option was given."""
    from fakevoice.features import FeatureSpec

    chosen = _feature_overrides(args)
    return FeatureSpec.from_dict(chosen) if chosen else None


def _parse_noise(text: str | None) -> list[float | None] | None:
    if text is None:
        return None
    from fakevoice.datasets.noise import parse_noise_levels

    return parse_noise_levels(text)


def _parse_names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _report(args: argparse.Namespace, report: Any) -> int:
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.summary())
    return 0


def cmd_build_demo(args: argparse.Namespace) -> int:
    from fakevoice.datasets.builder import build_demo
    from fakevoice.settings import get_settings

    out = args.out or get_settings().dataset_dir / "demo"
    report = build_demo(
        out,
        size=args.size,
        seed=args.seed,
        generators=_parse_names(args.generators),
        noise_levels=_parse_noise(args.noise),
        workers=args.workers,
        progress=not args.json,
        feature_spec=_feature_spec(args),
    )
    return _report(args, report)


def cmd_import_folder(args: argparse.Namespace) -> int:
    from fakevoice.datasets.builder import import_folder
    from fakevoice.settings import get_settings

    out = args.out or get_settings().dataset_dir / args.folder.resolve().name
    report = import_folder(
        args.folder,
        out,
        labelled=args.labelled,
        seed=args.seed,
        generators=_parse_names(args.generators),
        noise_levels=_parse_noise(args.noise),
        workers=args.workers,
        progress=not args.json,
        feature_spec=_feature_spec(args),
    )
    return _report(args, report)


def cmd_import_asvspoof(args: argparse.Namespace) -> int:
    from fakevoice.datasets.builder import import_asvspoof
    from fakevoice.settings import get_settings

    out = args.out or get_settings().dataset_dir / "asvspoof2019-la"
    report = import_asvspoof(
        args.la_dir,
        out,
        partitions=_parse_names(args.partitions) or ["train", "dev"],
        limit=args.limit,
        seed=args.seed,
        noise_levels=_parse_noise(args.noise),
        workers=args.workers,
        progress=not args.json,
        feature_spec=_feature_spec(args),
    )
    return _report(args, report)


def cmd_render(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.services.dataset_changes import find_dataset_on_disk

    source = find_dataset_on_disk(args.source)  # an unknown dataset is the first thing to say
    overrides = _feature_overrides(args)
    if not overrides and not source.older_renderer:  # else: the same features, as now rendered
        from fakevoice.errors import InvalidSpecError

        raise InvalidSpecError(
            "Say which features to render, e.g. --features lfcc or --n-fft 1024 "
            "(the rest is taken from the source dataset)."
        )
    services.ensure_database()  # a user's dataset rendered again stays theirs: owners are stored
    report = services.render_dataset(
        args.source, args.name, overrides, workers=args.workers, progress=not args.json
    )
    return _report(args, report)


def cmd_audit(args: argparse.Namespace) -> int:
    from fakevoice import accounts, services

    services.ensure_database()
    # The operator's view, as `dataset list` and `show`: any dataset they list, whoever owns it.
    audit = services.dataset_shortcuts(args.name, actor=accounts.OPERATOR, recompute=args.recompute)
    if args.json:
        print_json(audit.to_dict())
        return 0
    print(audit.summary())
    print(
        f"\n{audit.clips} clean clips"
        + (f" (a sample of {audit.sampled_from})" if audit.sampled_from > audit.clips else "")
        + f"; the cues together are fitted and scored on different {audit.held_out}s."
    )
    print(f"\n{'human vs':<18} {'clips':>11} {'together':>9}  strongest cue alone")
    for s in [audit.pooled, *audit.generators.values()]:
        together = "-" if s.combined_eer is None else f"{s.combined_eer:.1%}"
        clips = f"{s.bonafide_clips}/{s.spoof_clips}"
        print(
            f"{s.against:<18} {clips:>11} {together:>9}  {s.best_cue.label} ({s.best_cue.eer:.1%})"
        )
    if audit.too_few:
        print(f"too few clips to judge alone: {', '.join(audit.too_few)}")
    worst = audit.worst
    print(f"\nevery cue, human vs {worst.against}:")
    for cue in worst.cues:
        print(
            f"  {cue.label:<28} EER {cue.eer:>6.1%}   median human {cue.bonafide_median:.4g}, "
            f"machine {cue.spoof_median:.4g} {cue.unit}"
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from fakevoice import services, store
    from fakevoice.datasets.catalog import list_datasets
    from fakevoice.datasets.shortcuts import read_audit
    from fakevoice.services.datasets import owner_of_folder, render_again_command
    from fakevoice.settings import get_settings

    services.ensure_database()
    summaries = list_datasets(get_settings().dataset_dir)
    with store.session_scope(readonly=True) as session:
        owners = store.dataset_owners(session)
        # From the store's records or, for a folder they miss, its owner marker.
        owner_ids = [owner_of_folder(owners, s.path) for s in summaries]
        names = {i: user_or_none(session, i) for i in set(owner_ids) if i is not None}
    rows = [
        {
            **summary.to_dict(),
            "owner": None if owner_id is None else owner_words(owner_id, names[owner_id]),
            **shortcut_fields(read_audit(summary.path), summary.path),
        }
        for summary, owner_id in zip(summaries, owner_ids, strict=True)
    ]
    if args.json:
        print_json(rows)
    else:  # the operator sees every dataset; "shared" ones are everyone's, the others a user's
        for r in rows:
            owner = r["owner"] or "shared"
            shortcuts = f"shortcuts: {shortcut_words(r)}"
            print(f"{r['name']:<24} {r['items']:>7} items  {owner:<16} {shortcuts:<24} {r['path']}")
            if r["older_renderer"]:
                print(
                    "  its images were made by an older renderer (each clip's DC offset left "
                    f"in); render them again: {render_again_command(r['name'])}"
                )
    return 0


def shortcut_fields(audit: Any, folder: Path) -> dict[str, Any]:
    """What a dataset's kept shortcut audit found, as ``list`` and ``show`` give it:
    ``shortcuts_outdated`` when the audit kept is an older version's (counted as none)."""
    from fakevoice.datasets.shortcuts import SHORTCUTS_NAME

    return {
        "shortcuts": None if audit is None else audit.severity,
        # "none" of an audit whose comparisons all had too few clips is no finding
        "shortcuts_judged": None if audit is None else audit.worst.judged,
        "shortcuts_outdated": audit is None and (folder / SHORTCUTS_NAME).is_file(),
    }


def shortcut_words(fields: dict[str, Any]) -> str:
    """:func:`shortcut_fields` in a few words ("warn", "too few clips", "not audited"...)."""
    if fields["shortcuts_judged"] is False:
        return "too few clips"
    if fields["shortcuts_outdated"]:
        return "audit outdated"
    return str(fields["shortcuts"] or "not audited")


def user_or_none(session: Any, user_id: int) -> Any:
    from fakevoice import store
    from fakevoice.errors import NotFoundError

    try:
        return store.get_user(session, user_id)
    except NotFoundError:
        return None


def owner_words(owner_id: int, user: Any) -> str:
    """A private dataset's owner as the operator reads it."""
    if user is not None:
        return str(user.username)
    return "administrators only" if owner_id == 0 else f"user #{owner_id} (gone)"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fakevoice.cli_dataset_show import cmd_show  # it uses this module's helpers

    ds = sub.add_parser("dataset", help="build and import spectrogram datasets")
    dsub = ds.add_subparsers(dest="dataset_command", required=True)

    p = dsub.add_parser("build-demo", help="build the demo dataset from installed speech packages")
    p.add_argument("--size", choices=["small", "default", "large"], default="default")
    _add_build_options(p)
    _add_feature_options(p, "128-band mel, 224x224")
    p.set_defaults(handler=cmd_build_demo)

    p = dsub.add_parser("import-folder", help="DIR/<speaker>/* human clips, or DIR/<class>/*")
    p.add_argument("folder", type=Path)
    p.add_argument(
        "--labelled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="folders are classes (bonafide, <generator>); default: detect",
    )
    _add_build_options(p)
    _add_feature_options(p, "128-band mel, 224x224")
    p.set_defaults(handler=cmd_import_folder)

    p = dsub.add_parser("import-asvspoof", help="ASVspoof 2019 LA flac files + protocols")
    p.add_argument("la_dir", type=Path)
    p.add_argument("--partitions", default="train,dev", help="comma-separated: train,dev,eval")
    p.add_argument("--limit", type=int, default=None, help="at most this many trials per partition")
    _add_build_options(p, generators=False)
    _add_feature_options(p, "128-band mel, 224x224")
    p.set_defaults(handler=cmd_import_asvspoof)

    p = dsub.add_parser(
        "render",
        help="render a dataset's clips again with other spectrogram features (or the same, when "
        "an older renderer made its images), as a new dataset",
    )
    p.add_argument("source", help="an existing dataset")
    p.add_argument("name", help="the new dataset's name")
    p.add_argument("--workers", type=int, default=0, help="parallel processes (0 = all cores)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_feature_options(p, "the source dataset's")
    p.set_defaults(handler=cmd_render)

    p = dsub.add_parser(
        "audit", help="do simple cues (silence, level, bandwidth...) give its classes away?"
    )
    p.add_argument("name", help="a built dataset")
    p.add_argument(
        "--recompute", action="store_true", help="measure again, even when its build kept an audit"
    )
    p.add_argument("--json", action="store_true", help="print the audit as JSON")
    p.set_defaults(handler=cmd_audit)

    p = dsub.add_parser("list", help="datasets built under the dataset folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = dsub.add_parser(
        "show",
        help="one dataset in detail: counts, features, splits, shortcuts, how it was built",
    )
    p.add_argument("name", help="a built dataset")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(handler=cmd_show)
