"""The transformers backend: tiny models built here from a config (fast), and the real embedded SmolLM2 (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from curate.errors import BackendError, ModelNotFoundError
from curate.lm.base import LM, GenParams
from curate.lm.hf import HFBackend, _RowStopper

CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world", "write a poem about the sea"] * 20
CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
PROMPTS = ["hello", "the quick brown fox jumps over", "write a poem about the sea, the lazy dog and the world", "fox"]


def _tokenizer(eos: str = "<|endoftext|>", chat: bool = True):
    """A byte-level BPE tokenizer trained on a few sentences; id 0 is "!", id 1 is '"'; no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    t.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=320, initial_alphabet=alphabet, show_progress=False)
    )
    t.add_special_tokens(["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token=eos)
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def _save_tiny(folder, *, eos: str = "<|endoftext|>", zero_norm: bool = False, chat: bool = True, seed: int = 0):
    """A 2-layer Llama with random weights saved as a local folder. ``zero_norm`` zeroes the final norm,
    so every logit is 0 and greedy decoding emits token 0 ("!") forever (or EOS at once if "!" is EOS)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer(eos, chat)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, eos_token_id=tok.eos_token_id, bos_token_id=None,
        pad_token_id=None, tie_word_embeddings=False, initializer_range=1.0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if zero_norm:
        model.model.norm.weight.data.zero_()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return HFBackend(_save_tiny(tmp_path_factory.mktemp("tiny")), batch_size=4)


@pytest.fixture(scope="module")
def tiny_loop(tmp_path_factory):
    return HFBackend(_save_tiny(tmp_path_factory.mktemp("tiny_loop"), zero_norm=True))


@pytest.fixture(scope="module")
def tiny_eos(tmp_path_factory):
    return HFBackend(_save_tiny(tmp_path_factory.mktemp("tiny_eos"), eos="!", zero_norm=True))


# -- tiny models: loading ------------------------------------------------------------------------------


def test_tiny_folder_loads_as_a_backend(tiny):
    assert isinstance(tiny, LM)
    assert tiny.supports_chat and tiny.context_length == 128
    assert tiny.model.dtype == torch.float32 and tiny.device == "cpu"
    assert tiny.tokenizer.pad_token == "<|endoftext|>"  # it had none
    assert tiny.count_tokens("hello world") == 2
    assert tiny.model_id.endswith("tiny0")


def test_chat_template_false_makes_it_completion_only(tiny):
    lm = HFBackend(tiny.model.name_or_path, chat_template=False)
    assert not lm.supports_chat
    with pytest.raises(BackendError, match="no chat template"):
        lm.generate(["hi"], GenParams(style="chat", max_new_tokens=2))


def test_chat_template_true_requires_one(tmp_path):
    folder = _save_tiny(tmp_path / "nochat", chat=False)
    assert not HFBackend(folder).supports_chat
    with pytest.raises(BackendError, match="no chat template"):
        HFBackend(folder, chat_template=True)


def test_unknown_hf_id_says_offline_and_how_to_fix():
    with pytest.raises(ModelNotFoundError) as err:
        HFBackend("curate-tests/no-such-model-anywhere")
    msg = str(err.value)
    assert "could not be found locally" in msg and "offline" in msg
    assert "local model folder" in msg and "embedded model" in msg
    assert "Traceback" not in msg


def test_folder_without_a_model_is_reported(tmp_path):
    with pytest.raises(ModelNotFoundError, match="could not load a transformers model"):
        HFBackend(tmp_path)


# -- tiny models: generate ------------------------------------------------------------------------------


def test_batched_equals_one_by_one_under_greedy(tiny):
    params = GenParams(max_new_tokens=12, repetition_guard=False)
    batched = tiny.generate(PROMPTS, params)
    single = [tiny.generate([p], params)[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert [c.prompt_tokens for c in batched] == [tiny.count_tokens(p) for p in PROMPTS]
    assert all(c.finish_reason in ("length", "eos") for c in batched)


def test_chat_style_applies_the_template(tiny):
    c = tiny.generate(["hello"], GenParams(style="chat", max_new_tokens=3, repetition_guard=False))[0]
    expected = tiny.count_tokens("<|user|>hello\n<|assistant|>")
    assert c.style == "chat" and c.prompt_tokens == expected


def test_seeded_sampling_is_reproducible(tiny):
    params = GenParams(temperature=1.0, top_k=0, max_new_tokens=16, seed=7, repetition_guard=False)
    a = tiny.generate(PROMPTS, params)
    b = tiny.generate(PROMPTS, params)
    c = tiny.generate(PROMPTS, params.model_copy(update={"seed": 8}))
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.text for x in a] != [x.text for x in c]


def test_seed_does_not_touch_the_global_rng(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.generate(["hello"], GenParams(temperature=1.0, max_new_tokens=4, seed=1))
    assert torch.equal(torch.rand(3), expected)


def test_prompt_longer_than_context_names_the_lengths(tiny):
    long_prompt = "the quick brown fox " * 60
    n = tiny.count_tokens(long_prompt)
    with pytest.raises(BackendError, match=f"{n} tokens but the context holds 128"):
        tiny.generate([long_prompt], GenParams(max_new_tokens=4))


def test_new_tokens_are_clamped_to_the_context(tiny_loop):
    prompt = "the quick brown fox " * 20
    n = tiny_loop.count_tokens(prompt)
    c = tiny_loop.generate([prompt], GenParams(max_new_tokens=256, repetition_guard=False))[0]
    assert c.finish_reason == "length" and c.completion_tokens == 128 - n


def test_repetition_guard_stops_a_loop(tiny_loop):
    looped = tiny_loop.generate(["hello", "fox"], GenParams(max_new_tokens=64))
    assert [c.finish_reason for c in looped] == ["repetition", "repetition"]
    assert [c.completion_tokens for c in looped] == [32, 32]  # 8-token block seen 4 times
    assert looped[0].text == "!" * 32
    free = tiny_loop.generate(["hello"], GenParams(max_new_tokens=40, repetition_guard=False))[0]
    assert free.finish_reason == "length" and free.text == "!" * 40


def test_stop_string_trims_and_reports_stop(tiny_loop):
    c = tiny_loop.generate(["hello"], GenParams(max_new_tokens=20, stop=("!!!",)))[0]
    assert c.finish_reason == "stop" and c.text == "" and c.completion_tokens == 3


def test_eos_and_min_new_tokens(tiny_eos):
    first = tiny_eos.generate(["hello"], GenParams(max_new_tokens=10))[0]
    assert (first.finish_reason, first.text, first.completion_tokens) == ("eos", "", 1)
    held = tiny_eos.generate(["hello"], GenParams(max_new_tokens=10, min_new_tokens=5))[0]
    assert held.finish_reason == "eos" and held.text == '"' * 5 and held.completion_tokens == 6


def test_row_stopper_finishes_rows_independently():
    tok = _tokenizer()
    eos = tok.eos_token_id
    a = tok("hello world").input_ids
    assert len(a) == 2
    stopper = _RowStopper(tok, prompt_width=2, stops=["world"], eos_ids=[eos], guard=True)
    ids = torch.tensor([
        [5, 5] + a,          # its text reaches the stop string
        [5, 5, 7, 7],        # nothing yet
        [5, 5, 9, eos],      # EOS after one token
    ])
    assert stopper(ids, None).tolist() == [True, False, True]
    assert stopper.finished == {0: (2, "stop"), 2: (2, "eos")}
    ids[1, 3] = a[1]  # row 1 reaches it one step later; finished rows keep their first reason
    assert stopper(ids, None).tolist() == [True, True, True]
    assert stopper.finished[1] == (2, "stop") and stopper.finished[2] == (2, "eos")
    loop = torch.tensor([[5, 5] + [3, 4] * 16])
    guard = _RowStopper(tok, 2, [], [eos], guard=True)
    assert guard(loop, None).tolist() == [True] and guard.finished == {0: (32, "repetition")}
    assert _RowStopper(tok, 2, [], [eos], guard=False)(loop, None).tolist() == [False]


# -- tiny models: the fast decoder against its plain twin (generate) ----------------------------------

WORDS = "the quick brown fox jumps over lazy dog hello world write a poem about sea".split()


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same tiny model twice in float64 (so batch shapes cannot flip a greedy near-tie): our fast loop
    and transformers' generate."""
    folder = _save_tiny(tmp_path_factory.mktemp("twins"), seed=3)
    return (HFBackend(folder, batch_size=4, dtype=torch.float64),
            HFBackend(folder, batch_size=4, dtype=torch.float64, decode="hf"))


def _random_case(rng):
    """Prompts that share a random demo block (or nothing), and random stopping settings."""
    demos = [" ".join(rng.choice(WORDS) for _ in range(rng.choice([0, 3, 25, 40]))) for _ in range(rng.randint(1, 3))]
    prompts = []
    for _ in range(rng.randint(1, 9)):  # rows of one batch may start with different demo blocks
        demo = rng.choice(demos)
        prompts.append((demo + " " if demo else "") + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))))
    max_new = rng.randint(1, 24)
    params = GenParams(max_new_tokens=max_new, min_new_tokens=rng.randint(0, max_new),
                       stop=tuple(rng.sample(["o", "e ", "fox", "!!", "the"], rng.randint(0, 2))),
                       repetition_guard=rng.random() < 0.5)
    return prompts, params


