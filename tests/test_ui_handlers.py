"""The app's handlers as plain functions on a temporary store (no server, no browser)."""

from __future__ import annotations

import os
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from curate import jobs, review
from curate.settings import load_settings
from curate.store import Store
from curate.errors import SettingsError
from curate.ui import build_app, parse_auth
from curate.ui.handlers import JOB, OVERVIEW, QUEUE, SLOT_COLS, SLOTS, THRESHOLD, VIEW, Handlers, job_view
from curate.ui.layout import MAX_OUTPUTS, QUEUE_HEADERS
from review_fixtures import XSS, filled_store, scripted_pool

FILTERS = ("pending", "", "", "", 0.01, "", "seq")  # status, type, model, consensus, tau, search, sort


@pytest.fixture
def h(tmp_path):
    db = tmp_path / "h.db"
    filled_store(db, 30, texts={0: {"outputs": [XSS, "second", "third"]}}).close()
    settings = load_settings(None, db=str(db), reviewer="ann")
    runner = jobs.JobRunner(str(db), scripted_pool())
    yield Handlers(settings, runner)
    runner.join(10)


def req(username=None):
    return SimpleNamespace(username=username)


def open_first(h) -> dict:
    return h.ui_next(None, *FILTERS)


def test_queue_page_is_a_string_table(h):
    out = h.ui_queue(*FILTERS, 1)
    assert set(out) == set(QUEUE)
    df = out["queue"]
    assert list(df.columns) == QUEUE_HEADERS and len(df) == 29
    assert all(isinstance(v, str) for v in df.iloc[0])
    assert out["page_info"].startswith("29 candidates · page 1 of 1")
    assert h.ui_queue(*FILTERS, 1, 1)["page"] == 1  # clamped
    with pytest.raises(gr.Error):
        h.ui_queue("approved", *FILTERS[1:], 1)


def test_threshold_updates_counts_histogram_and_queue(h):
    low, high = h.ui_threshold(*FILTERS[:4], 0.0, "", "seq"), h.ui_threshold(*FILTERS[:4], 0.9, "", "seq")
    assert set(low) == set(THRESHOLD + QUEUE)
    n_low = int(low["pass_count"].split(" of ")[0].replace(",", ""))
    n_high = int(high["pass_count"].split(" of ")[0].replace(",", ""))
    st = h.store()
    assert (n_low, n_high) == (st.count_passing(0.0)["passing"], st.count_passing(0.9)["passing"])
    hist = high["histogram"]
    assert list(hist.columns) == ["lo", "n", "side"] and len(hist) == 100
    assert set(hist[hist.lo >= 0.9].side) <= {"passes τ"} and set(hist[hist.lo < 0.89].side) <= {"below τ"}
    filtered = h.ui_threshold("pending", "", "", "pass", 0.9, "", "seq")
    assert len(filtered["queue"]) == st.count_pending_passing(0.9)


def test_open_shows_every_output_with_model_and_agreement(h):
    out = open_first(h)
    assert set(out) == set(VIEW)
    cid = out["current"]["id"]
    cons = h.store().get_consensus(cid)
    for i in range(cons["k"]):
        label = out[SLOTS[i]]["label"]
        assert label.startswith(f"o{i} · {cons['models'][i]}") and f"agreement {cons['scores'][i]:.2f}" in label
        assert out[SLOT_COLS[i]]["visible"] is True
    assert all(out[SLOT_COLS[i]]["visible"] is False for i in range(cons["k"], MAX_OUTPUTS))
    assert out[SLOTS[0]]["value"] == XSS  # untrusted text goes into a Textbox as it is
    styled = out["heatmap"]
    assert styled.data.shape == (cons["k"], cons["k"] + 1)
    assert "consensus choice" in out[SLOTS[cons["chosen_index"]]]["label"]
    assert out["explanation"].startswith(f"Chose o{cons['chosen_index']}")
    assert h.ui_open(cid, 0.01)["header"] == out["header"]
    with pytest.raises(gr.Error):
        h.ui_open("no-such-id", 0.01)


def test_select_opens_the_clicked_row(h):
    df = h.ui_queue(*FILTERS, 1)["queue"]
    evt = SimpleNamespace(row_value=list(df.iloc[3]), index=[3, 0])
    assert h.ui_select(0.01, evt)["current"]["id"] == df.iloc[3]["id"]


def test_accept_stores_and_opens_the_next_pending(h):
    first = open_first(h)
    out = h.ui_accept(first["current"], None, "ann", [], *FILTERS, req())
    st = h.store()
    row = st.get_instance(first["current"]["id"])
    assert row["review_status"] == "accepted" and row["reviewed_by"] == "ann"
    assert out["current"]["id"] != row["id"] and out["current"]["seq"] > row["seq"]
    assert out["history"] == [[row["id"], 1]]
    assert all(out[c] == gr.skip() for c in SLOT_COLS)  # same output count: the columns are left alone
    other = h.ui_accept(out["current"], 2, "ann", out["history"], *FILTERS, req())
    third = review.candidate(st, out["current"]["id"])["outputs"][2]["text"]
    assert st.get_instance(out["current"]["id"])["final_output"] == third
    assert len(other["history"]) == 2


