"""The Ray engine (curate/engine.py, docs/RAY.md) on a local Ray (2 CPUs): the same seeds give the same stored rows
as the local engine — with scripted LMs and with the real SmolLM2 — and a driver killed mid-way resumes to the
rows of an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the ray extra (in the test extra: CI has it)")

from ray import cloudpickle  # noqa: E402

from curate import engine as engines, prompts  # noqa: E402
from curate.ensemble import EnsembleConfig, run_ensemble  # noqa: E402
from curate.errors import CurateError  # noqa: E402
from curate.generate import INSTANCE_PARAMS, GenerateConfig, run_generation  # noqa: E402
from curate.lm.scripted import ScriptedLM  # noqa: E402
from curate.mixture import ModelPool, parse_mixture  # noqa: E402
from curate.stage import StageContext  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.teachers import compute_teacher_stats  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors get this module's scripted models
ROOT = Path(__file__).resolve().parents[1]
TABLES = ("completions", "instructions", "candidates", "outputs", "consensus", "scores")
VOLATILE = {"job_id", "created_at", "seconds"}  # when and in which job a row was written, how long it took


@pytest.fixture(scope="module")
def local_ray():
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), saved or ""])  # the workers import this curate
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


_SYL = "ka lo mi ren tus vex bor qua zin pel dro fa gui hob jet nuv".split()


def _words(prompt: str, n: int) -> list[str]:
    h = hashlib.sha256(prompt.encode()).digest()
    return ["".join(_SYL[h[(3 * i + k) % 32] % 16] for k in range(3)) for i in range(n)]


def fake(prompt: str) -> str:
    """A deterministic model of the prompt only: one new instruction per instruction prompt, one example per
    instance prompt, a few words for anything else (ensemble outputs)."""
    w = _words(prompt, 8)
    if prompt.startswith(prompts.INSTRUCTION_HEADER):
        return " Describe " + " ".join(w[:7]) + " |EoS|"
    if prompt.startswith(prompts.INSTANCE_HEADERS["A"]):
        return f"input: {w[0]}\noutput: {w[1]}\n{w[2]}\n|EoS|"
    if prompt.startswith(prompts.INSTANCE_HEADERS["B"]):
        return f"output: {w[0]} {w[1]}\n|EoS|"
    return " ".join(w[:4])


def scripted_pool() -> ModelPool:
    return ModelPool({n: ScriptedLM(n, fake, nll=lambda p, c: len(c) % 7 / 3) for n in ("g1", "g2", "e1", "s")})


def stored(st: Store) -> dict[str, list[dict]]:
    """Every row of the generated tables, without the columns that say when / in which job it was written."""
    return {t: sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in st.db[t].rows), key=repr)
            for t in TABLES}


def pipeline(st: Store, pool: ModelPool, eng: dict, *, n: int = 10, instance_models: str = "g1,g2",
             ensemble: tuple[str, ...] = ("e1",), max_new: int = 256, batch_size: int = 4, **gen) -> None:
    run_generation(st, GenerateConfig(instructions=n, instruction_models=parse_mixture("g1,g2"),
                                      instance_models=parse_mixture(instance_models), batch_size=batch_size,
                                      assignment="round_robin", seed=3, **gen, **eng), pool)
    run_ensemble(st, EnsembleConfig(models=list(ensemble), batch_size=2, max_new_tokens=max_new, **eng), pool)


def test_scripted_pipeline_stores_the_same_rows_on_ray_as_locally(local_ray):
    local, remote = Store(":memory:"), Store(":memory:")
    pipeline(local, scripted_pool(), {})
    pipeline(remote, scripted_pool(), {"engine": "ray", "actors": 2})
    for st, eng in ((local, None), (remote, engines.RayEngine(scripted_pool(), actors=2))):
        try:
            compute_teacher_stats(st, scripted_pool().get("s"), "proxy:consensus", batch_size=3,
                                  student_name="s", engine=eng)
        finally:
            if eng is not None:
                eng.close()
    a, b = stored(local), stored(remote)
    assert len(a["candidates"]) >= 10 and len(a["outputs"]) >= 20 and a["consensus"]
    assert any(r["scorer"] == "nll:s" for r in a["scores"])
    for t in TABLES:
        assert a[t] == b[t], t


@pytest.mark.slow
def test_real_smollm2_instances_and_outputs_are_the_same_on_ray(local_ray):
    """The real SmolLM2 writes half the instances (sampled: temperature 0.7, seeded per call) and every ensemble
    output (greedy), locally and on 2 actors; short prompts (1 demo) and a few new tokens keep it quick."""
    real = "smollm2-135m-instruct"
    short = INSTANCE_PARAMS.model_copy(update={"max_new_tokens": 10, "min_new_tokens": 2})

    def run(eng: dict) -> dict:
        st = Store(":memory:")
        pool = scripted_pool()  # the scripted models, and SmolLM2 loaded by its spec (in each actor on Ray)
        pipeline(st, pool, eng, n=4, instance_models=f"g1,{real}", ensemble=(real,), max_new=6, batch_size=2,
                 instance_params=short, instance_demos={"A": 1, "B": 1})
        return stored(st)

    a, b = run({}), run({"engine": "ray", "actors": 2})
    assert {r["model_id"] for r in a["completions"] if r["stage"] == "instance"} == {"g1", real}
    assert {r["model_id"] for r in a["outputs"] if r["position"] == 1} == {real}
    assert any(r["text"] for r in a["outputs"] if r["model_id"] == real)
    for t in TABLES:
        assert a[t] == b[t], t


@pytest.mark.slow
def test_real_embeddings_are_the_same_on_ray(local_ray):
    """all-MiniLM-L6-v2 embeddings of the same pool (byte for byte), locally and on a Ray actor."""
    from curate.select import embed_pool, load_pool

    def run(eng) -> list[tuple]:
        st = Store(":memory:")
        run_generation(st, GenerateConfig(instructions=6, instruction_models=parse_mixture("g1"),
                                          instance_models=parse_mixture("g1"), batch_size=3), scripted_pool())
        embed_pool(st, load_pool(st, "all", quality="none"), "all-minilm-l6-v2", batch_size=4, engine=eng)
        return sorted((r["candidate_id"], r["text_hash"], r["vector"]) for r in st.db["embeddings"].rows)

    eng = engines.RayEngine(scripted_pool(), actors=2)
    try:
        a, b = run(None), run(eng)
    finally:
        eng.close()
    assert len(a) >= 6 and a == b


def judge(prompt: str) -> str:
    """A deterministic judge: a score from the prompt's hash, or (for a third of them) no score at all."""
    h = hashlib.sha256(prompt.encode()).digest()[0]
    return "I cannot tell." if h % 3 == 0 else f"Score: {h % 10 + 1}"


