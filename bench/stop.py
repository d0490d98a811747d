"""Time from Pause and from Cancel to the job actually stopping, on the embedded SmolLM2 (the real transformers
backend), for a generation job and an ensembling job run by the app's JobRunner.

Each request is made in the middle of a model call (after the job's live token count has moved twice since its
last finished step), and the clock runs until the job row reads ``paused`` / ``cancelled``. Before the backend
progress hook, the stop waited for the whole batch (tens of seconds on 2 cores); the goal is <= 5 s.
Prints ``BENCH <stage>_pause_to_stopped_s=…`` and ``BENCH <stage>_cancel_to_stopped_s=…`` for ``generate`` and
``ensemble``, as each is measured; for the load, the reference from the same run: ``BENCH <stage>_decode_step_s``
(the median time between two decode steps of the job) and each stop time in steps (``…_stopped_steps``: the
design bound is one step plus the 0.2 s between two checks of the flag), and ``BENCH <stage>_tok_s`` (the job's
own rate).
``python bench/stop.py [--model smollm2-135m-instruct] [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curate import jobs  # noqa: E402
from curate.mixture import ModelPool  # noqa: E402
from curate.stage import StageContext  # noqa: E402
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


#: The time of every call of a backend's progress hook (one per decode step), recorded by :func:`_record_steps`.
STEPS: list[float] = []


def _record_steps() -> None:
    """Wrap StageContext.generation_hook so every call of the hook (a decode step) is timed: the reference a
    stop is measured against, in the same process and under the same load."""
    real = StageContext.generation_hook

    def generation_hook(self, *args, **kwargs):
        hook = real(self, *args, **kwargs)

        def timed(tokens: int) -> None:
            STEPS.append(time.monotonic())
            hook(tokens)
        return timed
    StageContext.generation_hook = generation_hook


def _step_s(since: float) -> float:
    """The median time between two decode steps after ``since``."""
    gaps = [b - a for a, b in zip(STEPS, STEPS[1:]) if a >= since]
    return statistics.median(gaps) if gaps else float("nan")


def _stop_time(store: Store, job_id: str, request, final: str) -> float:
    _mid_call(store, job_id)
    t0 = time.monotonic()
    assert request(store, job_id), f"the request was not recorded ({store.job_state(job_id)})"
    _wait(store, job_id, lambda j: j["state"] in (final, "failed", "done"), timeout=300, poll=0.02)
    dt = time.monotonic() - t0
    state = store.job_state(job_id)
    assert state == final, f"job {job_id} ended {state}: {store.get_job(job_id)['error']}"
    return dt


def _measure(runner: jobs.JobRunner, store: Store, kind: str, config: dict) -> None:
    """Pause mid-call, resume, cancel mid-call; prints the two times (and the job's tokens/s, for the load)."""
    job_id = jobs.start_job(store, kind, config)
    t_start = time.monotonic()
    runner.submit(job_id)
    pause_s = _stop_time(store, job_id, jobs.pause, "paused")
    step_s = _step_s(t_start)
    print(f"BENCH {kind}_pause_to_stopped_s={pause_s:.2f}", flush=True)
    print(f"BENCH {kind}_decode_step_s={step_s:.2f}", flush=True)
    print(f"BENCH {kind}_pause_to_stopped_steps={pause_s / step_s:.2f}", flush=True)
    runner.join(60)
    t_resume = time.monotonic()
    runner.submit(job_id)  # resume: it continues from what is stored
    cancel_s = _stop_time(store, job_id, jobs.cancel, "cancelled")
    print(f"BENCH {kind}_cancel_to_stopped_s={cancel_s:.2f}", flush=True)
    print(f"BENCH {kind}_cancel_to_stopped_steps={cancel_s / _step_s(t_resume):.2f}", flush=True)
    print(f"BENCH {kind}_tok_s={store.get_job(job_id)['progress'].get('tok_s') or 0:.2f}", flush=True)
    runner.join(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    _record_steps()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "stop.db")
        pool = ModelPool()
        pool.get(args.model)  # loaded once, before the clock (as in the app after its first job)
        runner = jobs.JobRunner(db, pool)
        with Store(db) as store:
            _measure(runner, store, "generate", {
                "instructions": 200, "instruction_models": [{"model": args.model}],
                "instance_models": [{"model": args.model}], "batch_size": args.batch_size})
            _candidates(store, args.model)
            _measure(runner, store, "ensemble", {"models": [args.model], "batch_size": args.batch_size})


if __name__ == "__main__":
    main()
