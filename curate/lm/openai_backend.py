"""A backend for OpenAI-compatible servers: vLLM, llama.cpp's ``llama-server``, TGI, Ollama.

On the command line a model spec ``openai:<model>@<url>[,<url>...]`` selects it; requests are spread
round-robin over the URLs (several copies of the same model on several GPU machines)::

    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000          # on gpu1 and on gpu2
    curate generate --models openai:Qwen/Qwen2.5-7B-Instruct@http://gpu1:8000,http://gpu2:8000

From Python::

    with OpenAIBackend("Qwen/Qwen2.5-7B-Instruct", ["http://gpu1:8000", "http://gpu2:8000/v1"]) as lm:
        out = lm.generate(["Write a haiku about rain."], GenParams(style="chat", max_new_tokens=64))
        nll = lm.loglik(["Q: 2+2?\\nA:"], [" 4"])

``model_id`` is ``"openai:<model>"`` (without the URLs: the same model served from two machines is one
model). The API key comes from the ``api_key`` argument or the ``OPENAI_API_KEY`` environment variable and
is sent as ``Authorization: Bearer <key>``; local servers started without a key need none.

How :class:`~curate.lm.base.GenParams` maps onto the request: ``temperature``, ``top_p``, ``seed``,
``stop`` and ``max_new_tokens`` (as ``max_tokens``) are standard fields. ``top_k`` and ``min_new_tokens``
(as ``min_tokens``) are vLLM extensions, sent only when they do something (``top_k > 0``,
``min_new_tokens > 0``); llama.cpp reads ``top_k`` too, other servers ignore them, and OpenAI's own API
refuses them (construct with ``extra_sampling_fields=False`` there). Stop sequences are also applied on
the client, since some servers ignore ``stop``. The repetition guard cannot run inside a server: with
``repetition_guard`` a completion that ran to ``max_tokens`` is cut where its words first repeat the
same 8-word block 4 times in a row, and reported with ``finish_reason="repetition"``.

``loglik`` needs ``echo`` + ``logprobs`` on ``/v1/completions``: vLLM has them; llama.cpp's server (at
the time of writing) and TGI do not, and a :class:`~curate.errors.BackendError` says so.
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence, TypeVar

import httpx

from ..errors import BackendError
from .base import Completion, FinishReason, GenParams, ProgressHook, apply_stops, has_degenerate_repetition

__all__ = ["OpenAIBackend", "parse_openai_spec", "normalize_base_url"]

T = TypeVar("T")
R = TypeVar("R")

COMPLETIONS_PATH = "/v1/completions"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

RETRY_AFTER_CAP = 30.0  # seconds: the most a server's Retry-After header makes us wait
MAX_BACKOFF = 30.0  # seconds: the longest exponential-backoff sleep
REPEAT_NGRAM, REPEAT_TIMES = 8, 4  # the client-side repetition guard, in words

# The server's finish_reason -> the protocol's. vLLM / OpenAI / llama.cpp say "stop" and "length";
# TGI's native names are "eos_token" and "stop_sequence"; vLLM reports an aborted request as "abort".
_FINISH = {
    "length": "length",
    "eos_token": "eos",
    "stop_sequence": "stop",
    "content_filter": "error",
    "abort": "error",
}

_SPEC_RE = re.compile(r"^(?P<model>[^\s]+?)@(?P<urls>https?://\S*)$")


def parse_openai_spec(spec: str) -> tuple[str, list[str]]:
    """Parse ``<model>@<url>[,<url>...]`` (an ``openai:`` prefix is allowed and dropped).

    Returns ``(model, [base_url, ...])`` with the URLs normalised by :func:`normalize_base_url`.
    The model is everything before the first ``@http://`` or ``@https://``, so Ollama tags
    (``llama3.2:1b``) and Hugging Face ids (``Qwen/Qwen2.5-7B-Instruct``) work as they are.
    Raises ``ValueError`` naming what is wrong and showing the expected form.
    """
    example = "openai:Qwen/Qwen2.5-7B-Instruct@http://gpu1:8000,http://gpu2:8000"
    body = spec.strip()
    if body.startswith("openai:"):
        body = body[len("openai:") :]
    m = _SPEC_RE.match(body)
    if m is None:
        if "@" not in body:
            why = "it has no '@<url>' part"
        elif body.startswith("@"):
            why = "the model name before '@' is empty"
        elif re.search(r"\s", body):
            why = "it contains whitespace"
        else:
            why = "the server URL after '@' must start with http:// or https://"
        raise ValueError(f"bad OpenAI model spec {spec!r}: {why}; expected e.g. {example!r}")
    urls = m.group("urls").split(",")
    if any(not u for u in urls):
        raise ValueError(f"bad OpenAI model spec {spec!r}: empty URL in the comma-separated list")
    return m.group("model"), [normalize_base_url(u) for u in urls]


def normalize_base_url(url: str) -> str:
    """``http://host:8000/v1/`` -> ``http://host:8000``: the server root, to which API paths are added.

    Raises ``ValueError`` when the URL has no http(s) scheme or no host.
    """
    u = url.strip().rstrip("/")
    if u.endswith("/v1"):
        u = u[: -len("/v1")]
    try:
        host = httpx.URL(u).host if re.match(r"^https?://", u) else ""
    except httpx.InvalidURL:
        host = ""
    if not host:
        raise ValueError(f"server URL {url!r} must look like http://HOST:PORT (e.g. http://localhost:8000)")
    return u


class _HTTPRefused(BackendError):
    """A non-retryable HTTP error status (4xx other than 408/429); still a ``BackendError``."""

    def __init__(self, message: str, *, status: int, server_message: str):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class OpenAIBackend:
    """An :class:`~curate.lm.base.LM` over one model served by one or more OpenAI-compatible servers.

    Requests of a batch run in parallel on a thread pool of ``max_concurrency`` workers shared by all
    callers of this object (the limit holds across threads), over one ``httpx.Client``; each request
    goes to the next base URL in turn. Connection errors, timeouts, HTTP 408/429 and 5xx are retried
    up to ``max_retries`` times with exponential backoff (``backoff * 2**i`` seconds plus up to 25 %
    jitter, or the server's ``Retry-After``, at most 30 s), each retry on the next URL. Other HTTP
    errors are not retried.

    ``generate`` and ``loglik`` raise :class:`~curate.errors.BackendError` (naming the URL, the HTTP
    status, the server's message and the fix) when a request fails for good; the rest of the batch is
    abandoned. ``context_length`` is ``None`` unless given or learnt by :meth:`check` from vLLM.
    ``extra_sampling_fields=False`` stops sending vLLM's ``top_k`` / ``min_tokens`` (for servers that
    refuse unknown fields).
    """

    def __init__(
        self,
        model: str,
        base_urls: str | Sequence[str],
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        supports_chat: bool = True,
        context_length: int | None = None,
        extra_sampling_fields: bool = True,
    ):
        if not model:
            raise ValueError("OpenAIBackend needs a model name (the one the server serves, e.g. its --model)")
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("OpenAIBackend needs at least one server URL, e.g. http://localhost:8000")
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError(
                "OpenAIBackend needs max_concurrency >= 1, max_retries >= 0, timeout > 0 and backoff >= 0 "
                f"(got {max_concurrency}, {max_retries}, {timeout}, {backoff})"
            )
        self.model = model
        self.model_id = f"openai:{model}"
        self.base_urls = [normalize_base_url(u) for u in urls]
        self.supports_chat = supports_chat
        self.context_length = context_length
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.extra_sampling_fields = extra_sampling_fields
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_concurrency + 4, max_keepalive_connections=max_concurrency),
        )
        self._lock = threading.Lock()
        self._next_url = 0
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._echo_max_tokens = 0  # 0 where the server echoes without generating (vLLM); else 1
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.model!r}, {self.base_urls!r})"

    # -- the protocol -------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], params: GenParams,
                 progress: ProgressHook | None = None) -> list[Completion]:
        """One :class:`Completion` per prompt, in order. ``progress(tokens)`` is called (in this thread)
        after each finished request with the completion tokens so far, and once at the end; what it raises
        (Stopped) cancels the requests not yet sent and propagates. Raises ``BackendError`` (see the class)."""
        if isinstance(prompts, str):
            raise TypeError("generate takes a sequence of prompts, not one string")
        if params.style == "chat" and not self.supports_chat:
            raise BackendError(
                f"{self.model_id} was configured with supports_chat=False (a base model without a chat "
                "template): use GenParams(style='completion') for it"
            )
        path = CHAT_PATH if params.style == "chat" else COMPLETIONS_PATH

        def one(prompt: str) -> Completion:
            data, base = self._call("POST", path, self._body(prompt, params))
            return self._completion(data, params, base + path)

        if progress is None:
            return self._map(one, prompts)
        return self._map(one, prompts, on_done=lambda done: progress(sum(c.completion_tokens for c in done)))

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        """``out[i][j]`` = -log p(token j of ``continuations[i]`` | ``prompts[i]`` and the tokens before it).

        Scores ``prompt + continuation`` in one ``/v1/completions`` request with ``echo`` and
        ``logprobs`` and keeps the tokens that overlap the continuation's characters (by
        ``text_offset``); a token straddling the boundary counts as the continuation's. An empty
        continuation gives ``[]`` without a request. Raises ``ValueError`` for an empty prompt (the
        first token of a text has no log-probability) and ``BackendError`` where the server does not
        support echo + logprobs.
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"loglik needs as many prompts ({len(prompts)}) as continuations ({len(continuations)})")
        for p, c in zip(prompts, continuations):
            if c and not p:
                raise ValueError("loglik needs a non-empty prompt: the first token of a text has no log-probability")
        return self._map(lambda pc: self._loglik_one(*pc), list(zip(prompts, continuations)))

    # -- extras ---------------------------------------------------------------------------------------

    def check(self) -> dict[str, list[str]]:
        """Ask every server which models it serves (``GET /v1/models``): ``{base_url: [model, ...]}``.

        Fills ``context_length`` from vLLM's ``max_model_len`` when it was unknown. Raises
        ``BackendError`` when a server is unreachable or does not list ``self.model``.
        """
        served: dict[str, list[str]] = {}
        for base in self.base_urls:
            data, _ = self._call("GET", MODELS_PATH, base=base)
            entries = [e for e in data.get("data") or [] if isinstance(e, dict)]
            served[base] = [str(e.get("id")) for e in entries]
            if self.model not in served[base]:
                raise BackendError(
                    f"the server at {base} does not serve model {self.model!r} (it serves {served[base]}); "
                    f"use one of those names, or start the server with this model, e.g. `vllm serve {self.model}`"
                )
            for e in entries:
                if e.get("id") == self.model and self.context_length is None and e.get("max_model_len"):
                    self.context_length = int(e["max_model_len"])
        return served

    def close(self) -> None:
        """Stop the worker threads and close the connections. Calls after this raise ``BackendError``."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> "OpenAIBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------------------

    def _body(self, prompt: str, params: GenParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
            "stream": False,
        }
        if params.style == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.extra_sampling_fields and params.top_k > 0:
            body["top_k"] = params.top_k
        if self.extra_sampling_fields and params.min_new_tokens > 0:
            body["min_tokens"] = params.min_new_tokens
        return body

    def _map(self, fn: Callable[[T], R], items: Sequence[T],
             on_done: Callable[[list[R]], None] | None = None) -> list[R]:
        """``[fn(x) for x in items]`` on the shared pool; on the first error, cancel the rest and raise it.
        ``on_done(results so far)`` runs in this thread after each finished item and once at the end; what it
        raises cancels the rest and propagates."""
        items = list(items)
        if not items:
            if on_done is not None:
                on_done([])
            return []
        pool = self._executor()
        futures: list[Future[R]] = [pool.submit(fn, x) for x in items]
        pending: set = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED if on_done else FIRST_EXCEPTION)
                if any(f.exception() is not None for f in finished):
                    break
                if on_done is not None:
                    on_done([f.result() for f in futures if f.done() and f not in pending])
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        return [f.result() for f in futures]

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise BackendError(f"{self!r} is closed; create a new backend")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="curate-openai")
            return self._pool

    def _take_url_index(self) -> int:
        with self._lock:
            i = self._next_url
            self._next_url = (i + 1) % len(self.base_urls)
            return i

    def _call(
        self, method: str, path: str, body: dict | None = None, *, base: str | None = None
    ) -> tuple[dict, str]:
        """Send one request with retries; returns (parsed JSON, the base URL that answered).

        Without ``base`` the first attempt goes to the next URL in the round-robin and each retry to
        the URL after it.
        """
        start = self._take_url_index() if base is None else 0
        failures: list[str] = []
        tried: list[str] = []
        for attempt in range(self.max_retries + 1):
            if self._closed:
                raise BackendError(f"{self!r} was closed while a request was in flight")
            b = base or self.base_urls[(start + attempt) % len(self.base_urls)]
            url = b + path
            tried.append(b)
            retry_after: float | None = None
            try:
                resp = self._client.request(method, url, json=body)
            except httpx.TimeoutException as e:
                failures.append(f"{url}: no answer within timeout={self.timeout:g} s ({type(e).__name__})")
            except httpx.TransportError as e:
                failures.append(f"{url}: {type(e).__name__}: {e or 'connection failed'}")
            else:
                status = resp.status_code
                if status < 400:
                    return self._json(resp, url), b
                if status not in (408, 429) and status < 500:
                    raise self._refused(url, resp)
                failures.append(f"{url}: HTTP {status}: {_server_message(resp)}")
                retry_after = _retry_after(resp)
            if attempt < self.max_retries:
                self._sleep(retry_after if retry_after is not None else self._backoff_delay(attempt))
        raise BackendError(self._exhausted(method, path, failures, tried))

    def _backoff_delay(self, attempt: int) -> float:
        return min(MAX_BACKOFF, self.backoff * 2**attempt * (1 + 0.25 * random.random()))

    def _json(self, resp: httpx.Response, url: str) -> dict:
        try:
            data = resp.json()
        except ValueError:
            raise BackendError(
                f"{url} answered HTTP {resp.status_code} with something that is not JSON "
                f"({resp.text[:200]!r}); is this an OpenAI-compatible server?"
            ) from None
        if not isinstance(data, dict):
            raise BackendError(f"{url} answered with JSON that is not an object: {str(data)[:200]}")
        return data

    def _refused(self, url: str, resp: httpx.Response) -> _HTTPRefused:
        status, msg = resp.status_code, _server_message(resp)
        text = f"{self.model_id}: {resp.request.method} {url} failed with HTTP {status}: {msg}"
        if status in (401, 403):
            if self._api_key:
                text += " — the server refused the API key given (api_key / OPENAI_API_KEY): check it"
            else:
                text += (
                    " — the server wants an API key: set the OPENAI_API_KEY environment variable or pass "
                    "api_key= (it is sent as 'Authorization: Bearer <key>')"
                )
        elif status == 404:
            text += (
                f" — check that the server serves model {self.model!r} (GET {url.split('/v1/')[0]}{MODELS_PATH} "
                "lists its models) and that the URL is the server's root, e.g. http://host:8000"
            )
        elif re.search(r"\b(top_k|min_tokens)\b", msg) and self.extra_sampling_fields:
            text += (
                " — this server refuses vLLM's extra fields: "
                "construct the backend with extra_sampling_fields=False"
            )
        return _HTTPRefused(text, status=status, server_message=msg)

    def _exhausted(self, method: str, path: str, failures: list[str], tried: list[str]) -> str:
        urls = ", ".join(dict.fromkeys(tried))
        hint = f"Is the server running at {urls}? Start it with e.g. `vllm serve {self.model}`"
        if any("timeout=" in f for f in failures):
            hint += f", or raise timeout= (now {self.timeout:g} s) if the server is busy"
        return (
            f"{self.model_id}: {method} {path} failed {len(failures)} times "
            f"(1 try + {self.max_retries} retries): " + "; ".join(failures) + f". {hint}."
        )

    # -- responses ------------------------------------------------------------------------------------

    def _completion(self, data: dict, params: GenParams, url: str) -> Completion:
        choice = _first_choice(data, url)
        if params.style == "chat":
            raw = (choice.get("message") or {}).get("content") or ""
        else:
            raw = choice.get("text") or ""
        text, stopped = apply_stops(raw, params.stop)
        server_reason = choice.get("finish_reason")
        finish = _finish_reason(choice, stopped, params)
        if finish == "length" and params.repetition_guard:
            text, looped = cut_repetition(text)
            finish = "repetition" if looped else finish
        usage = data.get("usage") or {}
        error = f"the server ended the completion with finish_reason={server_reason!r}" if finish == "error" else None
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model_id=self.model_id,
            style=params.style,
            error=error,
            extra={"url": url, "server_finish_reason": server_reason},
        )

    def _loglik_one(self, prompt: str, continuation: str) -> list[float]:
        if not continuation:
            return []
        full = prompt + continuation
        body = {"model": self.model, "prompt": full, "max_tokens": self._echo_max_tokens, "echo": True,
                "logprobs": 1, "temperature": 0.0, "n": 1, "stream": False}  # fmt: skip
        try:
            data, base = self._call("POST", COMPLETIONS_PATH, body)
        except _HTTPRefused as e:
            if body["max_tokens"] != 0 or e.status not in (400, 422):
                raise self._no_echo(str(e)) from None
            # Some servers refuse max_tokens=0: generate one token and drop it (by its text offset).
            try:
                data, base = self._call("POST", COMPLETIONS_PATH, {**body, "max_tokens": 1})
            except _HTTPRefused as e2:
                raise self._no_echo(str(e2)) from None
            self._echo_max_tokens = 1
        return self._continuation_nll(_first_choice(data, base), prompt, full, base)

    def _no_echo(self, why: str) -> BackendError:
        return BackendError(
            f"{why}. loglik needs /v1/completions with echo=true and logprobs (the prompt's token "
            "log-probabilities): vLLM supports them; llama.cpp's server and TGI do not — serve the model "
            "with vLLM to score with it"
        )

    def _continuation_nll(self, choice: dict, prompt: str, full: str, base: str) -> list[float]:
        lp = choice.get("logprobs") or {}
        tokens, offsets, lps = lp.get("tokens"), lp.get("text_offset"), lp.get("token_logprobs")
        text = choice.get("text") or ""
        if not tokens or not offsets or lps is None or not (len(tokens) == len(offsets) == len(lps)):
            raise self._no_echo(f"{base}{COMPLETIONS_PATH} returned no per-token logprobs with text_offset")
        if not text.startswith(full) or len(tokens) < 2:
            raise self._no_echo(f"{base}{COMPLETIONS_PATH} did not echo the prompt's tokens")
        # Offsets are sums of token lengths; vLLM counts a leading special token (``<s>``,
        # ``<|begin_of_text|>``) that is not in ``text``. Its length shows at the end: the last token
        # ends that many characters after the text does.
        shift = max(0, offsets[-1] + len(tokens[-1]) - len(text))
        lo, hi = len(prompt) + shift, len(full) + shift
        ends = list(offsets[1:]) + [offsets[-1] + len(tokens[-1])]
        out: list[float] = []
        for tok, start, end, logprob in zip(tokens, offsets, ends, lps):
            if start < hi and (start >= lo or end > lo):  # starts in, or straddles into, the continuation
                if logprob is None:
                    raise BackendError(
                        f"{base}{COMPLETIONS_PATH} gave no log-probability for token {tok!r} of the "
                        "continuation (the first token of a text has none): give a longer prompt"
                    )
                out.append(-float(logprob))
        if not out:
            raise BackendError(
                f"{base}{COMPLETIONS_PATH}: no returned token overlaps the continuation {full[len(prompt):][:50]!r} "
                "(the server's text_offset values do not match its text)"
            )
        return out


# -- helpers ------------------------------------------------------------------------------------------


def _first_choice(data: dict, url: str) -> dict:
    choices = data.get("choices")
    if not choices or not isinstance(choices[0], dict):
        raise BackendError(f"{url} answered without 'choices': {str(data)[:200]}")
    return choices[0]


def _finish_reason(choice: dict, stopped_here: bool, params: GenParams) -> FinishReason:
    """The protocol's finish reason: "stop" (a stop sequence ended it), "eos", "length" or "error"."""
    reason = choice.get("finish_reason")
    if stopped_here:
        return "stop"
    if reason == "stop":
        if "stop_reason" in choice:  # vLLM: the stop string, a stop token id, or None for EOS
            return "stop" if isinstance(choice["stop_reason"], str) else "eos"
        return "stop" if params.stop else "eos"  # others trim the stop string and don't say which
    return _FINISH.get(reason, "eos")  # type: ignore[return-value]


def cut_repetition(text: str, ngram: int = REPEAT_NGRAM, repeats: int = REPEAT_TIMES) -> tuple[str, bool]:
    """Cut ``text`` after the first word where its last ``ngram * repeats`` words are one block repeated.

    The client-side twin of the local backends' token-level guard
    (:func:`~curate.lm.base.has_degenerate_repetition`), counted in whitespace-separated words.
    """
    words = list(re.finditer(r"\S+", text))
    span = ngram * repeats
    seq = [w.group() for w in words]
    for end in range(span, len(seq) + 1):
        if has_degenerate_repetition(seq[end - span : end], ngram, repeats):
            return text[: words[end - 1].end()], True
    return text, False


def _server_message(resp: httpx.Response) -> str:
    """The error message in an OpenAI / vLLM / llama.cpp / TGI / Ollama error body, else the raw text."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
        if data.get("message"):
            return str(data["message"])[:500]
    return str(data)[:500]


def _retry_after(resp: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (a number or an HTTP date), capped at RETRY_AFTER_CAP."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(RETRY_AFTER_CAP, max(0.0, seconds))
