"""Inter-annotator agreement on accept vs reject (an edit counts as accept), over the reviewers' current votes.

* **Cohen's κ** for each pair of reviewers, over the candidates both voted on: ``κ = (p_o − p_e) / (1 − p_e)``
  with ``p_o`` the share of those candidates they label alike and ``p_e = Σ_k p_a(k) · p_b(k)`` the agreement
  their own label rates predict (Cohen, 1960).
* **Fleiss' κ** overall, over the candidates rated by the same number ``m`` ≥ 2 of reviewers (the most common
  count): ``P_i = (Σ_k n_ik² − m) / (m (m − 1))``, ``P̄`` their mean, ``p_k`` the share of all ratings with label
  ``k``, ``P̄_e = Σ_k p_k²``, ``κ = (P̄ − P̄_e) / (1 − P̄_e)`` (Fleiss, 1971).

κ is undefined (None) when chance agreement is 1 — every rating has the same label. Written here; the tests
hold it equal to scikit-learn's ``cohen_kappa_score`` and statsmodels' ``fleiss_kappa`` on many random label
sets. See docs/ARCHITECTURE.md, "Review".
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Iterable

from .decision import label

LABELS = ("accept", "reject")


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's κ of two equally long label lists (None: undefined)."""
    if len(a) != len(b):
        raise ValueError("cohen_kappa needs two label lists of the same length")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if pe >= 1.0:
        return None
    return (po - pe) / (1.0 - pe)


def fleiss_kappa(table: list[list[int]]) -> float | None:
    """Fleiss' κ of an items × labels table of counts, every row summing to the same m ≥ 2 (None: undefined)."""
    if not table:
        return None
    m = sum(table[0])
    if m < 2 or any(sum(row) != m for row in table):
        raise ValueError("fleiss_kappa needs every item rated by the same number (at least 2) of raters")
    n = len(table)
    p_bar = sum((sum(c * c for c in row) - m) / (m * (m - 1)) for row in table) / n
    totals = [sum(row[j] for row in table) for j in range(len(table[0]))]
    pe = sum((t / (n * m)) ** 2 for t in totals)
    if pe >= 1.0:
        return None
    return (p_bar - pe) / (1.0 - pe)


def agreement(votes: Iterable[dict]) -> dict:
    """Agreement over votes ``{candidate_id, reviewer, status}`` (what ``Store.all_votes`` returns).

    Returns {reviewers, pairs: [{a, b, shared, agree, observed, kappa}], overall: {method, raters_per_item,
    items, observed, kappa}, items_with_overlap}. ``observed``: the share of agreeing pairs of labels."""
    by_item: dict[str, dict[str, str]] = {}
    for v in votes:
        by_item.setdefault(v["candidate_id"], {})[v["reviewer"]] = label(v["status"])
    reviewers = sorted({r for item in by_item.values() for r in item})
    pairs = []
    for a, b in combinations(reviewers, 2):
        shared = [(item[a], item[b]) for item in by_item.values() if a in item and b in item]
        la, lb = [x for x, _ in shared], [y for _, y in shared]
        agree = sum(x == y for x, y in shared)
        pairs.append({"a": a, "b": b, "shared": len(shared), "agree": agree,
                      "observed": agree / len(shared) if shared else None, "kappa": cohen_kappa(la, lb)})
    overlap = [item for item in by_item.values() if len(item) >= 2]
    counts = Counter(len(item) for item in overlap)
    overall = {"method": "Fleiss' kappa", "raters_per_item": None, "items": 0, "observed": None, "kappa": None}
    if counts:
        m = max(counts, key=lambda k: (counts[k], k))
        table = [[sum(1 for x in item.values() if x == k) for k in LABELS] for item in overlap if len(item) == m]
        observed = sum((sum(c * c for c in row) - m) / (m * (m - 1)) for row in table) / len(table)
        overall.update(raters_per_item=m, items=len(table), observed=observed, kappa=fleiss_kappa(table))
    return {"reviewers": reviewers, "pairs": pairs, "overall": overall, "items_with_overlap": len(overlap)}


def describe(k: float | None) -> str:
    """κ in words (Landis & Koch's bands)."""
    if k is None:
        return "undefined (every label the same)"
    for hi, word in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if k <= hi:
            return word
    return "almost perfect"
