"""Ensemble-Instruct generation: instructions, then instances, from a mixture of small LMs.

The run is a loop of small steps over stored rows. Each step (one batch of prompts, possibly spread over
several models) first generates every completion of the batch and then writes the raw completions, the
parsed rows and every rejection with its reason in **one transaction**, so a run stopped at any point
(Ctrl-C, kill -9, a crash, a backend error) loses at most the batch in flight, and running it again
continues to the requested count: the target is "N kept instructions in the store", not "N more".

Everything random is keyed by stored counts, not by process state: prompt number ``n`` of a stage (the
number of completions of that stage already stored, plus its place in the batch) decides its model
(:meth:`Mixture.pick`) and its prompt RNG seed. A resumed run therefore builds the same prompts, sends them
to the same models with the same sampling seeds, and (with a deterministic model) ends with the same rows
as an uninterrupted run.

Provenance on every completion / instruction / instance row: ``model_id`` (``generator_model``), ``params``
(the sampling parameters, including the batch's sampling ``seed``), ``prompt_hash`` (sha256 of the prompt,
16 hex digits) and ``rng_seed`` (the seed of the RNG that chose and shuffled the prompt's demos).

1. Seeds are stored; the novelty index is rebuilt from all seeds plus every kept instruction.
2. Instruction stage, per task type, until the store holds the target of kept instructions of that type:
   prompts → mixture → completions → split → filters (docs/ARCHITECTURE.md, "Instruction generation") → kept / filtered(reason). Two reasons come
   on top of the six filters: ``truncated`` for the last instruction of a completion cut off by
   ``max_new_tokens`` (or the repetition guard) before its ``|EoS|``, checked first, and ``surplus`` for
   instructions past the target in the last batch (stored, never dropped). A completion with no
   instruction in it is marked unparseable (``empty`` / ``no_instruction``).
3. Instance stage: every kept instruction without an instance completion gets one instance prompt; the
   parsed instance is stored (``ok``, or ``rejected`` with the parser's reason) with the generator's output
   as output 0. Later blocks with their own instruction become extra candidates: they pass the same
   filters (else ``filtered`` with the filter's reason) and need a valid instance (else ``filtered`` with
   reason ``no_instance``); only a kept one gets its instance row (the others stay in the raw completion).
   A completion with nothing usable is marked unparseable with the reason.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import filters, parse, prompts
from .engine import EngineSettings, LocalEngine, RayEngine, open_engine, ordered
from .errors import BackendError, CurateError
from .lm.base import Completion, GenParams
from .mixture import Mixture, MixtureEntry, ModelPool, check_models
from .profile import Profile
from .rouge import NoveltyIndex
from .seeds import SeedTask, load_seeds, split_by_type
from .stage import Progress, StageContext, live_tokens
from .store import Store
from .store.reports import SURPLUS
from .tune import default_batch_size

DEFAULT_MODELS = ("smollm2-135m-instruct", "gemma3-270m")
INSTRUCTION_PARAMS = GenParams(temperature=0.7, top_k=50, top_p=1.0, max_new_tokens=256, min_new_tokens=15,
                               stop=(prompts.EOS,))
INSTANCE_PARAMS = GenParams(temperature=0.7, top_k=50, top_p=1.0, max_new_tokens=512, min_new_tokens=50,
                            stop=("\n\n", prompts.EOS))
FROM_PROMPT, FROM_INSTANCE = "instruction_prompt", "instance_completion"  # instructions.origin
CUT_OFF = ("length", "repetition")  # finish reasons after which the last instruction / example is incomplete
CONTEXT_MARGIN = 2  # tokens a backend may add around a prompt (BOS / EOS) beyond count_tokens(prompt)


def _default_mixture() -> list[MixtureEntry]:
    return [MixtureEntry(model=m) for m in DEFAULT_MODELS]


def sampling(temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
             instruction_max_tokens: int | None = None, instance_max_tokens: int | None = None) -> dict:
    """The ``instruction_params`` / ``instance_params`` of a :class:`GenerateConfig` with these overrides
    (None keeps the reference value: temperature 0.7, top-k 50, top-p 1.0, 256 / 512 new tokens). The same
    for the CLI flags and the app's Run tab. Raises pydantic's ValidationError (a ValueError) out of range."""
    common = {k: v for k, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)) if v is not None}

    def one(base: GenParams, max_tokens: int | None) -> GenParams:
        upd = dict(common)
        if max_tokens is not None:
            upd["max_new_tokens"] = int(max_tokens)
            upd["min_new_tokens"] = min(base.min_new_tokens, int(max_tokens))
        return GenParams(**{**base.model_dump(), **upd})

    return {"instruction_params": one(INSTRUCTION_PARAMS, instruction_max_tokens),
            "instance_params": one(INSTANCE_PARAMS, instance_max_tokens)}


class GenerateConfig(EngineSettings):
    """Everything a generation run needs; stored with the job for provenance. The engine fields
    (:class:`~curate.engine.EngineSettings`) say where the model calls run; they do not change the rows."""

    model_config = ConfigDict(extra="forbid")

    instructions: int = Field(ge=1, description="target number of kept instructions in the store (N >= 1)")
    task_type: Literal["A", "B", "both"] = "both"
    instances: bool = Field(True, description="also generate instances for the kept instructions")
    seeds: str | None = Field(None, description="seed file; default: the shipped Self-Instruct seeds")
    instruction_models: list[MixtureEntry] = Field(default_factory=_default_mixture, min_length=1)
    instance_models: list[MixtureEntry] = Field(default_factory=_default_mixture, min_length=1)
    assignment: Literal["weighted", "round_robin"] = "weighted"
    seed: int = 0
    batch_size: int = Field(default_factory=default_batch_size, ge=1, le=256)  # 8, or this machine's tuned pick
    instruction_demos: dict[str, int] = Field(default_factory=lambda: dict(prompts.DEFAULT_INSTRUCTION_DEMOS))
    instance_demos: dict[str, int] = Field(default_factory=lambda: dict(prompts.DEFAULT_INSTANCE_DEMOS))
    max_machine_demos: int = Field(prompts.MAX_MACHINE_DEMOS, ge=0)
    similarity_threshold: float = Field(filters.SIMILARITY_THRESHOLD, ge=0, le=1)
    instruction_params: GenParams = INSTRUCTION_PARAMS
    instance_params: GenParams = INSTANCE_PARAMS
    max_idle_batches: int = Field(25, ge=1, description="give up after this many batches in a row that keep "
                                                        "no new instruction")
    # Prompt sharing (docs/ARCHITECTURE.md, "Shared prompts"): fewer distinct prompts, so the backend's prefix
    # cache prefills a demo block once instead of once per prompt. It changes what is sampled, hence settings.
    instruction_samples: int = Field(1, ge=1, le=64, description=(
        "completions drawn from each instruction prompt: a batch holds batch_size / k distinct demo draws, each "
        "sampled k times (1: every prompt its own draw, as in the paper)"))
    shared_instance_demos: bool = Field(False, description=(
        "one instance demo block per task type for the whole run (the run's seed picks it), instead of a fresh "
        "draw of seed tasks for every instruction"))

    @model_validator(mode="after")
    def _demos(self) -> "GenerateConfig":
        for name in ("instruction_demos", "instance_demos"):
            d = getattr(self, name)
            if set(d) != {"A", "B"} or any(v < 1 for v in d.values()):
                raise ValueError(f"{name} needs positive counts for both 'A' and 'B', got {d}")
        return self


@dataclass
class GenerationStats:
    """The figures of one generation run (what it reports through the stage context, and returns)."""

    stage: str = "starting"
    target: int = 0
    kept: int = 0
    filtered: Counter = field(default_factory=Counter)
    surplus: int = 0                          # instructions past the target in the last batch (not filtered)
    candidates: int = 0                       # candidates stored (status ok)
    candidates_rejected: Counter = field(default_factory=Counter)  # auto-filtered by the instance parser
    extra_candidates: int = 0
    completions: int = 0
    unparseable: Counter = field(default_factory=Counter)
    tokens: int = 0
    gen_seconds: float = 0.0
    filter_seconds: float = 0.0               # the driver's novelty filter (and the other filters), in total
    filter_checks: int = 0                    # instructions it judged
    trimmed: dict = field(default_factory=dict)  # "stage model" -> {"prompts", "fewest", "requested", "context"}
    warnings: list[str] = field(default_factory=list)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.gen_seconds if self.gen_seconds > 0 else 0.0

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def note_trim(self, stage: str, spec: str, prompt: prompts.Prompt, context: int | None) -> None:
        """Count a prompt whose demos were cut to fit ``spec``'s context (one summary warning per model)."""
        t = self.trimmed.setdefault(f"{stage} {spec}", {"prompts": 0, "fewest": prompt.demos,
                                                         "requested": prompt.requested_demos,
                                                         "context": context})
        t["prompts"] += 1
        t["fewest"] = min(t["fewest"], prompt.demos)

    def all_warnings(self) -> list[str]:
        trims = [f"{key.split(' ', 1)[1]}: {t['prompts']} {key.split(' ', 1)[0]} prompt(s) trimmed to fit its "
                 f"context of {t['context']} tokens (down to {t['fewest']} of {t['requested']} demos)"
                 for key, t in self.trimmed.items()]
        return [*self.warnings, *trims]

    def counts(self) -> dict:
        """The figures reported as the stage's progress counts."""
        return {"kept": self.kept, "surplus": self.surplus, "candidates": self.candidates,
                "extra_candidates": self.extra_candidates,
                "completions": self.completions, "tokens": self.tokens, "filtered": dict(self.filtered),
                "candidates_rejected": dict(self.candidates_rejected), "unparseable": dict(self.unparseable)}

    def as_dict(self) -> dict:
        return {"stage": self.stage, "target": self.target, **self.counts(),
                "filter_seconds": round(self.filter_seconds, 4), "filter_checks": self.filter_checks,
                "trimmed": {k: dict(v) for k, v in self.trimmed.items()}, "tok_s": round(self.tok_s, 2),
                "warnings": self.all_warnings()}


