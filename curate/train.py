"""Supervised fine-tuning of a student on a curated set: the `train` stage (see docs/ARCHITECTURE.md,
"Training").

The training rows come from the store (``accepted``, ``passing`` at τ, or ``selection:NAME``) or from an export
folder written by ``curate export``. The contamination guard (:func:`curate.evaluate.contamination`) drops every
row that matches an evaluation set, and the count goes into the run's record. Training is TRL's ``SFTTrainer``
with the loss on the response only: the rows are prompt–completion pairs, as chat messages through the student's
chat template where it has one, else as the reference prompt ``instruction + "\\n" + input`` and its output. LoRA
through ``peft`` is the default (``full=True`` trains all weights); ``accelerate`` picks the device (CPU here,
a GPU where there is one). Runs are seeded and reproducible, report their loss as they go, and save checkpoints,
so an interrupted run resumes where it stopped. The output folder is a plain transformers model (LoRA merged)
with its tokenizer and ``curate-train.json``, so ``curate evaluate --model FOLDER`` and ``from_pretrained`` load it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .errors import Stopped, TrainingError

__all__ = ["Config", "check", "run", "fit", "training_rows", "resolve_base", "RECORD"]

RECORD = "curate-train.json"
CHECKPOINTS = "checkpoints"


class Config(BaseModel):
    """A fine-tuning run of ``base`` on the rows of ``source``, written to ``out``."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field("smollm2-135m-instruct", min_length=1, description="the student: an embedded name, a "
                                                                          "transformers folder or a HF id")
    source: str = Field("accepted", min_length=1, description="accepted | passing | selection:NAME | an export "
                                                              "folder")
    out: str = Field(min_length=1, description="the output folder (the trained model)")
    tau: float = Field(0.01, ge=0.0, le=1.0, description="consensus threshold for source=passing")
    limit: int | None = Field(None, ge=1, description="train on the first N rows only")
    full: bool = Field(False, description="train all weights instead of LoRA adapters")
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    learning_rate: float | None = Field(None, gt=0, description="default 2e-4 with LoRA, 2e-5 full")
    batch_size: int = Field(4, ge=1, le=1024)
    grad_accum: int = Field(1, ge=1, le=1024)
    max_length: int = Field(512, ge=16, le=32768, description="tokens per example (longer ones are cut)")
    save_steps: int = Field(50, ge=1, description="a checkpoint every N steps (resume point)")
    seed: int = 0
    shuffle: bool = Field(True, description="shuffle the rows each epoch (seeded); False keeps their order")
    gradient_checkpointing: bool = Field(False, description=(
        "recompute activations in the backward pass: less memory for about a third more compute (TRL turns it on "
        "by default; curate leaves it off, since small students fit, and asks for it where memory is short)"))


