"""The closed loop on this machine's CPU: does curation help a student, and what does curate's training cost?

1. Pool: ``--pool-size`` real instruction records (Alpaca-52K records from the Alpaca-plus validation split under
   ``shared/data/pools``; env ``CURATE_SHARED_DATA`` overrides the folder) stored as candidates whose o0 is the
   record's output, then ensembled with ``--ensemble-model`` (greedy, chat template) and consensus computed, so
   the arms have something to draw from. Cached in ``--cache`` (a store file).
2. Training overhead: curate's trainer (TRL SFTTrainer, LoRA) against a plain PyTorch loop over the same
   tokenised batches (same model, same LoRA, AdamW, the completion-only loss), ``--overhead-steps`` steps each;
   tokens/s of both and the overhead (goal ≤ 15%).
3. The experiment: ``--arms`` × ``--seeds`` training runs of ``--budget`` rows each (1 epoch), evaluated with
   greedy predictions on the SNI sample and (kept models) on the user-oriented set, plus the base model.
   Prints each arm's mean and 95% CI, its difference from random with p, and minutes per arm.

Ends with ``BENCH name=value`` lines. A curated arm that does not beat random is a finding, not a failure.

    python bench/closed_loop.py [--pool-size 400] [--budget 200] [--seeds 2] [--arms random passing@0.01 qdit:0.7]
        [--student smollm2-135m-instruct] [--eval-limit 60] [--max-new-tokens 64] [--overhead-steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate import evaluate as ev  # noqa: E402
from curate import experiment as ex  # noqa: E402
from curate import jobs, train  # noqa: E402
from curate.ensemble import EnsembleConfig, run_ensemble  # noqa: E402
from curate.stage import StageContext  # noqa: E402
from curate.store import Store  # noqa: E402

DATA = Path(os.environ.get("CURATE_SHARED_DATA", "/work/shared/data")) / "pools"
POOL = DATA / "alpaca_subset" / "alpaca_plus_validation_unseen.json"


def build_pool(path: Path, n: int, ensembler: str) -> Store:
    st = Store(path)
    if st.count_passing(0.0)["scored"] >= n:
        return st
    records = json.loads(POOL.read_text(encoding="utf-8"))[:n]
    with st.atomic():
        for i, r in enumerate(records):
            cid = st.add_completion({"stage": "instruction", "model_id": "alpaca-52k", "params": {},
                                     "prompt_hash": f"alpaca-{i}", "text": r["instruction"]})
            iid, _ = st.add_instruction({"text": r["instruction"], "task_type": "A" if r["input"] else "B",
                                         "origin": "instruction_prompt", "completion_id": cid, "position": 0,
                                         "generator_model": "alpaca-52k", "params": {}, "prompt_hash": f"alpaca-{i}",
                                         "status": "kept"})
            xcid = st.add_completion({"stage": "instance", "model_id": "alpaca-52k", "params": {},
                                      "prompt_hash": f"alpaca-{i}", "text": r["output"], "instruction_id": iid})
            xid, new = st.add_candidate({"instruction_id": iid, "task_type": "A" if r["input"] else "B",
                                         "input": r["input"], "output": r["output"], "completion_id": xcid,
                                         "position": 0, "generator_model": "alpaca-52k", "params": {},
                                         "prompt_hash": f"alpaca-{i}", "status": "ok"})
            if new:
                st.add_outputs([{"candidate_id": xid, "position": 0, "model_id": "alpaca-52k", "params": {},
                                 "prompt_style": "generator", "text": r["output"]}])
    t0 = time.perf_counter()
    run_ensemble(st, EnsembleConfig(models=[ensembler], batch_size=16, max_new_tokens=64))
    print(f"ensembled {n} candidates with {ensembler} in {time.perf_counter() - t0:.0f} s", flush=True)
    return st


def plain_loop_tokens_per_s(base: str, rows: list[dict], steps: int, batch_size: int, max_length: int) -> float:
    """A plain PyTorch training loop: the same model and LoRA, AdamW, the loss on the completion tokens only."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.export import _prompt
    tok = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                      task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    examples = []
    for r in rows:
        prompt = tok.apply_chat_template([{"role": "user", "content": _prompt(r)}], tokenize=False,
                                         add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(r["output"] + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = (p_ids + c_ids)[:max_length]
        examples.append((ids, [-100] * len(p_ids) + c_ids))
    model.train()
    tokens, t0 = 0, time.perf_counter()
    for step in range(steps):
        batch = [examples[(step * batch_size + j) % len(examples)] for j in range(batch_size)]
        width = max(len(i) for i, _ in batch)
        ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([(lab + [-100] * width)[:width] for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += int(mask.sum())
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool-size", type=int, default=400)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--arms", nargs="+", default=["random", "passing@0.01", "qdit:0.7"])
    ap.add_argument("--student", default="smollm2-135m-instruct")
    ap.add_argument("--ensemble-model", default="smollm2-135m-instruct")
    ap.add_argument("--eval-limit", type=int, default=60)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--overhead-steps", type=int, default=20)
    ap.add_argument("--cache", default="data/bench-closed-loop.db")
    ap.add_argument("--out", default="data/bench-closed-loop")
    ap.add_argument("--skip", nargs="*", default=[], choices=("overhead", "experiment"),
                    help="parts not to run this time (the pool is built either way)")
    args = ap.parse_args()

    st = build_pool(Path(args.cache), args.pool_size, args.ensemble_model)
    print(f"pool: {st.count_passing(0.0)['scored']} ensembled candidates, {st.count_passing(0.01)['passing']} "
          "passing at 0.01", flush=True)

    # 2. training overhead: the same rows, batches and steps through curate's trainer and a plain loop
    base = train.resolve_base(args.student)
    rows = ex.arm_rows(st, "random", args.budget, 0)
    if "overhead" not in args.skip:
        overhead(args, base, rows)
    if "experiment" not in args.skip:
        experiment(args, st)


def overhead(args, base: str, rows: list[dict]) -> None:
    out = Path(args.out) / "overhead"
    shutil.rmtree(out, ignore_errors=True)
    rec = train.fit(rows, {}, train.Config(base=args.student, out=str(out), max_steps=args.overhead_steps,
                                           batch_size=4, save_steps=10**6, shuffle=False),
                    StageContext(pool=object()))  # in row order: the plain loop takes the same batches
    plain = plain_loop_tokens_per_s(base, rows, args.overhead_steps, 4, 512)
    ours = rec["train_tokens_per_s"]
    print(f"BENCH train_tokens_per_s={ours:.1f}")
    print(f"BENCH train_plain_loop_tokens_per_s={plain:.1f}")
    print(f"BENCH train_overhead_pct={100 * (1 - ours / plain):.1f}")
    steps_only = rec["train_step_tokens_per_s"]  # without the trainer's start-up (fixed, a few seconds a run)
    print(f"BENCH train_steps_only_tokens_per_s={steps_only:.1f}")
    print(f"BENCH train_steps_only_overhead_pct={100 * (1 - steps_only / plain):.1f}", flush=True)


def experiment(args, st: Store) -> None:
    # 3. the experiment (SNI sample), models kept to score them on the user-oriented set too
    exp_dir = Path(args.out) / "experiment"
    config = {"base": args.student, "evalset": "sni-sample", "budget": args.budget, "arms": args.arms,
              "seeds": args.seeds, "out": str(exp_dir), "eval_limit": args.eval_limit,
              "max_new_tokens": args.max_new_tokens, "keep_models": True}
    t0 = time.perf_counter()
    job = jobs.run_job(st, jobs.start_job(st, "experiment", config))
    if job["state"] != "done":
        raise SystemExit(f"the experiment ended {job['state']}: {job['error']}")
    minutes = (time.perf_counter() - t0) / 60
    tables = {"sni-sample": ex.load_report(exp_dir)}
    uo = ev.load_evalset("user-oriented", limit=args.eval_limit)
    from curate.lm.registry import load_lm

    def score(model: str) -> dict:
        lm = load_lm(model)
        preds = ev.predict(lm, uo.rows, max_new_tokens=args.max_new_tokens)
        return ev.evaluate(uo.rows, preds, evalset=uo, model=model, style=ev.prompt_style(lm)).as_dict()

    reports = {arm: [score(str(exp_dir / "models" / ex.arm_tag(arm, s))) for s in range(args.seeds)]
               for arm in args.arms}
    sizes = {r["arm"]: r["train_rows"] for r in tables["sni-sample"]["rows"][1:]}
    tables["user-oriented"] = ex.report_table(score(args.student), reports, sizes, budget=args.budget)
    for name, table in tables.items():
        print(f"\n{name} ({args.eval_limit} rows), student {args.student}, {args.budget} rows per arm, "
              f"{args.seeds} seeds")
        for r in table["rows"]:
            key = r["arm"].split(" ")[0].replace("@", "_at_").replace(":", "_").replace(".", "p")
            for m in table["metrics"]:
                v = r[m]
                print(f"BENCH {name.replace('-', '_')}_{key}_{m}={v['mean']:.2f}")
                if v.get("ci"):
                    print(f"BENCH {name.replace('-', '_')}_{key}_{m}_ci_lo={v['ci'][0]:.2f}")
                    print(f"BENCH {name.replace('-', '_')}_{key}_{m}_ci_hi={v['ci'][1]:.2f}")
                if v.get("vs_random"):
                    print(f"BENCH {name.replace('-', '_')}_{key}_{m}_vs_random={v['vs_random']['delta']:+.2f}")
                    print(f"BENCH {name.replace('-', '_')}_{key}_{m}_vs_random_p={v['vs_random']['p']:.3f}")
    print(f"BENCH minutes_per_arm_run={minutes / (len(args.arms) * args.seeds):.2f}")
    print(f"BENCH budget={args.budget}")
    print(f"BENCH seeds={args.seeds}")


if __name__ == "__main__":
    main()
