"""``fakevoice predict | history | label | import-aasist``: verdicts from the command line
(``fakevoice evaluate | calibrate`` is :mod:`fakevoice.cli_evaluate`, ``fakevoice models``
:mod:`fakevoice.cli_model_admin`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fakevoice.cli import print_json
from fakevoice.errors import FakeVoiceError, InvalidSpecError


def cmd_predict(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.cautions import typicality_text
    from fakevoice.services.verdicts import check_threshold, quality_cautions

    check_threshold(args.threshold)  # once, not once per file
    actor = services.cli_actor()
    model = services.find_model(actor, args.model)
    quality = quality_cautions(actor, model)  # once: it may read the actor's tests
    results: list[dict[str, Any]] = []
    failures = 0
    for path in args.files:
        try:
            scored = services.score_clip(
                actor,
                model,
                Path(path),
                file_name=Path(path).name,
                threshold=args.threshold,
                origin="cli",
                quality=quality,
            )
        except FakeVoiceError as exc:
            failures += 1
            results.append({"file": path, "error": str(exc)})
            if not args.json:  # the file named once ("There is no audio file at x.wav.")
                said = str(exc)
                print(said if str(Path(path)) in said else f"{path}: {said}", file=sys.stderr)
            continue
        verdict = scored.verdict
        result = {
            "file": path,
            "verdict": verdict.label,  # as the API names it ("label" stays for older scripts)
            **verdict.to_dict(),
            "file_sha256": scored.analysis.file_sha256,
            "analysis_id": scored.analysis.id,  # for `fakevoice label` and `history --report`
        }
        explanation = None
        if args.explain:  # the window the verdict found most machine-like, not scored again
            from fakevoice.explain import most_machine_like

            window = most_machine_like(verdict.windows)
            explanation = services.explain_clip(actor, model, Path(path), window=window).explanation
            services.keep_explanation(actor, scored.analysis.id, explanation)  # in the history
            result["explanation"] = explanation.to_dict()
        results.append(result)
        if not args.json:
            label: str = verdict.label
            if verdict.generator:
                label += f" (most likely generator: {verdict.generator})"
            familiar = (
                ""
                if verdict.typicality is None
                else f"  typicality {typicality_text(verdict.typicality)}"
            )
            print(
                f"{path}: {label}  P(human) = {verdict.p_human:.3f}{familiar}  "
                f"(verdict #{scored.analysis.id})"
            )
            for caution in verdict.cautions:
                print(f"  caution: {caution}")
            if explanation is not None:
                print(f"  why: {explanation.summary()}")
    if args.json:
        # The model named as the API names it, so that scripts read both alike.
        named = {"id": model.id, "name": model.name, "arch": model.arch, "version": model.version}
        print_json({"model": named, "results": results})
    # Scripts can tell: 0 every file judged, 1 some could not be, 2 none could.
    return 2 if failures == len(args.files) else 1 if failures else 0


def cmd_history(args: argparse.Namespace) -> int:
    from fakevoice import services
    from fakevoice.services import reports
    from fakevoice.store.records import AnalysisFilter

    actor = services.cli_actor()
    if args.report is not None:
        report = reports.history_report(actor, args.report)
        if args.json:
            sys.stdout.write(reports.report_json(report))
        else:
            sys.stdout.write(reports.report_markdown(report))
        return 0
    model_id = services.find_model(actor, args.model).id if args.model else None
    where = AnalysisFilter(
        text=args.find or "",
        verdicts=tuple(args.verdict or ()),
        model_id=model_id,
        since=_utc_time(args.since, "--since"),
        until=_utc_time(args.until, "--until"),
        outcome=args.outcome or "",
    )
    if args.csv is not None:
        _write_csv(services.analyses_csv_chunks(actor, where), args.csv)
        return 0
    found = services.list_analyses(actor, limit=args.limit, where=where)
    total = services.count_analyses(actor, where)
    used = {a.model_id for a in found if a.model_id is not None}
    names = services.model_names(actor, used) if used else {}
    if args.json:  # model_name: null once the model is deleted or no longer shared with you
        items = [{**vars(a), "model_name": _model_name(a.model_id, names)} for a in found]
        print_json({"total": total, "items": items})
        return 0
    if not total:
        print(
            "no verdicts yet: judge a file with `fakevoice predict --model MODEL FILE`"
            if where == AnalysisFilter()
            else "no verdicts match these options (`fakevoice history` alone lists them all)"
        )
    for a in found:
        p_human = a.probabilities.get("bonafide")
        shown = f"{p_human:.3f}" if p_human is not None else "-"
        model = services.verdict_model_name(a, names)
        print(
            f"{a.id:>6}  {a.created_at:%Y-%m-%d %H:%M}  {a.verdict:<17} P(human) {shown}  "
            f"{model[:20]:<20}  {(a.file_sha256 or '')[:12]:<12}  {a.file_name}"
        )
    if total > len(found):
        print(f"({len(found)} of {total} shown, newest first; --limit N shows more, --csv all)")
    return 0


def _write_csv(chunks: Iterator[str], path: Path) -> None:
    """Write the history's CSV to ``path`` (``-``: stdout) piece by piece as it is read; a file
    left half-written by an error is removed."""
    if str(path) == "-":
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    lines = 0
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
                out.flush()  # on disk before the next page is read: memory holds one page
                lines += chunk.count("\n")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    print(f"{lines - 1} verdicts written to {path}")


def _model_name(model_id: int | None, names: dict[int, str]) -> str | None:
    """A verdict's model's name, None once deleted or no longer shared with the reader."""
    return None if model_id is None else names.get(model_id)


def cmd_label(args: argparse.Namespace) -> int:
    from fakevoice import services

    given: dict[str, str | None] = {}
    if args.outcome is not None:
        given["outcome"] = None if args.outcome == "unknown" else args.outcome
    if args.note is not None:
        given["note"] = args.note
    if not given:
        raise InvalidSpecError("Give --outcome, --note or both.")
    analysis = services.label_verdict(services.cli_actor(), args.verdict, **given)
    if args.json:
        print_json(vars(analysis))
    else:
        really = analysis.outcome or "unknown"
        print(
            f"verdict {analysis.id} ({analysis.file_name}): really {really}"
            + (f"; note: {analysis.note}" if analysis.note else "")
        )
    return 0


def _utc_time(text: str | None, option: str) -> datetime | None:
    """An ISO date or time from the command line (naive ones are UTC)."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSpecError(
            f"{option} takes a date or time such as 2026-12-01 or 2026-12-01T09:30; got {text!r}."
        ) from None


