"""The transformers backend: any Hugging Face id, local folder or GGUF file as an :class:`~curate.lm.base.LM`.

fp32 on CPU (bf16 halves batched throughput there), bf16/fp16 with ``device_map="auto"`` on CUDA.
``generate`` runs prompts in batches of ``batch_size`` with left padding; each row stops on its own at
EOS, at one of its stop strings or when it starts looping (the repetition guard), and reports which.
``progress`` (optional) gets the call's cumulative new tokens after every decode step (from the stopping
criterion) and once at the end; a Stopped it raises ends the call at that step.
``loglik`` scores continuations by per-token negative log-likelihood (natural log).

Two decoders, the same completions (greedy: token for token; sampling: the same distribution):

* ``decode="fast"`` (the default where the model's cache allows it): curate's own loop over the model's forward.
  (a) The longest token prefix a group of rows of a batch share (the demo block of Ensemble-Instruct's
  prompts, a chat template's system turn; a batch may hold several groups) is run through the model once and
  its key/value cache kept (the last ``prefix_cache`` prefixes, batch 1), so later rows that start with it
  only prefill their own suffix;
  (b) a row that finished (EOS, stop string, repetition guard, length) leaves the batch at once: the cache
  is re-packed to the rows still running, so finished rows stop costing compute. Models with sliding-window
  layers (Gemma 3) get (b) only: such a layer keeps just the window of a prefix, so a cached prefix cannot be
  extended by a longer prompt.
* ``decode="hf"``: transformers' ``model.generate`` on the left-padded batch, the plain twin the fast loop is
  tested against (tests/test_hf_backend.py) and the fallback for models whose cache holds recurrent state.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, DynamicCache, GenerationConfig, StoppingCriteria,
                          StoppingCriteriaList)
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from ..errors import BackendError, ModelNotFoundError
from .base import Completion, GenParams, ProgressHook, apply_stops, has_degenerate_repetition

__all__ = ["HFBackend", "convert_gguf", "transformers_version"]

# Bytes of fp32 logits one loglik forward may materialise (rows x kept positions x vocabulary x 4).
_LOGLIK_LOGITS_BUDGET = 256 << 20
# A shared prefix shorter than this is not worth a cache entry: the rows prefill it themselves.
_MIN_PREFIX = 16
# A cached prefix is reused when it covers the batch's shared prefix but for at most this many tokens (they
# are prefilled with each row's suffix), so one demo block serves batches whose rows also share a few words.
_PREFIX_SLACK = 64
# Batches are formed from prompts sorted by their first tokens (prompts with one demo block batch together).
_GROUP_TOKENS = 32

Decode = Literal["fast", "hf"]


def transformers_version() -> str:
    return transformers.__version__


class HFBackend:
    """A causal LM loaded with transformers.

    ``model`` is a Hugging Face id, a local model folder, a ``.gguf`` file, or a folder together with
    ``gguf_file``. ``chat_template``: ``None`` uses the tokenizer's chat template when it has one,
    ``False`` never does (completion only), ``True`` requires one. Raises ModelNotFoundError (with the
    fix) when the model cannot be found offline.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        gguf_file: str | None = None,
        model_id: str | None = None,
        device: str | None = None,
        dtype: torch.dtype | str | None = None,
        batch_size: int | None = None,
        chat_template: bool | None = None,
        decode: Decode = "fast",
        prefix_cache: int = 4,
    ):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        if decode not in ("fast", "hf"):
            raise ValueError(f"decode must be 'fast' or 'hf' (got {decode!r})")
        if prefix_cache < 0:
            raise ValueError(f"prefix_cache must be >= 0 (got {prefix_cache})")
        source, gguf_file = _resolve_source(model, gguf_file)
        self.model_id = model_id or (gguf_file or str(model))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if batch_size is None:  # this machine's measured pick (`curate models tune`), else 8
            from ..tune import backend_defaults
            batch_size, threads = backend_defaults(self.model_id)
            if threads and self.device == "cpu" and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        self.batch_size = batch_size
        if dtype is None:
            dtype = torch.float32 if self.device == "cpu" else _cuda_dtype()
        self.tokenizer, self.model = _load(source, gguf_file, self.device, dtype)
        self.model.eval()
        if self.model.device.type == "cpu":
            _own_weights(self.model)
        self._eos_ids = _eos_ids(self.model, self.tokenizer)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos_ids[0]
        # Only what we pass decides decoding: drop the checkpoint's sampling defaults (temperature,
        # repetition_penalty, ...) so GenParams mean the same thing for every model.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id, eos_token_id=self._eos_ids, pad_token_id=self._pad_id
        )
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat_template and not has_template:
            raise BackendError(f"{self.model_id}: chat_template=True but its tokenizer has no chat template")
        self.supports_chat = has_template and chat_template is not False
        n_ctx = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        self.context_length: int | None = int(n_ctx) if n_ctx else None
        forward = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward
        self._cache_kw = "cache" if "cache" in forward else "past_key_values"  # renamed in transformers 5.2x
        self._lock = threading.Lock()  # one call at a time: the cores are shared anyway, and seeding is global
        # The fast loop re-packs growing key/value caches (plain or sliding-window layers; anything else, e.g.
        # recurrent state, decodes with generate); the prefix cache needs plain layers only (a sliding-window
        # layer keeps only the window of a prefix, which a longer prompt cannot extend from).
        kinds = _cache_kinds(self.model)
        self.decode: Decode = decode if decode == "hf" or kinds <= {"plain", "sliding"} and kinds else "hf"
        self._prefix_ok = kinds == {"plain"}
        self.prefix_cache = prefix_cache
        self._prefixes: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.prefix_stats = {"hits": 0, "misses": 0, "prefix_tokens_reused": 0}
        # Cumulative wall seconds of generate's two phases (curate.profile splits a run's model time with them):
        # prefill (the prompts' forward, up to the first new token) and decode (the token-by-token steps).
        self.phase_seconds = {"prefill": 0.0, "decode": 0.0}

    def __repr__(self) -> str:
        return (f"HFBackend({self.model_id!r}, device={self.device!r}, batch_size={self.batch_size}, "
                f"decode={self.decode!r})")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    # -- generate -------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], params: GenParams,
                 progress: ProgressHook | None = None) -> list[Completion]:
        """One Completion per prompt, in order. ``progress(tokens)`` is called after every decode step with
        the new tokens of this call so far, and once at the end; what it raises (Stopped) propagates.
        Raises BackendError for a chat request to a model without a chat template, or a prompt that does
        not fit the context."""
        encoded = [self._encode_prompt(p, params.style) for p in prompts]
        out: list[Completion | None] = [None] * len(prompts)
        if self.decode == "fast":  # one demo block per batch where possible, similar lengths within it
            order = sorted(range(len(prompts)), key=lambda i: (encoded[i][:_GROUP_TOKENS], len(encoded[i])))
        else:
            order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # similar lengths batch together
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            done_tokens = 0  # tokens of the finished batches of this call
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                hook = None if progress is None else (lambda n, base=done_tokens: progress(base + n))
                for i, c in zip(chunk, self._generate_batch([encoded[i] for i in chunk], params, hook)):
                    out[i] = c
                    done_tokens += c.completion_tokens
        if progress is not None:
            progress(done_tokens)
        return out  # type: ignore[return-value]

    def _encode_prompt(self, prompt: str, style: str) -> list[int]:
        if style == "chat":
            if not self.supports_chat:
                raise BackendError(
                    f"{self.model_id} has no chat template, so it cannot take chat-style prompts; "
                    "use it for completion-style (few-shot) prompts only"
                )
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = self.tokenizer(text, add_special_tokens=False).input_ids  # the template has the BOS
        else:
            ids = self.tokenizer(prompt).input_ids
        if not ids:
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self._eos_ids[0]]
        if self.context_length and len(ids) >= self.context_length:
            raise BackendError(
                f"{self.model_id}: the prompt is {len(ids)} tokens but the context holds {self.context_length}; "
                "shorten it (fewer or shorter demonstrations)"
            )
        return ids

    def _generate_batch(self, rows: list[list[int]], params: GenParams,
                        progress: ProgressHook | None = None) -> list[Completion]:
        if self.decode == "fast":
            return self._generate_batch_fast(rows, params, progress)
        return self._generate_batch_hf(rows, params, progress)

    def _generate_batch_hf(self, rows: list[list[int]], params: GenParams,
                           progress: ProgressHook | None = None) -> list[Completion]:
        """The plain twin: transformers' generate over the left-padded batch (finished rows ride along)."""
        B, T = len(rows), max(len(r) for r in rows)
        input_ids = torch.full((B, T), self._pad_id, dtype=torch.long)
        attention = torch.zeros((B, T), dtype=torch.long)
        for b, r in enumerate(rows):  # left padding: every row ends at column T-1
            input_ids[b, T - len(r) :] = torch.tensor(r)
            attention[b, T - len(r) :] = 1
        max_new = params.max_new_tokens
        if self.context_length:
            max_new = max(1, min(max_new, self.context_length - T))
        stopper = _RowStopper(self.tokenizer, T, params.stop, self._eos_ids, params.repetition_guard, progress)
        config = GenerationConfig(
            max_new_tokens=max_new,
            min_new_tokens=min(params.min_new_tokens, max_new) or None,
            do_sample=not params.greedy,
            temperature=params.temperature if not params.greedy else 1.0,
            top_k=params.top_k,
            top_p=params.top_p,
            eos_token_id=self._eos_ids,
            pad_token_id=self._pad_id,
        )
        dev = self.model.device
        t0 = time.perf_counter()
        output = self.model.generate(
            input_ids=input_ids.to(dev),
            attention_mask=attention.to(dev),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
        t2 = time.perf_counter()
        t1 = stopper.first_call or t2  # the first criterion call comes right after the first new token
        self.phase_seconds["prefill"] += t1 - t0
        self.phase_seconds["decode"] += t2 - t1
        generated = output[:, T:].tolist()
        return [self._completion(rows[b], generated[b], stopper.finished.get(b, (len(generated[b]), "length")),
                                 params) for b in range(B)]

    def _generate_batch_fast(self, rows: list[list[int]], params: GenParams,
                             progress: ProgressHook | None = None) -> list[Completion]:
        """Our decode loop: the shared prefix from the prefix cache, each row's suffix prefilled left-padded
        behind it, then one token per running row per step; finished rows are dropped from the batch (the
        cache re-packed) the step they finish. Same stopping rules and logits processing as generate."""
        B, T = len(rows), max(len(r) for r in rows)
        max_new = params.max_new_tokens
        if self.context_length:
            max_new = max(1, min(max_new, self.context_length - T))
        min_new = min(params.min_new_tokens, max_new)
        dev = self.model.device
        t0 = time.perf_counter()
        cache, lengths = self._prefixed_cache(rows)
        P = max(lengths)  # the cached prefixes, left-padded, fill columns [0, P)
        suffixes = [r[n:] for r, n in zip(rows, lengths)]
        W = max(len(x) for x in suffixes)
        ids = torch.full((B, W), self._pad_id, dtype=torch.long)
        mask = torch.zeros((B, P + W), dtype=torch.long)
        for b, (x, n) in enumerate(zip(suffixes, lengths)):  # [pad][prefix][pad][suffix]
            mask[b, P - n:P] = 1
            ids[b, W - len(x):] = torch.tensor(x)
            mask[b, P + W - len(x):] = 1
        first = torch.tensor(lengths, dtype=torch.long)[:, None]  # each suffix continues at its prefix's length
        pos = first + (mask[:, P:].cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(ids.to(dev), mask.to(dev), pos.to(dev), cache)
        t1 = time.perf_counter()
        self.phase_seconds["prefill"] += t1 - t0
        next_pos = torch.tensor([n + len(x) for x, n in zip(suffixes, lengths)], dtype=torch.long)
        warpers = _warpers(params)
        eos = torch.tensor(self._eos_ids, device=dev)
        stops = tuple(params.stop)
        gen: list[list[int]] = [[] for _ in range(B)]
        finished: dict[int, tuple[int, str]] = {}
        active = list(range(B))
        for step in range(max_new):
            scores = logits.float()
            if step < min_new:
                scores[:, eos] = -float("inf")
            if params.greedy:
                tokens = scores.argmax(-1)
            else:
                scores = warpers(None, scores)
                tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            keep: list[int] = []
            for j, (b, t) in enumerate(zip(active, tokens.tolist())):
                gen[b].append(t)
                reason = _finish_reason(self.tokenizer, gen[b], stops, self._eos_ids, params.repetition_guard)
                if reason is None and len(gen[b]) >= max_new:
                    reason = "length"
                if reason is None:
                    keep.append(j)
                else:
                    finished[b] = (len(gen[b]), reason)
            if progress is not None:
                progress(sum(len(g) for g in gen))
            if not keep:
                break
            if len(keep) < len(active):  # re-pack: the finished rows leave the batch
                idx = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(idx.to(dev))
                mask, next_pos, tokens = mask[idx], next_pos[idx], tokens[idx.to(tokens.device)]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
            logits = self._forward(tokens[:, None].to(dev), mask.to(dev), next_pos[:, None].to(dev), cache)
            next_pos = next_pos + 1
        self.phase_seconds["decode"] += time.perf_counter() - t1
        return [self._completion(rows[b], gen[b], finished.get(b, (len(gen[b]), "length")), params)
                for b in range(B)]

    def _prefixed_cache(self, rows: list[list[int]]) -> tuple[DynamicCache, list[int]]:
        """A cache holding each row's cached prefix, and each prefix's length (0: none).

        Rows are grouped by the prefix they share (consecutive rows whose common prefix is at least
        _MIN_PREFIX tokens; the caller sorted them by their first tokens). A group's prefix comes from the
        prefix cache when a cached one covers it to within _PREFIX_SLACK tokens, else it is run once (batch 1)
        and cached; a single row only ever reuses a cached prefix. The plan is used only when it shortens the
        batch's padded suffix by more tokens (rows x columns) than the new prefixes cost: a row without a
        prefix keeps the suffix as wide as the whole prompt, so a batch that mixes them gains nothing.
        The prefixes are left-padded to the longest in the cache (masked by the caller), so each row's suffix
        continues at its own prefix's length. Every row keeps at least one token of its own."""
        lengths = [0] * len(rows)
        empty = DynamicCache(config=self.model.config)
        if self.prefix_cache == 0 or not self._prefix_ok:
            return empty, lengths
        plan: list[tuple[int, int, list[int], tuple | None, int]] = []  # (first row, end, shared, key, n)
        i = 0
        while i < len(rows):
            j, n = i + 1, len(rows[i]) - 1
            while j < len(rows):  # extend the group while the next row shares enough of its prefix
                shared = _common_prefix([rows[i], rows[j]], min(n, len(rows[j]) - 1))
                if shared < _MIN_PREFIX:
                    break
                n, j = shared, j + 1
            if n >= _MIN_PREFIX:
                key, used = self._lookup_prefix(rows[i][:n])
                if key is not None:
                    plan.append((i, j, rows[i][:n], key, used))
                elif j - i > 1:  # a group without a cached prefix: run it once, if the plan is used
                    plan.append((i, j, rows[i][:n], None, n))
            i = j
        for i, j, _, _, n in plan:
            lengths[i:j] = [n] * (j - i)
        width = max(len(r) for r in rows)
        saved = len(rows) * (width - max(len(r) - n for r, n in zip(rows, lengths)))
        cost = sum(n for _, _, _, key, n in plan if key is None)
        if saved <= cost or saved < _MIN_PREFIX * len(rows):
            return empty, [0] * len(rows)
        picks: list[tuple[list, int] | None] = [None] * len(rows)  # (the prefix's layers, tokens of it used)
        for i, j, shared, key, n in plan:
            if key is None:
                key = self._store_prefix(shared)
            else:
                self.prefix_stats["hits"] += 1
                self.prefix_stats["prefix_tokens_reused"] += n * (j - i)
                self._prefixes.move_to_end(key)
            picks[i:j] = [(self._prefixes[key], n)] * (j - i)
        while len(self._prefixes) > self.prefix_cache:  # the batch holds its own references to what it uses
            self._prefixes.popitem(last=False)
        P = max(lengths)
        some = next(p for p in picks if p)[0]
        cache = empty
        for layer in range(len(some)):
            ks, vs = [], []
            for pick in picks:
                k0, v0 = (pick[0] if pick else some)[layer]
                n = pick[1] if pick else 0
                pad = (0, 0, P - n, 0)  # zeros before the prefix (masked): every prefix ends at column P - 1
                ks.append(torch.nn.functional.pad(k0[:, :, :n], pad))
                vs.append(torch.nn.functional.pad(v0[:, :, :n], pad))
            cache.update(torch.cat(ks), torch.cat(vs), layer)
        return cache, lengths

    def _lookup_prefix(self, shared: list[int]) -> tuple[tuple | None, int]:
        """(key, tokens of it to use) of the cached prefix that covers ``shared`` to within _PREFIX_SLACK
        tokens, or (None, 0)."""
        best, L = None, 0
        for key in self._prefixes:
            n = _common_prefix([key, shared], len(shared))
            if n > L:
                best, L = key, n
        if best is not None and L >= max(_MIN_PREFIX, len(shared) - _PREFIX_SLACK):
            return best, L
        return None, 0

    def _store_prefix(self, shared: list[int]) -> tuple:
        """Run ``shared`` once (batch 1) and cache its keys and values; returns its key. The caller applies
        the cache's bound once its batch holds the entries it uses."""
        self.prefix_stats["misses"] += 1
        fresh = DynamicCache(config=self.model.config)
        self._forward(torch.tensor([shared], device=self.model.device), None, None, fresh)
        key = tuple(shared)
        self._prefixes[key] = [(layer.keys, layer.values) for layer in fresh.layers]
        return key

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor | None,
                 cache: DynamicCache) -> torch.Tensor:
        """The next-token logits (rows x vocabulary) of one forward step that extends ``cache`` in place."""
        kwargs: dict[str, Any] = {self._cache_kw: cache, "use_cache": True}
        if self._keeps_logits:
            kwargs["logits_to_keep"] = 1
        return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **kwargs).logits[:, -1, :]

    def _completion(self, prompt: list[int], gen: list[int], finish: tuple[int, str], params: GenParams
                    ) -> Completion:
        n, reason = finish
        text = self.tokenizer.decode(gen[: n - 1] if reason == "eos" else gen[:n], skip_special_tokens=True)
        text, stopped = apply_stops(text, params.stop)
        return Completion(
            text=text,
            finish_reason="stop" if stopped else reason,
            prompt_tokens=len(prompt),
            completion_tokens=n,
            model_id=self.model_id,
            style=params.style,
        )

    # -- loglik ---------------------------------------------------------------------------------------

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """For each pair, the NLL (natural log) of each continuation token given the prompt and the
        continuation tokens before it. Prompt and continuation are tokenised separately, so the
        continuation's tokens are exactly its own. Raises BackendError when a pair exceeds the context."""
        if len(prompts) != len(continuations):
            raise ValueError(f"loglik needs as many prompts as continuations ({len(prompts)} != {len(continuations)})")
        pairs = [self._encode_pair(p, c) for p, c in zip(prompts, continuations)]
        out: list[list[float]] = [[] for _ in pairs]
        order = sorted(range(len(pairs)), key=lambda i: sum(map(len, pairs[i])))
        vocab = self.model.get_output_embeddings().weight.shape[0]
        with self._lock, torch.inference_mode():
            i = 0
            while i < len(order):
                chunk = [order[i]]  # grow the chunk while its kept logits stay within the budget
                while (
                    i + len(chunk) < len(order)
                    and len(chunk) < self.batch_size
                    and (len(chunk) + 1) * (max(len(pairs[j][1]) for j in chunk + [order[i + len(chunk)]]) + 1)
                    * vocab * 4 <= _LOGLIK_LOGITS_BUDGET
                ):
                    chunk.append(order[i + len(chunk)])
                for j, nll in zip(chunk, self._loglik_batch([pairs[j] for j in chunk])):
                    out[j] = nll
                i += len(chunk)
        return out

    def _encode_pair(self, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
        p = self.tokenizer(prompt).input_ids
        if not p:  # the first continuation token needs something to be conditioned on
            p = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self._eos_ids[0]]
        c = self.tokenizer(continuation, add_special_tokens=False).input_ids
        if self.context_length and len(p) + len(c) > self.context_length:
            raise BackendError(
                f"{self.model_id}: prompt ({len(p)} tokens) + continuation ({len(c)} tokens) exceed the context "
                f"of {self.context_length} tokens"
            )
        return p, c

    def _loglik_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        seqs = [p + c for p, c in pairs]
        B, T = len(seqs), max(len(s) for s in seqs)
        C = max(len(c) for _, c in pairs)  # every continuation lies in the last C columns (left padding)
        input_ids = torch.full((B, T), self._pad_id, dtype=torch.long)
        attention = torch.zeros((B, T), dtype=torch.long)
        for b, s in enumerate(seqs):
            input_ids[b, T - len(s) :] = torch.tensor(s)
            attention[b, T - len(s) :] = 1
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        dev = self.model.device
        kwargs: dict[str, Any] = {"logits_to_keep": C + 1} if self._keeps_logits else {}
        logits = self.model(
            input_ids=input_ids.to(dev), attention_mask=attention.to(dev), position_ids=position_ids.to(dev), **kwargs
        ).logits
        logits = logits[:, -(C + 1) : -1].float()  # (B, C, V): column k predicts token T-C+k
        targets = input_ids[:, T - C :].to(logits.device)  # (B, C)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, C)
        return [nll[b, C - len(c) :].tolist() if c else [] for b, (_, c) in enumerate(pairs)]


