"""The Profile page (AppTest, in-process) and the profile services, with two users and an admin.

Finished runs are written the way the worker leaves them: a run row that went queued -> running
-> succeeded with its epoch metrics, a run folder with the artefact files, and a model row that
points at the folder. The files hold small stand-in bytes (no training in these tests).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from PIL import Image
from streamlit.testing.v1 import AppTest

from fakevoice import accounts, services, store
from fakevoice.errors import InvalidSpecError, NotFoundError, PermissionDeniedError
from fakevoice.services import comparison, profile, profile_rows, results, tokens
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, EpochMetric, ModelRecord, RunRecord

PASSWORD = "correct horse 42"
USER_KEY = "fakevoice_user_id"  # components.auth.USER_KEY, the sign-in contract
SPEC = {"dataset": "demo", "arch": "specnet", "epochs": 2}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def run_files(tag: str) -> dict[str, bytes]:
    """Stand-ins for the files a finished run leaves (contents name the run, for checks)."""
    return {
        "model.pkl": f"fastai export of {tag}".encode(),
        "model.safetensors": f"weights of {tag}".encode(),
        "manifest.json": json.dumps({"arch": "specnet", "run": tag}).encode(),
        "history.csv": b"epoch,train_loss,valid_loss,accuracy,macro_f1,eer,seconds\n0,0.7,0.6,0.8,0.8,0.2,1\n",
        "loss_curve.png": _png(),
        "confusion.png": _png(),
    }


def finished_run(
    actor: Actor,
    name: str,
    *,
    public: bool = False,
    eer: float = 0.125,
    accuracy: float = 0.9,
    spec: dict[str, Any] | None = None,
) -> tuple[RunRecord, ModelRecord]:
    """A succeeded run of two epochs (EER 25 %, then ``eer``) with its folder of files and its
    model."""
    from fakevoice.jobs.runner import run_dir_for

    with store.session_scope() as session:
        run = store.create_run(session, actor, name, spec or SPEC)
    with store.session_scope() as session:
        store.set_status(session, run.id, "running")
        store.append_epoch_metrics(
            session,
            run.id,
            [
                EpochMetric(epoch=0, train_loss=0.7, valid_loss=0.6, accuracy=0.8, eer=0.25),
                EpochMetric(epoch=1, train_loss=0.5, valid_loss=0.4, accuracy=accuracy, eer=eer),
            ],
        )
        store.set_status(session, run.id, "succeeded")
    folder = run_dir_for(run.id)
    folder.mkdir(parents=True)
    files = run_files(name)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    model = add_model(
        actor, name, public=public, eer=eer, accuracy=accuracy, run_id=run.id, folder=folder
    )
    with store.session_scope(readonly=True) as session:
        return store.get_run(session, actor, run.id), model


def add_model(
    actor: Actor,
    name: str,
    *,
    public: bool,
    eer: float,
    accuracy: float,
    run_id: int | None = None,
    folder: Path | None = None,
) -> ModelRecord:
    """A model row (an imported one when ``run_id`` is None, with its own folder)."""
    if folder is None:
        folder = get_settings().data_dir / "models" / hashlib.sha1(name.encode()).hexdigest()
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"weights")
        (folder / "manifest.json").write_bytes(json.dumps({"arch": "specnet"}).encode())
    with store.session_scope() as session:
        return store.add_model(
            session,
            actor,
            name=name,
            arch="specnet",
            class_names=["bonafide", "world"],
            sample_rate=16000,
            clip_samples=16000,
            path=str(folder),
            files={  # as the worker and the uploads record them: every file's sha256
                f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                for f in folder.iterdir()
                if f.name in ("model.pkl", "model.safetensors", "manifest.json")
            },
            metrics={
                "eer": eer,
                "accuracy": accuracy,
                "eer_interval": {"eer": eer, "low": eer / 2, "high": 2 * eer, "level": 0.95},
            },
            run_id=run_id,
            is_public=public,
        )


@pytest.fixture
def two_users(isolated_settings: Path) -> Iterator[dict[str, Any]]:
    """alice with a private run and a public one, bob with one run; root, an administrator."""
    alice = accounts.register("alice", PASSWORD, display_name="Alice A").actor
    bob = accounts.register("bob", PASSWORD).actor
    root = accounts.register("root", PASSWORD, is_admin=True).actor
    private_run, private_model = finished_run(alice, "alice private", eer=0.125, accuracy=0.9)
    public_run, public_model = finished_run(alice, "alice shared", public=True, eer=0.05)
    bob_run, bob_model = finished_run(bob, "bob run", eer=0.3, accuracy=0.7)
    yield {
        "alice": alice,
        "bob": bob,
        "root": root,
        "private_run": private_run,
        "private_model": private_model,
        "public_run": public_run,
        "public_model": public_model,
        "bob_run": bob_run,
    }
    store.dispose_engines()


def profile_page(actor: Actor | None, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    if actor is not None:
        at.session_state[USER_KEY] = actor.user_id
    at.run()
    at.switch_page("pages/profile.py")
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return at.run()


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


TABLES = {  # each table on the page, known by columns that only it has
    "public_models": ("model", "created", "EER (%)"),
    "my_runs": ("run", "dataset", "EER (%)"),
    "my_models": ("model", "public", "date"),
    "my_tokens": ("name", "starts with"),
    "history": ("epoch", "valid_loss"),
    "admin_runs": ("owner", "job", "kind"),
    "admin_users": ("user", "admin"),
    "admin_workers": ("worker", "backend", "last seen"),
    "compare": ("best_eer", "final_eer"),
}


def tables(at: AppTest) -> dict[str, Any]:
    """The page's tables by name (see :data:`TABLES`); each name appears at most once."""
    found: dict[str, Any] = {}
    for frame in at.dataframe:
        value = frame.value
        names = [n for n, cols in TABLES.items() if set(cols) <= set(value.columns)]
        assert len(names) <= 1, names
        if names:
            assert names[0] not in found, names[0]
            found[names[0]] = value
    return found


