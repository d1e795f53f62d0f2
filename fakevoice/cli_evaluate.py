"""``fakevoice evaluate | calibrate``: tests of stored models on a dataset (scored here or queued
as a job), their fusion and paired comparisons, and a copy of a model calibrated on a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fakevoice.cli import print_json
from fakevoice.errors import InvalidSpecError
from fakevoice.store.records import STATUS_WORDS

WAIT_SECONDS = 24 * 3600  # how long evaluate --queue --wait waits by default


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.services.evaluation import MAX_EVALUATE_ITEMS
    from fakevoice.services.evaluation_jobs import MAX_TESTED_MODELS

    if args.scores is not None:  # before minutes of scoring, whose results it would lose
        _check_scores_target(args.scores)
    actor = services.cli_actor()
    if args.results is not None:
        if args.model or args.dataset or args.queue:
            raise InvalidSpecError("--results shows a test already made: give it alone.")
        evaluations = services.evaluation_results(actor, args.results)
        if not evaluations:
            run = services.get_evaluation(actor, args.results)
            raise InvalidSpecError(f"The test {run.name!r} is {run.status}; it has no result yet.")
    else:
        if not args.model or not args.dataset:
            raise InvalidSpecError("Give --model (once per model) and --dataset, or --results.")
        if not args.queue and (args.wait or args.timeout is not None):
            raise InvalidSpecError(  # a --timeout was ignored: the test ran here to its end
                "--wait and --timeout follow a test queued with --queue; without it the test is "
                "scored here, and the command ends when it does."
            )
        if len(args.model) > MAX_TESTED_MODELS:
            raise InvalidSpecError(f"A test takes at most {MAX_TESTED_MODELS} models.")
        models = [services.find_model(actor, key) for key in args.model]
        if args.queue:
            run = services.submit_evaluation(
                actor,
                [m.id for m in models],
                args.dataset,
                args.split,
                limit=args.limit or MAX_EVALUATE_ITEMS,
            )
            if not args.wait:
                if args.json:
                    print_json({"id": run.id, "name": run.name, "status": run.status})
                else:
                    print(
                        f"test {run.id} '{run.name}' queued: a worker scores it. "
                        f"`fakevoice runs --jobs` follows it; "
                        f"`fakevoice evaluate --results {run.id}` shows it."
                    )
                return 0
            print(  # on stderr, before the report: the id to stop it by or see it again
                f"test {run.id} '{run.name}' queued; waiting for a worker to score it "
                f"(`fakevoice stop {run.id}` stops it)",
                file=sys.stderr,
            )
            timeout = args.timeout if args.timeout is not None else WAIT_SECONDS
            try:
                run = services.wait_for_run(actor, run.id, timeout=timeout)
            except KeyboardInterrupt:  # Ctrl-C ends the waiting, not the test
                print(
                    f"stopped waiting: test {run.id} '{run.name}' goes on "
                    f"(`fakevoice evaluate --results {run.id}` shows it once done)",
                    file=sys.stderr,
                )
                raise
            if run.status != "succeeded":
                raise InvalidSpecError(
                    f"The test {run.name!r} {STATUS_WORDS[run.status]}"
                    + (f": {run.error}" if run.error else ".")
                )
            evaluations = services.evaluation_results(actor, run.id)
        else:
            evaluations = [
                services.evaluate_on_dataset(
                    actor, m.id, args.dataset, args.split, limit=args.limit
                )
                for m in models
            ]
    if args.scores is not None:
        _write_scores(args.scores, evaluations)
    if args.json:
        reports = [e.report for e in evaluations]
        print_json(reports[0] if len(reports) == 1 else reports)
        return 0
    dataset = str(evaluations[0].report["dataset"])
    note = services.shortcut_warning(dataset, actor=actor, use="test")
    if note:  # first: it points at the per-generator figures that follow
        print(f"note: {note}\n")
    for evaluation in evaluations:
        _print_report(evaluation.report)
    _print_fusion(evaluations)
    _print_pairs(evaluations)
    return 0


def _print_fusion(evaluations: list[Any]) -> None:
    """The models' fused score (mean log-odds) on the items they all scored, when it can be."""
    from fakevoice.services.fusion import fuse

    fusion = fuse(evaluations)
    if fusion is None:
        return
    print(f"{fusion.label} (mean of their log-odds of human, {fusion.items} shared items)")
    print(f"  EER {100 * fusion.eer:.2f} %  AUC {fusion.auc:.4f}")
    if fusion.learned is not None:
        learned = fusion.learned
        weights = ", ".join(f"{name} {w:.2f}" for name, w in learned["weights"].items())
        print(
            f"  learnt weights ({weights}; fitted on some utterances, scored on the others): "
            f"EER {100 * learned['eer']:.2f} %  AUC {learned['auc']:.4f}"
        )
    _print_breakdown(fusion.to_dict())