# -- the rows ------------------------------------------------------------------------------------------------
def _from_export(folder: Path) -> list[dict]:
    """(instruction, input, output) rows of an export folder (alpaca, alpaca-jsonl, sharegpt, messages, parquet,
    hf). Raises TrainingError naming the folder and what it holds."""
    if (folder / "dataset_info.json").exists() or (folder / "state.json").exists():
        import datasets
        records = list(datasets.load_from_disk(str(folder)))
    elif (folder / "data.parquet").exists():
        import datasets
        records = list(datasets.Dataset.from_parquet(str(folder / "data.parquet")))
    elif (folder / "data.jsonl").exists():
        lines = (folder / "data.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(x) for x in lines if x.strip()]
    elif (folder / "data.json").exists():
        records = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    else:
        raise TrainingError(f"{folder} is not an export folder (no data.jsonl, data.json, data.parquet or "
                            "datasets folder): write one with `curate export`, or use --from accepted")
    out = []
    for n, r in enumerate(records, 1):
        if "messages" in r or "conversations" in r:
            turns = r.get("messages") or r.get("conversations")
            role = lambda t: t.get("role", {"human": "user", "gpt": "assistant"}.get(t.get("from"), t.get("from")))  # noqa: E731
            text = lambda t: t.get("content", t.get("value", ""))  # noqa: E731
            user = next((text(t) for t in turns if role(t) == "user"), None)
            bot = next((text(t) for t in turns if role(t) == "assistant"), None)
            if user is None or bot is None:
                raise TrainingError(f"{folder} row {n}: a conversation without a user and an assistant turn")
            out.append({"instruction": user, "input": "", "output": bot})
        elif {"instruction", "output"} <= set(r):
            out.append({"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]})
        else:
            raise TrainingError(f"{folder} row {n}: neither alpaca columns nor messages (keys: {', '.join(r)})")
    return out


def training_rows(store, source: str, *, tau: float = 0.01, limit: int | None = None) -> list[dict]:
    """The (instruction, input, output) rows a run trains on, before the contamination guard: the reviewed
    texts where there are any (as ``curate export`` writes them). Raises TrainingError for an unknown source."""
    if source.startswith("selection:"):
        rows = store.export_rows(("selection",), tau=tau, selection=source.partition(":")[2] or None)
    elif source in ("accepted", "passing"):
        rows = store.export_rows((source,), tau=tau)
    else:
        path = Path(source).expanduser()
        if not path.is_dir():
            raise TrainingError(f"unknown --from {source!r}: accepted, passing, selection:NAME or an export folder")
        rows = _from_export(path)
    rows = [{"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in rows]
    return rows[:limit] if limit else rows


def resolve_base(spec: str) -> str:
    """What ``from_pretrained`` loads for a model spec: an embedded model's transformers folder, a local folder,
    or the Hugging Face id itself."""
    from .lm.registry import EMBEDDED, ensure_lm_folder
    s = EMBEDDED.get(spec) or EMBEDDED.get(spec.lower())
    if s is not None:
        if s.role != "lm":
            raise TrainingError(f"{spec!r} is an embedding model, not a language model to fine-tune")
        return str(ensure_lm_folder(s.name))
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _dataset(rows: list[dict], chat: bool, eos: str):
    """Prompt–completion rows for TRL (its completion-only loss): conversational when the student has a chat
    template, else the reference prompt and the output."""
    import datasets

    from .export import _prompt
    from .prompts import reference_prompt
    if chat:
        data = [{"prompt": [{"role": "user", "content": _prompt(r)}],
                 "completion": [{"role": "assistant", "content": r["output"]}]} for r in rows]
    else:
        data = [{"prompt": reference_prompt(r["instruction"], r["input"]) + "\n", "completion": r["output"] + eos}
                for r in rows]
    return datasets.Dataset.from_list(data)


def check(store, config: Config) -> None:
    """Before a job is created: the source gives rows, and some are left after the contamination guard."""
    _guarded(store, config)


def _guarded(store, config: Config) -> tuple[list[dict], dict]:
    from .evaluate import contamination
    rows = training_rows(store, config.source, tau=config.tau, limit=config.limit)
    if not rows:
        raise TrainingError(f"--from {config.source} gives no rows to train on: accept candidates in the Review "
                            "tab, use --from passing, or make a selection")
    c = contamination([r["instruction"] for r in rows])
    kept = [rows[i] for i in c.kept]
    if not kept:
        raise TrainingError(f"every one of the {len(rows)} training rows matches an evaluation set "
                            f"({c.counts}); nothing is left to train on")
    return kept, {"rows": len(rows), "kept": len(kept), "dropped_as_contaminated": c.counts}


# -- the Stage contract (curate.stage) -----------------------------------------------------------------------
def run(store, config: Config, ctx) -> dict:
    """Train (or resume from the last checkpoint in ``out``), merge LoRA, save the model; returns the record."""
    rows, counts = _guarded(store, config)
    record = fit(rows, counts, config, ctx)
    ctx.report(phase="done", done=record["steps"], total=record["steps"], unit="steps",
               result={k: v for k, v in record.items() if not isinstance(v, (dict, list))})
    return record


def fit(rows: list[dict], counts: dict, config: Config, ctx, *, phase: str = "training") -> dict:
    """Train ``config.base`` on ``rows`` (already guarded; ``counts`` go into the record) into ``config.out``,
    resuming from its last checkpoint; returns the record without the loss curve and settings."""
    ctx.report(phase=f"loading {config.base}", **counts)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    base = resolve_base(config.base)
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    chat = bool(getattr(tok, "chat_template", None))
    if not chat:
        ctx.warn(f"{config.base} has no chat template: training on the reference prompt (instruction + newline + "
                 "input) and its output")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_config = None
    if not config.full:
        from peft import LoraConfig
        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    out = Path(config.out).expanduser()
    ckpt = out / CHECKPOINTS
    lr = config.learning_rate or (2e-5 if config.full else 2e-4)
    args = SFTConfig(
        output_dir=str(ckpt), num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=lr, max_length=config.max_length, seed=config.seed, data_seed=config.seed,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=2, logging_steps=1,
        report_to="none", completion_only_loss=True, dataloader_num_workers=0, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), bf16=False, fp16=False,
        gradient_checkpointing=config.gradient_checkpointing,
        train_sampling_strategy="random" if config.shuffle else "sequential")
    losses: list[float] = []
    seen = {"tokens": 0}

    class Progress(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs and not seen.get("counted"):
                seen["tokens"] = int(float(logs["num_tokens"]))
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                ctx.report(phase=phase, done=state.global_step, total=state.max_steps, unit="steps",
                           loss=round(float(logs["loss"]), 4))

        def on_step_begin(self, a, state, control, **kw):
            seen.setdefault("first_step", time.perf_counter())

        def on_step_end(self, a, state, control, **kw):
            seen["last_step"] = time.perf_counter()
            if ctx.should_stop():  # checkpoint now, so the resumed run continues from this step
                control.should_save = True
                control.should_training_stop = True

    trainer_cls = SFTTrainer if torch.cuda.is_available() else _plain_loss_trainer(SFTTrainer, seen)
    trainer = trainer_cls(model=model, args=args, train_dataset=_dataset(rows, chat, tok.eos_token or ""),
                          processing_class=tok, peft_config=peft_config, callbacks=[Progress()])
    trainer.remove_callback(PrinterCallback)  # the progress goes through ctx, not print()
    resume = any(ckpt.glob("checkpoint-*")) if ckpt.exists() else False
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    except (torch.OutOfMemoryError, MemoryError) as e:  # the message names the knobs
        raise TrainingError(f"out of memory while training ({e}): lower --max-length ({config.max_length}) or "
                            f"--batch-size ({config.batch_size}), keep LoRA (drop --full), or add "
                            "--gradient-checkpointing") from None
    if ctx.should_stop():
        raise Stopped()
    ctx.report(phase="saving", done=trainer.state.global_step, total=trainer.state.max_steps, unit="steps")
    trained = trainer.model.merge_and_unload() if peft_config is not None else trainer.model
    trained.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    record = {"base": config.base, "base_resolved": base, "chat_template": chat, "lora": not config.full,
              "steps": trainer.state.global_step, "train_loss": float(result.training_loss),
              "losses": losses, "seconds": time.perf_counter() - t0, "resumed": bool(resume),
              "train_tokens": seen["tokens"], **counts, "config": config.model_dump(mode="json")}
    record["train_tokens_per_s"] = record["train_tokens"] / record["seconds"] if record["seconds"] > 0 else None
    # the steps alone (first step's start to last step's end): without the trainer's start-up and the save
    steps_s = seen.get("last_step", 0.0) - seen.get("first_step", 0.0)
    record["step_seconds"] = steps_s if steps_s > 0 else None
    record["train_step_tokens_per_s"] = record["train_tokens"] / steps_s if steps_s > 0 else None
    (out / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return {k: v for k, v in record.items() if k not in ("losses", "config")}


def _plain_loss_trainer(base, seen: dict):
    """SFTTrainer with the model's own loss: on CPU, TRL's fused LM head (the logits of every position in tiles,
    entropy and top-1 for its metrics, the tiles recomputed in the backward pass) made a training step about 40%
    slower than a plain PyTorch loop over the same model (bench/closed_loop.py). The loss is the same: the
    collator's labels are -100 outside the completion, and the model's cross-entropy ignores those (shifted,
    averaged over ``num_items_in_batch`` under gradient accumulation). Counts the trained tokens in ``seen``."""

    class PlainLossSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            kwargs = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
            outputs = model(**inputs, **kwargs)
            if model.training:
                seen["counted"] = True
                seen["tokens"] = seen.get("tokens", 0) + int(inputs["attention_mask"].sum())
            return (outputs.loss, outputs) if return_outputs else outputs.loss

    return PlainLossSFTTrainer


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