def button(at: AppTest, label: str) -> Any:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    return matches[0]


def checkbox_keys(at: AppTest) -> list[str | None]:
    return [box.key for box in at.checkbox]


def page_text(at: AppTest) -> str:
    parts = [str(t) for t in tables(at).values()]
    for kind in (at.markdown, at.caption, at.title, at.selectbox, at.button, at.text_input):
        parts.extend(str(getattr(e, "value", "")) + str(getattr(e, "label", "")) for e in kind)
    parts.extend(str(o) for box in at.selectbox for o in box.options)
    return " ".join(parts)


# --- public view ---------------------------------------------------------------------------------


def test_public_view_signed_out_shows_only_public_models(two_users: dict[str, Any]) -> None:
    at = profile_page(None, {"user": "alice"})
    assert_no_exception(at)
    assert at.title[0].value == "Alice A"
    table = tables(at)["public_models"]
    assert list(table["model"]) == ["alice shared"]
    assert "owner" not in table.columns  # every row's would be alice, the page's title
    assert list(table["EER (%)"]) == [5.0]
    assert list(table["EER 95 % interval"]) == ["2.5-10.0"]
    assert "alice private" not in page_text(at)
    assert not at.tabs  # none of the owner's sections


def test_a_model_without_an_eer_interval_gets_the_tables_dash() -> None:
    # None, not "": the model tables' placeholder "—" then marks it as every missing figure.
    assert profile_rows.eer_interval_text({"eer": 0.4}) is None
    assert (
        profile_rows.eer_interval_text({"eer_interval": {"low": 0.025, "high": 0.1}}) == "2.5-10.0"
    )


LURE = (
    "[Your session ended: sign in again](https://evil.example/login) "
    "![](https://evil.example/p.png)"
)


def test_a_display_name_is_shown_as_typed_never_as_markdown(two_users: dict[str, Any]) -> None:
    """A display name is anyone's to choose and shows on a public page: as Markdown it became a
    link on this server's page, and an image that told another server who looked."""
    accounts.register("mallory", PASSWORD, display_name=LURE)
    at = profile_page(None, {"user": "mallory"})
    assert_no_exception(at)
    shown = [at.title[0].value, at.info[0].value]
    for text in shown:
        assert "](" not in text and "\\[Your session ended\\: sign in again\\]" in text
    assert shown[0] == (
        "\\[Your session ended\\: sign in again\\]\\(https\\:\\/\\/evil\\.example\\/login\\) "
        "\\!\\[\\]\\(https\\:\\/\\/evil\\.example\\/p\\.png\\)"
    )
    assert shown[1].endswith(" has not made any model public.")


def test_public_view_of_an_unknown_user_is_a_message(two_users: dict[str, Any]) -> None:
    at = profile_page(None, {"user": "nobody"})
    assert_no_exception(at)
    assert "There is no user called 'nobody'" in at.error[0].value
    # A link in the URL is shown as typed, never as a link in the page's own error box.
    at = profile_page(None, {"user": "[Sign in again](https://evil.example)"})
    assert "\\[Sign in again\\]\\(https\\:" in at.error[0].value


def test_signed_out_without_user_param_is_asked_to_sign_in(two_users: dict[str, Any]) -> None:
    at = profile_page(None)
    assert_no_exception(at)
    assert "Sign in" in at.info[0].value
    assert not at.dataframe


# --- my profile ----------------------------------------------------------------------------------


def test_my_profile_lists_every_run_with_results_and_downloads(two_users: dict[str, Any]) -> None:
    at = profile_page(two_users["alice"])
    assert_no_exception(at)
    assert at.title[0].value == "My profile"
    runs = tables(at)["my_runs"]
    assert set(runs["run"]) == {"alice private", "alice shared"}
    row = runs[runs["run"] == "alice private"].iloc[0]
    assert (row["arch"], row["dataset"], row["status"]) == ("specnet", "demo", "succeeded")
    assert (row["EER (%)"], row["accuracy (%)"]) == (12.5, 90.0)
    assert set(tables(at)["my_models"]["model"]) == {"alice private", "alice shared"}
    # Open the private run: figures, history, images and the five downloads.
    from fakevoice.jobs.runner import run_dir_for

    calibrated = {
        "accuracy": 0.9,
        "eer": 0.125,
        "calibration": {"temperature": 1.2, "bias": [0.0, 0.1], "items": 40},
        "before_calibration": {"accuracy": 0.8, "macro_f1": 0.75, "eer": 0.125},
    }
    (run_dir_for(two_users["private_run"].id) / "metrics.json").write_text(json.dumps(calibrated))
    at.selectbox(key="profile_run").select(two_users["private_run"].id).run()
    assert_no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["EER"] == "12.5%" and metrics["status"] == "succeeded"
    # The headline accuracy is the calibrated model's, the epochs' the network's own: it says so.
    (before,) = [c.value for c in at.caption if "before calibration" in c.value]
    assert "accuracy 80.0%, macro F1 0.750, EER 12.5%" in before
    assert list(tables(at)["history"]["epoch"]) == [1, 2]  # counted from 1, as on Train
    assert sorted(c for image in at.image for c in image.captions) == [
        "confusion.png",
        "loss_curve.png",
    ]
    offered = {b.proto.label for b in at.get("download_button") if "-my_models_" not in b.proto.id}
    assert offered == {  # as the Train page offers them
        "fastai export (.pkl)",
        "Epoch history (CSV)",
        "Loss curve (PNG)",
        "Confusion matrix (PNG)",
        "Safe bundle (zip)",
        "Model card (Markdown)",  # the run's stored model's, as the Models tab offers it
        "Run comparison (CSV)",  # on the Compare runs tab
    }
    names = {b.proto.label: b.proto.id for b in at.get("download_button")}
    assert names["Epoch history (CSV)"].endswith("-profile_run1_download_history.csv")


