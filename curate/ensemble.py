"""Output ensembling (docs/ARCHITECTURE.md, "Output ensembling and consensus"): extra zero-shot outputs from instruction-tuned models, then the
consensus rule over all outputs of each instance, stored with the whole pairwise matrix.

1. For every OK instance and every ensembling model: one greedy output (max 256 new tokens) with the
   reference prompt ``instruction + "\\n" + input``, or — when the style is "chat" and the model has a chat
   template — the same text as a user message in the model's chat template. The style used is recorded per
   output. Batched, one row per (instance, model, style), resumable: re-running fills only what is missing.
2. Consensus over o0 (the generator's output) and the extra outputs, in model order
   (:func:`curate.consensus.consensus`); the matrix, per-output scores, choice and reason are stored, so
   re-thresholding is a query (:meth:`curate.store.Store.count_passing`).

``consensus_only`` (``curate ensemble --no-generate``) skips step 1: consensus over the stored outputs, e.g. other
models' outputs imported with ``curate import --as-outputs`` (docs/ARCHITECTURE.md, "Importing data"); candidates
with a single output get none, and a warning says how many. Both steps walk the candidates by a seq cursor.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

from pydantic import ConfigDict, Field

from .consensus import consensus_many
from .engine import EngineSettings, open_engine, ordered
from .errors import Stopped
from .lm.base import GenParams
from .mixture import ModelPool, check_models
from .prompts import reference_prompt
from .stage import Progress, StageContext, live_tokens
from .store import Store
from .store.consensus import consensus_values
from .tune import default_batch_size

DEFAULT_ENSEMBLE_MODELS = ("smollm2-135m-instruct", "qwen2.5-0.5b-instruct")


class EnsembleConfig(EngineSettings):
    """An ensembling run; the engine fields (:class:`~curate.engine.EngineSettings`) say where the model calls
    run (the stored rows are the same on every engine)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=lambda: list(DEFAULT_ENSEMBLE_MODELS), min_length=1)
    prompt_style: Literal["chat", "reference"] = Field(
        "chat", description="chat: the model's chat template where it has one; reference: instruction\\ninput")
    styles: dict[str, Literal["chat", "reference"]] = Field(default_factory=dict,
                                                             description="per-model override of prompt_style")
    threshold: float = Field(0.01, ge=0.0, le=1.0)
    batch_size: int = Field(default_factory=default_batch_size, ge=1, le=256)  # 8, or this machine's tuned pick
    max_new_tokens: int = Field(256, ge=1)
    consensus_only: bool = Field(False, description="run no model: consensus over the stored outputs only "
                                                    "(`curate ensemble --no-generate`), e.g. imported ones")
    workers: int | None = Field(None, ge=1, description="processes for the consensus rule on large runs "
                                                        "(None: one per CPU; 1: the job's own)")


@dataclass
class EnsembleStats:
    """The figures of one ensembling run (what it reports through the stage context, and returns)."""

    stage: str = "starting"
    outputs: Counter = field(default_factory=Counter)
    total: int = 0
    consensus: Counter = field(default_factory=Counter)
    tokens: int = 0
    gen_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def tok_s(self) -> float:
        return round(self.tokens / self.gen_seconds, 2) if self.gen_seconds else 0.0

    def as_dict(self) -> dict:
        return {"stage": self.stage, "outputs": dict(self.outputs), "total": self.total,
                "consensus": dict(self.consensus), "tokens": self.tokens, "tok_s": self.tok_s,
                "warnings": list(self.warnings)}


def _style_for(lm, wanted: str) -> str:
    return "chat" if wanted == "chat" and getattr(lm, "supports_chat", False) else "reference"


