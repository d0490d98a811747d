"""Jobs that tell the truth: progress and stop requests inside a model call (the backend progress hook), an ETA
measured per phase, one active job of a kind per store (across processes), Resume while pausing, the form
checked before a job exists, surplus instructions counted apart, and a stop-token fragment filtered."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import sys
import types

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from curate import jobs, review, stage  # noqa: E402
from curate.errors import InputError, JobRunningError, ModelNotFoundError, Stopped  # noqa: E402
from curate.lm.base import GenParams  # noqa: E402
from curate.lm.base import generate as generate_with  # noqa: E402
from curate.lm.scripted import ScriptedLM  # noqa: E402
from curate.mixture import ModelPool  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.stage import StageContext, describe  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.ui import Handlers  # noqa: E402
from curate.ui.tabs.overview import stacked_lim  # noqa: E402
from curate.ui.tabs.run import ENSEMBLE_FIELDS, GENERATE_FIELDS, target  # noqa: E402
from review_fixtures import filled_store, scripted_pool  # noqa: E402


_WORDS = ("river bridge castle harvest engine violin glacier market orbit lantern poem fossil desert "
          "compiler recipe tide budget comet forest ladder pigment rumor vaccine anchor").split()
_counter = itertools.count()


def _instruction(prompt: str) -> str:
    if prompt.startswith("Come up"):  # instructions far apart from each other (the novelty filter keeps them)
        return " Explain " + " ".join(random.Random(next(_counter)).sample(_WORDS, 8)) + " clearly. |EoS|"
    if "requires input" in prompt:
        return "input: Some paragraph.\noutput: An answer.\n|EoS|"
    return "output: A standalone answer.\n|EoS|"


def _config(n=4, **kw):
    return {"instructions": n, "instruction_models": [{"model": "scripted:fake"}],
            "instance_models": [{"model": "scripted:fake"}], "batch_size": 2, **kw}


# -- the backend progress hook ------------------------------------------------------------------------------
def test_the_scripted_backend_reports_cumulative_tokens_and_lets_stopped_through():
    lm = ScriptedLM("s", ["a b", "c d e", "f"])
    seen: list[int] = []
    out = lm.generate(["p1", "p2", "p3"], GenParams(), progress=seen.append)
    assert [c.text for c in out] == ["a b", "c d e", "f"] and seen == [2, 5, 6]

    def stop_at_second(tokens: int) -> None:
        if tokens > 2:
            raise Stopped()
    with pytest.raises(Stopped):
        ScriptedLM("s", ["a b", "c d e", "f"]).generate(["p1", "p2", "p3"], GenParams(), progress=stop_at_second)


def test_a_backend_without_the_keyword_reports_once_at_the_end():
    class Old:  # a plugin's backend written before the progress keyword
        model_id, supports_chat = "old", False

        def generate(self, prompts, params):
            return ScriptedLM("old", ["one two three"] * len(prompts)).generate(prompts, params)

    seen: list[int] = []
    assert len(generate_with(Old(), ["a", "b"], GenParams(), progress=seen.append)) == 2 and seen == [6]


def test_the_hf_stopper_reports_the_batch_tokens_at_every_step_and_raises_stopped():
    torch = pytest.importorskip("torch")
    from curate.lm.hf import _RowStopper

    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    seen: list[int] = []
    stopper = _RowStopper(Tok(), 2, (), eos_ids=[0], guard=False, progress=seen.append)
    stopper(torch.tensor([[5, 5, 1], [5, 5, 0]]), None)  # row 1 ends (EOS) at its first token
    stopper(torch.tensor([[5, 5, 1, 2], [5, 5, 0, 0]]), None)
    assert seen == [2, 3]  # (1 + 1), then (2 + the finished row's 1)

    def stop(tokens: int) -> None:
        raise Stopped()
    with pytest.raises(Stopped):
        _RowStopper(Tok(), 2, (), eos_ids=[0], guard=False, progress=stop)(torch.tensor([[5, 5, 1]]), None)


def test_pause_stops_a_scripted_job_inside_a_batch_through_the_hook(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "STOP_EVERY_S", 0.0)  # check the flag at every step
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config(n=40, batch_size=8, instances=False))
    calls = {"n": 0}

    def lm(prompt: str) -> str:
        calls["n"] += 1
        if calls["n"] == 11:  # the 3rd prompt of the 2nd batch: a reviewer presses Pause
            jobs.pause(st, jid)
        return _instruction(prompt)

    job = jobs.run_job(st, jid, ModelPool({"scripted:fake": ScriptedLM("fake", lm)}))
    assert job["state"] == "paused"
    assert calls["n"] == 11  # stopped at the next step, not after the batch's 8 prompts
    assert st.count_completions("instruction") == 8  # the first batch is stored, nothing of the second


def test_progress_moves_inside_a_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "REPORT_EVERY_S", 0.0)
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "generate", _config(n=4, batch_size=4, instances=False))
    tokens: list[int] = []

    def lm(prompt: str) -> str:
        tokens.append(st.get_job(jid)["progress"].get("counts", {}).get("tokens", 0))
        return _instruction(prompt)

    assert jobs.run_job(st, jid, ModelPool({"scripted:fake": ScriptedLM("fake", lm)}))["state"] == "done"
    assert tokens[0] == 0 and tokens[1] > 0 and tokens[2] > tokens[1]  # the job row moved before the batch ended


# -- the ETA --------------------------------------------------------------------------------------------------
def test_eta_is_estimating_until_measured_grows_while_a_step_runs_and_never_reads_0_s_with_work_left():
    now = [0.0]
    ctx = StageContext(clock=lambda: now[0])
    p = ctx.report(phase="instances", done=0, total=10)
    assert describe(p).eta == "estimating"
    now[0] = 10.0
    assert ctx.report(done=5).eta_s == pytest.approx(10.0)
    now[0] = 40.0  # a long step: nothing finished, the hook reports from inside the model call
    p = ctx.report(tokens=99, remeasure=True)
    assert p.eta_s == pytest.approx(5 / (5 / 40))  # measured again: 40 s, not a frozen 10 s
    assert describe(ctx.report(phase="consensus", done=0, total=1000)).eta == "estimating"  # per phase
    now[0] = 41.0
    p = ctx.report(done=999)  # at ~2,000 a second the last one takes a millisecond: work is left all the same
    assert p.eta_s >= 1.0 and describe(p).eta == "1 s"
    assert ctx.report(done=1000).eta_s == 0.0 and describe(p, "done").eta == "done"


def test_the_instance_total_never_falls_below_the_work_done(tmp_path):
    st = Store(tmp_path / "c.db")
    seen: list[tuple] = []

    def extra(prompt: str, n=[0]) -> str:  # noqa: B006
        n[0] += 1
        if prompt.startswith("Come up"):
            return _instruction(prompt)
        return (f"output: An answer.\n|EoS|\ninstruction: Write a short note about the number {n[0]} and why it "
                "matters today\noutput: A note.\n|EoS|")

    ctx = StageContext(pool=ModelPool({"scripted:fake": ScriptedLM("fake", extra)}),
                       on_progress=lambda p: seen.append((p.phase, p.done, p.total)))
    from curate.generate import GenerateConfig, Generator
    Generator(st, GenerateConfig(**_config(n=4)), ctx).run()
    assert all(done <= total for phase, done, total in seen if phase == "instances" and total is not None)


# -- one active job of a kind -----------------------------------------------------------------------------------
def test_one_active_job_of_a_kind_names_the_running_one(tmp_path):
    st = Store(tmp_path / "c.db")
    first = jobs.start_job(st, "generate", _config())
    with pytest.raises(JobRunningError, match=rf"job {first}.*--allow-concurrent") as e:
        jobs.start_job(st, "generate", _config())
    assert e.value.job_id == first and len(st.list_jobs()) == 1
    other = jobs.start_job(st, "ensemble", {"models": ["scripted:e"]})  # another kind is fine
    alongside = jobs.start_job(st, "generate", _config(), allow_concurrent=True)
    assert {j["id"] for j in st.list_jobs()} == {first, other, alongside}
    for jid in (first, alongside):
        st.update_job(jid, state="paused")
    assert jobs.start_job(st, "generate", _config())  # a paused job does not block
    dead = st.list_jobs()[0]["id"]
    st.update_job(dead, state="running", pid=2 ** 22 + 17)  # its process is gone
    fresh = jobs.start_job(st, "generate", _config())
    assert st.get_job(dead)["state"] == "interrupted" and st.get_job(fresh)["state"] == "queued"


def _start_one(db: str, barrier, results) -> None:
    st = Store(db)
    barrier.wait()
    try:
        results.put(("started", jobs.start_job(st, "generate", _config())))
    except JobRunningError as e:
        results.put(("refused", e.job_id))


def test_two_processes_cannot_both_start_a_job_of_a_kind(tmp_path):
    db = str(tmp_path / "c.db")
    Store(db).close()
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(4), mp.Queue()
    procs = [mp.Process(target=_start_one, args=(db, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    got = [results.get(timeout=5) for _ in procs]
    started = [jid for what, jid in got if what == "started"]
    assert len(started) == 1 and all(jid == started[0] for what, jid in got if what == "refused")
    assert [j["id"] for j in Store(db).list_jobs()] == started


# -- pause, resume while pausing ----------------------------------------------------------------------------------
def test_resume_while_pausing_keeps_the_job_running(tmp_path, monkeypatch):
    """Withdrawn before the worker saw it, and after (the stage had stopped: it runs again)."""
    runs = {"n": 0}

    from pydantic import BaseModel

    class Config(BaseModel):
        pass

    def run(store, config, ctx):
        runs["n"] += 1
        if runs["n"] == 1:
            jobs.pause(store, ctx.job_id)
            jobs.withdraw_pause(store, ctx.job_id)  # Resume pressed before the worker checked: it goes on
            ctx.check_stop()
            jobs.pause(store, ctx.job_id)
            ctx.check_stop()  # raises Stopped...
        return {"runs": runs["n"]}

    def stop_then_withdraw(store, config, ctx):
        try:
            return run(store, config, ctx)
        except Stopped:
            jobs.withdraw_pause(store, ctx.job_id)  # ...and Resume lands after the stage stopped
            raise

    mod = types.ModuleType("curate_test_pausing_stage")
    mod.Config, mod.run = Config, stop_then_withdraw
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(jobs.STAGES, "pausing-test", mod.__name__)
    st = Store(tmp_path / "c.db")
    job = jobs.run_job(st, jobs.start_job(st, "pausing-test", {}))
    assert job["state"] == "done" and runs["n"] == 2 and job["progress"]["result"] == {"runs": 2}


@pytest.fixture
def h(tmp_path):
    db = tmp_path / "h.db"
    filled_store(db, 10).close()
    runner = jobs.JobRunner(str(db), scripted_pool(delay=0.05))
    yield Handlers(load_settings(None, db=str(db), reviewer="ann"), runner)
    with Store(db) as st:
        for j in st.active_jobs():
            jobs.cancel(st, j["id"])
    runner.join(20)


FORM = dict(kind="generate", instructions=20, task_type="both", instances=True, instruction_models="",
            instance_models="", ensemble_models="", seed=0, batch_size=2)


def test_the_run_tab_refuses_a_second_job_and_keeps_the_running_one_in_view(h, monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(gr, "Warning", lambda m, *a, **k: warnings.append(m))
    st = h.store()
    first = h.run.ui_start_job(**{**FORM, "instructions": st.count_kept_instructions() + 200})
    again = h.run.ui_start_job(**{**FORM, "instructions": 5})
    assert again["job_id"] == first["job_id"] and again["job_state"] in ("running", "queued (waits for the job "
                                                                                    "before it)")
    assert len(warnings) == 1 and first["job_id"] in warnings[0] and "Run alongside" in warnings[0]
    assert len(st.list_jobs()) == 1
    # Resume while it is pausing is no error: the pause is withdrawn and the job goes on
    h.run.ui_pause(first["job_id"])
    resumed = h.run.ui_resume(first["job_id"])
    assert resumed["job_state"] in ("running", "paused (no worker: resume it)")
    h.run.ui_cancel(first["job_id"])


def test_the_form_is_checked_before_a_job_exists(h):
    st = h.store()
    for bad, why in ((None, "empty"), ("", "empty"), (0, "at least 1"), (-3, "at least 1"), (2.5, "whole")):
        with pytest.raises(gr.Error, match=f"Kept instructions.*{why}"):
            h.run.ui_start_job(**{**FORM, "instructions": bad})
    with pytest.raises(gr.Error, match=r"instruction mixture: unknown model 'bogus-model:abc'"):
        h.run.ui_start_job(**{**FORM, "instruction_models": "bogus-model:abc, ;;"})
    with pytest.raises(gr.Error, match=r"ensembling models: .*'nope/nothing-here'"):
        h.run.ui_start_job(**{**FORM, "kind": "ensemble", "ensemble_models": "smollm2-135m-instruct,nope/nothing-here"})
    assert st.list_jobs() == []
    assert target("7") == 7
    with pytest.raises(InputError):
        target("seven")


def test_the_ensemble_form_shows_only_its_own_fields(h):
    ens, gen = h.run.ui_job_kind("ensemble"), h.run.ui_job_kind("generate")
    assert all(ens[f]["visible"] is False and gen[f]["visible"] is True for f in GENERATE_FIELDS)
    assert all(ens[f]["visible"] is True and gen[f]["visible"] is False for f in ENSEMBLE_FIELDS)


def test_generate_check_names_the_bad_model_for_the_cli_too(tmp_path):
    st = Store(tmp_path / "c.db")
    with pytest.raises(ModelNotFoundError, match="instance mixture: .*'./no/such/model'"):
        jobs.start_job(st, "generate", {**_config(), "instance_models": [{"model": "./no/such/model"}]})
    assert st.list_jobs() == []


# -- surplus instructions -----------------------------------------------------------------------------------------
def test_surplus_instructions_are_counted_apart_from_filtered_ones(tmp_path):
    st = Store(tmp_path / "c.db")

    def three_per_completion(prompt: str) -> str:
        return "\n".join(f"{27 + i}." * (i > 0) + _instruction("Come up").replace(" |EoS|", "")
                         for i in range(3)) + " |EoS|"

    pool = ModelPool({"scripted:fake": ScriptedLM("fake", three_per_completion)})
    job = jobs.run_job(st, jobs.start_job(st, "generate", _config(n=4, task_type="B", instances=False,
                                                                   batch_size=1)), pool)
    assert job["progress"]["counts"]["surplus"] == 2 and "surplus" not in job["progress"]["counts"]["filtered"]
    ov = review.overview(st, 0.01)
    stages = {s["stage"]: s["n"] for s in ov["stages"]}
    assert stages["instructions kept"] == 4 and stages["instructions filtered"] == 0
    assert stages["instructions surplus (past the target, set aside)"] == 2
    assert not [r for r in ov["reasons"] if r["reason"] == "surplus"]
    assert "2 instructions surplus" in ov["notes"][0]
    (m,) = ov["models"]
    assert (m["instructions_kept"], m["instructions_filtered"], m["instructions_surplus"]) == (4, 0, 2)
    assert m["instruction_keep_rate"] == 1.0  # was 4 / 6 with surplus counted as filtered


def test_the_per_model_bar_plot_fits_its_tallest_stack():
    import pandas as pd
    df = pd.DataFrame([{"model": "a", "what": w, "n": n} for w, n in (("x", 30), ("y", 25), ("z", 9))]
                      + [{"model": "b", "what": "x", "n": 40}])
    lo, hi = stacked_lim(df)
    assert lo == 0 and hi >= 64 and stacked_lim(df.iloc[0:0]) == [0.0, 1.0]


# -- the stop-token fragment --------------------------------------------------------------------------------------
def test_a_stop_token_fragment_is_not_stored_as_an_output(tmp_path):
    """The case seen in the app: an instance completion ending "output: 3\\nEoS|" (the marker's pipe lost)."""
    st = Store(tmp_path / "c.db")

    def lm(prompt: str, n=[0]) -> str:  # noqa: B006
        n[0] += 1
        if prompt.startswith("Come up"):
            return _instruction(prompt)
        return "input: 1 + 2\noutput: 3\nEoS|" if "requires input" in prompt else "output: 3\nEoS|"

    job = jobs.run_job(st, jobs.start_job(st, "generate", _config(n=2, task_type="B")),
                       ModelPool({"scripted:fake": ScriptedLM("fake", lm)}))
    assert job["state"] == "done", job["error"]
    outputs = [r["output"] for r in st.db.query("SELECT output FROM candidates")]
    assert outputs and set(outputs) == {"3"}
