"""The ``curate`` command: thin shells over the library. Library errors become one-line messages here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

from . import __version__
from .errors import CurateError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn
    return deco


def _console():
    from rich.console import Console
    return Console(stderr=True)


def _settings(args: argparse.Namespace, **extra: Any):
    from .settings import load_settings
    return load_settings(getattr(args, "config", None), db=getattr(args, "db", None), **extra)


def _store(settings):
    from .store import Store
    return Store(settings.db)


# ---------------------------------------------------------------------------------------------------------
@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from .lm import registry
    if args.action == "setup":
        names = args.names or None
        for row in registry.setup_models(names, progress=lambda m: _console().print(m)):
            print(f"{row['name']:26} ok   {row.get('path', '')}")
        return 0
    from rich.table import Table
    table = Table(title="Embedded models (offline, from package-registry packages)")
    for col in ("name", "role", "chat", "status", "licence"):
        table.add_column(col, no_wrap=True)
    table.add_column("description", ratio=1)
    for spec in registry.list_embedded():
        st = registry.model_status(spec.name)
        state = "ready" if st.get("verified") else "assembled" if st.get("assembled") else \
            "installed" if st.get("installed") else "missing"
        table.add_row(spec.name, spec.role, "yes" if spec.supports_chat else "no", state,
                      spec.licence, spec.description)
    from rich.console import Console
    Console().print(table)
    print("Also usable: any Hugging Face id or local folder (with a network or a local copy), and "
          "openai:<model>@<url>[,<url>] for vLLM / llama.cpp / TGI / Ollama servers.")
    return 0


@command("seeds")
def cmd_seeds(args: argparse.Namespace) -> int:
    from .seeds import load_seeds, seed_summary
    seeds = load_seeds(args.seeds)
    print(json.dumps(seed_summary(seeds), indent=2))
    return 0


def _progress_bar(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=_console())


def _fmt_gen(p) -> str:
    d = p.as_dict()
    filt = ", ".join(f"{k} {v}" for k, v in sorted(d["filtered"].items())) or "none"
    eta = f"{d['eta_s']:.0f}s" if d.get("eta_s") else "?"
    return (f"instances {d['instances']} | filtered: {filt} | {d['tok_s']:.1f} tok/s | ETA {eta}")


@command("generate")
def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import GenerateConfig, sampling
    from .jobs import run_job, start_job
    from .mixture import parse_mixture
    s = _settings(args, seeds=args.seeds, seed=args.seed, batch_size=args.batch_size)
    config = GenerateConfig(
        instructions=args.instructions, task_type=args.type, instances=not args.no_instances,
        seeds=str(s.seeds) if s.seeds else None,
        instruction_models=parse_mixture(args.models or s.instruction_models),
        instance_models=parse_mixture(args.instance_models or args.models or s.instance_models),
        assignment=args.assignment, seed=s.seed, batch_size=s.batch_size,
        similarity_threshold=s.similarity_threshold,
        **sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens, args.instance_max_new_tokens))
    with _store(s) as store:
        job_id = args.resume or start_job(store, "generate", config.model_dump(mode="json"))
        _console().print(f"job {job_id} → {s.db}  (Ctrl-C stops; run the same command, or "
                         f"`curate jobs --resume {job_id}`, to continue)")
        job = _run_with_bar(store, job_id, args.instructions, _fmt_gen)
    return _job_exit(job, store_path=s.db)


def _run_with_bar(store, job_id: str, total: int, fmt: Callable) -> dict:
    from .jobs import run_job
    with _progress_bar(total) as bar:
        task = bar.add_task("kept", total=total, info="loading models…")

        def on_progress(p) -> None:
            d = p.as_dict()
            bar.update(task, completed=min(d.get("kept", 0), total) if "kept" in d else 0,
                       description=d.get("stage", ""), info=fmt(p))
        return run_job(store, job_id, on_progress=on_progress)


def _job_exit(job: dict, store_path) -> int:
    state = job["state"]
    if state == "failed":
        first = (job.get("error") or "").strip().splitlines()[:1]
        print(f"curate: error: job {job['id']} failed: {first[0] if first else '?'}", file=sys.stderr)
        return 1
    for w in job["progress"].get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(f"job {job['id']}: {state}. `curate stats --db {store_path}` shows the counts.")
    return 0


def _fmt_ens(p) -> str:
    d = p.as_dict()
    return f"outputs {d['outputs']} | consensus {d['consensus']} | {d['tok_s']:.1f} tok/s"


@command("ensemble")
def cmd_ensemble(args: argparse.Namespace) -> int:
    from .ensemble import EnsembleConfig
    from .jobs import start_job
    s = _settings(args, consensus_threshold=args.threshold, batch_size=args.batch_size)
    config = EnsembleConfig(models=args.models.split(",") if args.models else s.ensemble_models,
                            prompt_style=args.style or s.ensemble_prompt_style, threshold=s.consensus_threshold,
                            batch_size=s.batch_size, consensus_only=args.consensus_only)
    with _store(s) as store:
        job_id = args.resume or start_job(store, "ensemble", config.model_dump(mode="json"))
        job = _run_with_bar(store, job_id, store.count_instances("ok"), _fmt_ens)
        rc = _job_exit(job, store_path=s.db)
        counts = store.count_passing(s.consensus_threshold)
    print(f"consensus: {counts['passing']} of {counts['scored']} scored candidates pass at "
          f"tau={s.consensus_threshold}")
    return rc


@command("consensus")
def cmd_consensus(args: argparse.Namespace) -> int:
    from .consensus import consensus_jsonl
    counts = consensus_jsonl(args.input, args.output, threshold=args.threshold)
    print(json.dumps(counts, indent=2))
    return 0


@command("threshold")
def cmd_threshold(args: argparse.Namespace) -> int:
    s = _settings(args)
    with _store(s) as store:
        for tau in args.tau:
            c = store.count_passing(tau)
            print(f"tau={tau:<6} passing {c['passing']:>7} of {c['scored']}")
    return 0


@command("stats")
def cmd_stats(args: argparse.Namespace) -> int:
    s = _settings(args)
    with _store(s) as store:
        st = store.stats()
        st["passing"] = store.count_passing(s.consensus_threshold) | {"tau": s.consensus_threshold}
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table
    con = Console()
    con.print(f"[bold]{s.db}[/bold]")
    for title, data in (("seeds", st["seeds"]), ("instructions (kept / filtered by reason)", st["instructions"]),
                        ("kept instructions by type", st["instructions_kept_by_type"]),
                        ("instances (ok / rejected by reason)", st["instances"]),
                        ("unparseable completions", st["unparseable"]),
                        ("ensemble outputs by model", st["outputs_by_model"]),
                        ("consensus by reason", st["consensus"]), ("review status", st["reviews"]),
                        ("passing consensus", st["passing"])):
        t = Table(title=title, title_justify="left", show_header=False)
        for k, v in data.items():
            t.add_row(str(k), str(v))
        if not data:
            t.add_row("(none)", "")
        con.print(t)
    t = Table(title="completions by model", title_justify="left")
    for col in ("stage", "model", "completions", "tokens", "tok/s", "unparseable"):
        t.add_column(col)
    for r in st["completions"]:
        tps = (r["tokens"] or 0) / r["seconds"] if r["seconds"] else 0
        t.add_row(r["stage"], r["model_id"], str(r["completions"]), str(r["tokens"]), f"{tps:.1f}",
                  str(r["unparseable"]))
    con.print(t)
    return 0


@command("jobs")
def cmd_jobs(args: argparse.Namespace) -> int:
    from .jobs import cancel, recover
    s = _settings(args)
    with _store(s) as store:
        recover(store)
        if args.cancel:
            ok = cancel(store, args.cancel)
            state = store.get_job(args.cancel)["state"]
            print(f"job {args.cancel}: " + ({"cancelled": "cancelled (stored rows stay)",
                                              "cancelling": "cancel requested: it stops after its current step"}
                                             .get(state, state) if ok else f"{state}, nothing to cancel"))
            return 0 if ok else 1
        if args.resume:
            job = store.get_job(args.resume)
            total = job["config"].get("instructions") or store.count_instances("ok")
            fmt = _fmt_gen if job["kind"] == "generate" else _fmt_ens
            return _job_exit(_run_with_bar(store, args.resume, total, fmt), store_path=s.db)
        for j in store.list_jobs():
            err = (j["error"] or "").strip().splitlines()[:1]
            print(f"{j['id']}  {j['kind']:9} {j['state']:12} {json.dumps(j['progress'].get('stage'))} "
                  f"{err[0] if err else ''}")
    return 0


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    """Generation then ensembling on the embedded models: the whole pipeline on a small scale."""
    common = (["--db", args.db] if args.db else []) + (["--config", args.config] if args.config else [])
    rc = cmd_generate(build_parser().parse_args(["generate", "--instructions", str(args.instructions), *common]))
    if rc:
        return rc
    rc = cmd_ensemble(build_parser().parse_args(["ensemble", *common]))
    if rc:
        return rc
    return cmd_stats(build_parser().parse_args(["stats", *common]))


# ---------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="curate",
        description="Generate synthetic instruction-tuning data with a mixture of small LMs "
                    "(Ensemble-Instruct), ensemble and score it, review it, export it.")
    p.add_argument("--version", action="version", version=f"curate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--db", help="the SQLite store (default: data/curate.db, or the settings file)")
        sp.add_argument("--config", help="settings TOML file (default: $CURATE_CONFIG or ./curate.toml)")
        return sp

    sp = add("models", "list the embedded offline models, or assemble and verify them (setup)")
    sp.add_argument("action", nargs="?", choices=("list", "setup"), default="list",
                    help="list (default) or setup: assemble every embedded model into the cache and check sha256")
    sp.add_argument("names", nargs="*", help="with setup: only these models")

    sp = add("seeds", "validate a seed file and print its task counts (type A needs input, B does not)")
    sp.add_argument("--seeds", help="Self-Instruct JSONL or Alpaca JSON/JSONL (default: the shipped seeds)")

    sp = add("generate", "generate instructions and instances up to N kept instructions (resumable)")
    sp.add_argument("--instructions", "-n", type=int, required=True, metavar="N",
                    help="target number of kept instructions in the store (re-running continues to N)")
    sp.add_argument("--type", choices=("A", "B", "both"), default="both",
                    help="task type: A needs an input, B does not; both splits N like the seeds (default)")
    sp.add_argument("--models", help="generator mixture, e.g. 'smollm2-135m-instruct:2,gemma3-270m' "
                                     "(name[:weight]; HF ids, folders and openai:<model>@<url> work too)")
    sp.add_argument("--instance-models", help="mixture for instance generation (default: --models)")
    sp.add_argument("--assignment", choices=("weighted", "round_robin"), default="weighted",
                    help="how prompts are spread over the mixture")
    sp.add_argument("--seeds", help="seed task file (default: the shipped Self-Instruct seeds)")
    sp.add_argument("--seed", type=int, help="random seed (default 0)")
    sp.add_argument("--batch-size", type=int, help="prompts per model call (default 8)")
    sp.add_argument("--temperature", type=float, help="sampling temperature (default 0.7; 0 = greedy)")
    sp.add_argument("--top-k", type=int, help="top-k sampling (default 50; 0 disables)")
    sp.add_argument("--top-p", type=float, help="nucleus sampling (default 1.0)")
    sp.add_argument("--max-new-tokens", type=int, metavar="N",
                    help="new tokens per instruction completion (default 256)")
    sp.add_argument("--instance-max-new-tokens", type=int, metavar="N",
                    help="new tokens per instance completion (default 512)")
    sp.add_argument("--no-instances", action="store_true", help="stop after the instruction stage")
    sp.add_argument("--resume", metavar="JOB", help="continue this job id instead of starting a new one")

    sp = add("ensemble", "add zero-shot outputs from the ensembling models and compute consensus")
    sp.add_argument("--models", help="comma-separated ensembling models "
                                     "(default: smollm2-135m-instruct,qwen2.5-0.5b-instruct)")
    sp.add_argument("--style", choices=("chat", "reference"),
                    help="chat template where the model has one (default), or instruction\\ninput")
    sp.add_argument("--threshold", type=float, help="consensus tau: keep iff min pairwise Rouge-L > tau "
                                                    "(default 0.01)")
    sp.add_argument("--batch-size", type=int, help="prompts per model call (default 8)")
    sp.add_argument("--consensus-only", action="store_true", help="only (re)compute consensus")
    sp.add_argument("--resume", metavar="JOB", help="continue this job id")

    sp = add("consensus", "apply the consensus rule to a JSONL file (instruction, input, outputs)")
    sp.add_argument("--in", dest="input", required=True, help="input JSONL: instruction, input, outputs[]")
    sp.add_argument("--out", dest="output", required=True, help="output JSONL (written atomically)")
    sp.add_argument("--threshold", type=float, default=0.01, help="tau (default 0.01)")

    sp = add("threshold", "count the candidates that pass consensus at one or more tau (stored scores)")
    sp.add_argument("tau", type=float, nargs="+", help="thresholds to count at")

    sp = add("stats", "counts per stage, filter reason, model and review status")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("jobs", "list jobs, resume or cancel one")
    sp.add_argument("--resume", metavar="JOB", help="run this job again from where it stopped")
    sp.add_argument("--cancel", metavar="JOB", help="cancel a job: a running one stops after its current step")

    sp = add("demo", "run the pipeline that exists on the embedded models: generate, ensemble, stats")
    sp.add_argument("--instructions", "-n", type=int, default=8, help="kept instructions to reach (default 8)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get("CURATE_OFFLINE", "1") == "1":  # never reach for a model hub unless asked to
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CurateError as e:
        print(f"curate: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # pydantic validation of flags and settings
        print(f"curate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: everything stored so far is kept; run the same command again to continue.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
