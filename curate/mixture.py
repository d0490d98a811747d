"""A mixture of language models: which model gets each prompt, and a pool that loads each model once."""

from __future__ import annotations

import math
import random
import re
from typing import Callable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .errors import ModelNotFoundError
from .lm.base import LM


class MixtureEntry(BaseModel):
    """One model of a mixture: a model spec (embedded name, HF id, folder, ``openai:…``) and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0)


def parse_mixture(text: str | Sequence[str]) -> list[MixtureEntry]:
    """``"smollm2-135m-instruct:2,gemma3-270m"`` (or a list of such items) → entries.

    A trailing ``:<number>`` is a weight, except where it is a server port (``openai:m@http://h:8000`` has
    weight 1; ``openai:m@http://h:8000:3`` has weight 3). In a string, an item that starts with
    ``http://`` / ``https://`` continues the previous item's URL list (``openai:m@http://a:8000,http://b:8000``
    is one model). Raises ValueError on an empty mixture or a weight that is not a positive number.
    """
    if isinstance(text, str):
        items: list[str] = []
        for raw in (i.strip() for i in text.split(",")):
            if items and _URL_START.match(raw):
                items[-1] += "," + raw
            else:
                items.append(raw)
    else:
        items = [i.strip() for i in text]
    out = [_entry(raw) for raw in items if raw]
    if not out:
        raise ValueError("the model mixture is empty: name at least one model, e.g. smollm2-135m-instruct")
    return out


_URL_START = re.compile(r"^https?://", re.IGNORECASE)
_BARE_HOST_END = re.compile(r"https?://[^/:]*$", re.IGNORECASE)  # "...http://host": a ":N" after it is a port


def _entry(raw: str) -> MixtureEntry:
    spec, weight = raw, 1.0
    head, sep, tail = raw.rpartition(":")
    if sep and head and not _BARE_HOST_END.search(head):
        try:
            weight, spec = float(tail), head
        except ValueError:
            pass
    if not math.isfinite(weight) or weight <= 0:
        raise ValueError(f"weight of {spec!r} must be a positive number (got {tail!r})")
    return MixtureEntry(model=spec, weight=weight)


class Mixture:
    """Assigns prompts to models: drawn by weight, or round-robin.

    ``pick(n)`` gives the model for prompt number ``n`` of a stage: weighted draws use an RNG seeded with
    ``(seed, n)`` and round-robin takes entry ``n mod len``, so the assignment of a prompt depends only on
    its number — a resumed run assigns the remaining prompts exactly as an uninterrupted one would.
    ``pick()`` without ``n`` numbers the calls 0, 1, 2, … itself.
    """

    def __init__(self, entries: Sequence[MixtureEntry], mode: Literal["weighted", "round_robin"] = "weighted",
                 seed: int | str = 0):
        if not entries:
            raise ValueError("the model mixture is empty")
        if mode not in ("weighted", "round_robin"):
            raise ValueError(f"unknown assignment {mode!r}: 'weighted' or 'round_robin'")
        self.entries = list(entries)
        self.mode = mode
        self.seed = seed
        self._next = 0

    def pick(self, n: int | None = None) -> str:
        if n is None:
            n, self._next = self._next, self._next + 1
        if self.mode == "round_robin":
            return self.entries[n % len(self.entries)].model
        rng = random.Random(f"mixture:{self.seed}:{n}")
        return rng.choices([e.model for e in self.entries], [e.weight for e in self.entries])[0]


class ModelPool:
    """Loads each model spec once (lazily) through ``loader`` (default: the registry's ``load_lm``).

    ``preloaded`` maps specs to ready LM objects (tests pass scripted models this way); the Ray engine gives each
    of its actors a copy of them (:mod:`curate.engine`), so they must pickle.
    """

    def __init__(self, preloaded: Mapping[str, LM] | None = None, loader: Callable[[str], LM] | None = None):
        self.preloaded: dict[str, LM] = dict(preloaded or {})
        self._cache: dict[str, LM] = dict(self.preloaded)
        self._loader = loader

    def get(self, spec: str) -> LM:
        if spec not in self._cache:
            loader = self._loader
            if loader is None:
                from .lm.registry import load_lm as loader
            self._cache[spec] = loader(spec)
        return self._cache[spec]

    def loaded(self) -> list[str]:
        return list(self._cache)


def check_models(where_specs: Sequence[tuple[str, str]]) -> None:
    """Resolve every ``(where, spec)`` with the registry, without loading a model (a job's preflight). Raises
    ModelNotFoundError for the first spec that names no model, prefixed with where it was given."""
    from .lm.registry import check_lm_spec

    for where, spec in where_specs:
        try:
            check_lm_spec(spec)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{where}: {exc}") from None
