"""The embedding stage: the instruction + input of a selection pool's candidates embedded with a
sentence-transformers model into the store's cache (:func:`curate.select.embed_pool`), chunk by chunk, so a
stopped run resumes; QDIT selection and near-duplicate finding then read the cache. ``curate embed`` and the
Select tab run it as a job.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from .engine import EngineSettings, open_engine
from .select import embed_pool, load_pool
from .stage import StageContext

__all__ = ["Config", "check", "run"]


class Config(EngineSettings):
    """Embedding a selection pool into the store's cache as a background job; the engine fields
    (:class:`~curate.engine.EngineSettings`) say where the embedding calls run."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("all-minilm-l6-v2", min_length=1, description="embedding model (embedded name, folder, "
                                                                     "HF id)")
    source: str = Field("passing", description="the pool: accepted | passing | all")
    tau: float = Field(0.01, ge=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=4096, description="texts per embedding batch")


def check(store, config: Config) -> None:
    """Before a job is created: the pool exists and is not empty (SelectionError naming how to fill it)."""
    load_pool(store, config.source, tau=config.tau, quality="none")


def run(store, config: Config, ctx: StageContext) -> dict:
    """Embed what is missing from the cache; returns {"model", "cached", "computed"}.
    Raises SelectionError for an unknown or empty pool (naming how to fill it)."""
    candidates = load_pool(store, config.source, tau=config.tau, quality="none")
    phase = f"embedding with {config.model}"
    ctx.report(phase=phase, done=0, total=len(candidates.ids), unit="candidates")

    def progress(done: int, total: int) -> None:  # after each stored chunk: a stop here loses nothing
        cached = len(candidates.ids) - total
        ctx.report(phase=phase, done=cached + done, total=len(candidates.ids), unit="candidates")
        ctx.check_stop()

    engine = open_engine(config, ctx.pool)
    try:
        _, stats = embed_pool(store, candidates, config.model, batch_size=config.batch_size, progress=progress,
                              engine=engine)
    finally:
        engine.close()
    n = len(candidates.ids)
    ctx.report(phase="done", done=n, total=n, unit="candidates", result=stats)
    return stats
