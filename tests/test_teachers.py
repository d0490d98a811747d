"""Teacher compatibility (CAR): exact arithmetic on a hand-built store, ranking per task type, resumability,
bad input, the `curate teachers` command, and the real SmolLM2 as a student on a few outputs."""

from __future__ import annotations

import json

import pytest
from factories import make_instruction
from test_openai_backend import MODEL, FakeServer

from curate.cli import main
from curate.ensemble import compute_consensus
from curate.errors import ScorerError
from curate.lm.openai_backend import OpenAIBackend
from curate.lm.scripted import ScriptedLM
from curate.mixture import parse_mixture
from curate.quality import BaseScorer, Score
from curate.store import Store
from curate.teachers import (compute_teacher_stats, format_mixture, mixture_weights_from_car, nll_scorer_name,
                             student_prompt, teacher_ranking)

# (task type, instruction, input, {teacher: response})
DATA = [
    ("A", "Reverse the letters of the word.", "abc", {"gen": "a b", "ens": "a b c d"}),
    ("A", "Name the colour of the sky.", "at noon", {"gen": "x y z w", "ens": "q"}),
    ("B", "Say hello politely to a new colleague.", "", {"gen": "p q r", "ens": "s t"}),
]
REWARD = {"a b": 6.0, "x y z w": 8.0, "p q r": 5.0, "a b c d": 9.0, "q": 7.0, "s t": 4.5}
NLL = {"a b": 1.0, "x y z w": 2.0, "p q r": 0.5, "a b c d": 3.0, "q": 1.0, "s t": 0.25}  # per token


class TableScorer(BaseScorer):
    """A real scorer over a fixed table of rewards (counts the outputs it scores)."""

    name, label = "table:v1", "reward table (test)"

    def __init__(self):
        self.scored: list[str] = []

    def score_detailed(self, instructions, inputs, outputs, *, ids=None):
        self.scored += list(outputs)
        return [Score(REWARD[o]) if o in REWARD else Score(None, "not in the table") for o in outputs]


def student() -> ScriptedLM:
    return ScriptedLM("student", nll=lambda prompt, text: NLL[text])


def fill(store: Store, data=DATA) -> list[str]:
    """Instances with one output per teacher ("gen" at position 0, "ens" at 1), and their consensus."""
    ids = []
    for n, (tt, instruction, inp, outs) in enumerate(data):
        iid = make_instruction(store, instruction, task_type=tt)
        cid = store.add_completion({"stage": "instance", "model_id": "gen", "params": {}, "prompt_hash": f"q{n}",
                                    "text": outs["gen"], "instruction_id": iid})
        xid, _ = store.add_candidate({"instruction_id": iid, "task_type": tt, "input": inp, "output": outs["gen"],
                                     "completion_id": cid, "position": 0, "generator_model": "gen", "params": {},
                                     "prompt_hash": f"q{n}", "status": "ok"})
        store.add_outputs([{"candidate_id": xid, "position": p, "model_id": m, "params": {},
                            "prompt_style": "generator" if p == 0 else "reference", "text": outs[m]}
                           for p, m in enumerate(("gen", "ens"))])
        ids.append(xid)
    compute_consensus(store)
    return ids


@pytest.fixture
def store():
    with Store(":memory:") as s:
        fill(s)
        yield s


def _row(ranking, task_type, model):
    return next(r for r in ranking if r["task_type"] == task_type and r["model"] == model)


# -- the arithmetic -------------------------------------------------------------------------------------------


