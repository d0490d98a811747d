"""Quality scores per candidate output, from pluggable scorers (docs/ARCHITECTURE.md,
"Quality scores").

A scorer is one narrow protocol, like the LM backends: a ``name`` (what the store's ``scores.scorer`` column
says), a human ``label``, ``is_proxy`` (True when it is not a real reward model) and::

    score(instructions, inputs, outputs, *, ids=None) -> list[float]     # NaN: could not score this one

:func:`load_scorer` turns a spec string into a scorer, like :func:`curate.lm.registry.load_lm`::

    rm:<HF id or folder>      a Hugging Face sequence-classification reward model (num_labels == 1: the logit
                              is the reward); its chat template formats (instruction + input, output) when it
                              has one, else the tokenizer's text-pair encoding; batched, fp32 on CPU
    judge:<model spec>        an LM asked for a 1-10 score: judge:openai:<model>@<url> (vLLM, llama.cpp, TGI,
                              Ollama), or any load_lm spec such as judge:qwen2.5-0.5b-instruct (embedded)
    proxy:consensus           offline default, NOT a reward model: the output's consensus agreement (its mean
                              Rouge-L to the other outputs of its instance, stored by `curate ensemble`)

Register more with :func:`register_scorer`. :func:`score_outputs` scores the stored outputs that lack a score
from a scorer and writes them to the store (resumable). Storage convention (see ``Store``): per-output scores
are ``scores`` rows keyed by the OUTPUT id, ``scorer`` = the scorer's name, ``name`` = ``"reward"``, or
``"unscored"`` (value 0; ``detail.reason`` says why, e.g. a judge answer without a score); every row's
``detail`` carries the scorer's ``label``, so each number says which scorer produced it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from .errors import BackendError, CurateError, ScorerError
from .lm.base import GenParams

__all__ = [
    "Score", "Scorer", "BaseScorer", "RewardModelScorer", "JudgeScorer", "ConsensusProxyScorer",
    "load_scorer", "register_scorer", "scorer_name", "score_outputs", "parse_judge_score", "JUDGE_PROMPT",
    "DEFAULT_SCORER", "PROXY_LABEL", "SCORER_FORMS", "EngineScorer", "ScoredBatch", "score_batch",
    "reads_the_store", "portable_spec", "stage_scorer",
]

DEFAULT_SCORER = "proxy:consensus"
PROXY_LABEL = "proxy (consensus agreement), not a reward model"
SCORER_FORMS = ("rm:<Hugging Face id or folder of a sequence-classification reward model>",
                "judge:openai:<model>@<url>  or  judge:<any model spec, e.g. qwen2.5-0.5b-instruct>",
                "proxy:consensus  (offline default; consensus agreement, not a reward model)")


@dataclass(frozen=True)
class Score:
    """One output's score: ``value``, or None with the ``reason`` it could not be scored."""

    value: float | None
    reason: str | None = None
    detail: dict = field(default_factory=dict)


@runtime_checkable
class Scorer(Protocol):
    name: str
    label: str
    is_proxy: bool

    def score(self, instructions: Sequence[str], inputs: Sequence[str], outputs: Sequence[str], *,
              ids: Sequence[str] | None = None) -> list[float]: ...


class BaseScorer:
    """Implement ``score_detailed`` (values with reasons); ``score`` follows (NaN where there is no value)."""

    name = ""
    label = ""
    is_proxy = False

    def score(self, instructions: Sequence[str], inputs: Sequence[str], outputs: Sequence[str], *,
              ids: Sequence[str] | None = None) -> list[float]:
        return [math.nan if s.value is None else s.value
                for s in self.score_detailed(instructions, inputs, outputs, ids=ids)]

    def score_detailed(self, instructions: Sequence[str], inputs: Sequence[str], outputs: Sequence[str], *,
                       ids: Sequence[str] | None = None) -> list[Score]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _check_lengths(instructions, inputs, outputs, ids=None) -> None:
    n = len(outputs)
    if len(instructions) != n or len(inputs) != n or (ids is not None and len(ids) != n):
        raise ValueError(f"a scorer needs as many instructions ({len(instructions)}), inputs ({len(inputs)})"
                         f"{'' if ids is None else f', ids ({len(ids)})'} as outputs ({n})")


