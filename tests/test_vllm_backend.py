"""The in-process vLLM backend (curate/lm/vllm_backend.py) against a FAKE ``vllm`` module.

This tests OUR code — what it sends to vLLM (engine arguments, SamplingParams, token-id prompts) and how it
reads vLLM's answers (finish and stop reasons, the repetition guard, prompt log-probabilities), and the errors
where vLLM or a GPU is missing. It says nothing about vLLM itself: the backend is unverified on a real GPU.
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass, field

import pytest

from curate.errors import BackendError
from curate.lm import vllm_backend
from curate.lm.base import GenParams, has_degenerate_repetition
from curate.lm.registry import load_lm
from curate.lm.vllm_backend import VLLMBackend, repetition_cut


class FakeTokenizer:
    """One token per character (id = code point); BOS 1, EOS 2; a chat template that wraps the user turn."""

    bos_token_id, eos_token_id = 1, 2
    chat_template = "<fake>"

    def __call__(self, text, add_special_tokens=True):
        ids = ([self.bos_token_id] if add_special_tokens else []) + [ord(ch) for ch in text]
        return types.SimpleNamespace(input_ids=ids)

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i in (1, 2)))

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")


@dataclass
class FakeSamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0
    max_tokens: int | None = 16
    min_tokens: int = 0
    stop: list = field(default_factory=list)
    seed: int | None = None
    prompt_logprobs: int | None = None


@dataclass
class Logprob:
    logprob: float


class FakeLLM:
    """Answers from a script: ``FakeLLM.answers`` maps the prompt's text to (text, finish_reason, stop_reason);
    prompt log-probabilities are −(position + token id / 1000)."""

    instances: list = []
    answers: dict = {}

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=kwargs.get("max_model_len", 4096)))
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return FakeTokenizer()

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        out = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            text, finish, stop_reason = FakeLLM.answers.get(FakeTokenizer().decode(ids), ("ok", "stop", None))
            comp = types.SimpleNamespace(text=text, token_ids=[ord(c) for c in text], finish_reason=finish,
                                         stop_reason=stop_reason)
            plp = [None] + [{t: Logprob(-(j + t / 1000))} for j, t in enumerate(ids) if j > 0]
            out.append(types.SimpleNamespace(outputs=[comp], prompt_token_ids=ids, prompt_logprobs=plp))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: True)
    FakeLLM.instances, FakeLLM.answers = [], {}
    return mod


def test_engine_has_prefix_caching_and_the_spec_resolves(fake_vllm):
    lm = load_lm("vllm:org/model", gpu_memory_utilization=0.5)
    assert isinstance(lm, VLLMBackend) and lm.model_id == "vllm:org/model"
    llm = FakeLLM.instances[-1]
    assert llm.model == "org/model"
    assert llm.kwargs["enable_prefix_caching"] is True and llm.kwargs["gpu_memory_utilization"] == 0.5
    assert lm.supports_chat and lm.context_length == 4096


def test_genparams_map_onto_sampling_params(fake_vllm):
    lm = VLLMBackend("m")
    params = GenParams(temperature=0.7, top_k=40, top_p=0.9, max_new_tokens=100, min_new_tokens=5,
                       stop=("\n\n", "###"), seed=11)
    lm.generate(["a", "b", "a"], params)
    prompts, sps = FakeLLM.instances[-1].calls[-1]
    assert [FakeTokenizer().decode(p["prompt_token_ids"]) for p in prompts] == ["a", "b", "a"]
    assert prompts[0]["prompt_token_ids"][0] == FakeTokenizer.bos_token_id  # tokenised here, BOS included
    for i, sp in enumerate(sps):
        assert (sp.temperature, sp.top_k, sp.top_p, sp.max_tokens, sp.min_tokens) == (0.7, 40, 0.9, 100, 5)
        assert sp.stop == ["\n\n", "###"] and sp.seed == 11 + i  # two copies of "a" sample differently
    greedy = lm.sampling_params(GenParams(top_k=0, top_p=0.5), prompt_tokens=3)
    assert greedy.temperature == 0.0 and greedy.top_k == -1 and greedy.top_p == 1.0 and greedy.seed is None
    capped = lm.sampling_params(GenParams(max_new_tokens=500, min_new_tokens=400), prompt_tokens=4000)
    assert capped.max_tokens == 96 and capped.min_tokens == 96  # the context (4096) caps both


def test_top_k_off_is_the_installed_versions_value(fake_vllm):
    @dataclass
    class ZeroOff(FakeSamplingParams):  # a vLLM whose "no top-k" default is 0 (older ones use -1)
        top_k: int = 0

    fake_vllm.SamplingParams = ZeroOff
    lm = VLLMBackend("m")
    assert lm.sampling_params(GenParams(temperature=1.0, top_k=0), 1).top_k == 0
    assert lm.sampling_params(GenParams(temperature=1.0, top_k=5), 1).top_k == 5


def test_chat_prompts_use_the_template(fake_vllm):
    lm = VLLMBackend("m")
    FakeLLM.answers["<user>hi<assistant>"] = ("hello", "stop", None)
    out = lm.generate(["hi"], GenParams(style="chat"))
    prompt = FakeLLM.instances[-1].calls[-1][0][0]["prompt_token_ids"]
    assert FakeTokenizer().decode(prompt) == "<user>hi<assistant>" and prompt[0] != FakeTokenizer.bos_token_id
    assert out[0].text == "hello" and out[0].style == "chat"
    nochat = VLLMBackend("m", chat_template=False)
    with pytest.raises(BackendError, match="no chat template"):
        nochat.generate(["hi"], GenParams(style="chat"))


def test_finish_reasons(fake_vllm):
    lm = VLLMBackend("m")
    FakeLLM.answers.update({"s": ("cut", "stop", "###"), "e": ("end", "stop", None), "t": ("tok", "stop", 7),
                            "l": ("long", "length", None), "x": ("", "abort", None)})
    out = lm.generate(["s", "e", "t", "l", "x"], GenParams(stop=("###",)))
    assert [c.finish_reason for c in out] == ["stop", "eos", "eos", "length", "error"]
    assert out[4].error and "abort" in out[4].error and out[0].error is None
    assert [c.completion_tokens for c in out] == [3, 3, 3, 4, 0]
    assert out[0].prompt_tokens == 2  # BOS + "s"


def test_stop_strings_are_trimmed_even_if_vllm_left_them(fake_vllm):
    lm = VLLMBackend("m")
    FakeLLM.answers["p"] = ("answer\n\nmore", "length", None)
    out = lm.generate(["p"], GenParams(stop=("\n\n",)))
    assert out[0].text == "answer" and out[0].finish_reason == "stop"


def test_repetition_guard_cuts_where_the_loop_starts(fake_vllm):
    lm = VLLMBackend("m")
    looped = "intro " + "abcd" * 20
    FakeLLM.answers["p"] = (looped, "length", None)
    out = lm.generate(["p"], GenParams())
    ids = [ord(c) for c in looped]
    n = repetition_cut(ids)
    assert out[0].finish_reason == "repetition" and out[0].text == looped[:n] and out[0].completion_tokens == n
    assert has_degenerate_repetition(ids[:n]) and not has_degenerate_repetition(ids[:n - 1])
    off = lm.generate(["p"], GenParams(repetition_guard=False))
    assert off[0].text == looped and off[0].finish_reason == "length"


def test_repetition_cut_matches_a_token_by_token_guard():
    import random
    rng = random.Random(3)
    for _ in range(300):
        ids = [rng.randrange(3) for _ in range(rng.randrange(0, 80))]
        first = next((end for end in range(1, len(ids) + 1) if has_degenerate_repetition(ids[:end])), None)
        assert repetition_cut(ids) == first


def test_loglik_reads_prompt_logprobs(fake_vllm):
    lm = VLLMBackend("m")
    out = lm.loglik(["ab", "q", "z"], ["cd", "", "y"])
    (prompts, sp), = FakeLLM.instances[-1].calls
    assert sp.prompt_logprobs == 0 and sp.max_tokens == 1 and sp.temperature == 0.0
    assert len(prompts) == 2  # the empty continuation needs no request
    # "ab" → [BOS, a, b], continuation c, d at positions 3 and 4: nll = position + id / 1000
    assert out[0] == pytest.approx([3 + ord("c") / 1000, 4 + ord("d") / 1000])
    assert out[1] == [] and out[2] == pytest.approx([2 + ord("y") / 1000])
    assert all(math.isfinite(x) for x in out[0])
    with pytest.raises(ValueError):
        lm.loglik(["a"], ["b", "c"])


def test_loglik_without_logprobs_is_a_clear_error(fake_vllm, monkeypatch):
    lm = VLLMBackend("m")
    orig = FakeLLM.generate

    def no_logprobs(self, prompts, sp, use_tqdm=True):
        res = orig(self, prompts, sp, use_tqdm)
        for r in res:
            r.prompt_logprobs = None
        return res

    monkeypatch.setattr(FakeLLM, "generate", no_logprobs)
    with pytest.raises(BackendError, match="no log-probability"):
        lm.loglik(["ab"], ["c"])


def test_prompt_longer_than_the_context_is_refused(fake_vllm):
    lm = VLLMBackend("m", max_model_len=8)
    with pytest.raises(BackendError, match="context holds 8"):
        lm.generate(["x" * 10], GenParams())
    with pytest.raises(BackendError, match="exceed the context"):
        lm.loglik(["x" * 4], ["y" * 5])


def test_without_vllm_one_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: True)
    with pytest.raises(BackendError) as err:
        load_lm("vllm:org/model")
    msg = str(err.value)
    assert "vllm:org/model" in msg and "vllm package is not installed" in msg
    assert "pip install 'curate[vllm]'" in msg and "no CUDA GPU is visible" not in msg


def test_without_a_gpu_one_clear_message(fake_vllm, monkeypatch):
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: False)
    with pytest.raises(BackendError) as err:
        VLLMBackend("org/model")
    msg = str(err.value)
    assert "no CUDA GPU is visible" in msg and "not installed" not in msg and "pip install 'curate[vllm]'" in msg
    assert not FakeLLM.instances  # no engine was started


def test_neither_names_both(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: False)
    with pytest.raises(BackendError, match="not installed .* and no CUDA GPU"):
        VLLMBackend("m")


def test_empty_model_is_refused(fake_vllm):
    with pytest.raises(BackendError, match="needs a model"):
        load_lm("vllm:")


def test_this_machine_without_a_fake_fails_clearly():
    """On this CPU machine (no vllm installed, no GPU) the real import path gives the message."""
    pytest.importorskip("torch")
    import importlib.util
    import torch
    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("vLLM and a GPU are present here")
    with pytest.raises(BackendError, match=r"pip install 'curate\[vllm\]'"):
        load_lm("vllm:org/model")
