"""The Ray engine against the local engine on the same rows (docs/RAY.md).

1. Ensemble outputs of the real SmolLM2 (greedy, ``--max-new`` new tokens) for the same ``--candidates`` candidates
   (made by a scripted generator, so every run starts from the same store): the local engine, then a local Ray
   (``ray.init(num_cpus=--cpus)``) with 1 and with 2 actors. Each figure is a ratio against the local run of the
   same process: ``ray1_overhead_pct`` (a 1-actor Ray run's extra time over the local engine: task hand-off,
   pickling, an actor's own model load, one thread per actor), ``ray2_speedup`` (local time / 2-actor time)
   and ``ray2_over_ray1``. ``identical_runs`` counts the Ray runs whose stored outputs equal the local run's.
2. The novelty filter's bound: generation's filter stays on the driver, one instruction at a time, against every
   kept instruction. ``filter_ms_per_instruction`` is its time per instruction with an index of the seeds plus
   ``--kept`` kept instructions; ``gen_ms_per_instruction`` is SmolLM2's time per instruction it writes
   (a batch of 4 instruction prompts, ``--instr-new`` new tokens, local engine); their ratio,
   ``workers_to_saturate_driver``, is how many generating workers one driver's filter can keep up with.

Run: ``python bench/ray_scale.py`` (on a quiet machine; a loaded one skews the speed-up). Ends with
``BENCH name=value`` lines.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate import filters, parse, prompts  # noqa: E402
from curate.engine import RayEngine  # noqa: E402
from curate.ensemble import EnsembleConfig, run_ensemble  # noqa: E402
from curate.generate import INSTRUCTION_PARAMS, GenerateConfig, run_generation  # noqa: E402
from curate.lm.scripted import ScriptedLM  # noqa: E402
from curate.mixture import ModelPool, parse_mixture  # noqa: E402
from curate.rouge import NoveltyIndex  # noqa: E402
from curate.seeds import load_seeds  # noqa: E402
from curate.store import Store  # noqa: E402

REAL = "smollm2-135m-instruct"
_SYL = "ka lo mi ren tus vex bor qua zin pel dro fa gui hob jet nuv sa te wo".split()


def _words(text: str, n: int) -> list[str]:
    h = hashlib.sha256(text.encode()).digest()
    return ["".join(_SYL[h[(3 * i + k) % 32] % len(_SYL)] for k in range(3)) for i in range(n)]


def scripted(prompt: str) -> str:
    w = _words(prompt, 8)
    if prompt.startswith(prompts.INSTRUCTION_HEADER):
        return " Write a short note about " + " ".join(w[:6]) + " |EoS|"
    if prompt.startswith(prompts.INSTANCE_HEADERS["A"]):
        return f"input: {w[0]} {w[1]}\noutput: {w[2]}\n|EoS|"
    return f"output: {w[0]} {w[1]}\n|EoS|"


def outputs(st: Store) -> list[tuple]:
    return sorted((r["candidate_id"], r["model_id"], r["text"]) for r in st.db["outputs"].rows)


def ensemble(db: str, engine: dict, args) -> tuple[float, list[tuple]]:
    st = Store(db)
    t0 = time.perf_counter()
    run_ensemble(st, EnsembleConfig(models=[REAL], batch_size=args.batch, max_new_tokens=args.max_new, **engine),
                 ModelPool())
    return time.perf_counter() - t0, outputs(st)


def filter_bound(args) -> dict:
    rng = random.Random(0)
    seeds = load_seeds()
    index = NoveltyIndex([s.instruction for s in seeds])
    for i in range(args.kept):
        index.add(" ".join(_words(f"kept {i}", rng.randint(6, 14))))
    new = [" ".join(_words(f"new {i}", rng.randint(6, 14))) for i in range(200)]
    t0 = time.perf_counter()
    for text in new:
        filters.instruction_verdict(text, index, filters.SIMILARITY_THRESHOLD)
    filter_s = (time.perf_counter() - t0) / len(new)
    from curate.lm.registry import load_lm
    lm = load_lm(REAL)
    texts = [s.instruction for s in seeds if s.task_type == "A"]
    batch = [prompts.instruction_prompt(texts, [], random.Random(i), demos=8).text for i in range(4)]
    params = INSTRUCTION_PARAMS.model_copy(update={"max_new_tokens": args.instr_new, "min_new_tokens": 1, "seed": 0})
    t0 = time.perf_counter()
    comps = lm.generate(batch, params)
    gen_s = time.perf_counter() - t0
    written = sum(1 for c in comps for p, _ in parse.instruction_pieces(c.text) if filters.clean_instruction(p))
    gen_per = gen_s / max(1, written)
    return {"filter_ms_per_instruction": round(filter_s * 1000, 3), "filter_index_size": len(seeds) + args.kept,
            "gen_ms_per_instruction": round(gen_per * 1000, 1), "gen_instructions_written": written,
            "workers_to_saturate_driver": round(gen_per / filter_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=24)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--kept", type=int, default=2000, help="kept instructions in the filter's index")
    ap.add_argument("--instr-new", type=int, default=64, help="new tokens per instruction completion")
    args = ap.parse_args()
    import ray
    tmp = Path(tempfile.mkdtemp(prefix="ray_scale_"))
    base = str(tmp / "base.db")
    pool = ModelPool({"g": ScriptedLM("g", scripted)})
    run_generation(Store(base), GenerateConfig(instructions=args.candidates, instruction_models=parse_mixture("g"),
                                               instance_models=parse_mixture("g"), task_type="A"), pool)
    print(f"{Store(base).count_candidates('ok')} candidates; SmolLM2 outputs of {args.max_new} new tokens, "
          f"batch {args.batch}", flush=True)
    runs = {}
    for name, engine in (("local", {}), ("ray1", {"engine": "ray", "actors": 1}),
                         ("ray2", {"engine": "ray", "actors": 2})):
        db = str(tmp / f"{name}.db")
        with sqlite3.connect(base) as src, sqlite3.connect(db) as dst:  # a copy with the WAL's pages in it
            src.backup(dst)
        if engine and not ray.is_initialized():
            ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            RayEngine(ModelPool(), actors=1).close()  # the cluster's start is not the engine's cost
        runs[name] = ensemble(db, engine, args)
        print(f"{name}: {runs[name][0]:.1f} s", flush=True)
    ray.shutdown()
    t = {k: v[0] for k, v in runs.items()}
    print(f"BENCH ray_local_s={t['local']:.2f}")
    print(f"BENCH ray1_s={t['ray1']:.2f}")
    print(f"BENCH ray2_s={t['ray2']:.2f}")
    print(f"BENCH ray1_overhead_pct={100 * (t['ray1'] / t['local'] - 1):.1f}")
    print(f"BENCH ray2_speedup={t['local'] / t['ray2']:.2f}")
    print(f"BENCH ray2_over_ray1={t['ray1'] / t['ray2']:.2f}")
    print(f"BENCH identical_runs={sum(runs[k][1] == runs['local'][1] for k in ('ray1', 'ray2'))}/2")
    for k, v in filter_bound(args).items():
        print(f"BENCH {k}={v}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
