"""m004 renames the reviewed unit to "candidate" in the schema: a store written by curate 0.1 (migrations m001–m003,
table ``instances``) opens with every row kept and readable through today's API, and its queue queries still use
the covering indexes."""

from __future__ import annotations

import json

import pytest

from curate import review
from curate.store import Store, migrations


@pytest.fixture
def old_store(tmp_path):
    """A store as curate 0.1 left it: m001–m003 applied, rows written with the old column names."""
    path = tmp_path / "old.db"
    names = [m.name for m in migrations._migrations]
    later = migrations._migrations[names.index("m003_selection") + 1:]  # m004 and every migration after it
    migrations._migrations = migrations._migrations[:names.index("m003_selection") + 1]
    try:
        st = Store(path)
        assert st.applied_migrations() == ["m001_initial", "m002_queue_indexes", "m003_selection"]
        ex = st.db.execute
        ex("INSERT INTO completions (id, stage, model_id, params, prompt_hash, text, created_at)"
           " VALUES ('c1', 'instruction', 'g', '{}', 'p', 't', 0)")
        ex("INSERT INTO instructions (id, seq, text, task_type, origin, completion_id, position, generator_model,"
           " params, prompt_hash, status, created_at) VALUES ('i1', 1, 'Name the capital of France.', 'B',"
           " 'instruction_prompt', 'c1', 0, 'g', '{}', 'p', 'kept', 0)")
        ex("INSERT INTO instances (id, seq, instruction_id, task_type, input, output, completion_id, position,"
           " generator_model, params, prompt_hash, status, review_status, version, final_instruction, final_input,"
           " final_output, reviewed_by, reviewed_at, created_at) VALUES ('x1', 1, 'i1', 'B', '', 'Paris.', 'c1', 0,"
           " 'g', '{}', 'p', 'ok', 'accepted', 1, 'Name the capital of France.', '', 'Paris.', 'ann', 5, 0)")
        for pos, (oid, model, text) in enumerate([("o0", "g", "Paris."), ("o1", "e", "paris")]):
            ex("INSERT INTO outputs (id, instance_id, position, model_id, params, prompt_style, text, created_at)"
               f" VALUES ('{oid}', 'x1', {pos}, '{model}', '{{}}', 'chat', '{text}', 0)")
        ex("INSERT INTO consensus (instance_id, k, output_ids, models, chosen_index, chosen_nonempty, reason,"
           " min_pairwise, pairwise, scores, tokenizer, threshold, created_at) VALUES ('x1', 2, '[\"o0\", \"o1\"]',"
           " '[\"g\", \"e\"]', 0, 1, 'exact_o0', 1.0, '[[1, 1], [1, 1]]', '[1, 1]', 'rouge', 0.01, 0)")
        ex("INSERT INTO scores (candidate_id, scorer, name, value, created_at) VALUES ('o1', 'proxy:consensus',"
           " 'reward', 0.5, 0)")
        ex("INSERT INTO reviews (instance_id, reviewer, at, action, version, before, after, reason) VALUES"
           " ('x1', 'ann', 5, 'accept', 1, '{}', '{}', NULL)")
        ex("INSERT INTO embeddings (instance_id, model, text_hash, dim, vector, created_at) VALUES"
           " ('x1', 'm', 'h', 1, x'0000803f', 0)")
        ex("INSERT INTO selections (name, instance_id, rank, gain, quality, score, params, created_at) VALUES"
           " ('qdit', 'x1', 0, 1.0, 0.5, 0.9, '{\"k\": 1}', 0)")
        st.db.conn.commit()
        st.close()
    finally:
        migrations._migrations += later
    return path


def test_a_0_1_store_opens_with_every_row_under_the_new_names(old_store):
    st = Store(old_store)
    assert "m004_candidates" in st.applied_migrations()
    assert "instances" not in st.table_names() and "candidates" in st.table_names()
    x = st.get_candidate("x1")
    assert (x.instruction, x.output, x.review_status, x.final_output, x.version) == (
        "Name the capital of France.", "Paris.", "accepted", "Paris.", 1)
    assert [o.id for o in st.outputs_for("x1")] == ["o0", "o1"]
    assert st.get_consensus("x1")["candidate_id"] == "x1"
    assert [r.candidate_id for r in st.review_log("x1")] == ["x1"]
    assert st.scores_for("o1")[0]["subject_id"] == "o1"
    assert st.embeddings_for("m", [("x1", "h")]) == {"x1": (1, b"\x00\x00\x80?")}
    assert st.get_selection("qdit")[0]["candidate_id"] == "x1"
    assert st.count_passing(0.01) == {"scored": 1, "passing": 1}
    d = review.candidate(st, "x1")
    assert d["consensus"]["passes"] and [o["text"] for o in d["outputs"]] == ["Paris.", "paris"]
    # the foreign keys follow the rename: an output of an unknown candidate is refused
    with pytest.raises(Exception, match="FOREIGN KEY"):
        st.db.execute("INSERT INTO outputs (id, candidate_id, position, model_id, params, prompt_style, text,"
                      " created_at) VALUES ('o9', 'nope', 0, 'm', '{}', 'chat', 't', 0)")


