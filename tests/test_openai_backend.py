"""OpenAIBackend against a real HTTP server on 127.0.0.1 that speaks the OpenAI protocol (no mocked client).

``FakeServer`` serves /v1/completions (with echo + logprobs + text_offset), /v1/chat/completions and
/v1/models, records every request, counts requests in flight, and can be scripted to fail the next
requests (HTTP 500 / 429 / 400 / 401, a dropped connection, a slow answer).
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from curate.errors import BackendError
from curate.lm.base import LM, GenParams
from curate.lm.openai_backend import OpenAIBackend, _finish_reason, cut_repetition, parse_openai_spec

MODEL = "test/tiny-model"


def token_lp(i: int) -> float:
    """The fake model's log-probability of the i-th token of an echoed prompt (i >= 1)."""
    return -0.25 * i


class FakeServer:
    def __init__(self, model: str = MODEL):
        self.model = model
        self.requests: list[dict] = []  # {"method", "path", "body", "headers"}
        self.failures: deque[str] = deque()  # "500" "429" "400" "401" "404" "drop" "slow": one per request
        self.retry_after: str | None = None  # the Retry-After header sent with 429
        self.delay = 0.0  # seconds every request takes (a callable of the prompt is allowed)
        self.slow_seconds = 3.0
        self.reply = lambda prompt: f"<{prompt}>"  # the completion text
        self.finish_reason = "stop"
        self.choice_extra: dict = {}  # extra fields merged into the choice (e.g. vLLM's stop_reason)
        self.echo = "vllm"  # "vllm" | "no_max0" (refuses max_tokens=0) | "bos" (offsets count <s>) | "ignore"
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, client_address: None  # clients that hang up are expected
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    # -- protocol -------------------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        with self._lock:
            self.requests.append({"method": method, "path": h.path, "body": body, "headers": dict(h.headers)})
            action = self.failures.popleft() if self.failures else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._respond(h, method, body, action)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, h, method, body, action) -> None:
        if action == "drop":
            h.close_connection = True  # hang up without an answer
            return
        if action == "slow":
            self._stop.wait(self.slow_seconds)
        if action in ("500", "429", "400", "401", "404"):
            messages = {"500": "engine crashed", "429": "too many requests", "400": "temperature is bad",
                        "401": "Unauthorized", "404": f"The model `{body['model']}` does not exist."}  # fmt: skip
            headers = {"Retry-After": self.retry_after} if action == "429" and self.retry_after else {}
            return self._send(h, int(action), {"error": {"message": messages[action], "type": "x"}}, headers)
        prompt = (body or {}).get("prompt") or ((body or {}).get("messages") or [{}])[-1].get("content", "")
        delay = self.delay(prompt) if callable(self.delay) else self.delay
        if delay:
            self._stop.wait(delay)
        if method == "GET" and h.path == "/v1/models":
            return self._send(h, 200, {"object": "list", "data": [{"id": self.model, "max_model_len": 2048}]})
        if h.path == "/v1/chat/completions":
            text = self.reply(prompt)
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
            return self._send(h, 200, self._envelope(choice, prompt, text))
        if h.path == "/v1/completions":
            if body.get("echo"):
                return self._echo(h, body)
            text = self.reply(prompt)
            return self._send(h, 200, self._envelope({"index": 0, "text": text, "logprobs": None}, prompt, text))
        self._send(h, 404, {"error": {"message": f"no route {h.path}"}})

    def _envelope(self, choice: dict, prompt: str, text: str) -> dict:
        choice = {**choice, "finish_reason": self.finish_reason, **self.choice_extra}
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        return {"id": "x-1", "object": "text_completion", "model": self.model, "choices": [choice], "usage": usage}

    def _echo(self, h, body) -> None:
        """vLLM-style echo: the prompt's tokens (regex words), logprob None for the first, offsets."""
        prompt, max_tokens = body["prompt"], body.get("max_tokens", 16)
        if self.echo == "no_max0" and max_tokens == 0:
            return self._send(h, 400, {"object": "error", "message": "max_tokens must be at least 1, got 0."})
        if self.echo == "ignore":  # llama.cpp: logprobs of the generated token only
            lp = {"tokens": [" X"], "token_logprobs": [-1.0], "text_offset": [0]}
            return self._send(h, 200, self._envelope({"index": 0, "text": " X", "logprobs": lp}, prompt, " X"))
        tokens = re.findall(r"\s*\S+|\s+$", prompt)
        lps = [None] + [token_lp(i) for i in range(1, len(tokens))]
        if self.echo == "bos":
            tokens, lps = ["<s>"] + tokens, [None, token_lp(0)] + lps[1:]
        text = prompt
        if max_tokens > 0:
            tokens, lps, text = tokens + [" X"], lps + [-9.0], prompt + " X"
        offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
        lp = {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets, "top_logprobs": None}
        self._send(h, 200, self._envelope({"index": 0, "text": text, "logprobs": lp}, prompt, text))

    @staticmethod
    def _send(h, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()  # headers and body go out as two writes: don't let Nagle delay the second
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self):
                server.handle(self, "POST")

            def do_GET(self):
                server.handle(self, "GET")

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


