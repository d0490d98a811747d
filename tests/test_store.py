import sqlite3

import pytest

from curate.errors import ConflictError, StoreError
from curate.seeds import load_seeds
from curate.store import Store, content_id, migrations

from factories import make_candidate as _candidate
from factories import make_instruction as _instruction

EXPECTED_TABLES = {"seeds", "jobs", "completions", "instructions", "candidates", "outputs", "consensus",
                   "scores", "reviews", "_sqlite_migrations"}


def _all_migrations() -> list[str]:
    from sqlite_utils import Database
    return [m.name for m in migrations.pending(Database(memory=True))]


ALL_MIGRATIONS = _all_migrations()


def test_fresh_store_has_schema_and_records_migrations(tmp_path):
    st = Store(tmp_path / "c.db")
    assert EXPECTED_TABLES <= set(st.table_names())
    assert st.applied_migrations() == ALL_MIGRATIONS
    assert ALL_MIGRATIONS[:2] == ["m001_initial", "m002_queue_indexes"]
    assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_applies_nothing_twice_and_keeps_rows(tmp_path):
    path = tmp_path / "c.db"
    st = Store(path)
    st.add_seeds(load_seeds()[:5])
    st.close()
    st2 = Store(path)
    assert st2.applied_migrations() == ALL_MIGRATIONS
    assert sum(st2.count_seeds().values()) == 5


def test_migration_runs_on_an_older_database(tmp_path, monkeypatch):
    """A database made by an older version (fewer migrations) is brought up to date when opened."""
    path = tmp_path / "old.db"
    Store(path).close()
    applied = []

    @migrations()
    def m999_test_only(db):
        db.execute("CREATE TABLE test_only (x INTEGER)")
        applied.append(True)
    try:
        st = Store(path)
        assert "test_only" in st.table_names()
        assert st.applied_migrations()[-1] == "m999_test_only"
        Store(path)
        assert applied == [True]  # recorded once, never re-run
    finally:
        migrations._migrations = [m for m in migrations._migrations if m.name != "m999_test_only"]


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("this is not sqlite " * 200)
    with pytest.raises(StoreError, match="notes.db.*--db"):
        Store(bad)


def test_seeds_reinserted_do_not_duplicate():
    st = Store(":memory:")
    seeds = load_seeds()
    st.add_seeds(seeds)
    st.add_seeds(seeds)
    assert st.count_seeds() == {"A": 125, "B": 50}


def test_content_ids_collapse_reinserts():
    st = Store(":memory:")
    a = _instruction(st)
    cid = st.db.execute("SELECT completion_id FROM instructions").fetchone()[0]
    again, new = st.add_instruction({"text": "other text", "task_type": "A", "origin": "instruction_prompt",
                                     "completion_id": cid, "position": 0, "generator_model": "m",
                                     "params": {}, "prompt_hash": "p", "status": "kept"})
    assert (again, new) == (a, False)
    assert st.count_kept_instructions() == 1
    assert content_id(a=1, b=2) == content_id(b=2, a=1)


def test_filter_reason_counts_and_kept_texts():
    st = Store(":memory:")
    _instruction(st, "one two three", status="filtered", reason="length")
    _instruction(st, "Draw a picture of a cat now", status="filtered", reason="keyword")
    _instruction(st, "Explain why the sky appears blue", task_type="B")
    assert st.filter_reason_counts() == {"kept": 1, "length": 1, "keyword": 1}
    assert st.kept_instruction_texts("B") == ["Explain why the sky appears blue"]
    assert st.kept_instruction_texts("A") == []


def test_outputs_one_row_per_model_and_style():
    st = Store(":memory:")
    xid = _candidate(st)
    st.add_outputs([{"candidate_id": xid, "position": 1, "model_id": "m1", "params": {}, "prompt_style": "chat",
                     "text": "changed"}])
    outs = st.outputs_for(xid)
    assert [o.text for o in outs] == ["Paris is the capital.", "paris is the capital"]


def _consensus_row(xid, reason, min_pairwise, nonempty=True):
    return {"candidate_id": xid, "k": 3, "output_ids": ["a", "b", "c"], "models": ["g", "e1", "e2"],
            "chosen_index": 0, "chosen_nonempty": nonempty, "reason": reason, "min_pairwise": min_pairwise,
            "pairwise": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "scores": [0, 0, 0], "tokenizer": "rouge",
            "threshold": 0.01}


