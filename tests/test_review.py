"""curate.review: the queue, candidate detail, accept / edit / reject / undo, thresholds, bulk accept."""

from __future__ import annotations

import json

import pytest

from curate import review
from curate.errors import ConflictError, StoreError
from curate.review import QueueFilter
from review_fixtures import XSS, filled_store


@pytest.fixture
def store(tmp_path):
    s = filled_store(tmp_path / "r.db", 40, texts={0: {"outputs": [XSS, XSS.upper(), "something else"]}})
    yield s
    s.close()


def first_pending(store, **kw) -> dict:
    return review.queue_page(store, QueueFilter(**kw))["rows"][0]


# -- the queue ---------------------------------------------------------------------------------------------
def test_queue_filters_count_like_the_store(store):
    everything = review.queue_page(store, QueueFilter(status=None))
    assert everything["total"] == 40
    pending = review.queue_page(store, QueueFilter())
    auto = review.queue_page(store, QueueFilter(status="auto-filtered"))
    assert pending["total"] == store.count_candidates("ok") == 38
    assert auto["total"] == 2 and {r["status"] for r in auto["rows"]} == {"rejected"}
    a = review.queue_page(store, QueueFilter(task_type="A"))["total"]
    b = review.queue_page(store, QueueFilter(task_type="B"))["total"]
    assert a + b == 38 and a > 0 and b > 0
    by_model = [review.queue_page(store, QueueFilter(model=m))["total"] for m in store.generator_models()]
    assert sum(by_model) == 38


def test_queue_consensus_filter_matches_count_passing(store):
    for tau in (0.0, 0.3, 0.6, 0.99):
        passing = review.queue_page(store, QueueFilter(status=None, consensus="pass", tau=tau))["total"]
        failing = review.queue_page(store, QueueFilter(status=None, consensus="fail", tau=tau))["total"]
        counts = store.count_passing(tau)
        assert passing == counts["passing"]
        assert passing + failing == counts["scored"]
    assert review.queue_page(store, QueueFilter(status=None, consensus="none"))["total"] == 2  # auto-filtered


def test_status_and_consensus_counts_match_the_rows(store):
    """count_queue joins from the smaller side (pending vs the rest): it must agree with the rows."""
    rows = review.queue_page(store, QueueFilter(), page_size=100)["rows"]
    for step in range(3):
        for status in ("pending", "accepted", "rejected"):
            for cons in ("pass", "fail"):
                f = QueueFilter(status=status, consensus=cons, tau=0.4)
                page = review.queue_page(store, f, page_size=100)
                assert page["total"] == len(page["rows"]), (step, status, cons)
        for r in rows[step * 12:(step + 1) * 12]:  # review more and more (the sides swap)
            review.accept(store, r["id"], reviewer="ann") if r["seq"] % 3 else review.reject(store, r["id"],
                                                                                            reviewer="ann")


def test_queue_search_paging_and_sort(store):
    hit = review.queue_page(store, QueueFilter(search="<script>"))
    assert hit["total"] == 1 and hit["rows"][0]["output"].startswith("<script>")
    assert review.queue_page(store, QueueFilter(search="100%"))["total"] == 0  # % is literal, not a wildcard
    pages = [review.queue_page(store, QueueFilter(status=None), page=p, page_size=15) for p in (1, 2, 3, 9)]
    assert [p["page"] for p in pages] == [1, 2, 3, 3] and pages[0]["pages"] == 3
    ids = [r["id"] for p in pages[:3] for r in p["rows"]]
    assert len(ids) == len(set(ids)) == 40
    asc = review.queue_page(store, QueueFilter(sort="min_pairwise"), page_size=100)["rows"]
    values = [r["min_pairwise"] for r in asc]
    assert values == sorted(values)
    desc = review.queue_page(store, QueueFilter(sort="-seq"))["rows"]
    assert [r["seq"] for r in desc] == sorted((r["seq"] for r in desc), reverse=True)


def test_bad_filter_values_are_refused():
    with pytest.raises(ValueError):
        QueueFilter(status="approved")
    with pytest.raises(ValueError):
        QueueFilter(tau=1.5)


def test_next_candidate_skips_reviewed_and_wraps(store):
    rows = review.queue_page(store, QueueFilter(), page_size=100)["rows"]
    review.accept(store, rows[1]["id"], reviewer="ann")
    assert review.next_candidate(store, QueueFilter(), rows[0]["seq"]) == rows[2]["id"]
    assert review.next_candidate(store, QueueFilter(), rows[-1]["seq"]) == rows[0]["id"]  # wraps round
    # the status filter is ignored (next *pending*), the others are kept
    b_rows = [r for r in rows if r["task_type"] == "B"]
    f = QueueFilter(status="accepted", task_type="B")
    assert review.next_candidate(store, f, b_rows[0]["seq"]) == b_rows[1]["id"]


