"""curate.rouge: the fast Rouge-L equals the plain twin and rouge-score bit for bit; the novelty index equals
brute force (including ties and the > threshold boundary)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from curate import rouge
from curate.rouge import NoveltyIndex

SCORERS = {s: rouge_scorer.RougeScorer(["rougeL"], use_stemmer=s) for s in (False, True)}

# Small vocabulary: LCS is non-trivial, stems collide (run/running/runs), some words vanish in the tokenizer.
WORDS = [
    "the", "a", "cat", "cats", "dog", "dogs", "run", "running", "runs", "ran", "jumped", "jumping", "over",
    "fox", "x1", "42", "3.14", "can't", "e-mail", "naïve", "über", "Über", "ÉTÉ", "中文", "日本語", "--", "!!",
    "...", "THE", "Cat", "generously", "generous", "happily", "happy",
]
SEPARATORS = [" ", " ", " ", ", ", "\n", "-", "  ", "\t", "; "]


def shared_data() -> Path:
    return Path(os.environ.get("CURATE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def random_text(rng: random.Random, max_words: int = 20, words: list[str] = WORDS) -> str:
    n = rng.choice([0, 1, 2] + list(range(max_words + 1)))
    out = []
    for _ in range(n):
        out.append(rng.choice(words))
        out.append(rng.choice(SEPARATORS))
    return "".join(out).strip() if rng.random() < 0.8 else "".join(out)


def rs(target: str, prediction: str, stem: bool) -> float:
    return SCORERS[stem].score(target, prediction)["rougeL"].fmeasure


def brute_max(pool: list[str], text: str, stem: bool) -> tuple[float, str | None]:
    """Max rouge-score F1 over the pool, ties -> earliest: the definition max_similarity must meet.
    (rouge-score's tokenizer and ``_score_lcs``, with the pool's tokens memoised to keep the tests fast.)"""
    tok = SCORERS[stem]._tokenizer.tokenize
    q = tok(text)
    best_f, best_t = 0.0, None
    for t in pool:
        key = (t, stem)
        if key not in _TOKENS:
            _TOKENS[key] = tok(t)
        f = rouge_scorer._score_lcs(_TOKENS[key], q).fmeasure
        if best_t is None or f > best_f:
            best_f, best_t = f, t
    return best_f, best_t


_TOKENS: dict[tuple[str, bool], list[str]] = {}


# ----------------------------------------------------------------------------------------------------------
# tokenizer, LCS, F1
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", [False, True])
def test_tokenize_is_rouge_scores(stem):
    rng = random.Random(1)
    for _ in range(300):
        t = random_text(rng)
        assert rouge.tokenize(t, stem=stem) == SCORERS[stem]._tokenizer.tokenize(t)


def test_tokenize_rejects_non_str():
    with pytest.raises(TypeError, match="needs a str"):
        rouge.tokenize(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rouge.rouge_l("a", b"a")  # type: ignore[arg-type]


def test_lcs_length_matches_dp_on_random_sequences():
    rng = random.Random(2)
    for _ in range(300):
        alphabet = rng.randint(1, 6)
        a = [rng.randrange(alphabet) for _ in range(rng.randint(0, rng.choice([10, 40, 100])))]
        b = [rng.randrange(alphabet) for _ in range(rng.randint(0, rng.choice([10, 40, 100])))]
        assert rouge.lcs_length(a, b) == rouge.lcs_length_reference(a, b) == rouge.lcs_length(b, a)


def test_lcs_length_long_sequences():
    rng = random.Random(3)
    a = [rng.randrange(20) for _ in range(700)]
    b = a[:]
    del b[100], b[400]  # LCS(a, b) == len(b) exactly
    assert rouge.lcs_length(a, b) == len(b) == 698
    c = [rng.randrange(20) for _ in range(600)]
    assert rouge.lcs_length(a, c) == rouge.lcs_length_reference(a, c)


@pytest.mark.parametrize("stem", [False, True])
def test_rouge_l_equals_reference_and_rouge_score_on_random_pairs(stem):
    rng = random.Random(4 + stem)
    for _ in range(2500):
        a, b = random_text(rng), random_text(rng)
        if rng.random() < 0.1:
            b = a  # identical
        expected = rs(a, b, stem)
        fast = rouge.rouge_l(a, b, stem=stem)
        assert fast == expected, (a, b)
        assert rouge.rouge_l_reference(a, b, stem=stem) == expected
        assert isinstance(fast, float)
        assert rouge.rouge_l(b, a, stem=stem) == fast  # F1 is symmetric bit for bit


@pytest.mark.parametrize(
    "a,b",
    [("", ""), ("", "cat"), ("!!! ...", "cat"), ("中文 日本語", "中文"), ("naïve", "naïve"), ("   ", "\n")],
)
def test_edge_texts(a, b):
    for stem in (False, True):
        assert rouge.rouge_l(a, b, stem=stem) == rs(a, b, stem) == rouge.rouge_l_reference(a, b, stem=stem)


def _real_texts() -> list[str]:
    base = shared_data()
    if not (base / "self-instruct" / "seed_tasks.jsonl").exists():
        pytest.skip(f"shared data not found at {base} (set CURATE_SHARED_DATA)")
    texts = []
    for line in (base / "self-instruct" / "seed_tasks.jsonl").read_text().splitlines():
        task = json.loads(line)
        texts.append(task["instruction"])
        texts += [inst["output"] for inst in task["instances"]]
    for rec in json.loads((base / "pools" / "alpaca_subset" / "alpaca_plus_validation_unseen.json").read_text()):
        texts += [rec["instruction"], rec["output"]]
    return texts


@pytest.mark.parametrize("stem", [False, True])
def test_rouge_l_on_real_pairs(stem):
    texts = _real_texts()
    rng = random.Random(5)
    for _ in range(400):
        a, b = rng.choice(texts), rng.choice(texts)
        assert rouge.rouge_l(a, b, stem=stem) == rs(a, b, stem)
    # near duplicates: an instruction against itself with one word dropped
    for a in rng.sample(texts, 100):
        words = a.split()
        if len(words) > 2:
            del words[rng.randrange(len(words))]
        b = " ".join(words)
        assert rouge.rouge_l(a, b, stem=stem) == rs(a, b, stem) == rouge.rouge_l_reference(a, b, stem=stem)


@pytest.mark.parametrize("stem", [False, True])
def test_pairwise_matrix(stem):
    rng = random.Random(6)
    for _ in range(30):
        texts = [random_text(rng) for _ in range(rng.randint(0, 6))] + ["", "!!"]
        m = rouge.pairwise_rouge_l(texts, stem=stem)
        for i, a in enumerate(texts):
            for j, b in enumerate(texts):
                assert m[i][j] == rs(a, b, stem)  # diagonal: 1.0 with tokens, 0 without
                assert m[i][j] == m[j][i]
    assert rouge.pairwise_rouge_l([]) == []


# ----------------------------------------------------------------------------------------------------------
# NoveltyIndex
# ----------------------------------------------------------------------------------------------------------


def test_empty_index():
    idx = NoveltyIndex()
    assert len(idx) == 0
    assert idx.max_similarity("anything") == (0.0, None)
    assert idx.exceeds("anything", 0.7) is False
    with pytest.raises(TypeError):
        idx.max_similarity(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("stem", [False, True])
def test_max_similarity_equals_brute_force_on_random_pools(stem):
    rng = random.Random(7 + stem)
    words = WORDS[:14]  # tiny vocabulary: many equal scores, so ties are exercised
    for _ in range(12):
        pool = [random_text(rng, 12, words) for _ in range(rng.randint(1, 60))]
        idx = NoveltyIndex(pool, stem=stem)
        assert len(idx) == len(pool) and idx.texts == pool
        for _ in range(25):
            q = rng.choice(pool) if rng.random() < 0.2 else random_text(rng, 12, words)
            f, t = idx.max_similarity(q)
            bf, bt = brute_max(pool, q, stem)
            assert (f, pool.index(t) if t is not None else None) == (bf, pool.index(bt)), q
            if rng.random() < 0.1:
                assert idx.max_similarity_reference(q) == (bf, bt)
            for thr in (0.0, 0.3, 0.5, 0.7, bf, 1.0):
                assert idx.exceeds(q, thr) == (bf > thr)


def test_query_with_no_shared_token_returns_earliest():
    idx = NoveltyIndex(["alpha beta", "gamma", ""])
    assert idx.max_similarity("delta epsilon") == (0.0, "alpha beta")
    assert idx.max_similarity("") == (0.0, "alpha beta")
    assert idx.max_similarity("!!!") == (0.0, "alpha beta")
    assert not idx.exceeds("delta", 0.0)
    assert idx.exceeds("delta", -0.1)  # every F1 (0.0) is > -0.1


def test_exact_tie_at_0_7_and_the_strict_boundary():
    q = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"
    # LCS 7, lengths 10 / 10: F1 = fmeasure(0.7, 0.7), exactly rouge-score's value
    tie_a = "w0 w1 w2 w3 w4 w5 w6 xa xb xc"
    tie_b = "xa w0 w1 w2 xb w3 w4 w5 w6 xc"
    f07 = rs(tie_a, q, False)
    assert rs(tie_b, q, False) == f07
    assert abs(f07 - 0.7) < 1e-15
    idx = NoveltyIndex(["w0 w1", tie_a, "unrelated text here", tie_b])
    assert idx.max_similarity(q) == (f07, tie_a)  # tie -> earliest added
    assert idx.exceeds(q, f07) is False  # > not >=
    assert idx.exceeds(q, 0.7) is (f07 > 0.7)
    import math

    assert idx.exceeds(q, math.nextafter(f07, 0.0)) is True
    # the same tie with the later text first in bound order (it is longer, so its bound is lower or equal)
    idx2 = NoveltyIndex([tie_b, tie_a])
    assert idx2.max_similarity(q) == (f07, tie_b)


def test_tie_with_many_equal_bounds_prefers_earliest():
    # 30 texts with the same F1 against the query; the earliest must win whatever the seeding order
    texts = [f"a b c d e f g u{i} v{i} w{i}" for i in range(30)]
    idx = NoveltyIndex(["zz"] + texts)
    f, t = idx.max_similarity("a b c d e f g h i j")
    assert t == texts[0] and f == rs(texts[0], "a b c d e f g h i j", False)


@pytest.mark.parametrize("stem", [False, True])
def test_incremental_add(stem):
    rng = random.Random(9)
    words = WORDS[:16]
    idx = NoveltyIndex(stem=stem)
    pool: list[str] = []
    for step in range(150):
        q = random_text(rng, 10, words)
        bf, bt = brute_max(pool, q, stem)
        f, t = idx.max_similarity(q)
        assert f == bf and (t is None) == (bt is None)
        if t is not None:
            assert pool.index(t) == pool.index(bt)
        assert idx.exceeds(q, 0.7) == (bf > 0.7)
        if not idx.exceeds(q, 0.7):  # the filter's use: keep only novel texts
            idx.add(q)
            pool.append(q)
    assert len(idx) == len(pool) > 10


def test_real_pool_decisions_match_brute_force():
    texts = _real_texts()
    rng = random.Random(10)
    pool = rng.sample(texts, 200)
    idx = NoveltyIndex(pool)
    queries = rng.sample(texts, 12) + [p + " please" for p in rng.sample(pool, 8)]
    for q in queries:
        bf, bt = brute_max(pool, q, False)
        f, t = idx.max_similarity(q)
        assert f == bf and pool.index(t) == pool.index(bt)
        assert idx.exceeds(q, 0.7) == (bf > 0.7)


def test_exceeds_rejects_nan_threshold():
    with pytest.raises(ValueError, match="NaN"):
        NoveltyIndex(["a"]).exceeds("a", float("nan"))