class _RowStopper(StoppingCriteria):
    """Finishes each row on its own and remembers why: ``finished[row] = (tokens generated, reason)``.

    Reasons: ``eos`` (its last token is an EOS id), ``stop`` (its decoded text contains a stop string),
    ``repetition`` (its tail is a loop, see :func:`has_degenerate_repetition`). ``progress`` gets the batch's
    new tokens so far (finished rows count their own length) at every step; what it raises propagates out
    of ``model.generate``.
    """

    def __init__(self, tokenizer, prompt_width: int, stops: Sequence[str], eos_ids: Sequence[int], guard: bool,
                 progress: ProgressHook | None = None):
        self.tokenizer = tokenizer
        self.start = prompt_width
        self.stops = tuple(stops)
        self.eos = set(eos_ids)
        self.guard = guard
        self.progress = progress
        self.finished: dict[int, tuple[int, str]] = {}
        self.first_call: float | None = None  # perf_counter of the first call (the end of the prefill)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        generated = input_ids[:, self.start :].tolist()
        for row, ids in enumerate(generated):
            if row not in self.finished and (reason := self._reason(ids)):
                self.finished[row] = (len(ids), reason)
        if self.progress is not None:
            step = input_ids.shape[1] - self.start
            self.progress(sum(self.finished[r][0] if r in self.finished else step for r in range(len(generated))))
        return torch.tensor([row in self.finished for row in range(len(generated))], device=input_ids.device)

    def _reason(self, ids: list[int]) -> str | None:
        return _finish_reason(self.tokenizer, ids, self.stops, self.eos, self.guard)