def test_fast_decoder_equals_generate_on_many_random_cases(twins):
    import random

    fast, plain = twins
    assert fast.decode == "fast" and plain.decode == "hf"
    rng = random.Random(0)
    reasons = set()
    for case in range(60):
        prompts, params = _random_case(rng)
        a, b = fast.generate(prompts, params), plain.generate(prompts, params)
        got = [(c.text, c.finish_reason, c.completion_tokens, c.prompt_tokens) for c in a]
        assert got == [(c.text, c.finish_reason, c.completion_tokens, c.prompt_tokens) for c in b], (case, params)
        reasons |= {c.finish_reason for c in a}
    assert {"length", "stop"} <= reasons  # the cases reach the stopping rules
    assert fast.prefix_stats["hits"] > 0 and fast.prefix_stats["misses"] > 0


def test_fast_decoder_sampling_has_generate_s_distribution(twins):
    """Sampling cannot match token for token (finished rows leave the batch, so the random stream differs);
    the first token's distribution must match: a chi-square test over 600 draws each."""
    from scipy.stats import chi2_contingency

    fast, plain = twins
    params = GenParams(temperature=1.3, top_k=6, top_p=0.9, max_new_tokens=1, seed=11)
    draws = []
    for lm in (fast, plain):
        counts: dict[str, int] = {}
        for c in lm.generate(["the quick brown fox"] * 600, params):
            counts[c.text] = counts.get(c.text, 0) + 1
        draws.append(counts)
    keys = sorted(set(draws[0]) | set(draws[1]))
    assert 2 <= len(keys) <= 6  # top-k 6 and top-p 0.9 bound the support
    assert chi2_contingency([[d.get(k, 0) + 1 for k in keys] for d in draws]).pvalue > 0.001


