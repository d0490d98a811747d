"""The consensus keep rule has one home: curate.consensus.passes. The store's SQL is built from the same
constants; these tests hold every SQL use of it equal to the Python rule on many random stored rows, edge
cases included (an exact match with an empty chosen text, "empty" rows with a high min pairwise, invalid
reasons, min pairwise exactly at tau)."""

from __future__ import annotations

import random

import pytest

from curate import review
from curate.consensus import EXACT_REASONS, REASONS, THRESHOLD_REASONS, passes
from curate.store import Store
from curate.store.sql import ROUGE_ROWS
from factories import make_candidate

REASON_POOL = [*REASONS, "invalid: bad JSON"]


def _fill(st: Store, rng: random.Random, n: int) -> list[dict]:
    rows = []
    grid = [0.0, 0.01, 0.05, 0.25, 0.5, 0.99, 1.0]
    for i in range(n):
        xid = make_candidate(st, instruction=f"Instruction number {i} for the keep rule test")
        reason = rng.choice(REASON_POOL)
        mp = rng.choice(grid) if rng.random() < 0.4 else rng.random()
        row = {"candidate_id": xid, "k": 2, "output_ids": [f"o{i}a", f"o{i}b"], "models": ["g", "e"],
               "chosen_index": 0, "chosen_nonempty": rng.random() < 0.8, "reason": reason, "min_pairwise": mp,
               "pairwise": [[1, mp], [mp, 1]], "scores": [mp, mp], "tokenizer": "rouge", "threshold": 0.01}
        rows.append(row)
    st.save_consensus(rows)
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_every_sql_use_of_the_keep_rule_equals_the_python_rule(seed):
    rng = random.Random(seed)
    st = Store(":memory:")
    rows = _fill(st, rng, 120)
    by_id = {r["candidate_id"]: r for r in rows}
    for x in rng.sample(rows, 30):  # some reviewed: the pending counts must leave them out
        st.review(x["candidate_id"], rng.choice(["accept", "reject"]), reviewer="ann")
    for tau in [0.0, 0.01, 0.05, 0.5, 1.0, *[rng.random() for _ in range(6)]]:
        keep = {r["candidate_id"] for r in rows
                if passes(r["reason"], r["min_pairwise"], r["chosen_nonempty"], tau)}
        assert set(st.passing_ids(tau)) == keep
        assert st.count_passing(tau) == {"scored": len(rows), "passing": len(keep)}
        pending = {i for i in keep if st.get_candidate(i).review_status == "pending"}
        assert st.count_pending_passing(tau) == len(pending)
        assert {r["id"] for r in st.pending_passing(tau)} == pending
        queue = st.review_queue(status=None, consensus="pass", tau=tau, limit=1000)
        assert {r["id"] for r in queue} == keep == {r["id"] for r in st.review_queue(status=None, tau=tau, limit=1000)
                                                     if r["passes"] == 1}
        assert st.count_queue(status=None, consensus="fail", tau=tau) == len(rows) - len(keep)
        for status in ("pending", "accepted", "rejected"):
            want = {i for i in keep if st.get_candidate(i).review_status == status}
            assert st.count_queue(status=status, consensus="pass", tau=tau) == len(want)
        assert {r["id"] for r in st.export_rows(("passing",), tau=tau)} == {
            i for i in keep if st.get_candidate(i).review_status != "rejected"}
        assert {r["id"] for r in st.selection_pool("passing", tau=tau, quality="none")} == keep
        for xid in rng.sample(sorted(by_id), 10):  # the review pane's verdict is the same rule
            assert review.candidate(st, xid, tau)["consensus"]["passes"] == (xid in keep)


def test_the_rule_itself():
    for r in EXACT_REASONS:
        assert passes(r, 0.0, True, 1.0) and not passes(r, 1.0, False, 0.0)  # an empty choice never passes
    for r in THRESHOLD_REASONS:
        assert passes(r, 0.3, True, 0.2) and not passes(r, 0.2, True, 0.2) and not passes(r, 0.9, False, 0.0)
    assert not passes("empty", 0.9, True, 0.0) and not passes("invalid: x", 1.0, True, 0.0)


def test_the_partial_index_covers_exactly_the_rouge_rows_the_sql_counts():
    st = Store(":memory:")
    sql = st.db.execute("SELECT sql FROM sqlite_master WHERE name = 'consensus_rouge_min'").fetchone()[0]
    assert " ".join(sql.split()).endswith("WHERE " + ROUGE_ROWS)
