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

FILTERS = ("pending", "", "", "", 0.01, "", "seq", "", None)  # status, type, model, consensus, tau, search, sort,
#                                                              quality scorer, quality minimum


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
        h.ui_accept_all(tau, n + 5, "ann", "", None, req())
    out = h.ui_accept_all(tau, n, "ann", "", None, req())
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
    assert done["job_state"] == "done" and f"{before + 6} / {before + 6} instructions kept" in done["job_counts"]
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


def test_job_view_formats_progress_the_same_for_every_stage():
    v = job_view({"kind": "generate", "state": "running", "error": "", "progress": {
        "phase": "instructions A", "done": 4, "total": 10, "unit": "instructions kept", "tok_s": 12.5,
        "eta_s": 75, "warnings": ["prompt trimmed"],
        "counts": {"tokens": 900, "filtered": {"similar": 3}, "instances_rejected": {"no_input": 1}}}})
    assert (v["job_stage"], v["job_rate"], v["job_eta"]) == ("instructions A", "12.5 tok/s", "1 min 15 s")
    assert v["job_counts"] == "4 / 10 instructions kept · tokens 900" and v["job_error"] == "prompt trimmed"
    assert v["job_reasons"].values.tolist() == [["filtered: similar", "3"], ["instances_rejected: no_input", "1"]]
    e = job_view({"kind": "ensemble", "state": "failed", "error": "BackendError: down", "progress": {
        "phase": "outputs m", "done": 3, "total": 5, "unit": "outputs", "counts": {"consensus": {"rouge": 2}}}})
    assert e["job_error"] == "BackendError: down" and e["job_counts"] == "3 / 5 outputs" and e["job_eta"] == "—"
    assert e["job_reasons"].values.tolist() == [["consensus: rouge", "2"]]
    old = job_view({"kind": "generate", "state": "done", "error": "", "progress": {  # a job stored by 0.1
        "stage": "done", "target": 10, "kept": 10, "filtered": {"similar": 3}, "tok_s": 12.5}})
    assert old["job_stage"] == "done" and old["job_counts"].startswith("10 / 10") and old["job_eta"] == "done"


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


