"""QDIT selection: lazy greedy (curate.select.qdit) against the plain dense greedy, on real and synthetic pools,
and the opt-in stochastic greedy (APPROXIMATE; Mirzasoleiman et al. 2015) against the exact one.

(i) real: 12,000 instructions from the pools under shared/data (Alpaca-plus validation sets, GPTeacher
    codegen + roleplay, Dolly open QA), instruction + input embedded with the default embedder
    (all-MiniLM-L6-v2; cached in ``--cache`` so reruns skip it); k = 1,000, α = 0.7. Quality is a
    deterministic PROXY (no scores exist for these records): log(1 + words in the reference response),
    min-max scaled. Both greedies run in the same process; the sequences must be identical. The stochastic
    greedy runs on the same pool: its objective as a share of the exact greedy's, and its time.
(ii) synthetic: 100,000 clustered, normalised 384-d vectors shaped like sentence embeddings (see
    ``clustered``); k = 1,000, α = 0.7, random quality; the stochastic greedy at ``--epsilon`` (0.01): time and
    peak memory. ``qdit_100k_peak_mb`` is the RSS high-water mark (VmHWM) of the fresh child process that ran
    it, so torch's buffers count too (tracemalloc sees only numpy's; its peak is printed beside it). The
    similarity blocks are torch matmuls on CUDA when present, else on the CPU with torch's threads
    (``qdit_100k_device``). ``--exact-100k`` also runs the exact greedy there (tens of minutes on 2 cores) for
    the objective gap at 100K.
(iii) gap: 30,000 synthetic vectors, k = 1,000: the exact and the stochastic greedy in one child process, their
    objectives (Σ of the winning scores = (1 − α)·F(A) + α·Σq) and F(A), and the time ratio.

Goals: speed ratio ≥ 20× on (i); ≤ 3 min and ≤ 4 GB on (ii).

    python bench/qdit.py [--n 12000] [--k 1000] [--alpha 0.7] [--synthetic 100000] [--epsilon 0.01]
                         [--gap 30000] [--exact-100k] [--cache data/bench-qdit]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _machine import gemm_gflops  # noqa: E402

from curate.select import (embedding_text, facility_location, minmax_scale, qdit_select,  # noqa: E402
                           qdit_select_naive)

DATA = Path(os.environ.get("CURATE_SHARED_DATA", "/work/shared/data")) / "pools"
POOLS = ("alpaca_subset/alpaca_plus_validation_unseen.json", "alpaca_subset/alpaca_plus_validation_seen.json",
         "alpaca_subset/alpaca_plus_validation_human.json", "gpteacher/codegen-instruct.json",
         "gpteacher/roleplay-simple-deduped-roleplay-instruct.json", "dolly_open_qa/dolly_open_qa.jsonl")


def real_records(n: int) -> list[tuple[str, str, str]]:
    """(instruction, input, response) from the pools, first occurrence of each text, in a fixed order."""
    out, seen = [], set()
    for name in POOLS:
        path = DATA / name
        rows = ([json.loads(line) for line in path.open()] if path.suffix == ".jsonl"
                else json.loads(path.read_text()))
        for r in rows:
            rec = (r["instruction"], r.get("input") or r.get("context") or "", r.get("output") or r.get("response", ""))
            text = embedding_text(rec[0], rec[1])
            if text.strip() and text not in seen:
                seen.add(text)
                out.append(rec)
    if len(out) < n:
        raise SystemExit(f"only {len(out)} distinct records under {DATA}; pass --n {len(out)} or less")
    return out[:n]


def real_embeddings(records, cache: Path) -> tuple[np.ndarray, float | None]:
    """Embeddings of the records (cached by a hash of the texts); sentences/s when computed now."""
    texts = [embedding_text(a, b) for a, b, _ in records]
    key = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache / f"real-{len(texts)}-all-minilm-l6-v2-{key}.npy"
    if path.exists():
        return np.load(path), None
    from curate.lm.registry import load_embedder
    model = load_embedder("all-minilm-l6-v2")
    model.encode(texts[:64], batch_size=64)  # warm-up
    t = time.perf_counter()
    e = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    rate = len(texts) / (time.perf_counter() - t)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, e.astype(np.float32))
    return e.astype(np.float32), rate


def clustered(n: int, d: int, clusters: int, seed: int = 0) -> np.ndarray:
    """n unit vectors (float32) shaped like sentence embeddings: ``clusters`` centres sharing one common
    direction, points scattered around them. Pairwise cosine ≈ 0.08 ± 0.05 and nearest neighbour ≈ 0.45 —
    the real 12K pool here measures 0.06 ± 0.10 and 0.61 (all-MiniLM-L6-v2)."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(d)
    common /= np.linalg.norm(common)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres = 0.35 * common + centres
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    e = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e.astype(np.float32)


