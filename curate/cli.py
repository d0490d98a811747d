"""The ``curate`` command: thin shells over the library. Library errors become one-line messages here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
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


def _engine(args: argparse.Namespace) -> dict:
    """The engine fields of an LM stage's Config from ``--engine`` / ``--address`` / ``--actors``; refuses
    ``--engine ray`` at once where Ray is not installed (CurateError naming the extra)."""
    from .engine import check_engine
    fields = {"engine": args.engine, "address": args.address, "actors": args.actors}
    check_engine(**fields)
    return fields


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
    if args.action == "tune":
        return _models_tune(args)
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
          "openai:<model>@<url>[,<url>] for vLLM / llama.cpp / TGI / Ollama servers, and vllm:<model> for vLLM in "
          "this process on a GPU (pip install 'curate[vllm]'; untested on a GPU so far).")
    return 0


def _models_tune(args: argparse.Namespace) -> int:
    """`curate models tune`: measure each model's curve here and store its picks (curate.tune)."""
    from . import tune
    names = args.names or ["smollm2-135m-instruct"]
    print(f"machine: {tune.machine_key()}; picks are stored in {tune.tuning_path()}")
    for name in names:
        t = tune.tuned(name) if args.if_missing else None
        if t is not None:
            print(f"{name}: tuned already ({t.measured_at}): batch {t.batch_size}, {t.threads} threads "
                  "(run without --if-missing to measure again)")
            continue
        print(f"{name}: measuring {args.new_tokens} new tokens on ~300-token instruction prompts …", flush=True)
        t = tune.tune(name, batches=args.batches, threads=args.threads, new_tokens=args.new_tokens,
                      progress=lambda m: print(f"  {m}", flush=True))
        print(f"{name}: batch {t.batch_size}, {t.threads} threads (the smallest within "
              f"{100 * t.curve['tolerance']:.0f}% of the fastest); the default from now on on this machine")
    print(f"stages now default to {tune.default_batch_size()} prompts per model call (--batch-size overrides it)")
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


def _progress_info(p) -> str:
    """The bar's text for any stage's progress (curate.stage.describe): counts, rate, ETA."""
    from .stage import describe
    v = describe(p)
    return " | ".join(x for x in (p.unit, v.extras, v.rate if v.rate != "—" else "", f"ETA {v.eta}") if x)


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
        similarity_threshold=s.similarity_threshold, **_engine(args),
        instruction_samples=args.instruction_samples, shared_instance_demos=args.shared_instance_demos,
        **sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens, args.instance_max_new_tokens))
    with _store(s) as store:
        job_id = args.resume or start_job(store, "generate", config.model_dump(mode="json"),
                                           allow_concurrent=args.allow_concurrent)
        _console().print(f"job {job_id} → {s.db}  (Ctrl-C stops; run the same command, or "
                         f"`curate jobs --resume {job_id}`, to continue)")
        job = _run_with_bar(store, job_id)
    rc = _job_exit(job, store_path=s.db)
    if args.profile:
        _print_profile(job)
    return rc


def _print_profile(job: dict) -> None:
    """The run's profile (curate.profile): exclusive seconds per phase, from the job's result."""
    from .profile import format_profile
    result = (job.get("progress") or {}).get("result") or {}
    if not result.get("profile"):
        print("no profile: the run did not finish (a stopped or failed run has none)", file=sys.stderr)
        return
    print("\nprofile of this run (exclusive wall seconds per phase; prefill/decode from in-process models):")
    print(format_profile(result["profile"]))
    wall = sum(result["profile"].values())
    if wall > 0:
        print(f"kept candidates: {result.get('kept_candidates', 0)} in {wall:.1f} s "
              f"({60 * result.get('kept_candidates', 0) / wall:.2f} per minute), "
              f"{result.get('tokens', 0)} tokens generated")


def _run_with_bar(store, job_id: str) -> dict:
    """Run a job in the foreground with one progress bar, the same for every stage: the phase, done / total
    of the phase, and its counts, rate and ETA."""
    from .jobs import run_job
    with _progress_bar(None) as bar:
        task = bar.add_task("starting", total=None, info="loading models…")

        def on_progress(p) -> None:
            bar.update(task, completed=p.done or 0, total=p.total, description=p.phase, info=_progress_info(p))
        return run_job(store, job_id, on_progress=on_progress)


def _job_exit(job: dict, store_path) -> int:
    state = job["state"]
    if state == "failed":
        error = (job.get("error") or "").strip()
        if "Traceback (most recent call last)" in error:  # a bug: its first line here, the rest in `curate jobs`
            error = error.splitlines()[0]
        print(f"curate: error: job {job['id']} failed: {error or '?'}", file=sys.stderr)
        return 1
    for w in job["progress"].get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    print(f"job {job['id']}: {state}. `curate stats --db {store_path}` shows the counts.")
    return 0


@command("ensemble")
def cmd_ensemble(args: argparse.Namespace) -> int:
    from .ensemble import EnsembleConfig
    from .jobs import start_job
    s = _settings(args, consensus_threshold=args.threshold, batch_size=args.batch_size)
    config = EnsembleConfig(models=args.models.split(",") if args.models else s.ensemble_models,
                            prompt_style=args.style or s.ensemble_prompt_style, threshold=s.consensus_threshold,
                            batch_size=s.batch_size, consensus_only=args.no_generate, workers=args.workers,
                            **_engine(args))
    with _store(s) as store:
        job_id = args.resume or start_job(store, "ensemble", config.model_dump(mode="json"),
                                           allow_concurrent=args.allow_concurrent)
        job = _run_with_bar(store, job_id)
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
    from . import checks
    taus = [checks.tau(t, "curate threshold") for t in args.tau]  # every one checked before anything prints
    s = _settings(args)
    with _store(s) as store:
        for tau in taus:
            c = store.count_passing(tau)
            print(f"tau={tau:<6} passing {c['passing']:>7} of {c['scored']}")
    return 0


