"""Evaluation: the shipped sets, metrics equal to rouge-score row by row, bootstrap intervals equal to their plain
twin, the judge and the pairwise win rate in both orders, the contamination guard, stored runs and bad input."""

from __future__ import annotations

import json
import random

import pytest
from rouge_score import rouge_scorer

from curate import evaluate as ev
from curate import jobs
from curate.cli import main
from curate.errors import EvaluationError
from curate.lm.scripted import ScriptedLM
from curate.mixture import ModelPool
from curate.quality import JudgeScorer
from curate.store import Store

WORDS = ("the cat sat on a mat dogs running ran quickly slowly answer is four 4 paris capital of france "
         "Hello, world! it's an apple trees").split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))


def test_rouge_l_equals_rouge_score_row_by_row():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rng = random.Random(0)
    for _ in range(400):
        pred, refs = _text(rng), [_text(rng) for _ in range(rng.randint(1, 3))]
        want = max(scorer.score(r, pred)["rougeL"].fmeasure for r in refs) * 100
        assert ev.rouge_l(pred, refs) == want
    assert ev.rouge_l("anything", []) is None


def test_exact_match_normalises_case_punctuation_articles_and_spaces():
    assert ev.exact_match("The  Answer: Paris!", ["answer paris"]) == 100.0
    assert ev.exact_match("Paris", ["Lyon", "an   paris."]) == 100.0
    assert ev.exact_match("Paris is it", ["Paris"]) == 0.0
    assert ev.exact_match("x", []) is None


def test_bootstrap_interval_equals_its_plain_twin_and_behaves():
    rng = random.Random(1)
    for _ in range(40):
        vals = [rng.uniform(0, 100) for _ in range(rng.randint(1, 40))]
        seed = rng.randint(0, 99)
        fast, plain = ev.bootstrap_ci(vals, resamples=300, seed=seed), ev.bootstrap_ci_reference(
            vals, resamples=300, seed=seed)
        assert fast == pytest.approx(plain, abs=1e-9)
        lo, hi = fast
        assert lo <= sum(vals) / len(vals) <= hi
    assert ev.bootstrap_ci([5.0] * 10) == (5.0, 5.0) and ev.bootstrap_ci([]) is None
    few = ev.bootstrap_ci([0, 100] * 5, seed=3)
    many = ev.bootstrap_ci([0, 100] * 500, seed=3)
    assert (many[1] - many[0]) < (few[1] - few[0])  # more rows, a narrower interval


def test_paired_bootstrap_delta_and_p_value():
    rng = random.Random(2)
    a = [rng.uniform(0, 50) for _ in range(100)]
    same = ev.paired_bootstrap(a, a)
    assert same["delta"] == 0 and same["p"] == 1.0 and same["n"] == 100
    better = ev.paired_bootstrap([x + 20 for x in a], a)
    assert better["delta"] == pytest.approx(20) and better["p"] < 0.01 and better["ci"][0] > 0
    with pytest.raises(EvaluationError, match="no paired rows"):
        ev.paired_bootstrap([None], [1.0])


def test_the_shipped_sets_are_evaluation_only_with_their_licences():
    sets = {r["name"]: r for r in ev.list_evalsets()}
    assert {n: r["rows"] for n, r in sets.items()} == {"user-oriented": 252, "sni-sample": 60, "vicuna80": 80}
    assert sets["vicuna80"]["references"] is False and "NC" in sets["vicuna80"]["licence"]
    assert all(r["eval_only"] for r in sets.values())
    uo = ev.load_evalset("user-oriented", limit=3)
    assert len(uo.rows) == 3 and uo.has_references and uo.eval_only and uo.licence == "Apache-2.0"
    assert not ev.load_evalset("vicuna80").has_references


def test_contamination_guard_drops_planted_overlaps():
    uo = ev.load_evalset("user-oriented")
    target = uo.rows[7].instruction
    words = target.split()
    near = " ".join(words[:-1] + ["please"])  # one word changed: Rouge-L well above 0.7
    train = ["Write a haiku about autumn leaves falling on a quiet pond.", "  " + target.upper() + " ", near,
             "List three uses of baking soda around the house."]
    c = ev.contamination(train)
    assert c.kept == [0, 3]
    assert [(d["index"], d["evalset"], d["eval_id"], d["reason"]) for d in c.dropped] == [
        (1, "user-oriented", uo.rows[7].id, "exact"), (2, "user-oriented", uo.rows[7].id, "rouge")]
    assert c.dropped[1]["score"] > 0.7 and c.counts == {"user-oriented": 2}


