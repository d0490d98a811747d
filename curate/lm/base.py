"""The one narrow protocol every language-model backend implements.

A backend is an object with a ``model_id`` and two methods:

* ``generate(prompts, params, progress=None) -> list[Completion]`` — one completion per prompt, in order.
  ``progress`` (a :data:`ProgressHook`, optional) is called with the cumulative number of new tokens this
  call has generated so far: at least once per decode step (per finished request for a server backend) and
  once at the end. It may raise :class:`curate.errors.Stopped` (the job was asked to pause or cancel); the
  backend lets it propagate and returns nothing for the unfinished call.
* ``loglik(prompts, continuations) -> list[list[float]]`` — for each pair, the per-token negative
  log-likelihood (natural log) of ``continuation`` given ``prompt``; CAR needs it.

Backends register a factory in :mod:`curate.lm.registry`; nothing branches on model names elsewhere.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

Style = Literal["completion", "chat"]
#: ``progress(tokens)``: the cumulative new tokens of one ``generate`` call (see the module docstring).
ProgressHook = Callable[[int], None]
FinishReason = Literal["stop", "length", "eos", "repetition", "error"]


class GenParams(BaseModel):
    """Sampling parameters of one ``generate`` call. ``temperature == 0`` means greedy decoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_k: int = Field(50, ge=0, description="0 disables top-k")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, le=32768)
    min_new_tokens: int = Field(0, ge=0)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    style: Style = "completion"
    repetition_guard: bool = Field(
        True, description="stop a completion that keeps repeating the same n-gram (small models loop)"
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> "GenParams":
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) must not exceed max_new_tokens ({self.max_new_tokens})"
            )
        if any(s == "" for s in self.stop):
            raise ValueError("stop sequences must be non-empty strings")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def as_record(self) -> dict:
        """A JSON-able dict for provenance columns."""
        return self.model_dump(mode="json")


@dataclass
class Completion:
    """One generated text. ``text`` has stop sequences trimmed (the stop string itself is not included)."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    model_id: str = ""
    style: Style = "completion"
    error: str | None = None
    extra: dict = field(default_factory=dict)


@runtime_checkable
class LM(Protocol):
    """What the pipeline needs from a language model."""

    model_id: str
    supports_chat: bool

    def generate(self, prompts: Sequence[str], params: GenParams,
                 progress: ProgressHook | None = None) -> list[Completion]: ...

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]: ...


def apply_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop sequence. Returns (trimmed text, whether a stop was found)."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1 and i < cut:
            cut = i
    return text[:cut], cut != len(text)


def has_degenerate_repetition(token_ids: Sequence[int], ngram: int = 8, repeats: int = 4) -> bool:
    """True when the last ``ngram * repeats`` tokens are one block of some period p ≤ ``ngram`` repeated,
    i.e. ``tail[i] == tail[i + p]`` all along the tail (loops of 1, 2, 3, … 8 tokens all count).

    The guard against the loops small models fall into under greedy decoding (SmolLM2 does).
    """
    span = ngram * repeats
    if len(token_ids) < span:
        return False
    tail = list(token_ids[-span:])
    return any(all(tail[i] == tail[i + p] for i in range(span - p)) for p in range(1, ngram + 1))


def has_degenerate_repetition_reference(token_ids: Sequence[int], ngram: int = 8, repeats: int = 4) -> bool:
    """The plain twin: the tail equals its first p tokens repeated, for some period p ≤ ngram."""
    span = ngram * repeats
    if len(token_ids) < span:
        return False
    tail = list(token_ids[-span:])
    return any((tail[:p] * (span // p + 1))[:span] == tail for p in range(1, ngram + 1))


def generate(lm: LM, prompts: Sequence[str], params: GenParams,
             progress: ProgressHook | None = None) -> list[Completion]:
    """``lm.generate(prompts, params, progress=progress)``; a backend written before the ``progress`` keyword
    (a plugin's) is called without it and ``progress`` gets the call's tokens once at the end."""
    if progress is None:
        return lm.generate(prompts, params)
    if _takes_progress(lm):
        return lm.generate(prompts, params, progress=progress)
    out = lm.generate(prompts, params)
    if isinstance(out, list):
        progress(sum(getattr(c, "completion_tokens", 0) or 0 for c in out))
    return out


def _takes_progress(lm: LM) -> bool:
    try:
        params = inspect.signature(lm.generate).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
