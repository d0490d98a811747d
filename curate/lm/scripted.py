"""A scripted language model: a real implementation of the backend protocol with canned completions.

Tests (and dry runs) drive the whole pipeline with it, so parsing, filters, resume and consensus are exact
and fast::

    lm = ScriptedLM("fake", ["1. first |EoS|", "second"])
    lm.enqueue(["more", "texts"])

Completions are served in order; when the script runs out, ``default`` is returned (or, with
``default=None``, :class:`~curate.errors.BackendError` is raised). A callable script receives the prompt
and returns the text. Stop sequences and ``max_new_tokens`` (counted in whitespace tokens) are honoured.

``loglik`` gives one NLL per whitespace token of the continuation (at least one): ``nll`` itself when it is a
number, or ``nll(prompt, continuation)`` when it is a callable (per-text losses, e.g. to rank teachers in
tests). Every ``loglik`` call is recorded in ``loglik_calls``.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable, Sequence

from ..errors import BackendError
from .base import Completion, GenParams, ProgressHook, apply_stops


class ScriptedLM:
    supports_chat = True

    def __init__(
        self,
        model_id: str = "scripted",
        script: Iterable[str] | Callable[[str], str] = (),
        *,
        default: str | None = "",
        context_length: int = 8192,
        nll: float | Callable[[str, str], float] = 2.0,
    ):
        self.model_id = model_id
        self.context_length = context_length
        self._fn = script if callable(script) else None
        self._queue: deque[str] = deque([] if callable(script) else script)
        self._default = default
        self._nll = nll
        self.calls: list[tuple[list[str], GenParams]] = []
        self.loglik_calls: list[tuple[list[str], list[str]]] = []

    def enqueue(self, texts: Iterable[str]) -> None:
        self._queue.extend(texts)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _next(self, prompt: str) -> str:
        if self._fn is not None:
            return self._fn(prompt)
        if self._queue:
            return self._queue.popleft()
        if self._default is None:
            raise BackendError(f"ScriptedLM {self.model_id!r} ran out of scripted completions")
        return self._default

    def generate(self, prompts: Sequence[str], params: GenParams,
                 progress: ProgressHook | None = None) -> list[Completion]:
        """One completion per prompt; ``progress`` gets the cumulative tokens after each prompt (a scripted
        "decode step") and may raise Stopped, which propagates."""
        self.calls.append((list(prompts), params))
        out: list[Completion] = []
        tokens = 0
        for p in prompts:
            raw = self._next(p)
            text, stopped = apply_stops(raw, params.stop)
            words = text.split(" ")
            finish = "stop" if stopped else "eos"
            if len(text.split()) > params.max_new_tokens:
                text = " ".join(words[: params.max_new_tokens])
                finish = "length"
            out.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=self.count_tokens(p),
                    completion_tokens=len(text.split()),
                    model_id=self.model_id,
                    style=params.style,
                )
            )
            tokens += out[-1].completion_tokens
            if progress is not None:
                progress(tokens)
        if progress is not None and not prompts:
            progress(0)
        return out

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        if len(prompts) != len(continuations):
            raise ValueError("loglik needs as many prompts as continuations")
        self.loglik_calls.append((list(prompts), list(continuations)))
        nll = self._nll if callable(self._nll) else (lambda p, c, v=float(self._nll): v)
        return [[float(nll(p, c))] * max(1, len(c.split())) for p, c in zip(prompts, continuations)]
