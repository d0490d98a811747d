"""Output ensembling (DESIGN.md §2.4): extra zero-shot outputs from instruction-tuned models, then the
consensus rule over all outputs of each instance, stored with the whole pairwise matrix.

1. For every OK instance and every ensembling model: one greedy output (max 256 new tokens) with the
   reference prompt ``instruction + "\\n" + input``, or — when the style is "chat" and the model has a chat
   template — the same text as a user message in the model's chat template. The style used is recorded per
   output. Batched, one row per (instance, model, style), resumable: re-running fills only what is missing.
2. Consensus over o0 (the generator's output) and the extra outputs, in model order
   (:func:`curate.consensus.consensus`); the matrix, per-output scores, choice and reason are stored, so
   re-thresholding is a query (:meth:`curate.store.Store.count_passing`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from .consensus import consensus
from .generate import Stopped
from .lm.base import GenParams
from .mixture import ModelPool
from .store import Store

DEFAULT_ENSEMBLE_MODELS = ("smollm2-135m-instruct", "qwen2.5-0.5b-instruct")


class EnsembleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=lambda: list(DEFAULT_ENSEMBLE_MODELS), min_length=1)
    prompt_style: Literal["chat", "reference"] = Field(
        "chat", description="chat: the model's chat template where it has one; reference: instruction\\ninput")
    styles: dict[str, Literal["chat", "reference"]] = Field(default_factory=dict,
                                                             description="per-model override of prompt_style")
    threshold: float = Field(0.01, ge=0.0, le=1.0)
    batch_size: int = Field(8, ge=1, le=256)
    max_new_tokens: int = Field(256, ge=1)
    consensus_only: bool = False


@dataclass
class EnsembleProgress:
    stage: str = "starting"
    outputs: Counter = field(default_factory=Counter)
    total: int = 0
    consensus: Counter = field(default_factory=Counter)
    tokens: int = 0
    gen_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"stage": self.stage, "outputs": dict(self.outputs), "total": self.total,
                "consensus": dict(self.consensus), "tokens": self.tokens,
                "tok_s": round(self.tokens / self.gen_seconds, 2) if self.gen_seconds else 0.0,
                "warnings": list(self.warnings)}


def reference_prompt(instruction: str, input: str) -> str:
    """The reference zero-shot prompt: ``instruction + "\\n" + input``."""
    return instruction + "\n" + input


def _style_for(lm, wanted: str) -> str:
    return "chat" if wanted == "chat" and getattr(lm, "supports_chat", False) else "reference"


def run_ensemble(store: Store, config: EnsembleConfig, pool: ModelPool | None = None, *,
                 job_id: str | None = None, on_progress: Callable | None = None,
                 should_stop: Callable[[], bool] | None = None) -> EnsembleProgress:
    """Fill missing ensemble outputs, then (re)compute consensus where outputs changed.

    Raises :class:`~curate.generate.Stopped` when asked to stop between batches (stored rows stay).
    """
    pool = pool or ModelPool()
    report = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)
    prog = EnsembleProgress(total=store.count_instances("ok"))
    if not config.consensus_only:
        for position, spec in enumerate(config.models, start=1):
            lm = pool.get(spec)
            style = _style_for(lm, config.styles.get(spec, config.prompt_style))
            if style != config.styles.get(spec, config.prompt_style):
                prog.warnings.append(f"{spec} has no chat template: using the reference prompt")
            params = GenParams(temperature=0.0, max_new_tokens=config.max_new_tokens,
                               style="chat" if style == "chat" else "completion")
            prog.stage = f"outputs {spec}"
            while True:
                todo = store.instances_missing_output(spec, style, limit=config.batch_size)
                report(prog)
                if not todo:
                    break
                if stop():
                    raise Stopped()
                t0 = time.perf_counter()
                outs = lm.generate([reference_prompt(r["instruction"], r["input"]) for r in todo], params)
                prog.gen_seconds += time.perf_counter() - t0
                prog.tokens += sum(o.completion_tokens for o in outs)
                store.add_outputs([{"instance_id": r["id"], "position": position, "model_id": spec,
                                    "params": params.as_record(), "prompt_style": style, "text": o.text,
                                    "finish_reason": o.finish_reason, "completion_tokens": o.completion_tokens,
                                    "job_id": job_id} for r, o in zip(todo, outs)])
                prog.outputs[spec] += len(todo)
    prog.stage = "consensus"
    compute_consensus(store, config.threshold, progress=prog, should_stop=stop)
    prog.stage = "done"
    report(prog)
    return prog


def compute_consensus(store: Store, threshold: float = 0.01, *, progress: EnsembleProgress | None = None,
                      should_stop: Callable[[], bool] | None = None, batch: int = 500) -> Counter:
    """Consensus for every instance whose outputs changed since it was last computed. Returns reason counts."""
    counts: Counter = Counter()
    stop = should_stop or (lambda: False)
    while True:
        todo = store.instances_needing_consensus(min_outputs=2, limit=batch)
        if not todo:
            return counts
        if stop():
            raise Stopped()
        rows = []
        for r in todo:
            outs = store.outputs_for(r["id"])
            res = consensus([o["text"] for o in outs], threshold=threshold)
            rows.append({
                "instance_id": r["id"], "k": len(outs), "output_ids": [o["id"] for o in outs],
                "models": [o["model_id"] for o in outs], "chosen_index": res.chosen_index,
                "chosen_nonempty": res.chosen_index is not None and res.reason != "empty",
                "reason": res.reason, "min_pairwise": res.min_pairwise, "pairwise": res.pairwise,
                "scores": res.scores, "tokenizer": res.tokenizer, "threshold": threshold})
            counts[res.reason] += 1
            if progress is not None:
                progress.consensus[res.reason] += 1
        store.save_consensus(rows)
