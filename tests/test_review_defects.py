"""Regression tests for the review defects of issue #14, one (or a few) per defect, each named after it.

Each failed on the branch's starting commit (931b6c2); together they pin down that review never loses or
misreports a reviewer's work: edit-then-accept keeps the edit, undo is structural, writes take their lock up
front, numbers are range-checked at every entry point, names are escaped in toasts, log rows chain, a stale
edit form is refused, the app will not face the network without a login, and exports clean up after a kill."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from curate import export as ex  # noqa: E402
from curate import jobs, review  # noqa: E402
from curate.cli import main as cli_main  # noqa: E402
from curate.errors import SettingsError, StoreError  # noqa: E402
from curate.review import QueueFilter  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui import Handlers  # noqa: E402
from review_fixtures import filled_store, in_processes, review_steps, scripted_pool  # noqa: E402

F = QueueFilter()
EVIL = '<img src=x onerror="window.__xss=1"><a href="javascript:alert(2)">x</a><b style="color:red">B</b>'


@pytest.fixture
def store(tmp_path):
    s = filled_store(tmp_path / "d.db", 30)
    yield s
    s.close()


def pending_ids(store, n):
    return [r["id"] for r in store.review_queue(status="pending", limit=n)]


def req(username=None):
    return SimpleNamespace(username=username)


@pytest.fixture
def h(tmp_path):
    db = tmp_path / "h.db"
    filled_store(db, 20).close()
    runner = jobs.JobRunner(str(db), scripted_pool())
    yield Handlers(load_settings(None, db=str(db), reviewer="ann"), runner)
    runner.join(10)


# -- 1. edit, then accept ------------------------------------------------------------------------------------
def test_defect1_accept_after_edit_accepts_the_edited_texts(store, tmp_path):
    cid = pending_ids(store, 1)[0]
    review.edit(store, cid, reviewer="ann", instruction="Edited instruction.", output="Edited output.")
    row = review.accept(store, cid, reviewer="ann")
    assert (row.final_instruction, row.final_output) == ("Edited instruction.", "Edited output.")
    out = ex.export(store, "alpaca-jsonl", tmp_path / "x")
    data = (out.data_path).read_text(encoding="utf-8")
    assert '"instruction": "Edited instruction.", "input": ' in data and '"output": "Edited output."' in data


def test_defect1_an_explicitly_picked_output_still_wins_after_an_edit(store):
    cid = pending_ids(store, 1)[0]
    review.edit(store, cid, reviewer="ann", instruction="Edited instruction.", output="Edited output.")
    o2 = review.candidate(store, cid)["outputs"][2]["text"]
    row = review.accept(store, cid, reviewer="ann", output_index=2)
    assert (row.final_instruction, row.final_output) == ("Edited instruction.", o2)


# -- 2. undo is structural ------------------------------------------------------------------------------------
def test_defect2_a_reason_that_reads_like_an_undo_is_just_a_reason(store):
    a, b = pending_ids(store, 2)
    first = store.review_log(None)
    review.accept(store, a, reviewer="bob")
    bob_id = store.review_log(a)[-1].id
    review.reject(store, b, reviewer="ann", reason=f"undo of review #{bob_id}: looks wrong")
    d = review.candidate(store, b)
    assert d["reject_reason"] == f"undo of review #{bob_id}: looks wrong"  # shown, not swallowed
    review.undo(store, b, reviewer="ann")  # undoes ann's reject, not "nothing to undo", not bob's
    assert store.get_candidate(b).review_status == "pending"
    assert store.get_candidate(a).review_status == "accepted"
    log = store.review_log(b)
    assert log[-1].undoes == log[0].id and log[0].undoes is None
    assert log[-1].reason is None  # an undo's reason column stays free text (none here)
    assert first == []


def test_defect2_undo_of_a_reject_keeps_the_reason_without_a_prefix(store):
    cid = pending_ids(store, 1)[0]
    review.reject(store, cid, reviewer="ann", reason="duplicate")
    review.accept(store, cid, reviewer="ann")
    review.undo(store, cid, reviewer="ann")
    d = review.candidate(store, cid)
    assert d["review_status"] == "rejected" and d["reject_reason"] == "duplicate"
    assert all(not (e.reason or "").startswith("undo of") for e in store.review_log(cid))


# -- 3. the write lock is taken up front ----------------------------------------------------------------------
def _steps(ids, reviewer):
    return [("edit", cid, {"reviewer": reviewer, "output": f"edited by {reviewer}"}) if i % 3 == 2
            else ("accept", cid, {"reviewer": reviewer}) for i, cid in enumerate(ids)]


def test_defect3_two_processes_reviewing_one_store_never_fail_on_the_lock(tmp_path):
    path = tmp_path / "two.db"
    filled_store(path, 260).close()
    with Store(path) as st:
        ids = [r["id"] for r in st.review_queue(status="pending", limit=1000)]
    # two processes, disjoint candidates: no review conflicts with another
    errors = [e for res in in_processes(review_steps, [(str(path), _steps(ids[k::2], who))
                                                       for k, who in enumerate(("ann", "bob"))]) for e in res]
    assert errors == []
    with Store(path) as st:
        assert sum(st.review_counts().get(s, 0) for s in ("accepted", "edited")) == len(ids)
        assert len(st.review_log(limit=10_000)) == len(ids)


def test_defect3_a_store_error_reaches_the_reviewer_as_a_clear_message(h, monkeypatch):
    first = h.review.ui_next(None, F)

    def locked(*a, **kw):
        raise sqlite3.OperationalError("database is locked")
    monkeypatch.setattr(type(h.store()), "review", locked)
    with pytest.raises(gr.Error) as e:
        h.review.ui_accept(first["current"], output_index=None, reviewer="ann", history=[], f=F, request=req())
    assert "Nothing was saved" in e.value.message and "try again" in e.value.message


def _hold_lock(path, seconds, ready):
    conn = sqlite3.connect(path)
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    import time
    time.sleep(seconds)
    conn.rollback()


def test_defect3_the_busy_wait_is_bounded_and_says_so(tmp_path, monkeypatch):
    from curate.store import base
    path = tmp_path / "busy.db"
    filled_store(path, 5).close()
    monkeypatch.setattr(base, "LOCK_TIMEOUT_S", 0.3)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(str(path), 3.0, ready))
    p.start()
    try:
        assert ready.wait(10)
        with Store(path) as st:
            cid = st.review_queue(status="pending", limit=1)[0]["id"]
            with pytest.raises(StoreError, match="busy.*nothing was written.*try again"):
                review.accept(st, cid, reviewer="ann")
    finally:
        p.join(10)
    with Store(path) as st:
        assert st.review_log() == []


# -- 4. numbers are range-checked at every entry point ---------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda h: h.api.accept_all_passing(tau=-1, reviewer="ann", request=req()),
    lambda h: h.api.passing_count(tau=5),
    lambda h: h.api.overview(tau=-0.5),
    lambda h: h.api.queue(tau=2.0),
    lambda h: h.review.ui_confirm_all(tau=1.5),
    lambda h: h.review.ui_accept_all(tau=-1, count=None, reviewer="ann", q_scorer="", q_min=None, request=req()),
    lambda h: h.overview.ui_overview(tau=7),
])
def test_defect4_tau_outside_0_1_is_refused_with_the_range(h, call):
    with pytest.raises(gr.Error, match=r"tau.*from 0 to 1"):
        call(h)
    assert h.store().review_counts().get("accepted", 0) == 0  # nothing accepted


def test_defect4_curate_threshold_refuses_a_tau_outside_0_1(tmp_path, capsys):
    db = str(tmp_path / "t.db")
    filled_store(db, 5).close()
    assert cli_main(["threshold", "0.1", "5", "--db", db]) == 2
    err = capsys.readouterr()
    assert "tau" in err.err and "from 0 to 1" in err.err and "passing" not in err.out


def test_defect4_one_shared_check(monkeypatch):
    from curate import checks
    with pytest.raises(ValueError, match=r"/x: tau .* from 0 to 1 .* not -1"):
        checks.tau(-1, "/x")
    assert checks.tau("0.25", "/x") == 0.25
    with pytest.raises(ValueError, match="a number"):
        checks.tau("abc", "/x")
    with pytest.raises(ValueError, match="a number"):
        checks.tau(float("nan"), "/x")


# -- 5. names are escaped in toasts ----------------------------------------------------------------------------
def test_defect5_a_reviewer_name_in_a_conflict_toast_is_escaped(h):
    first = h.review.ui_next(None, F)
    stale = dict(first["current"])
    h.review.ui_accept(first["current"], output_index=None, reviewer=EVIL, history=[], f=F, request=req())
    with pytest.warns(UserWarning) as w:
        h.review.ui_reject(stale, reason="", reviewer="bob", history=[], f=F, request=req())
    msg = str(w[0].message)
    assert "&lt;img src=x" in msg and "<img" not in msg and "<a " not in msg and "<b " not in msg


def test_defect5_a_reviewer_name_in_an_undo_error_is_escaped(h):
    first = h.review.ui_next(None, F)
    out = h.review.ui_accept(first["current"], output_index=None, reviewer="bob", history=[], f=F,
                             request=req())
    h.review.ui_reject(out["current"], reason="", reviewer=EVIL, history=[], f=F, request=req())
    cid = out["current"]["id"]
    version = h.store().get_candidate(cid).version
    with pytest.raises(gr.Error) as e:  # bob tries to undo on a candidate EVIL reviewed last
        h.review.ui_undo([[cid, version]], reviewer="bob", tau=0.01, request=req())
    assert "&lt;img" in e.value.message and "<img" not in e.value.message


def test_defect5_every_library_error_is_escaped(h):
    with pytest.raises(gr.Error) as e:
        h.review.ui_open(candidate_id="<b>nope</b>", tau=0.01)
    assert "<b>" not in e.value.message and "&lt;b&gt;" in e.value.message


# -- 6. log rows describe the state they left -----------------------------------------------------------------
def test_defect6_each_log_row_starts_where_the_previous_one_left(store):
    cid = pending_ids(store, 1)[0]
    review.edit(store, cid, reviewer="ann", instruction="Edited.", output="Edited output.")
    review.reject(store, cid, reviewer="ann", reason="no")
    x = store.get_candidate(cid)
    assert x.final_output is None
    log = store.review_log(cid)
    assert log[-1].after == x.current.as_dict() == x.original.as_dict()  # what the candidate shows now
    review.edit(store, cid, reviewer="ann", output="Again.")
    store.review(cid, "reset", reviewer="ann")
    review.accept(store, cid, reviewer="ann")
    review.undo(store, cid, reviewer="ann")
    log = store.review_log(cid)
    for prev, nxt in zip(log, log[1:]):
        assert nxt.before == prev.after, (prev.action, nxt.action)
    assert log[-1].after == store.get_candidate(cid).current.as_dict()


# -- 7. a stale edit form is refused ----------------------------------------------------------------------------
def test_defect7_an_edit_typed_before_the_form_reloaded_is_refused(h):
    first = h.review.ui_next(None, F)
    second = h.review.ui_next(first["current"], F)
    # typing began on the first candidate's form, the second one's form arrived before Save was pressed
    with pytest.raises(gr.Error, match="(?i)reload"):
        h.review.ui_edit(second["current"], instruction="Mine.", input="", output="Typed.", reviewer="ann",
                         history=[], f=F, form=second["form_token"], typed_on=first["form_token"],
                         request=req())
    # a form rendered for another candidate or version than the one open
    with pytest.raises(gr.Error, match="(?i)reload"):
        h.review.ui_edit(second["current"], instruction="Mine.", input="", output="Typed.", reviewer="ann",
                         history=[], f=F, form=first["form_token"], typed_on=first["form_token"],
                         request=req())
    # nothing typed at all: the texts are the form's own (a typing replaced by a reload looks like this)
    unchanged = dict(instruction=second["edit_instruction"], input=second["edit_input"],
                     output=second["edit_output"])
    with pytest.raises(gr.Error, match="(?i)nothing changed"):
        h.review.ui_edit(second["current"], **unchanged, reviewer="ann", history=[], f=F,
                         form=second["form_token"], typed_on="", request=req())
    # the edit began (focus, selection) while the form still held the first candidate's texts, though the
    # token had already changed: the page records both, and the texts give it away
    import json
    stale_texts = json.dumps({"token": second["form_token"], "texts": [
        first["edit_instruction"], first["edit_input"], first["edit_output"]]})
    with pytest.raises(gr.Error, match="(?i)reload"):
        h.review.ui_edit(second["current"], instruction=second["edit_instruction"], input=second["edit_input"],
                         output=first["edit_output"] + "Typed.", reviewer="ann", history=[], f=F,
                         form=second["form_token"], typed_on=stale_texts, request=req())
    assert h.store().review_log() == []
    began = json.dumps({"token": second["form_token"], "texts": [
        second["edit_instruction"], second["edit_input"], second["edit_output"]]})
    out = h.review.ui_edit(second["current"], instruction="Mine.", input="", output="Typed.", reviewer="ann",
                           history=[], f=F, form=second["form_token"], typed_on=began, request=req())
    row = h.store().get_candidate(second["current"]["id"])
    assert (row.review_status, row.final_output) == ("edited", "Typed.") and out["history"]


# -- 8. never on the network without a login -------------------------------------------------------------------
def test_defect8_the_network_without_a_login_is_refused_unless_insecure(tmp_path, capsys):
    from curate.ui import check_exposure
    with pytest.raises(SettingsError, match="--insecure-no-auth"):
        check_exposure(load_settings(None, db=str(tmp_path / "a.db"), host="0.0.0.0"))
    check_exposure(load_settings(None, db=str(tmp_path / "a.db"), host="0.0.0.0", auth="ann:pw"))
    check_exposure(load_settings(None, db=str(tmp_path / "a.db"), host="127.0.0.1"))
    check_exposure(load_settings(None, db=str(tmp_path / "a.db"), host="0.0.0.0", insecure_no_auth=True))
    assert "WARNING" in capsys.readouterr().err
    import app  # the repository's app.py
    assert app.main(["--host", "0.0.0.0", "--db", str(tmp_path / "a.db")]) == 2
    assert "--insecure-no-auth" in capsys.readouterr().err


def test_defect8_without_a_login_the_ui_says_names_are_not_verified(h):
    out = h.review.ui_load(reviewer="ann", request=req())
    assert "not verified" in out["login_note"]["value"] and out["login_note"]["visible"] is True
    assert h.review.ui_load(reviewer="ann", request=req("ann"))["login_note"]["visible"] is False
    assert out["disagreements_tab"]["visible"] is False  # one review per candidate: nothing to disagree on


# -- 9. exports clean up after an interrupted one ---------------------------------------------------------------
def _killed_export(path, out):
    with Store(path) as st:
        def die(tmp, out, state):
            os.kill(os.getpid(), signal.SIGKILL)
        ex._place = die
        ex.export(st, "alpaca-jsonl", out)


def test_defect9_the_next_export_removes_what_a_killed_one_left(store, tmp_path):
    review.accept(store, pending_ids(store, 1)[0], reviewer="ann")
    out = tmp_path / "exp"
    p = multiprocessing.get_context("fork").Process(target=_killed_export, args=(store.path, out))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    left = [q.name for q in tmp_path.iterdir() if q.name.startswith(".exp.tmp-")]
    assert len(left) == 1
    live = tmp_path / f".exp.tmp-{os.getppid()}-0123abcd"  # a concurrent export's (its process lives): kept
    live.mkdir()
    ex.export(store, "alpaca-jsonl", out)
    assert sorted(q.name for q in tmp_path.iterdir() if q.name.startswith(".exp.")) == [live.name]
    assert (out / "data.jsonl").is_file()