def _detailed(scorer: Scorer, instructions, inputs, outputs, ids) -> list[Score]:
    """A scorer's values with reasons: its ``score_detailed`` when it has one, else its ``score``."""
    if hasattr(scorer, "score_detailed"):
        return scorer.score_detailed(instructions, inputs, outputs, ids=ids)
    return [Score(None, "the scorer returned no number (NaN)") if v is None or math.isnan(v) else Score(float(v))
            for v in scorer.score(instructions, inputs, outputs, ids=ids)]


def _user_text(instruction: str, input: str) -> str:
    return f"{instruction}\n\n{input}" if input.strip() else instruction


# -- rm: a Hugging Face sequence-classification reward model ---------------------------------------------


class RewardModelScorer(BaseScorer):
    """A Hugging Face ``AutoModelForSequenceClassification`` with one label: the logit is the reward.

    Raises :class:`ScorerError` (with the fix) when the model is not found offline, is not a sequence
    classifier (e.g. a causal LM: that is a judge, ``judge:<model>``), or has more than one label.
    """

    def __init__(self, model: str | Path, *, batch_size: int = 8, device: str | None = None,
                 max_length: int | None = None):
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        from .lm.hf import _from_pretrained

        if batch_size < 1:
            raise ScorerError(f"the reward model's batch size must be >= 1 (got {batch_size})")
        source = str(Path(model).expanduser()) if Path(model).expanduser().exists() else str(model)
        self.name, self.batch_size = scorer_name(f"rm:{model}"), batch_size
        self.label = f"reward model {model}"
        try:
            config = _from_pretrained(AutoConfig, source)
        except (OSError, ValueError) as exc:
            raise ScorerError(
                f"reward model {str(model)!r} could not be found locally ({str(exc).strip().splitlines()[0]}); "
                "this machine may be offline. Give rm: a local folder saved with save_pretrained, or a "
                "Hugging Face id already in the local cache.") from None
        archs = list(getattr(config, "architectures", None) or [])
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            raise ScorerError(
                f"{str(model)!r} is not a sequence-classification reward model (its architectures: "
                f"{', '.join(archs) or 'none recorded'}). rm: needs a model saved as "
                "AutoModelForSequenceClassification with num_labels=1 (e.g. Skywork/Skywork-Reward-Llama-3.1-8B); "
                f"to have a generative model grade outputs use judge:{model} instead.")
        if config.num_labels != 1:
            raise ScorerError(
                f"{str(model)!r} has {config.num_labels} labels; a reward model has one (its logit is the "
                "reward). Use a reward model with num_labels=1, or judge:<model> for a generative judge.")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = _from_pretrained(AutoTokenizer, source)
            self.model = _from_pretrained(AutoModelForSequenceClassification, source,
                                          dtype=torch.float32 if self.device == "cpu" else torch.bfloat16)
        except (OSError, ValueError) as exc:
            raise ScorerError(f"could not load the reward model {str(model)!r}: "
                              f"{str(exc).strip().splitlines()[0]}") from None
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        n_ctx = getattr(config, "max_position_embeddings", None) or 4096
        self.max_length = max_length or int(min(n_ctx, self.tokenizer.model_max_length or n_ctx))

    def encode(self, instruction: str, input: str, output: str) -> list[int]:
        """Token ids of one (prompt, response) pair: the chat template's user + assistant turns, else the
        tokenizer's text-pair encoding. Longer than ``max_length``: the last ``max_length`` tokens."""
        user = _user_text(instruction, input)
        if self.chat:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}, {"role": "assistant", "content": output}], tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        else:
            ids = self.tokenizer(user, output).input_ids
        return ids[-self.max_length:]

    def score_detailed(self, instructions, inputs, outputs, *, ids=None) -> list[Score]:
        import torch

        _check_lengths(instructions, inputs, outputs, ids)
        encoded = [self.encode(i, x, o) for i, x, o in zip(instructions, inputs, outputs)]
        values: list[float] = [0.0] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda j: len(encoded[j]))  # similar lengths batch together
        pad = self.model.config.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                B, T = len(chunk), max(len(encoded[j]) for j in chunk)
                input_ids = torch.full((B, T), pad, dtype=torch.long)
                attention = torch.zeros((B, T), dtype=torch.long)
                for b, j in enumerate(chunk):  # right padding: the classifier pools the last non-pad token
                    input_ids[b, :len(encoded[j])] = torch.tensor(encoded[j])
                    attention[b, :len(encoded[j])] = 1
                logits = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=attention.to(self.device)).logits  # (B, 1)
                for b, j in enumerate(chunk):
                    values[j] = float(logits[b, 0])
        return [Score(v, detail={"tokens": len(e)}) if math.isfinite(v) else Score(None, "non-finite reward")
                for v, e in zip(values, encoded)]