def test_car_per_teacher_and_task_type_is_exact(store):
    compute_teacher_stats(store, student(), TableScorer())
    ranking = teacher_ranking(store, "student", TableScorer(), beta=1.0)
    # type A: gen = responses "a b" (2 tokens, NLL 1.0, reward 6) and "x y z w" (4 tokens, NLL 2.0, reward 8)
    a_gen = _row(ranking, "A", "gen")
    assert (a_gen["n"], a_gen["tokens"]) == (2, 6)
    assert a_gen["reward"] == pytest.approx(7.0)
    assert a_gen["loss"] == pytest.approx((2 * 1.0 + 4 * 2.0) / 6)  # token-weighted
    assert a_gen["car"] == pytest.approx(7.0 / (1 + 10 / 6))
    a_ens = _row(ranking, "A", "ens")
    assert a_ens["car"] == pytest.approx(8.0 / (1 + (4 * 3.0 + 1 * 1.0) / 5))
    b_gen, b_ens = _row(ranking, "B", "gen"), _row(ranking, "B", "ens")
    assert b_gen["car"] == pytest.approx(5.0 / 1.5) and b_ens["car"] == pytest.approx(4.5 / 1.25)
    all_gen, all_ens = _row(ranking, "all", "gen"), _row(ranking, "all", "ens")
    assert all_gen["reward"] == pytest.approx(19 / 3) and all_gen["loss"] == pytest.approx(11.5 / 9)
    assert all_gen["car"] == pytest.approx((19 / 3) / (1 + 11.5 / 9))
    assert all_ens["car"] == pytest.approx((20.5 / 3) / (1 + 13.5 / 7))
    assert {r["scorer"] for r in ranking} == {"table:v1"} and {r["student"] for r in ranking} == {"student"}


def test_ranking_differs_per_task_type_and_with_beta(store):
    compute_teacher_stats(store, student(), TableScorer())
    ranking = teacher_ranking(store, "student", TableScorer(), beta=1.0)
    order = {tt: [r["model"] for r in ranking if r["task_type"] == tt] for tt in ("all", "A", "B")}
    assert order == {"all": ["gen", "ens"], "A": ["gen", "ens"], "B": ["ens", "gen"]}
    assert [r["rank"] for r in ranking] == [1, 2, 1, 2, 1, 2]
    assert [r["task_type"] for r in ranking] == ["all", "all", "A", "A", "B", "B"]
    # beta = 0: CAR is the mean reward, and the stronger teacher ("ens", 20.5/3 > 19/3) wins overall
    plain = teacher_ranking(store, "student", TableScorer(), beta=0.0)
    assert [r["model"] for r in plain if r["task_type"] == "all"] == ["ens", "gen"]
    assert _row(plain, "all", "ens")["car"] == pytest.approx(20.5 / 3)


def test_mixture_weights_follow_car_and_round_trip(store):
    compute_teacher_stats(store, student(), TableScorer())
    ranking = teacher_ranking(store, "student", TableScorer(), beta=1.0)
    entries = mixture_weights_from_car(ranking)
    g, e = _row(ranking, "all", "gen")["car"], _row(ranking, "all", "ens")["car"]
    assert [x.model for x in entries] == ["gen", "ens"]
    assert [x.weight for x in entries] == pytest.approx([g / (g + e), e / (g + e)])
    parsed = parse_mixture(format_mixture(entries))
    assert [x.model for x in parsed] == ["gen", "ens"]
    assert [x.weight for x in parsed] == pytest.approx([x.weight for x in entries], abs=1e-4)
    assert [x.model for x in mixture_weights_from_car(ranking, "B")] == ["ens", "gen"]
    with pytest.raises(ScorerError, match="task type"):
        mixture_weights_from_car(ranking, "C")
    with pytest.raises(ScorerError, match="no teacher has a positive CAR.*curate teachers"):
        mixture_weights_from_car([])


def test_nll_rows_are_stored_per_output_with_the_student(store):
    compute_teacher_stats(store, student(), TableScorer())
    out = store.sample_outputs()[0]
    rows = {r["name"]: r for r in store.scores_for(out["id"]) if r["scorer"] == nll_scorer_name("student")}
    assert rows["nll"]["value"] == pytest.approx(NLL[out["text"]])
    assert rows["tokens"]["value"] == len(out["text"].split())
    assert json.loads(rows["nll"]["detail"]) == {"student": "student", "prompt_style": "reference"}
    reward = next(r for r in store.scores_for(out["id"]) if r["scorer"] == "table:v1")
    assert (reward["name"], reward["value"]) == ("reward", REWARD[out["text"]])
    assert json.loads(reward["detail"])["label"] == "reward table (test)"


