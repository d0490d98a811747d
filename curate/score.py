"""The scoring stage: every ensemble output of the store scored by one quality scorer (:mod:`curate.quality`:
a reward model, an LLM judge, or the offline consensus proxy), each batch stored as it is done, so a stopped
run resumes and a repeated run scores nothing twice. ``curate score`` runs it as a job.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .errors import ScorerError, Stopped
from .quality import DEFAULT_SCORER, load_scorer, score_outputs, scorer_name
from .stage import StageContext

__all__ = ["Config", "check", "run"]


class Config(BaseModel):
    """Scoring the stored outputs (:func:`curate.quality.score_outputs`) as a background job."""

    model_config = ConfigDict(extra="forbid")

    scorer: str = Field(DEFAULT_SCORER, min_length=1, description="quality scorer spec (curate.quality)")
    limit: int | None = Field(None, ge=1, description="only the outputs of a deterministic sample of N candidates")
    batch_size: int = Field(8, ge=1, le=256, description="outputs per scorer call")


def check(store, config: Config) -> None:
    """Before a job is created: the store has outputs and the scorer spec is known (ScorerError otherwise)."""
    if store.count_outputs() == 0:
        raise ScorerError(f"no outputs in {store.path} to score: run `curate ensemble` first")
    scorer_name(config.scorer)


def run(store, config: Config, ctx: StageContext) -> dict:
    """Score what is not scored yet; returns {"scorer", "label", "scored", "unscored"} of this run."""
    check(store, config)
    ctx.report(phase=f"loading {config.scorer}")
    scorer = load_scorer(config.scorer, store=store, batch_size=config.batch_size)
    counts = score_outputs(
        store, scorer, limit=config.limit, batch_size=config.batch_size, should_stop=ctx.should_stop,
        progress=lambda phase, done, total: ctx.report(phase=phase, done=done, total=total, unit="outputs"))
    if ctx.should_stop():
        raise Stopped()
    result = {"scorer": scorer.name, "label": scorer.label, **counts}
    done = counts["scored"] + counts["unscored"]
    ctx.report(phase="done", done=done, total=done, unit="outputs", result=result)
    return result
