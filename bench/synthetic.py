"""Synthetic stores for benchmarks: N candidates with 3 outputs' consensus rows, through the store API."""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

from curate.store import Store


def cached_store(path: Path, ready: Callable[[Store], bool], build: Callable[[Store], None]) -> None:
    """Keep a benchmark store at ``path``: reuse it while ``ready(store)`` holds, else build it again with
    ``build(store)`` in a temporary file that is renamed into place (an interrupted build leaves nothing)."""
    if path.exists():
        with Store(path) as st:
            if ready(st):
                return
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with Store(tmp) as st:
        build(st)
        st.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tmp.rename(path)
    print(f"built {path} in {time.perf_counter() - t0:.0f} s", flush=True)


def review_store(path: Path, n: int) -> None:
    """The review benchmarks' store (bench/ui.py, bench/review_load.py): ``n`` candidates from
    curate.ui.synthetic.fill with synthetic consensus rows, cached at ``path``."""
    from curate.ui.synthetic import fill
    cached_store(path, lambda st: st.count_candidates(None) >= n,
                 lambda st: fill(st, n, consensus="synthetic", batch=2000))


def fill_store(store: Store, n: int, seed: int = 0, k: int = 3) -> list[str]:
    """Add ``n`` candidates (instruction, instance, k outputs, consensus) and return their instance ids."""
    rng = random.Random(seed)
    ids: list[str] = []
    reasons = ["rouge"] * 6 + ["below_threshold", "exact_o0", "exact_others", "empty"]
    with store.atomic():
        for i in range(n):
            text = f"Synthetic instruction {i}: describe item {rng.randrange(10**6)}"
            cid = store.add_completion({"stage": "instruction", "model_id": "gen", "params": {},
                                        "prompt_hash": "p", "text": text, "rng_seed": i})
            iid, _ = store.add_instruction({"text": text, "task_type": "AB"[i % 2], "origin": "instruction_prompt",
                                            "completion_id": cid, "position": 0, "generator_model": "gen",
                                            "params": {}, "prompt_hash": "p", "status": "kept"})
            cid2 = store.add_completion({"stage": "instance", "model_id": "gen", "params": {}, "prompt_hash": "q",
                                         "text": f"output: {i}", "instruction_id": iid})
            xid, _ = store.add_candidate({"instruction_id": iid, "task_type": "AB"[i % 2], "input": "",
                                         "output": f"output {i}", "completion_id": cid2, "position": 0,
                                         "generator_model": ["smollm2", "gemma3"][i % 2], "params": {},
                                         "prompt_hash": "q", "status": "ok"})
            ids.append(xid)
            outs = [{"candidate_id": xid, "position": j, "model_id": f"m{j}", "params": {},
                     "prompt_style": "generator" if j == 0 else "chat",
                     "text": f"output {i} variant {rng.random():.3f}"} for j in range(k)]
            store.add_outputs(outs)
            m = [[1.0 if a == b else round(rng.random(), 4) for b in range(k)] for a in range(k)]
            for a in range(k):
                for b in range(a):
                    m[a][b] = m[b][a]
            reason = rng.choice(reasons)
            mn = min(m[a][b] for a in range(k) for b in range(k) if a != b)
            store.save_consensus([{"candidate_id": xid, "k": k, "output_ids": [], "models": [o["model_id"] for o in outs],
                                   "chosen_index": 0, "chosen_nonempty": reason != "empty", "reason": reason,
                                   "min_pairwise": mn, "pairwise": m, "scores": [0.0] * k,
                                   "tokenizer": "rouge", "threshold": 0.01}])
    return ids
