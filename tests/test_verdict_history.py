"""The verdict history: narrowed by file name, SHA-256 prefix, verdict, model and dates, paged,
counted and exported as CSV, on the Evaluate page (AppTest) and in the services; always only the
user's own verdicts."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_page_evaluate import assert_no_exception, evaluate_page
from test_uploads import make_user, register_run_model, trained_run_dir

from components.user_text import plain
from fakevoice import services, store
from fakevoice.errors import InvalidSpecError, NotFoundError
from fakevoice.services import profile
from fakevoice.services.history import CSV_COLUMNS
from fakevoice.store.records import Actor, AnalysisFilter, ModelRecord

VERDICTS = ("human", "machine-generated", "inconclusive")


def label_choice(at: AppTest) -> Any:
    """The history form's "Which verdict" box."""
    return at.selectbox(key="history_label_choice")


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def log(actor: Actor, model: ModelRecord, name: str, verdict: str, p_human: float) -> None:
    with store.session_scope() as session:
        store.add_analysis(
            session,
            actor,
            model_id=model.id,
            file_name=name,
            duration=3.0,
            sample_rate=8000,
            verdict=verdict,
            probabilities={"bonafide": p_human, "spoof": 1 - p_human},
            threshold=0.6,
            source="api",
            file_sha256=digest(name),
            cautions=["Recorded at 8 kHz."] if name.endswith("7.wav") else [],
        )


