"""Agreement numbers (curate.agreement) equal the reference implementations on many random label sets:
scikit-learn's cohen_kappa_score per pair, statsmodels' fleiss_kappa overall; and they are read from the votes."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from curate import agreement, review
from curate.agreement import LABELS, cohen_kappa, fleiss_kappa
from review_fixtures import filled_store


def _same(mine, ref) -> bool:
    if mine is None:
        return ref is None or not math.isfinite(ref)
    return ref is not None and math.isfinite(ref) and abs(mine - ref) < 1e-9


def test_cohen_kappa_equals_scikit_learn_on_random_label_sets():
    rng = random.Random(14)
    undefined = 0
    for case in range(600):
        n = rng.randint(1, 40)
        p, q = rng.random(), rng.random()
        a = ["accept" if rng.random() < p else "reject" for _ in range(n)]
        b = [x if rng.random() < q else rng.choice(LABELS) for x in a]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = cohen_kappa_score(a, b, labels=list(LABELS))
        mine = cohen_kappa(a, b)
        assert _same(mine, ref), (case, a, b, mine, ref)
        undefined += mine is None
    assert 0 < undefined < 300  # the undefined case (all one label) was met, and is not the rule


def test_fleiss_kappa_equals_statsmodels_on_random_tables():
    rng = random.Random(71)
    for case in range(400):
        m, n = rng.randint(2, 6), rng.randint(1, 30)
        bias = rng.random()
        table = []
        for _ in range(n):
            acc = sum(rng.random() < bias for _ in range(m))
            table.append([acc, m - acc])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            ref = sm_fleiss(np.array(table), method="fleiss")
        assert _same(fleiss_kappa(table), ref), (case, table, fleiss_kappa(table), ref)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])


def test_agreement_from_votes_pairs_and_overall():
    votes = [  # (candidate, reviewer, status): ann and bob agree on 3 of 4, carl joins on two
        ("c1", "ann", "accepted"), ("c1", "bob", "edited"),
        ("c2", "ann", "rejected"), ("c2", "bob", "rejected"), ("c2", "carl", "rejected"),
        ("c3", "ann", "accepted"), ("c3", "bob", "rejected"), ("c3", "carl", "accepted"),
        ("c4", "ann", "accepted"), ("c4", "bob", "accepted"),
        ("c5", "ann", "accepted"),  # nobody else: not shared
    ]
    res = agreement.agreement([{"candidate_id": c, "reviewer": r, "status": s} for c, r, s in votes])
    assert res["reviewers"] == ["ann", "bob", "carl"] and res["items_with_overlap"] == 4
    ab = next(p for p in res["pairs"] if (p["a"], p["b"]) == ("ann", "bob"))
    assert (ab["shared"], ab["agree"]) == (4, 3)
    ref = cohen_kappa_score(["accept", "reject", "accept", "accept"], ["accept", "reject", "reject", "accept"])
    assert abs(ab["kappa"] - ref) < 1e-12
    ov = res["overall"]
    # two items with 2 raters (c1, c4) and two with 3 (c2, c3): a tie goes to the larger m
    assert ov["raters_per_item"] == 3 and ov["items"] == 2
    assert abs(ov["kappa"] - sm_fleiss(np.array([[0, 3], [2, 1]]), method="fleiss")) < 1e-12


def test_agreement_reads_the_reviewers_current_votes(tmp_path):
    st = filled_store(tmp_path / "a.db", 12)
    ids = [r["id"] for r in st.review_queue(status="pending", limit=6)]
    labels = {"ann": "AARRAA", "bob": "ARRRAR"}
    for who, row in labels.items():
        for cid, lab in zip(ids, row):
            (review.accept if lab == "A" else review.reject)(st, cid, reviewer=who, quorum=2)
    review.undo(st, ids[0], reviewer="bob", quorum=2)  # bob takes one back: not shared any more
    res = agreement.agreement(st.all_votes())
    (pair,) = res["pairs"]
    assert pair["shared"] == 5 and pair["agree"] == 3
    a = ["accept" if x == "A" else "reject" for x in labels["ann"][1:]]
    b = ["accept" if x == "A" else "reject" for x in labels["bob"][1:]]
    assert abs(pair["kappa"] - cohen_kappa_score(a, b)) < 1e-12
    st.close()