def test_passing_is_a_query_over_stored_scores():
    st = Store(":memory:")
    ids = []
    for i, (reason, mp, ne) in enumerate([("exact_o0", 0.0, True), ("rouge", 0.30, True),
                                          ("rouge", 0.05, True), ("below_threshold", 0.005, True),
                                          ("empty", 0.9, False), ("exact_others", 0.0, False)]):
        xid = _candidate(st, instruction=f"Instruction number {i} for the passing test")
        ids.append(xid)
        st.save_consensus([_consensus_row(xid, reason, mp, ne)])
    assert st.count_passing(0.01) == {"scored": 6, "passing": 3}
    assert st.count_passing(0.05) == {"scored": 6, "passing": 2}   # strictly greater than tau
    assert st.count_passing(0.0) == {"scored": 6, "passing": 4}
    assert st.count_passing(1.0) == {"scored": 6, "passing": 1}    # exact matches pass at any tau
    assert st.passing_ids(0.01) == ids[:3]
    hist = st.min_pairwise_histogram(bins=10)
    assert sum(h["n"] for h in hist) == 3 and hist[0]["n"] == 2 and hist[3]["n"] == 1


def test_review_log_is_append_only_and_versions_conflict():
    st = Store(":memory:")
    xid = _candidate(st)
    cand = st.get_candidate(xid)
    assert cand.review_status == "pending" and cand.version == 0
    after = st.review(xid, "edit", reviewer="ann", expected_version=0, output="Paris.")
    assert after.review_status == "edited" and after.final_output == "Paris." and after.version == 1
    assert after.output == "Paris is the capital."  # the original stays
    with pytest.raises(ConflictError, match="ann"):
        st.review(xid, "reject", reviewer="bob", expected_version=0)
    assert st.get_candidate(xid).review_status == "edited"  # the stale write changed nothing
    st.review(xid, "reject", reviewer="bob", expected_version=1, reason="wrong")
    log = st.review_log(xid)
    assert [(r.reviewer, r.action, r.version) for r in log] == [("ann", "edit", 1), ("bob", "reject", 2)]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        st.db.execute("UPDATE reviews SET reviewer = 'eve'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        st.db.execute("DELETE FROM reviews")


def test_accept_defaults_to_consensus_choice():
    st = Store(":memory:")
    xid = _candidate(st)
    outs = st.outputs_for(xid)
    row = _consensus_row(xid, "rouge", 0.5)
    row.update(output_ids=[o.id for o in outs], chosen_index=1, k=2)
    st.save_consensus([row])
    after = st.review(xid, "accept", reviewer="ann")
    assert after.final_output == "paris is the capital"
    assert st.review_counts() == {"accepted": 1}


def test_bad_review_inputs():
    st = Store(":memory:")
    xid = _candidate(st)
    with pytest.raises(StoreError, match="unknown review action"):
        st.review(xid, "approve", reviewer="ann")
    with pytest.raises(StoreError, match="reviewer"):
        st.review(xid, "accept", reviewer=" ")
    with pytest.raises(StoreError, match="non-empty"):
        st.review(xid, "edit", reviewer="ann", output="  ")
    with pytest.raises(StoreError, match="no candidate"):
        st.review("nope", "accept", reviewer="ann")
    assert st.review_log() == []


def test_jobs_lifecycle_and_interrupted_detection():
    st = Store(":memory:")
    jid = st.create_job("generate", {"instructions": 3})
    assert st.get_job(jid)["state"] == "queued"
    st.update_job(jid, state="running", progress={"kept": 1}, pid=999999)
    assert st.get_job(jid)["progress"] == {"kept": 1}
    assert st.mark_interrupted(lambda job: True) == []
    assert st.mark_interrupted(lambda job: False) == [jid]
    assert st.get_job(jid)["state"] == "interrupted"
    assert not st.request_job_state(jid, "pausing", only_from=("running",))
    with pytest.raises(StoreError, match="unknown job state"):
        st.update_job(jid, state="sleeping")
    with pytest.raises(StoreError, match="curate jobs"):
        st.get_job("missing")


def test_stats_shape():
    st = Store(":memory:")
    _candidate(st)
    s = st.stats()
    assert s["instructions"] == {"kept": 1}
    assert s["candidates"] == {"ok": 1}
    assert s["outputs_by_model"] == {"m0": 1, "m1": 1}
    assert s["reviews"] == {"pending": 1}


def _open(path):
    Store(path).close()


def test_concurrent_first_open_migrates_once(tmp_path):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "race.db")
    procs = [ctx.Process(target=_open, args=(path,)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    assert Store(path).applied_migrations() == ALL_MIGRATIONS