def judged_pool() -> ModelPool:
    return ModelPool({**scripted_pool().preloaded, "j": ScriptedLM("j", judge)})


def scores_of(st: Store, scorer: str) -> list[tuple]:
    return sorted((r["subject_id"], r["name"], r["value"], r["detail"]) for r in st.db["scores"].rows
                  if r["scorer"] == scorer)


def test_score_and_teachers_rewards_on_ray_store_what_the_local_scorer_stores(local_ray):
    """`curate score --engine ray` (a judge on the actors) and the teachers' rewards on Ray write the rows the
    local scorer writes; proxy:consensus reads the store, so it scores on the driver even with --engine ray."""
    from curate import score as score_stage, teachers
    from curate.quality import load_scorer, score_outputs

    local, remote = Store(":memory:"), Store(":memory:")
    for st in (local, remote):
        pipeline(st, scripted_pool(), {}, n=6)
    counts = score_outputs(local, load_scorer("judge:j", pool=judged_pool(), batch_size=3), batch_size=3)
    assert counts["scored"] > 0 and counts["unscored"] > 0  # both kinds of row cross the process boundary
    res = score_stage.run(remote, score_stage.Config(scorer="judge:j", batch_size=3, engine="ray", actors=2),
                          StageContext(pool=judged_pool()))
    assert res["engine"] == "ray" and res["label"] == "LLM judge j (1-10)"
    assert {k: res[k] for k in ("scored", "unscored")} == counts
    assert scores_of(local, "judge:j") == scores_of(remote, "judge:j")
    again = score_stage.run(remote, score_stage.Config(scorer="judge:j", batch_size=3, engine="ray", actors=2),
                            StageContext(pool=judged_pool()))
    assert again["scored"] == again["unscored"] == 0  # resumable: nothing is scored twice

    proxy = score_stage.run(remote, score_stage.Config(scorer="proxy:consensus", engine="ray", actors=2),
                            StageContext(pool=judged_pool()))
    assert proxy["engine"] == "local" and proxy["scored"] > 0

    cfg = dict(student="s", scorer="judge:j", batch_size=3)
    for st, eng in ((local, {}), (remote, {"engine": "ray", "actors": 2})):
        fresh = Store(":memory:")
        pipeline(fresh, scripted_pool(), {}, n=6)
        teachers.run(fresh, teachers.Config(**cfg, **eng), StageContext(pool=judged_pool()))
        st.fresh = fresh
    assert scores_of(local.fresh, "judge:j") == scores_of(remote.fresh, "judge:j") == scores_of(local, "judge:j")
    assert scores_of(local.fresh, "nll:s") == scores_of(remote.fresh, "nll:s") != []


