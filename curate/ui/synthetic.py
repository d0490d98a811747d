"""Synthetic review data written through the store API: for tests, benchmarks and screenshots.

:func:`fill` stores ``n`` candidates, each with its instruction, the generator's output (o0) and one output
per ensembling model, and (optionally) their consensus rows — the same rows a generation + ensembling run
writes, without any model. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import random
from typing import Sequence

from ..store import Store

GENERATORS = ("smollm2-135m-instruct", "gemma3-270m")
ENSEMBLERS = ("smollm2-135m-instruct", "qwen2.5-0.5b-instruct")
_VERBS = ("Summarize", "Explain", "Classify", "Rewrite", "Translate", "Describe", "Compare", "List", "Rank",
          "Suggest", "Outline", "Correct", "Estimate", "Convert", "Identify")
_WORDS = ("river", "budget", "sentence", "recipe", "planet", "contract", "poem", "invoice", "melody", "garden",
          "protein", "ticket", "glacier", "lecture", "engine", "harbor", "novel", "vaccine", "market", "forest",
          "review", "schedule", "window", "bridge", "email", "argument", "theory", "lantern", "orbit", "tariff")


def _phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def fill(store: Store, n: int, *, seed: int = 0, generators: Sequence[str] = GENERATORS,
         ensemblers: Sequence[str] = ENSEMBLERS, consensus: str = "real", rejected_every: int = 20,
         texts: dict[int, dict] | None = None, batch: int = 500) -> list[str]:
    """Store ``n`` synthetic candidates; returns their ids in order.

    * every ``rejected_every``-th candidate is auto-filtered (status 'rejected', reason 'empty_output');
    * ``consensus``: "real" computes it with :func:`curate.ensemble.compute_consensus`; "synthetic" stores
      a plausible random pairwise matrix (fast, for 50K-row benchmarks); "none" leaves it out;
    * ``texts`` overrides fields of candidate ``i`` (``instruction``, ``input``, ``outputs`` list).
    """
    rng = random.Random(f"synthetic:{seed}")
    ids: list[str] = []
    params = {"temperature": 0.7}
    for start in range(0, n, batch):
        cons_rows = []
        with store.atomic():
            for i in range(start, min(n, start + batch)):
                over = (texts or {}).get(i, {})
                gen = generators[i % len(generators)]
                task_type = "A" if i % 3 else "B"
                instruction = over.get("instruction") or (
                    f"{rng.choice(_VERBS)} the {_phrase(rng, 3)} for case {seed}-{i}.")
                inp = over.get("input", f"The {_phrase(rng, 6)}." if task_type == "A" else "")
                base = f"The {_phrase(rng, 5)} {_phrase(rng, 4)}."
                outs = list(over.get("outputs") or _outputs(rng, base, 1 + len(ensemblers)))
                bad = rejected_every > 0 and i % rejected_every == rejected_every - 1
                icid = store.add_completion({
                    "stage": "instruction", "task_type": task_type, "model_id": gen, "params": params,
                    "prompt_hash": f"synthetic-{seed}-{i}", "rng_seed": i, "text": instruction,
                    "completion_tokens": len(instruction.split())})
                iid, _ = store.add_instruction({
                    "text": instruction, "task_type": task_type, "origin": "instruction_prompt",
                    "completion_id": icid, "position": 0, "generator_model": gen, "params": params,
                    "prompt_hash": f"synthetic-{seed}-{i}", "status": "kept"})
                cid = store.add_completion({
                    "stage": "instance", "task_type": task_type, "instruction_id": iid, "model_id": gen,
                    "params": params, "prompt_hash": f"synthetic-{seed}-{i}", "rng_seed": i, "text": outs[0],
                    "completion_tokens": len(outs[0].split())})
                xid, new = store.add_candidate({
                    "instruction_id": iid, "task_type": task_type, "input": inp,
                    "output": "" if bad else outs[0], "completion_id": cid, "position": 0,
                    "generator_model": gen, "params": params, "prompt_hash": f"synthetic-{seed}-{i}",
                    "status": "rejected" if bad else "ok", "reason": "empty_output" if bad else None})
                ids.append(xid)
                if bad or not new:
                    continue
                store.add_outputs(
                    [{"candidate_id": xid, "position": 0, "model_id": gen, "params": params,
                      "prompt_style": "generator", "text": outs[0]}]
                    + [{"candidate_id": xid, "position": j, "model_id": m, "params": {"temperature": 0.0},
                        "prompt_style": "chat", "text": outs[j]} for j, m in enumerate(ensemblers, start=1)])
                if consensus == "synthetic":
                    cons_rows.append(_synthetic_consensus(rng, store, xid))
        if cons_rows:
            store.save_consensus(cons_rows)
    if consensus == "real":
        from ..ensemble import compute_consensus
        compute_consensus(store)
    return ids


def _outputs(rng: random.Random, base: str, k: int) -> list[str]:
    """k outputs around ``base``: some equal (exact matches), some paraphrased, some unrelated."""
    kind = rng.random()
    outs = [base]
    for j in range(1, k):
        if kind < 0.15:
            outs.append(base.upper() if j == 1 else base)              # exact after normalisation
        elif kind < 0.75:
            words = base.rstrip(".").split()
            keep = [w for w in words if rng.random() > 0.3] or words[:1]
            outs.append(" ".join(keep + [rng.choice(_WORDS)]) + ".")   # partial overlap
        else:
            outs.append(f"A {_phrase(rng, 6)}.")                        # mostly unrelated
    return outs


def _synthetic_consensus(rng: random.Random, store: Store, candidate_id: str) -> dict:
    outs = store.outputs_for(candidate_id)
    k = len(outs)
    m = [[1.0] * k for _ in range(k)]
    for a in range(k):
        for b in range(a + 1, k):
            m[a][b] = m[b][a] = round(rng.betavariate(2, 3), 4)
    scores = [round(sum(m[a][b] for b in range(k) if b != a) / (k - 1), 4) for a in range(k)]
    lo = min(m[a][b] for a in range(k) for b in range(a + 1, k))
    chosen = max(range(k), key=lambda a: (scores[a], -a))
    return {"candidate_id": candidate_id, "k": k, "output_ids": [o.id for o in outs],
            "models": [o.model_id for o in outs], "chosen_index": chosen, "chosen_nonempty": True,
            "reason": "rouge" if lo > 0.01 else "below_threshold", "min_pairwise": lo, "pairwise": m,
            "scores": scores, "tokenizer": "rouge", "threshold": 0.01}