def run_ensemble(store: Store, config: EnsembleConfig, pool: ModelPool | None = None, *,
                 job_id: str | None = None, on_progress: Callable[[Progress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> EnsembleStats:
    """Fill missing ensemble outputs, then (re)compute consensus where outputs changed: the stage's
    :func:`run` with a context built from these arguments; returns the run's figures.

    Raises :class:`~curate.errors.Stopped` when asked to stop between batches (stored rows stay).
    """
    ctx = StageContext(job_id=job_id, pool=pool, on_progress=on_progress, should_stop=should_stop)
    return _ensemble(store, config, ctx)


def _report(ctx: StageContext, prog: EnsembleStats, done: int, total: int, unit: str) -> None:
    ctx.report(phase=prog.stage, done=done, total=total, unit=unit, tok_s=prog.tok_s, warnings=prog.warnings,
               tokens=prog.tokens, outputs=dict(prog.outputs), consensus=dict(prog.consensus))


def _ensemble(store: Store, config: EnsembleConfig, ctx: StageContext) -> EnsembleStats:
    prog = EnsembleStats(total=store.count_candidates("ok"))
    if not config.consensus_only:
        engine = open_engine(config, ctx.pool)
        try:
            for position, spec in enumerate(config.models, start=1):
                _outputs(store, config, ctx, engine, prog, position, spec)
        finally:
            engine.close()
    prog.stage = "consensus"
    _report(ctx, prog, 0, prog.total, "candidates")
    with store.bulk_writes():
        compute_consensus(store, config.threshold, progress=prog, should_stop=ctx.should_stop,
                          workers=config.workers)
    single = store.count_candidates_with_outputs_below(2)
    if single:
        prog.warnings.append(
            f"{single} candidate{'s have' if single != 1 else ' has'} only one output (o0), so no consensus: "
            + ("import other models' outputs (curate import FILE --as-outputs --model NAME) or run curate ensemble "
               "without --no-generate" if config.consensus_only else "add ensembling models"))
    prog.stage = "done"
    done = sum(prog.consensus.values())
    _report(ctx, prog, done, done, "consensus rows")
    return prog


def _outputs(store: Store, config: EnsembleConfig, ctx: StageContext, engine, prog: EnsembleStats, position: int,
             spec: str) -> None:
    """Model ``spec``'s missing outputs, batch by batch in seq order (several in flight on an engine with a
    window), each batch stored when it comes back."""
    lm = engine.lm(spec)
    style = _style_for(lm, config.styles.get(spec, config.prompt_style))
    if style != config.styles.get(spec, config.prompt_style):
        prog.warnings.append(f"{spec} has no chat template: using the reference prompt")
    params = GenParams(temperature=0.0, max_new_tokens=config.max_new_tokens,
                       style="chat" if style == "chat" else "completion")
    prog.stage = f"outputs {spec}"
    missing = len(store.candidates_missing_output(spec, style, limit=-1))
    cursor = {"after": 0}

    def next_job(in_flight: int):
        _report(ctx, prog, prog.outputs[spec], missing, "outputs")
        todo = store.candidates_missing_output(spec, style, limit=config.batch_size, after_seq=cursor["after"])
        if not todo:
            return None
        ctx.check_stop()
        cursor["after"] = todo[-1]["seq"]
        prompts = [reference_prompt(r["instruction"], r["input"]) for r in todo]

        def submit():
            t0 = time.perf_counter()
            hook = ctx.generation_hook(live_tokens(prog.tokens, prog.gen_seconds, t0))
            return t0, engine.submit(spec, "generate", prompts, params, progress=hook)
        return todo, submit

    for todo, (t0, call) in ordered(engine, next_job):
        outs = call.result()
        prog.gen_seconds += time.perf_counter() - t0
        prog.tokens += sum(o.completion_tokens for o in outs)
        store.add_outputs([{"candidate_id": r["id"], "position": position, "model_id": spec,
                            "params": params.as_record(), "prompt_style": style, "text": o.text,
                            "finish_reason": o.finish_reason, "completion_tokens": o.completion_tokens,
                            "job_id": ctx.job_id} for r, o in zip(todo, outs)])
        prog.outputs[spec] += len(todo)
    _report(ctx, prog, prog.outputs[spec], missing, "outputs")


#: candidates to do from which consensus runs on several processes (below it, starting them costs more)
PARALLEL_FROM = 5000
_WORKER_STORES: dict[str, Store] = {}  # a worker process's read connection, per store file


def _consensus_batches(store: Store, batch: int) -> Iterator[list[str]]:
    """The ids of the candidates whose consensus is missing or stale, ``batch`` at a time by a seq cursor."""
    after = 0
    while True:
        todo = store.candidates_needing_consensus(min_outputs=2, limit=batch, after_seq=after)
        if not todo:
            return
        after = todo[-1]["seq"]
        yield [r["id"] for r in todo]


def consensus_rows(store: Store | str, ids: list[str], threshold: float) -> tuple[list[tuple], list[str]]:
    """The consensus rows of candidates ``ids`` over their stored outputs, encoded for
    :meth:`Store.save_consensus_values`, and their reasons. ``store``: a Store, or (in a worker process) the path
    of the store file, opened once per process for reading."""
    if isinstance(store, str):
        store = _WORKER_STORES.get(store) or _WORKER_STORES.setdefault(store, Store(store))
    outputs = store.output_texts_for(ids)
    results = consensus_many([[text for _, _, text in outputs[cid]] for cid in ids], threshold)
    rows = [{"candidate_id": cid, "k": len(outputs[cid]), "output_ids": [oid for oid, _, _ in outputs[cid]],
             "models": [model for _, model, _ in outputs[cid]], "chosen_index": res.chosen_index,
             "chosen_nonempty": res.chosen_index is not None and res.reason != "empty", "reason": res.reason,
             "min_pairwise": res.min_pairwise, "pairwise": res.pairwise, "scores": res.scores,
             "tokenizer": res.tokenizer, "threshold": threshold} for cid, res in zip(ids, results)]
    return consensus_values(rows), [res.reason for res in results]


def compute_consensus(store: Store, threshold: float = 0.01, *, progress: EnsembleStats | None = None,
                      should_stop: Callable[[], bool] | None = None, batch: int = 500, workers: int | None = None,
                      parallel_from: int = PARALLEL_FROM) -> Counter:
    """Consensus for every instance whose outputs changed since it was last computed. Returns reason counts.

    With at least ``parallel_from`` candidates to do and a store file, batches run in ``workers`` processes
    (None: one per CPU; 1: in this one), each reading its candidates' outputs, applying the rule and encoding the
    rows; this process finds the candidates and writes the rows, a few batches behind. The rows are the same
    either way (:func:`curate.consensus.consensus` is a pure function)."""
    counts: Counter = Counter()
    stop = should_stop or (lambda: False)
    n = (os.cpu_count() or 1) if workers is None else max(1, int(workers))

    def save(values: list[tuple], reasons: list[str]) -> None:
        store.save_consensus_values(values)
        counts.update(reasons)
        if progress is not None:
            progress.consensus.update(reasons)

    if n == 1 or store.path == ":memory:" or (
            parallel_from > 0 and store.count_needing_consensus(parallel_from) < parallel_from):
        for ids in _consensus_batches(store, batch):
            if stop():
                raise Stopped()
            save(*consensus_rows(store, ids, threshold))
        return counts
    # spawn, not fork: the app runs jobs on threads, and a forked child of a threaded process can deadlock
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
    window: deque = deque()
    broken = False  # workers that cannot start (a __main__ a spawned process cannot import, …): the rest runs here

    def finish(ids: list[str], fut) -> None:
        nonlocal broken
        try:
            result = fut.result() if fut is not None else None
        except BrokenProcessPool:
            broken, result = True, None
        save(*(result or consensus_rows(store, ids, threshold)))

    try:
        for ids in _consensus_batches(store, batch):
            if stop():
                raise Stopped()
            fut = None
            if not broken:
                try:
                    fut = pool.submit(consensus_rows, store.path, ids, threshold)
                except BrokenProcessPool:
                    broken = True
            window.append((ids, fut))
            while len(window) > (2 * n if not broken else 0):  # bounded: a few batches in flight per worker
                finish(*window.popleft())
        while window:
            finish(*window.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return counts


# -- the Stage contract (curate.stage) ---------------------------------------------------------------------
Config = EnsembleConfig


def check(store: Store, config: EnsembleConfig) -> None:
    """The preflight: every ensembling model resolves (without loading it), unless only consensus runs.
    Raises ModelNotFoundError naming the model."""
    if not config.consensus_only:
        check_models([("ensembling models", m) for m in config.models])


def run(store: Store, config: EnsembleConfig, ctx: StageContext) -> None:
    """The ensembling stage: see the module docstring. Progress goes through ``ctx``."""
    _ensemble(store, config, ctx)
