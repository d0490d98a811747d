"""The app's handlers as plain functions on a temporary store (no server, no browser).

Handlers are reached per tab (``h.review``, ``h.run``…) and called with named arguments; those that depend on
the queue filter take one ``QueueFilter`` (the wiring builds it from the nine filter components)."""

from __future__ import annotations

import inspect
import os
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from curate import jobs, review
from curate.review import QueueFilter
from curate.settings import load_settings
from curate.store import Store
from curate.errors import SettingsError
from curate.ui import Handlers, build_app, parse_auth
from curate.ui.tabs.overview import OVERVIEW
from curate.ui.tabs.review import MAX_OUTPUTS, QUEUE, QUEUE_HEADERS, SLOT_COLS, SLOTS, THRESHOLD, VIEW
from curate.ui.tabs.run import JOB, job_view
from curate.ui.wiring import FILTER_PARAMS, with_filter
from review_fixtures import XSS, filled_store, scripted_pool

F = QueueFilter()  # the Review tab's defaults: pending, any type / model / consensus, τ = 0.01, generation order,
#                    no quality threshold
#: the same filter as the component values an event passes (status, type, model, consensus, tau, search, sort,
#: quality scorer, quality minimum; and, since the reviewer tools, quality maximum, source, reviewed by, min RL
#: range)
FILTER_VALUES = ("pending", "", "", "", 0.01, "", "seq", "", None, None, "", "", None, None)
#: the Run tab's form, as ui_start_job receives it
JOB_FORM = dict(kind="generate", instructions=20, task_type="both", instances=True, instruction_models="",
                instance_models="", ensemble_models="", seed=0, batch_size=3)


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
    return h.review.ui_next(None, F)


def start_job(h, **form) -> dict:
    return h.run.ui_start_job(**{**JOB_FORM, **form})


def test_queue_page_is_a_string_table(h):
    out = h.review.ui_queue(F, page=1)
    assert set(out) == set(QUEUE)
    df = out["queue"]
    assert list(df.columns) == QUEUE_HEADERS and len(df) == 29
    assert all(isinstance(v, str) for v in df.iloc[0])
    assert out["page_info"].startswith("29 candidates · page 1 of 1")
    assert h.review.ui_queue(F, page=1, step=1)["page"] == 1  # clamped
    with pytest.raises(gr.Error):  # a bad value is refused where the event builds the filter
        with_filter(h.review.ui_queue)("approved", *FILTER_VALUES[1:], 1)


def test_events_build_one_queue_filter_from_the_nine_component_values(h):
    names = [p.name for p in FILTER_PARAMS]
    threshold = with_filter(h.review.ui_threshold)
    params = inspect.signature(threshold).parameters  # what clients of /ui_threshold see (Gradio injects the
    assert [p for p in params if p != "request"] == names  # request: the login, for the team queue)
    shown = threshold("pending", "", "", "pass", 0.9, "", "seq", "", None)
    assert shown["page_info"] == h.review.ui_threshold(QueueFilter(consensus="pass", tau=0.9))["page_info"]
    assert threshold(*FILTER_VALUES[:7])["pass_count"] == h.review.ui_threshold(F)["pass_count"]  # quality off
    accept = with_filter(h.review.ui_accept)  # Gradio still sees the request parameter (the login)
    params = inspect.signature(accept).parameters
    assert list(params) == ["current", "output_index", "reviewer", "history", *names, "request"]
    assert params["request"].annotation is gr.Request
    first = open_first(h)
    out = accept(first["current"], None, "ann", [], *FILTER_VALUES, req("alice"))
    assert out["history"] == [[first["current"]["id"], 1]]
    assert h.store().get_candidate(first["current"]["id"]).reviewed_by == "alice"
    with pytest.raises(gr.Error, match="tau"):
        threshold("pending", "", "", "", 1.5, "", "seq", "", None)
    with pytest.raises(gr.Error, match="sort"):
        with_filter(h.review.ui_next)(None, "pending", "", "", "", 0.01, "", "newest", "", None)