@command("agreement")
def cmd_agreement(args: argparse.Namespace) -> int:
    from .agreement import describe
    from .review import agreement_of
    s = _settings(args)
    with _store(s) as store:
        ag = agreement_of(store)
    if args.json:
        print(json.dumps(ag, indent=2, ensure_ascii=False))
        return 0
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    o = ag["overall"]
    if not ag["pairs"]:
        print("no candidate has two reviews yet: agreement needs overlap (reviews_per_candidate >= 2)")
        return 0
    print(f"{'reviewer':16} {'with':16} {'shared':>7} {'agree':>6} {'kappa':>7}  in words")
    for p in ag["pairs"]:
        print(f"{p['a']:16} {p['b']:16} {p['shared']:>7} {p['agree']:>6} {fmt(p['kappa']):>7}  {describe(p['kappa'])}")
    print(f"Fleiss' kappa {fmt(o['kappa'])} ({describe(o['kappa'])}) over {o['items']} candidates with "
          f"{o['raters_per_item']} reviews each; {ag['items_with_overlap']} candidates have 2 or more reviews. "
          "Labels: accept vs reject (an edit counts as accept).")
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
                        ("candidates (ok / auto-filtered by reason)", st["candidates"]),
                        ("unparseable completions", st["unparseable"]),
                        ("ensemble outputs by model", st["outputs_by_model"]),
                        ("consensus by reason", st["consensus"]), ("review status", st["reviews"]),
                        ("imported by source (candidates / outputs)",
                         {k: f"{v['candidates']:,} / {v['outputs']:,}" for k, v in st["imported"].items()}),
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
            return _job_exit(_run_with_bar(store, args.resume), store_path=s.db)
        from .stage import describe
        for j in store.list_jobs():
            v = describe(j["progress"], j["state"])
            err = (j["error"] or "").strip().splitlines()[:1]
            print(f"{j['id']}  {j['kind']:9} {j['state']:12} {v.phase}: {v.counts or '-'}"
                  f"{'  ' + err[0] if err else ''}")
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


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import ExportError
    from .export import export
    s = _settings(args, consensus_threshold=args.tau)
    if str(s.db) != ":memory:" and not Path(s.db).expanduser().is_file():
        raise ExportError(f"no store at {s.db}: run `curate generate` first, or pass --db PATH")
    with _store(s) as store:
        r = export(store, args.format, args.out, include=args.include or ("accepted",), tau=s.consensus_threshold,
                   system=args.system, provenance=args.provenance, selection=args.selection, force=args.force,
                   invalid_text=args.invalid_text)
    counts = ", ".join(f"{k} {v}" for k, v in r.counts.items() if v)
    print(f"wrote {r.rows} rows ({counts}) as {r.format} to {r.path}")
    for name, size in r.files:
        print(f"  {name:28} {size:>12,} bytes")
    print(f"  {'total':28} {r.bytes:>12,} bytes")
    for seq, name in r.repaired:
        print(f"warning: candidate seq {seq}: invalid UTF-8 in its {name} replaced with U+FFFD", file=sys.stderr)
    return 0


@command("import")
def cmd_import(args: argparse.Namespace) -> int:
    from .importer import ImportConfig, parse_mapping
    from .jobs import start_job
    s = _settings(args)
    config = ImportConfig(source=args.source, format=args.format, mapping=parse_mapping(args.map), name=args.name,
                          license=args.license, split=args.split, limit=args.limit, as_outputs=args.as_outputs,
                          model=args.model, skip_bad=args.skip_bad, batch_size=args.batch_size)
    with _store(s) as store:
        job_id = args.resume or start_job(store, "import", config.model_dump(mode="json"))
        _console().print(f"job {job_id} → {s.db}  (a stopped or killed import completes when you run the same "
                         "command again)")
        job = _run_with_bar(store, job_id)
        rc = _job_exit(job, store_path=s.db)
        r = job["progress"].get("result")
        if r:
            _print_import(r, store.import_rejects(r["import_id"], limit=5))
    return rc


def _print_import(r: dict, rejects: list[dict]) -> None:
    """The summary of one import (its job's result) and its first rejects."""
    def more(*pairs: tuple[int, str]) -> str:
        parts = [f"{n:,} {what}" for n, what in pairs if n]
        return f" ({'; '.join(parts)})" if parts else ""
    if r["already_imported"]:
        print(f"{r['location']} was imported before as {r['source']!r} (import {r['import_id'][:12]}): nothing to add")
    elif r["kind"] == "candidates":
        print(f"imported {r['source']!r}: {r['read']:,} rows read, {r['added']:,} candidates added"
              + more((r["existing"], "already stored"), (r["duplicates"], "duplicate rows in the file, stored once"),
                     (r["rejected"], "rejected"), (r["multi_turn_cut"], "multi-turn conversations cut to their "
                                                                        "first exchange")))
    else:
        who = r["model"] or "the models of the generator column"
        print(f"imported outputs of {who} from {r['source']!r}: {r['read']:,} rows read, {r['matched']:,} match a "
              f"candidate, {r['added']:,} outputs added"
              + more((r["existing"], "already stored"), (r["duplicates"], "duplicate rows in the file"),
                     (r["unmatched"], "rows match no candidate's instruction + input"),
                     (r["own_generator"], "skipped: the candidate's own generator"), (r["rejected"], "rejected"),
                     (r["multi_turn_cut"], "multi-turn conversations cut to their first exchange")))
    print(f"format {r['format']}, --map {r['mapping']}")
    for x in rejects:
        print(f"  {x['kind']}: {x['reason']}")
    if r["rejected"] + r["unmatched"] > len(rejects):
        print(f"  (`curate imports --rejects {r['source']}` lists all {r['rejected'] + r['unmatched']:,})")