# -- one candidate -------------------------------------------------------------------------------------------
def test_candidate_has_every_output_with_scores_and_the_choice(store):
    row = first_pending(store)
    d = review.candidate(store, row["id"], tau=0.01)
    cons = store.get_consensus(row["id"])
    assert [o["model"] for o in d["outputs"]] == cons["models"]
    assert [o["agreement"] for o in d["outputs"]] == cons["scores"]
    assert [o["chosen"] for o in d["outputs"]] == [i == cons["chosen_index"] for i in range(cons["k"])]
    assert d["consensus"]["pairwise"] == cons["pairwise"]
    assert d["outputs"][0]["style"] == "generator"
    assert f"o{cons['chosen_index']}" in d["consensus"]["explanation"]
    # the untrusted text comes back exactly as stored
    assert d["outputs"][0]["text"] == XSS


def test_explanation_names_the_rule(store):
    d = review.candidate(store, first_pending(store)["id"], tau=0.01)  # XSS row: o0 == o1 normalised
    assert d["consensus"]["reason"] == "exact_o0"
    assert "exact matches pass at any threshold" in d["consensus"]["explanation"].lower()
    rouge = next(r for r in review.queue_page(store, QueueFilter(), page_size=100)["rows"]
                 if r["consensus_reason"] == "rouge")
    high = review.candidate(store, rouge["id"], tau=0.99)
    assert not high["consensus"]["passes"] and "≤ τ = 0.99" in high["consensus"]["explanation"]
    assert review.candidate(store, rouge["id"], tau=0.0)["consensus"]["passes"]


def test_unknown_candidate(store):
    with pytest.raises(StoreError):
        review.candidate(store, "nope")


# -- actions -------------------------------------------------------------------------------------------------
def test_accept_default_and_other_output(store):
    rows = review.queue_page(store, QueueFilter())["rows"]
    d = review.candidate(store, rows[1]["id"])
    chosen = d["outputs"][d["consensus"]["chosen_index"]]["text"]
    after = review.accept(store, rows[1]["id"], reviewer="ann", version=0)
    assert after.review_status == "accepted" and after.final_output == chosen
    other = review.accept(store, rows[2]["id"], reviewer="ann", version=0, output_index=2)
    assert other.final_output == review.candidate(store, rows[2]["id"])["outputs"][2]["text"]
    with pytest.raises(StoreError, match="no o7"):
        review.accept(store, rows[3]["id"], reviewer="ann", output_index=7)


def test_edit_keeps_the_original_and_logs_who_and_when(store):
    cid = first_pending(store)["id"]
    before = store.get_candidate(cid)
    row = review.edit(store, cid, reviewer="ann", version=0, instruction="Fixed instruction.", output="Better.")
    assert row.review_status == "edited"
    assert (row.final_instruction, row.final_input, row.final_output) == (
        "Fixed instruction.", before.input, "Better.")
    assert (row.instruction, row.output) == (before.instruction, before.output)  # original kept
    log = store.review_log(cid)
    assert [(e.reviewer, e.action) for e in log] == [("ann", "edit")] and log[0].at > 0
    assert log[0].before["output"] == before.output


def test_reject_with_reason(store):
    cid = first_pending(store)["id"]
    review.reject(store, cid, reviewer="ann", version=0, reason="  off topic ")
    d = review.candidate(store, cid)
    assert d["review_status"] == "rejected" and d["reject_reason"] == "off topic" and d["final"] is None


def test_second_reviewer_on_a_stale_version_gets_a_conflict(store):
    cid = first_pending(store)["id"]
    review.accept(store, cid, reviewer="ann", version=0)
    with pytest.raises(ConflictError, match="ann"):
        review.reject(store, cid, reviewer="bob", version=0)
    d = review.candidate(store, cid)
    assert d["review_status"] == "accepted" and d["reviewed_by"] == "ann" and len(d["log"]) == 1


# -- undo ----------------------------------------------------------------------------------------------------
def _state(store, cid):
    x = store.get_candidate(cid)
    return x.review_status, x.final_instruction, x.final_input, x.final_output