def _print_pairs(evaluations: list[Any]) -> None:
    """Each pair of models' EER difference with its bootstrap interval: can the test tell?"""
    from fakevoice.services.paired_tests import paired_eers

    pairs = paired_eers(evaluations)
    if pairs:
        unit = pairs[0].difference.unit
        print(f"which is better (the same items drawn again, whole {unit} at a time):")
        for pair in pairs:
            print(f"  {pair.words()}")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.metrics.calibration import calibration_line

    actor = services.cli_actor()
    model = services.find_model(actor, args.model)
    if (args.results is None) == (args.dataset is None):
        raise InvalidSpecError(
            "Give --dataset (score it here) or --results (a test of the model already made)."
        )
    if args.results is not None:
        copy = services.calibrate_on_test(actor, args.results, model.id, args.name)
    else:
        from fakevoice.services.evaluation import own_train_spec

        services.calibrated_copy_name(actor, model, args.dataset, args.name)
        manifest = services.detector_for(model).manifest
        if args.split == "all" and own_train_spec(manifest, args.dataset) is not None:
            raise InvalidSpecError(  # refused before minutes of scoring, not after
                f"Model {model.name!r} was trained on {args.dataset!r}: a calibration on all of "
                "its items would include those it learnt from. Use --split valid (its "
                "validation split) or another dataset."
            )
        evaluation = services.evaluate_on_dataset(
            actor, model.id, args.dataset, args.split, limit=args.limit
        )
        copy = services.calibrated_copy(actor, model.id, evaluation, args.name)
    kept = copy.metrics.get("calibration")
    if args.json:
        print_json({"id": copy.id, "name": copy.name, "calibration": kept})
    else:
        print(f"model {copy.id} '{copy.name}': probabilities {calibration_line(kept)}")
    return 0


def _check_scores_target(path: Path) -> None:
    """Refuse a ``--scores`` path that cannot be written: a folder, or one in a folder that does
    not exist or is not writable (found after the test, the whole test was lost)."""
    import os

    folder = path.parent
    if path.is_dir():
        raise InvalidSpecError(
            f"Cannot write {path}: it is a folder; give a file name for --scores."
        )
    if not folder.is_dir():
        raise InvalidSpecError(f"Cannot write {path}: there is no folder {folder}.")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidSpecError(f"Cannot write {path}: permission denied.")


def _write_scores(path: Path, evaluations: list[Any]) -> None:
    """Per-item scores as CSV; with several models, one block each behind a ``model`` column."""
    import pandas as pd

    if len(evaluations) == 1:
        data = evaluations[0].scores_csv()
    else:
        frames = [e.scores.assign(model=e.report["model"]["name"]) for e in evaluations]
        table = pd.concat(frames, ignore_index=True)
        table = table[["model", *[c for c in table.columns if c != "model"]]]
        data = table.to_csv(index=False, float_format="%.8g").encode()
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InvalidSpecError(f"Cannot write {path}: {exc.strerror or exc}.") from None


def _print_report(report: dict[str, Any]) -> None:
    from fakevoice.metrics.bootstrap import interval_words
    from fakevoice.services.evaluation import trained_on_words, unfamiliar_words, unseen_words

    eer = report.get("eer")
    name = report["model"]["name"]
    print(f"model {name} on {report['dataset']} ({report['split']}, {report.get('n')} items)")
    print(f"  accuracy {report['accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}")
    if eer is None:
        print("  EER: n/a (one class only)")
    else:
        print(f"  EER {100 * eer:.2f} %  AUC {report['auc']:.4f}")
    if report.get("ece") is not None:
        print(
            f"  expected calibration error {100 * report['ece']:.1f} % (the gap between how sure "
            "the model was and how often it was right; 0 is honest)"
        )
    if report.get("eer_interval"):
        print(f"  {interval_words(report['eer_interval'])}")
    if (unfamiliar := unfamiliar_words(report.get("unfamiliar"))) is not None:
        print(f"  {unfamiliar}")
    if (unseen := unseen_words(report.get("unseen"))) is not None:
        print(f"  {unseen}")
    if (flattered := trained_on_words(report)) is not None:
        print(f"  caution: {flattered}")
    for line in class_table(report):
        print(f"  {line}")
    _print_breakdown(report)