def split_targets(n: int, task_type: str, by_type: dict[str, list[SeedTask]]) -> dict[str, int]:
    """How many kept instructions each type should reach.

    "both" splits ``n`` in the proportion of the seed types (125:50 for the shipped seeds); a type without
    seeds gets nothing. Raises CurateError for ``n <= 0`` or when the requested type has no seed tasks.
    """
    if n <= 0:
        raise CurateError(f"the number of instructions must be at least 1 (got {n})")
    if task_type in ("A", "B"):
        if not by_type[task_type]:
            other = "B" if task_type == "A" else "A"
            raise CurateError(f"the seed set has no type-{task_type} tasks, so type-{task_type} instructions "
                              f"cannot be generated; use --type {other} or add type-{task_type} seeds")
        return {task_type: n}
    na, nb = len(by_type["A"]), len(by_type["B"])
    if na + nb == 0:
        raise CurateError("the seed set is empty")
    a = round(n * na / (na + nb))
    return {t: c for t, c in (("A", a), ("B", n - a)) if c > 0 and by_type[t]} or {("A" if na else "B"): n}


@dataclass
class _Item:
    """One prompt of a batch: its model, its prompt and the seed that built it; ``row``: its instruction."""

    spec: str
    prompt: prompts.Prompt
    rng_seed: int
    row: dict | None = None
    params: GenParams | None = None        # set when generated: the call's params (with its sampling seed)
    completion: Completion | None = None
    seconds: float = 0.0


