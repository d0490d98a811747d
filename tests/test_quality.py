"""Quality scorers: a tiny sequence-classification reward model built here (real loading and scoring), an LLM
judge over a real loopback HTTP server, the labelled consensus proxy, and the resolver's errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from factories import make_candidate
from test_openai_backend import MODEL, FakeServer

from curate.ensemble import compute_consensus
from curate.errors import ScorerError
from curate.quality import (PROXY_LABEL, RewardModelScorer, Scorer, load_scorer, parse_judge_score,
                            score_outputs, scorer_name)
from curate.store import Store

PAIRS = [  # (instruction, input, output): different lengths, so a batch needs padding
    ("Name the capital of France.", "", "Paris."),
    ("Summarise the paragraph below in one sentence.", "The cat sat on the mat all day and did not move.",
     "A cat stayed on a mat all day."),
    ("Translate to German.", "Good morning", "Guten Morgen"),
    ("Write a haiku about rain.", "", "Soft rain on the roof / the garden drinks in silence / puddles hold the sky"),
    ("Add the numbers.", "2 and 3", "5"),
]


@pytest.fixture(scope="module")
def smol_tokenizer():
    """The embedded SmolLM2's tokenizer (offline; it has a chat template)."""
    from transformers import AutoTokenizer

    from curate.lm.registry import ensure_lm_folder

    return AutoTokenizer.from_pretrained(ensure_lm_folder("smollm2-135m-instruct"))


def _save(folder, tok, cls_name="LlamaForSequenceClassification", num_labels=1, chat=True):
    """A 2-layer Llama (hidden 32) with random weights and the given head, saved with its tokenizer."""
    import transformers
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         num_labels=num_labels, pad_token_id=tok.pad_token_id, initializer_range=0.5)
    torch.manual_seed(0)
    getattr(transformers, cls_name)(config).save_pretrained(folder)
    if not chat:
        tok = type(tok).from_pretrained(tok.name_or_path)
        tok.chat_template = None
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def rm_folder(tmp_path_factory, smol_tokenizer):
    return _save(tmp_path_factory.mktemp("rm"), smol_tokenizer)