def _write(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_a_predictions_file_is_scored_stored_and_written(tmp_path):
    rows = [{"instruction": "Say hi", "input": "", "reference": "Hello there", "prediction": "hello there!"},
            {"instruction": "Add", "input": "2+2", "references": ["4", "four"], "prediction": "The answer is 4"}]
    preds = _write(tmp_path, "p.jsonl", rows)
    db, out = tmp_path / "c.db", tmp_path / "r.json"
    assert main(["evaluate", "--db", str(db), "--predictions", str(preds), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["exact_match"] for r in report["rows"]] == [100.0, 0.0]
    assert report["metrics"]["rouge_l"]["mean"] == pytest.approx((100 + ev.rouge_l("The answer is 4", ["4"])) / 2)
    assert report["metrics"]["exact_match"]["ci"] == [0.0, 100.0] and report["settings"]["predictions"] == str(preds)
    with Store(db) as st:
        (run,) = st.list_evaluations()
        assert st.get_evaluation(run["id"])["rows"] == report["rows"]


def _pool(**lms):
    return ModelPool(preloaded=lms)


def test_a_model_is_evaluated_greedily_with_its_prompt_recorded(tmp_path):
    student = ScriptedLM("stu", lambda p: p.split("\n")[0][-12:])
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "evaluate", {"evalset": "sni-sample", "model": "stu", "limit": 5, "batch_size": 2})
    job = jobs.run_job(st, jid, _pool(stu=student))
    assert job["state"] == "done", job["error"]
    report = st.get_evaluation(job["progress"]["result"]["run"])
    rows = ev.load_evalset("sni-sample", limit=5).rows
    assert report["prompt_style"] == "chat" and report["n"] == 5  # the scripted LM has a chat template
    assert [c[1].temperature for c in student.calls] == [0.0] * 3 and [len(c[0]) for c in student.calls] == [2, 2, 1]
    assert student.calls[0][0][0] == rows[0].instruction + "\n" + rows[0].input  # the reference prompt
    for r, row in zip(report["rows"], rows):
        assert r["rouge_l"] == ev.rouge_l(r["prediction"], row.references)


def test_judge_scores_and_a_pairwise_comparison_that_cancels_position_bias(tmp_path):
    rows = ev.load_evalset("vicuna80", limit=4).rows
    es = ev.load_evalset("vicuna80", limit=4)
    with pytest.raises(EvaluationError, match="no references.*--judge"):
        ev.evaluate(rows, ["x"] * 4, evalset=es)
    judge = JudgeScorer(ScriptedLM("j", lambda p: "Score: 7"))
    rep = ev.evaluate(rows, ["an answer"] * 4, evalset=es, judge=judge)
    assert rep.metrics["judge"]["mean"] == 7.0 and "rouge_l" not in rep.metrics
    other = {"rows": [{"id": r.id, "prediction": "short"} for r in rows]}
    always_a = ScriptedLM("a", lambda p: "A")  # pure position bias: wins as A, loses as B
    rep = ev.evaluate(rows, ["a much longer answer"] * 4, evalset=es, judge=judge, judge_lm=always_a, against=other)
    assert [r["win_rate"] for r in rep.rows] == [0.5] * 4

    def longer(p):  # prefers the longer response, whichever slot it is in
        a = p.split("Response A:\n")[1].split("\n\nResponse B:")[0]
        b = p.split("Response B:\n")[1].split("\n\nBetter")[0]
        return "A" if len(a) > len(b) else "B"

    rep = ev.evaluate(rows, ["a much longer answer"] * 4, evalset=es, judge=judge, judge_lm=ScriptedLM("l", longer),
                      against=other)
    assert rep.metrics["win_rate"]["mean"] == 1.0
    with pytest.raises(EvaluationError, match="no prediction for 1 rows"):
        ev.evaluate(rows, ["x"] * 4, evalset=es, judge=judge, judge_lm=always_a, against={"rows": other["rows"][:3]})


def test_bad_input_names_the_place_and_the_fix(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "prediction": "b"}\n{not json}\n')
    with pytest.raises(EvaluationError, match=r"bad.jsonl:2: not valid JSON"):
        ev.read_predictions(bad)
    nopred = _write(tmp_path, "np.jsonl", [{"instruction": "a", "reference": "b"}])
    with pytest.raises(EvaluationError, match=r"np.jsonl:1: 'prediction' is missing"):
        ev.read_predictions(nopred)
    cols = _write(tmp_path, "cols.jsonl", [{"prompt": "a", "answer": "b"}])
    with pytest.raises(EvaluationError, match=r"cols.jsonl:1: 'instruction' is missing.*columns found: answer, prompt"):
        ev.load_evalset(str(cols))
    with pytest.raises(EvaluationError, match="not a shipped set.*HF_HUB_OFFLINE"):
        ev.load_evalset("no/such-dataset")
    with pytest.raises(EvaluationError, match="at least 1"):
        ev.load_evalset("user-oriented", limit=0)
    db = str(tmp_path / "c.db")
    assert main(["evaluate", "--db", db, "--set", "vicuna80", "--model", "scripted:x"]) == 2
    assert "no references" in capsys.readouterr().err
    assert main(["evaluate", "--db", db, "--set", "user-oriented"]) == 2
    assert "either a model" in capsys.readouterr().err
    with Store(db) as st:
        assert st.list_jobs() == []  # refused before any job row exists
