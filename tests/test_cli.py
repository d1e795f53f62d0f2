from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fakevoice.cli import build_parser, main


def test_parser_knows_the_dataset_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["dataset", "build-demo", "--size", "small", "--seed", "3"])
    assert args.size == "small" and args.seed == 3


@pytest.mark.parametrize("module", ["fakevoice.cli", "fakevoice"])
def test_console_script_shows_help(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True
    )
    assert "dataset" in out.stdout
    # A user error exits 2 with words, through `python -m fakevoice` as through the script.
    bad = subprocess.run(
        [sys.executable, "-m", module, "predict", "--threshold", "2", "--model", "x", "a.wav"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "threshold" in bad.stderr and "Traceback" not in bad.stderr


HEAVY_MODULES = ("torch", "torchvision", "fastai")


def _modules_loaded_by(code: str) -> set[str]:
    """Which of :data:`HEAVY_MODULES` are imported after ``code`` runs in a new Python."""
    probe = f"{code}\nimport sys\nprint(*(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(out.stdout.split())


def test_listing_runs_and_scoring_load_only_what_they_need() -> None:
    # torch, torchvision and fastai take seconds to import; a command pays only for what it uses.
    assert _modules_loaded_by("from fakevoice.services import list_runs, stop_run") == set()
    assert _modules_loaded_by("from fakevoice.services import list_models, score_clip") == {"torch"}
    assert _modules_loaded_by("from fakevoice.services import submit_run") == set()
    assert {"torch", "fastai"} <= _modules_loaded_by("from fakevoice.training import train")


def test_every_service_name_resolves_to_its_definition() -> None:
    import importlib

    from fakevoice import services

    # The lazy table and the public list name the same things, each where it is defined.
    assert set(services.__all__) == set(services._MODULE_OF)
    for name, module in services._MODULE_OF.items():
        assert getattr(services, name) is getattr(importlib.import_module(module), name)


def test_runs_show_names_the_stored_models_figures_both_ways() -> None:
    """Calibrated, as the model serves verdicts, and before, as its epochs were measured."""
    from fakevoice.cli_runs import _stored_model_line, epoch_figures
    from fakevoice.store.records import EpochMetric

    calibrated = {
        "eer": 0.31,
        "accuracy": 0.7,
        "calibration": {"temperature": 1.2},
        "before_calibration": {"eer": 0.33, "accuracy": 0.64},
    }
    line = _stored_model_line(calibrated)
    assert line == (
        "stored model: EER 31.00 %  accuracy 0.700 (calibrated); before calibration, as its "
        "epoch above: EER 33.00 %  accuracy 0.640"
    )
    assert _stored_model_line({"eer": 0.5, "accuracy": 0.5, "calibration": None}) == (
        "stored model: EER 50.00 %  accuracy 0.500 (no calibration kept)"
    )
    assert _stored_model_line({}) is None
    assert epoch_figures(EpochMetric(epoch=0, train_loss=0.5)) == (
        "train loss 0.5000  valid loss -  accuracy -  EER -"
    )


def test_runs_refuses_a_run_its_action_does_not_take(
    isolated_settings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``runs export runs.csv`` printed the CSV to the terminal and wrote no file: a run named
    to an action that takes none is refused, and says what to type."""
    out = tmp_path / "runs.csv"
    assert main(["runs", "export", str(out)]) == 2
    said = capsys.readouterr()
    assert said.out == "" and not out.exists()
    assert said.err == (
        "fakevoice: `fakevoice runs export` takes no run: it writes every run of yours; give "
        f"the CSV file with -o, e.g. `fakevoice runs export -o {out}`.\n"
    )
    assert main(["runs", "list", "7"]) == 2
    assert "`fakevoice runs show 7` shows one" in capsys.readouterr().err


def test_evaluate_refuses_a_scores_file_it_cannot_write_before_scoring(
    isolated_settings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scores file was written after the test: a path in no folder lost minutes of scoring
    and printed no figures. Now it is refused first, before the model is even looked up."""
    missing = tmp_path / "no-such-folder" / "scores.csv"
    args = ["evaluate", "--model", "no such model", "--dataset", "demo", "--scores"]
    assert main([*args, str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"fakevoice: Cannot write {missing}: there is no folder {missing.parent}.\n"
    )
    assert main([*args, str(tmp_path)]) == 2
    assert "it is a folder; give a file name for --scores" in capsys.readouterr().err


def test_predict_refuses_a_threshold_out_of_range_once(
    isolated_settings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A threshold out of range failed each file alone, the same line once per file, as if the
    files were at fault: it is one error, given before any model or file is read."""
    files = [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    assert main(["predict", "--model", "any", "--threshold", "0.3", *files]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == "fakevoice: The threshold must be between 0.5 and 1; got 0.3.\n"


def test_predict_reads_the_users_tests_of_the_model_once_for_many_files(
    isolated_settings: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model without a validation EER of its own is judged by the user's newest test of it:
    each file read the user's tests again. They are read once, and every file gets the caution."""
    from test_api import store_specnet, wav_bytes

    from fakevoice import services, store

    store_specnet(services.cli_actor(), "net")
    files = [tmp_path / f"{i}.wav" for i in range(3)]
    for i, path in enumerate(files):
        path.write_bytes(wav_bytes(1.0, seed=i))
    reads: list[object] = []
    list_runs = store.list_runs

    def counted(*args: object, **kwargs: object) -> object:
        reads.append(kwargs.get("kind"))
        return list_runs(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "list_runs", counted)
    assert main(["predict", "--model", "net", *map(str, files)]) == 0
    assert reads == ["evaluate"]
    unknown = "  caution: This model's error rate is unknown: it has no validation EER measured"
    assert sum(line.startswith(unknown) for line in capsys.readouterr().out.splitlines()) == 3


def test_evaluate_refuses_wait_and_timeout_without_queue(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--timeout 60`` without ``--queue`` was ignored: the test was scored here for as long as
    it took. It is refused before anything is scored."""
    args = ["evaluate", "--model", "any", "--dataset", "demo"]
    for given in (["--timeout", "60"], ["--wait"]):
        assert main([*args, *given]) == 2
        assert capsys.readouterr().err == (
            "fakevoice: --wait and --timeout follow a test queued with --queue; without it the "
            "test is scored here, and the command ends when it does.\n"
        )


def test_calibrate_refuses_a_taken_name_before_scoring(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy's name already taken was found after the whole dataset was scored (minutes on a
    real one): the name is checked first, before the model's files or the dataset are read."""
    from fakevoice import services, store

    actor = services.cli_actor()
    with store.session_scope() as session:
        for name in ("detector", "detector on demo", "field copy"):
            store.add_model(
                session, actor, name=name, arch="specnet", class_names=["bonafide", "spoof"],
                sample_rate=16000, clip_samples=64600, path=str(isolated_settings / name),
                files={},
            )  # fmt: skip
    args = ["calibrate", "--model", "detector", "--dataset", "demo"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "fakevoice: There is already a model named 'detector on demo'; choose another name.\n"
    )
    assert main([*args, "--name", " field copy "]) == 2
    assert "a model named 'field copy'; choose" in capsys.readouterr().err


def test_train_refuses_a_timeout_without_wait_before_queueing(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train --timeout 60`` without ``--wait`` queued the run and ignored the timeout: it is
    refused before anything is queued, as ``evaluate`` refuses it without ``--queue``."""
    from fakevoice import services

    assert main(["train", "--epochs", "1", "--timeout", "60"]) == 2
    assert capsys.readouterr().err == (
        "fakevoice: --timeout says how long --wait waits; without --wait the command ends once "
        "the run is queued.\n"
    )
    assert main(["train", "--wait", "--timeout", "0"]) == 2
    assert capsys.readouterr().err == (
        "fakevoice: --timeout must be a number of seconds above 0; got 0.\n"
    )
    assert services.list_runs(services.cli_actor()) == []


def test_train_spec_without_a_dataset_takes_the_default_one() -> None:
    """A spec file naming no dataset failed with Python's words ("TrainSpec.__init__() missing
    1 required positional argument"), though the help says an option left out of it takes its
    default: it trains on the default dataset, and the command line still chooses."""
    from fakevoice.cli_train import spec_from_args

    parser = build_parser()
    spec = spec_from_args(parser.parse_args(["train"]), {"arch": "specnet", "epochs": 2})
    assert (spec.dataset, spec.arch, spec.epochs) == ("demo", "specnet", 2)
    chosen = spec_from_args(parser.parse_args(["train", "--dataset", "mine"]), {"epochs": 2})
    assert (chosen.dataset, chosen.epochs) == ("mine", 2)


def test_predict_help_says_what_the_threshold_is() -> None:
    """``--threshold`` had no help: its range and default were found only by an error."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(commands.choices["predict"].format_help().split())
    assert (
        "--threshold THRESHOLD inconclusive when neither P(human) nor P(machine) reaches it "
        "(0.5 to 1) [0.6]"
    ) in text


def test_verbose_is_taken_before_or_after_the_subcommand() -> None:
    """``fakevoice worker -v`` was refused ("unrecognized arguments: -v"): only ``fakevoice -v
    worker`` logged more. Both do, after a nested subcommand too, and neither undoes the other."""
    parser = build_parser()
    for argv, verbose in (
        (["worker"], False),
        (["-v", "worker"], True),
        (["worker", "-v"], True),
        (["worker", "--verbose"], True),
        (["-v", "dataset", "list"], True),
        (["dataset", "list", "-v"], True),
        (["report", "key", "--verbose"], True),
        (["dataset", "list"], False),
    ):
        assert parser.parse_args(argv).verbose is verbose, argv


def test_models_and_history_say_when_there_is_nothing_to_list(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``models`` and ``history`` printed nothing at all with nothing to list, as if they had
    failed; ``runs`` said how to start one. They say so too; ``--json`` stays an empty list."""
    for argv, hint in (
        (["models"], "no models yet: train one with `fakevoice train --dataset demo"),
        (["models", "list"], "no models yet: "),
        (["history"], "no verdicts yet: judge a file with `fakevoice predict --model MODEL FILE`"),
        (["history", "--find", "case"], "no verdicts match these options"),
    ):
        assert main(argv) == 0
        said = capsys.readouterr()
        assert said.out.startswith(hint) and len(said.out.splitlines()) == 1, argv
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"total": 0, "items": []}


def test_history_names_each_verdicts_model(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The history listed verdicts with no model: two models' verdicts on the same file read
    alike. Each names its model, or says it was deleted."""
    from fakevoice import services, store

    actor = services.cli_actor()
    with store.session_scope() as session:
        models = [
            store.add_model(
                session, actor, name=name, arch="specnet", class_names=["bonafide", "spoof"],
                sample_rate=16000, clip_samples=64600, path=str(isolated_settings / name),
                files={},
            )
            for name in ("field detector", "a model with a very long name indeed")
        ]  # fmt: skip
        for model in [*models, models[0]]:
            store.add_analysis(
                session, actor, model_id=model.id, file_name="call.wav", duration=4.0,
                sample_rate=16000, verdict="human", probabilities={"bonafide": 0.9, "spoof": 0.1},
                threshold=0.6, source="cli",
            )  # fmt: skip
        store.delete_model(session, actor, models[0].id)
    assert main(["history"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split("P(human) 0.900  ")[1][:20] for row in rows] == [
        "(deleted)           ",
        "a model with a very ",
        "(deleted)           ",
    ]
    assert all(row.endswith("  call.wav") for row in rows)
    assert main(["history", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [item["model_name"] for item in items] == [None, models[1].name, None]


def test_evaluate_prints_the_confusion_matrix_and_per_class_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only ``--json`` had the confusion matrix and each class's precision, recall and F1: the
    printed report shows them too, in one aligned table after the headline figures."""
    from fakevoice.cli_evaluate import _print_report
    from fakevoice.metrics.classification import classification_report

    truth = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    predicted = [0, 0, 1, 1, 1, 2, 2, 2, 2, 0]
    probs = [[0.8 if i == p else 0.1 for i in range(3)] for p in predicted]
    report = classification_report(truth, probs, ["bonafide", "griffinlim", "world"])
    report.update(model={"name": "detector"}, dataset="demo", split="valid")
    _print_report(report)
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(
        "  per class (rows: true class; right of |: items predicted as each class):"
    )
    assert lines[start - 3].startswith("  accuracy 0.8000  macro F1 ")
    assert lines[start + 1 : start + 5] == [
        "  class       precision  recall     F1  items | bonafide griffinlim world",
        "  bonafide        0.667   0.667  0.667      3 |        2          1     0",
        "  griffinlim      0.667   1.000  0.800      2 |        0          2     0",
        "  world           1.000   0.800  0.889      5 |        1          0     4",
    ]


def _write_workbench_scores(path: Path) -> Path:
    """A small scores CSV as ``evaluate --scores`` writes it: 4 human items, 4 of two attacks."""
    rows = [("bonafide", 0.9), ("bonafide", 0.8), ("bonafide", 0.7), ("bonafide", 0.4)]
    rows += [("world", 0.1), ("world", 0.5), ("lpc", 0.2), ("lpc", 0.3)]
    path.write_text(
        "item,speaker,class,noise,p_human\n"
        + "".join(f"i{n},s,{c},clean,{p}\n" for n, (c, p) in enumerate(rows))
    )
    return path


def test_scores_json_names_the_files_it_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed report of ``scores`` names its file, ``--json`` did not: a script reading
    several reports could not tell which was which."""
    scores = _write_workbench_scores(tmp_path / "scores.csv")
    assert main(["scores", str(scores), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["cm_file"], report["asv_file"]) == (str(scores), None)
    assert report["eer"] == pytest.approx(0.25)


def test_scores_says_in_words_why_a_file_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``scores DIR`` printed Python's "[Errno 21] Is a directory": it says so in words, for
    the countermeasure's file as for the ASV one."""
    scores = _write_workbench_scores(tmp_path / "scores.csv")
    assert main(["scores", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"fakevoice: {tmp_path} is a folder, not a score file; give the file in it.\n"
    )
    assert main(["scores", str(scores), "--asv", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"fakevoice: {tmp_path} is a folder, not a score file; give the file in it.\n"
    )
    assert main(["scores", str(tmp_path / "absent.txt")]) == 2
    assert capsys.readouterr().err == (
        f"fakevoice: Score file {tmp_path / 'absent.txt'} does not exist.\n"
    )


def test_models_import_of_an_empty_file_names_the_file(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty file given to ``models import`` was "The uploaded model file is empty", though
    nothing was uploaded: it names the file given."""
    from fakevoice import services

    empty = isolated_settings / "model.zip"
    empty.write_bytes(b"")
    assert main(["models", "import", str(empty), "--name", "mine"]) == 2
    assert capsys.readouterr().err == (
        f"fakevoice: The file {empty} is empty (0 bytes); it holds no model.\n"
    )
    assert services.list_models(services.cli_actor()) == []


def test_dataset_render_names_an_unknown_dataset_first(
    isolated_settings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dataset render nosuch x`` asked which features to render, and only once given them
    said there was no such dataset: the unknown dataset is said first."""
    assert main(["dataset", "render", "nosuch", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fakevoice: There is no dataset named 'nosuch' in "), err
    assert not (isolated_settings / "datasets" / "x").exists()