def test_undo_returns_to_pending(store):
    cid = first_pending(store)["id"]
    pristine = _state(store, cid)
    row = review.accept(store, cid, reviewer="ann", version=0)
    review.undo(store, cid, reviewer="ann", version=row.version)
    assert _state(store, cid) == pristine
    assert [e.action for e in store.review_log(cid)] == ["accept", "reset"]  # the log only grows


def test_undo_restores_the_previous_review_exactly(store):
    cid = first_pending(store)["id"]
    review.accept(store, cid, reviewer="ann", output_index=2)
    accepted = _state(store, cid)
    review.edit(store, cid, reviewer="ann", instruction="New instruction.", input="New input.", output="New.")
    review.undo(store, cid, reviewer="ann")
    assert _state(store, cid) == accepted
    review.undo(store, cid, reviewer="ann")  # undo again: further back
    assert _state(store, cid)[0] == "pending"
    with pytest.raises(StoreError, match="nothing to undo"):
        review.undo(store, cid, reviewer="ann")


def test_undo_restores_an_edit_then_accept_and_a_rejection_reason(store):
    rows = review.queue_page(store, QueueFilter())["rows"]
    cid = rows[0]["id"]
    review.edit(store, cid, reviewer="ann", instruction="Edited.", output="Edited output.")
    review.accept(store, cid, reviewer="ann", output_index=1)
    state = _state(store, cid)
    review.reject(store, cid, reviewer="ann")
    review.undo(store, cid, reviewer="ann")
    assert _state(store, cid) == state and state[1] == "Edited."
    other = rows[1]["id"]
    review.reject(store, other, reviewer="ann", reason="duplicate")
    review.accept(store, other, reviewer="ann")
    review.undo(store, other, reviewer="ann")
    d = review.candidate(store, other)
    assert d["review_status"] == "rejected" and d["reject_reason"] == "duplicate"


def test_undo_is_only_for_your_own_latest_action(store):
    cid = first_pending(store)["id"]
    review.accept(store, cid, reviewer="ann")
    with pytest.raises(ConflictError, match="ann"):
        review.undo(store, cid, reviewer="bob")
    with pytest.raises(ConflictError):
        review.undo(store, cid, reviewer="ann", version=0)  # stale
    assert _state(store, cid)[0] == "accepted"


# -- thresholds and bulk -------------------------------------------------------------------------------------
def test_threshold_summary_is_a_query_over_stored_scores(store):
    for tau in (0.0, 0.25, 0.5, 0.75):
        s = review.threshold_summary(store, tau)
        assert (s["scored"], s["passing"]) == tuple(store.count_passing(tau).values())
        assert s["pending_passing"] == len(store.pending_passing(tau))
        assert [(b["lo"], b["n"]) for b in s["histogram"]] == [
            (b["lo"], b["n"]) for b in store.min_pairwise_histogram(review.HISTOGRAM_BINS)]
        view = review.threshold_view(store, QueueFilter(consensus="pass", tau=tau))
        assert view["queue"]["total"] == store.count_queue(status="pending", consensus="pass", tau=tau)
        assert {b["side"] for b in s["histogram"] if b["hi"] <= tau} <= {"below τ"}
        assert {b["side"] for b in s["histogram"] if b["lo"] >= tau + 1e-9} <= {"passes τ"}


def test_accept_all_passing_accepts_exactly_the_pending_passing(store):
    tau = 0.4
    cid = review.queue_page(store, QueueFilter(consensus="pass", tau=tau))["rows"][0]["id"]
    review.reject(store, cid, reviewer="ann")
    n = store.count_pending_passing(tau)
    with pytest.raises(ConflictError):
        review.accept_all_passing(store, tau, reviewer="bob", expected=n + 1)
    assert store.review_counts().get("accepted", 0) == 0  # nothing written
    res = review.accept_all_passing(store, tau, reviewer="bob", expected=n)
    assert res == {"accepted": n, "skipped": 0}
    assert store.count_pending_passing(tau) == 0
    assert store.get_candidate(cid).review_status == "rejected"  # reviewed rows are left alone
    assert {r.reviewer for r in store.review_log() if r.action == "accept"} == {"bob"}


def test_overview_counts(store):
    review.accept(store, first_pending(store)["id"], reviewer="ann")
    ov = review.overview(store, 0.3)
    stages = {s["stage"]: s["n"] for s in ov["stages"]}
    assert stages["candidates"] == 38 and stages["candidates auto-filtered"] == 2 and stages["accepted"] == 1
    assert {m["model"] for m in ov["models"]} >= set(store.generator_models())
    assert sum(m["candidates_ok"] for m in ov["models"]) == 38
    assert ov["reviewers"][0]["reviewer"] == "ann" and ov["reviewers"][0]["accept"] == 1
    assert any(r["reason"] == "empty_output" for r in ov["reasons"])
    below = next(r for r in ov["reasons"] if r["stage"] == "consensus")
    assert below["n"] == store.count_passing(0.3)["scored"] - store.count_passing(0.3)["passing"]


