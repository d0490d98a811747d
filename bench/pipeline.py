"""End-to-end kept candidates per CPU-minute on the embedded default models: before and after the fast decoder.

One process, the same seeds, a fresh store per configuration; each configuration generates ``--instructions``
kept instructions with their instances (the default mixture: SmolLM2-135M and Gemma-3-270M), then ensembles
them (the default ensemble: SmolLM2-135M and Qwen2.5-0.5B, two zero-shot outputs each) and computes consensus.
A kept candidate is one that came out of all of it: an instruction, an instance, and both ensemble outputs
(``scored``); ``passing`` is how many of them also pass consensus at tau 0.01.

Configurations (``--configs``):
  before   transformers' generate (decode="hf"), each prompt its own demo draw (what curate did before)
  fast     the fast decoder (prefix cache, finished rows leave the batch), the same prompts
  shared   the fast decoder with --shared-instance-demos and --instruction-samples 2 (the prompt-sharing settings)

CPU time is the process's user + system time (all threads), so a figure per CPU-minute does not depend on how
busy the machine was; the wall time is printed beside it. Model loading is outside the measurement.
Prints each run's phase profile (curate.profile) and ``BENCH`` lines; ``pipeline_speedup_<config>`` is kept
candidates per CPU-minute relative to ``before`` (goal >= 3).

    python bench/pipeline.py [--instructions 8] [--configs before fast shared]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate import generate  # noqa: E402
from curate.ensemble import DEFAULT_ENSEMBLE_MODELS, EnsembleConfig, run_ensemble  # noqa: E402
from curate.generate import DEFAULT_MODELS, GenerateConfig  # noqa: E402
from curate.lm.registry import load_lm  # noqa: E402
from curate.mixture import ModelPool  # noqa: E402
from curate.profile import format_profile  # noqa: E402
from curate.stage import StageContext  # noqa: E402
from curate.store import Store  # noqa: E402

CONFIGS = {
    "before": ("hf", {}),
    "fast": ("fast", {}),
    "shared": ("fast", {"shared_instance_demos": True, "instruction_samples": 2}),
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(name: str, pool: ModelPool, n: int, folder: Path) -> dict:
    decode, extra = CONFIGS[name]
    st = Store(folder / f"{name}.db")
    cfg = GenerateConfig(instructions=n, seed=0, **extra)
    c0, w0 = cpu_seconds(), time.perf_counter()
    result = generate.run(st, cfg, StageContext(pool=pool))
    c1 = cpu_seconds()
    run_ensemble(st, EnsembleConfig(), pool)
    c2, w2 = cpu_seconds(), time.perf_counter()
    counts = st.count_passing(0.01)
    out = {"name": name, "decode": decode, "cpu_s": c2 - c0, "gen_cpu_s": c1 - c0, "ens_cpu_s": c2 - c1,
           "wall_s": w2 - w0, "scored": counts["scored"], "passing": counts["passing"],
           "candidates": result["kept_candidates"], "tokens": result["tokens"], "profile": result["profile"]}
    out["per_cpu_min"] = 60 * out["scored"] / out["cpu_s"]
    print(f"\n{name} (decode={decode}, {extra or 'default prompts'}): {out['scored']} kept candidates "
          f"({out['passing']} passing) in {out['cpu_s']:.0f} CPU-s ({out['wall_s']:.0f} s wall; generation "
          f"{out['gen_cpu_s']:.0f}, ensembling {out['ens_cpu_s']:.0f}); {out['tokens']} generation tokens")
    print(format_profile(result["profile"]), flush=True)
    st.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instructions", type=int, default=8, help="kept instructions per configuration")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    specs = list(dict.fromkeys([*DEFAULT_MODELS, *DEFAULT_ENSEMBLE_MODELS]))
    pools: dict[str, ModelPool] = {}
    for decode in dict.fromkeys(CONFIGS[c][0] for c in args.configs):
        pools[decode] = ModelPool(loader=lambda spec, d=decode: load_lm(spec, decode=d))
        for spec in specs:  # loading is not what is measured
            pools[decode].get(spec)
    print(f"models: generation {', '.join(DEFAULT_MODELS)}; ensemble {', '.join(DEFAULT_ENSEMBLE_MODELS)}; "
          f"{os.cpu_count()} CPUs", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            results[name] = run(name, pools[CONFIGS[name][0]], args.instructions, Path(tmp))
    for name, r in results.items():
        print(f"BENCH pipeline_{name}_kept_candidates={r['scored']}")
        print(f"BENCH pipeline_{name}_passing={r['passing']}")
        print(f"BENCH pipeline_{name}_cpu_s={r['cpu_s']:.1f}")
        print(f"BENCH pipeline_{name}_wall_s={r['wall_s']:.1f}")
        print(f"BENCH pipeline_{name}_kept_per_cpu_min={r['per_cpu_min']:.3f}")
        total = sum(r["profile"].values()) or 1.0
        for phase in ("prefill", "decode"):
            print(f"BENCH pipeline_{name}_generate_{phase}_share_pct={100 * r['profile'].get(phase, 0) / total:.1f}")
    if "before" in results:
        for name, r in results.items():
            if name != "before":
                print(f"BENCH pipeline_speedup_{name}={r['per_cpu_min'] / results['before']['per_cpu_min']:.2f}")


if __name__ == "__main__":
    main()