@command("imports")
def cmd_imports(args: argparse.Namespace) -> int:
    s = _settings(args)
    with _store(s) as store:
        if args.rejects:
            rows = store.import_rejects(source=args.rejects, limit=args.limit)
            if args.json:
                print(json.dumps(rows, indent=2, ensure_ascii=False))
                return 0
            for x in rows:
                print(f"{x['location']}  {x['kind']:9} {x['reason']}")
            if not rows:
                print(f"no rejected rows stored for {args.rejects!r} (rejects are kept by imports run with "
                      "--skip-bad, and for outputs that match no candidate)")
            return 0
        sources, imports = store.list_sources(), store.list_imports(limit=args.limit)
    if args.json:
        print(json.dumps({"sources": sources, "imports": imports}, indent=2, ensure_ascii=False, default=str))
        return 0
    for src in sources:
        print(f"{src['name']}  licence {src['license']}: {src['candidates']:,} candidates, {src['outputs']:,} "
              f"outputs; {', '.join(src['locations']) or 'no finished import'}")
    for imp in imports:
        c = imp["counts"]
        print(f"  {imp['id'][:12]} {imp['state']:8} {imp['kind']:10} {imp['source']} ← {imp['location']} "
              f"({imp['format']}; read {c.get('read', 0):,}, added {c.get('added', 0):,}, rejected "
              f"{c.get('rejected', 0):,}, unmatched {c.get('unmatched', 0):,})")
    if not sources:
        print("nothing imported yet: `curate import FILE` imports a dataset")
    return 0


@command("score")
def cmd_score(args: argparse.Namespace) -> int:
    from .jobs import start_job
    s = _settings(args, quality_scorer=args.scorer)
    with _store(s) as store:
        job_id = start_job(store, "score", {"scorer": s.quality_scorer, "limit": args.limit,
                                            "batch_size": args.batch_size, **_engine(args)})
        job = _run_with_bar(store, job_id)
    rc = _job_exit(job, store_path=s.db)
    r = job["progress"].get("result")
    if r:
        print(f"{r['scorer']} ({r['label']}): {r['scored']} outputs scored, {r['unscored']} unscored "
              "(reason stored); outputs scored before were skipped")
        if args.engine == "ray" and r.get("engine") == "local":
            print(f"note: {r['scorer']} reads the store, so it scored in this process, not on the Ray actors")
    return rc