def test_a_reward_model_folder_scores_the_same_on_ray(local_ray, tmp_path):
    """rm:<folder> (a tiny random Llama reward model) loaded by each actor: the same rewards as in-process."""
    import torch
    import transformers
    from transformers import AutoTokenizer, LlamaConfig

    from curate import score as score_stage
    from curate.lm.registry import ensure_lm_folder
    from curate.quality import load_scorer, score_outputs

    tok = AutoTokenizer.from_pretrained(ensure_lm_folder("smollm2-135m-instruct"))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, num_labels=1,
                         pad_token_id=tok.pad_token_id, initializer_range=0.5)
    torch.manual_seed(0)
    folder = tmp_path / "rm"
    transformers.LlamaForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    local, remote = Store(":memory:"), Store(":memory:")
    for st in (local, remote):
        pipeline(st, scripted_pool(), {}, n=4)
    score_outputs(local, load_scorer(f"rm:{folder}", batch_size=4), batch_size=4)
    res = score_stage.run(remote, score_stage.Config(scorer=f"rm:{folder}", batch_size=4, engine="ray", actors=2),
                          StageContext(pool=scripted_pool()))
    assert res["engine"] == "ray" and res["scored"] > 0 and res["label"].startswith("reward model")
    name = f"rm:{folder.resolve()}"
    a, b = scores_of(local, name), scores_of(remote, name)
    assert len(a) == res["scored"] and [r[:2] for r in a] == [r[:2] for r in b]
    assert [r[2] for r in a] == pytest.approx([r[2] for r in b], abs=1e-5)  # padding differs per batch order


CHILD = textwrap.dedent("""
    import sys, time
    from ray import cloudpickle
    from curate.generate import GenerateConfig, run_generation
    from curate.lm.scripted import ScriptedLM
    from curate.mixture import ModelPool, parse_mixture
    from curate.store import Store
    sys.path.insert(0, sys.argv[3])
    import test_ray_engine as t
    cloudpickle.register_pickle_by_value(t)

    def slow(prompt):
        time.sleep(0.3)
        return t.fake(prompt)

    pool = ModelPool({n: ScriptedLM(n, slow) for n in ("g1", "g2")})
    run_generation(Store(sys.argv[1]), GenerateConfig(instructions=12, instruction_models=parse_mixture("g1,g2"),
                   instance_models=parse_mixture("g1,g2"), batch_size=2, seed=3, engine="ray",
                   address=sys.argv[2], actors=2), pool)
""")


