"""Tokens/s of the transformers backend's two decoders per batch size, against this machine's matmul bound.

Prompts: distinct Ensemble-Instruct instruction prompts (about 300 tokens, built from the shipped seeds with
different seeds, so no two share their demos) and, for the prefix cache, instance prompts that share one demo
block. Greedy, exactly ``--new-tokens`` new tokens per row (min_new_tokens holds EOS back, no stop strings, no
repetition guard), so every engine does the same work and the outputs must be identical.

The bound: a sustained fp32 GEMM rate measured here (GFLOP/s, all threads) and 2 x parameters FLOP per token,
so ``bound_tok_s = GFLOP/s / (2 x params)``; each figure is given as a percentage of it, once for new tokens
only and once for every token the model processed (prompt + new), since prefill is most of the work.

    python bench/inference.py [--model smollm2-135m-instruct] [--batches 1 4 8 16 32] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _machine import gemm_gflops  # noqa: E402
from curate import prompts  # noqa: E402
from curate.lm.base import GenParams  # noqa: E402
from curate.lm.registry import load_lm  # noqa: E402
from curate.seeds import load_seeds, split_by_type  # noqa: E402


def instruction_prompts(k: int) -> list[str]:
    seeds = [s.instruction for s in split_by_type(load_seeds())["A"]]
    return [prompts.instruction_prompt(seeds, [], random.Random(i), demos=24).text for i in range(k)]


def instance_prompts(k: int) -> list[str]:
    seeds = load_seeds()
    news = [s.instruction for s in split_by_type(seeds)["B"]][:k]
    return [prompts.instance_prompt(x, "B", seeds, random.Random(7), demos=15).text for x in news]


def timed(lm, texts: list[str], params: GenParams) -> tuple[float, list, int]:
    t0 = time.perf_counter()
    out = lm.generate(texts, params)
    dt = time.perf_counter() - t0
    return dt, out, sum(c.prompt_tokens for c in out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}))
    args = ap.parse_args()
    params = GenParams(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, repetition_guard=False)
    gflops = gemm_gflops()
    engines = {d: load_lm(args.model, decode=d, batch_size=max(args.batches)) for d in ("hf", "fast")}
    n_params = sum(p.numel() for p in engines["fast"].model.parameters())
    bound = gflops * 1e9 / (2 * n_params)
    print(f"{args.model}: {n_params / 1e6:.1f}M parameters; GEMM {gflops:.1f} GFLOP/s on {torch.get_num_threads()} "
          f"threads -> bound {bound:.0f} tokens/s", flush=True)
    print(f"BENCH matmul_gflops={gflops:.1f}")
    print(f"BENCH bound_tok_s={bound:.1f}")
    for lm in engines.values():
        lm.generate(["warm up"], GenParams(max_new_tokens=2))

    def row(tag: str, texts: list[str], batch: int) -> dict:
        got = {}
        for name, lm in engines.items():
            lm.batch_size = batch
            lm._prefixes.clear()
            dt, out, prompt_tokens = timed(lm, texts, params)
            new = sum(c.completion_tokens for c in out)
            got[name] = (dt, out, new, prompt_tokens)
        same = sum(a.text == b.text for a, b in zip(got["hf"][1], got["fast"][1]))
        for name, (dt, _, new, pt) in got.items():
            tok_s, all_s = new / dt, (new + pt) / dt
            print(f"{tag:9} batch {batch:>2}  {name:4}  {tok_s:6.1f} new tok/s ({100 * tok_s / bound:5.1f}% of bound)"
                  f"  {all_s:7.1f} processed tok/s ({100 * all_s / bound:5.1f}%)  {dt:6.1f} s")
            print(f"BENCH {tag}_{name}_b{batch}_tok_s={tok_s:.2f}")
            print(f"BENCH {tag}_{name}_b{batch}_pct_bound_new={100 * tok_s / bound:.1f}")
            print(f"BENCH {tag}_{name}_b{batch}_pct_bound_processed={100 * all_s / bound:.1f}")
        print(f"BENCH {tag}_b{batch}_identical={same}/{len(texts)}")
        print(f"BENCH {tag}_b{batch}_fast_speedup={got['hf'][0] / got['fast'][0]:.2f}", flush=True)
        return {n: v[2] / v[0] for n, v in got.items()}

    curve = {b: row("distinct", instruction_prompts(b), b) for b in args.batches}
    best = max(curve, key=lambda b: curve[b]["fast"])
    print(f"BENCH best_batch_fast={best}")
    default = 8 if 8 in curve else args.batches[0]
    row("shared", instance_prompts(default), default)  # one demo block: the prefix cache's case
    for threads in args.threads:  # the default batch on fewer threads
        torch.set_num_threads(threads)
        lm = engines["fast"]
        lm.batch_size = default
        dt, out, _ = timed(lm, instruction_prompts(default), params)
        print(f"BENCH threads{threads}_fast_b{default}_tok_s={sum(c.completion_tokens for c in out) / dt:.2f}")


if __name__ == "__main__":
    main()