@command("teachers")
def cmd_teachers(args: argparse.Namespace) -> int:
    from .teachers import format_mixture, mixture_weights_from_car, teacher_ranking
    from .quality import scorer_name
    s = _settings(args, car_beta=args.beta, student_model=args.student, quality_scorer=args.scorer)
    label = None
    with _store(s) as store:
        if not args.stored:
            from .jobs import start_job
            job = _run_with_bar(store, start_job(store, "teachers", {
                "student": s.student_model, "scorer": s.quality_scorer, "limit": args.limit,
                "batch_size": args.batch_size, **_engine(args)}))
            if job["state"] != "done":
                return _job_exit(job, store_path=s.db)
            done = job["progress"]["result"]
            label = done["label"]
            _console().print(f"{done['outputs']} sampled outputs: {done['nll_computed']} student losses and "
                             f"{done['rewards_computed']} rewards computed now ({done['unscored']} unscored), "
                             f"the rest were stored; {done['seconds']:.1f}s")
        ranking = teacher_ranking(store, s.student_model, s.quality_scorer, s.car_beta, limit=args.limit)
    if args.json:
        print(json.dumps(ranking, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table
    name = scorer_name(s.quality_scorer)
    label = label or ("proxy (consensus agreement), not a reward model" if name.startswith("proxy:") else name)
    table = Table(title=f"Teachers for student {s.student_model}: CAR = reward / (1 + {s.car_beta:g} x loss)")
    for col in ("type", "rank", "teacher", "n", "reward", "loss", "CAR", "unscored"):
        table.add_column(col, no_wrap=col == "teacher", justify="left" if col in ("type", "teacher") else "right")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for r in ranking:
        table.add_row(r["task_type"], str(r["rank"]), r["model"], str(r["n"]), fmt(r["reward"]), fmt(r["loss"]),
                      fmt(r["car"]), str(r["unscored"]))
    if not ranking:
        table.add_row("-", "-", "(nothing scored yet: run without --stored)", "", "", "", "", "")
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    print(f"reward: {name} = {label}\nloss: the student's mean per-token NLL of each teacher's responses\n"
          f"beta = {s.car_beta:g} (the car_beta setting; the paper's value is not confirmed)")
    try:
        print(f"mixture weighted by CAR (all types): --models '{format_mixture(mixture_weights_from_car(ranking))}'")
    except CurateError as e:
        print(f"no CAR mixture: {e}")
    return 0


@command("embed")
def cmd_embed(args: argparse.Namespace) -> int:
    from .jobs import start_job
    from .lm.registry import DEFAULT_EMBEDDER
    s = _settings(args)
    tau = s.consensus_threshold if args.tau is None else args.tau
    with _store(s) as store:
        job = _run_with_bar(store, start_job(store, "embed", {
            "model": args.model or DEFAULT_EMBEDDER, "source": args.source, "tau": tau,
            "batch_size": args.batch_size, **_engine(args)}))
    rc = _job_exit(job, store_path=s.db)
    st = job["progress"].get("result")
    if st:
        print(f"{st['model']}: {st['computed']} embedded now, {st['cached']} were cached "
              f"(pool --from {args.source}: {st['cached'] + st['computed']} candidates)")
    return rc


def _embed_progress():
    """A rich progress bar on stderr and the ``progress(done, total)`` callback of embedding that drives it."""
    bar = _progress_bar(0)
    task = bar.add_task("embedding", total=None, info="")

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
    return bar, progress


@command("select")
def cmd_select(args: argparse.Namespace) -> int:
    from .select import run_selection
    s = _settings(args)
    tau = s.consensus_threshold if args.tau is None else args.tau
    with _store(s) as store:
        bar, progress = _embed_progress()
        with bar:
            run = run_selection(store, k=args.k, alpha=args.alpha, source=args.source, tau=tau,
                                quality=args.quality, name=args.name, model=args.model, seed=args.seed,
                                epsilon=args.stochastic, progress=progress)
    p, rep = run.params, run.report
    print(f"selection {run.name!r}: {rep['k']} of {rep['n']} candidates (--from {p['source']}), alpha={p['alpha']:g}, "
          f"embeddings {p['model']} ({run.embedding_stats['computed']} embedded now)")
    if args.stochastic is not None:
        print(f"APPROXIMATE: stochastic greedy, epsilon={args.stochastic:g}, seed={args.seed} (each pick the best of "
              "a random sample; leave out --stochastic for the exact greedy)")
    print(f"quality: {p['quality']}, min-max scaled to [0, 1] over the pool")
    print(f"{'method':14} {'mean quality':>12} {'coverage F/n':>13} {'mean pairwise cos':>18}")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for r in rep["rows"]:
        print(f"{r['method']:14} {fmt(r['mean_quality']):>12} {fmt(r['coverage']):>13} {fmt(r['mean_pairwise']):>18}")
    print("coverage = mean over the pool of the cosine to the nearest selected (higher: better represented); "
          "mean pairwise cos within the selection (lower: more diverse). Stored in the selections table.")
    return 0


@command("dups")
def cmd_dups(args: argparse.Namespace) -> int:
    from .select import find_duplicates
    s = _settings(args)
    tau = s.consensus_threshold if args.tau is None else args.tau
    with _store(s) as store:
        groups = find_duplicates(store, args.threshold, source=args.source, tau=tau, quality=args.quality,
                                 model=args.model)
    if args.json:
        print(json.dumps(groups, indent=2, ensure_ascii=False))
        return 0
    cut = lambda t: " ".join(t.split())[:100]  # noqa: E731
    for n, g in enumerate(groups[:args.limit], 1):
        print(f"group {n} ({len(g['members'])} candidates)")
        for m in g["members"]:
            q = "-" if m["quality"] is None else f"{m['quality']:.3f}"
            print(f"  {'keep' if m['keep'] else '    '} {m['id'][:12]} q={q:>6}  {cut(m['instruction'])}")
    dropped = sum(len(g["members"]) - 1 for g in groups)
    more = f" (first {args.limit} shown)" if len(groups) > args.limit else ""
    print(f"{len(groups)} near-duplicate groups at cosine >= {args.threshold:g}{more}: keeping the best-scored of "
          f"each would drop {dropped} candidates")
    return 0


@command("evalsets")
def cmd_evalsets(args: argparse.Namespace) -> int:
    from .evaluate import list_evalsets
    rows = list_evalsets()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':15} {'rows':>5}  {'references':10}  {'licence':30} title")
    for r in rows:
        print(f"{r['name']:15} {r['rows']:>5}  {'yes' if r['references'] else 'no (judge)':10}  {r['licence']:30} "
              f"{r['title']}" + (f" — {r['note']}" if r["note"] else ""))
    print("Evaluation only: never train on these (the contamination guard drops training rows that match them). "
          "Any JSONL with instruction, input, reference(s) works too: --set FILE.")
    return 0


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .jobs import start_job
    s = _settings(args)
    with _store(s) as store:
        if args.list:
            for r in store.list_evaluations():
                means = ", ".join(f"{m} {v['mean']:.2f}" for m, v in r["metrics"].items() if v["mean"] is not None)
                print(f"{r['id']}  {r['evalset']:15} {r['model'] or '(predictions file)':28} n={r['n']:<4} {means}")
            return 0
        job = _run_with_bar(store, start_job(store, "evaluate", {
            "evalset": args.set, "model": args.model, "predictions": args.predictions, "limit": args.limit,
            "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "judge": args.judge,
            "against": args.against, "out": args.out, "resamples": args.resamples, "seed": args.seed}))
        if job["state"] != "done":
            return _job_exit(job, store_path=s.db)
        report = store.get_evaluation(job["progress"]["result"]["run"])
    print(f"run {report['run_id']}: {report['evalset']}, {report['n']} rows, model {report['model'] or '(predictions)'}"
          + (f", prompt: {report['prompt_style']}" if report["prompt_style"] else ""))
    for m, v in report["metrics"].items():
        ci = f"  95% CI [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]" if v["ci"] else ""
        mean = "-" if v["mean"] is None else f"{v['mean']:.2f}"
        print(f"  {m:12} {mean:>7}{ci}  (n={v['n']}{', ' + str(v['missing']) + ' unscored' if v['missing'] else ''})")
    if args.out:
        print(f"report: {args.out}")
    return 0


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from .jobs import start_job
    s = _settings(args)
    tau = s.consensus_threshold if args.tau is None else args.tau
    config = {"base": args.base, "source": args.source, "out": args.out, "tau": tau, "limit": args.limit,
              "full": args.full, "epochs": args.epochs, "max_steps": args.max_steps, "learning_rate": args.lr,
              "batch_size": args.batch_size, "grad_accum": args.grad_accum, "max_length": args.max_length,
              "save_steps": args.save_steps, "seed": args.seed, "lora_r": args.lora_r,
              "gradient_checkpointing": args.gradient_checkpointing}
    with _store(s) as store:
        job = _run_with_bar(store, args.resume or start_job(store, "train", config))
    rc = _job_exit(job, store_path=s.db)
    r = job["progress"].get("result")
    if r and job["state"] == "done":
        print(f"trained {r['base']} ({'LoRA, merged' if r['lora'] else 'all weights'}) on {r['kept']} rows "
              f"({r['rows'] - r['kept']} dropped as contaminated) for {r['steps']} steps, loss {r['train_loss']:.4f}: "
              f"{args.out} (`curate evaluate --model {args.out} --set sni-sample`)")
    return rc


@command("experiment")
def cmd_experiment(args: argparse.Namespace) -> int:
    from .jobs import start_job
    s = _settings(args)
    config = {"base": args.base, "evalset": args.set, "budget": args.budget, "arms": args.arms, "seeds": args.seeds,
              "out": args.out, "eval_limit": args.eval_limit, "max_new_tokens": args.max_new_tokens,
              "epochs": args.epochs, "max_steps": args.max_steps, "learning_rate": args.lr,
              "batch_size": args.batch_size, "max_length": args.max_length, "full": args.full,
              "keep_models": args.keep_models, "gradient_checkpointing": args.gradient_checkpointing}
    with _store(s) as store:
        job = _run_with_bar(store, args.resume or start_job(store, "experiment", config))
    rc = _job_exit(job, store_path=s.db)
    if job["state"] == "done":
        table = json.loads(Path(job["progress"]["result"]["report"]).read_text(encoding="utf-8"))
        print(format_experiment(table))
    return rc


def format_experiment(table: dict) -> str:
    """The experiment's table as text: mean [95% CI] per metric, and the difference from random with p."""
    lines = [f"{table['evalset']}, student {table['base']}, {table['budget']} training rows per arm"]
    lines.append(f"{'arm':24} {'rows':>5} {'seeds':>5}"
                 + "".join(f" {m + ' [95% CI]':>24} {'vs random (p)':>16}" for m in table["metrics"]))
    for r in table["rows"]:
        cells = ""
        for m in table["metrics"]:
            v, vs = r[m], r[m].get("vs_random")
            ci = f" [{v['ci'][0]:.1f}, {v['ci'][1]:.1f}]" if v.get("ci") else ""
            mean = "-" if v["mean"] is None else f"{v['mean']:.2f}"
            delta = f"{vs['delta']:+.2f} ({vs['p']:.3f})" if vs else ""
            cells += f" {mean + ci:>24} {delta:>16}"
        lines.append(f"{r['arm']:24} {r['train_rows']:>5} {r['seeds']:>5}{cells}")
    lines += [f"note: {n}" for n in table["notes"]]
    lines.append("A curated arm that does not beat random is a finding, not a failure: the intervals say how sure.")
    return "\n".join(lines)


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

    def engine_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="where the model calls run: this process (local, default) or a Ray cluster (ray; "
                             "pip install 'curate[ray]'; docs/RAY.md). The stored rows are the same")
        sp.add_argument("--address", help="with --engine ray: the cluster, auto (the one `ray start` started) or "
                                          "ray://host:port (default: start Ray on this machine)")
        sp.add_argument("--actors", type=int, metavar="N",
                        help="with --engine ray: model-holding actors (default: one per CPU, at most 8)")

    sp = add("models", "list the embedded offline models, assemble and verify them (setup), or measure this "
                       "machine's best batch size and threads for them (tune)")
    sp.add_argument("action", nargs="?", choices=("list", "setup", "tune"), default="list",
                    help="list (default); setup: assemble every embedded model into the cache and check sha256; "
                         "tune: measure tokens/s by batch size and threads, store the fastest as this machine's "
                         "defaults (~/.cache/curate/tuning.json)")
    sp.add_argument("names", nargs="*", help="with setup: only these models; with tune: the models to tune "
                                             "(default smollm2-135m-instruct; any transformers model spec)")
    sp.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], metavar="B",
                    help="with tune: the batch sizes measured (default 1 2 4 8 16 32)")
    sp.add_argument("--threads", type=int, nargs="+", metavar="T",
                    help="with tune: the thread counts measured at the best batch (default 1, half and all CPUs)")
    sp.add_argument("--new-tokens", type=int, default=32, metavar="N",
                    help="with tune: new tokens per prompt in each probe (default 32)")
    sp.add_argument("--if-missing", action="store_true",
                    help="with tune: skip a model already tuned on this machine")

    sp = add("seeds", "validate a seed file and print its task counts (type A needs input, B does not)")
    sp.add_argument("--seeds", help="Self-Instruct JSONL or Alpaca JSON/JSONL (default: the shipped seeds)")

    sp = add("generate", "generate instructions and instances up to N kept instructions (resumable)")
    sp.add_argument("--instructions", "-n", type=int, required=True, metavar="N",
                    help="target number of kept instructions in the store (re-running continues to N)")
    sp.add_argument("--type", choices=("A", "B", "both"), default="both",
                    help="task type: A needs an input, B does not; both splits N like the seeds (default)")
    sp.add_argument("--models", help="generator mixture, e.g. 'smollm2-135m-instruct:2,gemma3-270m' "
                                     "(name[:weight]; HF ids, folders, openai:<model>@<url> and vllm:<model> work too)")
    sp.add_argument("--instance-models", help="mixture for instance generation (default: --models)")
    sp.add_argument("--assignment", choices=("weighted", "round_robin"), default="weighted",
                    help="how prompts are spread over the mixture")
    sp.add_argument("--seeds", help="seed task file (default: the shipped Self-Instruct seeds)")
    sp.add_argument("--seed", type=int, help="random seed (default 0)")
    sp.add_argument("--batch-size", type=int,
                    help="prompts per model call (default 8, or this machine's `curate models tune` pick)")
    sp.add_argument("--temperature", type=float, help="sampling temperature (default 0.7; 0 = greedy)")
    sp.add_argument("--top-k", type=int, help="top-k sampling (default 50; 0 disables)")
    sp.add_argument("--top-p", type=float, help="nucleus sampling (default 1.0)")
    sp.add_argument("--max-new-tokens", type=int, metavar="N",
                    help="new tokens per instruction completion (default 256)")
    sp.add_argument("--instance-max-new-tokens", type=int, metavar="N",
                    help="new tokens per instance completion (default 512)")
    sp.add_argument("--no-instances", action="store_true", help="stop after the instruction stage")
    sp.add_argument("--instruction-samples", type=int, default=1, metavar="K",
                    help="completions per instruction prompt: K prompts of a batch share one demo draw, so its "
                         "demo block is prefilled once (default 1: each prompt its own draw, as in the paper)")
    sp.add_argument("--profile", action="store_true",
                    help="print where the run's time went: prompt building, prefill, decode, parsing, filtering, "
                         "store writes")
    sp.add_argument("--shared-instance-demos", action="store_true",
                    help="one instance demo block per task type for the run instead of a fresh draw per "
                         "instruction: the block is prefilled once and cached (faster; less varied demos)")
    engine_args(sp)
    sp.add_argument("--resume", metavar="JOB", help="continue this job id instead of starting a new one")
    sp.add_argument("--allow-concurrent", action="store_true",
                    help="start even while another job of this kind is active on the store (refused otherwise)")

    sp = add("ensemble", "add zero-shot outputs from the ensembling models and compute consensus")
    sp.add_argument("--models", help="comma-separated ensembling models "
                                     "(default: smollm2-135m-instruct,qwen2.5-0.5b-instruct)")
    sp.add_argument("--style", choices=("chat", "reference"),
                    help="chat template where the model has one (default), or instruction\\ninput")
    sp.add_argument("--threshold", type=float, help="consensus tau: keep iff min pairwise Rouge-L > tau "
                                                    "(default 0.01)")
    sp.add_argument("--batch-size", type=int,
                    help="prompts per model call (default 8, or this machine's `curate models tune` pick)")
    sp.add_argument("--no-generate", action="store_true",
                    help="run no model: only (re)compute consensus over the stored outputs (e.g. imported with "
                         "`curate import --as-outputs`)")
    engine_args(sp)
    sp.add_argument("--workers", type=int, metavar="N",
                    help="processes for the consensus rule when at least 5,000 candidates need it (default: one "
                         "per CPU; 1: none besides curate's own)")
    sp.add_argument("--resume", metavar="JOB", help="continue this job id")
    sp.add_argument("--allow-concurrent", action="store_true",
                    help="start even while another job of this kind is active on the store (refused otherwise)")

    sp = add("consensus", "apply the consensus rule to a JSONL file (instruction, input, outputs)")
    sp.add_argument("--in", dest="input", required=True, help="input JSONL: instruction, input, outputs[]")
    sp.add_argument("--out", dest="output", required=True, help="output JSONL (written atomically)")
    sp.add_argument("--threshold", type=float, default=0.01, help="tau (default 0.01)")

    sp = add("threshold", "count the candidates that pass consensus at one or more tau (stored scores)")
    sp.add_argument("tau", type=float, nargs="+", help="thresholds to count at")

    sp = add("agreement", "agreement between reviewers on accept vs reject: Cohen's kappa per pair, Fleiss' "
                          "kappa overall, with the shared candidates")
    sp.add_argument("--json", action="store_true", help="print the numbers as JSON")

    sp = add("stats", "counts per stage, filter reason, model and review status")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("jobs", "list jobs, resume or cancel one")
    sp.add_argument("--resume", metavar="JOB", help="run this job again from where it stopped")
    sp.add_argument("--cancel", metavar="JOB", help="cancel a job: a running one stops after its current step")

    sp = add("demo", "run the pipeline that exists on the embedded models: generate, ensemble, stats")
    sp.add_argument("--instructions", "-n", type=int, default=8, help="kept instructions to reach (default 8)")

    from .export import FORMATS, INCLUDES, PROVENANCE
    sp = add("export", "write the curated set (accepted / edited by default) for fine-tuning, with a dataset card")
    sp.add_argument("--format", required=True, choices=tuple(FORMATS),
                    help="; ".join(f"{n}: {f.description}" for n, f in FORMATS.items()))
    sp.add_argument("--out", required=True, metavar="FOLDER",
                    help="the export folder: the data file, README.md (the dataset card) and any sidecar; "
                         "written under a temporary name and renamed into place")
    sp.add_argument("--include", nargs="+", choices=INCLUDES, metavar="SOURCE",
                    help="which candidates, any of: accepted (default; accepted or edited, the edited text wins), "
                         "passing (consensus passes at --tau), selection (a stored QDIT selection); a "
                         "reviewer's reject always wins")
    sp.add_argument("--tau", type=float, help="consensus threshold for --include passing (default: the "
                                              "consensus_threshold setting, 0.01)")
    sp.add_argument("--selection", metavar="NAME", help="with --include selection: which stored selection "
                                                        "(default: the latest)")
    sp.add_argument("--system", metavar="TEXT", help="a system prompt for every row (sharegpt and messages only)")
    sp.add_argument("--provenance", choices=PROVENANCE, default="none",
                    help="none (default; plain training rows), field (a metadata object in every row) or "
                         "sidecar (data.provenance.jsonl beside the data, one line per row with its index and id)")
    sp.add_argument("--force", action="store_true", help="replace an existing export folder (a folder holding "
                                                         "other files is never replaced)")
    sp.add_argument("--invalid-text", choices=("error", "replace"), default="error",
                    help="text that is not valid UTF-8 in the store: error (default; names the candidate) or "
                         "replace (each invalid byte becomes U+FFFD; the card lists the rows)")

    from .importer import FORMAT_HELP
    sp = add("import", "import a dataset (JSON, JSONL, CSV, Parquet, a datasets folder, a Hub id) as candidates, "
                       "or other models' outputs for stored candidates (--as-outputs)")
    sp.add_argument("source", metavar="SOURCE",
                    help="a .json / .jsonl / .csv / .tsv / .parquet file, a datasets save_to_disk folder, or a Hub "
                         "dataset id (needs a network: set CURATE_OFFLINE=0)")
    sp.add_argument("--format", choices=tuple(FORMAT_HELP), default="auto",
                    help="; ".join(f"{k}: {v}" for k, v in FORMAT_HELP.items()))
    sp.add_argument("--map", action="append", metavar="FIELD=COLUMN[,…]",
                    help="which column holds each field: instruction, input, output, system, generator (the model "
                         "of --as-outputs rows), conversations or text, e.g. --map instruction=prompt,input=,"
                         "output=response ('input=': no input column)")
    sp.add_argument("--name", help="the source name: the generator of its candidates, named in provenance and the "
                                   "dataset card (default: the file's stem, the folder's or the Hub id's name)")
    sp.add_argument("--license", metavar="SPDX", help="the data's licence as an SPDX id (e.g. CC-BY-NC-4.0), "
                                                      "recorded with the source and written in the dataset card")
    sp.add_argument("--split", help="the split of a datasets folder or Hub dataset with several (e.g. train)")
    sp.add_argument("--limit", type=int, metavar="N", help="import only the first N records")
    sp.add_argument("--as-outputs", action="store_true",
                    help="attach each row's output to the stored candidates with the same instruction and input "
                         "(other models' outputs, e.g. AlpacaEval's model_outputs.json); rows matching nothing "
                         "are reported")
    sp.add_argument("--model", help="with --as-outputs: the model that wrote the outputs (default: each row's "
                                    "generator column)")
    sp.add_argument("--skip-bad", action="store_true",
                    help="import the good rows and store the bad ones with their reasons (default: any bad row "
                         "imports nothing and lists every bad row)")
    sp.add_argument("--batch-size", type=int, default=10_000, help="rows read and staged per step (default 10000)")
    sp.add_argument("--resume", metavar="JOB", help="continue this import job id")

    sp = add("imports", "list the imported sources and imports, or the rows an import rejected")
    sp.add_argument("--rejects", metavar="SOURCE", help="list the rejected rows (and outputs matching no candidate) "
                                                        "of this source's imports")
    sp.add_argument("--limit", type=int, default=100, help="at most N rows (default 100)")
    sp.add_argument("--json", action="store_true", help="print JSON")

    scorer_help = ("quality scorer: rm:<HF id or folder> (a reward model), judge:openai:<model>@<url> or "
                   "judge:<model spec> (an LLM judge, 1-10), proxy:consensus (default; agreement, not a reward model)")
    sp = add("score", "score every ensemble output with a quality scorer (stored; re-runs skip scored outputs)")
    sp.add_argument("--scorer", help=scorer_help)
    sp.add_argument("--limit", type=int, help="only the outputs of a deterministic sample of N candidates")
    sp.add_argument("--batch-size", type=int, default=8, help="outputs per scorer call (default 8)")
    engine_args(sp)

    sp = add("teachers", "rank the mixture's models as teachers for a student by CAR, per task type")
    sp.add_argument("--student", help="the student model spec (default smollm2-135m-instruct; any model spec)")
    sp.add_argument("--scorer", help=scorer_help)
    sp.add_argument("--beta", type=float, help="beta of CAR = reward / (1 + beta * loss) (default 1.0; the "
                                               "paper's value is not confirmed)")
    sp.add_argument("--limit", type=int, help="a deterministic sample of N candidates (default: all)")
    sp.add_argument("--batch-size", type=int, default=8, help="outputs per student loglik call (default 8)")
    sp.add_argument("--stored", action="store_true", help="rank from stored numbers only; compute nothing")
    engine_args(sp)
    sp.add_argument("--json", action="store_true", help="print the ranking as JSON")

    from .select import QUALITY_HELP

    def pool_args(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("--from", dest="source", choices=("accepted", "passing", "all"), default=default,
                        help=f"the pool: accepted (accepted/edited in review), passing (consensus passes tau) "
                             f"or all OK candidates (default {default})")
        sp.add_argument("--tau", type=float, help="consensus threshold for --from passing (default: the setting)")
        sp.add_argument("--model", help="embedding model: all-minilm-l6-v2 (default, 384-d), all-mpnet-base-v2 "
                                        "(the QDIT paper's, 768-d), or a sentence-transformers folder / HF id")

    sp = add("embed", "embed the instruction + input of the pool's candidates (cached in the store; "
                      "`select` also embeds what is missing)")
    pool_args(sp, "all")
    sp.add_argument("--batch-size", type=int, default=64, help="texts per embedding batch (default 64)")
    engine_args(sp)

    sp = add("select", "pick a quality-diverse subset by greedy QDIT and store it as a named selection")
    sp.add_argument("--k", type=int, required=True, help="how many candidates to select")
    sp.add_argument("--alpha", type=float, default=0.7,
                    help="quality weight in [0, 1]: 0 = pure diversity (facility location), 1 = quality order "
                         "(default 0.7)")
    pool_args(sp, "passing")
    sp.add_argument("--quality", default="consensus", help=f"quality q: {QUALITY_HELP}")
    sp.add_argument("--name", default="qdit", help="selection name (default qdit; re-using a name replaces it)")
    sp.add_argument("--seed", type=int, default=0,
                    help="seed of the random baseline and of --stochastic's samples (default 0)")
    sp.add_argument("--stochastic", type=float, metavar="EPS",
                    help="APPROXIMATE, for large pools: the stochastic greedy of Mirzasoleiman et al. 2015 "
                         "(each pick the best of (n/k)·ln(1/EPS) random candidates; EPS in (0, 1), e.g. 0.01; "
                         "about one similarity pass instead of several). Default: the exact greedy")

    sp = add("dups", "list groups of near-duplicate instructions (cosine of embeddings >= threshold)")
    sp.add_argument("--threshold", type=float, default=0.95, help="cosine threshold in (0, 1] (default 0.95)")
    pool_args(sp, "all")
    sp.add_argument("--quality", default="consensus", help=f"which member to keep (the best): {QUALITY_HELP}")
    sp.add_argument("--limit", type=int, default=50, help="groups to print (default 50)")
    sp.add_argument("--json", action="store_true", help="print every group as JSON")
    sp = add("train", "fine-tune a student on the curated set (TRL SFT, loss on the response only; LoRA by "
                      "default), resumable; the output folder is a transformers model")
    sp.add_argument("--base", default="smollm2-135m-instruct", help="the student model (embedded name, folder or "
                                                                    "HF id; default smollm2-135m-instruct)")
    sp.add_argument("--from", dest="source", default="accepted",
                    help="accepted (default), passing, selection:NAME, or an export folder (curate export)")
    sp.add_argument("--out", required=True, metavar="FOLDER", help="where the trained model goes (LoRA merged)")
    sp.add_argument("--tau", type=float, help="consensus threshold for --from passing (default: the setting)")
    sp.add_argument("--limit", type=int, help="train on the first N rows only")
    sp.add_argument("--full", action="store_true", help="train all weights instead of LoRA adapters")
    sp.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default 16)")
    sp.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default 1)")
    sp.add_argument("--max-steps", type=int, help="stop after N optimizer steps (overrides --epochs)")
    sp.add_argument("--lr", type=float, help="learning rate (default 2e-4 with LoRA, 2e-5 with --full)")
    sp.add_argument("--batch-size", type=int, default=4, help="examples per step (default 4)")
    sp.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    sp.add_argument("--max-length", type=int, default=512, help="tokens per example; longer ones are cut "
                                                                "(default 512)")
    sp.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (the resume point)")
    sp.add_argument("--gradient-checkpointing", action="store_true",
                    help="recompute activations in the backward pass: less memory, about a third more compute")
    sp.add_argument("--seed", type=int, default=0, help="seed of the data order and the initialisation")
    sp.add_argument("--resume", metavar="JOB", help="continue this train job from its last checkpoint")

    from .experiment import ARM_FORMS
    sp = add("experiment", "the closed loop: train the student on equal-size sets drawn by each curation arm, "
                           "evaluate each, report the effect with its uncertainty (resumable)")
    sp.add_argument("--base", default="smollm2-135m-instruct", help="the student (default smollm2-135m-instruct)")
    sp.add_argument("--set", default="sni-sample", help="evaluation set with references (default sni-sample)")
    sp.add_argument("--budget", type=int, default=200, help="training rows per arm (default 200)")
    sp.add_argument("--arms", nargs="+", default=["random", "passing@0.01", "qdit:0.7"], metavar="ARM",
                    help=f"the arms: {ARM_FORMS} (default: random passing@0.01 qdit:0.7)")
    sp.add_argument("--seeds", type=int, default=2, help="training runs per arm (default 2)")
    sp.add_argument("--out", required=True, metavar="FOLDER", help="the experiment's folder (reports, report.json)")
    sp.add_argument("--eval-limit", type=int, help="evaluate on the first N rows of the set only")
    sp.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per prediction (default 128)")
    sp.add_argument("--epochs", type=float, default=1.0, help="passes over each arm's rows (default 1)")
    sp.add_argument("--max-steps", type=int, help="optimizer steps per training run (overrides --epochs)")
    sp.add_argument("--lr", type=float, help="learning rate (default 2e-4 with LoRA, 2e-5 with --full)")
    sp.add_argument("--batch-size", type=int, default=4, help="examples per step (default 4)")
    sp.add_argument("--max-length", type=int, default=512, help="tokens per example (default 512)")
    sp.add_argument("--full", action="store_true", help="train all weights instead of LoRA")
    sp.add_argument("--gradient-checkpointing", action="store_true",
                    help="recompute activations in the backward pass: less memory, about a third more compute")
    sp.add_argument("--keep-models", action="store_true", help="keep each trained model (deleted once evaluated)")
    sp.add_argument("--resume", metavar="JOB", help="continue this experiment job (finished arms are not redone)")

    sp = add("evalsets", "list the shipped evaluation sets (evaluation only: never train on them)")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("evaluate", "score a model (or a predictions file) on an evaluation set: Rouge-L, exact match, "
                         "an optional judge, each with a bootstrap 95%% CI; the run is stored")
    sp.add_argument("--set", help="evaluation set: a shipped name (`curate evalsets`), a JSONL file with "
                                  "instruction, input, reference(s), a save_to_disk folder, or a Hub id")
    sp.add_argument("--model", help="model spec whose greedy predictions are scored (chat template where it has "
                                    "one, else instruction + newline + input)")
    sp.add_argument("--predictions", metavar="FILE", help="score a JSONL of {instruction, input, reference(s), "
                                                          "prediction} instead of running a model")
    sp.add_argument("--limit", type=int, help="only the first N rows of the set")
    sp.add_argument("--max-new-tokens", type=int, default=256, help="new tokens per prediction (default 256)")
    sp.add_argument("--batch-size", type=int, default=8, help="prompts per model call (default 8)")
    sp.add_argument("--judge", help="judge:<model spec> (or judge:openai:<model>@<url>) for a 1-10 score per row")
    sp.add_argument("--against", metavar="REPORT", help="another run's report JSON: the judge compares the two "
                                                        "predictions of every row, in both orders (win rate)")
    sp.add_argument("--out", metavar="REPORT", help="write the run as JSON (per-row scores, means, CIs, settings)")
    sp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    sp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    sp.add_argument("--list", action="store_true", help="list the stored evaluation runs instead")
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