# -- judge: an LM asked for a 1-10 score ------------------------------------------------------------------

JUDGE_PROMPT = (
    "You are grading the response to an instruction. Rate how helpful, correct and complete the response is "
    "on a scale from 1 (useless or wrong) to 10 (excellent).\n\n"
    "Instruction:\n{instruction}\n{input_block}\nResponse:\n{output}\n\n"
    'Answer with the score only, in the form "Score: N".'
)
_NUM = r"(\d+(?:\.\d+)?)"
_JUDGE_PATTERNS = (
    re.compile(rf"(?i)\b(?:score|rating|grade)\b\s*(?:is|of)?\s*[:=]?\s*\**\s*{_NUM}"),  # "Score: 8", "rating 7"
    re.compile(rf"(?i){_NUM}\s*(?:/|out\s+of)\s*10\b"),                                  # "8/10", "8 out of 10"
    re.compile(rf"^\W*{_NUM}\b"),                                                        # "8", "**8**. Good"
)


def parse_judge_score(text: str) -> tuple[float | None, str | None]:
    """A judge's answer → (score in [1, 10], None), or (None, why not).

    Tried in order: "Score: N" (also rating / grade, "is", "=", markdown bold), "N/10" or "N out of 10",
    a number at the very start; else the only number of the answer. A number outside 1-10 is refused.
    """
    for pattern in _JUDGE_PATTERNS:
        m = pattern.search(text)
        if m:
            value = float(m.group(1))
            break
    else:
        numbers = set(re.findall(_NUM, text))
        if len(numbers) != 1:
            snippet = " ".join(text.split())[:80]
            why = "no number" if not numbers else f"{len(numbers)} different numbers"
            return None, f"judge answer has {why} and no 'Score: N': {snippet!r}"
        value = float(numbers.pop())
    if not 1.0 <= value <= 10.0:
        return None, f"judge score {value:g} is outside 1-10"
    return value, None


class JudgeScorer(BaseScorer):
    """An LM (any :class:`~curate.lm.base.LM`) asked, greedily, for a 1-10 score of each output; answers
    without a parseable score are recorded as unscored with the reason (never an exception). A backend
    failure (server down after its retries) raises :class:`ScorerError`."""

    def __init__(self, lm, *, name: str | None = None, max_new_tokens: int = 32, batch_size: int = 8):
        self.lm, self.batch_size = lm, max(1, batch_size)
        self.name = name or f"judge:{lm.model_id}"
        self.label = f"LLM judge {self.name.partition(':')[2]} (1-10)"
        self.params = GenParams(temperature=0.0, max_new_tokens=max_new_tokens, repetition_guard=True,
                                style="chat" if getattr(lm, "supports_chat", False) else "completion")

    def close(self) -> None:
        """Close the judge's backend where it holds connections (an OpenAI-compatible server's)."""
        if callable(getattr(self.lm, "close", None)):
            self.lm.close()

    def prompt(self, instruction: str, input: str, output: str) -> str:
        text = JUDGE_PROMPT.format(instruction=instruction, output=output,
                                   input_block=f"\nInput:\n{input}\n" if input.strip() else "")
        return text if self.params.style == "chat" else text + "\n\nScore:"

    def score_detailed(self, instructions, inputs, outputs, *, ids=None) -> list[Score]:
        _check_lengths(instructions, inputs, outputs, ids)
        prompts = [self.prompt(i, x, o) for i, x, o in zip(instructions, inputs, outputs)]
        answers: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            try:
                answers += [c.text for c in self.lm.generate(prompts[start:start + self.batch_size], self.params)]
            except BackendError as exc:
                raise ScorerError(f"the judge {self.name} failed: {exc}") from None
        out = []
        for text in answers:
            value, why = parse_judge_score(("Score:" if self.params.style == "completion" else "") + text)
            out.append(Score(value, why, {"answer": text[:200]}))
        return out


# -- proxy:consensus --------------------------------------------------------------------------------------


