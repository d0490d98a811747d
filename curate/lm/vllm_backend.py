"""In-process vLLM: offline batched generation on a GPU, as an :class:`~curate.lm.base.LM`.

A model spec ``vllm:<HF id or folder>`` selects it (``curate generate --models vllm:Qwen/Qwen2.5-7B-Instruct``).
It needs the ``vllm`` extra and a CUDA GPU: ``pip install 'curate[vllm]'``. vLLM is imported only when such a
backend is built, so CPU machines never import it; where it or the GPU is missing, building one raises a
:class:`~curate.errors.BackendError` that says which and how to install.

UNVERIFIED ON REAL HARDWARE: this module has been tested only against a fake ``vllm`` module (what it sends
to vLLM and how it reads vLLM's answers: ``tests/test_vllm_backend.py``), never against vLLM on a GPU.

How it maps the protocol:

* The engine is ``vllm.LLM(model, enable_prefix_caching=True, seed=…)``: prompts that share a prefix
  (the demonstration block of few-shot prompts) reuse its KV cache across the whole batch.
* Prompts are tokenised here with the model's tokenizer, as the transformers backend does (a chat prompt is
  the user turn of the chat template), and sent as token ids, so both backends see the same tokens.
* :class:`~curate.lm.base.GenParams` → ``SamplingParams``: ``temperature`` (0 is greedy), ``top_k`` (0, "off",
  becomes the installed vLLM's own "off" value), ``top_p``, ``max_new_tokens`` → ``max_tokens`` (capped by
  the context), ``min_new_tokens`` → ``min_tokens``, ``stop``. ``seed``: prompt i of a call is sampled with
  seed ``seed + i``, so a call is reproducible and two copies of one prompt in a call get different samples.
* The repetition guard runs after generation, on the generated token ids: a completion is cut where its
  last 32 tokens first form one repeated block of ≤ 8 tokens
  (:func:`~curate.lm.base.has_degenerate_repetition`), the point where the transformers backend stops,
  and reported with ``finish_reason="repetition"``.
* Finish reasons: vLLM's ``stop`` with a stop string → ``stop``, with EOS or a stop token → ``eos``,
  ``length`` → ``length``, ``abort`` → ``error``.
* ``loglik`` scores ``prompt + continuation`` (tokenised apart, as the transformers backend does) with
  ``prompt_logprobs=0`` and one generated token, and reads each continuation token's log-probability.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError
from .base import Completion, FinishReason, GenParams, apply_stops, has_degenerate_repetition

__all__ = ["VLLMBackend", "INSTALL_HINT", "import_vllm", "repetition_cut"]

INSTALL_HINT = ("install it on a machine with an NVIDIA GPU and CUDA: pip install 'curate[vllm]'. Without a GPU "
                "use an embedded model (curate models) or a transformers model id without 'vllm:'")
REPEAT_NGRAM, REPEAT_TIMES = 8, 4  # the transformers backend's guard, in tokens


def import_vllm(model: str = ""):
    """The ``vllm`` module, after checking that a CUDA GPU is visible. Raises BackendError naming what is
    missing (the package, the GPU, or both) and how to install."""
    missing = []
    try:
        vllm = importlib.import_module("vllm")
    except ImportError as exc:
        vllm = None
        missing.append(f"the vllm package is not installed ({exc})")
    if not _cuda_available():
        missing.append("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    if missing:
        what = f"vllm:{model}" if model else "the vllm backend"
        raise BackendError(f"{what} needs vLLM and a CUDA GPU, but " + " and ".join(missing) + f"; {INSTALL_HINT}")
    return vllm


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def repetition_cut(token_ids: Sequence[int], ngram: int = REPEAT_NGRAM, repeats: int = REPEAT_TIMES) -> int | None:
    """The length of the shortest prefix of ``token_ids`` that ends in a loop (the transformers backend
    stops generating there), or None when there is none."""
    for end in range(ngram * repeats, len(token_ids) + 1):
        if has_degenerate_repetition(token_ids[:end], ngram, repeats):
            return end
    return None


class VLLMBackend:
    """A model run in this process by vLLM (see the module docstring). ``model``: a Hugging Face id or a
    local folder. ``chat_template``: as for the transformers backend (None: use it when the tokenizer has
    one). ``engine_args`` go to ``vllm.LLM`` (``gpu_memory_utilization``, ``max_model_len``,
    ``tensor_parallel_size``, ``dtype``, …). Raises BackendError without vLLM or a GPU."""

    def __init__(self, model: str | Path, *, model_id: str | None = None, chat_template: bool | None = None,
                 seed: int = 0, **engine_args: Any):
        if not str(model).strip():
            raise BackendError("vllm: needs a model, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct or vllm:/path/to/folder")
        self._vllm = import_vllm(str(model))
        engine_args.setdefault("enable_prefix_caching", True)
        try:
            self.llm = self._vllm.LLM(model=str(model), seed=seed, **engine_args)
        except (OSError, ValueError) as exc:
            raise BackendError(f"vllm:{model}: vLLM could not load the model: {exc}. Check the id or folder "
                               "(offline, the model must be in the local Hugging Face cache)") from exc
        self.model_id = model_id or f"vllm:{model}"
        self.tokenizer = self.llm.get_tokenizer()
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat_template and not has_template:
            raise BackendError(f"{self.model_id}: chat_template=True but its tokenizer has no chat template")
        self.supports_chat = has_template and chat_template is not False
        self.context_length: int | None = _max_model_len(self.llm)
        self._top_k_off = self._vllm.SamplingParams().top_k  # the installed version's "no top-k" (-1 or 0)

    def __repr__(self) -> str:
        return f"VLLMBackend({self.model_id!r})"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    # -- generate -------------------------------------------------------------------------------------

    def sampling_params(self, params: GenParams, prompt_tokens: int, index: int = 0):
        """The ``vllm.SamplingParams`` for prompt ``index`` of a call (``prompt_tokens`` long)."""
        max_new = params.max_new_tokens
        if self.context_length:
            max_new = max(1, min(max_new, self.context_length - prompt_tokens))
        return self._vllm.SamplingParams(
            n=1,
            temperature=params.temperature,
            top_k=params.top_k if params.top_k > 0 and not params.greedy else self._top_k_off,
            top_p=params.top_p if not params.greedy else 1.0,
            max_tokens=max_new,
            min_tokens=min(params.min_new_tokens, max_new),
            stop=list(params.stop),
            seed=None if params.seed is None else params.seed + index,
        )

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[Completion]:
        """One Completion per prompt, in order, from one batched ``LLM.generate``. Raises BackendError for a
        chat request to a model without a chat template, or a prompt that does not fit the context."""
        if isinstance(prompts, str):
            raise TypeError("generate takes a sequence of prompts, not one string")
        if not prompts:
            return []
        encoded = [self._encode_prompt(p, params.style) for p in prompts]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded],
                                    [self.sampling_params(params, len(ids), i) for i, ids in enumerate(encoded)],
                                    use_tqdm=False)
        return [self._completion(out, ids, params) for out, ids in zip(outputs, encoded)]

    def _encode_prompt(self, prompt: str, style: str) -> list[int]:
        if style == "chat":
            if not self.supports_chat:
                raise BackendError(f"{self.model_id} has no chat template, so it cannot take chat-style prompts; "
                                   "use it for completion-style (few-shot) prompts only")
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
            ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)  # the template has the BOS
        else:
            ids = list(self.tokenizer(prompt).input_ids)
        if not ids:
            ids = [self._start_id()]
        if self.context_length and len(ids) >= self.context_length:
            raise BackendError(f"{self.model_id}: the prompt is {len(ids)} tokens but the context holds "
                               f"{self.context_length}; shorten it (fewer or shorter demonstrations)")
        return ids

    def _start_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def _completion(self, request_output, prompt: list[int], params: GenParams) -> Completion:
        out = request_output.outputs[0]
        gen = list(out.token_ids)
        finish = _finish_reason(out)
        text = out.text
        cut = repetition_cut(gen) if params.repetition_guard else None
        if cut is not None:
            gen, finish = gen[:cut], "repetition"
            text = self.tokenizer.decode(gen, skip_special_tokens=True)
        text, stopped = apply_stops(text, params.stop)  # vLLM trims stops itself; a cut text may still hold one
        return Completion(
            text=text,
            finish_reason="stop" if stopped else finish,
            prompt_tokens=len(prompt),
            completion_tokens=len(gen),
            model_id=self.model_id,
            style=params.style,
            error=f"vLLM ended the request with finish_reason={out.finish_reason!r}" if finish == "error" else None,
            extra={"vllm_finish_reason": out.finish_reason},
        )

    # -- loglik ---------------------------------------------------------------------------------------

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """For each pair, the NLL (natural log) of each continuation token given the prompt and the
        continuation tokens before it, from vLLM's prompt log-probabilities. Prompt and continuation are
        tokenised apart. Raises BackendError when a pair exceeds the context or vLLM returns no
        log-probability for a token."""
        if len(prompts) != len(continuations):
            raise ValueError(f"loglik needs as many prompts as continuations ({len(prompts)} != {len(continuations)})")
        pairs = [self._encode_pair(p, c) for p, c in zip(prompts, continuations)]
        todo = [i for i, (_, c) in enumerate(pairs) if c]
        out: list[list[float]] = [[] for _ in pairs]
        if not todo:
            return out
        sp = self._vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=0)
        results = self.llm.generate([{"prompt_token_ids": pairs[i][0] + pairs[i][1]} for i in todo], sp,
                                    use_tqdm=False)
        for i, res in zip(todo, results):
            p, c = pairs[i]
            out[i] = [self._nll(res.prompt_logprobs, len(p) + k, tok) for k, tok in enumerate(c)]
        return out

    def _encode_pair(self, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
        p = list(self.tokenizer(prompt).input_ids) or [self._start_id()]
        c = list(self.tokenizer(continuation, add_special_tokens=False).input_ids)
        if self.context_length and len(p) + len(c) > self.context_length:
            raise BackendError(f"{self.model_id}: prompt ({len(p)} tokens) + continuation ({len(c)} tokens) "
                               f"exceed the context of {self.context_length} tokens")
        return p, c

    def _nll(self, prompt_logprobs, position: int, token: int) -> float:
        entry = prompt_logprobs[position] if prompt_logprobs and position < len(prompt_logprobs) else None
        if not entry or token not in entry:
            raise BackendError(f"{self.model_id}: vLLM returned no log-probability for prompt token {position} "
                               f"(id {token}); is prompt_logprobs supported by this vLLM version?")
        lp = entry[token]
        return -float(getattr(lp, "logprob", lp))


def _finish_reason(out) -> FinishReason:
    reason = out.finish_reason
    if reason == "stop":
        return "stop" if isinstance(getattr(out, "stop_reason", None), str) else "eos"
    if reason == "length":
        return "length"
    return "error"


def _max_model_len(llm) -> int | None:
    engine = getattr(llm, "llm_engine", None)
    config = getattr(engine, "model_config", None)
    n = getattr(config, "max_model_len", None)
    return int(n) if n else None
