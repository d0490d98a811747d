"""The closed loop on a tiny student: every arm is an equal-size training set drawn from the store, each arm is
trained per seed and evaluated, the table compares arms with random (paired bootstrap), and an experiment
paused mid-way resumes without retraining the finished arms."""

from __future__ import annotations

import json
import re

import pytest

from curate import experiment as ex
from curate import jobs, review, train
from curate.cli import format_experiment, main
from curate.errors import ExperimentError
from test_train import _tiny
from review_fixtures import filled_store


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("tiny-student"))


@pytest.fixture
def store(tmp_path):
    st = filled_store(tmp_path / "c.db", 40)
    for r in st.review_queue(status="pending", limit=8):
        review.accept(st, r["id"], reviewer="ann")
    return st


def _cfg(tmp_path, tiny, **kw):
    return {"base": tiny, "evalset": "sni-sample", "budget": 6, "arms": ["random", "passing@0.3", "accepted"],
            "seeds": 2, "out": str(tmp_path / "exp"), "eval_limit": 3, "max_new_tokens": 4, "max_steps": 2,
            "batch_size": 2, **kw}


def test_arms_draw_equal_size_sets_by_their_rules(store):
    passing = {r["id"] for r in store.training_pool("passing", tau=0.3)}
    accepted = {r["id"] for r in store.export_rows(("accepted",))}
    for seed in (0, 1):
        rnd = ex.arm_rows(store, "random", 6, seed)
        assert len(rnd) == 6
        assert {r["id"] for r in ex.arm_rows(store, "passing@0.3", 6, seed)} <= passing
        assert {r["id"] for r in ex.arm_rows(store, "accepted", 6, seed)} <= accepted
    assert ex.arm_rows(store, "random", 6, 0) == ex.arm_rows(store, "random", 6, 0)  # the seed decides
    assert ex.arm_rows(store, "random", 6, 0) != ex.arm_rows(store, "random", 6, 1)
    gen = {r["id"]: r["output"] for r in store.training_pool("all")}
    assert all(r["output"] == gen[r["id"]] for r in ex.arm_rows(store, "all", 6, 0))  # uncurated: o0 as is
    teacher = store.outputs_for(next(iter(gen)))[1].model_id
    rows = ex.arm_rows(store, f"teacher:{teacher}", 5, 0)
    assert len(rows) == 5 and all(r["output"] in [o.text for o in store.outputs_for(r["id"])
                                                  if o.model_id == teacher] for r in rows)
    assert len(ex.arm_rows(store, "accepted", 100, 0)) == 8  # fewer than the budget: all there is
    with pytest.raises(ExperimentError, match="no output by 'nobody'"):
        ex.arm_rows(store, "teacher:nobody", 5, 0)


def test_an_experiment_trains_evaluates_and_compares_every_arm(tmp_path, tiny, store, capsys):
    jid = jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, arms=["random", "passing@0.3", "accepted",
                                                                         "qdit:0.7"]))
    job = jobs.run_job(store, jid)
    assert job["state"] == "done", job["error"]
    table = json.loads((tmp_path / "exp" / "report.json").read_text())
    arms = [r["arm"] for r in table["rows"]]
    assert arms == ["base (no fine-tuning)", "random", "passing@0.3", "accepted", "qdit:0.7"]
    assert table["metrics"] == ["rouge_l", "exact_match"]
    by = {r["arm"]: r for r in table["rows"]}
    assert by["random"]["seeds"] == 2 and by["random"]["train_rows"] == 6 and "vs_random" not in by["random"]["rouge_l"]
    assert set(by["passing@0.3"]["rouge_l"]["vs_random"]) == {"delta", "ci", "p", "n"}
    assert not (tmp_path / "exp" / "models").exists() or not any((tmp_path / "exp" / "models").iterdir())
    seed_report = json.loads((tmp_path / "exp" / "random-seed1.json").read_text())
    assert seed_report["train"]["steps"] == 2 and len(seed_report["rows"]) == 3
    text = format_experiment(table)
    assert "vs random (p)" in text and "qdit:0.7" in text and "not a failure" in text