class ConsensusProxyScorer(BaseScorer):
    """NOT a reward model: the stored consensus agreement of each output (``consensus.scores[i]``, the mean
    Rouge-L of output i to the other outputs of its instance, in [0, 1]). Needs the output ids (``ids=``)."""

    name = "proxy:consensus"
    label = PROXY_LABEL
    is_proxy = True

    def __init__(self, store):
        self.store = store

    def score_detailed(self, instructions, inputs, outputs, *, ids=None) -> list[Score]:
        if ids is None:
            raise ScorerError("proxy:consensus reads the stored consensus of each output, so it scores stored "
                              "outputs only (pass ids=output ids, or use score_outputs); for free text use rm: "
                              "or judge:")
        _check_lengths(instructions, inputs, outputs, ids)
        agreement = self.store.output_agreement(ids)
        return [Score(agreement[i]) if i in agreement else
                Score(None, "no consensus for this output's instance yet: run `curate ensemble` first")
                for i in ids]


# -- the resolver -----------------------------------------------------------------------------------------

Factory = Callable[..., Scorer]
_FACTORIES: dict[str, Factory] = {}


def register_scorer(kind: str, factory: Factory) -> None:
    """Teach :func:`load_scorer` specs ``<kind>:<rest>``: ``factory(rest, store=..., **kwargs)`` builds it."""
    _FACTORIES[kind] = factory


def _split(spec: str) -> tuple[str, str]:
    kind, sep, rest = spec.strip().partition(":")
    if not sep or kind not in _FACTORIES or not rest.strip():
        raise ScorerError(f"unknown scorer {spec!r}; use one of: " + "; ".join(SCORER_FORMS))
    return kind, rest.strip()


def scorer_name(spec: str) -> str:
    """The name a spec's scores are stored under (without loading anything): the spec, with a reward
    model folder made absolute and a judge server's URLs dropped (the same model on another server is the
    same judge). Raises ScorerError for an unknown spec."""
    kind, rest = _split(spec)
    if kind == "rm" and Path(rest).expanduser().exists():
        rest = str(Path(rest).expanduser().resolve())
    if kind == "judge" and rest.startswith("openai:") and "@" in rest:
        rest = rest.split("@http", 1)[0]
    return f"{kind}:{rest}"


def load_scorer(spec: str, *, store=None, pool=None, **kwargs: Any) -> Scorer:
    """The scorer a spec names (see the module docstring); ``store`` is needed by ``proxy:consensus``;
    ``pool`` (a :class:`~curate.mixture.ModelPool`) gives a judge its LM (else it is loaded by spec);
    ``kwargs`` go to the scorer (e.g. ``batch_size``). Raises ScorerError naming the accepted forms."""
    kind, rest = _split(spec)
    if pool is not None:
        kwargs["pool"] = pool
    return _FACTORIES[kind](rest, store=store, **kwargs)


def reads_the_store(spec: str) -> bool:
    """True for a scorer that reads the store (``proxy:consensus``): it runs where the store is (the driver),
    never on a Ray actor. Raises ScorerError for an unknown spec."""
    return _split(spec)[0] == "proxy"


def portable_spec(spec: str) -> str:
    """The spec as another process loads it: a reward model folder made absolute (a Ray worker's working
    directory is not the driver's)."""
    kind, rest = _split(spec)
    if kind == "rm" and Path(rest).expanduser().exists():
        return f"rm:{Path(rest).expanduser().resolve()}"
    return spec.strip()


@dataclass(frozen=True)
class ScoredBatch:
    """One scorer call's answer as it crosses a process: the scorer's label and proxy flag with the scores."""
    label: str
    proxy: bool
    scores: list


def score_batch(scorer: Scorer, instructions, inputs, outputs, ids) -> ScoredBatch:
    """``scorer`` on one batch (its reasons kept), with its label: what an engine's score call returns."""
    return ScoredBatch(scorer.label, bool(getattr(scorer, "is_proxy", False)),
                       _detailed(scorer, list(instructions), list(inputs), list(outputs), list(ids)))


class EngineScorer:
    """A scorer whose calls run on an engine's workers (:meth:`curate.engine.RayEngine.submit_score`: each
    actor loads the spec once, on its first batch). ``label`` is the workers' scorer's once a batch is back."""

    is_proxy = False

    def __init__(self, spec: str, engine, batch_size: int = 8):
        if reads_the_store(spec):
            raise ScorerError(f"{spec} reads the store, so it runs in this process, not on an engine's workers")
        self.spec, self.name, self.label = portable_spec(spec), scorer_name(spec), scorer_name(spec)
        self.engine, self.batch_size = engine, batch_size

    def submit(self, instructions, inputs, outputs, ids):
        return self.engine.submit_score(self.spec, self.batch_size, instructions, inputs, outputs, ids)