def test_threshold_updates_counts_histogram_and_queue(h):
    low, high = h.review.ui_threshold(QueueFilter(tau=0.0)), h.review.ui_threshold(QueueFilter(tau=0.9))
    assert set(low) == set(THRESHOLD + QUEUE)
    n_low = int(low["pass_count"].split(" of ")[0].replace(",", ""))
    n_high = int(high["pass_count"].split(" of ")[0].replace(",", ""))
    st = h.store()
    assert (n_low, n_high) == (st.count_passing(0.0)["passing"], st.count_passing(0.9)["passing"])
    hist = high["histogram"]
    assert list(hist.columns) == ["lo", "n", "side"] and len(hist) == 101  # 100 bins and the τ line
    line = hist[hist.side == "τ"]  # drawn at τ, as tall as the tallest bin
    assert len(line) == 1 and 0.89 < line.lo.iloc[0] < 0.9 and line.n.iloc[0] == hist[hist.side != "τ"].n.max()
    bins = hist[hist.side != "τ"]
    assert set(bins[bins.lo >= 0.9].side) <= {"passes τ"} and set(bins[bins.lo < 0.89].side) <= {"below τ"}
    filtered = h.review.ui_threshold(QueueFilter(status="pending", consensus="pass", tau=0.9))
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
    assert h.review.ui_open(cid, tau=0.01)["header"] == out["header"]
    with pytest.raises(gr.Error):
        h.review.ui_open("no-such-id", tau=0.01)


def test_select_opens_the_clicked_row(h):
    df = h.review.ui_queue(F, page=1)["queue"]
    evt = SimpleNamespace(row_value=list(df.iloc[3]), index=[3, 0])
    assert h.review.ui_select(tau=0.01, evt=evt)["current"]["id"] == df.iloc[3]["id"]


def test_accept_stores_and_opens_the_next_pending(h):
    first = open_first(h)
    out = h.review.ui_accept(first["current"], output_index=None, reviewer="ann", history=[], f=F, request=req())
    st = h.store()
    row = st.get_candidate(first["current"]["id"])
    assert row.review_status == "accepted" and row.reviewed_by == "ann"
    assert out["current"]["id"] != row.id and out["current"]["seq"] > row.seq
    assert out["history"] == [[row.id, 1]]
    assert all(out[c] == gr.skip() for c in SLOT_COLS)  # same output count: the columns are left alone
    other = h.review.ui_accept(out["current"], output_index=2, reviewer="ann", history=out["history"], f=F,
                               request=req())
    third = review.candidate(st, out["current"]["id"])["outputs"][2]["text"]
    assert st.get_candidate(out["current"]["id"]).final_output == third
    assert len(other["history"]) == 2


def test_login_name_wins_and_a_name_is_required(h):
    first = open_first(h)
    h.review.ui_accept(first["current"], output_index=None, reviewer="typed", history=[], f=F,
                       request=req("alice"))
    assert h.store().get_candidate(first["current"]["id"]).reviewed_by == "alice"
    with pytest.raises(gr.Error, match="Reviewer box"):
        h.review.ui_reject(open_first(h)["current"], reason="", reviewer="  ", history=[], f=F, request=req())


def test_reject_and_edit(h):
    first = open_first(h)
    out = h.review.ui_reject(first["current"], reason="made-up facts", reviewer="ann", history=[], f=F,
                             request=req())
    st = h.store()
    assert st.get_candidate(first["current"]["id"]).review_status == "rejected"
    assert st.review_log(first["current"]["id"])[-1].reason == "made-up facts"
    cur = out["current"]
    original = st.get_candidate(cur["id"])
    h.review.ui_edit(cur, instruction="Edited instruction.", input="", output="Edited output.", reviewer="ann",
                     history=out["history"], f=F, form=out["form_token"], typed_on=out["form_token"], request=req())
    row = st.get_candidate(cur["id"])
    assert (row.review_status, row.final_instruction, row.final_output) == (
        "edited", "Edited instruction.", "Edited output.")
    assert row.instruction == original.instruction and row.output == original.output
    with pytest.raises(gr.Error, match="non-empty"):
        nxt = h.review.ui_next(cur, F)
        h.review.ui_edit(nxt["current"], instruction="", input="", output="x", reviewer="ann", history=[], f=F,
                         form=nxt["form_token"], typed_on="", request=req())


