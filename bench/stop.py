"""Time from Pause and from Cancel to the job actually stopping, on the embedded SmolLM2 (the real transformers
backend), for a generation job and an ensembling job run by the app's JobRunner.

Each request is made in the middle of a model call (after the job's live token count has moved twice since its
last finished step), and the clock runs until the job row reads ``paused`` / ``cancelled``. Before the backend
progress hook, the stop waited for the whole batch (tens of seconds on 2 cores); the goal is <= 5 s.
Prints ``BENCH pause_to_stopped_s=…`` and ``BENCH cancel_to_stopped_s=…`` per stage (``generate_…`` /
``ensemble_…``) and, for scale, ``BENCH stop_batch_s=…``: how long one model call of the same job took.
``python bench/stop.py [--model smollm2-135m-instruct] [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curate import jobs  # noqa: E402
from curate.mixture import ModelPool  # noqa: E402
from curate.store import Store  # noqa: E402

TOPICS = ("photosynthesis", "the French revolution", "binary search", "volcanoes", "compound interest",
          "the water cycle", "sorting algorithms", "the immune system", "plate tectonics", "inflation",
          "recursion", "the moon landing", "electric motors", "climate", "prime numbers", "the printing press")


def _candidates(store: Store, model: str) -> None:
    """Candidates with an instruction, an input and o0 (through the store API), for the ensembling job."""
    for i, topic in enumerate(TOPICS):
        text = f"Write a detailed explanation of {topic} for a curious student, with an example."
        cid = store.add_completion({"stage": "instruction", "model_id": model, "params": {}, "prompt_hash": f"i{i}",
                                    "text": text})
        iid = store.add_instruction({"text": text, "task_type": "B", "origin": "instruction_prompt",
                                     "completion_id": cid, "position": 0, "generator_model": model, "params": {},
                                     "prompt_hash": f"i{i}", "rng_seed": i, "status": "kept", "reason": None})[0]
        xc = store.add_completion({"stage": "instance", "model_id": model, "params": {}, "prompt_hash": f"x{i}",
                                   "text": "output: …", "instruction_id": iid})
        xid, _ = store.add_candidate({"instruction_id": iid, "task_type": "B", "input": "", "output": "…",
                                     "completion_id": xc, "position": 0, "generator_model": model, "params": {},
                                     "prompt_hash": f"x{i}", "status": "ok"})
        store.add_outputs([{"candidate_id": xid, "position": 0, "model_id": model, "params": {},
                            "prompt_style": "generator", "text": f"An explanation of {topic}."}])


def _wait(store: Store, job_id: str, until, timeout: float = 600.0, poll: float = 0.05) -> dict:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        job = store.get_job(job_id)
        if until(job):
            return job
        time.sleep(poll)
    raise SystemExit(f"job {job_id} did not reach the expected state in {timeout:.0f} s: {store.get_job(job_id)}")


def _tokens(job: dict) -> int:
    return int((job["progress"].get("counts") or {}).get("tokens") or 0)


def _mid_call(store: Store, job_id: str) -> None:
    """Wait until the job is inside a model call: its live token count moved twice since the wait began."""
    start = _tokens(store.get_job(job_id))
    first = _wait(store, job_id, lambda j: j["state"] == "running" and _tokens(j) > start)
    _wait(store, job_id, lambda j: _tokens(j) > _tokens(first))


def _stop_time(store: Store, job_id: str, request, final: str) -> float:
    _mid_call(store, job_id)
    t0 = time.monotonic()
    assert request(store, job_id), f"the request was not recorded ({store.job_state(job_id)})"
    _wait(store, job_id, lambda j: j["state"] in (final, "failed", "done"), timeout=300, poll=0.02)
    dt = time.monotonic() - t0
    state = store.job_state(job_id)
    assert state == final, f"job {job_id} ended {state}: {store.get_job(job_id)['error']}"
    return dt


def _measure(runner: jobs.JobRunner, store: Store, kind: str, config: dict) -> dict[str, float]:
    job_id = jobs.start_job(store, kind, config)
    runner.submit(job_id)
    pause_s = _stop_time(store, job_id, jobs.pause, "paused")
    runner.join(60)
    runner.submit(job_id)  # resume: it continues from what is stored
    cancel_s = _stop_time(store, job_id, jobs.cancel, "cancelled")
    runner.join(60)
    return {"pause": pause_s, "cancel": cancel_s}


def _batch_seconds(pool: ModelPool, model: str, batch_size: int) -> float:
    """One model call of ``batch_size`` instance-style prompts, for scale (what a stop used to wait for)."""
    from curate.generate import INSTANCE_PARAMS
    lm = pool.get(model)
    t0 = time.perf_counter()
    lm.generate([f"Write a detailed explanation of {t} for a curious student." for t in TOPICS[:batch_size]],
                INSTANCE_PARAMS.model_copy(update={"max_new_tokens": 128, "min_new_tokens": 128, "seed": 0}))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "stop.db")
        pool = ModelPool()
        pool.get(args.model)  # loaded once, before the clock (as in the app after its first job)
        runner = jobs.JobRunner(db, pool)
        with Store(db) as store:
            gen = _measure(runner, store, "generate", {
                "instructions": 200, "instruction_models": [{"model": args.model}],
                "instance_models": [{"model": args.model}], "batch_size": args.batch_size})
            _candidates(store, args.model)
            ens = _measure(runner, store, "ensemble", {"models": [args.model], "batch_size": args.batch_size})
        batch_s = _batch_seconds(pool, args.model, args.batch_size)
    print(f"BENCH generate_pause_to_stopped_s={gen['pause']:.2f}")
    print(f"BENCH generate_cancel_to_stopped_s={gen['cancel']:.2f}")
    print(f"BENCH ensemble_pause_to_stopped_s={ens['pause']:.2f}")
    print(f"BENCH ensemble_cancel_to_stopped_s={ens['cancel']:.2f}")
    print(f"BENCH pause_to_stopped_s={max(gen['pause'], ens['pause']):.2f}")
    print(f"BENCH cancel_to_stopped_s={max(gen['cancel'], ens['cancel']):.2f}")
    print(f"BENCH stop_batch_s={batch_s:.2f}")


if __name__ == "__main__":
    main()
