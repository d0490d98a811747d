"""Teacher compatibility: how long the student's loss takes, per 100 outputs, with the real SmolLM2 on CPU.

50 Alpaca-plus examples (``../shared/data``, env ``CURATE_SHARED_DATA`` overrides) become 50 instances with two
teachers each (the reference answer, and a copy with every other sentence dropped), so 100 outputs; the
student is the embedded SmolLM2-135M-Instruct (chat template prompts), the reward the consensus proxy.

1. ``compute_teacher_stats`` from scratch: the student's per-token NLL of the 100 outputs (batched loglik);
2. the same call again: everything is stored, so it must compute nothing (resumability);
3. ``teacher_ranking`` from the stored numbers.

Run: ``python bench/teachers.py``. Ends with ``BENCH name=value`` lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curate.ensemble import compute_consensus  # noqa: E402
from curate.lm.registry import load_lm  # noqa: E402
from curate.quality import load_scorer  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.teachers import compute_teacher_stats, teacher_ranking  # noqa: E402

N_INSTANCES = 50


def shared_data() -> Path:
    return Path(os.environ.get("CURATE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def fill(store: Store, rows: list[dict]) -> None:
    for n, r in enumerate(rows):
        task_type = "A" if r["input"].strip() else "B"
        cid = store.add_completion({"stage": "instruction", "model_id": "ref", "params": {}, "prompt_hash": f"p{n}",
                                    "text": r["instruction"]})
        iid, _ = store.add_instruction({"text": r["instruction"], "task_type": task_type,
                                        "origin": "instruction_prompt",
                                        "completion_id": cid, "position": 0, "generator_model": "ref", "params": {},
                                        "prompt_hash": f"p{n}", "status": "kept"})
        xid, _ = store.add_candidate({"instruction_id": iid, "task_type": task_type, "input": r["input"],
                                     "output": r["output"], "completion_id": cid, "position": 0,
                                     "generator_model": "ref", "params": {}, "prompt_hash": f"p{n}", "status": "ok"})
        short = ". ".join(s for i, s in enumerate(r["output"].split(". ")) if i % 2 == 0)
        store.add_outputs([{"candidate_id": xid, "position": p, "model_id": m, "params": {}, "prompt_style": "reference",
                            "text": t} for p, (m, t) in enumerate((("reference", r["output"]), ("shortened", short)))])
    compute_consensus(store)


def main() -> None:
    data = json.load(open(shared_data() / "pools/alpaca_subset/alpaca_plus_validation_seen.json"))
    rows = [r for r in data if 20 <= len(r["output"].split()) <= 120][:N_INSTANCES]
    t0 = time.perf_counter()
    student = load_lm("smollm2-135m-instruct", batch_size=8)
    load_s = time.perf_counter() - t0
    with Store(":memory:") as store:
        fill(store, rows)
        scorer = load_scorer("proxy:consensus", store=store)
        t0 = time.perf_counter()
        first = compute_teacher_stats(store, student, scorer)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = compute_teacher_stats(store, student, scorer)
        again_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ranking = teacher_ranking(store, "smollm2-135m-instruct", scorer)
        rank_s = time.perf_counter() - t0
        tokens = sum(r["tokens"] for r in ranking if r["task_type"] == "all")
    for r in ranking:
        print(f"{r['task_type']:3} {r['rank']} {r['model']:10} n={r['n']:3} reward={r['reward']:.3f} "
              f"loss={r['loss']:.3f} car={r['car']:.3f}")
    outputs = first["outputs"]
    print(f"BENCH teacher_student_load_s={load_s:.1f}")
    print(f"BENCH teacher_outputs={outputs}")
    print(f"BENCH teacher_response_tokens={tokens}")
    print(f"BENCH teacher_loglik_s_per_100_outputs={first_s * 100 / outputs:.1f}")
    print(f"BENCH teacher_loglik_tokens_per_s={tokens / first_s:.0f}")
    print(f"BENCH teacher_rerun_computed={again['nll_computed'] + again['rewards_computed']}")
    print(f"BENCH teacher_rerun_s={again_s:.3f}")
    print(f"BENCH teacher_ranking_ms={rank_s * 1000:.1f}")


if __name__ == "__main__":
    main()
