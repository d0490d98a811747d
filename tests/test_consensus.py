"""curate.consensus: each branch by hand, the k = 3 reference rule on random triples, the stored-fields rule
(passes) against recomputation, the JSONL runner, the non-Latin fallback."""

from __future__ import annotations

import json
import math
import random

import pytest
from rouge_score import rouge_scorer

from curate.consensus import (
    EXACT_REASONS,
    REASONS,
    consensus,
    consensus_jsonl,
    consensus_reference3,
    normalise,
    passes,
)

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
WORDS = ["the", "a", "cat", "cats", "sat", "sitting", "on", "mat", "mats", "dog", "ran", "running", "quickly"]


def rs(a: str, b: str) -> float:
    return SCORER.score(a, b)["rougeL"].fmeasure


def random_output(rng: random.Random, base: str | None = None) -> str:
    """A short answer, or a perturbed copy of ``base`` (case, punctuation, a dropped or swapped word)."""
    if base is not None and rng.random() < 0.6:
        words = base.split()
        r = rng.random()
        if words and r < 0.3:
            del words[rng.randrange(len(words))]
        elif len(words) > 1 and r < 0.5:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif r < 0.8:
            words = [w.upper() if rng.random() < 0.3 else w for w in words]
        text = " ".join(words)
        return text + rng.choice(["", ".", "!", " ?", ""])
    n = rng.choice([0, 1, 1, 2, 3, 4, 6, 8])
    text = " ".join(rng.choice(WORDS) for _ in range(n))
    return rng.choice(["", "", "", "!!", '"'] if n == 0 else [text, text + ".", text.capitalize()])


# ----------------------------------------------------------------------------------------------------------
# normalise and the branches, by hand
# ----------------------------------------------------------------------------------------------------------


def test_normalise():
    assert normalise("  The Cat,  sat!\n\tOn the MAT. ") == "the cat sat on the mat"
    assert normalise("!!! ...") == ""
    assert normalise("Don't-stop") == "dontstop"
    assert normalise("Ünïcode — text。") == "ünïcode — text。"  # only string.punctuation goes
    with pytest.raises(TypeError):
        normalise(None)  # type: ignore[arg-type]


def test_exact_o0_ignores_case_punctuation_and_spaces():
    res = consensus(["The answer is 42.", "something else entirely", "the answer is   42"])
    assert (res.chosen_index, res.keep, res.reason) == (0, True, "exact_o0")
    assert res.tokenizer == "rouge"
    assert res.pairwise[0][2] == 1.0  # the matrix is computed in every branch


def test_exact_others_chooses_first_of_them():
    res = consensus(["o zero says this", "Paris.", "London", "paris", "london!"])
    assert (res.chosen_index, res.keep, res.reason) == (1, True, "exact_others")
    res = consensus(["zero", "alpha", "beta", "Beta!", "alpha"])
    assert res.chosen_index == 1  # lowest i with a later equal j (1~4), not the first pair found (2~3)


def test_exact_match_wins_over_rouge_scores():
    res = consensus(["yes", "yes.", "no, the answer is definitely yes for these reasons"])
    assert res.chosen_index == 0 and res.reason == "exact_o0" and res.keep
    assert res.min_pairwise < 0.5  # would not matter


def test_rouge_branch_largest_sum_and_threshold():
    outs = ["the cat sat on the mat", "a cat sat on a mat", "the cat is sitting on the mat", "dogs ran"]
    res = consensus(outs, threshold=0.0)
    n = [normalise(o) for o in outs]
    sums = [sum(rs(n[i], n[j]) for j in range(4) if j != i) for i in range(4)]
    assert res.chosen_index == max(range(4), key=lambda i: (sums[i], -i))
    assert res.scores == [s / 3 for s in sums]
    assert res.min_pairwise == 0.0 and res.reason == "below_threshold" and not res.keep  # "dogs ran" shares nothing
    res = consensus(outs[:3], threshold=0.01)
    assert res.reason == "rouge" and res.keep and res.min_pairwise > 0.01


def test_below_threshold_is_strict():
    outs = ["a b c d e f g h i j", "a x1 x2 x3 x4 x5 x6 x7 x8 x9", "a y1 y2 y3 y4 y5 y6 y7 y8 y9"]
    m = consensus(outs).min_pairwise
    assert m == pytest.approx(0.1)
    assert consensus(outs, threshold=m).keep is False  # > not >=
    assert consensus(outs, threshold=math.nextafter(m, 0.0)).keep is True


def test_ties_go_to_lowest_index():
    # symmetric situation: every output has the same sum
    res = consensus(["red green", "green blue", "blue red"], threshold=0.0)
    assert len(set(res.scores)) == 1 and res.chosen_index == 0 and res.reason == "rouge"
    res = consensus(["x y z", "a b", "a b c"])  # 1 and 2 tie on the sum, 0 shares nothing
    assert res.chosen_index == 1