def test_a_paused_experiment_resumes_without_retraining_finished_arms(tmp_path, tiny, store, monkeypatch):
    fits = []
    real_fit = train.fit

    def counting_fit(rows, counts, config, ctx, **kw):
        fits.append(config.out)
        return real_fit(rows, counts, config, ctx, **kw)

    monkeypatch.setattr(train, "fit", counting_fit)
    jid = jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, arms=["random", "accepted"]))

    def pause_after_first(p):
        if p.phase.endswith("done") and p.done == 1:
            jobs.pause(store, jid)

    assert jobs.run_job(store, jid, on_progress=pause_after_first)["state"] == "paused"
    assert len(fits) == 1
    first = (tmp_path / "exp" / "random-seed0.json").read_text()
    assert jobs.run_job(store, jid)["state"] == "done"
    assert len(fits) == 4 and len(set(fits)) == 4  # the finished arm was not trained again
    assert (tmp_path / "exp" / "random-seed0.json").read_text() == first


def test_bad_experiments_are_refused_before_they_start(tmp_path, tiny, store, capsys):
    with pytest.raises(ValueError, match="unknown arm 'best'"):
        jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, arms=["random", "best"]))
    with pytest.raises(ExperimentError, match="no references"):
        jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, evalset="vicuna80"))
    empty = filled_store(tmp_path / "e.db", 10)
    with pytest.raises(ExperimentError, match="arm accepted has no training rows.*accept candidates"):
        jobs.start_job(empty, "experiment", _cfg(tmp_path, tiny))
    assert main(["experiment", "--db", str(tmp_path / "e.db"), "--out", str(tmp_path / "x"), "--base", tiny,
                 "--arms", "random", "accepted"]) == 2
    assert "accept candidates" in capsys.readouterr().err


