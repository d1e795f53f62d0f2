"""``fakevoice models``: list, show, download, upload, share, rename and delete stored models.

``fakevoice models`` alone lists them (as before). A model is named by its name or id, the
acting account's own first, then public ones; only the owner (or an administrator) changes one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fakevoice.cli import add_limit_option, check_limit, print_json, print_more
from fakevoice.errors import FileTooLargeError, InvalidSpecError, ModelFileError
from fakevoice.store.records import Actor, ModelRecord


def _row(model: ModelRecord, user_id: int) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "arch": model.arch,
        "public": model.is_public,
        "mine": model.owner_id == user_id,
        "classes": model.class_names,
        "eer": (model.metrics or {}).get("eer"),
    }


def cmd_list(args: argparse.Namespace) -> int:
    from fakevoice import services

    actor = services.cli_actor()
    models = services.list_models(actor, limit=check_limit(args.limit))
    total = services.count_models(actor) if len(models) == args.limit else len(models)
    rows = [_row(m, actor.user_id) for m in models]
    if args.json:
        print_json(rows)
        print_more(len(rows), total, json_output=True)
        return 0
    if not rows:
        print(
            "no models yet: train one with `fakevoice train --dataset demo --arch specnet`, or "
            "store one with `fakevoice models import FILE --name NAME`"
        )
    for r in rows:
        eer = f"{100 * r['eer']:.2f} %" if isinstance(r["eer"], float) else "-"
        shared = "public" if r["public"] else "private"
        print(f"{r['id']:>5}  {r['name'][:32]:<32} {r['arch']:<10} {shared:<8} EER {eer}")
    print_more(len(rows), total, json_output=False)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.bundle_figures import (
        REPORTED,
        dropped_figures_text,
        dropped_parts_summary,
        whose_bundle,
    )
    from fakevoice.metrics.bootstrap import interval_words
    from fakevoice.metrics.calibration import calibration_line
    from fakevoice.services.model_files import has_fastai_export

    actor = services.cli_actor()
    model = services.find_model(actor, args.model)
    metrics = model.metrics or {}
    if args.json:
        print_json(
            {
                **_row(model, actor.user_id),
                "sample_rate": model.sample_rate,
                "clip_seconds": model.clip_samples / model.sample_rate,
                "run_id": model.run_id,
                "created_at": model.created_at,
                "files": model.files,
                "metrics": metrics,
            }
        )
        return 0
    shared = "public (everyone may use it)" if model.is_public else "private"
    print(f"model {model.id} '{model.name}' ({model.arch}), {shared}")
    print(f"  classes: {', '.join(model.class_names)}")
    seconds = model.clip_samples / model.sample_rate
    print(f"  listens at {model.sample_rate} Hz in windows of {seconds:.2f} s")
    if model.run_id is not None:
        print(f"  trained by run {model.run_id}")
    elif metrics.get("source"):
        print(f"  source: {metrics['source']}")
    eer = metrics.get("eer")
    if isinstance(eer, float):
        print(f"  validation EER {100 * eer:.2f} %")
        if isinstance(metrics.get("eer_interval"), dict):
            print(f"  {interval_words(metrics['eer_interval'])}")
    elif isinstance(reported := metrics.get(REPORTED), dict) and isinstance(
        reported.get("eer"), float
    ):
        print(
            f"  validation EER {100 * reported['eer']:.2f} % as {whose_bundle(metrics)} reports, "
            f"signed by key {reported.get('key_id')} (another server's): not measured here"
        )
    elif (dropped := dropped_figures_text(metrics)) is not None:
        print(f"  {dropped}")
    print(f"  probabilities {calibration_line(metrics.get('calibration'))}")
    if (parts := dropped_parts_summary(metrics)) is not None:
        print(
            f"  {parts[0].upper()}{parts[1:]} (its card says why: `fakevoice models export --card`)"
        )
    files = ["safe bundle"] + (["fastai export"] if has_fastai_export(model) else [])
    print(f"  files: {', '.join(files)} (`fakevoice models export`)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.services import model_files

    actor = services.cli_actor()
    model = services.find_model(actor, args.model)
    if args.fastai:
        found = model_files.model_export(actor, model)
    elif args.card:
        found = model_files.model_card(actor, model)
    else:
        found = model_files.model_bundle(actor, model)
    target = _export_target(args.output, found.file_name)
    _write_new(target, found.data, overwrite=args.force)
    if args.json:
        print_json(
            {"id": model.id, "name": model.name, "file": str(target), "bytes": len(found.data)}
        )
    else:
        what = "fastai export" if args.fastai else "model card" if args.card else "safe bundle"
        print(f"model {model.id} '{model.name}': {what} written to {target}")
    return 0


def _export_target(output: str | None, file_name: str) -> Path:
    """Where ``models export`` writes: ``output`` as given, or ``file_name`` in it when it is a
    folder or ends with a slash ("-o exports/": a folder, made if need be).

    Args:
        output: the ``-o`` text as typed (a ``Path`` would drop its trailing slash).
        file_name: the export's own name, e.g. ``resnet18-bundle.zip``.
    """
    if output is None:
        return Path(file_name)
    target = Path(output)
    if target.is_dir() or output.endswith(("/", os.sep)):
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidSpecError(
                f"Cannot make the folder {target}: {exc.strerror or exc}."
            ) from None
        target = target / file_name
    return target


def _write_new(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path``; an existing file is kept unless ``overwrite``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o644)
    except FileExistsError:
        raise InvalidSpecError(f"{path} exists already; --force replaces it.") from None
    except OSError as exc:
        raise InvalidSpecError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def cmd_import(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.services.uploads import import_uploaded_model, is_export_of, upload_warning
    from fakevoice.settings import get_settings

    path: Path = args.file
    limit = get_settings().max_model_upload_bytes
    try:
        size = path.stat().st_size
        if size > limit:  # refused before it is read
            raise FileTooLargeError(
                f"{path} is {size / 2**20:.1f} MiB; models are taken up to "
                f"{limit / 2**20:.1f} MiB (FAKEVOICE_MAX_MODEL_UPLOAD_BYTES)."
            )
        data = path.read_bytes()
        if not data:  # said here: the service's words are about an upload
            raise ModelFileError(f"The file {path} is empty (0 bytes); it holds no model.")
    except IsADirectoryError:
        raise InvalidSpecError(f"{path} is a folder; give the model file.") from None
    except OSError as exc:
        raise InvalidSpecError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    actor = services.cli_actor()
    model = import_uploaded_model(actor, args.name, path.name, data)
    known = is_export_of(model, data)
    warning = upload_warning(model)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print_json({**_row(model, actor.user_id), "stored": not known, "warning": warning})
    elif known:
        print(f"{path} is the fastai export of model {model.id} '{model.name}': nothing stored")
    else:
        print(f"model {model.id} '{model.name}' ({model.arch}) stored")
    return 0


def _owned(args: argparse.Namespace) -> tuple[Actor, ModelRecord]:
    from fakevoice import services

    actor = services.cli_actor()
    return actor, services.find_model(actor, args.model)


def cmd_share(args: argparse.Namespace) -> int:
    from fakevoice.services import profile

    actor, model = _owned(args)
    changed = profile.set_model_public(actor, model.id, args.public)
    state = "public: everyone may use it" if changed.is_public else "private: only you"
    print(f"model {changed.id} '{changed.name}' is {state}")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    from fakevoice.services import profile

    actor, model = _owned(args)
    changed = profile.rename_model(actor, model.id, args.new_name)
    print(f"model {changed.id} '{model.name}' is now called '{changed.name}'")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from fakevoice.services import profile

    actor, model = _owned(args)
    if not args.yes:
        raise InvalidSpecError(
            f"Deleting model {model.id} '{model.name}' cannot be undone: add --yes to go on."
        )
    profile.delete_model(actor, model.id)
    print(f"model {model.id} '{model.name}' deleted")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "models",
        help="list your models and public ones; show, export, import, share, rename, delete",
        description="Without a subcommand: list your models and the public ones.",
    )
    p.add_argument("--json", action="store_true")
    add_limit_option(p, "models")
    p.set_defaults(handler=cmd_list)
    models = p.add_subparsers(dest="models_command", metavar="{list,show,export,import,...}")

    q = models.add_parser("list", help="your models and the public ones")
    # Given before `list` or after it: either way (the parent's value stands unless given here).
    q.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    add_limit_option(q, "models", nested=True)
    q.set_defaults(handler=cmd_list)

    q = models.add_parser("show", help="one model: classes, rate, source, EER, calibration")
    q.add_argument("model", help="model id or name")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_show)

    q = models.add_parser(
        "export",
        help="write a model's safe bundle (zip), its card (Markdown) or its fastai export to a "
        "file",
    )
    q.add_argument("model", help="model id or name (yours, or a public one)")
    q.add_argument(
        "-o",
        "--output",
        help="file, or folder (one that exists, or a name ending in /: made) (default: "
        "<name>-bundle.zip here)",
    )
    which = q.add_mutually_exclusive_group()
    which.add_argument(
        "--fastai", action="store_true", help="the fastai export (model.pkl) instead"
    )
    which.add_argument(
        "--card",
        action="store_true",
        help="the model card instead (Markdown: data, EER per generator and noise, weak spots, "
        "recipe; default <name>-card.md)",
    )
    q.add_argument("--force", action="store_true", help="replace an existing file")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_export)

    q = models.add_parser(
        "import",
        help="store a safe bundle (zip), an official AASIST checkpoint, or a fastai export of "
        "this server",
    )
    q.add_argument("file", type=Path)
    q.add_argument("--name", required=True, help="the new model's name")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_import)

    for name, public, text in (
        ("share", True, "make a model public: everyone may use and download it"),
        ("unshare", False, "make a model private again"),
    ):
        q = models.add_parser(name, help=text)
        q.add_argument("model", help="model id or name")
        q.set_defaults(handler=cmd_share, public=public)

    q = models.add_parser("rename", help="give a model a new name")
    q.add_argument("model", help="model id or name")
    q.add_argument("new_name")
    q.set_defaults(handler=cmd_rename)

    q = models.add_parser("delete", help="delete a model (a run's model: its run and files stay)")
    q.add_argument("model", help="model id or name")
    q.add_argument("--yes", action="store_true", help="really delete it")
    q.set_defaults(handler=cmd_delete)