def stage_scorer(spec: str, engine, *, store, pool, batch_size: int):
    """The scorer a stage scores with: on ``engine``'s workers when it is the Ray engine and the scorer does not
    read the store (:class:`EngineScorer`), else loaded in this process (``pool`` gives a judge its LM)."""
    if getattr(engine, "name", "local") == "ray" and not reads_the_store(spec):
        return EngineScorer(spec, engine, batch_size)
    return load_scorer(spec, store=store, pool=pool, batch_size=batch_size)


def _rm(rest: str, *, store=None, pool=None, **kwargs: Any) -> Scorer:
    return RewardModelScorer(rest, **kwargs)


def _judge(rest: str, *, store=None, pool=None, **kwargs: Any) -> Scorer:
    from .lm.registry import load_lm

    try:
        lm = pool.get(rest) if pool is not None else load_lm(rest)
    except (CurateError, ValueError) as exc:
        raise ScorerError(f"judge model {rest!r}: {exc}") from None
    return JudgeScorer(lm, name=scorer_name(f"judge:{rest}"), **kwargs)


def _proxy(rest: str, *, store=None, pool=None, **kwargs: Any) -> Scorer:
    if rest != "consensus":
        raise ScorerError(f"unknown proxy scorer 'proxy:{rest}'; the proxy there is: proxy:consensus")
    if store is None:
        raise ScorerError("proxy:consensus reads the store's consensus rows: "
                          "load it with load_scorer(spec, store=store)")
    return ConsensusProxyScorer(store)


register_scorer("rm", _rm)
register_scorer("judge", _judge)
register_scorer("proxy", _proxy)


# -- scoring the store ------------------------------------------------------------------------------------


class _Inline:
    """Score calls made in this process, one batch at a time (the local engine's way)."""
    window = 1


def score_outputs(store, scorer: Scorer | EngineScorer, *, limit: int | None = None, batch_size: int = 16,
                  progress: Callable[[str, int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict[str, int]:
    """Score the outputs of the sample of ``limit`` instances (all with None; see ``Store.sample_outputs``)
    that have no score from ``scorer`` yet, writing each batch as it is done (an interrupted run resumes).
    An :class:`EngineScorer` keeps its engine's window of batches in flight on the workers; the batches are
    written here, in order, as they come back.

    Returns {"scored": n, "unscored": m}. ``progress(stage, done, total)`` is called after each batch;
    ``should_stop()`` true stops between batches.
    """
    from .engine import _Done, ordered

    todo = store.sample_outputs(limit, missing=scorer.name, missing_names=("reward", "unscored"))
    counts = {"scored": 0, "unscored": 0}
    remote = isinstance(scorer, EngineScorer)
    cursor = iter(range(0, len(todo), batch_size))

    def next_job(in_flight: int):
        start = next(cursor, None)
        if start is None or (should_stop is not None and should_stop()):
            return None
        rows = todo[start:start + batch_size]
        args = ([r["instruction"] for r in rows], [r["input"] for r in rows], [r["text"] for r in rows],
                [r["id"] for r in rows])
        return (start, rows), ((lambda: scorer.submit(*args)) if remote else
                               (lambda: _Done(score_batch(scorer, *args))))

    for (start, rows), call in ordered(scorer.engine if remote else _Inline, next_job):
        batch = call.result()
        if remote:
            scorer.label = batch.label
        records = []
        for r, s in zip(rows, batch.scores):
            ok = s.value is not None and math.isfinite(s.value)
            detail = {"label": batch.label, "proxy": batch.proxy, **s.detail}
            if not ok:
                detail["reason"] = s.reason or "no score"
            records.append({"subject_id": r["id"], "scorer": scorer.name, "name": "reward" if ok else "unscored",
                            "value": float(s.value) if ok else 0.0, "detail": detail})
            counts["scored" if ok else "unscored"] += 1
        store.set_scores(records)
        if progress is not None:
            progress(f"scoring with {scorer.name}", start + len(rows), len(todo))
    return counts