def cmd_import_aasist(args: argparse.Namespace) -> int:
    from fakevoice import services

    model = services.import_aasist(services.cli_actor(), args.path, args.name)
    if args.json:
        print_json({"id": model.id, "name": model.name, "arch": model.arch})
    else:
        print(f"model {model.id} '{model.name}' ({model.arch}) imported")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("predict", help="verdict for audio files")
    p.add_argument("--model", required=True, help="model id or name")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.6,
        help="inconclusive when neither P(human) nor P(machine) reaches it (0.5 to 1) [0.6]",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="also say where the decision is most sensitive (frequency bands, time); seconds more",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("files", nargs="+")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("history", help="your verdicts, searched, or exported as CSV")
    p.add_argument(
        "--find", help="a part of the file name or of your note, or the start of its SHA-256"
    )
    p.add_argument(
        "--verdict",
        action="append",
        choices=["human", "machine-generated", "inconclusive"],
        help="only this verdict (repeat for several)",
    )
    p.add_argument("--model", help="only this model's verdicts (id or name)")
    p.add_argument(
        "--outcome",
        choices=["known", "unknown", "human", "machine-generated"],
        help="only clips whose truth you recorded (known), did not (unknown), or this one",
    )
    p.add_argument("--since", help="at or after this UTC date or time (ISO 8601)")
    p.add_argument("--until", help="before this UTC date or time (ISO 8601)")
    p.add_argument("--limit", type=int, default=20, help="how many to list (1-1000)")
    p.add_argument("--csv", type=Path, help="write every match to this CSV file ('-': stdout)")
    p.add_argument(
        "--report", type=int, help="print verdict ID as a report (Markdown; --json: JSON)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("label", help="record what a judged clip really was, and a note")
    p.add_argument("verdict", type=int, help="the verdict's id (fakevoice history lists them)")
    p.add_argument("--outcome", choices=["human", "machine-generated", "unknown"])
    p.add_argument("--note", help="e.g. a case number ('' removes the note)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_label)

    p = sub.add_parser("import-aasist", help="store an official AASIST / AASIST-L checkpoint")
    p.add_argument("path", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_import_aasist)