class Generator:
    """One generation run over a store. Use :func:`run_generation` unless you need the pieces.

    Raises CurateError (before anything is written) for a seed file it cannot read and for a task type
    the seeds do not have.
    """

    def __init__(self, store: Store, config: GenerateConfig, ctx: StageContext,
                 engine: LocalEngine | RayEngine | None = None):
        self.store, self.cfg, self.ctx = store, config, ctx
        self.pool, self.job_id = ctx.pool, ctx.job_id
        self._engine = engine
        self.progress = GenerationStats()
        self._instances_total: int | None = None
        self._instances_done = 0
        self.seeds: list[SeedTask] = load_seeds(config.seeds)
        self.by_type = split_by_type(self.seeds)
        self.targets = split_targets(config.instructions, config.task_type, self.by_type)
        self.instr_mix = Mixture(config.instruction_models, config.assignment, seed=f"i{config.seed}")
        self.inst_mix = Mixture(config.instance_models, config.assignment, seed=f"x{config.seed}")
        self.index = NoveltyIndex()
        self.profile = Profile()  # exclusive seconds per phase (curate.profile); the run's result carries it
        self._phase_base: dict[str, dict[str, float]] = {}  # each backend's phase_seconds when first called

    # -- helpers ----------------------------------------------------------------------------------------
    def _check_stop(self) -> None:
        self.ctx.check_stop()

    def _seed(self, *key) -> int:
        """A 32-bit seed from the run's seed and ``key`` (stable across processes, unlike ``hash``)."""
        return zlib.crc32(":".join(map(str, (self.cfg.seed, *key))).encode())

    def _context(self, spec: str) -> tuple[int | None, Callable[[str], int] | None]:
        lm = self.engine.lm(spec)
        return getattr(lm, "context_length", None), getattr(lm, "count_tokens", None)

    def _fits(self, spec: str, params: GenParams) -> prompts.Fits | None:
        ctx, count = self._context(spec)
        if not ctx or count is None:
            return None
        return lambda text: count(text) + params.max_new_tokens + CONTEXT_MARGIN <= ctx

    def _too_long(self, spec: str, stage: str, params: GenParams) -> str:
        ctx, _ = self._context(spec)
        return (f"{spec}: even with 1 demo the {stage} prompt plus max_new_tokens={params.max_new_tokens} "
                f"does not fit the model's context of {ctx} tokens; use a model with a longer context or "
                "lower max_new_tokens")

    def _generate(self, items: list[_Item], params: GenParams, call_key: tuple) -> None:
        """Fill ``item.completion`` for every item, one ``generate`` call per model (raw completion style)."""
        self._collect(self._submit(items, params, call_key))

    def _submit(self, items: list[_Item], params: GenParams, call_key: tuple) -> list[tuple]:
        """Hand the engine one ``generate`` call per model of the batch (the calls run side by side on Ray)."""
        by_spec: dict[str, list[_Item]] = {}
        for it in items:
            by_spec.setdefault(it.spec, []).append(it)
        pending = []
        for spec, group in by_spec.items():
            p = params.model_copy(update={"seed": self._seed(*call_key, spec), "style": "completion"})
            self._note_backend(spec)
            t0 = time.perf_counter()
            hook = self.ctx.generation_hook(live_tokens(self.progress.tokens, self.progress.gen_seconds, t0))
            with self.profile.phase("model"):
                call = self.engine.submit(spec, "generate", [it.prompt.text for it in group], p, progress=hook)
            pending.append((spec, group, p, t0, call))
        return pending

    def _note_backend(self, spec: str) -> None:
        """Remember a local backend's phase clock the first time this run calls it (for the profile's split)."""
        if spec not in self._phase_base and isinstance(self.engine, LocalEngine):
            clock = getattr(self.engine.lm(spec), "phase_seconds", None)
            self._phase_base[spec] = dict(clock) if isinstance(clock, dict) else {}

    def profile_seconds(self) -> dict[str, float]:
        """The run's profile: prompt, prefill, decode, model (the rest of the model calls), parse, filter,
        store, other. Prefill and decode come from local backends that time them; elsewhere all is model."""
        parts: dict[str, float] = {}
        for spec, base in self._phase_base.items():
            clock = getattr(self.engine.lm(spec), "phase_seconds", None) or {}
            for k in base:
                parts[k] = parts.get(k, 0.0) + clock.get(k, 0.0) - base[k]
        self.profile.split("model", parts)
        self._phase_base = {spec: dict(getattr(self.engine.lm(spec), "phase_seconds", {}) or {})
                            for spec in self._phase_base}  # split once per call of this method
        return self.profile.as_dict()

    def _collect(self, pending: list[tuple]) -> None:
        """Wait for the calls of :meth:`_submit` and fill their items.

        Raises BackendError when a backend answers with the wrong number of completions; whatever the
        backend raises propagates (nothing of the batch has been written yet).
        """
        for spec, group, p, t0, call in pending:
            with self.profile.phase("model"):
                outs = call.result()
            dt = time.perf_counter() - t0
            if not isinstance(outs, list) or len(outs) != len(group):
                got = len(outs) if isinstance(outs, list) else type(outs).__name__
                raise BackendError(f"{spec} returned {got} completions for {len(group)} prompts")
            self.progress.gen_seconds += dt
            for it, comp in zip(group, outs):
                if not isinstance(comp.text, str):
                    comp.text, comp.finish_reason, comp.error = "", "error", f"no text ({comp.text!r})"
                it.params, it.completion, it.seconds = p, comp, dt / len(group)
                self.progress.tokens += comp.completion_tokens or 0
                self.progress.completions += 1

    def _add_completion(self, it: _Item, stage: str, task_type: str, instruction_id: str | None = None) -> str:
        c = it.completion
        return self.store.add_completion({
            "job_id": self.job_id, "stage": stage, "task_type": task_type, "instruction_id": instruction_id,
            "model_id": it.spec, "params": it.params.as_record(), "prompt_hash": it.prompt.hash,
            "rng_seed": it.rng_seed, "text": c.text, "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "seconds": it.seconds, "demos": it.prompt.demos, "prompt_style": c.style})

    def _unparseable(self, completion_id: str, reason: str) -> None:
        self.store.mark_completion(completion_id, "unparseable", reason)
        self.progress.unparseable[reason] += 1

    def _provenance(self, it: _Item, completion_id: str, position: int) -> dict:
        return {"completion_id": completion_id, "position": position, "generator_model": it.spec,
                "params": it.params.as_record(), "prompt_hash": it.prompt.hash, "rng_seed": it.rng_seed,
                "job_id": self.job_id}

    def _backend_failed(self, it: _Item, completion_id: str) -> bool:
        c = it.completion
        if c.finish_reason != "error" and not c.error:
            return False
        self._unparseable(completion_id, "backend_error")
        self.progress.warn(f"{it.spec}: {c.error or 'the backend reported an error'}")
        return True

    def _report(self) -> None:
        """Hand the figures to the stage context: the instruction phases count kept instructions against the
        target, the instance phase the kept instructions given their instance completion."""
        g = self.progress
        if g.stage == "instances":
            done, total, unit = self._instances_done, self._instances_total, "instructions given instances"
        else:
            done, total, unit = g.kept, g.target, "instructions kept"
        self.ctx.report(phase=g.stage, done=done, total=total, unit=unit, tok_s=round(g.tok_s, 2),
                        warnings=g.all_warnings(), **g.counts())

    def _verdict(self, text: str) -> filters.Verdict:
        """The instruction filters (the novelty one against every kept instruction): on the driver, one
        instruction at a time, timed (``filter_seconds``), since it bounds what more workers can add."""
        t0 = time.perf_counter()
        with self.profile.phase("filter"):
            v = filters.instruction_verdict(text, self.index, self.cfg.similarity_threshold)
        self.progress.filter_seconds += time.perf_counter() - t0
        self.progress.filter_checks += 1
        return v

    def _count_kept(self) -> int:
        return sum(self.store.count_kept_instructions(t, origin=FROM_PROMPT) for t in self.targets)

    # -- 1. setup ---------------------------------------------------------------------------------------
    def run(self) -> GenerationStats:
        """The whole run (on the config's engine, closed at the end)."""
        own = self._engine is None
        self.engine = self._engine or open_engine(self.cfg, self.pool)
        try:
            with self.profile.phase("other"):
                return self._run()
        finally:
            if own:
                self.engine.close()

    def _run(self) -> GenerationStats:
        if self.cfg.task_type == "both" and not self.by_type["B"]:
            self.progress.warn("the seed set has no type-B tasks: generating type A only")
        for t in self.targets:
            asked = max(self.cfg.instruction_demos[t], self.cfg.instance_demos[t])
            if len(self.by_type[t]) < asked:
                self.progress.warn(f"only {len(self.by_type[t])} type-{t} seed tasks: prompts have fewer demos "
                                   f"than the {asked} asked for")
        self.store.add_seeds(self.seeds)
        self.index = NoveltyIndex([s.instruction for s in self.seeds])
        for text in self.store.kept_instruction_texts():
            self.index.add(text)
        # 2. instructions, per type
        self.progress.target = sum(self.targets.values())
        for t, n in self.targets.items():
            self._instructions(t, n)
        self.progress.kept = self._count_kept()
        # 3. instances
        if self.cfg.instances:
            self._instances(list(self.targets))
        self.progress.stage = "done"
        self._report()
        return self.progress

    # -- 2. instruction stage ---------------------------------------------------------------------------
    def _instructions(self, task_type: str, target: int) -> None:
        st, cfg = self.store, self.cfg
        params = cfg.instruction_params
        idle, idle_outcomes = 0, Counter()
        while True:
            with self.profile.phase("store"):
                kept = st.count_kept_instructions(task_type, origin=FROM_PROMPT)
                self.progress.stage = f"instructions {task_type}"
                self.progress.kept = self._count_kept()
                self._report()
            if kept >= target:
                return
            self._check_stop()
            with self.profile.phase("store"):
                step = st.count_completions("instruction")  # the number of this batch's first prompt
            with self.profile.phase("prompt"):
                items = self._instruction_batch(task_type, step)
            self._generate(items, params, ("instr", task_type, step))
            outcomes: Counter = Counter()
            with self.profile.phase("store"), st.atomic():
                for it in items:
                    kept = self._store_instruction_completion(task_type, it, kept, target, outcomes)
            if outcomes["kept"]:
                idle, idle_outcomes = 0, Counter()
                continue
            idle += 1
            idle_outcomes.update(outcomes)
            if idle >= cfg.max_idle_batches:
                what = ", ".join(f"{k} {v}" for k, v in idle_outcomes.most_common()) or "nothing"
                raise CurateError(
                    f"{idle} batches in a row ({idle * cfg.batch_size} completions) kept no new type-{task_type} "
                    f"instruction ({what}). The models may be returning empty or unusable text: check "
                    "`curate stats`, try other models or a higher temperature.")

    def _instruction_batch(self, task_type: str, step: int) -> list[_Item]:
        cfg, params = self.cfg, self.cfg.instruction_params
        seed_texts = [s.instruction for s in self.by_type[task_type]]
        machine = self.store.kept_instruction_texts(task_type)
        items = []
        k = cfg.instruction_samples
        for n in range(step, step + cfg.batch_size):
            # k prompts in a row share the draw of their first one (k = 1: each its own, the paper's sampling),
            # and its model, so the backend prefills the shared prompt once
            first = step + (n - step) // k * k
            spec = self.instr_mix.pick(first // k)
            rng_seed = self._seed("instr", task_type, first)
            pr = prompts.instruction_prompt(
                seed_texts, machine, random.Random(rng_seed), demos=cfg.instruction_demos[task_type],
                max_machine=cfg.max_machine_demos, fits=self._fits(spec, params))
            if not pr.fits:
                raise CurateError(self._too_long(spec, "instruction", params))
            if pr.trimmed:
                self.progress.note_trim("instruction", spec, pr, self._context(spec)[0])
            items.append(_Item(spec, pr, rng_seed))
        return items

    def _store_instruction_completion(self, task_type: str, it: _Item, kept: int, target: int,
                                      outcomes: Counter) -> int:
        """Store one completion and the instructions in it; returns the new kept count of the type."""
        cid = self._add_completion(it, "instruction", task_type)
        if self._backend_failed(it, cid):
            outcomes["backend_error"] += 1
            return kept
        with self.profile.phase("parse"):
            pieces = [(filters.clean_instruction(p), closed)
                      for p, closed in parse.instruction_pieces(it.completion.text)]
        if not any(text for text, _ in pieces):
            reason = "empty" if not it.completion.text.strip() else "no_instruction"
            self._unparseable(cid, reason)
            outcomes[reason] += 1
            return kept
        cut_off = it.completion.finish_reason in CUT_OFF
        for pos, (text, closed) in enumerate(pieces):
            if not text:
                continue
            if cut_off and not closed and pos == len(pieces) - 1:
                v = filters.Verdict(False, "truncated", {"finish_reason": it.completion.finish_reason})
            else:
                v = self._verdict(text)
            status, reason, detail = ("kept", None, None) if v.keep else ("filtered", v.reason, v.detail)
            if v.keep and kept >= target:
                status, reason, detail = "filtered", SURPLUS, {"target": target}
            _, new = self.store.add_instruction({
                "text": text, "task_type": task_type, "origin": FROM_PROMPT, "status": status,
                "reason": reason, "detail": detail, **self._provenance(it, cid, pos)})
            if not new:
                continue
            outcomes[reason or "kept"] += 1
            if status == "kept":
                self.index.add(text)
                kept += 1
            elif reason == SURPLUS:  # set aside past the target, not filtered: counted apart
                self.progress.surplus += 1
            else:
                self.progress.filtered[reason] += 1
        return kept

    # -- 3. instance stage ------------------------------------------------------------------------------
    def _instances(self, types: list[str]) -> None:
        """Every kept instruction gets its instance completion, batch by batch in seq order. The batches are
        independent (a batch's prompts depend on its rows and its number only), so an engine with a window
        keeps several in flight; each is written in order, in one transaction, when it comes back."""
        st, cfg = self.store, self.cfg
        self.progress.stage = "instances"
        self._instances_total = sum(len(st.instructions_without_instances(t, limit=-1)) for t in types)
        cursor = {"after": 0, "pending": 0}  # the last seq handed out; rows handed out and not written yet

        def todo_after(after: int) -> list[dict]:
            rows = [r for t in types for r in st.instructions_without_instances(t, limit=cfg.batch_size,
                                                                                after_seq=after)]
            return sorted(rows, key=lambda r: r["seq"])[: cfg.batch_size]

        def next_job(in_flight: int):
            with self.profile.phase("store"):
                self._report()
                todo = todo_after(cursor["after"])
            if not todo:
                if not in_flight and todo_after(0):  # a write that did not stick: never loop on it
                    raise CurateError("an instance completion was not recorded; the store may be read-only or "
                                      "full")
                return None
            # instructions found in instance completions join the queue: the total grows, never below the work
            self._instances_total = max(self._instances_total or 0,
                                        self._instances_done + cursor["pending"] + len(todo))
            self._check_stop()
            with self.profile.phase("store"):
                step = st.count_completions("instance") + cursor["pending"]
            with self.profile.phase("prompt"):
                items, too_long = self._instance_batch(todo, step)
            cursor["after"], cursor["pending"] = todo[-1]["seq"], cursor["pending"] + len(todo)
            return (todo, items, too_long), lambda: self._submit(items, cfg.instance_params, ("inst", step))

        for (todo, items, too_long), pending in ordered(self.engine, next_job):
            self._collect(pending)
            with self.profile.phase("store"), st.atomic():
                for it in too_long:
                    cid = self._add_completion(it, "instance", it.row["task_type"], it.row["id"])
                    self._unparseable(cid, "prompt_too_long")
                for it in items:
                    self._store_instance_completion(it)
            cursor["pending"] -= len(todo)
            self._instances_done += len(todo)
        self._report()
        if self.progress.completions and not self.progress.candidates and self.progress.candidates_rejected:
            self.progress.warn("no usable instance came out of this run's instance completions "
                               f"({dict(self.progress.candidates_rejected)}): check the instance models")

    def _instance_batch(self, todo: list[dict], step: int) -> tuple[list[_Item], list[_Item]]:
        """Items to generate, and items whose prompt cannot fit the model (recorded without a model call)."""
        cfg, params = self.cfg, self.cfg.instance_params
        items, too_long = [], []
        for n, row in enumerate(todo, start=step):
            spec = self.inst_mix.pick(n)
            rng_seed = (self._seed("inst-demos", row["task_type"]) if cfg.shared_instance_demos
                        else self._seed("inst", row["id"]))
            pr = prompts.instance_prompt(row["text"], row["task_type"], self.seeds, random.Random(rng_seed),
                                         demos=cfg.instance_demos[row["task_type"]], fits=self._fits(spec, params))
            it = _Item(spec, pr, rng_seed, row=row)
            if not pr.fits:
                self.progress.warn(self._too_long(spec, "instance", params))
                it.params = params.model_copy(update={"style": "completion"})
                it.completion = Completion("", "error", 0, 0, model_id=spec, error="prompt too long")
                too_long.append(it)
                continue
            if pr.trimmed:
                self.progress.note_trim("instance", spec, pr, self._context(spec)[0])
            items.append(it)
        return items, too_long

    def _store_instance_completion(self, it: _Item) -> None:
        row = it.row
        cid = self._add_completion(it, "instance", row["task_type"], row["id"])
        if self._backend_failed(it, cid):
            return
        with self.profile.phase("parse"):
            parsed = parse.parse_instances(it.completion.text, row["task_type"],
                                           cut_off=it.completion.finish_reason in CUT_OFF)
        if not any(p.ok for p in parsed):
            self._unparseable(cid, parsed[0].reason)
        for pos, item in enumerate(parsed):
            if item.instruction is None:
                self._store_instance(it, cid, pos, item, row["id"])
                continue
            iid = self._store_extra_candidate(it, cid, pos, item)
            if iid is not None:
                self._store_instance(it, cid, pos, item, iid)

    def _store_extra_candidate(self, it: _Item, cid: str, pos: int, item: parse.ParsedInstance) -> str | None:
        """An instruction found in an instance completion: the instruction filters, then it needs a valid instance.
        Returns its id when kept (its instance is stored next), else None (the block stays in the raw text)."""
        v = self._verdict(item.instruction)
        status, reason, detail = ("kept", None, None) if v.keep else ("filtered", v.reason, v.detail)
        if v.keep and not item.ok:
            status, reason, detail = "filtered", "no_instance", {"instance_reason": item.reason}
        iid, new = self.store.add_instruction({
            "text": item.instruction, "task_type": item.task_type, "origin": FROM_INSTANCE, "status": status,
            "reason": reason, "detail": detail, **self._provenance(it, cid, pos)})
        if new and status == "kept":
            self.index.add(item.instruction)
            self.progress.extra_candidates += 1
        elif new:
            self.progress.filtered[reason] += 1
        return iid if status == "kept" else None

    def _store_instance(self, it: _Item, cid: str, pos: int, item: parse.ParsedInstance,
                        instruction_id: str) -> None:
        iid, new = self.store.add_candidate({
            "instruction_id": instruction_id, "task_type": item.task_type, "input": item.input,
            "output": item.output, "status": "ok" if item.ok else "rejected", "reason": item.reason,
            **self._provenance(it, cid, pos)})
        if not new:
            return
        if not item.ok:
            self.progress.candidates_rejected[item.reason] += 1
            return
        self.progress.candidates += 1
        self.store.add_outputs([{"candidate_id": iid, "position": 0, "model_id": it.spec,
                                 "params": it.params.as_record(), "prompt_style": "generator",
                                 "text": item.output, "finish_reason": it.completion.finish_reason,
                                 "completion_tokens": it.completion.completion_tokens, "job_id": self.job_id}])


def run_generation(store: Store, config: GenerateConfig, pool: ModelPool | None = None, *,
                   job_id: str | None = None, on_progress: Callable[[Progress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> GenerationStats:
    """Run (or resume) generation until the store holds ``config.instructions`` kept instructions: the stage's
    :func:`run` with a context built from these arguments; returns the run's figures.

    Raises :class:`~curate.errors.Stopped` when ``should_stop()`` turned true between steps (everything
    written so far stays), :class:`~curate.errors.CurateError` for bad settings or a run that makes no
    progress, and whatever the backends raise (``BackendError``) — in every case the finished batches are
    stored.
    """
    ctx = StageContext(job_id=job_id, pool=pool, on_progress=on_progress, should_stop=should_stop)
    return Generator(store, config, ctx).run()


# -- the Stage contract (curate.stage) ---------------------------------------------------------------------
Config = GenerateConfig


def check(store: Store, config: GenerateConfig) -> None:
    """The preflight (before a job row exists): every model of both mixtures resolves (without loading it) and
    the seed file has tasks of the requested type. Raises ModelNotFoundError naming the mixture and the model,
    or CurateError naming the fix."""
    check_models([("instruction mixture", e.model) for e in config.instruction_models]
                 + ([("instance mixture", e.model) for e in config.instance_models] if config.instances else []))
    split_targets(config.instructions, config.task_type, split_by_type(load_seeds(config.seeds)))


def run(store: Store, config: GenerateConfig, ctx: StageContext) -> dict:
    """The generation stage: see the module docstring. Progress goes through ``ctx``; the result (the job's
    ``progress.result``) holds the run's profile (``curate generate --profile`` prints it)."""
    gen = Generator(store, config, ctx)
    gen.run()
    return {"profile": gen.profile_seconds(), "kept_candidates": gen.progress.candidates,
            "completions": gen.progress.completions, "tokens": gen.progress.tokens}
