"""Generation driven by scripted LMs: provenance, the mixture, surplus, every rejection and its reason,
bad input, and resuming after a stop, an exception, and a real SIGKILL."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import signal
import time
from collections import Counter

import pytest
from pydantic import ValidationError

from curate import prompts
from curate.errors import BackendError, CurateError, Stopped
from curate.generate import (
    FROM_INSTANCE,
    FROM_PROMPT,
    GenerateConfig,
    run_generation,
    split_targets,
)
from curate.lm.base import Completion
from curate.lm.scripted import ScriptedLM
from curate.mixture import Mixture, ModelPool, parse_mixture
from curate.seeds import load_seeds, split_by_type
from curate.store import Store

SEEDS = load_seeds()
_SYLLABLES = "ka lo mi ren tus vex bor qua zin pel dro fa gui hob jet nuv".split()


def _word(h: bytes, i: int) -> str:
    return "".join(_SYLLABLES[h[i + k] % 16] for k in range(3))


def fake(prompt: str) -> str:
    """A deterministic model: the completion is a function of the prompt only.

    Instruction prompts get one new instruction of 8 pseudo-words (never similar to another); instance
    prompts get a two-line type-A example or a one-line type-B one, as their header asks.
    """
    h = hashlib.sha256(prompt.encode()).digest()
    if prompt.startswith(prompts.INSTRUCTION_HEADER):
        return " Describe " + " ".join(_word(h, 3 * i) for i in range(7)) + " |EoS|"
    if prompt.startswith(prompts.INSTANCE_HEADERS["A"]):
        return f"input: {_word(h, 0)}\noutput: {_word(h, 3)}\n{_word(h, 6)}\n|EoS|"
    return f"output: {_word(h, 0)} {_word(h, 3)}\n|EoS|"


def then_fake(script: list[str]):
    """A model that answers the scripted completions first, then behaves like :func:`fake`."""
    queue = list(script)
    return lambda prompt: queue.pop(0) if queue else fake(prompt)


def pool(*names: str, fn=fake, **kw) -> ModelPool:
    return ModelPool({n: ScriptedLM(n, fn, **kw) for n in names})


def config(n: int, models: str = "m1", *, instance_models: str | None = None, **kw) -> GenerateConfig:
    return GenerateConfig(instructions=n, instruction_models=parse_mixture(models),
                          instance_models=parse_mixture(instance_models or models),
                          **{"batch_size": 4, **kw})


def rows(st: Store, table: str) -> list[dict]:
    return list(st.db[table].rows)


def kept_texts(st: Store) -> list[str]:
    return [r["text"] for r in st.instructions(status="kept", limit=10_000) if r["origin"] == FROM_PROMPT]


def assert_consistent(st: Store, n: int, *, instances: bool = True) -> None:
    """Exactly ``n`` kept instructions from prompts, no duplicate text, and every completion accounted for."""
    instr = rows(st, "instructions")
    insts = rows(st, "candidates")
    kept = [r for r in instr if r["status"] == "kept" and r["origin"] == FROM_PROMPT]
    assert len(kept) == n
    all_kept = [r["text"] for r in instr if r["status"] == "kept"]
    assert len(set(all_kept)) == len(all_kept)
    for c in rows(st, "completions"):
        made = [r for r in (instr if c["stage"] == "instruction" else insts) if r["completion_id"] == c["id"]]
        assert made or c["parse_status"] == "unparseable", c
    if instances:
        per = Counter(c["instruction_id"] for c in rows(st, "completions") if c["stage"] == "instance")
        assert {r["id"]: per[r["id"]] for r in kept} == {r["id"]: 1 for r in kept}


# -- provenance --------------------------------------------------------------------------------------------
def test_every_row_records_model_params_prompt_hash_and_rng_seed():
    st, p = Store(":memory:"), pool("m1", "m2")
    prog = run_generation(st, config(6, "m1,m2", assignment="round_robin"), p)
    assert prog.kept == 6 and prog.candidates == 6
    sent = {}  # prompt hash -> (model, params sent)
    for name in ("m1", "m2"):
        for texts, params in p.get(name).calls:
            for t in texts:
                sent[prompts.prompt_hash(t)] = (name, params)
    completions = {c["id"]: c for c in rows(st, "completions")}
    for c in completions.values():
        model, params = sent[c["prompt_hash"]]
        assert c["model_id"] == model
        assert json.loads(c["params"]) == params.as_record()
        assert isinstance(c["rng_seed"], int) and isinstance(params.seed, int)
        assert params.temperature == 0.7 and params.top_k == 50 and params.top_p == 1.0
        assert (params.max_new_tokens, params.min_new_tokens) == \
            ((256, 15) if c["stage"] == "instruction" else (512, 50))
        assert params.stop == (("|EoS|",) if c["stage"] == "instruction" else ("\n\n", "|EoS|"))
    for table in ("instructions", "candidates"):
        for r in rows(st, table):
            c = completions[r["completion_id"]]
            assert (r["generator_model"], r["params"], r["prompt_hash"], r["rng_seed"]) == \
                (c["model_id"], c["params"], c["prompt_hash"], c["rng_seed"])
    for o in rows(st, "outputs"):
        x = next(r for r in rows(st, "candidates") if r["id"] == o["candidate_id"])
        assert (o["position"], o["model_id"], o["prompt_style"], o["text"]) == (0, x["generator_model"],
                                                                             "generator", x["output"])


def test_the_rng_seed_rebuilds_the_prompt():
    st, p = Store(":memory:"), pool("m1")
    run_generation(st, config(3, task_type="B", max_machine_demos=0), p)
    b_seeds = [s.instruction for s in split_by_type(SEEDS)["B"]]
    for c in rows(st, "completions"):
        if c["stage"] == "instruction":
            again = prompts.instruction_prompt(b_seeds, [], random.Random(c["rng_seed"]), demos=10, max_machine=0)
            assert again.hash == c["prompt_hash"] and c["demos"] == 10
        else:
            text = next(r["text"] for r in rows(st, "instructions") if r["id"] == c["instruction_id"])
            again = prompts.instance_prompt(text, "B", SEEDS, random.Random(c["rng_seed"]), demos=15)
            assert again.hash == c["prompt_hash"] and c["demos"] == 15


# -- the mixture -------------------------------------------------------------------------------------------
def test_round_robin_spreads_prompts_evenly():
    st, p = Store(":memory:"), pool("m1", "m2", "m3")
    run_generation(st, config(10, "m1,m2,m3", assignment="round_robin", instances=False), p)
    per_model = Counter(c["model_id"] for c in rows(st, "completions"))
    assert sum(per_model.values()) == 12 and set(per_model.values()) == {4}
    m = Mixture(parse_mixture("a,b,c"), "round_robin")
    assert [m.pick(n) for n in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


def test_weighted_draws_follow_the_weights_and_depend_only_on_the_prompt_number():
    m = Mixture(parse_mixture("a:3,b:1"), "weighted", seed=7)
    picks = [m.pick(n) for n in range(2000)]
    assert 0.72 < picks.count("a") / 2000 < 0.78
    again = Mixture(parse_mixture("a:3,b:1"), "weighted", seed=7)
    assert [again.pick(n) for n in range(1999, -1, -1)] == picks[::-1]
    assert [Mixture(parse_mixture("a:3,b:1"), seed=8).pick(n) for n in range(2000)] != picks
    st, p = Store(":memory:"), pool("m1", "m2")
    run_generation(st, config(24, "m1:4,m2:1", batch_size=8, instances=False), p)
    per_model = Counter(c["model_id"] for c in rows(st, "completions"))
    assert per_model["m1"] > 2 * per_model["m2"] > 0


def test_parse_mixture_weights_ports_and_url_lists():
    assert [(e.model, e.weight) for e in parse_mixture("smollm2-135m-instruct:2, gemma3-270m")] == [
        ("smollm2-135m-instruct", 2.0), ("gemma3-270m", 1.0)]
    assert [(e.model, e.weight) for e in parse_mixture("openai:m@http://h:8000")] == [
        ("openai:m@http://h:8000", 1.0)]
    assert [(e.model, e.weight) for e in parse_mixture("openai:llama3.2:1b@http://a:8000,http://b:8000:3,x")] == [
        ("openai:llama3.2:1b@http://a:8000,http://b:8000", 3.0), ("x", 1.0)]
    assert [(e.model, e.weight) for e in parse_mixture(["a:2", "b"])] == [("a", 2.0), ("b", 1.0)]
    for bad, msg in (("a:0", "positive"), ("a:-1", "positive"), ("a:nan", "positive"), (" , ", "empty")):
        with pytest.raises(ValueError, match=msg):
            parse_mixture(bad)


# -- surplus, rejections, unparseable completions ----------------------------------------------------------
def test_surplus_instructions_are_stored_and_the_count_is_exact():
    def numbered(i: int) -> str:  # a model that goes on numbering: three instructions per completion
        h = hashlib.sha256(str(i).encode()).digest()
        return "\n".join(f"{k}. Describe " + " ".join(_word(h, 9 * j + 3 * w) for w in range(3))
                         for j, k in enumerate((25, 26, 27)))[4:]

    three = [numbered(i) for i in range(4)]
    st, p = Store(":memory:"), pool("m1", fn=then_fake(three))
    prog = run_generation(st, config(5, task_type="A", batch_size=2, instances=False), p)
    assert st.count_kept_instructions(origin=FROM_PROMPT) == 5
    assert st.filter_reason_counts() == {"kept": 5, "surplus": 1}
    assert prog.filtered == {} and prog.surplus == 1  # set aside past the target, not filtered
    (surplus,) = st.instructions(reason="surplus")
    assert surplus["text"] == three[1].split("27. ")[1] and json.loads(surplus["detail"]) == {"target": 5}
    # the same N again does nothing; a larger N continues to exactly N
    calls = len(p.get("m1").calls)
    run_generation(st, config(5, task_type="A", batch_size=2, instances=False), p)
    assert len(p.get("m1").calls) == calls
    run_generation(st, config(9, task_type="A", batch_size=2, instances=False), p)
    assert st.count_kept_instructions(origin=FROM_PROMPT) == 9


def test_every_rejection_is_stored_with_its_reason_and_detail():
    seed = SEEDS[0].instruction
    script = ["Draw a cat", " Describe the image shown in the example", "Write a program that adds two numbers",
              ' "Quote a famous line from a movie"', " Écrivez une phrase sur la mer et le vent", " " + seed,
              "   ", "\n26. "]
    st, p = Store(":memory:"), pool("m1", fn=then_fake(script))
    prog = run_generation(st, config(8, task_type="A", batch_size=8, instances=False), p)
    assert st.filter_reason_counts() == {"kept": 8, "length": 1, "keyword": 1, "starts_with": 1,
                                         "punctuation": 1, "non_ascii": 1, "too_similar": 1}
    assert dict(prog.filtered) == {"length": 1, "keyword": 1, "starts_with": 1, "punctuation": 1,
                                   "non_ascii": 1, "too_similar": 1}
    details = {r["reason"]: json.loads(r["detail"]) for r in st.instructions(status="filtered")}
    assert details["length"] == {"words": 3}
    assert details["keyword"] == {"keyword": "image"}
    assert details["starts_with"] == {"prefix": "Write a program"}
    assert details["punctuation"] == {"char": '"'}
    assert details["non_ascii"] == {"char": "É"}
    assert details["too_similar"] == {"score": 1.0, "most_similar": seed}
    assert st.filter_reason_counts("completions") == {"instruction:ok": 14, "instruction:empty": 1,
                                                      "instruction:no_instruction": 1}
    unparseable = {c["parse_reason"]: c["text"] for c in rows(st, "completions") if c["parse_status"] != "ok"}
    assert unparseable == {"empty": "   ", "no_instruction": "\n26. "}  # stored raw
    assert prog.unparseable == {"empty": 1, "no_instruction": 1}


class _CutOff(ScriptedLM):
    """Answers like a backend that ignores the stop sequence and runs out of new tokens."""

    def generate(self, prompts_, params):
        out = super().generate(prompts_, params)
        for c in out:
            c.text += "\n26. Name the three largest"
            c.finish_reason = "length"
        return out


def test_the_last_instruction_of_a_cut_off_completion_is_stored_as_truncated():
    st = Store(":memory:")
    run_generation(st, config(4, task_type="B", instances=False), ModelPool({"m1": _CutOff("m1", fake)}))
    assert st.filter_reason_counts() == {"kept": 4, "truncated": 4}
    assert {r["text"] for r in st.instructions(reason="truncated")} == {"Name the three largest"}
    assert {json.loads(r["detail"])["finish_reason"] for r in st.instructions(reason="truncated")} == {"length"}


def test_unparseable_instance_completions_are_stored_raw_with_a_reason():
    def model(prompt):
        if prompt.startswith(prompts.INSTRUCTION_HEADER):
            return fake(prompt)
        return "I am sorry, I cannot generate examples."

    st = Store(":memory:")
    prog = run_generation(st, config(3, task_type="A"), pool("m1", fn=model))
    assert st.filter_reason_counts("candidates") == {"no_fields": 3}
    assert st.filter_reason_counts("completions") == {"instruction:ok": 4, "instance:no_fields": 3}
    raw = [c["text"] for c in rows(st, "completions") if c["stage"] == "instance"]
    assert raw == ["I am sorry, I cannot generate examples."] * 3
    assert prog.candidates == 0 and prog.candidates_rejected == {"no_fields": 3}
    assert any("no usable instance" in w for w in prog.all_warnings())
    assert_consistent(st, 3)


def test_extra_candidates_pass_the_filters_and_need_an_instance():
    seed = SEEDS[0].instruction

    def model(prompt):
        if prompt.startswith(prompts.INSTRUCTION_HEADER):
            return fake(prompt)
        h = hashlib.sha256(prompt.encode()).digest()
        word, w1, w2, w3 = (_word(h, 3 * i) for i in range(4))
        # a model that skips |EoS| and goes on with new instructions of its own (the stops never fire)
        return (f"input: {word}\noutput: done\ninstruction: Explain why {word} {w1} {w2} glows near {w3}.\n"
                f"input: {word} facts\noutput: It reflects light.\n"
                f"instruction: {seed}\noutput: copied\n"
                f"instruction: Name the famous {word} rivers of every continent.\n"
                "instruction: Too short here\noutput: skipped")

    st = Store(":memory:")
    prog = run_generation(st, config(2, task_type="A", batch_size=2), ModelPool(
        {"m1": ScriptedLM("m1", model, context_length=100_000)}))
    extra = [r for r in rows(st, "instructions") if r["origin"] == FROM_INSTANCE]
    assert Counter((r["status"], r["reason"]) for r in extra) == {
        ("kept", None): 2, ("filtered", "too_similar"): 2, ("filtered", "no_instance"): 2}
    assert all(json.loads(r["detail"]) == {"instance_reason": "no_fields"}
               for r in extra if r["reason"] == "no_instance")
    kept_extra = [r for r in extra if r["status"] == "kept"]
    assert all(r["task_type"] == "A" and r["text"].startswith("Explain why") for r in kept_extra)
    insts = rows(st, "candidates")
    for r in kept_extra:
        (x,) = [x for x in insts if x["instruction_id"] == r["id"]]
        assert x["status"] == "ok" and x["output"] == "It reflects light." and x["input"].endswith(" facts")
    assert prog.extra_candidates == 2 and prog.candidates == 4
    assert st.count_kept_instructions(origin=FROM_PROMPT) == 2  # extras do not count towards N
    assert_consistent(st, 2)


# -- bad input ---------------------------------------------------------------------------------------------
def test_a_model_that_returns_nothing_fails_clearly_with_nothing_half_written():
    st = Store(":memory:")
    with pytest.raises(CurateError, match=r"3 batches in a row \(6 completions\) kept no new type-A instruction "
                                          r"\(empty 6\)"):
        run_generation(st, config(2, task_type="A", batch_size=2, max_idle_batches=3), pool("m1", fn=lambda p: ""))
    cs = rows(st, "completions")
    assert len(cs) == 6 and {(c["parse_status"], c["parse_reason"]) for c in cs} == {("unparseable", "empty")}
    assert rows(st, "instructions") == [] and rows(st, "candidates") == []


def test_garbage_forever_fails_with_the_reasons():
    st = Store(":memory:")
    with pytest.raises(CurateError, match=r"kept no new type-B instruction \(length 4\)"):
        run_generation(st, config(2, task_type="B", batch_size=2, max_idle_batches=2),
                       pool("m1", fn=lambda p: "?!"))
    assert st.filter_reason_counts() == {"length": 4}


@pytest.mark.parametrize("n", [0, -3])
def test_n_of_zero_or_less_is_an_error(n):
    with pytest.raises(ValidationError, match="instructions"):
        GenerateConfig(instructions=n)
    with pytest.raises(CurateError, match="at least 1"):
        split_targets(n, "both", split_by_type(SEEDS))


def _only_type_a_seeds(tmp_path):
    path = tmp_path / "seeds.jsonl"
    lines = [s.to_record() for s in split_by_type(SEEDS)["A"][:30]]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    return str(path)


def test_type_b_without_type_b_seeds_is_an_error_before_anything_is_written(tmp_path):
    st = Store(":memory:")
    with pytest.raises(CurateError, match="no type-B tasks.*--type A"):
        run_generation(st, config(3, task_type="B", seeds=_only_type_a_seeds(tmp_path)), pool("m1"))
    assert st.count_seeds() == {} and rows(st, "completions") == []


def test_both_types_without_type_b_seeds_generates_type_a_and_warns(tmp_path):
    st = Store(":memory:")
    prog = run_generation(st, config(3, seeds=_only_type_a_seeds(tmp_path)), pool("m1"))
    assert st.count_kept_instructions("A", origin=FROM_PROMPT) == 3 and st.count_kept_instructions("B") == 0
    assert any("no type-B tasks" in w for w in prog.all_warnings())
    assert split_targets(7, "both", split_by_type(SEEDS)) == {"A": 5, "B": 2}


def test_prompts_are_trimmed_to_the_models_context_and_the_run_says_so():
    st, p = Store(":memory:"), pool("m1", context_length=400)  # 400 tokens - 256 new leaves ~144 words
    prog = run_generation(st, config(3, task_type="A", instances=False), p)
    demos = [c["demos"] for c in rows(st, "completions")]
    assert all(1 <= d < 24 for d in demos)
    for texts, _ in p.get("m1").calls:
        assert all(len(t.split()) + 256 + 2 <= 400 for t in texts)
    (warning,) = prog.all_warnings()
    assert warning.startswith("m1: 4 instruction prompt(s) trimmed to fit its context of 400 tokens (down to ")
    assert warning.endswith(" of 24 demos)") and prog.as_dict()["warnings"] == [warning]


def test_a_context_too_small_for_one_demo_is_a_clear_error():
    st, p = Store(":memory:"), pool("m1", context_length=260)
    with pytest.raises(CurateError, match="even with 1 demo.*max_new_tokens=256.*context of 260 tokens"):
        run_generation(st, config(3, task_type="A"), p)
    assert rows(st, "completions") == [] and p.get("m1").calls == []


def test_an_instance_prompt_that_cannot_fit_is_recorded_not_sent():
    small = ScriptedLM("small", fake, context_length=520)
    st = Store(":memory:")
    prog = run_generation(st, config(2, "big", instance_models="small", task_type="A"),
                          ModelPool({"big": ScriptedLM("big", fake), "small": small}))
    assert small.calls == []
    assert st.filter_reason_counts("completions") == {"instruction:ok": 4, "instance:prompt_too_long": 2}
    assert any("even with 1 demo the instance prompt" in w for w in prog.all_warnings())
    assert_consistent(st, 2)


class _Short(ScriptedLM):
    def generate(self, prompts_, params):
        return super().generate(prompts_, params)[:-1]


def test_a_backend_answering_the_wrong_number_of_completions_writes_nothing():
    st = Store(":memory:")
    with pytest.raises(BackendError, match="returned 3 completions for 4 prompts"):
        run_generation(st, config(3), ModelPool({"m1": _Short("m1", fake)}))
    assert rows(st, "completions") == []


class _Failing(ScriptedLM):
    def generate(self, prompts_, params):
        out = super().generate(prompts_, params)
        out[0] = Completion("partial", "error", 0, 0, model_id=self.model_id, error="server said abort")
        return out


def test_a_completion_the_backend_marks_as_an_error_is_stored_unparseable():
    st = Store(":memory:")
    prog = run_generation(st, config(3, task_type="B"), ModelPool({"m1": _Failing("m1", fake)}))
    assert st.filter_reason_counts("completions")["instruction:backend_error"] >= 1
    assert "m1: server said abort" in prog.all_warnings()
    assert_consistent(st, 3)


# -- resume ------------------------------------------------------------------------------------------------
N = 9


def _reference() -> tuple[list[str], Counter]:
    st = Store(":memory:")
    run_generation(st, config(N, "m1,m2:2"), pool("m1", "m2"))
    assert_consistent(st, N)
    return kept_texts(st), Counter(r["output"] for r in rows(st, "candidates"))


def test_resume_after_stop_reaches_exactly_n_as_if_never_stopped():
    st = Store(":memory:")
    asked = {"n": 0}

    def should_stop():
        asked["n"] += 1
        return asked["n"] == 3

    with pytest.raises(Stopped):
        run_generation(st, config(N, "m1,m2:2"), pool("m1", "m2"), should_stop=should_stop)
    assert 0 < st.count_kept_instructions(origin=FROM_PROMPT) < N
    assert st.count_completions("instruction") % 4 == 0  # whole batches only
    run_generation(st, config(N, "m1,m2:2"), pool("m1", "m2"))
    assert_consistent(st, N)
    assert (kept_texts(st), Counter(r["output"] for r in rows(st, "candidates"))) == _reference()


@pytest.mark.parametrize("fail_at", [3, 8])  # in the 2nd instruction batch; in the 1st instance batch
def test_resume_after_an_exception_in_the_model(fail_at):
    calls = {"n": 0}

    class Flaky(ScriptedLM):
        def generate(self, prompts_, params):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise BackendError("connection reset by peer")
            return super().generate(prompts_, params)

    st = Store(":memory:")
    flaky = ModelPool({"m1": Flaky("m1", fake), "m2": Flaky("m2", fake)})
    with pytest.raises(BackendError, match="connection reset"):
        run_generation(st, config(N, "m1,m2:2"), flaky)
    assert st.count_completions("instruction") in (4, 12)  # whole batches only
    assert st.count_completions("instance") == 0
    run_generation(st, config(N, "m1,m2:2"), pool("m1", "m2"))
    assert_consistent(st, N)
    assert (kept_texts(st), Counter(r["output"] for r in rows(st, "candidates"))) == _reference()


# -- a real SIGKILL ----------------------------------------------------------------------------------------
def _slow_run(db: str, n: int, kill_in_write: str | None) -> None:
    """Child process: generate with a slow model; optionally SIGKILL itself inside a write transaction."""
    import os

    if kill_in_write:  # die after the 2nd row of the 2nd batch of that table, before the commit
        original, count = getattr(Store, kill_in_write), {"n": 0}

        def dying(self, row):
            count["n"] += 1
            if count["n"] == 6:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, row)

        setattr(Store, kill_in_write, dying)

    def slow(prompt):
        time.sleep(0.1)
        return fake(prompt)

    run_generation(Store(db), config(n, "m1,m2:2"), pool("m1", "m2", fn=slow))
    os._exit(0)


def _child(db: str, kill_in_write: str | None = None) -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(target=_slow_run, args=(db, N, kill_in_write))
    proc.start()
    return proc


def test_kill_9_midway_then_resume_reaches_exactly_n(tmp_path):
    db = str(tmp_path / "curate.db")
    Store(db).close()  # created before two processes open it
    # 1. killed from outside while it works (most of its time is in the model)
    proc = _child(db)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.05)
        with Store(db) as st:
            if st.count_completions("instruction") >= 4:  # one batch of the three stored
                break
    proc.kill()
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    with Store(db) as st:
        assert st.count_completions("instruction") % 4 == 0 and st.count_kept_instructions() < N
    # 2. killed from inside a write transaction of the instance stage (half a batch inserted, not committed)
    proc = _child(db, kill_in_write="add_candidate")
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    with Store(db) as st:
        assert st.count_kept_instructions(origin=FROM_PROMPT) == N
        assert 0 < st.count_completions("instance") < N
        assert_consistent(st, N, instances=False)
        # 3. the next run continues to exactly N with nothing lost or doubled, as if never killed
        run_generation(st, config(N, "m1,m2:2"), pool("m1", "m2"))
        assert_consistent(st, N)
        assert (kept_texts(st), Counter(r["output"] for r in rows(st, "candidates"))) == _reference()


# -- the real embedded model -------------------------------------------------------------------------------
@pytest.mark.slow
def test_generation_with_the_real_smollm2(smollm2):
    st = Store(":memory:")
    cfg = GenerateConfig(instructions=2, task_type="B", batch_size=2, max_idle_batches=5,
                         instruction_models=parse_mixture("smollm2-135m-instruct"),
                         instance_models=parse_mixture("smollm2-135m-instruct"))
    prog = run_generation(st, cfg, ModelPool({"smollm2-135m-instruct": smollm2}))
    assert_consistent(st, 2)
    assert prog.completions == len(rows(st, "completions"))
    for c in rows(st, "completions"):
        assert c["model_id"] == "smollm2-135m-instruct" and c["prompt_tokens"] > 0
        assert c["demos"] == (10 if c["stage"] == "instruction" else 15)
    for r in st.instructions(status="kept"):
        assert len(r["text"].split()) > 3 and "|EoS|" not in r["text"]


def test_sampling_overrides_keep_the_reference_defaults_unless_given():
    from curate.generate import INSTANCE_PARAMS, INSTRUCTION_PARAMS, sampling
    assert sampling() == {"instruction_params": INSTRUCTION_PARAMS, "instance_params": INSTANCE_PARAMS}
    s = sampling(temperature=0.2, instruction_max_tokens=10)
    assert s["instruction_params"].temperature == 0.2 and s["instance_params"].temperature == 0.2
    assert s["instruction_params"].max_new_tokens == 10 and s["instruction_params"].min_new_tokens == 10
    assert s["instance_params"].max_new_tokens == INSTANCE_PARAMS.max_new_tokens
    assert s["instruction_params"].stop == INSTRUCTION_PARAMS.stop
    with pytest.raises(ValueError):
        sampling(temperature=-1)


# -- shared prompts (the prefix cache's settings) and the profile ---------------------------------------------
def _instruction_calls(p: ModelPool, name: str = "m1") -> list[list[str]]:
    return [texts for texts, _ in p.get(name).calls if texts[0].startswith(prompts.INSTRUCTION_HEADER)]


def test_instruction_samples_share_one_demo_draw_per_group():
    st, p = Store(":memory:"), pool("m1")
    run_generation(st, config(6, task_type="B", instruction_samples=2, instances=False, max_machine_demos=0), p)
    calls = _instruction_calls(p)
    assert calls and all(len(c) == 4 for c in calls)
    for c in calls:  # prompts 0,1 and 2,3 of a batch are one draw each; the two draws differ
        assert c[0] == c[1] and c[2] == c[3] and c[0] != c[2]
    b_seeds = [s.instruction for s in split_by_type(SEEDS)["B"]]
    for c in rows(st, "completions"):  # the stored rng_seed still rebuilds the prompt
        again = prompts.instruction_prompt(b_seeds, [], random.Random(c["rng_seed"]), demos=10, max_machine=0)
        assert again.hash == c["prompt_hash"]
    st1, p1 = Store(":memory:"), pool("m1")  # the default: every prompt its own draw
    run_generation(st1, config(6, task_type="B", instances=False), p1)
    assert all(len(set(c)) == len(c) for c in _instruction_calls(p1))
    st2, p2 = Store(":memory:"), pool("m1", "m2")  # the samples of one draw go to one model
    run_generation(st2, config(8, "m1,m2", task_type="B", instruction_samples=2, instances=False,
                               assignment="round_robin"), p2)
    calls = {m: [t for c in _instruction_calls(p2, m) for t in c] for m in ("m1", "m2")}
    assert calls["m1"] and calls["m2"] and not set(calls["m1"]) & set(calls["m2"])
    assert all(calls[m].count(t) % 2 == 0 for m in calls for t in calls[m])


def _demo_block(prompt: str) -> str:
    return prompt.rsplit("instruction: ", 1)[0]


def test_shared_instance_demos_use_one_block_per_type():
    st, p = Store(":memory:"), pool("m1")
    run_generation(st, config(8, shared_instance_demos=True), p)
    inst = [t for texts, _ in p.get("m1").calls for t in texts if not t.startswith(prompts.INSTRUCTION_HEADER)]
    by_type = {t: {_demo_block(x) for x in inst if x.startswith(prompts.INSTANCE_HEADERS[t])} for t in "AB"}
    assert len(inst) >= 8 and all(len(blocks) == 1 for blocks in by_type.values() if blocks)
    assert sum(bool(b) for b in by_type.values()) == 2
    st1, p1 = Store(":memory:"), pool("m1")
    run_generation(st1, config(8), p1)
    inst1 = [t for texts, _ in p1.get("m1").calls for t in texts if not t.startswith(prompts.INSTRUCTION_HEADER)]
    assert len({_demo_block(x) for x in inst1}) > 2  # by default each instruction draws its own demos


def test_the_stage_result_carries_a_profile_that_adds_up():
    from curate import generate
    from curate.stage import StageContext

    st, p = Store(":memory:"), pool("m1")
    t0 = time.perf_counter()
    result = generate.run(st, config(6), StageContext(pool=p))
    wall = time.perf_counter() - t0
    prof = result["profile"]
    assert {"prompt", "model", "parse", "filter", "store", "other"} <= set(prof)
    assert all(v >= 0 for v in prof.values())
    assert sum(prof.values()) == pytest.approx(wall, rel=0.2, abs=0.05)
    assert result["kept_candidates"] == 6 and result["completions"] > 0