def test_a_run_says_which_epoch_its_stored_model_is_from(two_users: dict[str, Any]) -> None:
    # Save-best (the default) keeps the epoch of the lowest validation EER: the headline figures
    # are that epoch's, and the history's last row may say otherwise.
    alice = two_users["alice"]
    earlier, _ = finished_run(alice, "best first", eer=0.4)  # epochs: EER 25 %, then 40 %
    last, _ = finished_run(
        alice, "no save-best", eer=0.4, spec={**SPEC, "callbacks": {"save_best": False}}
    )

    def said(run: RunRecord) -> list[str]:
        at = profile_page(alice, {"run": str(run.id)})
        assert_no_exception(at)
        assert at.selectbox(key="profile_run").value == run.id
        return [c.value for c in at.caption if c.value.startswith("The stored model is from")]

    assert said(earlier) == ["The stored model is from epoch 1 of 2 (lowest validation EER)."]
    assert said(two_users["private_run"]) == [  # EER 25 %, then 12.5 %: the last is the best
        "The stored model is from epoch 2 of 2 (lowest validation EER)."
    ]
    assert said(last) == ["The stored model is from epoch 2 of 2 (the last)."]


def test_compare_runs_side_by_side(two_users: dict[str, Any]) -> None:
    from fakevoice.jobs.runner import run_dir_for

    alice, private = two_users["alice"], two_users["private_run"]
    final = {
        "noise_eer": {"snr_inf": 0.1, "snr_0db": 0.3},
        "generator_eer": {"world": 0.2},
        "eer_interval": {"eer": 0.125, "low": 0.05, "high": 0.2, "level": 0.95, "groups": 40},
    }
    (run_dir_for(private.id) / "metrics.json").write_text(json.dumps(final))
    # Both runs scored the same 40 validation utterances (a human clip and two copies each):
    # the private run's model separates them, the shared one's is noise.
    rng = np.random.default_rng(0)
    human = np.tile([True, False, False], 40)
    items = [
        f"u{n // 3}__{'bonafide' if h else 'world'}{n % 3}__snr_inf" for n, h in enumerate(human)
    ]
    for run, p_human in (
        (private, np.where(human, 0.9, 0.1) + rng.normal(scale=0.05, size=human.size)),
        (two_users["public_run"], rng.random(human.size)),
    ):
        pd.DataFrame(
            {
                "item": items,
                "utterance": [item.split("__")[0] for item in items],
                "speaker": "s",
                "class": np.where(human, "bonafide", "world"),
                "noise": "snr_inf",
                "p_human": np.clip(p_human, 0.0, 1.0),
            }
        ).to_csv(run_dir_for(run.id) / "valid_scores.csv", index=False)
    at = profile_page(alice)
    assert_no_exception(at)
    (picker,) = [m for m in at.multiselect if m.key == "profile_compare_runs"]
    assert set(picker.options) == {
        f"alice private (specnet, #{two_users['private_run'].id})",
        f"alice shared (specnet, #{two_users['public_run'].id})",
    }
    compare = tables(at)["compare"]
    assert set(compare["name"]) == {"alice private", "alice shared"}
    row = compare[compare["name"] == "alice private"].iloc[0]
    assert (row["best_eer"], row["final_eer"], row["epochs"]) == (0.125, 0.125, 2)
    assert (row["eer_low"], row["eer_high"]) == (0.05, 0.2)  # the model's interval
    assert compare[compare["name"] == "alice shared"]["eer_low"].isna().all()
    assert list(compare.columns)[-3:] == ["eer@snr_inf", "eer@snr_0db", "eer@world"]
    assert row["eer@snr_0db"] == 0.3
    assert compare[compare["name"] == "alice shared"]["eer@world"].isna().all()
    # The note on the columns names them as the table's headers do, not as the CSV does.
    (note,) = [c.value for c in at.caption if "interval (95 %" in c.value]
    assert note.startswith("eer low to eer high:") and "eer_" not in note and "eer@" not in note
    (by_epoch,) = at.get("vega_lite_chart")  # validation EER by epoch, one line per run
    epoch_axis = json.loads(by_epoch.proto.spec)["encoding"]["x"]["axis"]
    assert epoch_axis["format"] == "d"  # whole epochs: not "1.000000" under a 1-epoch run
    # Paired on their shared validation items: the first chosen against the other.
    (pairs,) = [f.value for f in at.dataframe if "EER difference (points)" in f.value.columns]
    (pair,) = pairs.to_dict("records")
    assert pair["items"] == 120 and abs(pair["EER difference (points)"]) > 20
    assert pair["verdict"] == "alice private is better (lower in 100% of the draws)"
    assert not any("Not in a pair" in c.value for c in at.caption)
    # A run without kept validation scores is named, not silently left out.
    (run_dir_for(two_users["public_run"].id) / "valid_scores.csv").unlink()
    at.run()
    assert not [f for f in at.dataframe if "EER difference (points)" in f.value.columns]
    assert any("Not in a pair: alice shared (trained before" in c.value for c in at.caption)
    assert "Their recipes are the same" in " ".join(c.value for c in at.caption)

    # A run with another recipe: the options that differ, run by run.
    with store.session_scope() as session:
        other = store.create_run(
            session,
            alice,
            "alice mixup",
            {
                **SPEC,
                "epochs": 3,
                "seed": 4,
                "augment": {"mixup": 0.2},
                "noise_levels": ["snr_inf"],
            },
        )
    at = profile_page(alice)
    at.multiselect(key="profile_compare_runs").set_value([private.id, other.id]).run()
    assert_no_exception(at)
    (differences,) = [f.value for f in at.dataframe if f.value.index.name == "option"]
    assert differences.to_dict(orient="index") == {
        "noise_levels": {"alice private": "all", "alice mixup": "snr_inf"},
        "epochs": {"alice private": "2", "alice mixup": "3"},
        "seed": {"alice private": "0", "alice mixup": "4"},
        "augment.mixup": {"alice private": "0.0", "alice mixup": "0.2"},
    }

    with pytest.raises(NotFoundError):
        comparison.compare_runs(two_users["bob"], [private.id])
    with pytest.raises(InvalidSpecError, match="Compare 1 to 8 runs"):
        comparison.compare_runs(alice, [])
    curves = comparison.compare_runs(alice, [private.id]).curves
    assert list(curves["epoch"]) == [1, 2] and list(curves["eer"]) == [0.25, 0.125]