@pytest.fixture
def server2():
    s = FakeServer()
    yield s
    s.stop()


@pytest.fixture
def make_backend(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    made: list[OpenAIBackend] = []

    def make(urls, **kw) -> OpenAIBackend:
        kw = {"backoff": 0.01, "max_retries": 3, "timeout": 5.0, **kw}
        b = OpenAIBackend(MODEL, urls, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def dead_url() -> str:
    """A URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- request mapping ----------------------------------------------------------------------------------


def test_implements_the_protocol(make_backend, server):
    b = make_backend(server.url, context_length=4096)
    assert isinstance(b, LM)
    assert (b.model_id, b.supports_chat, b.context_length) == (f"openai:{MODEL}", True, 4096)
    assert make_backend(server.url).context_length is None


def test_completion_request_maps_params(make_backend, server):
    params = GenParams(temperature=0.7, top_k=50, top_p=0.9, max_new_tokens=256, min_new_tokens=15,
                       stop=("|EoS|",), seed=3)  # fmt: skip
    [c] = make_backend(server.url).generate(["Come up with a series of tasks:\n1."], params)
    [req] = server.requests
    assert (req["method"], req["path"]) == ("POST", "/v1/completions")
    assert req["body"] == {
        "model": MODEL, "prompt": "Come up with a series of tasks:\n1.", "max_tokens": 256, "temperature": 0.7,
        "top_p": 0.9, "n": 1, "stream": False, "stop": ["|EoS|"], "seed": 3, "top_k": 50, "min_tokens": 15,
    }  # fmt: skip
    assert "authorization" not in {k.lower() for k in req["headers"]}
    assert c.text == "<Come up with a series of tasks:\n1.>"
    assert (c.finish_reason, c.model_id, c.style) == ("stop", f"openai:{MODEL}", "completion")
    assert (c.prompt_tokens, c.completion_tokens) == (8, 8)  # the fake server counts words
    assert c.extra["url"] == server.url + "/v1/completions"


def test_chat_request_is_one_user_message(make_backend, server):
    [c] = make_backend(server.url).generate(["Say hi"], GenParams(style="chat", max_new_tokens=8))
    [req] = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["body"] == {
        "model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8, "temperature": 0.0,
        "top_p": 1.0, "n": 1, "stream": False, "top_k": 50,
    }  # fmt: skip
    assert (c.text, c.style, c.finish_reason) == ("<Say hi>", "chat", "eos")


def test_extra_fields_only_when_they_do_something(make_backend, server):
    make_backend(server.url).generate(["a"], GenParams(top_k=0))
    make_backend(server.url, extra_sampling_fields=False).generate(["b"], GenParams(min_new_tokens=5))
    for req in server.requests:
        assert "top_k" not in req["body"] and "min_tokens" not in req["body"]


def test_api_key_from_argument_or_environment(make_backend, server, monkeypatch):
    make_backend(server.url, api_key="sk-arg").generate(["a"], GenParams())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    OpenAIBackend(MODEL, server.url).generate(["b"], GenParams())
    assert [r["headers"].get("Authorization") for r in server.requests] == ["Bearer sk-arg", "Bearer sk-env"]


def test_chat_refused_for_a_base_model(make_backend, server):
    with pytest.raises(BackendError, match="supports_chat=False"):
        make_backend(server.url, supports_chat=False).generate(["x"], GenParams(style="chat"))
    assert server.requests == []


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_with_or_without_v1(make_backend, server, suffix):
    b = make_backend(server.url + suffix)
    b.generate(["p"], GenParams())
    b.generate(["p"], GenParams(style="chat"))
    assert server.paths() == ["/v1/completions", "/v1/chat/completions"]


# -- responses ------------------------------------------------------------------------------------------


def test_stops_are_trimmed_on_the_client(make_backend, server):
    server.reply = lambda prompt: "Write a poem. |EoS|\n2. Another task |EoS|"  # a server that ignores stop
    server.finish_reason = "length"
    [c] = make_backend(server.url).generate(["p"], GenParams(stop=("|EoS|", "\n\n")))
    assert (c.text, c.finish_reason) == ("Write a poem. ", "stop")


@pytest.mark.parametrize(
    "choice, stops, expected",
    [
        ({"finish_reason": "length"}, (), "length"),
        ({"finish_reason": "stop"}, (), "eos"),
        ({"finish_reason": "stop"}, ("|EoS|",), "stop"),  # the server trimmed a stop string, we can't tell
        ({"finish_reason": "stop", "stop_reason": None}, ("|EoS|",), "eos"),  # vLLM says: EOS
        ({"finish_reason": "stop", "stop_reason": 128001}, ("|EoS|",), "eos"),  # vLLM: a stop token id
        ({"finish_reason": "stop", "stop_reason": "|EoS|"}, ("|EoS|",), "stop"),
        ({"finish_reason": "eos_token"}, (), "eos"),  # TGI
        ({"finish_reason": "stop_sequence"}, ("x",), "stop"),
        ({"finish_reason": "content_filter"}, (), "error"),
        ({"finish_reason": None}, (), "eos"),
    ],
)
def test_finish_reason_mapping(choice, stops, expected):
    assert _finish_reason(choice, False, GenParams(stop=stops)) == expected


def test_content_filter_reported_as_error(make_backend, server):
    server.finish_reason = "content_filter"
    [c] = make_backend(server.url).generate(["p"], GenParams())
    assert c.finish_reason == "error" and "content_filter" in c.error


def test_repetition_guard_cuts_a_loop_that_ran_to_the_limit(make_backend, server):
    block = "the cat sat on the mat and purred"  # 8 words
    server.reply = lambda prompt: "Intro words here. " + " ".join([block] * 6)
    server.finish_reason = "length"
    b = make_backend(server.url)
    [c] = b.generate(["p"], GenParams())
    assert c.finish_reason == "repetition"
    assert c.text == "Intro words here. " + " ".join([block] * 4)
    [c] = b.generate(["p"], GenParams(repetition_guard=False))
    assert c.finish_reason == "length" and c.text.count(block) == 6


def test_cut_repetition_leaves_ordinary_text_alone():
    text = " ".join(f"word{i}" for i in range(100))
    assert cut_repetition(text) == (text, False)
    assert cut_repetition("a " * 40) == ("a " * 31 + "a", True)


def test_missing_usage_counts_as_zero(make_backend, server):
    server.choice_extra = {}
    original = server._envelope
    server._envelope = lambda choice, prompt, text: {k: v for k, v in original(choice, prompt, text).items()
                                                     if k != "usage"}  # fmt: skip
    [c] = make_backend(server.url).generate(["p"], GenParams())
    assert (c.prompt_tokens, c.completion_tokens) == (0, 0)


# -- concurrency ----------------------------------------------------------------------------------------


def test_order_is_preserved_under_concurrency(make_backend, server):
    prompts = [f"prompt {i}" for i in range(24)]
    server.delay = lambda prompt: 0.002 * ((int(prompt.split()[1]) * 7) % 11)  # later ones often finish first
    out = make_backend(server.url, max_concurrency=8).generate(prompts, GenParams())
    assert [c.text for c in out] == [f"<{p}>" for p in prompts]


def test_concurrency_limit_holds_across_calling_threads(make_backend, server):
    server.delay = 0.05
    b = make_backend(server.url, max_concurrency=3)
    with ThreadPoolExecutor(2) as callers:  # two threads share the backend's limit
        results = list(callers.map(lambda k: b.generate([f"{k}-{i}" for i in range(6)], GenParams()), "ab"))
    assert [c.text for c in results[1]] == [f"<b-{i}>" for i in range(6)]
    assert len(server.requests) == 12
    assert 2 <= server.max_in_flight <= 3


def test_round_robin_over_two_servers(make_backend, server, server2):
    b = make_backend([server.url, server2.url + "/v1"], max_concurrency=1)
    out = b.generate([f"p{i}" for i in range(6)], GenParams())
    assert [c.text for c in out] == [f"<p{i}>" for i in range(6)]
    assert [r["body"]["prompt"] for r in server.requests] == ["p0", "p2", "p4"]
    assert [r["body"]["prompt"] for r in server2.requests] == ["p1", "p3", "p5"]


def test_a_dead_server_is_skipped_by_the_retry(make_backend, server):
    b = make_backend([dead_url(), server.url], max_retries=1, backoff=0)
    out = b.generate([f"p{i}" for i in range(4)], GenParams())
    assert [c.text for c in out] == [f"<p{i}>" for i in range(4)]
    assert len(server.requests) == 4


# -- retries and errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["500", "429", "drop"])
def test_retries_then_success(make_backend, server, failure):
    server.failures.extend([failure, failure])
    [c] = make_backend(server.url, max_retries=3).generate(["p"], GenParams())
    assert c.text == "<p>"
    assert len(server.requests) == 3


def test_backoff_is_exponential_and_retry_after_is_honoured(make_backend, server):
    b = make_backend(server.url, max_retries=4, backoff=0.5)
    sleeps: list[float] = []
    b._sleep = sleeps.append  # record instead of waiting
    server.failures.extend(["500", "500", "500"])
    b.generate(["p"], GenParams())
    assert len(sleeps) == 3
    for i, s in enumerate(sleeps):
        assert 0.5 * 2**i <= s <= 0.5 * 2**i * 1.25  # base delay plus at most 25 % jitter
    sleeps.clear()
    server.retry_after = "0.2"
    server.failures.append("429")
    b.generate(["p"], GenParams())
    assert sleeps == [0.2]
    sleeps.clear()
    server.retry_after = "3600"
    server.failures.append("429")
    b.generate(["p"], GenParams())
    assert sleeps == [30.0]  # capped


def test_retries_exhausted_names_url_attempts_and_fix(make_backend, server):
    server.failures.extend(["500"] * 10)
    with pytest.raises(BackendError) as e:
        make_backend(server.url, max_retries=2).generate(["p"], GenParams())
    msg = str(e.value)
    assert server.url in msg and "failed 3 times" in msg and "HTTP 500: engine crashed" in msg
    assert f"vllm serve {MODEL}" in msg
    assert len(server.requests) == 3


def test_unreachable_server(make_backend):
    url = dead_url()
    with pytest.raises(BackendError, match=rf"Is the server running at {re.escape(url)}\?.*vllm serve"):
        make_backend(url, max_retries=1, backoff=0).generate(["p"], GenParams())


def test_400_is_not_retried(make_backend, server):
    server.failures.append("400")
    with pytest.raises(BackendError, match=r"/v1/completions failed with HTTP 400: temperature is bad"):
        make_backend(server.url).generate(["p"], GenParams())
    assert len(server.requests) == 1


def test_401_says_how_to_set_the_key(make_backend, server):
    server.failures.append("401")
    with pytest.raises(BackendError, match=r"HTTP 401.*OPENAI_API_KEY.*api_key="):
        make_backend(server.url).generate(["p"], GenParams())
    assert len(server.requests) == 1


def test_404_points_at_the_model_name(make_backend, server):
    server.failures.append("404")
    expected = rf"HTTP 404: The model `{MODEL}` does not exist.*GET {server.url}/v1/models lists"
    with pytest.raises(BackendError, match=expected):
        make_backend(server.url).generate(["p"], GenParams())


def test_timeout_is_retried_then_reported(make_backend, server):
    server.failures.extend(["slow", "slow"])
    with pytest.raises(BackendError, match=r"timeout=0.3 s.*raise timeout="):
        make_backend(server.url, timeout=0.3, max_retries=1, backoff=0).generate(["p"], GenParams())
    assert len(server.requests) == 2


def test_one_failing_prompt_fails_the_batch(make_backend, server):
    server.failures.append("400")
    with pytest.raises(BackendError, match="HTTP 400"):
        make_backend(server.url, max_concurrency=2).generate([f"p{i}" for i in range(4)], GenParams())


# -- loglik -----------------------------------------------------------------------------------------------


def test_loglik_takes_the_continuation_tokens(make_backend, server):
    b = make_backend(server.url)
    # tokens: "The" " cat" | " sat" " on" " the" " mat" -> token indices 2..5
    # straddling: "The ca" + "t sat": " cat" (index 1) overlaps the continuation, so it counts
    out = b.loglik(["The cat", "The ca", "Q:"], [" sat on the mat", "t sat", ""])
    assert out == [[-token_lp(i) for i in range(2, 6)], [-token_lp(1), -token_lp(2)], []]
    assert len(server.requests) == 2  # the empty continuation needs no request
    [body] = [r["body"] for r in server.requests if r["body"]["prompt"].endswith("mat")]
    assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 1
    assert body["prompt"] == "The cat sat on the mat"


def test_loglik_falls_back_to_one_generated_token(make_backend, server):
    server.echo = "no_max0"
    b = make_backend(server.url)
    assert b.loglik(["The cat"], [" sat on"]) == [[-token_lp(2), -token_lp(3)]]  # the generated " X" dropped
    assert b.loglik(["A"], [" b"]) == [[-token_lp(1)]]
    assert [r["body"]["max_tokens"] for r in server.requests] == [0, 1, 1]  # the fallback is remembered


def test_loglik_with_a_bos_token_in_the_offsets(make_backend, server):
    server.echo = "bos"  # vLLM counts "<s>" in text_offset although the echoed text lacks it
    assert make_backend(server.url).loglik(["The cat"], [" sat on"]) == [[-token_lp(2), -token_lp(3)]]


def test_loglik_unsupported_server_says_so(make_backend, server):
    server.echo = "ignore"
    with pytest.raises(BackendError, match=r"did not echo.*vLLM supports"):
        make_backend(server.url).loglik(["The cat"], [" sat"])


def test_loglik_refused_echo_says_so(make_backend, server):
    server.failures.extend(["400", "400"])
    with pytest.raises(BackendError, match=r"HTTP 400.*echo=true and logprobs"):
        make_backend(server.url).loglik(["The cat"], [" sat"])


def test_loglik_argument_checks(make_backend, server):
    b = make_backend(server.url)
    with pytest.raises(ValueError, match="as many"):
        b.loglik(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="non-empty prompt"):
        b.loglik([""], ["c"])


# -- lifecycle and helpers --------------------------------------------------------------------------------


def test_callable_from_a_worker_thread(make_backend, server):
    b = make_backend(server.url)
    with ThreadPoolExecutor(1) as pool:
        out = pool.submit(b.generate, ["p"], GenParams()).result()
    assert out[0].text == "<p>"


def test_context_manager_closes(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIBackend(MODEL, server.url) as b:
        assert b.generate(["p"], GenParams())[0].text == "<p>"
    with pytest.raises(BackendError, match="closed"):
        b.generate(["p"], GenParams())


def test_check_lists_models_and_learns_context_length(make_backend, server):
    b = make_backend(server.url)
    assert b.check() == {server.url: [MODEL]}
    assert b.context_length == 2048
    with pytest.raises(BackendError, match=r"does not serve model 'other'.*vllm serve other"):
        OpenAIBackend("other", server.url).check()


@pytest.mark.parametrize(
    "spec, model, urls",
    [
        ("openai:Qwen/Qwen2.5-7B-Instruct@http://gpu1:8000,http://gpu2:8000",
         "Qwen/Qwen2.5-7B-Instruct", ["http://gpu1:8000", "http://gpu2:8000"]),
        ("Qwen/Qwen2.5-7B-Instruct@http://gpu1:8000/v1/", "Qwen/Qwen2.5-7B-Instruct", ["http://gpu1:8000"]),
        ("llama3.2:1b@http://localhost:11434", "llama3.2:1b", ["http://localhost:11434"]),
        ("m@https://api.example.com/v1", "m", ["https://api.example.com"]),
    ],
)  # fmt: skip
def test_parse_openai_spec(spec, model, urls):
    assert parse_openai_spec(spec) == (model, urls)


@pytest.mark.parametrize(
    "spec, why",
    [
        ("Qwen/Qwen2.5-7B-Instruct", "no '@<url>'"),
        ("@http://gpu1:8000", "model name before '@' is empty"),
        ("model@gpu1:8000", "must start with http"),
        ("model@http://a:1,,http://b:2", "empty URL"),
        ("my model@http://a:1", "whitespace"),
        ("model@http://", "must look like http://HOST:PORT"),
        ("model@http://host:port", "must look like http://HOST:PORT"),
    ],
)
def test_parse_openai_spec_errors(spec, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_openai_spec(spec)