def test_conflict_warns_reloads_and_overwrites_nothing(h):
    first = open_first(h)
    stale = dict(first["current"])
    h.review.ui_accept(first["current"], output_index=None, reviewer="ann", history=[], f=F, request=req())
    with pytest.warns(UserWarning, match="changed since you opened it by ann"):  # bob's view is stale
        out = h.review.ui_reject(stale, reason="", reviewer="bob", history=[], f=F, request=req())
    row = h.store().get_candidate(stale["id"])
    assert (row.review_status, row.reviewed_by) == ("accepted", "ann")
    assert {k: out["current"][k] for k in ("id", "version", "seq", "k")} == {
        "id": stale["id"], "version": 1, "seq": stale["seq"], "k": 3}  # reloaded
    assert out["history"] == []


def test_undo_restores_and_pops_history(h):
    first = open_first(h)
    out = h.review.ui_accept(first["current"], output_index=None, reviewer="ann", history=[], f=F, request=req())
    back = h.review.ui_undo(out["history"], reviewer="ann", tau=0.01, request=req())
    assert back["current"]["id"] == first["current"]["id"] and back["history"] == []
    assert h.store().get_candidate(first["current"]["id"]).review_status == "pending"
    with pytest.raises(gr.Error, match="Nothing to undo"):
        h.review.ui_undo([], reviewer="ann", tau=0.01, request=req())


def test_refresh_after_a_review_shows_the_counts_and_the_same_page(h):
    first = open_first(h)
    h.review.ui_accept(first["current"], output_index=None, reviewer="ann", history=[], f=F, request=req())
    out = h.review.ui_refresh(F, page=1)
    assert set(out) == set(THRESHOLD + QUEUE)
    assert out["page_info"].startswith("28 candidates · page 1 of 1")  # the accepted one left the pending queue
    assert out["pass_count"] == h.review.ui_threshold(F)["pass_count"]


def test_accept_all_needs_confirmation_of_the_count(h):
    tau = 0.3
    confirm = h.review.ui_confirm_all(tau=tau)
    n = h.store().count_pending_passing(tau)
    assert confirm["confirm_count"] == n and f"all {n:,} pending" in confirm["confirm_text"]
    assert confirm["confirm_box"]["visible"] is True
    with pytest.raises(gr.Error, match="confirm again"):
        h.review.ui_accept_all(tau=tau, count=n + 5, reviewer="ann", q_scorer="", q_min=None, request=req())
    out = h.review.ui_accept_all(tau=tau, count=n, reviewer="ann", q_scorer="", q_min=None, request=req())
    assert out["confirm_box"]["visible"] is False and h.store().count_pending_passing(tau) == 0
    assert h.store().review_counts()["accepted"] == n
    assert h.review.ui_confirm_cancel()["confirm_count"] is None
    nothing = h.review.ui_confirm_all(tau=tau)  # nothing left to accept: no confirmation box
    assert nothing["confirm_box"]["visible"] is False and nothing["confirm_count"] is None


def test_jobs_start_progress_pause_resume_cancel(h):
    st = h.store()
    before = st.count_kept_instructions()  # the target counts what the store holds already (30)
    out = start_job(h, instructions=before + 6)
    jid = out["job_id"]
    assert set(JOB) <= set(out)
    h.runner.join(20)
    done = h.run.ui_job_status(jid)
    assert done["job_state"] == "done" and f"{before + 6} / {before + 6} instructions kept" in done["job_counts"]
    assert jid in list(done["jobs"]["job"])
    ens = start_job(h, kind="ensemble", instructions=1, batch_size=8)
    h.runner.join(20)
    assert h.run.ui_job_status(ens["job_id"])["job_state"] == "done"
    # a paused job has no worker: resume runs it, cancel ends it at once
    jid2 = jobs.start_job(st, "generate", {"instructions": 8})
    st.update_job(jid2, state="paused")
    with pytest.raises(gr.Error, match="only a queued or running job"):
        h.run.ui_pause(jid2)
    assert h.run.ui_cancel(jid2)["job_state"] == "cancelled"
    with pytest.raises(gr.Error, match="start a new job"):
        h.run.ui_resume(jid2)
    jid3 = jobs.start_job(st, "generate", {"instructions": before + 9})
    st.update_job(jid3, state="interrupted")
    h.run.ui_resume(jid3)
    h.runner.join(20)
    assert st.get_job(jid3)["state"] == "done"
    with pytest.raises(gr.Error, match="weight"):
        start_job(h, instructions=6, instruction_models="smollm2-135m-instruct:-1")
    assert h.run.ui_job_status("nope")["job_state"] == "unknown job"


