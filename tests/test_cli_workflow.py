"""The command line end to end: train, list, stop, predict, search and label the history,
evaluate (here and as a job for a real worker process) and calibrate, on a real SQLite store.

The commands that load the heavy libraries run as the installed console script in a process of
their own; the others run the same entry point (:func:`fakevoice.cli.main`) in this process,
which saves seconds of imports per command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike
from test_shortcuts import cue_frame
from test_training import DATASET, make_tiny_dataset, tiny_dataset_root
from workbench import FAKEVOICE, active_workbench

from fakevoice.cli import main
from fakevoice.datasets.shortcuts import audit_cues, write_audit


@dataclass(frozen=True)
class Done:
    """What a command left: its exit code and its output."""

    returncode: int
    stdout: str
    stderr: str


def run_console(env: dict[str, str], *args: str) -> Done:
    """``fakevoice ARGS`` as the installed console script, in a process of its own."""
    done = subprocess.run(
        [str(FAKEVOICE), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> Done:
    """``fakevoice ARGS`` through the same entry point, in this process."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return Done(code, out, err)


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh data folder and SQLite store holding the tiny dataset, for this process and the
    processes it starts."""
    base = tmp_path_factory.mktemp("cli")
    datasets = base / "datasets"
    shutil.copytree(tiny_dataset_root(tmp_path_factory) / DATASET, datasets / DATASET)
    env = {
        "FAKEVOICE_DATA_DIR": str(base / "data"),
        "FAKEVOICE_DATASET_DIR": str(datasets),
        "FAKEVOICE_DATABASE_URL": f"sqlite:///{base / 'cli.sqlite'}",
        "FAKEVOICE_WORKER_POLL_SECONDS": "0.2",
        "FAKEVOICE_MAX_CONCURRENT_RUNS_PER_USER": "8",
        "OMP_NUM_THREADS": "1",  # tiny models on a shared 2-core machine: faster on one thread
    }
    with active_workbench(env) as active:
        yield active


def test_cli_trains_lists_predicts_and_evaluates(
    workbench: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def console(*args: str) -> Done:
        return run_console(workbench, *args)

    def cli(*args: str) -> Done:
        return run_in_process(capsys, *args)

    trained = console(
        "train", "--dataset", DATASET, "--arch", "specnet", "--epochs", "1", "--batch-size", "4",
        "--name", "cli-run", "--inline", "--json",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    run = json.loads(trained.stdout)
    assert run["status"] == "succeeded" and run["name"] == "cli-run"
    assert [e["epoch"] for e in run["epochs_history"]] == [0]
    # The model it stored, for the command that goes on to use it (as `runs show` gives it).
    assert isinstance(run["model_id"], int)

    listed = cli("runs", "--json")
    assert listed.returncode == 0
    assert "cli-run" in [r["name"] for r in json.loads(listed.stdout)]
    jobs = cli("runs", "--jobs")
    assert jobs.returncode == 0 and "  train    cli-run" in jobs.stdout
    stopped = cli("stop", "cli-run")
    assert stopped.returncode == 0 and "succeeded" in stopped.stdout
    # The stored model's figures, as it serves verdicts (too few validation items here for a
    # calibration: it says so).
    shown = cli("runs", "show", "cli-run").stdout
    assert "  stored model: EER " in shown and "(no calibration kept)" in shown
    shown_json = json.loads(cli("runs", "show", "cli-run", "--json").stdout)
    assert shown_json["model_id"] == run["model_id"]
    stored = shown_json["stored_model"]
    assert set(stored) == {"eer", "accuracy", "macro_f1", "before_calibration"}

    clip = tmp_path / "clip.wav"
    sf.write(clip, speechlike(5.0, seed=5), 16000)
    predicted = console("predict", "--model", "cli-run", str(clip), "--json")
    assert predicted.returncode == 0, predicted.stderr
    printed_json = json.loads(predicted.stdout)
    (result,) = printed_json["results"]
    assert result["label"] in {"human", "machine-generated", "inconclusive"}
    assert result["verdict"] == result["label"]  # as the API names it
    assert set(printed_json["model"]) == {"id", "name", "arch", "version"}  # as the API names it
    assert len(printed_json["model"]["version"]) == 12 and result["analysis_id"] > 0
    assert np.isclose(result["p_human"] + result["p_fake"], 1.0)
    assert len(result["windows"]) >= 2
    # Nothing about the clip; the tiny model's own figures may earn it a caution.
    assert all(c.startswith("This model's own validation EER") for c in result["cautions"])
    phone = tmp_path / "phone.wav"
    sf.write(phone, speechlike(5.0, 8000, seed=6), 8000)  # longer than the 4 s window
    printed = cli("predict", "--model", "cli-run", str(phone))
    assert printed.returncode == 0, printed.stderr
    verdict_line, caution_line, *model_caution = printed.stdout.splitlines()
    assert verdict_line.startswith(f"{phone}: ") and "P(human) = " in verdict_line
    assert caution_line.startswith("  caution: The file was recorded at 8 kHz")
    assert all(c.startswith("  caution: This model's own validation EER") for c in model_caution)

    history = cli("history", "--find", "PHONE", "--json")
    assert history.returncode == 0, history.stderr
    found = json.loads(history.stdout)
    assert found["total"] == 1 and found["items"][0]["file_name"] == "phone.wav"
    assert found["items"][0]["source"] == "cli"
    listed = cli("history", "--model", "cli-run", "--since", "2000-01-01")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2
    phone_id = found["items"][0]["id"]
    assert verdict_line.endswith(f"(verdict #{phone_id})")  # what `fakevoice label` takes
    labelled = cli("label", str(phone_id), "--outcome", "machine-generated", "--note", "case 1")
    assert labelled.returncode == 0, labelled.stderr
    assert labelled.stdout.strip() == (
        f"verdict {phone_id} (phone.wav): really machine-generated; note: case 1"
    )
    known = json.loads(cli("history", "--outcome", "known", "--json").stdout)
    assert [(a["id"], a["note"]) for a in known["items"]] == [(phone_id, "case 1")]
    report = cli("history", "--report", str(phone_id))
    assert report.returncode == 0 and report.stdout.startswith("# Verdict: ")
    assert "- Recorded by the analyst: **machine-generated**" in report.stdout
    as_json = json.loads(cli("history", "--report", str(phone_id), "--json").stdout)
    assert as_json["outcome"] == {"really": "machine-generated", "note": "case 1"}
    exported = cli("history", "--verdict", result["label"], "--csv", "-")
    assert exported.returncode == 0 and exported.stdout.startswith("id,time_utc,file,")
    assert exported.stdout.count("clip.wav") == 1
    # One file judged, one not: exit 1, so a script can tell (0: all judged; 2: none).
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.wav"
    partial = cli("predict", "--model", "cli-run", str(clip), str(empty), str(missing))
    assert partial.returncode == 1, partial.stderr
    assert partial.stdout.startswith(f"{clip}: ")
    # Each file named once ("missing.wav: There is no audio file at missing.wav" named it twice).
    assert partial.stderr.splitlines() == [
        f"{empty}: The file is empty (0 bytes); it holds no audio.",
        f"There is no audio file at {missing}.",
    ]

    evaluated = cli("evaluate", "--model", "cli-run", "--dataset", DATASET, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["dataset"] == DATASET and 0.0 <= report["accuracy"] <= 1.0
    assert set(report["generator_eer"]) == {"griffinlim", "world"}
    assert list(report["noise_eer"]) == ["snr_inf"]  # the tiny dataset is clean only
    scores = tmp_path / "scores.csv"
    printed = cli(
        "evaluate", "--model", "cli-run", "--dataset", DATASET, "--split", "all",
        "--limit", "12", "--scores", str(scores),
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "(all, 12 items)" in printed.stdout
    assert re.search(r"EER \d+\.\d\d %  AUC [01]\.\d{4}\n", printed.stdout)
    assert re.search(r"expected calibration error \d+\.\d %", printed.stdout)
    # Its own training dataset, every item: the figures are flattered, and it says so.
    assert "in this model's training split: its figures here are flattered" in printed.stdout
    rows = scores.read_text().splitlines()
    classes = "p:bonafide,p:spoof"  # the run is binary: every class's probability follows
    assert rows[0] == f"item,speaker,class,noise,p_human,predicted,{classes}"
    assert len(rows) == 13
    assert "(all, " in printed.stdout and "EER at each noise level:" in printed.stdout
    # The confusion matrix and each class's figures, as --json has them.
    assert re.search(
        r"\n  bonafide +\d\.\d{3} +\d\.\d{3} +\d\.\d{3} +\d+ \| +\d+ +\d+\n", printed.stdout
    )
    assert "| bonafide spoof\n" in printed.stdout
    assert "clean" in printed.stdout and "griffinlim" in printed.stdout
    assert "(6 human, 3 machine items)" in printed.stdout  # a capped test: half human
    assert "note: Shortcut" not in printed.stdout  # the dataset keeps no shortcut audit
    planted = cue_frame(0, tts_lead_in=0.0)
    planted["class"] = planted["class"].replace({"tts": "world", "copy": "griffinlim"})
    write_audit(Path(workbench["FAKEVOICE_DATASET_DIR"]) / DATASET, audit_cues(planted))
    noted = cli("evaluate", "--model", "cli-run", "--dataset", DATASET, "--limit", "4")
    assert "note: Shortcut in this dataset" in noted.stdout and "world (0% EER)" in noted.stdout
    assert noted.stdout.startswith("note: ")  # before the figures it points at

    # Two models at once, in this process; the same queued as a job for a worker.
    both = cli(
        "evaluate", "--model", "cli-run", "--model", "cli-run", "--dataset", DATASET,
        "--split", "all", "--limit", "8", "--json", "--scores", str(scores),
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert [r["n"] for r in json.loads(both.stdout)] == [8, 8]
    assert scores.read_text().splitlines()[0] == (
        f"model,item,speaker,class,noise,p_human,predicted,{classes}"
    )
    queued = cli(
        "evaluate", "--model", "cli-run", "--dataset", DATASET, "--split", "all", "--limit", "8",
        "--queue", "--json",
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    test = json.loads(queued.stdout)
    assert test["status"] == "queued" and test["name"] == f"test cli-run on {DATASET}"
    early = cli("evaluate", "--results", str(test["id"]))
    assert early.returncode == 2 and "is queued; it has no result yet" in early.stderr
    worker = subprocess.Popen(
        [str(FAKEVOICE), "worker"],
        env={**os.environ, **workbench},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # --wait: queued, scored by the worker, shown when done
        waited = cli(
            "evaluate", "--model", "cli-run", "--dataset", DATASET, "--split", "all",
            "--limit", "6", "--queue", "--wait",
        )  # fmt: skip
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert waited.returncode == 0, waited.stderr
    # The test's id as it was queued, to stop it by or see it again.
    newest = json.loads(cli("runs", "--jobs", "--json").stdout)[0]
    assert waited.stderr.startswith(
        f"test {newest['id']} '{newest['name']}' queued; waiting for a worker to score it "
        f"(`fakevoice stop {newest['id']}` stops it)\n"
    )
    # The dataset's shortcut note first, then the report.
    assert waited.stdout.startswith("note: Shortcut in this dataset")
    assert f"\n\nmodel cli-run on {DATASET} (all, 6 items)" in waited.stdout
    shown = cli("evaluate", "--results", str(test["id"]), "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["n"] == 8 and report["model"]["name"] == "cli-run"

    # A copy calibrated on a dataset's labels: not on items it was trained on (that test drew
    # from all of its own dataset), on the whole of another dataset yes.
    seen = cli("calibrate", "--model", "cli-run", "--results", str(test["id"]))
    assert seen.returncode == 2 and "were in the model's training split" in seen.stderr
    own = cli("calibrate", "--model", "cli-run", "--dataset", DATASET, "--split", "all")
    assert own.returncode == 2 and "would include those it learnt from" in own.stderr
    # Its dataset copied under another name: the audio it learnt from is found by fingerprint.
    datasets = Path(workbench["FAKEVOICE_DATASET_DIR"])
    shutil.copytree(datasets / DATASET, datasets / "renamed")
    renamed = cli("evaluate", "--model", "cli-run", "--dataset", "renamed", "--json")
    assert renamed.returncode == 0, renamed.stderr
    copied = json.loads(renamed.stdout)
    assert copied["trained_on_basis"] == "audio" and 0 < copied["trained_on"] < copied["n"]
    printed = cli("evaluate", "--model", "cli-run", "--dataset", "renamed", "--limit", "24")
    assert "have the same audio as clips this model was trained on" in printed.stdout
    again = cli("calibrate", "--model", "cli-run", "--dataset", "renamed")
    assert again.returncode == 2 and "same audio as clips the model was trained on" in again.stderr
    make_tiny_dataset(Path(workbench["FAKEVOICE_DATASET_DIR"]) / "fresh", first_seed=70_000)
    calibrated = cli(
        "calibrate", "--model", "cli-run", "--dataset", "fresh", "--name", "cli-run tuned",
        "--json",
    )  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stderr
    copy = json.loads(calibrated.stdout)
    assert copy["name"] == "cli-run tuned" and copy["calibration"]["dataset"] == "fresh"
    assert copy["calibration"]["items"] >= 20 and copy["calibration"]["temperature"] > 0
    listed_models = json.loads(cli("models", "--json").stdout)
    assert {"cli-run", "cli-run tuned"} <= {m["name"] for m in listed_models}
    # Two models on the same items: their fused score too.
    fused = cli(
        "evaluate", "--model", "cli-run", "--model", "cli-run tuned", "--dataset", DATASET,
        "--split", "all", "--limit", "24",
    )  # fmt: skip
    assert fused.returncode == 0, fused.stderr
    assert (
        "fusion: cli-run + cli-run tuned (mean of their log-odds of human, 24 shared items)"
        in fused.stdout
    )

    # The console script for the ones that load the heavy libraries (not a warning of theirs may
    # reach the user), the others in this process: one line on stderr, exit code 2.
    for run, bad in (
        (console, ("train", "--dataset", DATASET, "--epochs", "0", "--inline")),
        (cli, ("evaluate", "--dataset", DATASET)),
        (cli, ("evaluate", "--results", str(test["id"]), "--model", "cli-run")),
        (cli, ("calibrate", "--model", "cli-run")),
        (
            console,
            ("calibrate", "--model", "cli-run", "--dataset", DATASET, "--name", "cli-run tuned"),
        ),
        (console, ("predict", "--model", "no-such-model", str(clip))),
        (cli, ("history", "--since", "yesterday")),
        (cli, ("history", "--since", "2026-02-01", "--until", "2026-01-01")),
        (cli, ("label", "999999", "--outcome", "human")),
        (cli, ("history", "--report", "999999")),
        (cli, ("label", "1")),
    ):
        failed = run(*bad)
        assert failed.returncode == 2, (bad, failed.stderr)
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fakevoice: "), failed.stderr

    # Why: the bands and the window the decision is most sensitive to (not logged twice).
    explained = cli("predict", "--model", "cli-run", str(clip), "--explain")
    assert explained.returncode == 0, explained.stderr
    why = explained.stdout.splitlines()[-1]
    assert re.fullmatch(
        r"  why: window \d+\.\d\d-\d+\.\d\d s \(P\(human\) \d\.\d{3}\) is most sensitive to .+ %\)",
        why,
    ), why
    as_json = cli("predict", "--model", "cli-run", str(clip), "--explain", "--json")
    (result,) = json.loads(as_json.stdout)["results"]
    heat = result["explanation"]["heatmap"]  # as the history keeps it: 32 cells a side at most
    assert len(result["explanation"]["bands"]) == 8 and max(len(heat), len(heat[0])) == 32
    assert sum(b["share"] for b in result["explanation"]["bands"]) == pytest.approx(1.0)
    # It is kept with the verdict: the history and its report show it again.
    newest = json.loads(cli("history", "--json").stdout)["items"][0]
    assert newest["file_sha256"] == result["file_sha256"]
    assert newest["explanation"] == result["explanation"]
    again = cli("history", "--report", str(newest["id"]))
    assert "## Why: where the decision is most sensitive" in again.stdout


def test_a_run_is_shown_and_started_again_from_its_spec(
    workbench: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cli(*args: str) -> Done:
        return run_in_process(capsys, *args)

    queued = cli(
        "train", "--dataset", DATASET, "--epochs", "2", "--batch-size", "4", "--mixup", "0.2",
        "--early-stopping", "3", "--noise", "snr_inf", "--name", "recipe",
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    names = ["recipe"]
    try:
        shown = cli("runs", "show", "recipe", "--json")
        assert shown.returncode == 0, shown.stderr
        run = json.loads(shown.stdout)
        spec = run["spec"]
        assert (run["status"], run["model_id"], run["epochs_history"]) == ("queued", None, [])
        # No worker runs here (the test before stopped its own): it says so at once.
        assert run["waiting"].startswith("No worker is running (")
        assert spec["epochs"] == 2 and spec["noise_levels"] == ["snr_inf"]
        assert spec["augment"]["mixup"] == 0.2
        assert spec["callbacks"]["early_stopping_patience"] == 3
        text = cli("runs", "show", str(run["id"])).stdout
        assert f"run {run['id']} 'recipe' (train): queued" in text
        assert f"fakevoice train --from {run['id']} repeats it" in text and '"mixup": 0.2' in text

        def spec_of(name: str) -> dict[str, object]:
            return dict(json.loads(cli("runs", "show", name, "--json").stdout)["spec"])

        # No worker here: --wait gives up after --timeout and says the run goes on.
        waited = cli("train", "--from", "recipe", "--name", "waited", "--wait", "--timeout", "1")
        names.append("waited")
        assert waited.returncode == 0, waited.stderr
        assert "stopped waiting after 1 s; the run goes on" in waited.stderr
        assert "note: No worker is running (" in waited.stderr  # said while it waited
        assert "run" in waited.stdout and ": queued" in waited.stdout
        # Another run from the first: what the command line gives changes, the rest stays.
        again = cli("train", "--from", "recipe", "--epochs", "1", "--name", "again")
        assert again.returncode == 0, again.stderr
        names.append("again")
        assert spec_of("again") == {**spec, "epochs": 1}
        # A callback the first had on is turned off with "off".
        calm = cli("train", "--from", "recipe", "--early-stopping", "off", "--name", "calm")
        assert calm.returncode == 0, calm.stderr
        names.append("calm")
        off = {**spec["callbacks"], "early_stopping_patience": None}
        assert spec_of("calm") == {**spec, "callbacks": off}
        # From a file: what `runs show --json` printed, or a bare spec.
        printed = tmp_path / "run.json"
        printed.write_text(shown.stdout)
        from_file = cli("train", "--spec", str(printed), "--no-save-best", "--name", "file")
        assert from_file.returncode == 0, from_file.stderr
        names.append("file")
        assert spec_of("file") == {**spec, "callbacks": {**spec["callbacks"], "save_best": False}}

        bad_files = {
            "text.json": "epochs: 3",
            "list.json": "[1, 2]",
            "unknown.json": json.dumps({**spec, "shuffle": True}),
            "flag.json": json.dumps({**spec, "class_weighting": "yes"}),
            "whole.json": json.dumps({**spec, "epochs": 2.5}),
        }
        for name, content in bad_files.items():
            (tmp_path / name).write_text(content)
        for bad, words in (
            (("--spec", str(tmp_path / "text.json")), "is not JSON"),
            (("--spec", str(tmp_path / "list.json")), "JSON object of training options"),
            (("--spec", str(tmp_path / "unknown.json")), "unknown training option(s): shuffle"),
            (("--spec", str(tmp_path / "flag.json")), "class_weighting must be true or false"),
            (("--spec", str(tmp_path / "whole.json")), "epochs must be a whole number"),
            (("--spec", str(tmp_path / "absent.json")), "Cannot read the spec"),
            (("--spec", str(printed), "--from", "recipe"), "not both"),
            (("--from", "no-such-run"), "no job called 'no-such-run'"),
            (("--from", "recipe", "--early-stopping", "0"), "early_stopping_patience must be"),
            (("runs", "show"), "Name the run to show"),
        ):
            args = bad if bad[0] == "runs" else ("train", *bad)
            failed = cli(*args)
            assert failed.returncode == 2, (bad, failed.stderr)
            assert words in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
    finally:
        for name in names:
            cli("stop", name)
    # A job that has ended is deleted, with a yes.
    unsure = cli("runs", "delete", "again")
    assert unsure.returncode == 2 and "and the model it stored for good: add --yes" in unsure.stderr
    deleted = cli("runs", "delete", "again", "--yes")
    assert deleted.returncode == 0 and "deleted train job" in deleted.stdout
    gone = cli("runs", "show", "again")
    assert gone.returncode == 2 and "no job called 'again'" in gone.stderr


def test_ctrl_c_while_waiting_says_the_run_goes_on(
    workbench: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in ``train --wait`` printed only "interrupted", as if the run had stopped: it ends
    the waiting, and says the run goes on and how to stop it."""
    import signal
    import time

    waiting = subprocess.Popen(
        [str(FAKEVOICE), "train", "--dataset", DATASET, "--epochs", "1", "--name", "ctrl-c",
         "--wait"],
        env={**os.environ, **workbench},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal's Ctrl-C finds it, whatever this process does with SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while run_in_process(capsys, "runs", "show", "ctrl-c").returncode != 0:
            assert waiting.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.5)  # queued, so it waits (no worker runs here)
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 130, err
        run = json.loads(run_in_process(capsys, "runs", "show", "ctrl-c", "--json").stdout)
        assert run["status"] == "queued"
        assert (
            f"stopped waiting: run {run['id']} 'ctrl-c' goes on (`fakevoice stop {run['id']}` "
            "stops it)\nfakevoice: interrupted\n"
        ) in err
    finally:
        waiting.kill()
        run_in_process(capsys, "stop", "ctrl-c")