def test_the_student_reads_the_instruction_prompt(store):
    lm = student()
    compute_teacher_stats(store, lm, TableScorer())
    prompts, texts = lm.loglik_calls[0]
    pairs = dict(zip(texts, prompts))
    assert pairs["a b"] == "Reverse the letters of the word.\nabc"
    assert pairs["p q r"] == "Say hello politely to a new colleague.\n"


# -- resumability and the sample --------------------------------------------------------------------------


def test_a_second_run_computes_nothing_new(store):
    lm, scorer = student(), TableScorer()
    first = compute_teacher_stats(store, lm, scorer, batch_size=4)
    assert (first["outputs"], first["nll_computed"], first["rewards_computed"]) == (6, 6, 6)
    calls, scored = len(lm.loglik_calls), len(scorer.scored)
    assert calls == 2  # 6 outputs in batches of 4
    again = compute_teacher_stats(store, lm, scorer, batch_size=4)
    assert (again["nll_computed"], again["rewards_computed"]) == (0, 0)
    assert (len(lm.loglik_calls), len(scorer.scored)) == (calls, scored)


def test_a_larger_sample_computes_only_the_new_outputs(store):
    lm, scorer = student(), TableScorer()
    small = compute_teacher_stats(store, lm, scorer, limit=1)
    assert small["nll_computed"] == 2  # one instance, two teachers
    sampled = {o["id"] for o in store.sample_outputs(1)}
    assert sampled < {o["id"] for o in store.sample_outputs(2)}  # a larger sample contains a smaller one
    assert sum(r["n"] for r in teacher_ranking(store, "student", scorer, limit=1) if r["task_type"] == "all") == 2
    big = compute_teacher_stats(store, lm, scorer, limit=None)
    assert big["nll_computed"] == 4
    assert sum(len(texts) for _, texts in lm.loglik_calls) == 6
    assert sorted(scorer.scored) == sorted(REWARD)


def test_a_stopped_run_keeps_its_batches_and_resumes(store):
    lm = student()
    stopped = compute_teacher_stats(store, lm, "proxy:consensus", batch_size=2,
                                    should_stop=lambda: len(lm.loglik_calls) >= 1)
    assert stopped["nll_computed"] == 2 and stopped["rewards_computed"] == 0
    rest = compute_teacher_stats(store, lm, "proxy:consensus", batch_size=2)
    assert (rest["nll_computed"], rest["rewards_computed"]) == (4, 6)
    assert [len(texts) for _, texts in lm.loglik_calls] == [2, 2, 2]


def test_unscored_outputs_are_counted_not_averaged():
    with Store(":memory:") as s:
        fill(s, DATA + [("B", "Tell a joke about cats.", "", {"gen": "no such text", "ens": "s t"})])
        lm = ScriptedLM("student", nll=lambda p, t: NLL.get(t, 1.0))
        done = compute_teacher_stats(s, lm, TableScorer())
        assert done["unscored"] == 1
        ranking = teacher_ranking(s, "student", TableScorer())
        b_gen = _row(ranking, "B", "gen")
        assert (b_gen["n"], b_gen["unscored"], b_gen["reward"]) == (1, 1, 5.0)


# -- bad input ------------------------------------------------------------------------------------------------


def test_negative_beta_is_refused(store):
    with pytest.raises(ScorerError, match="beta must be a number >= 0.*car_beta"):
        teacher_ranking(store, "student", TableScorer(), beta=-0.5)


def test_an_empty_store_says_to_run_ensemble_first():
    with Store(":memory:") as s, pytest.raises(ScorerError, match="curate ensemble"):
        compute_teacher_stats(s, student(), TableScorer())


def test_a_student_without_loglik_is_refused(store):
    class NotAnLM:
        model_id = "x"

    with pytest.raises(ScorerError, match="no loglik method.*--student"):
        compute_teacher_stats(store, NotAnLM(), TableScorer())
    with pytest.raises(ScorerError, match="--limit"):
        compute_teacher_stats(store, student(), TableScorer(), limit=0)


