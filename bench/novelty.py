"""Novelty filter: our NoveltyIndex vs rouge-score over a ~12.6K-instruction pool.

Pool: self-instruct seed tasks, Alpaca-plus validation sets, Dolly open QA, GPTeacher codegen + roleplay
instructions (exact duplicates dropped), from ``../shared/data`` (env ``CURATE_SHARED_DATA`` overrides).
1,000 candidates are held out (seeded shuffle); the rest is indexed.

1. ours: ``NoveltyIndex(pool)``, then ``exceeds(c, 0.7)`` (the filter's decision) and ``max_similarity(c)``
   for every candidate;
2. reference: ``rouge_scorer._score_lcs`` on pre-tokenized pairs (rouge-score's tokenizer, untimed), max over
   the pool. It costs about a second per candidate, so it runs on a seeded sample of 30 candidates and is
   extrapolated to 1,000;
3. exactness: every candidate's maximum over the whole pool by an independent exact brute force (bit-parallel
   LCS vectorised over the pool with numpy, no pruning), checked against rouge-score on the 30 sampled
   candidates; decisions at 0.7 and maxima of the index compared with it for all 1,000.

Run: ``python bench/novelty.py``. Ends with ``BENCH name=value`` lines.
"""

from __future__ import annotations

import glob
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rouge_score import rouge_scorer  # noqa: E402

from curate.rouge import NoveltyIndex, tokenize  # noqa: E402

THRESHOLD = 0.7
N_CANDIDATES = 1000
N_REFERENCE = 30
SEED = 0


