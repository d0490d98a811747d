"""The scoring stage: every ensemble output of the store scored by one quality scorer (:mod:`curate.quality`:
a reward model, an LLM judge, or the offline consensus proxy), each batch stored as it is done, so a stopped
run resumes and a repeated run scores nothing twice. ``curate score`` runs it as a job.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from .engine import EngineSettings, check_engine, open_engine
from .errors import ScorerError, Stopped
from .quality import DEFAULT_SCORER, reads_the_store, score_outputs, scorer_name, stage_scorer
from .stage import StageContext

__all__ = ["Config", "check", "run"]


class Config(EngineSettings):
    """Scoring the stored outputs (:func:`curate.quality.score_outputs`) as a background job. With the Ray
    engine (:class:`~curate.engine.EngineSettings`) each actor loads the scorer once and scores batches, the
    driver writes them; ``proxy:consensus`` reads the store, so it always scores in the job's process."""

    model_config = ConfigDict(extra="forbid")

    scorer: str = Field(DEFAULT_SCORER, min_length=1, description="quality scorer spec (curate.quality)")
    limit: int | None = Field(None, ge=1, description="only the outputs of a deterministic sample of N candidates")
    batch_size: int = Field(8, ge=1, le=256, description="outputs per scorer call")


def check(store, config: Config) -> None:
    """Before a job is created: the store has outputs and the scorer spec is known (ScorerError otherwise)."""
    if store.count_outputs() == 0:
        raise ScorerError(f"no outputs in {store.path} to score: run `curate ensemble` first")
    scorer_name(config.scorer)
    check_engine(config.engine, config.address, config.actors)


def run(store, config: Config, ctx: StageContext) -> dict:
    """Score what is not scored yet; returns {"scorer", "label", "scored", "unscored", "engine"} of this run
    ("engine": where the scorer ran)."""
    check(store, config)
    remote = config.engine == "ray" and not reads_the_store(config.scorer)
    ctx.report(phase=f"loading {config.scorer}" + (" on the Ray actors" if remote else ""))
    engine = open_engine(config, ctx.pool) if remote else None
    try:
        scorer = stage_scorer(config.scorer, engine, store=store, pool=ctx.pool, batch_size=config.batch_size)
        counts = score_outputs(
            store, scorer, limit=config.limit, batch_size=config.batch_size, should_stop=ctx.should_stop,
            progress=lambda phase, done, total: ctx.report(phase=phase, done=done, total=total, unit="outputs"))
    finally:
        if engine is not None:
            engine.close()
    if ctx.should_stop():
        raise Stopped()
    result = {"scorer": scorer.name, "label": scorer.label, **counts,
              "engine": "ray" if remote else "local"}
    done = counts["scored"] + counts["unscored"]
    ctx.report(phase="done", done=done, total=done, unit="outputs", result=result)
    return result