def _forward_batches(lm: HFBackend):
    """Record (rows, new positions) of every forward call the model makes."""
    seen: list[tuple[int, int]] = []
    hook = lm.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    return seen, hook


def test_finished_rows_leave_the_batch(tiny_eos):
    """Rows held by min_new_tokens finish at different steps; each decode step runs only the rows still going."""
    lm = HFBackend(tiny_eos.model.name_or_path, batch_size=4)
    assert lm.decode == "fast"
    seen, hook = _forward_batches(lm)
    try:
        out = lm.generate(["hello", "fox", "the", "sea"], GenParams(max_new_tokens=10, min_new_tokens=0))
    finally:
        hook.remove()
    assert [c.finish_reason for c in out] == ["eos"] * 4
    assert len(seen) == 1  # one prefill; every row finished at its first token, so no decode step ran
    seen.clear()
    hook = lm.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        held = [lm.generate([p], GenParams(max_new_tokens=10, min_new_tokens=k))[0] for p, k in [("a", 2)]]
    finally:
        hook.remove()
    assert held[0].completion_tokens == 3 and [s[0] for s in seen] == [1, 1, 1]


def test_rows_stop_costing_compute_when_they_finish(twins):
    fast, plain = twins
    prompts = ["the quick brown fox", "hello world", "write a poem", "sea"]
    params = GenParams(max_new_tokens=16, stop=("o",), repetition_guard=False)
    seen, hook = _forward_batches(fast)
    try:
        out = fast.generate(prompts, params)
    finally:
        hook.remove()
    lengths = sorted(c.completion_tokens for c in out)
    assert lengths[0] < lengths[-1]  # the rows finish at different steps
    # step s runs exactly the rows that had not finished before it; generate would run all 4 every step
    assert [rows for rows, _ in seen[1:]] == [sum(n > s for n in lengths) for s in range(1, lengths[-1])]
    assert [(c.text, c.finish_reason) for c in out] == [(c.text, c.finish_reason) for c in plain.generate(prompts, params)]