def test_login_name_wins_and_a_name_is_required(h):
    first = open_first(h)
    h.ui_accept(first["current"], None, "typed", [], *FILTERS, req("alice"))
    assert h.store().get_instance(first["current"]["id"])["reviewed_by"] == "alice"
    with pytest.raises(gr.Error, match="Reviewer box"):
        h.ui_reject(h.ui_next(None, *FILTERS)["current"], "", "  ", [], *FILTERS, req())


def test_reject_and_edit(h):
    first = open_first(h)
    out = h.ui_reject(first["current"], "made-up facts", "ann", [], *FILTERS, req())
    st = h.store()
    assert st.get_instance(first["current"]["id"])["review_status"] == "rejected"
    assert st.review_log(first["current"]["id"])[-1]["reason"] == "made-up facts"
    cur = out["current"]
    original = st.get_instance(cur["id"])
    h.ui_edit(cur, "Edited instruction.", "", "Edited output.", "ann", out["history"], *FILTERS, req())
    row = st.get_instance(cur["id"])
    assert (row["review_status"], row["final_instruction"], row["final_output"]) == (
        "edited", "Edited instruction.", "Edited output.")
    assert row["instruction"] == original["instruction"] and row["output"] == original["output"]
    with pytest.raises(gr.Error, match="non-empty"):
        nxt = h.ui_next(cur, *FILTERS)["current"]
        h.ui_edit(nxt, "", "", "x", "ann", [], *FILTERS, req())


def test_conflict_warns_reloads_and_overwrites_nothing(h):
    first = open_first(h)
    stale = dict(first["current"])
    h.ui_accept(first["current"], None, "ann", [], *FILTERS, req())  # ann first
    with pytest.warns(UserWarning, match="changed since you opened it by ann"):
        out = h.ui_reject(stale, "", "bob", [], *FILTERS, req())  # bob's view is stale
    row = h.store().get_instance(stale["id"])
    assert (row["review_status"], row["reviewed_by"]) == ("accepted", "ann")
    assert out["current"] == {"id": stale["id"], "version": 1, "seq": stale["seq"], "k": 3}  # reloaded
    assert out["history"] == []


def test_undo_restores_and_pops_history(h):
    first = open_first(h)
    out = h.ui_accept(first["current"], None, "ann", [], *FILTERS, req())
    back = h.ui_undo(out["history"], "ann", 0.01, req())
    assert back["current"]["id"] == first["current"]["id"] and back["history"] == []
    assert h.store().get_instance(first["current"]["id"])["review_status"] == "pending"
    with pytest.raises(gr.Error, match="Nothing to undo"):
        h.ui_undo([], "ann", 0.01, req())


def test_accept_all_needs_confirmation_of_the_count(h):
    tau = 0.3
    confirm = h.ui_confirm_all(tau)
    n = h.store().count_pending_passing(tau)
    assert confirm["confirm_count"] == n and f"all {n:,} pending" in confirm["confirm_text"]
    assert confirm["confirm_box"]["visible"] is True
    with pytest.raises(gr.Error, match="confirm again"):
        h.ui_accept_all(tau, n + 5, "ann", req())
    out = h.ui_accept_all(tau, n, "ann", req())
    assert out["confirm_box"]["visible"] is False and h.store().count_pending_passing(tau) == 0
    assert h.store().review_counts()["accepted"] == n
    assert h.ui_confirm_cancel()["confirm_count"] is None


def test_jobs_start_progress_pause_resume_cancel(h):
    st = h.store()
    before = st.count_kept_instructions()  # the target counts what the store holds already (30)
    out = h.ui_start_job("generate", before + 6, "both", True, "", "", "", 0, 3)
    jid = out["job_id"]
    assert set(JOB) <= set(out)
    h.runner.join(20)
    done = h.ui_job_status(jid)
    assert done["job_state"] == "done" and f"kept {before + 6} / {before + 6}" in done["job_counts"]
    assert jid in list(done["jobs"]["job"])
    ens = h.ui_start_job("ensemble", 1, "both", True, "", "", "", 0, 8)
    h.runner.join(20)
    assert h.ui_job_status(ens["job_id"])["job_state"] == "done"
    # a paused job has no worker: resume runs it, cancel ends it at once
    jid2 = jobs.start_job(st, "generate", {"instructions": 8})
    st.update_job(jid2, state="paused")
    with pytest.raises(gr.Error, match="only a queued or running job"):
        h.ui_pause(jid2)
    assert h.ui_cancel(jid2)["job_state"] == "cancelled"
    with pytest.raises(gr.Error, match="start a new job"):
        h.ui_resume(jid2)
    jid3 = jobs.start_job(st, "generate", {"instructions": before + 9})
    st.update_job(jid3, state="interrupted")
    h.ui_resume(jid3)
    h.runner.join(20)
    assert st.get_job(jid3)["state"] == "done"
    with pytest.raises(gr.Error, match="weight"):
        h.ui_start_job("generate", 6, "both", True, "smollm2-135m-instruct:-1", "", "", 0, 3)
    assert h.ui_job_status("nope")["job_state"] == "unknown job"


