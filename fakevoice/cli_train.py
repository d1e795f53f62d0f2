"""``fakevoice train | stop | resume | worker``: training from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from fakevoice.cli import print_json, read_limited
from fakevoice.cli_runs import epoch_figures, run_dict
from fakevoice.errors import EstimateUnavailableError, InvalidSpecError
from fakevoice.trainspec import ARCH_NAMES, TrainSpec


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _learning_rate(text: str) -> float | None:
    if text.strip().lower() in {"find", "auto", "suggest"}:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidSpecError(f"--lr must be a number or 'find'; got {text!r}") from None


OFF = "off"  # a callback turned off on the command line (its number left out means "not given")


def _number_or_off(kind: type[int] | type[float]) -> Any:
    """An argparse type: a number of ``kind``, or ``off``."""

    def parse(text: str) -> int | float | str:
        if text.strip().lower() == OFF:
            return OFF
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"a {'whole ' if kind is int else ''}number or 'off'; got {text!r}"
            ) from None

    return parse


def _on_or_off(value: Any) -> Any:
    return None if value == OFF else value


# Each training option of `fakevoice train`: (its argparse dest, where it goes in the spec, how its
# text becomes the value). Options default to "not given" (None), so that a spec read from a file
# or an earlier run keeps what the command line does not change, and TrainSpec's own defaults
# fill the rest.
SPEC_OPTIONS: tuple[tuple[str, tuple[str, ...], Any], ...] = (
    ("dataset", ("dataset",), None),
    ("arch", ("arch",), None),
    ("task", ("task",), None),
    ("noise", ("noise_levels",), _names),
    ("speakers", ("speakers",), _names),
    ("classes", ("classes",), _names),
    ("epochs", ("epochs",), None),
    ("batch_size", ("batch_size",), None),
    ("lr", ("learning_rate",), _learning_rate),
    ("split_by", ("split_by",), None),
    ("valid_fraction", ("valid_fraction",), None),
    ("holdout", ("holdout",), _names),
    ("class_weighting", ("class_weighting",), None),
    ("pretrained", ("pretrained",), None),
    ("clip_samples", ("clip_samples",), None),
    ("device", ("device",), None),
    ("seed", ("seed",), None),
    ("time_shift", ("augment", "time_shift"), None),
    ("freq_masks", ("augment", "freq_masks"), None),
    ("time_masks", ("augment", "time_masks"), None),
    ("mask_fraction", ("augment", "mask_fraction"), None),
    ("noise_mix", ("augment", "noise_mix"), None),
    ("mixup", ("augment", "mixup"), None),
    ("early_stopping", ("callbacks", "early_stopping_patience"), _on_or_off),
    ("save_best", ("callbacks", "save_best"), None),
    ("reduce_lr", ("callbacks", "reduce_lr_patience"), _on_or_off),
    ("grad_clip", ("callbacks", "grad_clip"), _on_or_off),
    ("mixed_precision", ("callbacks", "mixed_precision"), None),
)
DEFAULT_DATASET = "demo"
MAX_SPEC_BYTES = 1024 * 1024


def _spec_file(path: str) -> dict[str, Any]:
    """The spec in a JSON file (or ``-``: stdin): a TrainSpec, or a run as ``fakevoice runs show
    --json`` and ``GET /v1/runs/{id}`` print it (its ``spec``)."""
    import json

    raw = read_limited(path, "the spec", MAX_SPEC_BYTES)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise InvalidSpecError(f"Cannot read the spec {path}: it is not UTF-8 text.") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidSpecError(f"The spec {path} is not JSON: {exc}.") from None
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        data = data["spec"]
    if not isinstance(data, dict):
        raise InvalidSpecError(f"The spec {path} must be a JSON object of training options.")
    return data


def spec_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainSpec:
    """The TrainSpec of ``fakevoice train``: ``base`` (a spec file's or an earlier run's) with
    the options given on the command line over it (validated by TrainSpec itself)."""
    data: dict[str, Any] = {
        key: dict(value) if isinstance(value, dict) else value
        for key, value in {"dataset": DEFAULT_DATASET, **(base or {})}.items()
    }
    for dest, where, convert in SPEC_OPTIONS:
        value = getattr(args, dest)
        if value is None:
            continue
        target = data
        for part in where[:-1]:
            if target.get(part) is None:
                target[part] = {}
            target = target[part]
            if not isinstance(target, dict):
                raise InvalidSpecError(f"{part} must be a mapping of options; got {target!r}")
        target[where[-1]] = convert(value) if convert else value
    return TrainSpec.from_dict(data)


def _base_spec(args: argparse.Namespace, actor: Any) -> dict[str, Any] | None:
    from fakevoice import services

    if args.spec is not None and args.start_from is not None:
        raise InvalidSpecError("Give --spec FILE or --from RUN, not both.")
    if args.spec is not None:
        return _spec_file(args.spec)
    if args.start_from is not None:
        run = services.find_run(actor, args.start_from)
        if run.kind != "train":
            raise InvalidSpecError(f"Job {run.name!r} is not a training run.")
        return dict(run.spec)
    return None


def cmd_train(args: argparse.Namespace) -> int:
    from fakevoice import services

    if args.timeout is not None and not (args.wait or args.inline):
        raise InvalidSpecError(  # refused before the run is queued, not ignored after
            "--timeout says how long --wait waits; without --wait the command ends once the run "
            "is queued."
        )
    if args.timeout is not None and not args.timeout > 0:
        raise InvalidSpecError(
            f"--timeout must be a number of seconds above 0; got {args.timeout:g}."
        )
    actor = services.cli_actor()
    spec = spec_from_args(args, _base_spec(args, actor))
    name = args.name or services.default_run_name(spec)
    run = services.submit_run(actor, name, spec)
    try:
        run = _advise_and_wait(args, actor, spec, run)
    except KeyboardInterrupt:
        if not args.inline:  # Ctrl-C ends the waiting, not the queued run: say so
            print(
                f"stopped waiting: run {run.id} '{run.name}' goes on "
                f"(`fakevoice stop {run.id}` stops it)",
                file=sys.stderr,
            )
        raise
    # The model a run waited on stored, for the script or person that goes on to use it.
    model_id = None if run.is_active else services.run_model_id(actor, run.id)
    if args.json:
        payload = run_dict(run)
        if not run.is_active:
            payload["model_id"] = model_id
            payload["epochs_history"] = [
                e.__dict__ for e in services.run_progress(actor, run.id).epochs
            ]
        print_json(payload)
    else:
        stored = "" if model_id is None else f"; it stored model {model_id}"
        print(f"run {run.id} '{run.name}': {run.status}{stored}")
        if run.error:
            print(f"  {run.error}")
    return 0 if run.status in {"queued", "running", "succeeded", "cancelled"} else 1


def _advise_and_wait(args: argparse.Namespace, actor: Any, spec: TrainSpec, run: Any) -> Any:
    """Warn about the queued ``run``'s memory and dataset, then (--wait, --inline) see it to its
    end or the timeout; the run as it then is."""
    from fakevoice import services

    try:
        warning = services.memory_advice(spec, actor=actor).warning()
    except EstimateUnavailableError:
        warning = None  # the run was queued; an estimate only informs
    for text in (
        warning,
        services.shortcut_warning(spec.dataset, spec.classes, actor=actor),
        services.render_warning(spec.dataset, spec.arch, actor=actor),
    ):
        if text is not None:
            print(f"warning: {text}", file=sys.stderr)
    if args.inline:
        from fakevoice.jobs.local import LocalWorker

        LocalWorker(concurrency=1).run(exit_when_idle=True)
    if args.wait or args.inline:
        run = _follow(actor, run.id, quiet=args.json, timeout=args.timeout)
        if run.is_active and not args.json:
            print(f"stopped waiting after {args.timeout:g} s; the run goes on", file=sys.stderr)
    return run


def _follow(actor: Any, run_id: int, quiet: bool, timeout: float | None = None) -> Any:
    """Print each epoch as it ends (and, once, why the run seems to wait on a worker) until the
    run ends or ``timeout`` seconds pass; the run as it then is."""
    from fakevoice import services

    seen = 0
    said: set[str] = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        progress = services.run_progress(actor, run_id, after_step=10**12)
        for epoch in progress.epochs[seen:]:
            if not quiet:
                print(f"epoch {epoch.epoch + 1}: {epoch_figures(epoch)}", file=sys.stderr)
        seen = len(progress.epochs)
        if not progress.run.is_active:
            return progress.run
        note = services.worker_note(progress.run)
        if note is not None and not quiet and progress.run.status not in said:
            said.add(progress.run.status)
            print(f"note: {note}", file=sys.stderr)
        if deadline is not None and time.monotonic() > deadline:
            return progress.run
        time.sleep(1.0)


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
    p = sub.add_parser(
        "train",
        help="queue a training run (a worker executes it)",
        description="Options left out keep the value of --spec or --from, else their default "
        "(shown in brackets).",
    )
    p.add_argument("--name", default=None, help="run name (unique among your runs)")
    p.add_argument(
        "--spec",
        default=None,
        metavar="FILE",
        help="start from the training options in this JSON file (- for stdin): a spec, or a run "
        "as `runs show --json` and GET /v1/runs/{id} print it",
    )
    p.add_argument(
        "--from",
        dest="start_from",
        default=None,
        metavar="RUN",
        help="start from the options of an earlier training run of yours (id or name)",
    )
    p.add_argument("--dataset", help=f"[{DEFAULT_DATASET}]")
    p.add_argument("--arch", choices=ARCH_NAMES, help="[specnet]")
    p.add_argument("--task", choices=["binary", "multiclass"], help="[binary]")
    p.add_argument("--noise", help="noise levels, e.g. snr_inf,snr_20db [all]")
    p.add_argument("--speakers", help="[all]")
    p.add_argument("--classes", help="[all]")
    p.add_argument("--epochs", type=int, help="[5]")
    p.add_argument("--batch-size", type=int, help="[32]")
    p.add_argument("--lr", help="peak learning rate, or 'find' [1e-3]")
    p.add_argument("--split-by", choices=["utterance", "speaker", "generator"], help="[utterance]")
    p.add_argument("--valid-fraction", type=float, help="[0.2]")
    p.add_argument("--holdout", help="speakers or generators held out for validation")
    p.add_argument(
        "--class-weighting", action=argparse.BooleanOptionalAction, help="[--class-weighting]"
    )
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        help="ImageNet weights when present offline [--no-pretrained]",
    )
    p.add_argument("--clip-samples", type=int, help="[64600]")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="[auto]")
    p.add_argument("--seed", type=int, help="[0]")
    p.add_argument("--time-shift", action=argparse.BooleanOptionalAction, help="[--time-shift]")
    p.add_argument("--freq-masks", type=int, help="[1]")
    p.add_argument("--time-masks", type=int, help="[1]")
    p.add_argument("--mask-fraction", type=float, help="[0.1]")
    p.add_argument("--noise-mix", type=float, help="[0]")
    p.add_argument("--mixup", type=float, help="[0]")
    p.add_argument(
        "--early-stopping", type=_number_or_off(int), metavar="PATIENCE|off", help="[off]"
    )
    p.add_argument("--save-best", action=argparse.BooleanOptionalAction, help="[--save-best]")
    p.add_argument("--reduce-lr", type=_number_or_off(int), metavar="PATIENCE|off", help="[off]")
    p.add_argument("--grad-clip", type=_number_or_off(float), metavar="NORM|off", help="[off]")
    p.add_argument(
        "--mixed-precision", action=argparse.BooleanOptionalAction, help="[--no-mixed-precision]"
    )
    p.add_argument("--wait", action="store_true", help="wait for the run to finish")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="with --wait: stop waiting after this long (the run goes on)",
    )
    p.add_argument("--inline", action="store_true", help="run it in this process (no worker)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_train)

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