def test_start_job_records_the_sampling_settings(h):
    st = h.store()
    out = start_job(h, instructions=st.count_kept_instructions() + 1, task_type="B", instances=False, seed=7,
                    batch_size=2, temperature=0.0, top_k=0.0, top_p=0.9, max_new_tokens=40.0,
                    instance_max_new_tokens=64.0)
    h.runner.join(20)
    cfg = st.get_job(out["job_id"])["config"]
    assert (cfg["task_type"], cfg["seed"], cfg["batch_size"]) == ("B", 7, 2)
    assert cfg["instruction_params"]["temperature"] == 0.0 and cfg["instruction_params"]["top_k"] == 0
    assert cfg["instruction_params"]["top_p"] == 0.9 and cfg["instruction_params"]["max_new_tokens"] == 40
    assert cfg["instance_params"]["max_new_tokens"] == 64 and cfg["instance_params"]["temperature"] == 0.0
    assert cfg["instruction_params"]["min_new_tokens"] <= 40
    with pytest.raises(gr.Error, match="top_p"):
        start_job(h, instructions=3, temperature=0.7, top_k=50, top_p=1.5, max_new_tokens=256,
                  instance_max_new_tokens=512)


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
    h.review.ui_accept(first["current"], output_index=None, reviewer="ann", history=[], f=F, request=req())
    out = h.overview.ui_overview(tau=0.3)
    assert set(out) == set(OVERVIEW)
    stages = dict(out["ov_stages"].values.tolist())
    assert stages["candidates"] == "29" and stages["accepted"] == "1"
    assert set(out["ov_reviewers_plot"]["reviewer"]) == {"ann"}
    plot = out["ov_models_plot"]  # the frame with a y range up to the tallest stack, so no bar leaves its axis
    assert isinstance(plot, gr.BarPlot) and plot.y_lim[1] >= 1 and len(out["ov_models"]) >= 2