def test_a_server_without_prompt_logprobs_cannot_be_the_student(store):
    server = FakeServer()
    server.echo = "ignore"  # llama.cpp-like: no echo of prompt log-probabilities
    try:
        with OpenAIBackend(MODEL, server.url, max_retries=0) as lm:
            with pytest.raises(ScorerError, match="cannot score log-likelihoods.*vLLM server as --student"):
                compute_teacher_stats(store, lm, TableScorer())
    finally:
        server.stop()


# -- the command ----------------------------------------------------------------------------------------------


def test_curate_teachers_prints_the_ranking(tmp_path, capsys):
    db = tmp_path / "c.db"
    with Store(db) as s:
        fill(s)
    args = ["teachers", "--db", str(db), "--student", "scripted:stu", "--scorer", "proxy:consensus"]
    assert main(args + ["--beta", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "Teachers for student scripted:stu" in out and "1 + 0.5 x loss" in out
    assert "proxy (consensus agreement), not a reward model" in out
    assert "not confirmed" in out
    assert "gen" in out and "ens" in out and "CAR" in out
    assert "mixture weighted by CAR" in out and "--models 'ens:0.5,gen:0.5'" in out  # equal CAR: ties by name
    assert main(args + ["--stored", "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert {(r["task_type"], r["model"]) for r in ranking} == {(t, m) for t in ("all", "A", "B")
                                                               for m in ("gen", "ens")}
    assert all(r["loss"] == pytest.approx(2.0) and r["scorer"] == "proxy:consensus" for r in ranking)
    with Store(db) as s:  # the proxy reward of each output is its stored consensus agreement
        agreement = s.output_agreement([o["id"] for o in s.sample_outputs()])
    expected = sum(v for o, v in agreement.items()) / len(agreement)
    assert _row(ranking, "all", "gen")["reward"] == pytest.approx(expected)


def test_curate_teachers_bad_input_is_one_line(tmp_path, capsys):
    db = str(tmp_path / "c.db")
    assert main(["teachers", "--db", db, "--student", "scripted:s"]) == 2
    assert "run `curate generate` and `curate ensemble` first" in capsys.readouterr().err
    with Store(db) as s:
        fill(s)
    assert main(["teachers", "--db", db, "--student", "scripted:s", "--scorer", "bogus:x"]) == 2
    err = capsys.readouterr().err
    assert "unknown scorer 'bogus:x'" in err and "rm:" in err and "proxy:consensus" in err
    assert main(["teachers", "--db", db, "--student", "scripted:s", "--beta", "-1"]) == 2
    assert "'car_beta' (from command line)" in capsys.readouterr().err


# -- the real student -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_smollm2_student_on_three_outputs(smollm2):
    with Store(":memory:") as s:
        fill(s, DATA[:2] + [("B", "Say hello politely.", "", {"gen": "Hello! Nice to meet you.", "ens": "Hi."})])
        done = compute_teacher_stats(s, smollm2, TableScorer(), limit=2, batch_size=3)
        assert done["nll_computed"] == 4
        row = next(o for o in s.sample_outputs(2))
        prompt, style = student_prompt(smollm2, row["instruction"], row["input"])
        assert style == "chat" and "<|im_start|>assistant" in prompt
        nll = smollm2.loglik([prompt], [row["text"]])[0]
        stored = {r["name"]: r["value"] for r in s.scores_for(row["id"]) if r["scorer"] == "nll:smollm2-135m-instruct"}
        assert stored["tokens"] == len(nll) > 0
        assert stored["nll"] == pytest.approx(sum(nll) / len(nll), abs=1e-4) and stored["nll"] > 0
        ranking = teacher_ranking(s, smollm2, TableScorer(), limit=2)
        scored = [r for r in ranking if r["n"]]  # the third instance's texts are not in the reward table
        assert scored and all(r["loss"] > 0 and r["car"] > 0 for r in scored)