def test_an_experiment_killed_mid_way_resumes_without_redoing_finished_arms(tmp_path, tiny, store):
    """A real SIGKILL of the process running `curate experiment`, then a resume of the same job."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "curate.cli", "experiment", "--db", str(store.path), "--base", tiny,
           "--out", str(out), "--budget", "6", "--arms", "random", "accepted", "--seeds", "2", "--max-steps", "2",
           "--batch-size", "2", "--eval-limit", "3", "--max-new-tokens", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    first = out / f"{ex.arm_tag('random', 0)}.json"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.exists(), "the first arm never finished"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = (first.read_text(), first.stat().st_mtime_ns)
    assert not (out / "report.json").exists()
    (job,) = [j for j in store.list_jobs() if j["kind"] == "experiment"]
    assert jobs.recover(store) == [job["id"]]  # its worker is dead: interrupted, resumable
    done = jobs.run_job(store, job["id"])
    assert done["state"] == "done", done["error"]
    assert (first.read_text(), first.stat().st_mtime_ns) == before  # the finished arm was not redone
    table = json.loads((out / "report.json").read_text())
    assert [r["arm"] for r in table["rows"]] == ["base (no fine-tuning)", "random", "accepted"]
    assert all(r["seeds"] == 2 for r in table["rows"][1:])


# -- bad input, found before the job starts (the Evaluate tab and the CLI show these messages) -------------------
def test_a_set_without_references_is_named_and_the_judge_suggested(tmp_path, tiny, store, capsys):
    with pytest.raises(ExperimentError, match=r"'vicuna80' has no references.*--set vicuna80 --judge judge:"):
        jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, evalset="vicuna80"))
    assert main(["experiment", "--db", str(store.path), "--out", str(tmp_path / "x"), "--base", tiny,
                 "--set", "vicuna80", "--arms", "random"]) == 2
    assert "judge" in capsys.readouterr().err
    assert store.list_jobs() == []


def test_a_budget_larger_than_every_pool_is_refused_naming_the_largest(tmp_path, tiny, store, capsys):
    pool = len(store.training_pool("ensembled"))
    with pytest.raises(ExperimentError, match=rf"budget of 500 .* larger than the pool.*random {pool}, accepted 8.*"
                                              rf"at most {pool}"):
        jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, budget=500, arms=["random", "accepted"]))
    assert main(["experiment", "--db", str(store.path), "--out", str(tmp_path / "x"), "--base", tiny,
                 "--budget", "500", "--arms", "accepted"]) == 2
    assert "at most 8" in capsys.readouterr().err
    assert store.list_jobs() == []


def test_an_arm_shorter_than_the_budget_warns_as_it_runs(tmp_path, tiny, store):
    jid = jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, budget=12, arms=["random", "accepted"], seeds=1,
                                                   max_steps=1))
    job = jobs.run_job(store, jid)
    assert job["state"] == "done", job["error"]
    assert any("arm accepted has only 8 of the 12 rows" in w for w in job["progress"]["warnings"])
    assert not any(w.startswith("arm random") for w in job["progress"]["warnings"])


def test_an_arm_left_empty_by_the_contamination_guard_is_refused_before_it_starts(tmp_path, tiny):
    uo = ex.ev.load_evalset("user-oriented").rows
    st = filled_store(tmp_path / "c.db", 12, texts={i: {"instruction": uo[i * 7].instruction} for i in range(12)})
    for r in st.review_queue(status="pending", limit=3):
        review.accept(st, r["id"], reviewer="ann")
    with pytest.raises(ExperimentError, match=r"arm accepted: every one of its 3 training rows matches an "
                                              r"evaluation set \(3 in user-oriented\).*drop the arm"):
        jobs.start_job(st, "experiment", _cfg(tmp_path, tiny, budget=3, arms=["accepted"]))
    assert st.list_jobs() == []  # refused up front, not after minutes of evaluating the base model


def test_the_report_of_an_unfinished_experiment_says_where_its_job_is(tmp_path, tiny, store):
    from curate.errors import ExperimentRunning
    cfg = _cfg(tmp_path, tiny, arms=["random"], seeds=1, max_steps=1)
    jid = jobs.start_job(store, "experiment", cfg)
    with pytest.raises(ExperimentRunning, match=rf"job {jid} .* is queued.*Show results again when it is done"):
        ex.load_report(cfg["out"], store)
    with pytest.raises(ExperimentError, match="no experiment report"):  # without the store: as before
        ex.load_report(cfg["out"])
    with pytest.raises(ExperimentError, match="no experiment report in .*other"):
        ex.load_report(tmp_path / "other", store)
    with pytest.raises(ExperimentError, match="no experiment folder given"):
        ex.load_report("  ", store)
    store.update_job(jid, state="failed", error="ExperimentError: something broke")
    with pytest.raises(ExperimentError, match=rf"job {jid} .* failed: ExperimentError: something broke\. Fix") as e:
        ex.load_report(cfg["out"], store)
    assert not isinstance(e.value, ExperimentRunning)
    store.update_job(jid, state="queued")
    assert jobs.run_job(store, jid)["state"] == "done"
    assert [r["arm"] for r in ex.load_report(cfg["out"], store)["rows"]] == ["base (no fine-tuning)", "random"]
    sbs = ex.side_by_side(cfg["out"])
    rows = ex.ev.load_evalset("sni-sample", limit=3).rows
    assert [p["input"] for p in sbs] == [r.input for r in rows] and all(p["input"] for p in sbs)
    assert list(sbs[0]) == ["id", "instruction", "input", "reference", "base", "random"]


def test_running_out_of_memory_while_predicting_names_the_knobs(tmp_path, tiny, store, monkeypatch):
    import torch

    seen = []

    def oom(lm, rows, **kw):
        seen.append(kw["batch_size"])
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(ex.ev, "predict", oom)
    jid = jobs.start_job(store, "experiment", _cfg(tmp_path, tiny, arms=["random"], seeds=1, batch_size=3))
    job = jobs.run_job(store, jid)
    assert job["state"] == "failed" and seen == [3]  # the batch size is the prediction batch too
    assert re.search(r"out of memory while evaluating the base .*--batch-size \(3.*--max-new-tokens \(4\)",
                     job["error"])
    with pytest.raises(ExperimentError, match=r"failed: .*out of memory.*--batch-size"):
        ex.load_report(tmp_path / "exp", store)