def test_shared_prefix_is_prefilled_once(twins):
    fast, _ = twins
    fast._prefixes.clear()
    demo = "the quick brown fox jumps over the lazy dog " * 3
    width = fast.count_tokens(demo)
    seen, hook = _forward_batches(fast)
    try:
        fast.generate([demo + "hello", demo + "sea"], GenParams(max_new_tokens=1))
        fast.generate([demo + "write a poem", demo + "world"], GenParams(max_new_tokens=1))
    finally:
        hook.remove()
    # call 1: the prefix once (batch 1), then both suffixes; call 2: the cached prefix, only the suffixes
    assert seen[0][0] == 1 and seen[0][1] >= width - 1
    assert [s[0] for s in seen[1:]] == [2, 2] and all(s[1] <= 4 for s in seen[1:])
    assert len(fast._prefixes) == 1


def test_a_batch_that_mixes_rows_with_and_without_a_prefix_uses_none(twins):
    """A row without a shared prefix keeps the padded suffix as wide as the prompt: a prefix would cost its own
    forward and save nothing, so the batch is prefilled whole."""
    fast, _ = twins
    lm = HFBackend(fast.model.name_or_path, dtype=torch.float64, batch_size=4)
    demo = "the quick brown fox jumps over the lazy dog " * 3
    long_plain = "write a poem about the sea hello world " * 4
    seen, hook = _forward_batches(lm)
    try:
        lm.generate([demo + "hello", demo + "sea", long_plain, "fox"], GenParams(max_new_tokens=1))
    finally:
        hook.remove()
    assert seen[0][0] == 4 and len(seen) == 1 and not lm._prefixes


def test_a_batch_with_several_demo_blocks_prefills_each_once(twins):
    fast, plain = twins
    lm = HFBackend(fast.model.name_or_path, dtype=torch.float64, batch_size=6, prefix_cache=1)  # evicts mid-batch
    blocks = [" ".join([w] * 20) for w in ("fox", "sea", "dog")]
    prompts = [b + tail for b in blocks for tail in (" hello", " write a poem")]
    seen, hook = _forward_batches(lm)
    try:
        out = lm.generate(prompts, GenParams(max_new_tokens=5, repetition_guard=False))
    finally:
        hook.remove()
    assert [s[0] for s in seen[:3]] == [1, 1, 1]  # one prefill per block, batch 1
    assert seen[3][0] == 6 and seen[3][1] <= 4  # then every row's own few tokens, all 6 rows together
    assert [c.text for c in out] == [c.text for c in plain.generate(prompts, GenParams(max_new_tokens=5,
                                                                                      repetition_guard=False))]
    assert len(lm._prefixes) == 1