def test_a_killed_ray_driver_resumes_to_the_rows_of_an_uninterrupted_run(local_ray, tmp_path):
    db = str(tmp_path / "killed.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = open(tmp_path / "child.log", "w")
    child = subprocess.Popen([sys.executable, "-c", CHILD, db, local_ray, str(Path(__file__).parent)], env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and child.poll() is None:  # kill it in the instance stage
            if os.path.exists(db) and Store(db).count_completions("instance") >= 2:
                break
            time.sleep(0.2)
        assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
        child.kill()
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    st = Store(db)
    assert 2 <= st.count_completions("instance") < 12
    pool = ModelPool({n: ScriptedLM(n, fake) for n in ("g1", "g2")})
    cfg = dict(instructions=12, instruction_models=parse_mixture("g1,g2"), instance_models=parse_mixture("g1,g2"),
               batch_size=2, seed=3)
    run_generation(st, GenerateConfig(**cfg, engine="ray", address=local_ray, actors=2), pool)
    whole = Store(":memory:")
    run_generation(whole, GenerateConfig(**cfg), pool)
    assert stored(st) == stored(whole)
    assert st.count_completions("instance") == 12


def test_a_ray_batch_whose_backend_fails_raises_its_error_and_writes_nothing_of_it(local_ray):
    def broken(prompt: str) -> str:
        if not prompt.startswith(prompts.INSTRUCTION_HEADER):
            raise CurateError("the backend fell over")
        return fake(prompt)

    st = Store(":memory:")
    pool = ModelPool({"g1": ScriptedLM("g1", broken)})
    cfg = GenerateConfig(instructions=4, instruction_models=parse_mixture("g1"), instance_models=parse_mixture("g1"),
                         batch_size=2, engine="ray", actors=1)
    with pytest.raises(CurateError, match="fell over"):
        run_generation(st, cfg, pool)
    assert st.count_completions("instance") == 0 and st.count_completions("instruction") >= 4


def test_the_ray_engine_without_ray_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(CurateError, match=r"pip install 'curate\[ray\]'"):
        engines.check_engine("ray")
    with pytest.raises(CurateError, match=r"pip install 'curate\[ray\]'"):
        engines.open_engine(GenerateConfig(instructions=1, engine="ray"), scripted_pool())


def test_ray_engine_settings_are_checked():
    with pytest.raises(CurateError, match="--engine ray"):
        engines.check_engine("local", address="auto")
    engines.check_engine("ray")  # installed here: no error
    ctx = StageContext(pool=scripted_pool())
    assert isinstance(engines.open_engine(GenerateConfig(instructions=1), ctx.pool), engines.LocalEngine)


def test_cli_refuses_ray_settings_without_the_ray_engine_and_ray_without_ray(tmp_path, capsys, monkeypatch):
    from curate.cli import main
    db = str(tmp_path / "c.db")
    assert main(["ensemble", "--db", db, "--actors", "2"]) == 2
    assert "add --engine ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["generate", "--db", db, "-n", "1", "--engine", "ray"]) == 2
    assert "pip install 'curate[ray]'" in capsys.readouterr().err
    assert Store(db).list_jobs() == []  # refused before any job row was made


def test_cli_score_on_ray_with_the_store_reading_proxy_says_it_scored_here(tmp_path, capsys):
    from curate.cli import main
    db = str(tmp_path / "p.db")
    pipeline(Store(db), scripted_pool(), {}, n=4)
    assert main(["score", "--db", db, "--engine", "ray", "--actors", "1"]) == 0
    out = capsys.readouterr().out
    assert "reads the store, so it scored in this process, not on the Ray actors" in out
    assert sum(1 for r in Store(db).db["scores"].rows if r["scorer"] == "proxy:consensus") > 0
    assert main(["score", "--db", db, "--scorer", "rm:x", "--actors", "2"]) == 2  # Ray settings need --engine ray
    assert "add --engine ray" in capsys.readouterr().err