def _finish_reason(tokenizer, ids: list[int], stops: Sequence[str], eos, guard: bool) -> str | None:
    """Why a row with these generated ids has finished (``eos``, ``stop``, ``repetition``), or None."""
    if ids and ids[-1] in eos:
        return "eos"
    if stops and apply_stops(tokenizer.decode(ids, skip_special_tokens=True), stops)[1]:
        return "stop"
    if guard and has_degenerate_repetition(ids):
        return "repetition"
    return None


def _common_prefix(rows: Sequence[Sequence[int]], limit: int) -> int:
    """The length of the longest token prefix all rows share, at most ``limit``."""
    first = rows[0]
    n = min(limit, *(len(r) for r in rows))
    for r in rows[1:]:
        i = 0
        while i < n and r[i] == first[i]:
            i += 1
        n = i
    return n


def _warpers(params: GenParams) -> LogitsProcessorList:
    """The sampling warpers generate applies for these settings, in its order (temperature, top-k, top-p)."""
    out = LogitsProcessorList()
    if params.greedy:
        return out
    if params.temperature != 1.0:
        out.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k:
        out.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        out.append(TopPLogitsWarper(params.top_p))
    return out


def _cache_kinds(model) -> set[str]:
    """The kinds of layer in the model's default cache: ``plain`` (growing key/value), ``sliding`` (a sliding
    window of them), ``other`` (recurrent or indexed state, which the fast loop does not handle)."""
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # a config DynamicCache cannot read: leave decoding to generate
        return {"other"}
    return {"plain" if type(layer) is DynamicLayer else "sliding" if type(layer) is DynamicSlidingWindowLayer
            else "other" for layer in cache.layers}