def test_prefix_cache_is_bounded_and_can_be_off(twins):
    fast, plain = twins
    lm = HFBackend(fast.model.name_or_path, dtype=torch.float64, prefix_cache=2)
    blocks = [" ".join([w] * 20) for w in ("fox", "sea", "dog")]
    for b in blocks:
        lm.generate([b + " hello", b + " world"], GenParams(max_new_tokens=2))
    assert len(lm._prefixes) == 2  # the oldest block was evicted
    off = HFBackend(fast.model.name_or_path, dtype=torch.float64, prefix_cache=0)
    prompts = [blocks[0] + " hello", blocks[0] + " world"]
    assert [c.text for c in off.generate(prompts, GenParams(max_new_tokens=6))] == \
        [c.text for c in plain.generate(prompts, GenParams(max_new_tokens=6))]
    assert not off._prefixes
    with pytest.raises(ValueError, match="decode must be"):
        HFBackend(fast.model.name_or_path, decode="vllm")
    with pytest.raises(ValueError, match="prefix_cache must be"):
        HFBackend(fast.model.name_or_path, prefix_cache=-1)


def test_progress_counts_the_same_tokens_in_both_decoders(twins):
    fast, plain = twins
    params = GenParams(max_new_tokens=12, stop=("o",))
    ticks = {lm.decode: [] for lm in twins}
    for lm in twins:
        out = lm.generate(PROMPTS, params, progress=ticks[lm.decode].append)
        assert ticks[lm.decode][-1] == sum(c.completion_tokens for c in out)
        assert ticks[lm.decode] == sorted(ticks[lm.decode])
    assert ticks["fast"][-1] == ticks["hf"][-1]


# -- tiny models: loglik -------------------------------------------------------------------------------


def _reference_nll(lm: HFBackend, prompt: str, continuation: str) -> list[float]:
    """The plain computation: one unpadded forward, log-softmax, pick the continuation's tokens."""
    p = lm.tokenizer(prompt).input_ids
    c = lm.tokenizer(continuation, add_special_tokens=False).input_ids
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([p + c])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [-logp[len(p) + k - 1, tok].item() for k, tok in enumerate(c)]


def test_loglik_matches_the_plain_computation(tiny):
    prompts = ["hello", "the quick brown fox", "write a poem", "the"]
    conts = [" world", " jumps over the lazy dog", " about the sea and the fox", ""]
    got = tiny.loglik(prompts, conts)
    for g, p, c in zip(got, prompts, conts):
        assert len(g) == tiny.count_tokens(c)
        assert g == pytest.approx(_reference_nll(tiny, p, c), abs=1e-4)
    assert got[3] == []
    assert all(math.isfinite(x) and x > 0 for row in got for x in row)


def test_loglik_needs_pairs(tiny):
    with pytest.raises(ValueError, match="as many prompts as continuations"):
        tiny.loglik(["a", "b"], ["c"])


def test_loglik_over_the_context_names_the_lengths(tiny):
    with pytest.raises(BackendError, match="exceed the context of 128 tokens"):
        tiny.loglik(["the quick brown fox " * 20], [" jumps over the lazy dog" * 20])


# -- the real SmolLM2 (loaded once per session) --------------------------------------------------------

TASKS = (
    "Come up with a series of tasks:\n1. Write a poem about the sea. |EoS|\n"
    "2. Summarize the article in two sentences. |EoS|\n3. Translate the sentence into French. |EoS|\n4."
)


@pytest.mark.slow
def test_smollm2_is_the_embedded_model(smollm2):
    assert smollm2.model_id == "smollm2-135m-instruct"
    assert smollm2.supports_chat and smollm2.context_length == 8192


@pytest.mark.slow
def test_smollm2_greedy_stop_sequence(smollm2):
    c = smollm2.generate([TASKS], GenParams(max_new_tokens=48, stop=("|EoS|",)))[0]
    assert c.finish_reason == "stop"
    assert "|EoS|" not in c.text and c.text.strip()
    assert 0 < c.completion_tokens < 48