def class_table(report: dict[str, Any]) -> list[str]:
    """Each true class's precision, recall, F1 and items, then its row of the confusion matrix
    (items predicted as each class), as aligned lines; none when the report lacks them."""
    names = report.get("class_names") or []
    per_class = report.get("per_class") or {}
    matrix = report.get("confusion_matrix") or []
    if not names or len(matrix) != len(names) or set(per_class) != set(names):
        return []
    name_width = max(len("class"), *map(len, names))
    widths = [max(len(name), *(len(str(row[j])) for row in matrix)) for j, name in enumerate(names)]
    predicted = " ".join(f"{name:>{w}}" for name, w in zip(names, widths, strict=True))
    lines = [
        "per class (rows: true class; right of |: items predicted as each class):",
        f"{'class':<{name_width}}  precision  recall     F1  items | {predicted}",
    ]
    for name, row in zip(names, matrix, strict=True):
        c = per_class[name]
        counts = " ".join(f"{n:>{w}}" for n, w in zip(row, widths, strict=True))
        lines.append(
            f"{name:<{name_width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  "
            f"{c['support']:5d} | {counts}"
        )
    return lines


def _print_breakdown(report: dict[str, Any]) -> None:
    """A test's (or a fusion's) EER at each noise level and against each generator."""
    from fakevoice import services
    from fakevoice.artefacts import left_out_of

    counts = report.get("eer_items") or {}
    for title, key, label, kind in (
        ("EER at each noise level", "noise_eer", services.noise_label, "noise"),
        ("EER against each generator", "generator_eer", str, "generator"),
    ):
        if report.get(key):
            print(f"  {title}:")
            behind = counts.get(kind) or {}
            for item, value in report[key].items():
                n = behind.get(item)
                on = f"   ({n[0]} human, {n[1]} machine items)" if isinstance(n, list) else ""
                print(f"    {label(item):<24} {100 * value:6.2f} %{on}")
            if left_out := [label(k) for k in left_out_of(report[key], behind)]:
                print(f"    left out (one class missing): {', '.join(left_out)}")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="metrics of stored models on a dataset")
    p.add_argument(
        "--model", action="append", default=[], help="model id or name (repeat for up to 4)"
    )
    p.add_argument("--dataset")
    p.add_argument("--split", choices=["valid", "all"], default="valid")
    p.add_argument(
        "--limit", type=int, default=None, help="score at most this many items (a seeded sample)"
    )
    p.add_argument("--scores", type=Path, default=None, help="write per-item scores to this CSV")
    p.add_argument(
        "--queue",
        action="store_true",
        help="queue the test as a job for a worker (a GPU node with Ray) instead of scoring here",
    )
    p.add_argument("--wait", action="store_true", help="with --queue: wait and show the results")
    p.add_argument(
        "--timeout", type=float, default=None, help="with --wait: give up after (s; a day)"
    )
    p.add_argument("--results", type=int, default=None, help="show the results of test RUN")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser(
        "calibrate",
        help="a copy of a model whose probabilities are calibrated on a labelled dataset",
    )
    p.add_argument("--model", required=True, help="model id or name")
    p.add_argument("--dataset", help="score this dataset here, then calibrate on it")
    p.add_argument(
        "--split",
        choices=["valid", "all"],
        default="valid",
        help="valid (default): the model's own validation split when D is the dataset it was "
        "trained on, every item otherwise; all: every item (refused on its training dataset)",
    )
    p.add_argument(
        "--limit", type=int, default=None, help="score at most this many items (a seeded sample)"
    )
    p.add_argument("--results", type=int, default=None, help="calibrate on test RUN instead")
    p.add_argument("--name", default=None, help="the copy's name (default: '<model> on <dataset>')")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_calibrate)