def test_empty_outputs():
    # exact match of two empty normalised texts -> "empty", not kept
    res = consensus(["", "!!!", "a real answer"])
    assert (res.chosen_index, res.keep, res.reason) == (0, False, "empty")
    res = consensus(["a real answer", "...", " "])
    assert (res.chosen_index, res.keep, res.reason) == (1, False, "empty")
    # all empty and all different -> rouge branch, chosen empty
    res = consensus(["", "x"], threshold=-1.0)
    assert res.reason == "empty" and not res.keep and res.pairwise == [[0.0, 0.0], [0.0, 1.0]]


def test_k2():
    assert consensus(["Same.", "same"]).reason == "exact_o0"
    res = consensus(["the cat sat", "the cat ran"])
    assert res.chosen_index == 0 and res.reason == "rouge" and res.pairwise[0][1] == rs("the cat sat", "the cat ran")
    assert res.scores == [res.pairwise[0][1]] * 2


def test_k5_matrix_equals_rouge_score_with_stemmer_on_normalised_texts():
    rng = random.Random(11)
    for _ in range(40):
        base = random_output(rng)
        outs = [random_output(rng, base) for _ in range(5)]
        res = consensus(outs)
        n = [normalise(o) for o in outs]
        if res.tokenizer != "rouge":
            continue
        for i in range(5):
            for j in range(5):
                assert res.pairwise[i][j] == rs(n[i], n[j])
        assert res.min_pairwise == min(res.pairwise[i][j] for i in range(5) for j in range(i + 1, 5))


