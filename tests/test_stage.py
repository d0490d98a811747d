"""The Stage contract: one progress shape, rate and ETA measured per phase, the registry, a new stage added
as one module plus one registry line, and the preflight check."""

from __future__ import annotations

import sys
import types

import pytest
from pydantic import BaseModel, ConfigDict

from curate import jobs
from curate.errors import CurateError, StoreError, Stopped
from curate.stage import Progress, StageContext, describe
from curate.store import Store


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_report_merges_counts_and_measures_rate_and_eta_per_phase():
    clock, seen = Clock(), []
    ctx = StageContext(pool=object(), on_progress=lambda p: seen.append(p.as_dict()), clock=clock)
    ctx.report(phase="outputs m1", done=0, total=40, unit="outputs", tokens=0, outputs={"m1": 0})
    assert seen[-1]["eta_s"] is None and seen[-1]["rate"] is None  # nothing measured yet: "estimating"
    clock.t += 10
    ctx.report(done=10, tokens=500, outputs={"m1": 10})
    p = seen[-1]
    assert p["rate"] == pytest.approx(1.0) and p["eta_s"] == pytest.approx(30.0)
    assert p["counts"] == {"tokens": 500, "outputs": {"m1": 10}} and p["phase"] == "outputs m1"
    clock.t += 5
    ctx.report(phase="consensus", done=0, total=10, unit="candidates")  # a new phase measures afresh
    assert seen[-1]["rate"] is None and seen[-1]["eta_s"] is None and seen[-1]["counts"]["tokens"] == 500
    clock.t += 2
    ctx.report(done=10)
    assert seen[-1]["eta_s"] == 0.0 and seen[-1]["rate"] == pytest.approx(5.0)


def test_warnings_are_kept_once_and_check_stop_raises_stopped():
    stop = {"now": False}
    ctx = StageContext(pool=object(), should_stop=lambda: stop["now"])
    ctx.report(warnings=["w1"])
    ctx.report(warnings=["w1", "w2"])
    ctx.warn("w2")
    assert ctx.progress.warnings == ["w1", "w2"]
    ctx.check_stop()
    stop["now"] = True
    with pytest.raises(Stopped):
        ctx.check_stop()


def test_progress_round_trips_and_reads_the_shape_stored_before_the_contract():
    p = Progress(phase="instances", done=3, total=8, unit="x", counts={"filtered": {"keyword": 2}}, tok_s=12.5,
                 warnings=["w"], result={"n": 1})
    assert Progress.from_dict(p.as_dict()) == p
    old = Progress.from_dict({"stage": "instructions A", "target": 20, "kept": 7, "filtered": {"length": 3},
                              "tok_s": 9.0, "eta_s": 42.0, "warnings": ["w"]})
    assert (old.phase, old.done, old.total, old.tok_s, old.eta_s, old.warnings) == (
        "instructions A", 7, 20, 9.0, 42.0, ["w"])
    assert old.counts["filtered"] == {"length": 3}
    assert Progress.from_dict(None) == Progress()


def test_describe_reads_the_same_for_every_stage():
    gen = describe({"phase": "instructions A", "done": 4, "total": 10, "unit": "instructions kept",
                    "counts": {"tokens": 1234, "candidates": 0, "filtered": {"keyword": 2, "length": 1}}, "tok_s": 20.5,
                    "eta_s": 75.0, "warnings": ["w"]})
    assert gen.phase == "instructions A" and gen.counts == "4 / 10 instructions kept · tokens 1,234"
    assert gen.rows == [("filtered: keyword", "2"), ("filtered: length", "1")]
    assert gen.rate == "20.5 tok/s" and gen.eta == "1 min 15 s" and gen.warnings == ["w"]
    emb = describe({"phase": "done", "done": 5, "total": 5, "unit": "candidates",
                    "result": {"computed": 5, "cached": 0, "model": "m"}}, "done")
    assert emb.counts == "5 / 5 candidates" and emb.eta == "done"
    assert ("result: computed", "5") in emb.rows and ("result: model", "m") in emb.rows
    assert describe({"phase": "x", "done": 1, "total": 9}, "running").eta == "estimating"
    assert describe({"phase": "x", "done": 1, "total": 9, "eta_s": 5}, "paused").eta == "—"


def test_every_registered_stage_offers_the_contract():
    for kind in jobs.STAGES:
        st = jobs.stage(kind)
        assert issubclass(st.Config, BaseModel) and callable(st.run), kind
        assert st.Config.model_config.get("extra") == "forbid", kind
    with pytest.raises(StoreError, match="unknown job kind 'nope'; known: generate, ensemble"):
        jobs.stage("nope")


class CountConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 3


def _count_module(name: str, *, refuse: bool = False) -> types.ModuleType:
    """A new stage in one module: counts to n, one step at a time, stoppable between steps."""
    mod = types.ModuleType(name)
    mod.Config = CountConfig

    def run(store, config, ctx):
        for i in range(config.n):
            ctx.check_stop()
            ctx.report(phase="counting", done=i + 1, total=config.n, unit="steps", seen=i)
        return {"counted": config.n}

    def check(store, config):
        if refuse:
            raise CurateError("nothing to count yet: add rows first")

    mod.run = run
    if refuse:
        mod.check = check
    return mod


def test_a_new_stage_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "counting_stage", _count_module("counting_stage"))
    monkeypatch.setitem(jobs.STAGES, "count", "counting_stage")  # the one registry line
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "count", {"n": 4})
    assert st.get_job(jid)["config"] == {"n": 4}
    job = jobs.run_job(st, jid)
    assert job["state"] == "done"
    p = job["progress"]
    assert (p["phase"], p["done"], p["total"], p["unit"]) == ("counting", 4, 4, "steps")
    assert p["counts"] == {"seen": 3} and p["result"] == {"counted": 4}
    with pytest.raises(ValueError):  # the stage's Config validates (extra="forbid")
        jobs.start_job(st, "count", {"m": 1})


def test_a_stage_check_refuses_before_any_job_row_exists(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "refusing_stage", _count_module("refusing_stage", refuse=True))
    jobs.register_stage("refuse", "refusing_stage")
    try:
        st = Store(tmp_path / "c.db")
        with pytest.raises(CurateError, match="nothing to count yet"):
            jobs.start_job(st, "refuse", {})
        assert st.list_jobs() == []
    finally:
        jobs.STAGES.pop("refuse")


def test_a_module_without_the_contract_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "not_a_stage", types.ModuleType("not_a_stage"))
    monkeypatch.setitem(jobs.STAGES, "bad", "not_a_stage")
    with pytest.raises(CurateError, match="not_a_stage .* has no Config class and run"):
        jobs.stage("bad")


def test_a_pause_between_steps_leaves_the_job_paused_and_resume_finishes_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "counting_stage", _count_module("counting_stage"))
    monkeypatch.setitem(jobs.STAGES, "count", "counting_stage")
    st = Store(tmp_path / "c.db")
    jid = jobs.start_job(st, "count", {"n": 5})
    seen = []

    def on_progress(p):
        seen.append(p.done)
        if p.done == 2:
            jobs.pause(st, jid)

    assert jobs.run_job(st, jid, on_progress=on_progress)["state"] == "paused"
    assert seen == [1, 2]
    assert jobs.run_job(st, jid)["state"] == "done"