def test_run_names_in_a_comparison_csv_cannot_act_as_formulas(two_users: dict[str, Any]) -> None:
    """A run name is its owner's words, and an administrator compares anyone's runs: a name
    starting with = became a formula in the spreadsheet that opened the CSV."""
    lure = '=HYPERLINK("https://evil.example","open")'
    bob_run, _ = finished_run(two_users["bob"], lure)
    compared = comparison.compare_runs(two_users["root"], [bob_run.id, two_users["bob_run"].id])
    rows = list(csv.DictReader(io.StringIO(compared.csv())))
    assert [row["name"] for row in rows] == ["'" + lure, "bob run"]
    summaries = comparison.summaries_csv(comparison.run_summaries(two_users["bob"]))
    names = [row["name"] for row in csv.DictReader(io.StringIO(summaries))]
    assert names == ["'" + lure, "bob run"]


def test_the_run_param_opens_my_run_and_refuses_anyone_elses(two_users: dict[str, Any]) -> None:
    shared = two_users["public_run"]
    at = profile_page(two_users["alice"], {"run": str(shared.id)})
    assert_no_exception(at)
    assert at.selectbox(key="profile_run").value == shared.id
    # bob asks for alice's runs by id: not found, nothing of hers shown.
    for run in (two_users["private_run"], shared):
        at = profile_page(two_users["bob"], {"run": str(run.id)})
        assert_no_exception(at)
        assert f"There is no run with id '{run.id}'" in at.error[0].value
        assert "alice" not in page_text(at)
        (bob_run,) = at.selectbox(key="profile_run").options
        assert bob_run.startswith("bob run (#")


def ended_runs(actor: Actor, names: list[str], kind: Any = "train") -> list[int]:
    """Runs (or jobs of ``kind``) of ``actor``'s that started and failed, oldest first."""
    ids = []
    for name in names:
        with store.session_scope() as session:
            run = store.create_run(session, actor, name, SPEC, kind=kind)
            store.set_status(session, run.id, "running")
            store.set_status(session, run.id, "failed", error="stopped by the test")
        ids.append(run.id)
    return ids


def captions(at: AppTest) -> str:
    return " | ".join(c.value for c in at.caption)


def test_my_runs_show_a_page_at_a_time_and_any_run_is_found(two_users: dict[str, Any]) -> None:
    alice, private = two_users["alice"], two_users["private_run"]
    ids = ended_runs(alice, [f"Trial {i:02d}" for i in range(22)])
    at = profile_page(alice)
    assert_no_exception(at)
    newest = [f"Trial {i:02d}" for i in range(21, 1, -1)]
    assert list(tables(at)["my_runs"]["run"]) == newest
    assert "24 runs; newest first (times in UTC), page 1 of 2." in captions(at)
    assert at.selectbox(key="profile_run").options == [
        f"Trial {i:02d} (#{ids[i]})" for i in range(21, 1, -1)
    ]
    at.number_input(key="profile_runs_page").set_value(2).run()
    assert_no_exception(at)
    assert list(tables(at)["my_runs"]["run"]) == [
        "Trial 01",
        "Trial 00",
        "alice shared",
        "alice private",
    ]
    at.text_input(key="profile_runs_find").input("PRIVATE").run()
    assert list(tables(at)["my_runs"]["run"]) == ["alice private"]
    assert "1 run match; newest first (times in UTC), page 1 of 1." in captions(at)
    at.text_input(key="profile_runs_find").input("no such run").run()
    assert "No run matches." in captions(at)
    # A run asked for by the URL opens, on the first page or not.
    at = profile_page(alice, {"run": str(private.id)})
    assert_no_exception(at)
    assert at.selectbox(key="profile_run").value == private.id
    assert at.selectbox(key="profile_run").options[0] == f"alice private (#{private.id})"
    assert "alice private" not in set(tables(at)["my_runs"]["run"])  # not on this page

    # Runs to compare: any run, found by name, beside those chosen; the newest 50 offered.
    ended_runs(alice, [f"Later {i:02d}" for i in range(40)])
    at = profile_page(alice)
    picker = at.multiselect(key="profile_compare_runs")
    assert len(picker.options) == 50 and f"alice private (specnet, #{private.id})" not in (
        picker.options
    )
    assert "The newest 50 runs that match are offered" in captions(at)
    at.text_input(key="profile_compare_find").input("trial 0").run()
    chosen = [ids[0], ids[1]]
    at.multiselect(key="profile_compare_runs").set_value(chosen).run()
    at.text_input(key="profile_compare_find").input("alice").run()
    assert_no_exception(at)
    picker = at.multiselect(key="profile_compare_runs")
    assert picker.options == [
        f"Trial 00 (specnet, #{ids[0]})",  # those chosen stay, with what matches
        f"Trial 01 (specnet, #{ids[1]})",
        f"alice shared (specnet, #{two_users['public_run'].id})",
        f"alice private (specnet, #{private.id})",
    ]
    picker.set_value([*chosen, private.id]).run()
    assert_no_exception(at)
    assert list(tables(at)["compare"]["name"]) == ["Trial 00", "Trial 01", "alice private"]


