import itertools
import random

from curate import jobs
from curate.lm.scripted import ScriptedLM
from curate.mixture import ModelPool
from curate.store import Store

_counter = itertools.count()
_WORDS = ("river bridge castle harvest engine violin glacier market orbit lantern poem fossil desert "
          "compiler recipe tide budget comet forest ladder pigment rumor vaccine anchor").split()


def _unique_instruction(prompt: str) -> str:
    if prompt.startswith("Come up"):
        rng = random.Random(next(_counter))
        return " Explain " + " ".join(rng.sample(_WORDS, 8)) + " clearly. |EoS|"
    if "requires input" in prompt:
        return "input: Some paragraph.\noutput: An answer.\n|EoS|"
    return "output: A standalone answer.\n|EoS|"


def _config(n=4, **kw):
    return {"instructions": n, "instruction_models": [{"model": "scripted:fake"}],
            "instance_models": [{"model": "scripted:fake"}],
            "batch_size": 2, **kw}


def _pool():
    return ModelPool({"scripted:fake": ScriptedLM("fake", _unique_instruction)})


def test_run_job_to_done_with_progress_recorded(tmp_path):
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config())
    job = jobs.run_job(st, jid, _pool())
    assert job["state"] == "done", job["error"]
    p = job["progress"]
    assert p["phase"] == "done" and p["done"] == p["total"] == p["counts"]["kept"] == 4
    assert st.count_kept_instructions(origin="instruction_prompt") == 4
    assert job["config"]["instructions"] == 4 and job["config"]["seed"] == 0  # validated, defaults filled


def test_pause_then_resume_reaches_the_target(tmp_path):
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config(n=6))
    calls = {"n": 0}

    def pausing_lm(prompt):
        calls["n"] += 1
        if calls["n"] == 3:
            jobs.pause(st, jid)  # a reviewer presses Pause while a batch is running
        return _unique_instruction(prompt)

    job = jobs.run_job(st, jid, ModelPool({"scripted:fake": ScriptedLM("fake", pausing_lm)}))
    assert job["state"] == "paused"
    assert 0 < st.count_kept_instructions() < 6
    job = jobs.run_job(st, jid, _pool())
    assert job["state"] == "done"
    assert st.count_kept_instructions(origin="instruction_prompt") == 6


def test_backend_failure_is_recorded_not_lost(tmp_path):
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config())
    job = jobs.run_job(st, jid, ModelPool({"scripted:fake": ScriptedLM("fake", [], default=None)}))
    assert job["state"] == "failed"
    assert "ran out of scripted completions" in job["error"]


def test_cancel_and_unknown_kind(tmp_path):
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config())
    assert jobs.cancel(st, jid)
    assert jobs.run_job(st, jid, _pool())["state"] in ("cancelled", "done")
    try:
        jobs.start_job(st, "no-such-stage", {})
    except Exception as e:
        assert "unknown job kind" in str(e)
    else:
        raise AssertionError("expected an error")


def test_runner_thread_and_recovery_of_dead_jobs(tmp_path):
    db = tmp_path / "c.db"
    st = Store(db)
    jid = jobs.start_job(st, "generate", _config())
    runner = jobs.JobRunner(str(db), _pool())
    runner.submit(jid)
    runner.join(60)
    assert st.get_job(jid)["state"] == "done"
    # a job another process left 'running' (its pid is gone) shows as interrupted
    dead = st.create_job("generate", _config())
    st.update_job(dead, state="running", pid=2**22 + 12345)
    assert jobs.recover(st) == [dead]
    assert st.get_job(dead)["state"] == "interrupted"


def test_pause_requested_while_queued_is_honoured_when_a_worker_picks_it_up(tmp_path):
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config())
    assert jobs.pause(st, jid)  # still queued behind another job
    job = jobs.run_job(st, jid, _pool())
    assert job["state"] == "paused"
    assert st.count_kept_instructions() == 0  # nothing ran
    assert jobs.run_job(st, jid, _pool())["state"] == "done"  # resume = run again


def test_cancel_ends_a_job_without_a_worker_at_once_and_it_never_runs(tmp_path):
    st = Store(tmp_path / "c.db")
    for state in ("queued", "paused", "interrupted", "failed"):
        jid = jobs.start_job(st, "generate", _config())
        st.update_job(jid, state=state)
        assert jobs.cancel(st, jid)
        assert st.get_job(jid)["state"] == "cancelled"
        assert jobs.run_job(st, jid, _pool())["state"] == "cancelled"
        assert not jobs.cancel(st, jid)  # nothing left to cancel
    assert st.count_kept_instructions() == 0


def test_cancel_of_a_running_job_stops_after_its_step(tmp_path):
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config(n=6))

    def cancelling_lm(prompt):
        if st.get_job(jid)["state"] == "running":
            assert jobs.cancel(st, jid)
            assert st.get_job(jid)["state"] == "cancelling"
        return _unique_instruction(prompt)

    job = jobs.run_job(st, jid, ModelPool({"scripted:fake": ScriptedLM("fake", cancelling_lm)}))
    assert job["state"] == "cancelled"
    assert st.count_kept_instructions() < 6


def test_a_running_job_is_not_run_twice(tmp_path):
    import os
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config())
    st.update_job(jid, state="running", pid=os.getpid())
    try:
        jobs.run_job(st, jid, _pool())
    except Exception as e:
        assert "already running" in str(e)
    else:
        raise AssertionError("expected an error")