# -- loading --------------------------------------------------------------------------------------------


def _resolve_source(model: str | Path, gguf_file: str | None) -> tuple[str, str | None]:
    """(what from_pretrained gets, gguf file name): a ``.gguf`` path is split into its folder and name;
    a folder without config.json holding exactly one ``.gguf`` file uses that file."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return str(path.parent), path.name
    if path.is_dir() and gguf_file is None and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0].name
    return (str(path) if path.exists() else str(model)), gguf_file


def _load(source: str, gguf_file: str | None, device: str, dtype) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    model_kwargs: dict[str, Any] = {"dtype": dtype}
    if device.startswith("cuda"):
        model_kwargs["device_map"] = "auto" if device == "cuda" else device
    try:
        tokenizer = _from_pretrained(AutoTokenizer, source, **kwargs)
        model = _from_pretrained(AutoModelForCausalLM, source, **kwargs, **model_kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(_not_found_message(source, gguf_file, exc)) from None
    if not device.startswith("cuda"):
        model.to(device)
    return tokenizer, model


def _from_pretrained(cls, source: str, **kwargs):
    """Local files first; the network only when the source is not a local path and HF_HUB_OFFLINE is unset."""
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        if Path(source).exists() or _offline():
            raise
    return cls.from_pretrained(source, **kwargs)


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    return env or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _not_found_message(source: str, gguf_file: str | None, exc: Exception) -> str:
    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if Path(source).exists():
        what = f"{source}/{gguf_file}" if gguf_file else source
        return f"could not load a transformers model from {what}: {why}"
    return (
        f"model {source!r} could not be found locally, and it cannot be downloaded: this machine is offline "
        f"(or HF_HUB_OFFLINE is set). Use a local model folder or .gguf file (e.g. one saved with "
        f"save_pretrained, or copied from a machine with a network into the Hugging Face cache), or an "
        f"embedded model name (see `curate models`). [{why}]"
    )


def _cuda_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# End-of-text / end-of-turn tokens of common families. A GGUF file often names only one of them as EOS
# (Qwen's only <|im_end|>), yet a model that emits any of them has finished.
_END_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>")


def _eos_ids(model, tokenizer) -> list[int]:
    """The generation config's EOS ids, the tokenizer's, and the known end tokens it has as added tokens."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    added = tokenizer.get_added_vocab()
    known = [added[t] for t in _END_TOKENS if t in added]
    configured = [configured] if isinstance(configured, int) else list(configured or [])
    for x in configured + [tokenizer.eos_token_id] + known:
        if x is not None and x not in ids:
            ids.append(int(x))
    if not ids:
        raise BackendError("the model has no end-of-sequence token (neither its generation config nor its tokenizer)")
    return ids


