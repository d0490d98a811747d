"""Fine-tuning a student: a tiny randomly initialised Llama with the embedded SmolLM2 tokenizer, so training,
saving, reloading, resuming and evaluating run in seconds."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from curate import evaluate as ev
from curate import jobs, review
from curate.errors import TrainingError
from curate.lm.registry import ensure_lm_folder
from curate.store import Store
from review_fixtures import filled_store


def _tiny(folder, chat: bool = True) -> str:
    tok = AutoTokenizer.from_pretrained(ensure_lm_folder("smollm2-135m-instruct"))
    if not chat:
        tok.chat_template = None
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("tiny-student"))


def _export(tmp_path, rows, name="exp"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder)


REPEATED = [{"instruction": "Name the colour of a clear daytime sky.", "input": "", "output": "Blue."}] * 8


def _train(st, **cfg):
    jid = jobs.start_job(st, "train", cfg)
    return jobs.run_job(st, jid)


def test_the_loss_falls_on_a_repeated_example_and_the_folder_reloads(tmp_path, tiny):
    st = Store(tmp_path / "c.db")
    out = tmp_path / "out"
    job = _train(st, base=tiny, source=_export(tmp_path, REPEATED), out=str(out), full=True, learning_rate=1e-2,
                 max_steps=25, batch_size=4, save_steps=100)
    assert job["state"] == "done", job["error"]
    record = json.loads((out / "curate-train.json").read_text())
    assert record["steps"] == 25 and record["kept"] == 8 and record["chat_template"] is True
    assert record["losses"][-1] < 0.5 * record["losses"][0]
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.hidden_size == 32 and tok.chat_template
    # the trained folder is a model spec curate evaluate accepts
    jid = jobs.start_job(st, "evaluate", {"evalset": "sni-sample", "model": str(out), "limit": 2,
                                          "max_new_tokens": 4})
    assert jobs.run_job(st, jid)["state"] == "done"


def test_lora_is_merged_into_a_plain_model(tmp_path, tiny):
    st = Store(tmp_path / "c.db")
    job = _train(st, base=tiny, source=_export(tmp_path, REPEATED), out=str(tmp_path / "lora"), max_steps=3)
    assert job["state"] == "done", job["error"]
    files = {p.name for p in (tmp_path / "lora").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert json.loads((tmp_path / "lora" / "curate-train.json").read_text())["lora"] is True


def _weights(folder):
    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(folder).state_dict().items()}


def test_runs_are_reproducible_and_a_stopped_run_resumes_to_the_same_model(tmp_path, tiny):
    src = _export(tmp_path, [{"instruction": f"Say the number {i} in words.", "input": "", "output": f"n{i}"}
                             for i in range(12)])
    cfg = dict(base=tiny, source=src, full=True, learning_rate=1e-3, max_steps=8, batch_size=2, save_steps=2)
    st = Store(tmp_path / "c.db")
    assert _train(st, out=str(tmp_path / "a"), **cfg)["state"] == "done"
    assert _train(st, out=str(tmp_path / "b"), **cfg)["state"] == "done"
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same data: the same model
    jid = jobs.start_job(st, "train", {**cfg, "out": str(tmp_path / "c")})
    steps = []

    def on_progress(p):
        if p.phase == "training":
            steps.append(p.done)
            if p.done == 3:
                jobs.pause(st, jid)  # Pause in the middle of the run

    assert jobs.run_job(st, jid, on_progress=on_progress)["state"] == "paused"
    # it stops at the end of the next step, with a checkpoint of it
    assert max(steps) == 4 and (tmp_path / "c" / "checkpoints" / "checkpoint-4").is_dir()
    done = jobs.run_job(st, jid)
    assert done["state"] == "done" and done["progress"]["result"]["resumed"] is True
    assert done["progress"]["result"]["steps"] == 8
    c = _weights(tmp_path / "c")
    assert all(torch.allclose(a[k], c[k], atol=1e-5) for k in a)  # resumed = uninterrupted


def test_the_contamination_guard_drops_evaluation_rows_before_training(tmp_path, tiny):
    evalrow = ev.load_evalset("user-oriented").rows[3]
    rows = [*REPEATED[:3], {"instruction": evalrow.instruction, "input": evalrow.input, "output": "x"}]
    st = Store(tmp_path / "c.db")
    job = _train(st, base=tiny, source=_export(tmp_path, rows), out=str(tmp_path / "o"), max_steps=1)
    r = json.loads((tmp_path / "o" / "curate-train.json").read_text())
    assert job["state"] == "done" and (r["rows"], r["kept"]) == (4, 3)
    assert r["dropped_as_contaminated"] == {"user-oriented": 1}
    only = _export(tmp_path, rows[3:], name="only")
    with pytest.raises(TrainingError, match="every one of the 1 training rows matches an evaluation set"):
        jobs.start_job(st, "train", {"base": tiny, "source": only, "out": str(tmp_path / "x")})


def test_the_store_is_a_source_and_bad_sources_are_named(tmp_path, tiny):
    st = filled_store(tmp_path / "c.db", 20)
    with pytest.raises(TrainingError, match="gives no rows to train on: accept candidates"):
        jobs.start_job(st, "train", {"base": tiny, "out": str(tmp_path / "o")})
    for r in st.review_queue(status="pending", limit=5):
        review.accept(st, r["id"], reviewer="ann")
    job = _train(st, base=tiny, out=str(tmp_path / "o"), max_steps=1)
    assert job["state"] == "done" and job["progress"]["result"]["kept"] == 5
    with pytest.raises(TrainingError, match="unknown --from 'nowhere'"):
        jobs.start_job(st, "train", {"base": tiny, "source": "nowhere", "out": str(tmp_path / "o2")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="not an export folder"):
        jobs.start_job(st, "train", {"base": tiny, "source": str(tmp_path / "empty"), "out": str(tmp_path / "o3")})


def test_a_model_without_a_chat_template_trains_on_the_reference_prompt(tmp_path):
    base = _tiny(tmp_path / "nochat", chat=False)
    st = Store(tmp_path / "c.db")
    job = _train(st, base=base, source=_export(tmp_path, REPEATED), out=str(tmp_path / "o"), max_steps=2)
    assert job["state"] == "done", job["error"]
    assert any("no chat template" in w for w in job["progress"]["warnings"])
    assert json.loads((tmp_path / "o" / "curate-train.json").read_text())["chat_template"] is False


def test_running_out_of_memory_names_the_knobs(tmp_path, tiny, monkeypatch):
    import trl

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(trl.SFTTrainer, "train", oom)
    st = Store(tmp_path / "c.db")
    job = _train(st, base=tiny, source=_export(tmp_path, REPEATED), out=str(tmp_path / "o"), max_steps=1)
    assert job["state"] == "failed"
    assert "--max-length" in job["error"] and "--batch-size" in job["error"] and "LoRA" in job["error"]