@pytest.fixture
def history(isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """alice: 25 verdicts by two models (every third inconclusive); bob: one verdict."""
    alice, bob = make_user("alice"), make_user("bob")
    folder = trained_run_dir(tmp_path_factory)
    first = register_run_model(alice, folder, "first")
    second = register_run_model(alice, folder, "second", public=True)
    for i in range(25):
        log(alice, first if i < 20 else second, f"call-{i:02d}.wav", VERDICTS[i % 3], i / 25)
    log(alice, first, "=HYPERLINK(evil).wav", "human", 0.9)
    log(bob, second, "bob secret.wav", "human", 0.8)
    return {"alice": alice, "bob": bob, "first": first, "second": second}


def test_filters_narrow_only_the_users_own_verdicts(history: dict[str, object]) -> None:
    alice, bob = history["alice"], history["bob"]
    assert isinstance(alice, Actor) and isinstance(bob, Actor)
    second = history["second"]
    assert isinstance(second, ModelRecord)

    def names(**where: object) -> list[str]:
        found = services.list_analyses(alice, limit=100, where=AnalysisFilter(**where))
        assert services.count_analyses(alice, AnalysisFilter(**where)) == len(found)
        return [a.file_name for a in found]

    assert len(names()) == 26 and "bob secret.wav" not in names()
    assert names(text="CALL-07") == ["call-07.wav"]  # any case
    assert names(text=digest("call-12.wav")[:10]) == ["call-12.wav"]
    assert names(text=digest("call-12.wav")[:5]) == []  # too short to be a hash prefix
    assert names(text="%") == [] and names(text="_") == []  # no wildcards
    assert len(names(verdicts=("inconclusive",))) == 8
    assert names(model_id=second.id) == [f"call-{i}.wav" for i in range(24, 19, -1)]
    now = datetime.now(UTC)
    assert len(names(since=now - timedelta(hours=1))) == 26
    assert names(until=now - timedelta(hours=1)) == []
    assert services.list_analyses(bob, where=AnalysisFilter(text="call")) == []
    for bad, message in [
        ({"verdicts": ("machine",)}, "not a verdict"),
        ({"text": "x" * 201}, "at most 200"),
        ({"since": now, "until": now}, "must come after"),
    ]:
        with pytest.raises(InvalidSpecError, match=message):
            AnalysisFilter(**bad)  # type: ignore[arg-type]
    # Any case in any alphabet (SQLite's own lower() folds ASCII only).
    log(alice, second, "Ünïcødé 通話 Όνομα.wav", "human", 0.9)
    for part in ("Ünï", "ünï", "ÜNÏCØDÉ", "通話", "όνομα", "ΌΝΟΜΑ"):
        assert names(text=part) == ["Ünïcødé 通話 Όνομα.wav"], part
    services.label_verdict(alice, services.list_analyses(alice, limit=1)[0].id, note="Ärger")
    assert names(text="ärger") == ["Ünïcødé 通話 Όνομα.wav"]


def test_the_csv_holds_every_match_safe_for_spreadsheets(history: dict[str, object]) -> None:
    alice = history["alice"]
    assert isinstance(alice, Actor)
    rows = list(csv.DictReader(io.StringIO(services.analyses_csv(alice))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 26
    formula = next(r for r in rows if "HYPERLINK" in r["file"])
    assert formula["file"].startswith("'=")  # never a formula in a spreadsheet
    seven = next(r for r in rows if r["file"] == "call-07.wav")
    assert seven["file_sha256"] == digest("call-07.wav") and seven["model"] == "first"
    assert seven["p_human"] == "0.28" and seven["top_class"] == "spoof"
    assert seven["cautions"] == "Recorded at 8 kHz." and seven["via"] == "api"
    assert seven["time_utc"].endswith("Z")
    only = services.analyses_csv(alice, AnalysisFilter(verdicts=("human",), text="call"))
    assert len(list(csv.DictReader(io.StringIO(only)))) == 9


def history_frame(at: AppTest) -> pd.DataFrame:
    (frame,) = [d.value for d in at.dataframe if "file" in d.value.columns]
    return frame


def history_table_files(at: AppTest) -> list[str]:
    return list(history_frame(at)["file"])


def test_the_evaluate_page_pages_and_narrows_the_history(history: dict[str, object]) -> None:
    alice, second = history["alice"], history["second"]
    assert isinstance(alice, Actor) and isinstance(second, ModelRecord)
    at = evaluate_page(alice)
    assert_no_exception(at)
    assert any(
        "26 verdicts; newest first" in c.value and "page 1 of 2" in c.value for c in at.caption
    )
    assert len(history_table_files(at)) == 20
    # A long file name or note keeps to a column's width: the verdict and the rest stay in view.
    (table,) = [d for d in at.dataframe if "file" in d.value.columns]
    widths = {n: c["width"] for n, c in json.loads(table.proto.columns).items() if "width" in c}
    assert widths == {"file": "medium", "note": "medium"}
    at.number_input(key="history_page").set_value(2).run()
    assert len(history_table_files(at)) == 6
    assert [b.proto.label for b in at.get("download_button")] == [
        "Verdict report (Markdown)",  # of the verdict chosen in the form
        "Verdict report (JSON)",
        "Verdict history (CSV)",
    ]

    at.text_input(key="history_find").input(digest("call-03.wav")[:8]).run()
    assert_no_exception(at)
    assert history_table_files(at) == ["call-03.wav"]
    assert any("1 verdict match" in c.value for c in at.caption)
    at.text_input(key="history_find").input("").run()
    at.selectbox(key="history_model").set_value(second.id).run()
    at.multiselect(key="history_verdicts").set_value(["inconclusive"]).run()
    assert history_table_files(at) == ["call-23.wav", "call-20.wav"]
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    at.date_input(key="history_dates").set_value((yesterday, yesterday)).run()
    assert_no_exception(at)
    assert any("No verdict matches." in c.value for c in at.caption)


def test_a_verdicts_model_gone_from_view_is_named_alike_on_the_page_and_in_the_cli(
    history: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The page showed "—" for a model no longer shared with the reader where ``fakevoice
    history`` showed its number: both give its number now, and "(deleted)" once deleted."""
    alice, bob, first = history["alice"], history["bob"], history["first"]
    assert isinstance(alice, Actor) and isinstance(bob, Actor)
    assert isinstance(first, ModelRecord)
    theirs = register_run_model(bob, trained_run_dir(tmp_path_factory), "theirs", public=True)
    log(alice, theirs, "shared.wav", "human", 0.9)
    profile.set_model_public(bob, theirs.id, False)
    profile.delete_model(alice, first.id)
    frame = history_frame(evaluate_page(alice))
    named = dict(zip(frame["file"], frame["model"], strict=True))
    assert named["shared.wav"] == f"model #{theirs.id}"
    assert named["call-19.wav"] == "(deleted)" and named["call-24.wav"] == "second"
    names = services.model_names(alice)  # as fakevoice history names them
    newest = services.list_analyses(alice, limit=2)
    assert [services.verdict_model_name(a, names) for a in newest] == [
        f"model #{theirs.id}",
        "(deleted)",
    ]


def test_a_file_judged_before_is_recognised_by_its_bytes(
    isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_page_evaluate import upload_clip, wav_bytes

    alice = make_user("alice")
    model = register_run_model(alice, trained_run_dir(tmp_path_factory), "first", public=True)
    clip = wav_bytes(2.0, seed=11)
    at = upload_clip(evaluate_page(alice), "voicemail.wav", clip)
    assert_no_exception(at)
    assert not [i for i in at.info if "judged" in i.value]
    at = upload_clip(at, "renamed copy.wav", clip)  # the same bytes under another name
    assert_no_exception(at)
    (seen,) = [i.value for i in at.info if "judged" in i.value]
    (first,) = services.list_analyses(alice, where=AnalysisFilter(text="voicemail"))
    assert "judged once before" in seen and f"**{first.verdict}** with {model.name}" in seen
    at.button(key="eval_seen_before").click().run()
    assert at.text_input(key="history_find").value == hashlib.sha256(clip).hexdigest()
    assert sorted(history_table_files(at)) == ["renamed copy.wav", "voicemail.wav"]
    # Other bytes are not "seen before", and nobody else's history counts.
    bob = make_user("bob")
    at = upload_clip(evaluate_page(bob), "voicemail.wav", clip)
    assert not [i for i in at.info if "judged" in i.value]


def test_the_owner_records_what_a_clip_really_was_and_a_note(history: dict[str, object]) -> None:
    alice, bob = history["alice"], history["bob"]
    assert isinstance(alice, Actor) and isinstance(bob, Actor)
    (seven,) = services.list_analyses(alice, where=AnalysisFilter(text="call-07"))
    labelled = services.label_verdict(
        alice, seven.id, outcome="machine-generated", note=" case 114 "
    )
    assert (labelled.outcome, labelled.note) == ("machine-generated", "case 114")
    # A field left out stays; an empty note goes; None is "not known".
    assert services.label_verdict(alice, seven.id, note="").outcome == "machine-generated"
    assert services.label_verdict(alice, seven.id, note="case 114").note == "case 114"
    assert services.list_analyses(alice, where=AnalysisFilter(text="CASE 1"))[0].id == seven.id
    assert [a.id for a in services.list_analyses(alice, where=AnalysisFilter(outcome="known"))] == [
        seven.id
    ]
    assert services.count_analyses(alice, AnalysisFilter(outcome="unknown")) == 25
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    for stranger in (bob, root):  # a history is personal, administrators included
        with pytest.raises(NotFoundError):
            services.label_verdict(stranger, seven.id, outcome="human")
    for bad, message in [
        ({"outcome": "spoof"}, "must be one of human, machine-generated"),
        ({"note": "x" * 501}, "at most 500"),
    ]:
        with pytest.raises(InvalidSpecError, match=message):
            services.label_verdict(alice, seven.id, **bad)  # type: ignore[arg-type]
    assert services.label_verdict(alice, seven.id, outcome=None).outcome is None


def test_the_owner_keeps_a_verdict_at_another_threshold(history: dict[str, object]) -> None:
    """Moving the threshold after a verdict re-decides it from the kept probabilities; only its
    owner may, within 0.5 to 1."""
    alice, bob = history["alice"], history["bob"]
    assert isinstance(alice, Actor) and isinstance(bob, Actor)
    (seven,) = services.list_analyses(alice, where=AnalysisFilter(text="call-07"))
    assert (seven.threshold, seven.probabilities["bonafide"]) == (0.6, 0.28)  # as logged
    kept = services.rethreshold_verdict(alice, seven.id, 0.7)
    assert (kept.threshold, kept.verdict) == (0.7, "machine-generated")
    assert services.rethreshold_verdict(alice, seven.id, 0.8).verdict == "inconclusive"
    assert services.get_verdict(alice, seven.id).probabilities == seven.probabilities
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    for stranger in (bob, root):
        with pytest.raises(NotFoundError):
            services.rethreshold_verdict(stranger, seven.id, 0.6)
    with pytest.raises(InvalidSpecError, match="between 0.5 and 1"):
        services.rethreshold_verdict(alice, seven.id, 0.4)
    assert services.get_verdict(alice, seven.id).threshold == 0.8


def test_recorded_outcomes_measure_each_model_on_real_cases(history: dict[str, object]) -> None:
    alice = history["alice"]
    assert isinstance(alice, Actor)
    found = services.list_analyses(alice, limit=100, where=AnalysisFilter(text="call-"))
    by_name = {a.file_name: a for a in found}
    # Model "first" (call-00 .. call-19): P(human) = i / 25. Say 0-4 were machines, 15-19 human:
    # the scores separate them perfectly (EER 0). Verdicts: human / machine / inconclusive by i % 3.
    for i in [*range(5), *range(15, 20)]:
        outcome = "machine-generated" if i < 5 else "human"
        services.label_verdict(alice, by_name[f"call-{i:02d}.wav"].id, outcome=outcome)
    services.label_verdict(alice, by_name["call-22.wav"].id, outcome="human")  # model "second"
    first, second = services.field_performance(alice)
    assert (first.model, first.confirmed, first.humans, first.machines) == ("first", 10, 5, 5)
    assert first.eer == 0.0
    # Verdicts of 0-4 and of 15-19 alike: human, machine, inconclusive, human, machine; each set
    # has 2 right, 2 wrong and 1 inconclusive.
    assert (first.correct, first.wrong, first.inconclusive) == (4, 4, 2)
    assert first.accuracy == 0.5
    assert (second.model, second.confirmed, second.eer) == ("second", 1, None)
    rows = list(csv.DictReader(io.StringIO(services.analyses_csv(alice))))
    assert {r["outcome"] for r in rows} == {"", "human", "machine-generated"}


def test_the_page_records_an_outcome_and_shows_how_the_models_did(
    history: dict[str, object],
) -> None:
    alice = history["alice"]
    assert isinstance(alice, Actor)
    at = evaluate_page(alice)
    newest = services.list_analyses(alice, limit=1)[0]
    choice = label_choice(at)
    assert choice.value == newest.id
    # Each verdict is named by its number, second and model: two on one file stay apart.
    assert all(o.startswith("#") and o.count(" · ") == 4 for o in choice.options)
    assert len(set(choice.options)) == len(choice.options)
    assert any(" · first · " in o for o in choice.options)
    assert not [d for d in at.dataframe if "confirmed" in d.value.columns]
    at.toggle(key="history_field_performance").set_value(True).run()
    assert any("No outcome recorded yet" in c.value for c in at.caption)
    # An older verdict chosen and filled in; a verdict arrives meanwhile (the API, another tab)
    # before Save: what was typed is saved on the verdict chosen, not lost.
    first = history["first"]
    assert isinstance(first, ModelRecord)
    older = [a for a in services.list_analyses(alice, limit=20) if a.model_id == first.id][1]
    choice.set_value(older.id).run()
    at.radio(key=f"history_label_outcome:{older.id}").set_value("human")
    at.text_input(key=f"history_label_note:{older.id}").input("case 9")
    log(alice, first, "call-new.wav", "human", 0.7)
    at.button(key="history_label_save").click().run()
    assert_no_exception(at)
    assert label_choice(at).value == older.id
    saved = services.get_verdict(alice, older.id)
    assert (saved.outcome, saved.note) == ("human", "case 9")
    newest = services.list_analyses(alice, limit=1)[0]
    assert newest.file_name == "call-new.wav" and newest.outcome is None
    table = history_frame(at).set_index("file")
    assert (table["really"][older.file_name], table["note"][older.file_name]) == ("human", "case 9")
    (performance,) = [d.value for d in at.dataframe if "confirmed" in d.value.columns]
    assert list(performance["model"]) == ["first"] and list(performance["confirmed"]) == [1]
    at.selectbox(key="history_outcome").set_value("known").run()
    assert history_table_files(at) == [older.file_name]


def test_a_verdict_saved_out_of_the_filter_is_told_by_the_success_alone(
    history: dict[str, object],
) -> None:
    alice = history["alice"]
    assert isinstance(alice, Actor)
    at = evaluate_page(alice)
    at.selectbox(key="history_outcome").set_value("unknown").run()  # "not recorded"
    older = services.list_analyses(alice, limit=5)[-1]
    label_choice(at).set_value(older.id).run()
    at.radio(key=f"history_label_outcome:{older.id}").set_value("human")
    at.button(key="history_label_save").click().run()
    assert_no_exception(at)
    # Now recorded, it left the list: the success says why, with no notice that it went missing.
    assert older.file_name not in history_table_files(at)
    assert [m.value for m in at.success] == [
        f"Saved: verdict #{older.id} ({plain(older.file_name)}) really was human."
    ]
    assert not [m for m in at.info if "chosen before" in m.value]
    # A chosen verdict a filter hides is still named.
    newest = services.list_analyses(alice, limit=1)[0]
    label_choice(at).set_value(newest.id).run()
    at.text_input(key="history_find").input("call-03").run()
    assert [m.value for m in at.info if "chosen before" in m.value] == [
        f"Verdict #{newest.id}, chosen before, is not on this page of the history now: choose it "
        "again (page or filters) before saving what it really was."
    ]


def test_a_verdict_made_on_the_page_is_the_one_the_form_picks(
    history: dict[str, object],
) -> None:
    from test_page_evaluate import upload_clip
    from test_uploads import wav_bytes

    alice = history["alice"]
    assert isinstance(alice, Actor)
    at = evaluate_page(alice)
    older = services.list_analyses(alice, limit=5)[-1]
    label_choice(at).set_value(older.id).run()
    at = upload_clip(at, "just now.wav", wav_bytes(1.5, seed=8))
    assert_no_exception(at)
    newest = services.list_analyses(alice, limit=1)[0]
    assert newest.file_name == "just now.wav" and label_choice(at).value == newest.id


def test_a_verdict_of_the_history_comes_as_a_report_with_its_outcome(
    history: dict[str, object],
) -> None:
    from fakevoice.services import reports

    alice, bob = history["alice"], history["bob"]
    assert isinstance(alice, Actor) and isinstance(bob, Actor)
    (seven,) = services.list_analyses(alice, where=AnalysisFilter(text="call-07"))
    services.label_verdict(alice, seven.id, outcome="machine-generated", note="case | 7")
    report = reports.history_report(alice, seven.id)
    assert report["file"]["sha256"] == digest("call-07.wav") and report["verdict"]["windows"] == []
    assert report["outcome"] == {"really": "machine-generated", "note": "case | 7"}
    assert report["model"]["name"] == "first" and report["verdict"]["cautions"] == [
        "Recorded at 8 kHz."
    ]
    text = reports.report_markdown(report)
    assert "## What it really was" in text and "**machine-generated**" in text
    assert "Note: case / 7" in text  # no table or code span can be broken by a note
    assert "made before the history kept timelines" in text and "3.00 s, 8000 Hz" in text
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    for stranger in (bob, root):
        with pytest.raises(NotFoundError):
            reports.history_report(stranger, seven.id)
    # The page offers it for the verdict chosen in the form.
    at = evaluate_page(alice)
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Verdict report (Markdown)", "Verdict report (JSON)"} <= labels


def test_a_verdict_keeps_its_timeline_in_the_history(
    isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_page_evaluate import charts, wav_bytes

    from fakevoice.services import reports

    alice, bob = make_user("alice"), make_user("bob")
    model = register_run_model(alice, trained_run_dir(tmp_path_factory), "first", public=True)
    scored = services.score_clip(alice, model, wav_bytes(3.0, seed=3), file_name="long call.wav")
    assert len(scored.verdict.windows) > 1
    kept = services.get_verdict(alice, scored.analysis.id)
    assert kept.windows == scored.analysis.windows
    assert [w["start"] for w in kept.windows or []] == [
        pytest.approx(w.start, abs=1e-3) for w in scored.verdict.windows
    ]
    assert [w["p_human"] for w in kept.windows or []] == [
        pytest.approx(w.p_human, abs=1e-4) for w in scored.verdict.windows
    ]
    with store.session_scope() as session:
        root = store.create_user(session, "root", is_admin=True).actor
    for stranger in (bob, root):  # a history is personal
        with pytest.raises(NotFoundError):
            services.get_verdict(stranger, scored.analysis.id)

    # The history's report has the timeline the verdict's own report had.
    report = reports.history_report(alice, scored.analysis.id)
    at_the_time = reports.verdict_report(scored, scored.verdict.threshold)
    assert [w["top_class"] for w in report["verdict"]["windows"]] == [
        w["top_class"] for w in at_the_time["verdict"]["windows"]
    ]
    text = reports.report_markdown(report)
    assert "| from (s) | to (s) | P(human) |" in text and "before the history kept" not in text

    # The page shows it for the verdict chosen in the history's form; an old verdict says why not.
    log(alice, model, "old.wav", "human", 0.9)  # as logged before timelines were kept
    at = evaluate_page(alice)
    assert_no_exception(at)
    label_choice(at).set_value(scored.analysis.id).run()
    assert len(charts(at)) == 1
    assert not any("before the history kept them" in c.value for c in at.caption)
    (old,) = services.list_analyses(alice, where=AnalysisFilter(text="old.wav"))
    label_choice(at).set_value(old.id).run()
    assert_no_exception(at)
    assert charts(at) == []
    assert any("before the history kept them" in c.value for c in at.caption)


def test_an_explanation_is_kept_with_its_verdict_and_shown_again(
    isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_page_evaluate import charts, wav_bytes

    from fakevoice.explain import (
        KEPT_HEATMAP_CELLS,
        Explanation,
        heatmap_cells,
        most_machine_like,
    )
    from fakevoice.services import reports

    alice, bob = make_user("alice"), make_user("bob")
    model = register_run_model(alice, trained_run_dir(tmp_path_factory), "first", public=True)
    clip = wav_bytes(3.0, seed=3)
    scored = services.score_clip(alice, model, clip, file_name="call.wav")
    window = most_machine_like(scored.verdict.windows)
    explained = services.explain_clip(alice, model, clip, window=window).explanation
    with pytest.raises(NotFoundError):  # only the verdict's owner keeps one with it
        services.keep_explanation(bob, scored.analysis.id, explained)
    services.keep_explanation(alice, scored.analysis.id, explained)

    kept = services.get_verdict(alice, scored.analysis.id)
    again = Explanation.from_dict(kept.explanation)
    assert again is not None and again.image is None  # the spectrogram is not kept
    # The heatmap is, averaged down to at most 32 cells a side.
    assert explained.heatmap is not None and again.heatmap is not None
    assert max(again.heatmap.shape) == KEPT_HEATMAP_CELLS
    np.testing.assert_allclose(
        again.heatmap, np.asarray(heatmap_cells(explained, KEPT_HEATMAP_CELLS)), atol=1e-4
    )
    assert (again.start, again.end, again.p_human) == (
        explained.start,
        explained.end,
        explained.p_human,
    )
    assert again.bands == explained.bands and again.segments == explained.segments
    assert Explanation.from_dict({"start": 0}) is None and Explanation.from_dict(None) is None

    # Its report (Markdown and JSON) says why, as the page's own report did.
    report = reports.history_report(alice, scored.analysis.id)
    assert report["explanation"] == explained.to_dict(heatmap_size=KEPT_HEATMAP_CELLS)
    assert "## Why: where the decision is most sensitive" in reports.report_markdown(report)

    # The history's form shows the bands and the time slices again; a verdict never explained
    # shows none.
    log(alice, model, "plain.wav", "human", 0.9)
    at = evaluate_page(alice)
    label_choice(at).set_value(scored.analysis.id).run()
    assert_no_exception(at)
    assert len(charts(at)) == 4  # the timeline, the kept heatmap, the bands and the time slices
    assert any("as kept with the verdict (32 x" in c.value for c in at.caption)
    window_text = f"Window {explained.start:.2f}–{explained.end:.2f} s"
    assert any(c.value.startswith(window_text) for c in at.caption)
    (plain,) = services.list_analyses(alice, where=AnalysisFilter(text="plain.wav"))
    label_choice(at).set_value(plain.id).run()
    assert_no_exception(at)
    assert not any(c.value.startswith("Window ") for c in at.caption)


def test_a_report_is_checked_on_the_evaluate_page(isolated_settings: Path) -> None:
    from fakevoice import signing
    from fakevoice.services import reports

    alice = make_user("alice")
    signed = reports.report_json({"report": "Fake Voice Workbench verdict", "analysis_id": 7})
    at = evaluate_page(alice)
    assert_no_exception(at)
    assert any(signing.key_id() in c.value for c in at.caption)
    uploader = at.file_uploader(key="history_check_report")
    at = uploader.set_value(("verdict-7.json", signed.encode(), "application/json")).run()
    assert_no_exception(at)
    assert [s.value for s in at.success] == [
        f"Valid: written by key {signing.key_id()} and unchanged since."
    ]
    changed = signed.replace('"analysis_id": 7', '"analysis_id": 8').encode()
    at = (
        at.file_uploader(key="history_check_report")
        .set_value(("verdict-7.json", changed, "application/json"))
        .run()
    )
    assert not at.success and "changed after it was signed" in at.error[0].value
