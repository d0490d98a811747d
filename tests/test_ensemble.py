"""The ensembling stage over the store: outputs per (instance, model, style), resume, stored consensus."""
import json

import pytest

from curate.ensemble import EnsembleConfig, compute_consensus, run_ensemble
from curate.errors import Stopped
from curate.prompts import reference_prompt
from curate.lm.scripted import ScriptedLM
from curate.mixture import ModelPool
from curate.store import Store

from factories import make_candidate as _candidate


class CompletionOnly(ScriptedLM):
    supports_chat = False


def _store_with(n):
    st = Store(":memory:")
    ids = [_candidate(st, output=f"answer {i} is forty two", outputs=(f"answer {i} is forty two",),
                      instruction=f"Compute the answer to question number {i} now") for i in range(n)]
    return st, ids


def test_outputs_styles_and_consensus_are_stored():
    st, ids = _store_with(3)
    chat = ScriptedLM("e1", lambda p: "Answer is forty two!")
    ref = CompletionOnly("e2", lambda p: "something else entirely")
    prog = run_ensemble(st, EnsembleConfig(models=["e1", "e2"], batch_size=2), ModelPool({"e1": chat, "e2": ref}))
    assert prog.outputs == {"e1": 3, "e2": 3}
    outs = st.outputs_for(ids[0])
    assert [(o.position, o.model_id, o.prompt_style) for o in outs] == [
        (0, "m0", "generator"), (1, "e1", "chat"), (2, "e2", "reference")]
    assert any("no chat template" in w for w in prog.warnings)
    # the chat model got chat-style params, the other a plain completion of the reference prompt
    assert chat.calls[0][1].style == "chat" and ref.calls[0][1].style == "completion"
    assert chat.calls[0][1].temperature == 0.0 and chat.calls[0][1].max_new_tokens == 256
    assert ref.calls[0][0][0] == reference_prompt("Compute the answer to question number 0 now", "x")
    c = st.get_consensus(ids[0])
    assert c["k"] == 3 and c["models"] == ["m0", "e1", "e2"]
    assert len(c["pairwise"]) == 3 and all(len(r) == 3 for r in c["pairwise"])


def test_rerun_fills_only_what_is_missing():
    st, ids = _store_with(4)
    lm = ScriptedLM("e1", lambda p: "answer is forty two")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 1  # stop after the first batch

    with pytest.raises(Stopped):
        run_ensemble(st, EnsembleConfig(models=["e1"], batch_size=2), ModelPool({"e1": lm}), should_stop=stop)
    assert sum(len(st.outputs_for(i)) for i in ids) == 4 + 2
    lm2 = ScriptedLM("e1", lambda p: "answer is forty two")
    run_ensemble(st, EnsembleConfig(models=["e1"], batch_size=2), ModelPool({"e1": lm2}))
    assert sum(len(c[0]) for c in lm2.calls) == 2  # only the two missing instances were asked for
    assert st.stats()["outputs_by_model"]["e1"] == 4


def test_threshold_change_is_a_query_not_a_recomputation():
    st, ids = _store_with(6)
    answers = iter(["answer 0 is forty two", "answer 1 is forty two", "totally different words here",
                    "unrelated", "forty", "answer"])
    lm = ScriptedLM("e1", lambda p: next(answers))
    run_ensemble(st, EnsembleConfig(models=["e1"], batch_size=6), ModelPool({"e1": lm}))
    before = [st.get_consensus(i) for i in ids]
    counts = {tau: st.count_passing(tau)["passing"] for tau in (0.0, 0.01, 0.3, 0.6, 0.99)}
    assert counts[0.0] >= counts[0.3] >= counts[0.6] >= counts[0.99] >= 2  # two exact matches always pass
    assert counts[0.01] == sum(1 for c in before if c["reason"] in ("exact_o0", "exact_others")
                               or (c["reason"] != "empty" and c["min_pairwise"] > 0.01))
    assert [st.get_consensus(i)["created_at"] for i in ids] == [c["created_at"] for c in before]
    assert compute_consensus(st, 0.5) == {}  # nothing changed, so nothing is recomputed


