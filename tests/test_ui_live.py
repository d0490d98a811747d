"""Live views as plain functions (issue 16): the store's version probe, the page's adaptive timer, the tab gate,
τ typed out of range, the open candidate following the store, a reload mid-job, one log line per refused input,
plurals and the export preview's real lines. The browser half is tests/test_app_browser_live.py."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from curate import jobs, review  # noqa: E402
from curate.ensemble import compute_consensus  # noqa: E402
from curate.review import QueueFilter  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui import Handlers, live  # noqa: E402
from curate.ui.base import logged, plural  # noqa: E402
from curate.ui.synthetic import fill  # noqa: E402
from curate.ui.tabs.review import LIVE_VIEW, tau_checked  # noqa: E402
from curate.ui.tabs.run import FORM, JOB  # noqa: E402
from curate.ui.wiring import _named, with_filter  # noqa: E402
from review_fixtures import filled_store, scripted_pool  # noqa: E402

FILTER_VALUES = ("pending", "", "", "", 0.01, "", "seq", "", None, None, "", "", None, None)


@pytest.fixture
def h(tmp_path):
    db = tmp_path / "live.db"
    filled_store(db, 20).close()
    runner = jobs.JobRunner(str(db), scripted_pool(delay=0.05))
    yield Handlers(load_settings(None, db=str(db), reviewer="ann"), runner)
    runner.join(30)


def skipped(v) -> bool:
    return isinstance(v, dict) and v.get("__type__") == "update" and len(v) == 1


# -- the probe ----------------------------------------------------------------------------------------------
def test_store_version_moves_with_every_write_the_app_shows_and_only_then(tmp_path):
    st = Store(tmp_path / "v.db")
    v0 = st.store_version()
    assert st.store_version() == v0  # reading changes nothing
    fill(st, 4, consensus="none", rejected_every=0)
    v1 = st.store_version()
    assert v1.data != v0.data and v1.jobs == v0.jobs
    compute_consensus(st)  # consensus rows land
    v2 = st.store_version()
    assert v2.data != v1.data
    cid = st.review_queue(status="pending", limit=1)[0]["id"]
    review.accept(st, cid, reviewer="ann")
    v3 = st.store_version()
    assert v3.data != v2.data
    review.undo(st, cid, reviewer="ann", version=review.candidate(st, cid)["version"])
    assert st.store_version().data != v3.data  # an undo is a review row too
    jid = st.create_job("ensemble", {})
    v4 = st.store_version()
    assert v4.jobs != v3.jobs and v4.active_jobs == 1
    st.update_job(jid, state="done")
    assert st.store_version().active_jobs == 0 and st.store_version().data == v4.data


def test_the_timer_is_fast_while_things_move_and_backs_off_when_idle():
    assert live.next_interval(None, False, False) == live.FAST_S
    waits, w = [], live.FAST_S
    for _ in range(6):
        w = live.next_interval(w, False, False)
        waits.append(w)
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0] and live.SLOW_S == 8.0
    assert live.next_interval(8.0, True, False) == live.FAST_S  # a change
    assert live.next_interval(8.0, False, True) == live.ACTIVE_S == 0.5  # a job is active


def test_a_tick_sends_only_what_moved(h):
    first = h.live.ui_tick(None, None, live.FAST_S)
    assert isinstance(first["live_jobs"], list) and isinstance(first["live_data"], list)
    same = h.live.ui_tick(first["live_jobs"], first["live_data"], live.FAST_S)
    assert skipped(same["live_jobs"]) and skipped(same["live_data"])  # no change event: no tab re-renders
    assert same["live_interval"] == 2.0 and same["live_timer"].value == 2.0 and same["live_timer"].active
    idle = h.live.ui_tick(first["live_jobs"], first["live_data"], live.SLOW_S)
    assert skipped(idle["live_timer"]) and skipped(idle["live_interval"])  # at the slowest already: nothing sent
    cid = h.store().review_queue(status="pending", limit=1)[0]["id"]
    review.accept(h.store(), cid, reviewer="bob")  # another reviewer
    moved = h.live.ui_tick(first["live_jobs"], first["live_data"], live.SLOW_S)
    assert moved["live_data"] != first["live_data"] and skipped(moved["live_jobs"])
    assert moved["live_interval"] == live.FAST_S


def test_when_shown_runs_only_on_its_tab_and_never_toasts():
    calls = []

    def fn(x: int) -> dict:
        calls.append(x)
        if x < 0:
            raise gr.Error("bad x")
        return {"out": x}
    gated = _named(live.when_shown("review", fn), ["out"])
    assert skipped(gated("run", 1)) and calls == []
    assert gated("review", 2) == 2
    assert skipped(gated("review", -1))  # a filter being typed: the background refresh stays quiet
    import inspect
    assert list(inspect.signature(live.when_shown("review", fn)).parameters) == ["shown", "x"]


# -- τ --------------------------------------------------------------------------------------------------------
def test_tau_out_of_range_gives_one_warning_uses_the_nearest_and_sets_the_box(h, monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: warnings.append(msg))
    threshold = tau_checked(with_filter(h.review.ui_threshold))
    values = list(FILTER_VALUES)
    values[4] = 5
    out = threshold(*values)
    assert out["tau"] == 1.0 and "τ = 1.00" in out["pass_count"]
    assert len(warnings) == 1 and "from 0 to 1" in warnings[0] and "using τ = 1" in warnings[0]
    values[4] = -1
    assert threshold(*values)["tau"] == 0.0 and len(warnings) == 2
    values[4] = 0.5
    ok = threshold(*values)
    assert skipped(ok["tau"]) and "τ = 0.50" in ok["pass_count"] and len(warnings) == 2
    values[4] = None  # the box emptied while typing: nothing changes, nothing said
    assert all(skipped(ok) for ok in (threshold(*values)[n] for n in ("pass_count", "queue", "tau")))
    assert len(warnings) == 2


def test_the_open_candidate_follows_tau_and_other_reviewers_but_not_the_edit_form(h):
    shown = h.review.ui_next(None, QueueFilter(tau=0.01))
    cur = shown["current"]
    same = h.review.ui_live_candidate(cur, 0.01)
    assert all(skipped(same[n]) for n in LIVE_VIEW)  # nothing moved: nothing sent
    moved = h.review.ui_live_candidate(cur, 0.6)
    assert set(moved) == set(LIVE_VIEW)  # the edit form and the id box are never rewritten by a refresh
    assert "τ = 0.60" in moved["header"] and moved["header"] != shown["header"]
    assert moved["explanation"] != shown["explanation"] or "0.6" in moved["explanation"]
    cur = moved["current"]
    review.reject(h.store(), cur["id"], reviewer="bob", version=cur["version"])
    after = h.review.ui_live_candidate(cur, 0.6)
    assert "rejected by bob" in after["header"] and "reviewed since you opened it" in after["header"]
    assert after["current"]["version"] == cur["version"]  # acting on it still conflicts, as it should
    assert skipped(h.review.ui_live_candidate(None, 0.6)["header"])


# -- the Run panel after a reload --------------------------------------------------------------------------
def test_a_reload_mid_job_follows_the_running_job_with_its_form(h):
    none = h.run.ui_run_load()
    assert skipped(none["job_id"]) and all(skipped(none[n]) for n in FORM)  # nothing runs: defaults stay
    with Store(h.ctx.db_path) as st:
        target = st.count_kept_instructions() + 300
    jid = h.run.start_job("generate", instructions=target, task_type="A", seed=5, batch_size=3,
                          instruction_models="smollm2-135m-instruct:2,gemma3-270m:1", temperature=0.9)
    try:
        out = h.run.ui_run_load()
        assert set(out) == {"job_id", *JOB, *FORM}
        assert out["job_id"] == jid and out["job_state"].split(" ")[0] in ("queued", "running")
        assert (out["job_kind"], out["job_instructions"], out["job_task_type"], out["job_seed"],
                out["job_batch"], out["job_temperature"]) == ("generate", target, "A", 5, 3, 0.9)
        assert out["job_instruction_models"] == "smollm2-135m-instruct:2,gemma3-270m:1"
        assert h.run.ui_follow("")["job_id"] == jid  # the tab shown before the page's load step ran
        assert skipped(h.run.ui_follow(jid)["job_id"])
    finally:
        h.run.cancel_job(jid)


# -- small things ------------------------------------------------------------------------------------------
def test_plurals():
    assert [plural(n, "candidate") for n in (0, 1, 2, 1234)] == [
        "0 candidates", "1 candidate", "2 candidates", "1,234 candidates"]


def test_one_candidate_reads_in_the_singular(tmp_path):
    db = tmp_path / "one.db"
    filled_store(db, 1).close()
    hh = Handlers(load_settings(None, db=str(db), reviewer="ann"), jobs.JobRunner(str(db), scripted_pool()))
    out = hh.review.ui_threshold(QueueFilter(status=None))
    assert out["page_info"].startswith("1 candidate · page 1 of 1")
    assert out["pass_count"].startswith("1 of 1 ensembled candidate passes") or \
        out["pass_count"].startswith("0 of 1 ensembled candidate passes")


def test_a_refused_input_logs_one_line_and_no_traceback(h, caplog):
    handler = _named(with_filter(h.review.ui_queue), ["page_info"])
    with caplog.at_level(logging.WARNING, logger="curate.ui"), pytest.raises(gr.Error) as e:
        handler("approved", *FILTER_VALUES[1:], 1)
    assert e.value.print_exception is False  # Gradio prints no traceback for it
    lines = [r.getMessage() for r in caplog.records if r.name == "curate.ui"]
    assert len(lines) == 1 and "\n" not in lines[0] and "status" in lines[0]
    bug = gr.Error("x")
    assert logged(bug, "w") is bug and bug.print_exception is False
    with pytest.raises(ZeroDivisionError):  # a real bug is not a gr.Error: Gradio keeps its traceback
        _named(lambda: {"a": 1 / 0}, ["a"])()


def test_export_preview_shows_the_lines_as_written(h, tmp_path):
    from curate import export
    cids = [r["id"] for r in h.store().review_queue(status="pending", limit=3)]
    for cid in cids:
        review.accept(h.store(), cid, reviewer="ann")
    for fmt in ("alpaca-jsonl", "messages", "alpaca"):
        rows = export.preview(h.store(), fmt, n=2)
        text = export.preview_text(fmt, rows)
        res = export.export(h.store(), fmt, tmp_path / fmt)
        data = (res.path / export.FORMATS[fmt].data_file).read_text(encoding="utf-8")
        lines = text.split("\n")
        if fmt == "alpaca":
            assert lines[0] == "[" and data.startswith("\n".join(lines[:-1]))  # the array's first lines
        else:
            assert data.startswith(text + "\n") and len(lines) == 2


def test_every_tab_that_shows_stored_rows_follows_the_store(tmp_path):
    """The wiring: each tab whose view is read from the store refreshes on a change of the live probe's States
    (Disagreements when reviews land, Evaluate when its experiment job moves, Review as before), not only on its
    own events."""
    from curate.ui import build_app
    db = tmp_path / "w.db"
    filled_store(db, 5).close()
    cfg = build_app(load_settings(None, db=str(db)), jobs.JobRunner(str(db), scripted_pool())).get_config_file()
    ids = {c.get("props", {}).get("elem_id"): c["id"] for c in cfg["components"]}
    states = {c["id"] for c in cfg["components"] if c.get("type") == "state"}
    for elem in ("curate-dis-queue", "curate-exp-status", "curate-pass-count"):
        followers = {t[0] for d in cfg["dependencies"] if ids[elem] in d["outputs"]
                     for t in d["targets"] if t[1] == "change" and t[0] in states}
        assert followers, f"{elem} refreshes on no change of the store's live version"