def test_my_models_and_everyones_jobs_show_a_page_at_a_time(two_users: dict[str, Any]) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    for i in range(20):
        add_model(alice, f"Imported {i:02d}", public=False, eer=0.1, accuracy=0.9)
    at = profile_page(alice)
    assert_no_exception(at)
    assert list(tables(at)["my_models"]["model"]) == [
        f"Imported {i:02d}" for i in range(19, -1, -1)
    ]
    assert "22 models; newest first (times in UTC), page 1 of 2." in captions(at)
    assert len(at.selectbox(key="my_models_pick").options) == 20
    at.number_input(key="my_models_page").set_value(2).run()
    assert set(tables(at)["my_models"]["model"]) == {"alice private", "alice shared"}
    at.text_input(key="my_models_find").input("imported 1").run()
    assert_no_exception(at)
    assert list(tables(at)["my_models"]["model"]) == [f"Imported {i:02d}" for i in range(19, 9, -1)]
    assert "10 models match" in captions(at)
    at.text_input(key="my_models_find").input("nothing").run()
    assert "No model matches." in captions(at)

    ended_runs(bob, [f"bob build {i:02d}" for i in range(20)], kind="dataset")
    with store.session_scope() as session:
        queued = store.create_run(session, bob, "queued long ago", SPEC)
    ended_runs(bob, [f"bob later {i:02d}" for i in range(20)])
    at = profile_page(two_users["root"])
    assert_no_exception(at)
    jobs = tables(at)["admin_runs"]
    assert list(jobs["job"]) == [f"bob later {i:02d}" for i in range(19, -1, -1)]
    assert "44 jobs; newest first (times in UTC), page 1 of 3." in captions(at)
    # A queued job can be stopped from any page.
    assert at.selectbox(key="admin_stop_job").options == ["queued long ago (bob, queued)"]
    at.text_input(key="admin_jobs_find").input("build 1").run()
    assert_no_exception(at)
    jobs = tables(at)["admin_runs"]
    assert list(jobs["job"]) == [f"bob build {i:02d}" for i in range(19, 9, -1)]
    assert set(jobs["owner"]) == {"bob"} and set(jobs["kind"]) == {"dataset build"}
    assert services.get_run(bob, queued.id).status == "queued"


def test_share_rename_and_delete_with_confirmation(two_users: dict[str, Any]) -> None:
    alice = two_users["alice"]
    run, model = two_users["private_run"], two_users["private_model"]
    at = profile_page(alice, {"run": str(run.id)})
    button(at, "Make public").click().run()
    assert_no_exception(at)
    assert model.id in {m.model.id for m in profile.public_models(owner="alice")}
    assert "is public now" in at.success[0].value

    at.text_input(key=f"rename_name_{model.id}").input("alice renamed")
    button(at, "Rename").click().run()
    assert_no_exception(at)
    with store.session_scope(readonly=True) as session:
        assert store.get_model(session, alice, model.id).name == "alice renamed"
    # A name that is taken is a message.
    at.text_input(key=f"rename_name_{model.id}").input("alice shared")
    button(at, "Rename").click().run()
    assert "already a model named 'alice shared'" in at.error[0].value

    folder = profile.run_folder(run.id)
    assert folder.is_dir()
    label = "Delete run 'alice private' and its model…"
    button(at, label).click().run()
    assert "cannot be undone" in at.warning[0].value
    button(at, "Cancel").click().run()
    with store.session_scope(readonly=True) as session:
        store.get_run(session, alice, run.id)  # still there
    button(at, label).click().run()
    button(at, "Yes, delete").click().run()
    assert_no_exception(at)
    assert "was deleted" in at.success[0].value
    with store.session_scope(readonly=True) as session:
        with pytest.raises(NotFoundError):
            store.get_run(session, alice, run.id)
        with pytest.raises(NotFoundError):
            store.get_model(session, alice, model.id)
    assert not folder.exists()
    assert list(tables(at)["my_runs"]["run"]) == ["alice shared"]


def test_imported_model_without_a_run_can_be_deleted(two_users: dict[str, Any]) -> None:
    alice = two_users["alice"]
    imported = add_model(alice, "imported aasist", public=False, eer=0.01, accuracy=0.99)
    at = profile_page(alice)
    button(at, "Delete model 'imported aasist'…").click().run()
    button(at, "Yes, delete").click().run()
    assert_no_exception(at)
    assert not Path(imported.path).exists()
    assert "imported aasist" not in set(tables(at)["my_models"]["model"])


def test_tokens_are_created_shown_once_listed_and_revoked(two_users: dict[str, Any]) -> None:
    at = profile_page(two_users["alice"])
    # The field takes no more than a token name may hold (the form is cleared when sent).
    assert at.text_input(key="token_name").max_chars == tokens.MAX_TOKEN_NAME_LENGTH == 64
    at.text_input(key="token_name").input("my script")
    button(at, "Create token").click().run()
    assert_no_exception(at)
    secret = at.code[0].value
    assert secret.startswith("fv_")
    assert list(tables(at)["my_tokens"]["name"]) == ["my script"]
    at.run()  # shown once: gone on the next run
    assert not at.code
    assert secret not in page_text(at)
    button(at, "Revoke").click().run()
    assert_no_exception(at)
    assert tables(at)["my_tokens"]["revoked"][0] != ""
    assert list(tables(at)["my_tokens"]["may"]) == ["everything"]

    # A token for another system's settings: verdicts only.
    at.text_input(key="token_name").input("call centre")
    at.radio(key="token_scope").set_value("verdicts")
    button(at, "Create token").click().run()
    assert_no_exception(at)
    listed = tables(at)["my_tokens"]
    assert list(listed["name"]) == ["call centre", "my script"]
    assert list(listed["may"]) == ["verdicts only", "everything"]
    (made,) = [t for t in tokens.list_tokens(two_users["alice"]) if t.name == "call centre"]
    assert made.scope == "verdicts"

    # A second active token of the same name is refused: the two could not be told apart.
    at.text_input(key="token_name").input("call centre")
    button(at, "Create token").click().run()
    assert_no_exception(at)
    assert [e.value for e in at.error] == [
        "You already have a token named 'call centre'; choose another name, or revoke that one "
        "first."
    ]
    assert not at.code
    assert list(tables(at)["my_tokens"]["name"]) == ["call centre", "my script"]