@pytest.mark.parametrize(
    "bad,match",
    [
        (["only one"], "at least 2"),
        ([], "at least 2"),
        ("a string", "list of strings"),
        (["ok", None], r"outputs\[1\] is NoneType"),
        (["ok", 3, "x"], r"outputs\[1\] is int"),
        (None, "list of strings"),
    ],
)
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        consensus(bad)


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        consensus(["a", "b"], threshold=float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        consensus(["a", "b"], threshold="0.1")  # type: ignore[arg-type]


def test_huge_texts():
    rng = random.Random(12)
    words = [rng.choice(WORDS + ["w%d" % i for i in range(50)]) for _ in range(20_000)]
    a = " ".join(words)
    b = " ".join(words[:5000] + words[5001:])  # one word dropped: LCS = n - 1
    c = " ".join(reversed(words))
    res = consensus([a, b, c])
    n = len(words)
    lcs = n - 1
    assert res.pairwise[0][1] == 2 * (lcs / n) * (lcs / (n - 1)) / (lcs / n + lcs / (n - 1))
    assert res.chosen_index in (0, 1) and res.reason == "rouge"


def test_non_latin_fallback():
    res = consensus(["東京は日本の首都です", "東京は日本の首都です!", "大阪"])
    assert res.reason == "exact_o0" and res.keep and res.tokenizer == "unicode"
    assert res.pairwise[0][1] == 1.0 and res.pairwise[0][2] == 0.0
    # "。" is not in string.punctuation: no exact match, but the same Unicode tokens
    res = consensus(["東京です", "東京です。"])
    assert res.reason == "rouge" and res.pairwise[0][1] == 1.0
    res = consensus(["Столица Франции Париж", "Париж столица Франции", "Это столица Франции"])
    assert res.tokenizer == "unicode" and res.reason == "rouge"
    assert res.pairwise[0][1] == pytest.approx(2 / 3)  # LCS 2 of 3 words
    assert res.chosen_index == 0
    # one non-Latin output among Latin ones: no fallback, it just scores 0
    res = consensus(["the cat", "the cat sat", "Кошка"])
    assert res.tokenizer == "rouge" and res.pairwise[2][0] == 0.0 and not res.keep


# ----------------------------------------------------------------------------------------------------------
# the k = 3 reference rule, random triples
# ----------------------------------------------------------------------------------------------------------


def test_matches_reference_rule_on_random_triples():
    rng = random.Random(13)
    branches = dict.fromkeys(REASONS, 0)
    for _ in range(1200):
        base = random_output(rng)
        outs = [random_output(rng, base).strip() for _ in range(3)]
        thr = rng.choice([0.01, 0.01, 0.0, 0.2, 0.5, rng.random()])
        res = consensus(outs, thr)
        branches[res.reason] += 1
        ref_keep, ref_out = consensus_reference3(*outs, thr)
        n = [normalise(o) for o in outs]
        assert res.tokenizer == "rouge"
        assert (res.pairwise[0][1], res.pairwise[0][2], res.pairwise[1][2]) == (
            rs(n[1], n[0]), rs(n[2], n[0]), rs(n[2], n[1]))
        if res.reason == "exact_others":
            # documented difference: the reference writes o0 when o1 == o2; we choose o1
            assert (ref_keep, ref_out) == (True, outs[0]) and res.chosen_index == 1 and res.keep
        elif res.reason == "empty" and (n[0] in n[1:] or n[1] == n[2]):
            # documented difference: the reference writes exact matches of empty texts; we drop them
            assert ref_keep and not res.keep
        else:
            assert res.keep == ref_keep
            if ref_keep:
                assert outs[res.chosen_index] == ref_out
    assert all(branches[r] > 20 for r in REASONS), branches


def test_passes_agrees_with_recomputation_for_random_thresholds():
    rng = random.Random(14)
    for _ in range(400):
        base = random_output(rng)
        outs = [random_output(rng, base) for _ in range(rng.randint(2, 5))]
        stored = consensus(outs, 0.01)
        nonempty = normalise(outs[stored.chosen_index]) != ""
        assert passes(stored.reason, stored.min_pairwise, nonempty, 0.01) == stored.keep
        for tau in (rng.uniform(-0.1, 1.0), stored.min_pairwise, 0.0):
            again = consensus(outs, tau)
            assert again.chosen_index == stored.chosen_index and again.pairwise == stored.pairwise
            assert passes(stored.reason, stored.min_pairwise, nonempty, tau) == again.keep


def test_passes_rule():
    for r in EXACT_REASONS:
        assert passes(r, 0.0, True, 0.9)
    assert passes("rouge", 0.3, True, 0.2) and not passes("rouge", 0.2, True, 0.2)
    assert passes("below_threshold", 0.3, True, 0.2)
    assert not passes("empty", 0.5, False, 0.0)
    assert not passes("invalid: bad JSON", 1.0, True, 0.0)


# ----------------------------------------------------------------------------------------------------------
# JSONL
# ----------------------------------------------------------------------------------------------------------


def test_consensus_jsonl(tmp_path):
    good = [
        {"id": 1, "instruction": "Capital of France?", "input": "", "outputs": ["Paris.", "paris", "Lyon"]},
        {"instruction": "Say hi", "input": "x", "outputs": ["hello there friend", "hello there", "hi there friend"]},
        {"instruction": "i", "input": "", "outputs": ["cats", "dogs", "birds"]},
        {"instruction": "i", "input": "", "outputs": ["Столица Франции Париж", "Париж столица Франции"]},
    ]
    lines = [json.dumps(g) for g in good]
    lines[2:2] = [
        "{not json",
        json.dumps({"instruction": "i", "outputs": ["a", "b"]}),
        json.dumps({"instruction": "i", "input": "", "outputs": ["only one"]}),
        json.dumps({"instruction": "i", "input": "", "outputs": ["a", 7]}),
        json.dumps({"instruction": 5, "input": "", "outputs": ["a", "b"]}),
        json.dumps(["a", "list"]),
        "",
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(("\n".join(lines) + "\n").encode() + b'{"instruction": "\xff"}\n')
    out = tmp_path / "out.jsonl"
    counts = consensus_jsonl(src, out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert counts == {"lines": 11, "kept": 3, "invalid": 7, "exact_o0": 1, "exact_others": 0, "rouge": 2,
                      "below_threshold": 1, "empty": 0}
    assert len(rows) == 11
    assert rows[0]["id"] == 1 and rows[0]["output"] == "Paris." and rows[0]["chosen_index"] == 0
    assert rows[0]["keep"] and rows[0]["reason"] == "exact_o0" and len(rows[0]["pairwise"]) == 3
    assert rows[1]["output"] == "hello there friend" and rows[1]["reason"] == "rouge"
    assert rows[1]["pairwise"] == consensus(good[1]["outputs"]).pairwise
    bad = rows[2:8] + rows[10:]
    assert all(not r["keep"] and r["reason"].startswith("invalid: ") and r["output"] is None for r in bad)
    assert rows[2]["error"].startswith("line 3: bad JSON") and "raw" in rows[2]
    assert rows[3]["reason"] == "invalid: missing field 'input'"
    assert "needs at least 2" in rows[4]["reason"] and rows[4]["error"].startswith("line 5:")
    assert rows[5]["reason"] == "invalid: outputs[1] is int, not str"
    assert rows[6]["reason"] == "invalid: field 'instruction' is int, not str"
    assert rows[7]["reason"].startswith("invalid: a line must be a JSON object")
    assert rows[8]["reason"] == "below_threshold" and rows[8]["output"] == "cats" and not rows[8]["keep"]
    assert rows[9]["tokenizer"] == "unicode" and rows[9]["keep"]
    assert rows[10]["reason"].startswith("invalid: not UTF-8") and rows[10]["error"].startswith("line 12:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temp file left
    # re-running over the same file is fine (atomic replace)
    assert consensus_jsonl(out, out) == counts


def test_consensus_jsonl_leaves_no_temp_file_on_error(tmp_path):
    with pytest.raises(OSError):
        consensus_jsonl(tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []
