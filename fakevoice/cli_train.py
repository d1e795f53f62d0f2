"""``fakevoice train | runs | stop | resume | worker``: training from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from fakevoice.cli import print_json
from fakevoice.errors import EstimateUnavailableError, InvalidSpecError
from fakevoice.trainspec import ARCH_NAMES, AugmentSpec, CallbackSpec, TrainSpec


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _learning_rate(text: str) -> float | None:
    if text.strip().lower() in {"find", "auto", "suggest"}:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidSpecError(f"--lr must be a number or 'find'; got {text!r}") from None


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    """The TrainSpec of ``fakevoice train`` options (validated by TrainSpec itself)."""
    return TrainSpec(
        dataset=args.dataset,
        arch=args.arch,
        task=args.task,
        noise_levels=_names(args.noise),
        speakers=_names(args.speakers),
        classes=_names(args.classes),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=_learning_rate(args.lr),
        split_by=args.split_by,
        valid_fraction=args.valid_fraction,
        holdout=_names(args.holdout),
        class_weighting=args.class_weighting,
        pretrained=args.pretrained,
        clip_samples=args.clip_samples,
        device=args.device,
        seed=args.seed,
        augment=AugmentSpec(
            time_shift=args.time_shift,
            freq_masks=args.freq_masks,
            time_masks=args.time_masks,
            mask_fraction=args.mask_fraction,
            noise_mix=args.noise_mix,
            mixup=args.mixup,
        ),
        callbacks=CallbackSpec(
            early_stopping_patience=args.early_stopping,
            save_best=args.save_best,
            reduce_lr_patience=args.reduce_lr,
            grad_clip=args.grad_clip,
            mixed_precision=args.mixed_precision,
        ),
    )


def _run_dict(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "progress": round(run.progress, 4),
        "epoch": run.current_epoch,
        "epochs": run.total_epochs,
        "kind": run.kind,
        "arch": run.spec.get("arch"),
        "dataset": run.dataset,
        "error": run.error,
        "notice": run.notice,
        "created": run.created_at.isoformat(timespec="seconds"),
    }


def cmd_train(args: argparse.Namespace) -> int:
    from fakevoice import services

    actor = services.cli_actor()
    spec = spec_from_args(args)
    name = args.name or services.default_run_name(spec)
    run = services.submit_run(actor, name, spec)
    try:
        warning = services.memory_advice(spec, actor=actor).warning()
    except EstimateUnavailableError:
        warning = None  # the run was queued; an estimate only informs
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    if args.inline:
        from fakevoice.jobs.local import LocalWorker

        LocalWorker(concurrency=1).run(exit_when_idle=True)
    if args.wait or args.inline:
        run = _follow(actor, run.id, quiet=args.json)
    if args.json:
        payload = _run_dict(run)
        if not run.is_active:
            payload["epochs_history"] = [
                e.__dict__ for e in services.run_progress(actor, run.id).epochs
            ]
        print_json(payload)
    else:
        print(f"run {run.id} '{run.name}': {run.status}")
        if run.error:
            print(f"  {run.error}")
    return 0 if run.status in {"queued", "running", "succeeded", "cancelled"} else 1


def _follow(actor: Any, run_id: int, quiet: bool) -> Any:
    from fakevoice import services

    seen = 0
    while True:
        progress = services.run_progress(actor, run_id, after_step=10**12)
        for epoch in progress.epochs[seen:]:
            if not quiet:
                print(
                    f"epoch {epoch.epoch + 1}: train loss {epoch.train_loss:.4f}  "
                    f"valid loss {epoch.valid_loss:.4f}  accuracy {epoch.accuracy:.3f}  "
                    f"EER {100 * (epoch.eer or 0):.2f} %",
                    file=sys.stderr,
                )
        seen = len(progress.epochs)
        if not progress.run.is_active:
            return progress.run
        time.sleep(1.0)


def cmd_runs_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fakevoice import services
    from fakevoice.services.comparison import run_summaries, summaries_csv

    rows = run_summaries(services.cli_actor())
    text = summaries_csv(rows)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    try:
        out.write_text(text)
    except OSError as exc:
        raise InvalidSpecError(f"Cannot write {out}: {exc.strerror or exc}.") from None
    print(f"{len(rows)} runs written to {out}", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from fakevoice import services

    if args.action == "export":
        return cmd_runs_export(args)
    runs = services.list_runs(services.cli_actor(), kind=None if args.jobs else "train")
    if args.json:
        print_json([_run_dict(r) for r in runs])
        return 0
    if not runs:
        print("no runs yet: start one with `fakevoice train --dataset demo --arch specnet`")
    for r in runs:
        row = _run_dict(r)
        kind = f"{r.kind:<9}" if args.jobs else ""
        print(
            f"{r.id:>5}  {kind}{r.name[:32]:<32} {r.status:<11} {100 * r.progress:5.1f} %  "
            f"{row['arch'] or '':<10} {row['dataset'] or ''}"
        )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from fakevoice import services

    actor = services.cli_actor()
    run = services.stop_run(actor, services.find_run(actor, args.run).id)
    print(f"run {run.id} '{run.name}': {'stop requested' if run.is_active else run.status}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from fakevoice import services

    actor = services.cli_actor()
    run = services.resume_run(actor, services.find_run(actor, args.run).id)
    print(f"run {run.id} '{run.name}': queued again")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from fakevoice.settings import get_settings

    if get_settings().job_backend == "ray":
        from fakevoice.jobs.ray_backend import RayWorker

        RayWorker(concurrency=args.concurrency).run(exit_when_idle=args.once)
    else:
        from fakevoice.jobs.local import LocalWorker

        LocalWorker(concurrency=args.concurrency).run(exit_when_idle=args.once)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="queue a training run (a worker executes it)")
    p.add_argument("--name", default=None, help="run name (unique among your runs)")
    p.add_argument("--dataset", default="demo")
    p.add_argument("--arch", default="specnet", choices=ARCH_NAMES)
    p.add_argument("--task", default="binary", choices=["binary", "multiclass"])
    p.add_argument("--noise", default=None, help="noise levels, e.g. snr_inf,snr_20db")
    p.add_argument("--speakers", default=None)
    p.add_argument("--classes", default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", default="1e-3", help="peak learning rate, or 'find'")
    p.add_argument("--split-by", default="utterance", choices=["utterance", "speaker", "generator"])
    p.add_argument("--valid-fraction", type=float, default=0.2)
    p.add_argument("--holdout", default=None, help="speakers or generators held out for validation")
    p.add_argument("--class-weighting", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--pretrained", action="store_true", help="ImageNet weights when present offline"
    )
    p.add_argument("--clip-samples", type=int, default=64600)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-shift", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--freq-masks", type=int, default=1)
    p.add_argument("--time-masks", type=int, default=1)
    p.add_argument("--mask-fraction", type=float, default=0.1)
    p.add_argument("--noise-mix", type=float, default=0.0)
    p.add_argument("--mixup", type=float, default=0.0)
    p.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE")
    p.add_argument("--save-best", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--reduce-lr", type=int, default=None, metavar="PATIENCE")
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument("--wait", action="store_true", help="wait for the run to finish")
    p.add_argument("--inline", action="store_true", help="run it in this process (no worker)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("runs", help="list your runs, or export them as CSV (runs export)")
    p.add_argument("action", nargs="?", default="list", choices=["list", "export"])
    p.add_argument("--out", default=None, help="export: CSV file to write (default stdout)")
    p.add_argument(
        "--jobs",
        action="store_true",
        help="list: every job of yours (dataset builds and tests of models too), with its kind",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("stop", help="stop a run (by id or name)")
    p.add_argument("run")
    p.set_defaults(handler=cmd_stop)

    p = sub.add_parser("resume", help="resume a stopped, failed or interrupted run")
    p.add_argument("run")
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("worker", help="run queued training jobs")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")
    p.set_defaults(handler=cmd_worker)