# -- export tab ----------------------------------------------------------------------------------------------
def test_export_tab_previews_then_offers_the_files(h):
    import json
    import zipfile

    from datasets import load_dataset
    opts = ("messages", ["accepted"], 0.01, "", "Be brief.", "none")
    empty = h.ui_export_preview(*opts)
    assert empty["ex_preview"] == "[]" and "Nothing to export" in empty["ex_summary"]
    ids = [r["id"] for r in h.store().review_queue(status="pending", limit=3)]
    review.accept(h.store(), ids[0], reviewer="ann")
    review.edit(h.store(), ids[1], reviewer="ann", output="An edited answer.")
    before = h.store().review_counts()
    shown = h.ui_export_preview(*opts)
    rows = json.loads(shown["ex_preview"])
    assert len(rows) == 2 and rows[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert rows[1]["messages"][-1]["content"] == "An edited answer."  # the edit wins
    assert "---" in shown["ex_card"] and shown["ex_files"] is None
    out = h.ui_export(*opts)
    archive, data = out["ex_files"]
    assert "Exported 2 rows" in out["ex_summary"]
    names = zipfile.ZipFile(archive).namelist()
    assert "curate-messages/README.md" in names and "curate-messages/data.jsonl" in names
    loaded = load_dataset("json", data_files=data, split="train")
    assert [m[-1]["content"] for m in loaded["messages"]] == [r["messages"][-1]["content"] for r in rows]
    assert h.store().review_counts() == before  # an export writes nothing to the store
    with pytest.raises(gr.Error, match="system"):
        h.ui_export("alpaca", ["accepted"], 0.01, "", "Be brief.", "none")
    assert h.ui_sync_tau(0.4) == {"ex_tau": 0.4}
    api = h.api_export_preview("alpaca-jsonl", ["accepted"], n=1)
    assert len(api["rows"]) == 1 and set(api["rows"][0]) == {"instruction", "input", "output"}


# -- teachers tab --------------------------------------------------------------------------------------------
def test_teachers_tab_computes_in_the_background_then_ranks_and_weights_the_mixture(h):
    from curate.mixture import parse_mixture
    empty = h.ui_teachers("", "", 1.0, "all")
    assert empty["tch_table"].empty and "press Compute" in empty["tch_status"]
    started = h.ui_teachers_start("smollm2-135m-instruct", "proxy:consensus", 10, 4)
    h.runner.join(30)
    job = h.store().get_job(started["job_id"])
    assert job["state"] == "done", job["error"]
    assert job["kind"] == "teachers" and job["config"]["limit"] == 10
    status = h.ui_job_status(started["job_id"])
    assert status["job_state"] == "done" and "/" in status["job_counts"]
    shown = h.ui_teachers("smollm2-135m-instruct", "proxy:consensus", 1.0, "all")
    table = shown["tch_table"]
    assert list(table["rank"]) == [str(i) for i in range(1, len(table) + 1)] and len(table) >= 2
    assert "not a reward model" in shown["tch_status"] and "not confirmed" in shown["tch_status"]
    cars = [float(x) for x in table["CAR"]]
    assert cars == sorted(cars, reverse=True)
    rows = h.teacher_rows("smollm2-135m-instruct", "proxy:consensus", 0.0)
    assert all(abs(r["car"] - r["reward"]) < 1e-12 for r in rows if r["car"] is not None)  # β = 0: CAR = reward
    chart = shown["tch_chart"]
    assert list(chart["teacher"]) == list(table["teacher"]) and chart["CAR"].dtype == float
    assert set(chart["type"]) == {"all"}
    mix = h.ui_teachers_mixture("smollm2-135m-instruct", "proxy:consensus", 1.0, "all")
    entries = parse_mixture(mix["job_instruction_models"])
    assert mix["job_instance_models"] == mix["job_instruction_models"]
    assert [e.model for e in entries] == list(table["teacher"])[:len(entries)]
    assert abs(sum(e.weight for e in entries) - 1) < 1e-3
    api = h.api_teachers("smollm2-135m-instruct", "proxy:consensus", 1.0)
    assert api["mixture"] == mix["job_instruction_models"] and api["ranking"][0]["rank"] == 1
    with pytest.raises(gr.Error, match="limit|greater"):
        h.ui_teachers_start("smollm2-135m-instruct", "proxy:consensus", -3, 4)


# -- select tab ----------------------------------------------------------------------------------------------
@pytest.fixture
def hs(tmp_path):
    """A store whose candidates #1-#3 are near-copies of one instruction (real embeddings, all-MiniLM)."""
    db = tmp_path / "s.db"
    same = "Summarize the following paragraph about the history of the printing press in two sentences."
    filled_store(db, 30, texts={0: {"instruction": same, "input": ""}, 1: {"instruction": same + " ", "input": ""},
                                2: {"instruction": same.replace("two", "2"), "input": ""}}).close()
    settings = load_settings(None, db=str(db), reviewer="ann")
    runner = jobs.JobRunner(str(db), scripted_pool())
    yield Handlers(settings, runner)
    runner.join(10)


def test_select_tab_embeds_in_the_background_then_selects_maps_and_groups_near_copies(hs):
    h = hs
    with pytest.raises(gr.Error, match="embedding"):  # nothing embedded yet: say what to do
        h.ui_qdit(5, 0.7, "all", 0.01, "consensus", "all-minilm-l6-v2")
    started = h.ui_embed_start("all", 0.01, "all-minilm-l6-v2")
    h.runner.join(120)
    job = h.store().get_job(started["job_id"])
    assert job["state"] == "done", job["error"]
    from curate.select import load_pool
    n = len(load_pool(h.store(), "all", quality="none").ids)  # the OK candidates
    assert job["progress"]["result"]["computed"] == n > 20
    out = h.ui_qdit(5, 0.7, "all", 0.01, "consensus", "all-minilm-l6-v2")
    assert f"Selected 5 of {n}" in out["sel_status"] and "PROXY" in out["sel_status"]
    assert list(out["sel_report"]["method"]) == ["qdit", "random", "quality-only"]
    assert (out["sel_map"]["set"] == "selected").sum() == 5 and len(out["sel_map"]) == n
    assert list(out["sel_table"]["rank"]) == ["1", "2", "3", "4", "5"]
    stored = h.store().get_selection("qdit")
    assert [str(r["rank"] + 1) for r in stored] == list(out["sel_table"]["rank"])
    with pytest.raises(gr.Error, match="alpha|α"):
        h.ui_qdit(5, 1.5, "all", 0.01, "consensus", "all-minilm-l6-v2")
    with pytest.raises(gr.Error, match="k"):
        h.ui_qdit(500, 0.7, "all", 0.01, "consensus", "all-minilm-l6-v2")
    dups = h.ui_dups(0.95, "all", 0.01, "consensus", "all-minilm-l6-v2")
    groups = dups["dup_groups"]
    assert len(groups) == 1 and {m["seq"] for m in groups[0]["members"]} == {1, 2, 3}
    assert "2 candidates would be rejected" in dups["dup_status"]
    keep = groups[0]["keep"]
    res = h.ui_dups_reject(groups, "bob", req())
    assert "rejected 2" in res["dup_status"] and res["dup_groups"] is None
    statuses = {m["id"]: h.store().get_instance(m["id"])["review_status"] for m in groups[0]["members"]}
    assert statuses.pop(keep) == "pending" and set(statuses.values()) == {"rejected"}
    assert h.store().review_log(next(iter(statuses)))[-1]["reason"].startswith("near-duplicate of #")
    again = h.ui_dups_reject(groups, "bob", req())  # already reviewed: left alone
    assert "rejected 0" in again["dup_status"]
    api = h.api_select(3, 0.5, "all", 0.01, "none", "all-minilm-l6-v2")
    assert len(api["ids"]) == 3 and api["params"]["alpha"] == 0.5


def test_quality_slider_filters_the_queue_and_counts_from_stored_scores(h):
    from curate.quality import load_scorer, score_outputs
    scorer = load_scorer("proxy:consensus", store=h.store())
    score_outputs(h.store(), scorer)
    loaded = h.ui_load("ann", req())
    assert (scorer.name in [v for _, v in loaded["q_scorer"]["choices"]])
    base = FILTERS[:7]
    picked = h.ui_quality_scorer(*base, scorer.name, None)
    lo, hi = picked["q_min"]["minimum"], picked["q_min"]["maximum"]
    assert picked["q_min"]["value"] == lo < hi and picked["q_min"]["interactive"] is True
    everything = int(picked["q_count"].split(" of ")[1].split()[0].replace(",", ""))
    assert picked["q_count"].startswith(f"{everything:,} of {everything:,}")  # at the minimum all pass
    mid = (lo + hi) / 2
    moved = h.ui_quality(*base, scorer.name, mid)
    chosen = h.store().chosen_output_scores(scorer.name)
    assert moved["q_count"].startswith(f"{sum(v >= mid for v in chosen.values()):,} of {len(chosen):,}")
    assert set(moved["q_hist"]["side"]) == {"passes", "below"}
    assert moved["page_info"].startswith(f"{h.store().count_queue(status='pending', quality_scorer=scorer.name, quality_min=mid):,} candidates")
    confirm = h.ui_confirm_all(0.0, scorer.name, mid)
    n = confirm["confirm_count"]
    assert n == h.store().count_pending_passing(0.0, quality_scorer=scorer.name, quality_min=mid) > 0
    assert "score ≥" in confirm["confirm_text"]
    h.ui_accept_all(0.0, n, "ann", scorer.name, mid, req())
    assert h.store().review_counts()["accepted"] == n
    off = h.ui_quality(*base, "", None)
    assert off["q_count"].startswith("no quality threshold")


def test_an_empty_store_points_a_new_user_to_the_run_tab(tmp_path):
    db = tmp_path / "new.db"
    h = Handlers(load_settings(None, db=str(db), reviewer="ann"), jobs.JobRunner(str(db), scripted_pool()))
    assert h.ui_next(None, *FILTERS)["header"].startswith("Nothing generated yet: start a generation job")
