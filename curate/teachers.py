"""Teacher compatibility: which models of the mixture teach a given student best (docs/ARCHITECTURE.md,
"Teacher compatibility (CAR)").

"Stronger Models are NOT Stronger Teachers" (Xu et al., 2024) ranks teachers T for a student S by the
Compatibility-Adjusted Reward::

    CAR(T, S) = mean reward r(x, y_T) / (1 + beta * L),   L = S's mean per-token NLL of T's responses y_T

The teachers are the models that wrote outputs (``outputs.model_id``: the generator at position 0 and the
ensemblers), over a deterministic sample of instances (``Store.sample_outputs``). The reward comes from a
pluggable scorer (:mod:`curate.quality`; offline the default is a labelled proxy, consensus agreement).
L is token-weighted: Σ NLL over every token of the teacher's responses / their token count, each response
scored given the instruction prompt the teachers got (the student's chat template where it has one, else
``instruction + "\\n" + input``). beta is the ``car_beta`` setting, 1.0 by default: the paper's value is not
confirmed here. A reward that can be negative (a reward model's logit) makes the ratio hard to read: a
larger loss then *raises* CAR; prefer non-negative rewards (a judge's 1-10, the proxy) or read reward and
loss side by side.

Every number is stored (per-output NLL under scorer ``nll:<student>``, names ``nll`` and ``tokens``; rewards
as in :mod:`curate.quality`), so :func:`compute_teacher_stats` computes only what is missing and
:func:`teacher_ranking` is a query.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

from pydantic import ConfigDict, Field

from .engine import EngineSettings, LocalEngine, open_engine, ordered
from .errors import BackendError, ScorerError, Stopped
from .mixture import MixtureEntry
from .prompts import reference_prompt
from .quality import DEFAULT_SCORER, Scorer, load_scorer, score_outputs, scorer_name, stage_scorer
from .stage import StageContext

__all__ = ["Config", "check", "run", "student_key", "nll_scorer_name", "student_prompt", "compute_teacher_stats", "teacher_ranking",
           "mixture_weights_from_car", "format_mixture", "car", "TASK_TYPES"]

TASK_TYPES = ("all", "A", "B")
Progress = Callable[[str, int, int], None]


def car(reward: float, loss: float, beta: float) -> float:
    """CAR = reward / (1 + beta * loss)."""
    return reward / (1.0 + beta * loss)


def _check_beta(beta: float) -> float:
    if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ScorerError(f"beta must be a number >= 0 (got {beta!r}); set --beta or car_beta in the settings "
                          "(default 1.0; the paper's value is not confirmed)")
    return float(beta)


def student_key(student: Any) -> str:
    """The name a student's NLLs are stored under: an LM's ``model_id``, or a spec string (an
    ``openai:<model>@<url>`` spec without its URLs: the same model on another server is the same student)."""
    if not isinstance(student, str):
        return student.model_id
    s = student.strip()
    return s.split("@http", 1)[0] if s.startswith("openai:") and "@" in s else s


def nll_scorer_name(student: Any) -> str:
    return f"nll:{student_key(student)}"


def student_prompt(lm: Any, instruction: str, input: str) -> tuple[str, str]:
    """(prompt text, style) the student reads a teacher's response after: its chat template's user turn with
    the generation prompt when it has a tokenizer with one ("chat"), else ``instruction + "\\n" + input``."""
    text = reference_prompt(instruction, input)
    tok = getattr(lm, "tokenizer", None)
    if getattr(lm, "supports_chat", False) and tok is not None and getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                       add_generation_prompt=True), "chat"
    return text, "reference"


def compute_teacher_stats(store, student: Any, scorer: Scorer | str, *, limit: int | None = None,
                          batch_size: int = 8, student_name: str | None = None,
                          progress: Progress | None = None,
                          should_stop: Callable[[], bool] | None = None, engine: Any = None) -> dict[str, Any]:
    """Compute what CAR needs and is not stored yet, over the sample of ``limit`` instances (None: all):

    1. the student's per-token NLL of every sampled output given its instruction prompt (``student.loglik``,
       ``batch_size`` pairs a call), stored under ``nll:<student_name or student.model_id>``;
    2. the reward of every sampled output by ``scorer`` (a Scorer or its spec; :func:`curate.quality.score_outputs`).

    Each batch is stored as it is done, so a stopped run resumes and a repeated run computes nothing.
    ``engine`` (:mod:`curate.engine`; default: this process) runs the loglik calls, under ``student_name``'s spec
    (several batches in flight on Ray); the driver builds the prompts with ``student`` and writes.
    Returns {"outputs", "nll_computed", "rewards_computed", "unscored", "seconds"}.
    Raises ScorerError when the store has no outputs, ``limit`` < 1, or the student cannot score
    log-likelihoods.
    """
    t0 = time.perf_counter()
    if store.count_outputs() == 0:
        raise ScorerError(f"no outputs in {store.path}: the teachers are the models that wrote outputs, so run "
                          "`curate generate` and `curate ensemble` first")
    if limit is not None and limit < 1:
        raise ScorerError(f"--limit must be at least 1 instance (got {limit})")
    if not callable(getattr(student, "loglik", None)):
        raise ScorerError(f"the student {student!r} has no loglik method; use a language model spec "
                          "(an embedded name, a Hugging Face id or folder, or a vLLM server) as --student")
    if isinstance(scorer, str):
        scorer = load_scorer(scorer, store=store)
    name = nll_scorer_name(student_name or student)
    todo = store.sample_outputs(limit, missing=name, missing_names=("nll",))
    spec = student_name or student_key(student)
    if engine is None:
        from .mixture import ModelPool
        engine = LocalEngine(ModelPool({spec: student}))
    computed, cursor = 0, {"start": 0}

    def next_job(in_flight: int):
        start = cursor["start"]
        if start >= len(todo) or (should_stop is not None and should_stop()):
            return None
        rows = todo[start:start + batch_size]
        cursor["start"] = start + len(rows)
        prompts = [student_prompt(student, r["instruction"], r["input"]) for r in rows]
        return (start, rows, prompts), lambda: engine.submit(spec, "loglik", [p for p, _ in prompts],
                                                             [r["text"] for r in rows])

    for (start, rows, prompts), call in ordered(engine, next_job):
        try:
            nlls = call.result()
        except BackendError as exc:
            raise ScorerError(
                f"the student {student_key(student)} cannot score log-likelihoods: {exc}. Use a transformers model "
                "(an embedded name, a Hugging Face id or a folder) or a vLLM server as --student.") from None
        records = []
        for r, (_, style), nll in zip(rows, prompts, nlls):
            detail = {"student": student_key(student_name or student), "prompt_style": style}
            records += [{"subject_id": r["id"], "scorer": name, "name": "nll",
                         "value": sum(nll) / len(nll) if nll else 0.0, "detail": detail},
                        {"subject_id": r["id"], "scorer": name, "name": "tokens", "value": float(len(nll)),
                         "detail": detail}]
        store.set_scores(records)
        computed += len(rows)
        if progress is not None:
            progress(f"student loss ({student_key(student_name or student)})", start + len(rows), len(todo))
    rewards = score_outputs(store, scorer, limit=limit, progress=progress, should_stop=should_stop)
    return {"outputs": len(store.sample_outputs(limit)), "nll_computed": computed,
            "rewards_computed": rewards["scored"], "unscored": rewards["unscored"],
            "seconds": time.perf_counter() - t0}


def teacher_ranking(store, student: Any, scorer: Scorer | str, beta: float = 1.0, *,
                    limit: int | None = None) -> list[dict]:
    """The teachers ranked by CAR for ``student`` (an LM or its spec / model id) and ``scorer`` (a Scorer or
    its spec), from stored numbers only (fast), over the sample of ``limit`` instances (None: every output
    scored so far).

    One row per (task type, teacher), task types "all", "A", "B" in that order, each ranked by CAR
    (highest first, ties by model name; teachers with no scored output last): task_type, rank, model, n
    (outputs with both numbers), reward (mean), loss (L: Σ NLL / Σ tokens), car, tokens, unscored (outputs
    the scorer could not score), scorer, student, beta. Raises ScorerError for beta < 0.
    """
    beta = _check_beta(beta)
    rs = scorer_name(scorer) if isinstance(scorer, str) else scorer.name
    ls = nll_scorer_name(student)
    groups: dict[tuple[str, str], dict] = {}
    for r in store.teacher_stats(rs, ls, limit):
        for tt in ("all", r["task_type"]):
            g = groups.setdefault((tt, r["model"]), {"n": 0, "reward_sum": 0.0, "nll_sum": 0.0, "tokens": 0.0,
                                                     "unscored": 0})
            for k in g:
                g[k] += r[k] or 0
    out = []
    for tt in TASK_TYPES:
        rows = []
        for (t, model), g in groups.items():
            if t != tt:
                continue
            reward = g["reward_sum"] / g["n"] if g["n"] else None
            loss = g["nll_sum"] / g["tokens"] if g["tokens"] else (0.0 if g["n"] else None)
            rows.append({"task_type": tt, "model": model, "n": g["n"], "reward": reward, "loss": loss,
                         "car": None if reward is None else car(reward, loss, beta), "tokens": int(g["tokens"]),
                         "unscored": g["unscored"], "scorer": rs, "student": student_key(student), "beta": beta})
        rows.sort(key=lambda r: (r["car"] is None, -(r["car"] or 0.0), r["model"]))
        out += [{**r, "rank": i} for i, r in enumerate(rows, start=1)]
    return out


def mixture_weights_from_car(ranking: Sequence[dict], task_type: str = "all") -> list[MixtureEntry]:
    """Mixture entries weighting each teacher of ``task_type`` by its CAR (normalised to sum to 1), best
    first, for ``GenerateConfig(instruction_models=...)`` or, through :func:`format_mixture`, ``--models``.
    Teachers with CAR <= 0 or none are left out. Raises ScorerError when no teacher has a positive CAR."""
    if task_type not in TASK_TYPES:
        raise ScorerError(f"unknown task type {task_type!r}; one of {', '.join(TASK_TYPES)}")
    rows = [r for r in ranking if r["task_type"] == task_type and r["car"] is not None and r["car"] > 0]
    if not rows:
        raise ScorerError(f"no teacher has a positive CAR for task type {task_type}: run `curate teachers` "
                          "(or compute_teacher_stats) first, or use a scorer whose rewards are positive")
    total = sum(r["car"] for r in rows)
    return [MixtureEntry(model=r["model"], weight=r["car"] / total)
            for r in sorted(rows, key=lambda r: (-r["car"], r["model"]))]


def format_mixture(entries: Sequence[MixtureEntry], digits: int = 4) -> str:
    """``"model:weight,..."`` as ``--models`` and :func:`curate.mixture.parse_mixture` read it."""
    return ",".join(f"{e.model}:{max(round(e.weight, digits), 10.0 ** -digits):g}" for e in entries)


# -- the Stage contract (curate.stage) ---------------------------------------------------------------------
class Config(EngineSettings):
    """A teacher-compatibility run (:func:`compute_teacher_stats`) as a background job; the engine fields
    (:class:`~curate.engine.EngineSettings`) say where the student's loglik calls and the scorer's calls run
    (``proxy:consensus`` reads the store: it always scores in the job's process)."""

    model_config = ConfigDict(extra="forbid")

    student: str = Field("smollm2-135m-instruct", min_length=1, description="the student model spec")
    scorer: str = Field(DEFAULT_SCORER, min_length=1, description="quality scorer spec (curate.quality)")
    limit: int | None = Field(None, ge=1, description="instances sampled (None: all)")
    batch_size: int = Field(8, ge=1, le=256)


def check(store, config: Config) -> None:
    """Before a job is created: the store has outputs (the teachers) and the scorer spec is known.
    Raises ScorerError naming the fix."""
    if store.count_outputs() == 0:
        raise ScorerError(f"no outputs in {store.path}: the teachers are the models that wrote outputs, so run "
                          "`curate generate` and `curate ensemble` first")
    scorer_name(config.scorer)


def run(store, config: Config, ctx: StageContext) -> dict:
    """The teachers stage: the student's losses and the rewards CAR needs, stored; returns the summary of
    :func:`compute_teacher_stats`."""
    ctx.report(phase=f"loading the student {config.student}")
    student = ctx.pool.get(config.student)
    engine = open_engine(config, ctx.pool)
    try:
        scorer = stage_scorer(config.scorer, engine, store=store, pool=ctx.pool, batch_size=config.batch_size)
        result = compute_teacher_stats(
            store, student, scorer, limit=config.limit, batch_size=config.batch_size, student_name=config.student,
            progress=lambda phase, done, total: ctx.report(phase=phase, done=done, total=total, unit="outputs"),
            should_stop=ctx.should_stop, engine=engine)
    finally:
        engine.close()
    if ctx.should_stop():
        raise Stopped()
    result = {**result, "label": scorer.label}
    ctx.report(phase="done", done=result["outputs"], total=result["outputs"], unit="outputs", result=result)
    return result