@pytest.mark.slow
def test_smollm2_batched_equals_one_by_one(smollm2):
    prompts = [TASKS, "The capital of France is", "List three fruits:\n-", "Once upon a time, in a small village,"]
    params = GenParams(max_new_tokens=24, stop=("|EoS|", "\n\n"))
    batched = smollm2.generate(prompts, params)
    single = [smollm2.generate([p], params)[0] for p in prompts]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [(c.finish_reason, c.completion_tokens) for c in batched] == [
        (c.finish_reason, c.completion_tokens) for c in single
    ]
    # rows finish on their own: the short answer stops early while another runs to the limit
    assert {c.finish_reason for c in batched} >= {"stop", "length"}
    assert len({c.completion_tokens for c in batched}) > 1


@pytest.mark.slow
def test_smollm2_seeded_sampling_is_reproducible(smollm2):
    params = GenParams(temperature=0.7, top_k=50, max_new_tokens=16, seed=1234)
    prompts = ["The capital of France is", TASKS]
    assert [c.text for c in smollm2.generate(prompts, params)] == [c.text for c in smollm2.generate(prompts, params)]


@pytest.mark.slow
def test_smollm2_chat_style(smollm2):
    c = smollm2.generate(["What is the capital of France?"], GenParams(style="chat", max_new_tokens=32))[0]
    assert c.style == "chat" and "Paris" in c.text
    assert c.finish_reason == "eos"
    assert "<|im_end|>" not in c.text and "<|im_start|>" not in c.text


@pytest.mark.slow
def test_smollm2_repetition_guard(smollm2):
    """SmolLM2 loops under greedy chat decoding (", hello" forever); the guard ends it early."""
    params = GenParams(style="chat", max_new_tokens=64)
    c = smollm2.generate(["Write the word 'hello' one hundred times."], params)[0]
    assert c.finish_reason == "repetition" and c.completion_tokens < 64
    assert c.text.lower().count("hello") >= 10
    unguarded = params.model_copy(update={"repetition_guard": False})
    free = smollm2.generate(["Write the word 'hello' one hundred times."], unguarded)[0]
    assert free.finish_reason == "length" and free.completion_tokens == 64


@pytest.mark.slow
def test_smollm2_loglik(smollm2):
    prompts = ["The capital of France is", "The capital of France is"]
    nll = smollm2.loglik(prompts, [" Paris.", " purple elephant spoons."])
    assert [len(x) for x in nll] == [smollm2.count_tokens(" Paris."), smollm2.count_tokens(" purple elephant spoons.")]
    assert all(math.isfinite(x) and x > 0 for row in nll for x in row)
    mean = [sum(x) / len(x) for x in nll]
    assert mean[0] < mean[1]
    alone = smollm2.loglik(prompts[:1], [" Paris."])[0]
    assert alone == pytest.approx(nll[0], abs=1e-3)


def test_sliding_window_models_repack_but_keep_no_prefix(tmp_path):
    """A Gemma-3-style model (sliding-window layers, a global one): the fast loop without the prefix cache,
    token for token what generate gives."""
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM

    tok = _tokenizer()
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=8,
                              layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                              max_position_embeddings=128, eos_token_id=tok.eos_token_id, bos_token_id=None,
                              pad_token_id=None, initializer_range=1.0)
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    fast = HFBackend(tmp_path, dtype=torch.float64, batch_size=3)
    plain = HFBackend(tmp_path, dtype=torch.float64, batch_size=3, decode="hf")
    assert fast.decode == "fast" and not fast._prefix_ok
    demo = "the quick brown fox jumps over the lazy dog " * 2
    prompts = [demo + p for p in PROMPTS] + PROMPTS
    for params in (GenParams(max_new_tokens=14, repetition_guard=False), GenParams(max_new_tokens=20, stop=("o",))):
        a, b = fast.generate(prompts, params), plain.generate(prompts, params)
        assert [(c.text, c.finish_reason) for c in a] == [(c.text, c.finish_reason) for c in b]
    assert not fast._prefixes