def change_password(at: AppTest, current: str, new: str) -> AppTest:
    """Fill the Account tab's password form (the new password twice) and submit it."""
    at.text_input(key="password_current").input(current)
    at.text_input(key="password_new").input(new)
    at.text_input(key="password_repeat").input(new)
    return button(at, "Change password").click().run()


def test_account_details_and_password(two_users: dict[str, Any]) -> None:
    alice = two_users["alice"]
    at = profile_page(alice)
    at.text_input(key="details_name").input("Alice Z")
    at.text_input(key="details_email").input("not an address")
    button(at, "Save").click().run()
    assert "not an e-mail address" in at.error[0].value
    at.text_input(key="details_email").input("alice@example.org")
    button(at, "Save").click().run()
    assert_no_exception(at)
    user = accounts.authenticate("alice", PASSWORD)
    assert (user.display_name, user.email) == ("Alice Z", "alice@example.org")

    change_password(at, PASSWORD, "p" * 73)
    assert "at most 72 bytes" in at.error[0].value
    change_password(at, PASSWORD, "brand new pass")
    assert_no_exception(at)
    assert "was changed" in at.success[0].value
    assert accounts.authenticate("alice", "brand new pass").id == alice.user_id


def signed_in(at: AppTest) -> bool:
    """Whether the page shows a signed-in profile (and the session holds a user)."""
    return USER_KEY in at.session_state and any(t.value == "My profile" for t in at.title)


def test_a_password_change_keeps_this_browser_and_ends_the_others(
    two_users: dict[str, Any],
) -> None:
    alice = two_users["alice"]
    laptop, phone, bob = profile_page(alice), profile_page(alice), profile_page(two_users["bob"])
    assert signed_in(laptop) and signed_in(phone) and signed_in(bob)
    change_password(laptop, PASSWORD, "brand new pass")
    assert_no_exception(laptop)
    assert "Other browsers" in laptop.success[0].value
    assert signed_in(laptop.run())  # a new cookie for this browser, and the session goes on
    phone.run()
    assert_no_exception(phone)
    assert not signed_in(phone)
    assert [t.value for t in phone.toast] == [auth_session_ended()]
    assert signed_in(bob.run())  # someone else's sessions are untouched


def test_sign_out_everywhere_ends_every_session_of_the_user(two_users: dict[str, Any]) -> None:
    alice = two_users["alice"]
    laptop, phone, bob = profile_page(alice), profile_page(alice), profile_page(two_users["bob"])
    button(phone, "Sign out everywhere").click().run()
    assert_no_exception(phone)
    assert not signed_in(phone)
    assert "Sign in" in " ".join(i.value for i in phone.info)
    laptop.run()
    assert not signed_in(laptop)
    assert signed_in(bob.run())
    user = accounts.user_by_username("alice")
    assert user is not None and user.sessions_ended_at is not None
    assert accounts.authenticate("alice", PASSWORD).id == alice.user_id  # the password stays
    again = profile_page(alice)  # a sign-in after it works
    assert signed_in(again) and signed_in(again.run())


def test_sign_out_everywhere_revokes_the_api_tokens_too_when_asked(
    two_users: dict[str, Any],
) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    # No active token: no box to tick.
    assert "profile_revoke_tokens" not in checkbox_keys(profile_page(bob))
    made = [tokens.create_token(alice, name) for name in ("ci", "call centre", "old")]
    tokens.revoke_token(alice, made[2][0].id)
    _, bobs = tokens.create_token(bob, "bob's")
    laptop, phone = profile_page(alice), profile_page(alice)
    box = laptop.checkbox(key="profile_revoke_tokens")
    assert box.label == "Also revoke my API tokens (2 active)" and box.value is False

    # Left unticked (the default), the tokens keep working.
    button(phone, "Sign out everywhere").click().run()
    assert_no_exception(phone)
    assert not signed_in(phone)
    assert [e.value for e in phone.success] == ["You are signed out in every browser."]
    assert all(tokens.authenticate(secret) is not None for _, secret in made[:2])

    again = profile_page(alice)
    again.checkbox(key="profile_revoke_tokens").check().run()
    button(again, "Sign out everywhere").click().run()
    assert_no_exception(again)
    assert not signed_in(again)
    assert [e.value for e in again.success] == [
        "You are signed out in every browser; 2 API tokens revoked."
    ]
    assert all(tokens.authenticate(secret) is None for _, secret in made)
    assert tokens.authenticate(bobs) is not None  # someone else's stay
    assert not signed_in(laptop.run())
    assert "profile_revoke_tokens" not in checkbox_keys(profile_page(alice))  # none left


def _flash_script() -> None:
    import streamlit as st

    from components import confirmed

    confirmed.show_flash(again=st.session_state.get("cookie_written", False))


def test_a_flash_outlives_the_run_the_cookie_component_brings() -> None:
    """A sign-out deletes the cookie in the run after the click; the cookie's component then
    asks for one more run, which took "Sign out everywhere"'s message away as it appeared."""
    at = AppTest.from_function(_flash_script)
    at.session_state["confirmed_flash"] = "You are signed out in every browser."
    at.session_state["cookie_written"] = True  # the run that deletes the cookie
    assert [e.value for e in at.run().success] == ["You are signed out in every browser."]
    at.session_state["cookie_written"] = False  # the run its component asks for
    assert [e.value for e in at.run().success] == ["You are signed out in every browser."]
    assert not at.run().success  # told, and gone on the next click


def auth_session_ended() -> str:
    from components import auth

    return auth.SESSION_ENDED


# --- another user, an administrator -------------------------------------------------------------


def test_bob_sees_none_of_alices_private_work(two_users: dict[str, Any]) -> None:
    at = profile_page(two_users["bob"])
    assert_no_exception(at)
    assert list(tables(at)["my_runs"]["run"]) == ["bob run"]
    assert list(tables(at)["my_models"]["model"]) == ["bob run"]
    assert "alice" not in page_text(at)
    assert "Administration" not in [t.label for t in at.tabs]
    # alice's public page, seen by bob: the shared model only.
    at = profile_page(two_users["bob"], {"user": "alice"})
    assert list(tables(at)["public_models"]["model"]) == ["alice shared"]
    assert not [i for i in at.info if "as visitors see it" in i.value]