def _review_state(store):
    rows = store.review_queue(status=None, limit=10_000)
    log = [(r.candidate_id, r.reviewer, r.action, r.version, json.dumps(r.before, sort_keys=True),
            json.dumps(r.after, sort_keys=True), r.reason) for r in store.review_log(limit=100_000)]
    inst = [(r["id"], r["review_status"], r["version"], r["reviewed_by"], r["instruction"], r["input"], r["output"])
            for r in rows]
    return inst, sorted(log)


@pytest.mark.parametrize("tau", [0.0, 0.2, 0.4, 0.7, 1.0])
def test_bulk_accept_equals_one_review_at_a_time(tmp_path, tau):
    """The set-based accept-all writes exactly what one Store.review per candidate writes."""
    from review_fixtures import filled_store
    stores = [filled_store(tmp_path / f"{name}.db", 60) for name in ("fast", "plain")]
    for st in stores:  # some already reviewed, one edited then reset to pending
        ids = [r["id"] for r in st.review_queue(status="pending", limit=8)]
        review.reject(st, ids[0], reviewer="ann")
        review.accept(st, ids[1], reviewer="ann")
        review.edit(st, ids[2], reviewer="ann", output="changed")
        st.review(ids[3], "edit", reviewer="ann", output="changed too")
        st.review(ids[3], "reset", reviewer="ann")
    fast = review.accept_all_passing(stores[0], tau, reviewer="bob")
    plain = review.accept_all_passing_reference(stores[1], tau, reviewer="bob")
    assert fast == plain
    a, b = (_review_state(st) for st in stores)
    assert a[0] == b[0]
    assert a[1] == b[1]


def _scored(store):
    from curate.quality import load_scorer, score_outputs
    scorer = load_scorer("proxy:consensus", store=store)
    score_outputs(store, scorer)
    return scorer.name


@pytest.mark.parametrize("q_min", [0.0, 0.3, 0.6, 2.0])
def test_quality_threshold_is_a_query_over_the_chosen_outputs_scores(store, q_min):
    name = _scored(store)
    chosen = store.chosen_output_scores(name)
    tau = 0.2
    want = [r["id"] for r in store.review_queue(status="pending", consensus="pass", tau=tau, limit=10_000)
            if chosen.get(r["id"], float("-inf")) >= q_min]
    f = QueueFilter(status="pending", consensus="pass", tau=tau, quality_scorer=name, quality_min=q_min)
    page = review.queue_page(store, f, 1, 500)
    assert [r["id"] for r in page["rows"]] == want and page["total"] == len(want)
    assert store.count_pending_passing(tau, quality_scorer=name, quality_min=q_min) == len(want)
    s = review.quality_summary(store, name, q_min)
    assert s["scored"] == len(chosen) and s["passing"] == sum(v >= q_min for v in chosen.values())
    assert sum(b["n"] for b in s["histogram"]) == len(chosen)
    assert review.quality_summary(store, None, q_min)["scored"] == 0
    off = QueueFilter(status="pending", consensus="pass", tau=tau, quality_scorer=name, quality_min=None)
    assert review.queue_page(store, off)["total"] == store.count_pending_passing(tau)  # no minimum: no filter


@pytest.mark.parametrize("q_min", [0.0, 0.4, 0.8])
def test_bulk_accept_with_a_quality_minimum_equals_the_plain_twin(tmp_path, q_min):
    from review_fixtures import filled_store
    stores = [filled_store(tmp_path / f"{name}.db", 60) for name in ("fast", "plain")]
    names = {_scored(st) for st in stores}
    (name,) = names
    fast = review.accept_all_passing(stores[0], 0.1, reviewer="bob", quality_scorer=name, quality_min=q_min)
    plain = review.accept_all_passing_reference(stores[1], 0.1, reviewer="bob", quality_scorer=name,
                                                quality_min=q_min)
    assert fast == plain
    assert _review_state(stores[0]) == _review_state(stores[1])
    chosen = stores[0].chosen_output_scores(name)
    accepted = stores[0].review_queue(status="accepted", limit=10_000)
    assert all(chosen[r["id"]] >= q_min for r in accepted)