def test_consensus_recomputed_when_a_model_is_added():
    st, ids = _store_with(2)
    run_ensemble(st, EnsembleConfig(models=["e1"]), ModelPool({"e1": ScriptedLM("e1", lambda p: "a b c d")}))
    assert st.get_consensus(ids[0])["k"] == 2
    run_ensemble(st, EnsembleConfig(models=["e1", "e2"]),
                 ModelPool({"e1": ScriptedLM("e1"), "e2": ScriptedLM("e2", lambda p: "a b c")}))
    assert st.get_consensus(ids[0])["k"] == 3


def test_consensus_and_outputs_walk_the_candidates_by_a_seq_cursor():
    """Each batch continues after the last one's seq (the queries read candidates in seq order and stop at the
    limit: no sort of every candidate per batch), and every candidate is covered."""
    st, ids = _store_with(7)
    for sql in ("candidates_needing_consensus", "candidates_missing_output"):
        args = (2, 2, 3) if sql == "candidates_needing_consensus" else ("e1", "chat", 2, 3)
        plan = " ".join(r[-1] for r in st.db.execute("EXPLAIN QUERY PLAN " + _last_sql(st, sql, args)))
        assert "candidates_seq" in plan and "TEMP B-TREE" not in plan, (sql, plan)
    assert [r["seq"] for r in st.candidates_missing_output("e1", "chat", limit=3, after_seq=2)] == [3, 4, 5]
    lm = ScriptedLM("e1", lambda p: "answer is forty two")
    run_ensemble(st, EnsembleConfig(models=["e1"], batch_size=2), ModelPool({"e1": lm}))
    assert sorted(len(c[0]) for c in lm.calls) == [1, 2, 2, 2]
    assert compute_consensus(st, batch=2) == {}
    assert all(st.get_consensus(i)["k"] == 2 for i in ids)


def _last_sql(st, method, args):
    """The SQL a store method runs (captured from its execute call)."""
    seen = []
    real = st.db.query

    def spy(sql, params=None):
        seen.append((sql, params))
        return real(sql, params)
    st.db.query = spy
    try:
        getattr(st, method)(*args)
    finally:
        st.db.query = real
    sql, params = seen[-1]
    for k, v in sorted(params.items(), key=lambda kv: -len(kv[0])):
        sql = sql.replace(f":{k}", repr(v))
    return sql


def test_no_generate_warns_about_candidates_with_a_single_output():
    st, ids = _store_with(3)
    prog = run_ensemble(st, EnsembleConfig(consensus_only=True), ModelPool({}))
    assert prog.consensus == {} and any("3 candidates have only one output (o0)" in w and "--as-outputs" in w
                                        for w in prog.warnings)


def test_consensus_on_several_processes_stores_the_same_rows(tmp_path):
    """The parallel path (spawned workers reading the store file, a bounded window of batches) against the serial
    one."""
    def filled():
        st = Store(tmp_path / f"{len(list(tmp_path.iterdir()))}.db")
        for i in range(23):
            _candidate(st, output=f"answer {i} is forty two", instruction=f"Compute answer number {i} now",
                       outputs=(f"answer {i} is forty two", f"the answer {i} is 42" if i % 2 else "nothing",
                                "forty two" if i % 3 else f"answer {i} is forty two"))
        return st
    serial, parallel = filled(), filled()
    a = compute_consensus(serial, batch=4, workers=1)
    b = compute_consensus(parallel, batch=4, workers=2, parallel_from=0)
    assert a == b and sum(a.values()) == 23
    strip = lambda st: [{k: v for k, v in st.get_consensus(r["id"]).items() if k != "created_at"}  # noqa: E731
                        for r in st.review_queue(status=None, limit=100)]
    assert strip(serial) == strip(parallel)
    with pytest.raises(Stopped):
        compute_consensus(filled(), batch=4, workers=2, parallel_from=0, should_stop=lambda: True)