def shared_data() -> Path:
    return Path(os.environ.get("CURATE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_instructions(base: Path) -> list[str]:
    """All instructions of the pool sources, in a fixed order, exact duplicates dropped."""
    texts = [json.loads(x)["instruction"] for x in (base / "self-instruct/seed_tasks.jsonl").open()]
    for f in sorted(glob.glob(str(base / "pools/alpaca_subset/*.json"))):
        texts += [r["instruction"] for r in json.load(open(f))]
    texts += [json.loads(x)["instruction"] for x in (base / "pools/dolly_open_qa/dolly_open_qa.jsonl").open()]
    for name in ("codegen-instruct.json", "roleplay-simple-deduped-roleplay-instruct.json"):
        texts += [r["instruction"] for r in json.load(open(base / "pools/gpteacher" / name))]
    return list(dict.fromkeys(texts))


class BruteForce:
    """Exact Rouge-L F1 of a query against every pool text at once, without pruning.

    Bit-parallel LCS (V = all ones; per query token with match masks M: U = V & M, V = (V + U) | (V - U);
    LCS = zero bits of V) on numpy uint64 words, all pool texts side by side: V has shape (N, W), the addition
    carries across words, V - U = V ^ U needs no borrow since U is a subset of V. F1 with the same float
    operations as rouge-score: p = lcs/len(pred), r = lcs/len(target), 2*p*r/(p+r).
    """

    def __init__(self, pool_tokens: list[list[str]]):
        self.n = len(pool_tokens)
        self.lengths = np.array([len(t) for t in pool_tokens], dtype=np.int64)
        self.words = max(1, int((self.lengths.max() + 63) // 64))
        postings: dict[str, tuple[list[int], list[list[int]]]] = {}
        for d, toks in enumerate(pool_tokens):
            masks: dict[str, int] = {}
            for i, t in enumerate(toks):
                masks[t] = masks.get(t, 0) | (1 << i)
            for t, m in masks.items():
                docs, rows = postings.setdefault(t, ([], []))
                docs.append(d)
                rows.append([(m >> (64 * w)) & 0xFFFFFFFFFFFFFFFF for w in range(self.words)])
        self.postings = {t: (np.array(d), np.array(r, dtype=np.uint64)) for t, (d, r) in postings.items()}
        low = np.zeros((self.n, self.words), dtype=np.uint64)  # the low len(d) bits of each text
        for w in range(self.words):
            bits = np.clip(self.lengths - 64 * w, 0, 64)
            low[:, w] = np.where(bits == 64, np.uint64(0xFFFFFFFFFFFFFFFF),
                                 (np.uint64(1) << bits.astype(np.uint64)) - np.uint64(1))
        self.low = low

    def f1(self, query: list[str]) -> np.ndarray:
        n, w_count = self.n, self.words
        v = self.low.copy()
        dense: dict[str, np.ndarray] = {}
        for t in query:
            if t not in self.postings:
                continue
            if t not in dense:
                m = np.zeros((n, w_count), dtype=np.uint64)
                docs, rows = self.postings[t]
                m[docs] = rows
                dense[t] = m
            u = v & dense[t]
            s = np.empty_like(v)
            carry = np.zeros(n, dtype=np.uint64)
            for w in range(w_count):  # multi-word v + u
                t1 = v[:, w] + u[:, w]
                c1 = t1 < v[:, w]
                s[:, w] = t1 + carry
                carry = (c1 | (s[:, w] < t1)).astype(np.uint64)
            v = s | (v ^ u)
        lcs = self.lengths - np.bitwise_count(v & self.low).sum(axis=1).astype(np.int64)
        m = len(query)
        if m == 0:
            return np.zeros(n)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = lcs / self.lengths  # prediction = pool text
            r = lcs / m  # target = query
            f = 2 * p * r / (p + r)
        return np.where((lcs > 0) & (self.lengths > 0), f, 0.0)


def main() -> None:
    base = shared_data()
    texts = load_instructions(base)
    rng = random.Random(SEED)
    order = list(range(len(texts)))
    rng.shuffle(order)
    cands = [texts[i] for i in order[:N_CANDIDATES]]
    pool = [texts[i] for i in sorted(order[N_CANDIDATES:])]
    print(f"data: {base}")
    print(f"pool: {len(pool)} instructions indexed, {len(cands)} held-out candidates (seed {SEED}), "
          f"{len(texts)} unique instructions in all")

    # 1) ours
    t0 = time.perf_counter()
    index = NoveltyIndex(pool)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_decisions = [index.exceeds(c, THRESHOLD) for c in cands]
    t_exceeds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_max = [index.max_similarity(c) for c in cands]
    t_max = time.perf_counter() - t0
    print(f"ours: build index {t_build:.3f} s (tokenizing included); exceeds({THRESHOLD}) for {len(cands)} "
          f"candidates {t_exceeds:.3f} s ({1000 * t_exceeds / len(cands):.3f} ms each); max_similarity "
          f"{t_max:.3f} s ({1000 * t_max / len(cands):.3f} ms each)")

    # 2) reference, on a sample, extrapolated
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pool_tokens = [scorer._tokenizer.tokenize(p) for p in pool]
    sample = sorted(random.Random(SEED + 1).sample(range(len(cands)), N_REFERENCE))
    ref_max = {}
    t0 = time.perf_counter()
    for i in sample:
        q = scorer._tokenizer.tokenize(cands[i])
        ref_max[i] = max(rouge_scorer._score_lcs(p, q).fmeasure for p in pool_tokens)
    t_ref_sample = time.perf_counter() - t0
    t_ref = t_ref_sample / N_REFERENCE * len(cands)
    print(f"reference: rouge_scorer._score_lcs on pre-tokenized pairs, max over the pool: {t_ref_sample:.2f} s "
          f"for {N_REFERENCE} sampled candidates ({t_ref_sample / N_REFERENCE:.3f} s each), "
          f"extrapolated to {len(cands)} candidates: {t_ref:.1f} s")

    # 3) exactness over all candidates
    t0 = time.perf_counter()
    brute = BruteForce([tokenize(p) for p in pool])
    brute_max = [float(brute.f1(tokenize(c)).max()) for c in cands]
    t_brute = time.perf_counter() - t0
    brute_vs_ref = sum(brute_max[i] != ref_max[i] for i in sample)
    differing = sum(o != (b > THRESHOLD) for o, b in zip(ours_decisions, brute_max))
    differing_max = sum(o[0] != b for o, b in zip(ours_max, brute_max))
    ref_decisions_diff = sum(ours_decisions[i] != (ref_max[i] > THRESHOLD) for i in sample)
    print(f"exact brute force (numpy bit-parallel, no pruning) for {len(cands)} candidates: {t_brute:.1f} s; "
          f"its maxima differ from rouge-score's on {brute_vs_ref} of the {N_REFERENCE} sampled candidates")
    print(f"decisions (max > {THRESHOLD}): {sum(ours_decisions)} of {len(cands)} candidates dropped; "
          f"ours vs brute force: {differing} differ; ours vs rouge-score on the sample: {ref_decisions_diff} "
          f"differ; max_similarity values differing from brute force: {differing_max}")

    print(f"BENCH novelty_speedup={t_ref / (t_build + t_exceeds):.1f}")
    print(f"BENCH novelty_speedup_query_only={t_ref / t_exceeds:.1f}")
    print(f"BENCH novelty_speedup_max_similarity={t_ref / (t_build + t_max):.1f}")
    print(f"BENCH novelty_differing_decisions={differing + ref_decisions_diff}")
    print(f"BENCH novelty_differing_max={differing_max + brute_vs_ref}")
    print(f"BENCH novelty_reference_seconds_per_candidate={t_ref_sample / N_REFERENCE:.4f}")
    print(f"BENCH novelty_reference_seconds_extrapolated={t_ref:.2f}")
    print(f"BENCH novelty_ours_build_seconds={t_build:.4f}")
    print(f"BENCH novelty_ours_exceeds_seconds={t_exceeds:.4f}")
    print(f"BENCH novelty_ours_max_similarity_seconds={t_max:.4f}")


if __name__ == "__main__":
    main()