def test_my_public_page_shows_the_owner_what_visitors_see(two_users: dict[str, Any]) -> None:
    alice = two_users["alice"]
    at = profile_page(alice, {"user": "alice"})
    assert_no_exception(at)
    assert list(tables(at)["public_models"]["model"]) == ["alice shared"]  # not her private one
    assert [i.value for i in at.info] == ["This is your page as visitors see it."]
    assert not at.tabs  # not the private profile
    back = [p for p in at.get("page_link") if p.proto.label == "Back to my profile"]
    assert back and back[0].proto.query_string == ""


def test_services_refuse_bob_on_alices_runs_and_models(two_users: dict[str, Any]) -> None:
    bob = two_users["bob"]
    private_run, shared_run = two_users["private_run"], two_users["public_run"]
    for run in (private_run, shared_run):
        for name in (*results.ARTEFACT_NAMES, "../../fakevoice.sqlite"):
            with pytest.raises(NotFoundError):
                results.artefact_bytes(bob, run.id, name)
        with pytest.raises(NotFoundError):
            results.bundle_zip(bob, run.id)
        with pytest.raises(NotFoundError):
            profile.delete_run(bob, run.id)
    private, shared = two_users["private_model"], two_users["public_model"]
    with pytest.raises(NotFoundError):
        profile.set_model_public(bob, private.id, True)
    with pytest.raises(NotFoundError):
        profile.delete_model(bob, private.id)
    with pytest.raises(PermissionDeniedError):
        profile.rename_model(bob, shared.id, "mine now")
    with pytest.raises(PermissionDeniedError):
        profile.delete_model(bob, shared.id)
    with pytest.raises(PermissionDeniedError):
        profile.delete_user(bob, two_users["alice"].user_id)
    assert profile.run_folder(private_run.id).is_dir()
    # The owner gets the real bytes; the bundle zip holds the two bundle files and the
    # validation figures, signed.
    alice = two_users["alice"]
    assert (
        results.artefact_bytes(alice, private_run.id, "model.pkl")
        == run_files("alice private")["model.pkl"]
    )
    names = zipfile.ZipFile(io.BytesIO(results.bundle_zip(alice, private_run.id))).namelist()
    assert sorted(names) == ["manifest.json", "model.safetensors", "validation.json"]


def test_an_administrator_deleting_a_users_run_deletes_its_private_model_too(
    two_users: dict[str, Any],
) -> None:
    """The run's folder holds its model's files: an administrator deleting alice's run removes
    her private model with it, never a model row whose files are gone."""
    root, alice = two_users["root"], two_users["alice"]
    run, model = two_users["private_run"], two_users["private_model"]
    profile.delete_job(root, run.id)
    assert not profile.run_folder(run.id).exists()
    with store.session_scope(readonly=True) as session:
        assert model.id not in {m.id for m in store.list_models(session, alice)}
    # alice's other run and its shared model are untouched.
    shared = two_users["public_run"]
    assert profile.run_folder(shared.id).is_dir()
    with store.session_scope(readonly=True) as session:
        assert two_users["public_model"].id in {m.id for m in store.list_models(session, alice)}


def test_admin_sees_every_kind_of_job_and_stops_anyones(two_users: dict[str, Any]) -> None:
    bob = two_users["bob"]
    with store.session_scope() as session:
        test = store.create_run(session, bob, "test bob run on demo", {}, kind="evaluate")
        build = store.create_run(session, bob, "dataset calls", {"name": "calls"}, kind="dataset")
    at = profile_page(two_users["root"])
    everyone = tables(at)["admin_runs"]
    kinds = dict(zip(everyone["job"], everyone["kind"], strict=True))
    assert kinds["test bob run on demo"] == "test of models"
    assert kinds["dataset calls"] == "dataset build" and kinds["bob run"] == "training run"
    assert dict(zip(everyone["job"], everyone["dataset"], strict=True))["dataset calls"] == "calls"
    choice = at.selectbox(key="admin_stop_job")
    assert set(choice.options) == {
        "test bob run on demo (bob, queued)",
        "dataset calls (bob, queued)",
    }
    choice.select(test.id).run()
    at.button(key="admin_stop_run").click().run()
    assert_no_exception(at)
    assert "Asked test bob run on demo (bob, queued) to stop" in at.success[0].value
    assert services.get_run(bob, test.id).status == "cancelled"
    assert services.get_run(bob, build.id).status == "queued"
    assert at.selectbox(key="admin_stop_job").options == ["dataset calls (bob, queued)"]
    # Nobody else has the control.
    assert not [s for s in profile_page(bob).selectbox if s.key == "admin_stop_job"]


def test_admin_sees_the_job_workers_and_whether_any_runs(two_users: dict[str, Any]) -> None:
    at = profile_page(two_users["root"])
    assert any(w.value.startswith("No job worker is running") for w in at.warning)
    assert "admin_workers" not in tables(at)
    with store.session_scope() as session:
        store.worker_seen(session, "local-admin-a", backend="local", concurrency=2, running=1)
        store.worker_seen(session, "ray-admin-b", backend="ray", concurrency=1, running=0)
        store.worker_stopped(session, "ray-admin-b")
    at.run()
    assert_no_exception(at)
    assert not any(w.value.startswith("No job worker is running") for w in at.warning)
    workers = tables(at)["admin_workers"]
    assert dict(zip(workers["backend"], workers["state"], strict=True)) == {
        "local": "alive",
        "ray": "stopped",
    }
    assert list(workers["backend"]) == ["ray", "local"]  # the most recently seen first
    assert list(workers["jobs"]) == ["0 of 1", "1 of 2"]
    with pytest.raises(PermissionDeniedError):  # host names and processes: administrators only
        services.job_workers(two_users["bob"])
    assert "admin_workers" not in tables(profile_page(two_users["bob"]))
    with store.session_scope() as session:
        store.worker_stopped(session, "local-admin-a")