def _one_at_a_time(folder, texts_or_pairs):
    """Reference rewards: the model run on each input alone, unpadded, straight through transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for x in texts_or_pairs:
            enc = tok(*x, return_tensors="pt") if isinstance(x, tuple) else \
                tok(x, add_special_tokens=False, return_tensors="pt")
            out.append(float(model(**enc).logits[0, 0]))
    return out


def _chat_text(tok, instruction, input, output):
    user = f"{instruction}\n\n{input}" if input else instruction
    return tok.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": output}],
                                   tokenize=False)


# -- rm: a sequence-classification reward model ---------------------------------------------------------------


def test_reward_model_scores_equal_one_at_a_time_logits(rm_folder, smol_tokenizer):
    scorer = load_scorer(f"rm:{rm_folder}", batch_size=2)
    assert isinstance(scorer, Scorer) and isinstance(scorer, RewardModelScorer)
    assert scorer.chat and not scorer.is_proxy
    assert scorer.name == f"rm:{rm_folder.resolve()}" and scorer.label.startswith("reward model ")
    assert scorer.model.dtype == torch.float32
    got = scorer.score(*map(list, zip(*PAIRS)))
    want = _one_at_a_time(rm_folder, [_chat_text(smol_tokenizer, *p) for p in PAIRS])
    assert got == pytest.approx(want, abs=1e-4)
    assert len(set(round(v, 4) for v in got)) == len(got)  # the outputs really get different rewards


def test_reward_model_without_chat_template_scores_text_pairs(tmp_path, smol_tokenizer):
    folder = _save(tmp_path / "plain", smol_tokenizer, chat=False)
    scorer = load_scorer(f"rm:{folder}")
    assert not scorer.chat
    got = scorer.score(*map(list, zip(*PAIRS)))
    user = [f"{i}\n\n{x}" if x else i for i, x, _ in PAIRS]
    assert got == pytest.approx(_one_at_a_time(folder, [(u, o) for u, (_, _, o) in zip(user, PAIRS)]), abs=1e-4)


def test_reward_model_scores_the_store_with_its_label(rm_folder):
    with Store(":memory:") as store:
        xid = make_candidate(store, outputs=("Paris is the capital.", "It is Paris.", "Lyon"))
        scorer = load_scorer(f"rm:{rm_folder}")
        assert score_outputs(store, scorer) == {"scored": 3, "unscored": 0}
        outs = store.outputs_for(xid)
        rows = [next(r for r in store.scores_for(o.id) if r["scorer"] == scorer.name) for o in outs]
        assert [r["name"] for r in rows] == ["reward"] * 3
        instruction = store.get_candidate(xid).instruction
        assert [r["value"] for r in rows] == pytest.approx(scorer.score([instruction] * 3, ["x"] * 3,
                                                                        [o.text for o in outs]), abs=1e-5)
        assert json.loads(rows[0]["detail"])["label"] == scorer.label
        assert score_outputs(store, scorer) == {"scored": 0, "unscored": 0}  # resumable: nothing left


def test_a_causal_lm_is_not_a_reward_model(tmp_path, smol_tokenizer):
    folder = _save(tmp_path / "lm", smol_tokenizer, cls_name="LlamaForCausalLM")
    with pytest.raises(ScorerError, match=r"not a sequence-classification reward model \(its architectures: "
                                          r"LlamaForCausalLM\).*AutoModelForSequenceClassification.*judge:"):
        load_scorer(f"rm:{folder}")


def test_a_classifier_with_two_labels_is_refused(tmp_path, smol_tokenizer):
    folder = _save(tmp_path / "two", smol_tokenizer, num_labels=2)
    with pytest.raises(ScorerError, match="has 2 labels; a reward model has one"):
        load_scorer(f"rm:{folder}")


def test_a_missing_reward_model_names_the_fix(tmp_path):
    with pytest.raises(ScorerError, match="could not be found locally.*local folder saved with save_pretrained"):
        load_scorer("rm:nobody/no-such-reward-model")


# -- judge: an LLM over a loopback OpenAI-compatible server ---------------------------------------------------


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


def _judge_reply(prompt: str) -> str:
    response = prompt.split("Response:\n", 1)[1]
    if response.startswith("GOOD"):
        return "Score: 9"
    if response.startswith("FAIR"):
        return "**7**/10 — mostly right"
    if response.startswith("LOUD"):
        return "Score: 11"
    return "I cannot judge this."


def test_judge_over_a_real_http_server(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.reply = _judge_reply
    scorer = load_scorer(f"judge:openai:{MODEL}@{server.url}")
    assert scorer.name == f"judge:openai:{MODEL}" and "judge" in scorer.label and not scorer.is_proxy
    outputs = ["GOOD answer", "FAIR answer", "??", "LOUD answer"]
    got = scorer.score(["Say hi."] * 4, ["", "to Ann", "", ""], outputs)
    assert got[:2] == [9.0, 7.0] and math.isnan(got[2]) and math.isnan(got[3])
    bodies = [r["body"] for r in server.requests]
    assert all(b["temperature"] == 0.0 and b["messages"][0]["role"] == "user" for b in bodies)
    sent = {b["messages"][0]["content"].split("Response:\n")[1].split("\n")[0]: b["messages"][0]["content"]
            for b in bodies}
    assert "Instruction:\nSay hi.\n" in sent["FAIR answer"] and "Input:\nto Ann" in sent["FAIR answer"]
    assert "Input:" not in sent["GOOD answer"] and "1 (useless or wrong) to 10 (excellent)" in sent["GOOD answer"]


def test_judge_failures_are_recorded_with_the_reason(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.reply = lambda prompt: "I cannot judge this." if "Lyon" in prompt else "Score: 8"
    with Store(":memory:") as store:
        xid = make_candidate(store, outputs=("Paris is the capital.", "Lyon"))
        scorer = load_scorer(f"judge:openai:{MODEL}@{server.url}")
        assert score_outputs(store, scorer) == {"scored": 1, "unscored": 1}
        by_text = {o.text: store.scores_for(o.id)[0] for o in store.outputs_for(xid)}
        assert (by_text["Paris is the capital."]["name"], by_text["Paris is the capital."]["value"]) == ("reward", 8.0)
        bad = by_text["Lyon"]
        detail = json.loads(bad["detail"])
        assert bad["name"] == "unscored" and "no number" in detail["reason"]
        assert detail["answer"] == "I cannot judge this." and detail["label"] == scorer.label
        n = len(server.requests)
        assert score_outputs(store, scorer) == {"scored": 0, "unscored": 0}  # an unparseable answer is final
        assert len(server.requests) == n


def test_a_judge_server_that_fails_is_a_scorer_error(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.failures.extend(["400"])
    scorer = load_scorer(f"judge:openai:{MODEL}@{server.url}")
    with pytest.raises(ScorerError, match=f"the judge judge:openai:{MODEL} failed.*temperature is bad"):
        scorer.score(["Say hi."], [""], ["hello"])


@pytest.mark.parametrize("answer, value", [
    ("Score: 8", 8.0), ("score:7.5", 7.5), ("Rating = 3", 3.0), ("My score is **9**.", 9.0), ("6/10", 6.0),
    ("I would give it 4 out of 10.", 4.0), ("10", 10.0), ("8. Clear and correct.", 8.0),
    ("The answer is fine, 7", 7.0), ("Score: 1", 1.0),
])
def test_parse_judge_score(answer, value):
    assert parse_judge_score(answer) == (value, None)


@pytest.mark.parametrize("answer, why", [
    ("", "no number"), ("Great answer!", "no number"), ("Between 3 and 5, say 4", "3 different numbers"),
    ("Score: 0", "outside 1-10"), ("Score: 42", "outside 1-10"),
])
def test_parse_judge_score_refusals(answer, why):
    value, reason = parse_judge_score(answer)
    assert value is None and why in reason


def test_judge_over_the_scripted_completion_model():
    from curate.lm.scripted import ScriptedLM
    from curate.quality import JudgeScorer

    lm = ScriptedLM("base", [" 6", " lovely"])
    lm.supports_chat = False
    scorer = JudgeScorer(lm)
    got = scorer.score(["Say hi."] * 2, ["", ""], ["hello", "hi"])
    assert got[0] == 6.0 and math.isnan(got[1])
    prompt = lm.calls[0][0][0]
    assert prompt.endswith("\n\nScore:") and lm.calls[0][1].style == "completion"


# -- proxy:consensus and the resolver -------------------------------------------------------------------------


def test_consensus_proxy_is_labelled_and_reads_stored_agreement():
    with Store(":memory:") as store:
        xid = make_candidate(store, outputs=("Paris is the capital.", "It is Paris, the capital.", "Lyon"))
        other = make_candidate(store, output="Rome.", outputs=("Rome.", "It is Rome."),
                               instruction="Name the capital of Italy.")
        compute_consensus(store)
        no_consensus = make_candidate(store, output="Bern.", outputs=("Bern.", "Zurich"),
                                      instruction="Name the capital of Switzerland.")
        scorer = load_scorer("proxy:consensus", store=store)
        assert scorer.is_proxy and scorer.label == PROXY_LABEL == "proxy (consensus agreement), not a reward model"
        assert score_outputs(store, scorer) == {"scored": 5, "unscored": 2}
        c = store.get_consensus(xid)
        for oid, agreement in zip(c["output_ids"], c["scores"]):
            (row,) = store.scores_for(oid)
            assert (row["scorer"], row["name"], row["value"]) == ("proxy:consensus", "reward", agreement)
            assert json.loads(row["detail"]) == {"label": PROXY_LABEL, "proxy": True}
        missing = store.scores_for(store.outputs_for(no_consensus)[0].id)[0]
        assert missing["name"] == "unscored"
        assert "run `curate ensemble` first" in json.loads(missing["detail"])["reason"]
        assert store.stored_scorers() == [{"scorer": "proxy:consensus", "label": PROXY_LABEL, "scored": 5,
                                           "unscored": 2}]
        chosen = store.chosen_output_scores("proxy:consensus")
        assert chosen[xid] == max(c["scores"]) and set(chosen) == {xid, other}
        with pytest.raises(ScorerError, match="stored outputs only"):
            scorer.score(["i"], [""], ["o"])


@pytest.mark.parametrize("spec", ["", "bleu", "bogus:x", "rm:", "judge:  ", "proxy"])
def test_unknown_scorer_specs_list_the_forms(spec):
    forms = "unknown scorer.*rm:<Hugging Face id or folder.*judge:openai.*proxy:consensus"
    with pytest.raises(ScorerError, match=forms):
        load_scorer(spec)


def test_other_resolver_errors():
    with pytest.raises(ScorerError, match="proxy:consensus"):
        load_scorer("proxy:length")
    with pytest.raises(ScorerError, match="store=store"):
        load_scorer("proxy:consensus")
    with pytest.raises(ScorerError, match="judge model 'openai:m@ftp://x'.*http"):
        load_scorer("judge:openai:m@ftp://x")


def test_scorer_names_are_stable(tmp_path):
    assert scorer_name("judge:openai:m@http://a:8000,http://b:8000") == "judge:openai:m"
    assert scorer_name(" proxy:consensus ") == "proxy:consensus"
    assert scorer_name(f"rm:{tmp_path}/../{tmp_path.name}") == f"rm:{tmp_path.resolve()}"
    assert scorer_name("rm:Skywork/Skywork-Reward-Llama-3.1-8B") == "rm:Skywork/Skywork-Reward-Llama-3.1-8B"


def test_curate_score_command(tmp_path, capsys):
    from curate.cli import main

    db = str(tmp_path / "c.db")
    assert main(["score", "--db", db]) == 2
    assert "run `curate ensemble` first" in capsys.readouterr().err
    with Store(db) as store:
        make_candidate(store, outputs=("Paris is the capital.", "It is Paris.", "Lyon"))
        compute_consensus(store)
    assert main(["score", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "proxy:consensus (proxy (consensus agreement), not a reward model): 3 outputs scored, 0 unscored" in out
    assert main(["score", "--db", db, "--scorer", "proxy:consensus"]) == 0
    assert "0 outputs scored" in capsys.readouterr().out
    assert main(["score", "--db", db, "--scorer", "rm"]) == 2
    assert "unknown scorer 'rm'" in capsys.readouterr().err
