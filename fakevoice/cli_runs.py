"""``fakevoice runs [list | show | delete | export | repair-metrics]``: the jobs of yours, one in
full, their CSV, and the operator's repair of the epochs that earlier upgrades deleted;
``fakevoice workers``: the job workers alive (the operator's view of who runs those jobs)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fakevoice.cli import add_limit_option, check_limit, print_json, print_more
from fakevoice.errors import InvalidSpecError
from fakevoice.store.records import EpochMetric, RunKind

if TYPE_CHECKING:
    from fakevoice.services.metric_repair import MetricRepair, ModelRelink, RunRepair


def run_dict(run: Any) -> dict[str, Any]:
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


def cmd_runs_show(args: argparse.Namespace) -> int:
    """One job in full: status, a training run's whole spec (for `train --spec`), its epochs and
    the model it stored."""
    import json

    from fakevoice import services

    if args.run is None:
        raise InvalidSpecError("Name the run to show: `fakevoice runs show RUN` (id or name).")
    actor = services.cli_actor()
    run = services.find_run(actor, args.run)
    epochs = services.run_progress(actor, run.id, after_step=10**12).epochs
    model_id = services.run_model_id(actor, run.id)
    payload = {
        **run_dict(run),
        "started": run.started_at.isoformat(timespec="seconds") if run.started_at else None,
        "finished": run.finished_at.isoformat(timespec="seconds") if run.finished_at else None,
        "model_id": model_id,
        "waiting": services.worker_note(run),
        "spec": dict(run.spec) if run.kind == "train" else None,
        "epochs_history": [e.__dict__ for e in epochs],
    }
    from fakevoice.services.results import run_metrics

    report = run_metrics(run) if model_id is not None else {}
    payload["stored_model"] = (
        {k: report.get(k) for k in ("eer", "accuracy", "macro_f1", "before_calibration")}
        if report
        else None
    )
    if args.json:
        print_json(payload)
        return 0
    print(f"run {run.id} '{run.name}' ({run.kind}): {run.status}, {100 * run.progress:.1f} %")
    for key in ("created", "started", "finished", "error", "notice", "waiting", "model_id"):
        if payload[key] is not None:
            print(f"  {key}: {payload[key]}")
    if payload["spec"] is not None:
        print("  spec (fakevoice train --from " + str(run.id) + " repeats it):")
        for line in json.dumps(payload["spec"], indent=2, sort_keys=True).splitlines():
            print(f"    {line}")
    for e in epochs:
        print(f"  epoch {e.epoch + 1}: {epoch_figures(e)}")
    if model_id is not None and (stored := _stored_model_line(report)):
        print(f"  {stored}")
    return 0


def _stored_model_line(report: dict[str, Any]) -> str | None:
    """The stored model's validation figures: as it serves verdicts (calibrated) and, when the
    run kept them, before the calibration, as the epoch lines above measure."""
    eer, accuracy = report.get("eer"), report.get("accuracy")
    if not isinstance(eer, float | int) or not isinstance(accuracy, float | int):
        return None
    if not isinstance(report.get("calibration"), dict):  # too few items, or a fit not kept
        return f"stored model: EER {100 * eer:.2f} %  accuracy {accuracy:.3f} (no calibration kept)"
    line = f"stored model: EER {100 * eer:.2f} %  accuracy {accuracy:.3f} (calibrated)"
    before = report.get("before_calibration")
    if isinstance(before, dict) and isinstance(before.get("eer"), float | int):
        line += (
            f"; before calibration, as its epoch above: EER {100 * before['eer']:.2f} %  "
            f"accuracy {before.get('accuracy', float('nan')):.3f}"
        )
    return line


def epoch_figures(epoch: EpochMetric) -> str:
    """An epoch's figures in a line; one not measured reads "-" (never 0: an EER of 0 % is a
    perfect score)."""

    def shown(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    eer = "-" if epoch.eer is None else f"{100 * epoch.eer:.2f} %"
    return (
        f"train loss {shown(epoch.train_loss, '.4f')}  valid loss {shown(epoch.valid_loss, '.4f')}"
        f"  accuracy {shown(epoch.accuracy, '.3f')}  EER {eer}"
    )


def cmd_runs_delete(args: argparse.Namespace) -> int:
    """Delete a job that has ended, as its page does (a training run with its model)."""
    from fakevoice import services
    from fakevoice.services import profile

    if args.run is None:
        raise InvalidSpecError("Name the job to delete: `fakevoice runs delete RUN --yes`.")
    actor = services.cli_actor()
    run = services.find_run(actor, args.run)
    if not args.yes:
        what = "and the model it stored " if run.kind == "train" else ""
        raise InvalidSpecError(
            f"This deletes {run.kind} job {run.id} '{run.name}' {what}for good: add --yes."
        )
    profile.delete_job(actor, run.id)
    print(f"deleted {run.kind} job {run.id} '{run.name}'")
    from fakevoice.tracking import finish_forgetting

    finish_forgetting(lambda text: print(text, file=sys.stderr))
    return 0


def cmd_runs_repair_metrics(args: argparse.Namespace) -> int:
    """Restore every training run's epochs that earlier upgrades deleted, from its history.csv.

    The operator's repair over every user's runs: it acts as :data:`fakevoice.accounts.OPERATOR`
    (an administrator), as ``fakevoice user`` does, since whoever runs the CLI on the server can
    read its database anyway. Exits 1 when a run's history.csv could not be read.
    """
    from fakevoice import accounts, services
    from fakevoice.services.metric_repair import repair_lost_metrics

    services.ensure_database()
    repair = repair_lost_metrics(accounts.OPERATOR, dry_run=args.dry_run)
    if args.json:
        print_json(_repair_dict(repair))
    else:
        print("\n".join(_repair_lines(repair)))
    return 1 if any(r.unreadable for r in repair.runs) else 0


BATCHES_LOST = (
    "Batch metrics (each batch's loss: the live curve) are kept nowhere else and cannot be "
    "restored."
)


def _repair_lines(repair: MetricRepair) -> list[str]:
    """What ``runs repair-metrics`` did (a dry run: would do), a line per run and per model, then
    the totals."""
    would = "would be " if repair.dry_run else ""
    lines = [_run_line(r, would) for r in repair.runs]
    lines += [_model_line(m, would) for m in repair.models]
    restored = [r for r in repair.runs if r.skipped is None]
    if repair.runs:
        lines.append(
            f"{_counted(len(repair.runs), 'ended training run')} missing epochs: {len(restored)} "
            f"{would}restored ({_counted(sum(r.epochs for r in restored), 'epoch')}), "
            f"{len(repair.runs) - len(restored)} not"
        )
    else:
        lines.append("Every ended training run has its epochs: nothing to restore.")
    if repair.models:
        linked = sum(m.skipped is None for m in repair.models)
        lines.append(
            f"{_counted(len(repair.models), 'model')} without a run: {linked} {would}linked"
        )
    lines.append(BATCHES_LOST)
    return lines + (["Dry run: nothing was changed."] if repair.dry_run else [])


def _run_line(repair: RunRepair, would: str) -> str:
    head = f"run {repair.run.id} '{repair.run.name}'"
    if repair.skipped:
        return f"{head}: {repair.skipped}"
    restored = f"{head}: {_counted(repair.epochs, 'epoch')} {would}restored from history.csv"
    if repair.kept_from is None:
        return restored
    return f"{restored} (it kept those from epoch {repair.kept_from + 1} on)"


def _model_line(relink: ModelRelink, would: str) -> str:
    head = f"model {relink.model.id} '{relink.model.name}'"
    if relink.skipped:
        return f"{head}: not linked to run {relink.run_id}: {relink.skipped}"
    return f"{head}: {would}linked to run {relink.run_id} again"


def _repair_dict(repair: MetricRepair) -> dict[str, Any]:
    return {
        "dry_run": repair.dry_run,
        "runs": [
            {
                "id": r.run.id,
                "name": r.run.name,
                "owner_id": r.run.owner_id,
                "epochs_restored": r.epochs,
                "kept_from_epoch": r.kept_from,
                "skipped": r.skipped,
                "unreadable": r.unreadable,
            }
            for r in repair.runs
        ],
        "models": [
            {
                "id": m.model.id,
                "name": m.model.name,
                "run_id": m.run_id,
                "linked": m.skipped is None,
                "skipped": m.skipped,
            }
            for m in repair.models
        ],
        "batch_metrics": BATCHES_LOST,
    }


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _refuse_run_not_taken(action: str, run: str | None) -> None:
    """Refuse a run named to an action that takes none (``runs export runs.csv`` printed the
    CSV and wrote no file), rather than ignore it.

    Args:
        action: the ``runs`` action (``list``, ``show``, ``delete``, ``export``,
            ``repair-metrics``).
        run: the second word as typed, if any.
    """
    if run is None or action in ("show", "delete"):
        return
    if action == "export":
        raise InvalidSpecError(
            f"`fakevoice runs export` takes no run: it writes every run of yours; "
            f"give the CSV file with -o, e.g. `fakevoice runs export -o {run}`."
        )
    raise InvalidSpecError(
        f"`fakevoice runs {action}` takes no run (got {run!r}); "
        f"`fakevoice runs show {run}` shows one."
    )


def cmd_runs(args: argparse.Namespace) -> int:
    from fakevoice import services

    _refuse_run_not_taken(args.action, args.run)
    if args.action == "repair-metrics":
        return cmd_runs_repair_metrics(args)
    if args.action == "export":
        return cmd_runs_export(args)
    if args.action == "show":
        return cmd_runs_show(args)
    if args.action == "delete":
        return cmd_runs_delete(args)
    actor = services.cli_actor()
    kind: RunKind | None = None if args.jobs else "train"
    runs = services.list_runs(actor, kind=kind, limit=check_limit(args.limit))
    total = services.count_runs(actor, kind=kind) if len(runs) == args.limit else len(runs)
    if args.json:
        print_json([run_dict(r) for r in runs])
        print_more(len(runs), total, json_output=True)
        return 0
    if not runs:
        print("no runs yet: start one with `fakevoice train --dataset demo --arch specnet`")
    for r in runs:
        row = run_dict(r)
        kind_column = f"{r.kind:<9}" if args.jobs else ""
        print(
            f"{r.id:>5}  {kind_column}{r.name[:32]:<32} {r.status:<11} {100 * r.progress:5.1f} %  "
            f"{row['arch'] or '':<10} {row['dataset'] or ''}"
        )
    print_more(len(runs), total, json_output=False)
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    """The job workers alive now (with --all, also those stopped or silent in the last day)."""
    from fakevoice import accounts, services
    from fakevoice.services.runs import duration_text

    services.ensure_database()  # a database this version has not migrated yet lacks the table
    now = datetime.now(UTC)
    # The operator's view (it names hosts and processes): as `fakevoice user` does.
    listed = services.job_workers(accounts.OPERATOR)
    listed = [(w, state) for w, state in listed if args.all or state == "alive"]
    rows = [
        {
            "id": w.id,
            "backend": w.backend,
            "state": state,
            "host": w.host,
            "pid": w.pid,
            "running": w.running,
            "concurrency": w.concurrency,
            "started": w.started_at.isoformat(timespec="seconds"),
            "seen": w.seen_at.isoformat(timespec="seconds"),
            "stopped": w.stopped_at.isoformat(timespec="seconds") if w.stopped_at else None,
        }
        for w, state in listed
    ]
    if args.json:
        print_json(rows)
        return 0
    if not any(state == "alive" for _, state in listed):
        print(
            "no worker is running: queued jobs wait until one starts (`fakevoice worker`; "
            "`make run` starts a local one)"
        )
    for w, state in listed:
        seen = duration_text(max(0.0, (now - w.seen_at).total_seconds()))
        print(
            f"{state:<8} {w.backend:<6} {w.host}:{w.pid}  {w.running} of "
            f"{w.concurrency} jobs  started {w.started_at:%Y-%m-%d %H:%M} UTC  seen {seen} ago"
            f"  ({w.id})"
        )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "workers",
        help="the job workers alive now, with their load (--all: also those stopped or silent "
        "in the last day)",
    )
    p.add_argument("--all", action="store_true", help="also workers stopped or gone silent")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_workers)
    p = sub.add_parser(
        "runs",
        help="list your runs, show one (runs show RUN), delete one that has ended (runs delete "
        "RUN --yes), or export them as CSV (runs export); repair-metrics (the operator's, over "
        "every user's runs): restore the epochs earlier upgrades deleted, from each run's "
        "history.csv",
    )
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "show", "delete", "export", "repair-metrics"],
    )
    p.add_argument("run", nargs="?", default=None, help="show, delete: the job (id or name)")
    p.add_argument("--yes", action="store_true", help="delete: yes, for good")
    p.add_argument(
        "-o",
        "--out",
        "--output",
        dest="out",
        default=None,
        help="export: CSV file to write (default stdout)",
    )
    p.add_argument(
        "--jobs",
        action="store_true",
        help="list: every job of yours (dataset builds and tests of models too), with its kind",
    )
    add_limit_option(p, "runs (or jobs)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="repair-metrics: say what it would do, change nothing",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)