def test_start_job_records_the_sampling_settings(h):
    st = h.store()
    out = h.ui_start_job("generate", st.count_kept_instructions() + 1, "B", False, "", "", "", 7, 2,
                         0.0, 0.0, 0.9, 40.0, 64.0)
    h.runner.join(20)
    cfg = st.get_job(out["job_id"])["config"]
    assert (cfg["task_type"], cfg["seed"], cfg["batch_size"]) == ("B", 7, 2)
    assert cfg["instruction_params"]["temperature"] == 0.0 and cfg["instruction_params"]["top_k"] == 0
    assert cfg["instruction_params"]["top_p"] == 0.9 and cfg["instruction_params"]["max_new_tokens"] == 40
    assert cfg["instance_params"]["max_new_tokens"] == 64 and cfg["instance_params"]["temperature"] == 0.0
    assert cfg["instruction_params"]["min_new_tokens"] <= 40
    with pytest.raises(gr.Error, match="top_p"):
        h.ui_start_job("generate", 3, "both", True, "", "", "", 0, 3, 0.7, 50, 1.5, 256, 512)


def test_job_view_formats_progress():
    v = job_view({"kind": "generate", "state": "running", "error": "", "progress": {
        "stage": "instructions A", "target": 10, "kept": 4, "filtered": {"similar": 3}, "tok_s": 12.5,
        "eta_s": 75, "warnings": ["prompt trimmed"], "instances_rejected": {"no_input": 1}}})
    assert (v["job_stage"], v["job_rate"], v["job_eta"]) == ("instructions A", "12.5", "1 min 15 s")
    assert "kept 4 / 10" in v["job_counts"] and v["job_error"] == "prompt trimmed"
    assert v["job_reasons"].values.tolist() == [["instruction: similar", "3"], ["instance: no_input", "1"]]
    e = job_view({"kind": "ensemble", "state": "failed", "error": "BackendError: down", "progress": {
        "outputs": {"m": 3}, "total": 5, "consensus": {"rouge": 2}}})
    assert e["job_error"] == "BackendError: down" and "3 outputs for 5 candidates" in e["job_counts"]


def test_overview_frames(h):
    first = open_first(h)
    h.ui_accept(first["current"], None, "ann", [], *FILTERS, req())
    out = h.ui_overview(0.3)
    assert set(out) == set(OVERVIEW)
    stages = dict(out["ov_stages"].values.tolist())
    assert stages["candidates"] == "29" and stages["accepted"] == "1"
    assert set(out["ov_reviewers_plot"]["reviewer"]) == {"ann"}
    assert isinstance(out["ov_models_plot"], pd.DataFrame) and len(out["ov_models"]) >= 2


def test_load_locks_the_reviewer_to_the_login(h):
    out = h.ui_load("ann", req("alice"))
    assert out["reviewer"]["value"] == "alice" and out["reviewer"]["interactive"] is False
    assert [v for _, v in out["f_model"]["choices"]][1:] == h.store().generator_models()
    assert h.ui_load("ann", req())["reviewer"] == gr.update()


def test_build_app_marks_dead_jobs_interrupted(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as st:
        jid = jobs.start_job(st, "generate", {"instructions": 3})
        st.update_job(jid, state="running", pid=2 ** 22 + 17)  # no such process
    demo = build_app(load_settings(None, db=str(db)), jobs.JobRunner(str(db), scripted_pool()))
    with Store(db) as st:
        assert st.get_job(jid)["state"] == "interrupted"
    names = {d["api_name"] for d in demo.get_config_file()["dependencies"]}
    assert {"start_job", "job_status", "queue", "candidate", "accept", "edit", "reject", "undo",
            "passing_count", "accept_all_passing"} <= names


def test_parse_auth():
    assert parse_auth(None) is None and parse_auth(" ") is None
    assert parse_auth("ann:pw, bob:p:w") == [("ann", "pw"), ("bob", "p:w")]
    with pytest.raises(Exception, match="user:password"):
        parse_auth("ann")


def test_users_file_adds_logins_and_names_the_bad_line(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# reviewers\nann:pw1\n\n  bob:p:w2  \n", encoding="utf-8")
    assert parse_auth(None, users) == [("ann", "pw1"), ("bob", "p:w2")]
    assert parse_auth("carl:pw3", users)[0] == ("carl", "pw3")
    users.write_text("ann:pw1\nbob\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"users.txt:2: 'bob' is not user:password"):
        parse_auth(None, users)
    with pytest.raises(SettingsError, match="cannot read the users file"):
        parse_auth(None, tmp_path / "missing.txt")