def test_the_queue_still_reads_through_its_covering_indexes(old_store):
    st = Store(old_store)
    names = {r[0] for r in st.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"candidates_seq", "candidates_review_queue", "outputs_candidate", "reviews_candidate",
            "selections_candidate"} <= names and not any(n.startswith("instances_") for n in names)
    plan = " ".join(r[-1] for r in st.db.execute(
        "EXPLAIN QUERY PLAN SELECT x.id FROM candidates x WHERE x.status = 'ok' AND x.review_status = 'pending'"
        " ORDER BY x.seq LIMIT 50"))
    assert "candidates_review_queue" in plan and "TEMP B-TREE" not in plan
    assert json.loads(st.db.execute("SELECT output_ids FROM consensus").fetchone()[0]) == ["o0", "o1"]


@pytest.fixture
def store_0_2_pre_review(tmp_path):
    """A store as the branch before m005 left it: m001–m004, an undo logged the old way (its reason
    "undo of review #N[: text]"), and a reject whose reason only reads like one."""
    from factories import make_candidate
    path = tmp_path / "pre.db"
    later = [m for m in migrations._migrations if m.name >= "m005"]
    migrations._migrations = [m for m in migrations._migrations if m.name < "m005"]
    try:
        st = Store(path)
        assert st.applied_migrations()[-1] == "m004_candidates"
        a = make_candidate(st, instruction="First instruction of the migration test.")
        b = make_candidate(st, instruction="Second instruction of the migration test.")
        ex = st.db.execute
        texts = json.dumps({"instruction": "i", "input": "x", "output": "o"})
        rows = [  # (candidate, reviewer, action, version, reason)
            (a, "ann", "reject", 1, "duplicate"),              # 1
            (a, "ann", "accept", 2, None),                     # 2
            (a, "ann", "reject", 3, "undo of review #2: duplicate"),  # 3: the old undo of #2
            (b, "bob", "reject", 1, "undo of review #2"),      # 4: #2 is another candidate's: a plain reason
            (b, "bob", "reject", 2, "undo of review #9: x"),   # 5: no earlier #9: a plain reason
        ]
        for cid, who, action, v, reason in rows:
            ex("INSERT INTO reviews (candidate_id, reviewer, at, action, version, before, after, reason)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (cid, who, float(v), action, v, texts, texts, reason))
        ex("UPDATE candidates SET review_status = 'rejected', version = 3, reviewed_by = 'ann', reviewed_at = 3"
           " WHERE id = ?", (a,))
        ex("UPDATE candidates SET review_status = 'rejected', version = 2, reviewed_by = 'bob', reviewed_at = 2"
           " WHERE id = ?", (b,))
        st.db.conn.commit()
        st.close()
    finally:
        migrations._migrations += later
    return path, a, b


def test_m005_turns_old_undo_reasons_into_the_undoes_column_and_keeps_every_row(store_0_2_pre_review):
    from curate import decision
    path, a, b = store_0_2_pre_review
    st = Store(path)
    assert "m005_review" in st.applied_migrations()
    log = st.review_log(limit=None)
    assert len(log) == 5
    assert [(e.undoes, e.reason) for e in log] == [
        (None, "duplicate"), (None, None), (2, "duplicate"), (None, "undo of review #2"),
        (None, "undo of review #9: x")]
    assert {e.scope for e in log} == {"decision"} and {e.quorum for e in log} == {1}
    # the state is what the log replays to, and the reasons read as written
    replayed = decision.replay(log)
    for cid in (a, b):
        x = st.get_candidate(cid)
        assert replayed[cid].decided == (x.review_status, None)
    assert review.candidate(st, a)["reject_reason"] == "duplicate"
    assert review.candidate(st, b)["reject_reason"] == "undo of review #9: x"
    review.undo(st, a, reviewer="ann")  # undoes #1 (the #2/#3 pair is done): pending
    assert st.get_candidate(a).review_status == "pending"
    with pytest.raises(Exception, match="append-only"):
        st.db.execute("UPDATE reviews SET reason = 'x'")