def rss_mb() -> float:
    """This process's RSS high-water mark in MiB: VmHWM (its own address space's; a spawned child's
    ru_maxrss starts from its parent's RSS at the fork), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def real(args) -> None:
    """(i): the lazy greedy and the dense greedy on the real pool, in this process."""
    records = real_records(args.n)
    e, rate = real_embeddings(records, Path(args.cache))
    if rate is not None:
        print(f"BENCH embed_sentences_per_s={rate:.1f}")
    q = minmax_scale([np.log1p(len(r.split())) for _, _, r in records])  # PROXY quality
    t = time.perf_counter()
    fast = qdit_select(e, q, args.k, args.alpha)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    naive = qdit_select_naive(e, q, args.k, args.alpha)
    t_naive = time.perf_counter() - t
    same = fast.indices == naive.indices and fast.gains == naive.gains and fast.scores == naive.scores
    print(f"BENCH qdit_real_n={len(records)}")
    print(f"BENCH qdit_identical={int(same)}")
    print(f"BENCH qdit_real_fast_s={t_fast:.2f}")
    print(f"BENCH qdit_real_naive_s={t_naive:.2f}")
    print(f"BENCH qdit_real_speedup={t_naive / t_fast:.1f}")
    print(f"BENCH qdit_real_exact_evals_per_pick={fast.evaluations / args.k:.1f}")
    bound_evals = (fast.bound_evaluations - len(records)) / args.k
    print(f"BENCH qdit_real_bound_evals_per_pick={bound_evals:.1f}", flush=True)
    t = time.perf_counter()
    approx = qdit_select(e, q, args.k, args.alpha, epsilon=args.epsilon)
    t_approx = time.perf_counter() - t
    print(f"BENCH qdit_real_stochastic_eps={args.epsilon:g}")
    print(f"BENCH qdit_real_stochastic_s={t_approx:.2f}")
    print(f"BENCH qdit_real_stochastic_objective_pct_of_exact={100 * sum(approx.scores) / sum(fast.scores):.2f}")
    print(f"BENCH qdit_real_stochastic_F_pct_of_exact="
          f"{100 * facility_location(e, approx.indices) / facility_location(e, fast.indices):.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12_000, help="real instructions (default 12000; 0 skips)")
    ap.add_argument("--k", type=int, default=1000, help="selection size (default 1000)")
    ap.add_argument("--alpha", type=float, default=0.7, help="alpha (default 0.7)")
    ap.add_argument("--synthetic", type=int, default=100_000, help="synthetic pool size (default 100000; 0 skips)")
    ap.add_argument("--epsilon", type=float, default=0.01, help="the stochastic greedy's ε (default 0.01)")
    ap.add_argument("--gap", type=int, default=30_000,
                    help="synthetic pool for the exact-vs-stochastic gap (default 30000; 0 skips)")
    ap.add_argument("--exact-100k", action="store_true",
                    help="also run the exact greedy on the synthetic pool (slow: tens of minutes on 2 cores)")
    ap.add_argument("--cache", default="data/bench-qdit", help="folder for the cached real embeddings")
    args = ap.parse_args()

    if args.n:
        real(args)
    import multiprocessing  # each synthetic run in a fresh process, so its peak RSS is its own
    runs = []
    if args.synthetic:
        runs.append(("100k", args.synthetic, args.epsilon))
        if args.exact_100k:
            runs.append(("100k_exact", args.synthetic, None))
    if args.gap:
        runs += [("gap_exact", args.gap, None), ("gap_stochastic", args.gap, args.epsilon)]
    results = {}
    for name, n, eps in runs:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            res = results[name] = pool.apply(synthetic, (n, args.k, args.alpha, eps))
        for key, value in res.items():
            if key != "indices":
                print(f"BENCH qdit_{name}_{key}={value}", flush=True)
    for a, b in (("100k", "100k_exact"), ("gap_stochastic", "gap_exact")):
        if a in results and b in results:
            approx, exact = results[a], results[b]
            print(f"BENCH qdit_{a}_objective_pct_of_exact={100 * approx['objective'] / exact['objective']:.2f}")
            print(f"BENCH qdit_{a}_F_pct_of_exact={100 * approx['F'] / exact['F']:.2f}")
            print(f"BENCH qdit_{a}_time_ratio_exact_over_stochastic="
                  f"{float(exact['s']) / float(approx['s']):.2f}")


def synthetic(n: int, k: int, alpha: float, epsilon: float | None) -> dict:
    gflops = gemm_gflops()
    e = clustered(n, 384, clusters=2000)
    q = np.random.default_rng(1).random(n)
    base = rss_mb()
    tracemalloc.start()
    t = time.perf_counter()
    res = qdit_select(e, q, k, alpha, epsilon=epsilon)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    import torch
    return {"n": n, "greedy": "exact" if epsilon is None else f"stochastic_eps_{epsilon:g}",
            "s": f"{seconds:.1f}", "peak_mb": f"{rss_mb():.0f}", "rss_before_mb": f"{base:.0f}",
            "device": "cuda" if torch.cuda.is_available() else f"cpu_{torch.get_num_threads()}_threads",
            "load_avg_1m": f"{os.getloadavg()[0]:.1f}", "gemm_gflops_before": f"{gflops:.1f}",
            "tracemalloc_peak_mb": f"{peak / 2**20:.0f}", "exact_evals_per_pick": f"{res.evaluations / k:.1f}",
            "bound_evals_per_pick": f"{(res.bound_evaluations - (n if epsilon is None else 0)) / k:.1f}",
            "objective": sum(res.scores), "F": facility_location(e, res.indices)}


if __name__ == "__main__":
    main()