def test_admin_sees_all_runs_and_removes_a_user(two_users: dict[str, Any]) -> None:
    root = two_users["root"]
    at = profile_page(root)
    assert_no_exception(at)
    assert "Administration" in [t.label for t in at.tabs]
    everyone = tables(at)["admin_runs"]
    assert set(zip(everyone["owner"], everyone["job"], everyone["kind"], strict=True)) == {
        ("alice", "alice private", "training run"),
        ("alice", "alice shared", "training run"),
        ("bob", "bob run", "training run"),
    }
    assert set(tables(at)["admin_users"]["user"]) == {"alice", "bob", "root"}
    assert "root" not in at.selectbox(key="admin_remove_choice").options  # not oneself
    alice_folder = profile.run_folder(two_users["private_run"].id)
    alices_browser = profile_page(two_users["alice"])
    at.selectbox(key="admin_remove_choice").select(two_users["alice"].user_id).run()
    button(at, "Sign 'alice' out everywhere").click().run()
    assert "User 'alice' is signed out in every browser." in at.success[0].value
    assert not signed_in(alices_browser.run())
    assert signed_in(at.run())  # the administrator's own session goes on
    # Their API tokens too, when the administrator ticks the box (shown only when they have any).
    alices_box = f"admin_revoke_tokens{two_users['alice'].user_id}"
    assert alices_box not in checkbox_keys(at)
    _, alices = tokens.create_token(two_users["alice"], "script")
    at.run()
    box = at.checkbox(key=alices_box)
    assert box.label == "Also revoke their API tokens (1 active)" and box.value is False
    box.check().run()
    button(at, "Sign 'alice' out everywhere").click().run()
    assert_no_exception(at)
    assert [e.value for e in at.success] == [
        "User 'alice' is signed out in every browser; 1 API token revoked."
    ]
    assert tokens.authenticate(alices) is None
    button(at, "Remove user 'alice' with their runs, models and verdicts…").click().run()
    button(at, "Yes, delete").click().run()
    assert_no_exception(at)
    assert "User 'alice' was removed." in at.success[0].value
    assert accounts.user_by_username("alice") is None
    assert not alice_folder.exists()
    assert profile.run_folder(two_users["bob_run"].id).is_dir()
    assert set(tables(at)["admin_users"]["user"]) == {"bob", "root"}


def downloads(at: AppTest, key: str) -> dict[str, str]:
    """The download buttons of the model picker with ``key``: label -> help text."""
    found = {}
    for element in at.get("download_button"):
        proto = element.proto
        if proto.id.endswith((f"-{key}_bundle", f"-{key}_card", f"-{key}_fastai")):
            assert proto.deferred_file_id  # read on the click, not on every run
            found[proto.label] = proto.help
    return found


def test_models_are_offered_for_download_to_those_who_may_use_them(
    two_users: dict[str, Any],
) -> None:
    alice, trained = two_users["alice"], two_users["private_model"]
    imported = add_model(alice, "imported aasist", public=False, eer=0.01, accuracy=0.99)
    at = profile_page(alice)
    assert_no_exception(at)
    pick = at.selectbox(key="my_models_pick")
    assert set(pick.options) == {
        "alice private (specnet)",
        "alice shared (specnet)",
        "imported aasist (specnet)",
    }
    pick.set_value(trained.id).run()
    offered = downloads(at, "my_models")
    assert set(offered) == {"Safe bundle (zip)", "Model card (Markdown)", "fastai export (.pkl)"}
    assert "pickle" in offered["fastai export (.pkl)"]
    assert "EER per generator" in offered["Model card (Markdown)"]
    at.selectbox(key="my_models_pick").set_value(imported.id).run()
    assert set(downloads(at, "my_models")) == {  # trained elsewhere: no fastai export
        "Safe bundle (zip)",
        "Model card (Markdown)",
    }

    # A visitor gets the public models only, on the owner's page and on Home.
    visitor = profile_page(None, {"user": "alice"})
    assert_no_exception(visitor)
    assert visitor.selectbox(key="public_models_pick").options == ["alice shared (specnet)"]
    assert set(downloads(visitor, "public_models")) == {
        "Safe bundle (zip)",
        "Model card (Markdown)",
        "fastai export (.pkl)",
    }
    home = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert_no_exception(home)
    assert home.selectbox(key="home_public_pick").options == ["alice shared (specnet, by alice)"]


def test_a_file_has_one_download_label_wherever_it_is_offered(two_users: dict[str, Any]) -> None:
    # The run's row (Runs tab, as on Train) and the model picker (Models tab, public pages) offer
    # the same model's files: by the same names and tips.
    alice, run, model = two_users["alice"], two_users["private_run"], two_users["private_model"]
    at = profile_page(alice, {"run": str(run.id)})
    at.selectbox(key="my_models_pick").set_value(model.id).run()
    assert_no_exception(at)
    buttons = {b.proto.id.rsplit("-", 1)[-1]: b.proto for b in at.get("download_button")}
    for in_run, in_picker in (
        (f"profile_run{run.id}_download_bundle", "my_models_bundle"),
        (f"profile_run{run.id}_download_model.pkl", "my_models_fastai"),
        (f"profile_run{run.id}_download_card", "my_models_card"),
    ):
        shown = buttons[in_run], buttons[in_picker]
        assert shown[0].label == shown[1].label and shown[0].help == shown[1].help, in_picker
    assert buttons["my_models_bundle"].label == "Safe bundle (zip)"
    assert buttons["my_models_fastai"].label == "fastai export (.pkl)"
    card = buttons[f"profile_run{run.id}_download_card"]
    assert card.label == "Model card (Markdown)" and not card.disabled
    assert card.deferred_file_id  # written on the click, from the stored model