def test_load_locks_the_reviewer_to_the_login(h):
    out = h.review.ui_load(reviewer="ann", request=req("alice"))
    assert out["reviewer"]["value"] == "alice" and out["reviewer"]["interactive"] is False
    assert [v for _, v in out["f_model"]["choices"]][1:] == h.store().generator_models()
    assert h.review.ui_load(reviewer="ann", request=req())["reviewer"] == gr.update()


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
    h = demo.handlers  # one handler object per tab, sharing the app's store connections and runner
    for tab in ("review", "run", "overview", "teachers", "select", "export", "api"):
        assert getattr(h, tab).ctx is h.ctx
    assert h.review.ui_threshold(F)["pass_count"].endswith("(0 of them still pending)")


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
    opts = dict(fmt="messages", include=["accepted"], tau=0.01, selection="", system="Be brief.", provenance="none")
    empty = h.export.ui_export_preview(**opts)
    assert empty["ex_preview"] == "" and "Nothing to export" in empty["ex_summary"]
    ids = [r["id"] for r in h.store().review_queue(status="pending", limit=3)]
    review.accept(h.store(), ids[0], reviewer="ann")
    review.edit(h.store(), ids[1], reviewer="ann", output="An edited answer.")
    before = h.store().review_counts()
    shown = h.export.ui_export_preview(**opts)
    rows = [json.loads(line) for line in shown["ex_preview"].split("\n")]  # JSON Lines, not an array
    assert len(rows) == 2 and rows[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert rows[1]["messages"][-1]["content"] == "An edited answer."  # the edit wins
    assert "---" in shown["ex_card"] and shown["ex_files"] is None
    out = h.export.ui_export(**opts)
    archive, data = out["ex_files"]
    assert "Exported 2 rows" in out["ex_summary"]
    names = zipfile.ZipFile(archive).namelist()
    assert "curate-messages/README.md" in names and "curate-messages/data.jsonl" in names
    with open(data, encoding="utf-8") as f:  # the preview is the file's first lines, character for character
        assert f.read().startswith(shown["ex_preview"] + "\n")
    loaded = load_dataset("json", data_files=data, split="train")
    assert [m[-1]["content"] for m in loaded["messages"]] == [r["messages"][-1]["content"] for r in rows]
    assert h.store().review_counts() == before  # an export writes nothing to the store
    with pytest.raises(gr.Error, match="system"):
        h.export.ui_export(**{**opts, "fmt": "alpaca"})
    assert h.export.ui_sync_tau(0.4) == {"ex_tau": 0.4}
    api = h.api.export_preview(fmt="alpaca-jsonl", include=["accepted"], n=1)
    assert len(api["rows"]) == 1 and set(api["rows"][0]) == {"instruction", "input", "output"}


# -- teachers tab --------------------------------------------------------------------------------------------
def test_teachers_tab_computes_in_the_background_then_ranks_and_weights_the_mixture(h):
    from curate.mixture import parse_mixture
    ranking = dict(student="smollm2-135m-instruct", scorer="proxy:consensus", beta=1.0, task_type="all")
    empty = h.teachers.ui_teachers(student="", scorer="", beta=1.0, task_type="all")
    assert empty["tch_table"].empty and "press Compute" in empty["tch_status"]
    started = h.teachers.ui_teachers_start(student="smollm2-135m-instruct", scorer="proxy:consensus", limit=10,
                                           batch_size=4)
    h.runner.join(30)
    job = h.store().get_job(started["job_id"])
    assert job["state"] == "done", job["error"]
    assert job["kind"] == "teachers" and job["config"]["limit"] == 10
    status = h.run.ui_job_status(started["job_id"])
    assert status["job_state"] == "done" and "/" in status["job_counts"]
    shown = h.teachers.ui_teachers(**ranking)
    table = shown["tch_table"]
    assert list(table["rank"]) == [str(i) for i in range(1, len(table) + 1)] and len(table) >= 2
    assert "not a reward model" in shown["tch_status"] and "not confirmed" in shown["tch_status"]
    cars = [float(x) for x in table["CAR"]]
    assert cars == sorted(cars, reverse=True)
    rows = h.teachers.teacher_rows(student="smollm2-135m-instruct", scorer="proxy:consensus", beta=0.0)
    assert all(abs(r["car"] - r["reward"]) < 1e-12 for r in rows if r["car"] is not None)  # β = 0: CAR = reward
    chart = shown["tch_chart"]
    assert list(chart["teacher"]) == list(table["teacher"]) and chart["CAR"].dtype == float
    assert set(chart["type"]) == {"all"}
    mix = h.teachers.ui_teachers_mixture(**ranking)
    entries = parse_mixture(mix["job_instruction_models"])
    assert mix["job_instance_models"] == mix["job_instruction_models"]
    assert [e.model for e in entries] == list(table["teacher"])[:len(entries)]
    assert abs(sum(e.weight for e in entries) - 1) < 1e-3
    api = h.api.teachers(student="smollm2-135m-instruct", scorer="proxy:consensus", beta=1.0)
    assert api["mixture"] == mix["job_instruction_models"] and api["ranking"][0]["rank"] == 1
    with pytest.raises(gr.Error, match="limit|greater"):
        h.teachers.ui_teachers_start(student="smollm2-135m-instruct", scorer="proxy:consensus", limit=-3,
                                     batch_size=4)


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
    pool = dict(source="all", tau=0.01, quality="consensus", model="all-minilm-l6-v2")
    # nothing embedded yet: said once, in the status (no toast, no command to type), with the Embed button
    first = h.select.ui_qdit(k=5, alpha=0.7, **pool)
    assert first["sel_embed_offer"]["visible"] is True and "Embed them now" in first["sel_status"]
    assert "curate embed" not in first["sel_status"] and "have no all-minilm-l6-v2 embedding" in first["sel_status"]
    dups_first = h.select.ui_dups(threshold=0.95, **pool)
    assert dups_first["sel_embed_offer"]["visible"] is True and dups_first["dup_groups"] is None
    started = h.select.ui_embed_start(source="all", tau=0.01, model="all-minilm-l6-v2")  # what the button calls
    assert started["sel_embed_offer"]["visible"] is False  # gone once the job is started
    h.runner.join(120)
    job = h.store().get_job(started["job_id"])
    assert job["state"] == "done", job["error"]
    from curate.select import load_pool
    n = len(load_pool(h.store(), "all", quality="none").ids)  # the OK candidates
    assert job["progress"]["result"]["computed"] == n > 20
    out = h.select.ui_qdit(k=5, alpha=0.7, **pool)
    assert f"Selected 5 of {n}" in out["sel_status"] and "PROXY" in out["sel_status"]
    assert out["sel_embed_offer"]["visible"] is False
    assert list(out["sel_report"]["method"]) == ["qdit", "random", "quality-only"]
    assert (out["sel_map"]["set"] == "selected").sum() == 5 and len(out["sel_map"]) == n
    assert list(out["sel_table"]["rank"]) == ["1", "2", "3", "4", "5"]
    stored = h.store().get_selection("qdit")
    assert [str(r["rank"] + 1) for r in stored] == list(out["sel_table"]["rank"])
    with pytest.raises(gr.Error, match="alpha|α"):
        h.select.ui_qdit(k=5, alpha=1.5, **pool)
    with pytest.raises(gr.Error, match="k"):
        h.select.ui_qdit(k=500, alpha=0.7, **pool)
    dups = h.select.ui_dups(threshold=0.95, **pool)
    groups = dups["dup_groups"]
    assert len(groups) == 1 and {m["seq"] for m in groups[0]["members"]} == {1, 2, 3}
    assert "2 candidates would be rejected" in dups["dup_status"]
    keep = groups[0]["keep"]
    res = h.select.ui_dups_reject(groups, reviewer="bob", request=req())
    assert "rejected 2" in res["dup_status"] and res["dup_groups"] is None
    statuses = {m["id"]: h.store().get_candidate(m["id"]).review_status for m in groups[0]["members"]}
    assert statuses.pop(keep) == "pending" and set(statuses.values()) == {"rejected"}
    assert h.store().review_log(next(iter(statuses)))[-1].reason.startswith("near-duplicate of #")
    again = h.select.ui_dups_reject(groups, reviewer="bob", request=req())  # already reviewed: left alone
    assert "rejected 0" in again["dup_status"]
    with pytest.raises(gr.Error, match="Find near-duplicates first"):
        h.select.ui_dups_reject(None, reviewer="bob", request=req())
    api = h.api.select(k=3, alpha=0.5, source="all", tau=0.01, quality="none", model="all-minilm-l6-v2")
    assert len(api["ids"]) == 3 and api["params"]["alpha"] == 0.5


def test_quality_slider_filters_the_queue_and_counts_from_stored_scores(h):
    from curate.quality import load_scorer, score_outputs
    scorer = load_scorer("proxy:consensus", store=h.store())
    score_outputs(h.store(), scorer)
    loaded = h.review.ui_load(reviewer="ann", request=req())
    assert (scorer.name in [v for _, v in loaded["q_scorer"]["choices"]])
    picked = h.review.ui_quality_scorer(QueueFilter(quality_scorer=scorer.name))
    lo, hi = picked["q_min"]["minimum"], picked["q_min"]["maximum"]
    assert picked["q_min"]["value"] == lo < hi and picked["q_min"]["interactive"] is True
    everything = int(picked["q_count"].split(" of ")[1].split()[0].replace(",", ""))
    assert picked["q_count"].startswith(f"{everything:,} of {everything:,}")  # at the minimum all pass
    mid = (lo + hi) / 2
    moved = h.review.ui_quality(QueueFilter(quality_scorer=scorer.name, quality_min=mid))
    chosen = h.store().chosen_output_scores(scorer.name)
    assert moved["q_count"].startswith(f"{sum(v >= mid for v in chosen.values()):,} of {len(chosen):,}")
    assert set(moved["q_hist"]["side"]) == {"passes", "below"}
    assert moved["page_info"].startswith(f"{h.store().count_queue(status='pending', quality_scorer=scorer.name, quality_min=mid):,} candidates")
    confirm = h.review.ui_confirm_all(tau=0.0, q_scorer=scorer.name, q_min=mid)
    n = confirm["confirm_count"]
    assert n == h.store().count_pending_passing(0.0, quality_scorer=scorer.name, quality_min=mid) > 0
    assert "score ≥" in confirm["confirm_text"]
    h.review.ui_accept_all(tau=0.0, count=n, reviewer="ann", q_scorer=scorer.name, q_min=mid, request=req())
    assert h.store().review_counts()["accepted"] == n
    off = h.review.ui_quality(QueueFilter())
    assert off["q_count"].startswith("no quality threshold")


def test_an_empty_store_points_a_new_user_to_the_run_tab(tmp_path):
    db = tmp_path / "new.db"
    h = Handlers(load_settings(None, db=str(db), reviewer="ann"), jobs.JobRunner(str(db), scripted_pool()))
    assert h.review.ui_next(None, F)["header"].startswith("Nothing generated yet: start a generation job")
