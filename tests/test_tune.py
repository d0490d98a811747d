"""Per-machine tuning (curate/tune.py, `curate models tune`): the pick from a measured curve, the stored file, the
defaults it gives backends and stages, and what happens to a bad or foreign file."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest
import torch

from curate import tune
from curate.cli import main
from curate.errors import CurateError
from curate.lm.base import Completion


@pytest.fixture(autouse=True)
def tuning_file(tmp_path, monkeypatch):
    path = tmp_path / "tuning.json"
    monkeypatch.setenv("CURATE_TUNING", str(path))
    monkeypatch.delenv("CURATE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    yield path
    torch.set_num_threads(threads)


class Costed:
    """A backend-shaped object whose call takes a known time: throughput rises to batch 4, then falls (the
    cost of a batch grows faster than its rows past 4), and more threads are faster."""

    model = torch.nn.Module()

    def __init__(self):
        self.model_id, self.batch_size, self.calls = "costed", 1, []

    def generate(self, prompts, params):
        b = len(prompts)
        assert self.batch_size == b  # tune sets the backend's own batch to the probe's
        cost = 0.05 + 0.01 * b + (0.05 * (b - 4) if b > 4 else 0.0)
        time.sleep(cost / torch.get_num_threads() ** 0.5)
        self.calls.append((b, torch.get_num_threads()))
        return [Completion(text="x", prompt_tokens=300, completion_tokens=params.max_new_tokens,
                           finish_reason="length") for _ in prompts]


def test_pick_is_the_smallest_within_the_tolerance_of_the_best():
    assert tune.pick({1: 10.0, 4: 20.0, 8: 20.5, 16: 19.0}) == 4  # 20 is within 5% of 20.5
    assert tune.pick({1: 10.0, 4: 18.0, 8: 20.5}) == 8
    assert tune.pick({2: 5.0}, tolerance=0.0) == 2
    with pytest.raises(ValueError):
        tune.pick({})


def test_tune_measures_the_curve_picks_and_stores_it(tuning_file):
    lm = Costed()
    t = tune.tune("costed", lm=lm, batches=[1, 2, 4, 8], threads=[1, 2], new_tokens=3)
    assert t.batch_size == 4 and t.threads == 2
    by_batch = {int(k): v for k, v in t.curve["new_tok_s_by_batch"].items()}
    assert max(by_batch, key=by_batch.get) == 4 and set(by_batch) == {1, 2, 4, 8}
    assert [b for b, _ in lm.calls] == [1, 1, 2, 4, 8, 4]  # warm-up, the batches, then threads at the pick
    assert lm.calls[-1][1] == 1  # the thread probe ran on one thread
    stored = json.loads(tuning_file.read_text())[tune.machine_key()]["costed"]
    assert stored["batch_size"] == 4 and stored["threads"] == 2 and stored["curve"] == t.curve
    assert tune.tuned("costed") == t
    assert tune.default_batch_size() == 4


def test_defaults_without_tuning_and_the_largest_tuned_batch_for_stages(tuning_file):
    from curate.ensemble import EnsembleConfig
    from curate.generate import GenerateConfig
    from curate.settings import Settings

    assert tune.tuned("smollm2-135m-instruct") is None
    assert tune.default_batch_size() == 8 == GenerateConfig(instructions=1).batch_size == EnsembleConfig(models=["m"]).batch_size
    assert tune.backend_defaults("smollm2-135m-instruct") == (8, None)
    for model, batch in (("a", 16), ("b", 4)):
        tune._save(model, tune.Tuned(batch, 1, {}, "now"))
    assert tune.default_batch_size() == 16 == GenerateConfig(instructions=1).batch_size == Settings().batch_size
    assert GenerateConfig(instructions=1, batch_size=2).batch_size == 2  # a given value always wins
    assert tune.backend_defaults("b") == (4, 1)


def test_user_threads_win_over_the_tuned_count(monkeypatch):
    tune._save("m", tune.Tuned(4, 1, {}, "now"))
    monkeypatch.setenv("CURATE_THREADS", "2")
    assert tune.backend_defaults("m") == (4, None)


def test_another_machines_picks_and_a_broken_file_are_ignored(tuning_file):
    tuning_file.write_text(json.dumps({"some other machine | 64 cpus | torch 9": {"m": {"batch_size": 32,
                                                                                      "threads": 64}}}))
    assert tune.tuned("m") is None and tune.default_batch_size() == 8
    tune._save("m", tune.Tuned(2, 1, {}, "now"))
    data = json.loads(tuning_file.read_text())
    assert len(data) == 2 and data["some other machine | 64 cpus | torch 9"]["m"]["batch_size"] == 32  # kept
    tuning_file.write_text("{not json")
    with pytest.warns(UserWarning, match="ignoring the tuning file .*curate models tune"):
        assert tune.default_batch_size() == 8


def test_bad_tune_arguments_are_refused_before_measuring():
    lm = Costed()
    for kwargs, match in (({"batches": [0, 4]}, "between 1 and 256"), ({"batches": []}, "between 1 and 256"),
                          ({"threads": [0]}, "at least 1"), ({"new_tokens": 0}, "at least 1")):
        with pytest.raises(CurateError, match=match):
            tune.tune("costed", lm=lm, **kwargs)
    assert lm.calls == []
    from curate.lm.scripted import ScriptedLM
    with pytest.raises(CurateError, match="only a transformers backend"):
        tune.tune("scripted", lm=ScriptedLM("s", lambda p: "x"))


def _save_many(args):
    prefix, n = args
    for i in range(n):
        tune._save(f"{prefix}{i}", tune.Tuned(i + 1, 1, {}, "now"))


def test_tunes_in_two_processes_at_once_keep_every_entry(tuning_file):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_save_many, [("a", 15), ("b", 15)])
    entries = json.loads(tuning_file.read_text())[tune.machine_key()]
    assert sorted(entries) == sorted([f"a{i}" for i in range(15)] + [f"b{i}" for i in range(15)])


def test_real_smollm2_tune_and_a_backend_built_without_a_batch_takes_the_pick(smollm2, capsys):
    from curate.lm.registry import load_lm

    t = tune.tune("smollm2-135m-instruct", lm=smollm2, batches=[1, 2], threads=[1], new_tokens=2)
    assert smollm2.batch_size == 8  # the session fixture's own, given back after the probes
    assert t.batch_size in (1, 2) and t.threads == 1
    assert all(v > 0 for v in t.curve["new_tok_s_by_batch"].values())
    torch.set_num_threads(2)
    lm = load_lm("smollm2-135m-instruct")  # no batch_size: this machine's pick
    assert lm.batch_size == t.batch_size and torch.get_num_threads() == 1
    assert load_lm("smollm2-135m-instruct", batch_size=5).batch_size == 5
    assert main(["models", "tune", "--if-missing"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct: tuned already" in out and f"batch {t.batch_size}, 1 threads" in out
    assert main(["models", "tune", "--batches", "0"]) == 2
    assert "between 1 and 256" in capsys.readouterr().err


def test_the_setup_scripts_tune_line_parses_as_meant():
    """scripts/setup.sh (so the README's run command) tunes the default generator on batches 1-32 once."""
    import shlex
    from pathlib import Path

    from curate.cli import build_parser

    lines = [ln for ln in (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text().splitlines()
             if "curate models tune" in ln and not ln.lstrip().startswith("#")]
    assert len(lines) == 1
    argv = shlex.split(lines[0].split("curate", 1)[1])
    args = build_parser().parse_args(argv)
    assert args.action == "tune" and args.names == ["smollm2-135m-instruct"] and args.if_missing
    assert args.batches == [1, 4, 8, 16, 32]