def _own_weights(model) -> None:
    """Copy every weight into the process's own memory, Linear weights input-major (same shape, same values).

    1. transformers leaves the weights memory-mapped from the safetensors file; once they are touched the
       mapping counts in the resident size on top of any copy, so everything is copied and the map dropped:
       the model then costs its weights once (Qwen 0.5B: 3.0 GB resident instead of 4.5 GB).
    2. On CPU, MKL's fp32 GEMM with few rows (decoding: one row per sequence) runs about twice as fast with
       the weight stored input-major, and large prefill GEMMs equally fast: batched generation of SmolLM2
       at batch 8 goes from ~57 to ~71 tokens/s on 2 cores. Tied embeddings share that storage (a lookup
       gathers strided rows, a negligible cost).
    """
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    seen: set[int] = set()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if id(t) in seen:
                continue
            seen.add(id(t))
            if id(t) in linear and t.dim() == 2:
                t.data = t.data.t().contiguous().t()
            else:
                t.data = t.data.clone()


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise a GGUF file into a plain transformers folder (fp32 safetensors, config, tokenizer).

    Loading the folder gives bit-identical weights in seconds instead of parsing the GGUF again
    (about a minute on 2 cores). ``out_dir`` is written in place; callers make it atomic.
    """
    from safetensors.torch import save_model

    gguf_path, out = Path(gguf_path), Path(out_dir)
    tokenizer, model = _load(str(gguf_path.parent), gguf_path.name, "cpu", torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the weights are plain fp32 now
    type(model.config).from_dict(config).save_pretrained(out)
    model.generation_config.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))  # handles tied embeddings
    tokenizer.save_pretrained(out)
    del model
    return out
