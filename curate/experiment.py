"""The closed loop: train a student on equal-size training sets drawn by different curation rules (the *arms*),
evaluate each on a held-out set, and compare them with their uncertainty — the papers' own measure of whether
curation helped. The `experiment` stage (docs/ARCHITECTURE.md, "Experiments").

Arms (each a training set of ``budget`` rows drawn from the store; an arm with fewer rows uses all it has, and
the report says so):

* ``random``: drawn at random from every ensembled candidate, with the output consensus chose — the control;
* ``all``: drawn at random from every candidate, with the generator's output (no curation at all);
* ``passing@τ``: drawn at random from the candidates passing consensus at τ;
* ``accepted``: drawn at random from the accepted or edited candidates (the reviewed texts);
* ``qdit:α``: the QDIT selection of ``budget`` candidates from the passing pool (consensus proxy quality);
* ``teacher:NAME``: drawn at random from the candidates NAME wrote an output for, with that output.

Each arm is trained once per seed (the seed draws the rows and seeds the training) and evaluated greedily. The base
model is evaluated too. The report has, per arm, each metric's mean over rows (each row's score averaged over the
seeds) with a bootstrap 95% interval, and the difference from ``random`` with a paired bootstrap p-value. The
experiment is resumable: every finished (arm, seed) leaves its report in the experiment's folder and is not redone.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import evaluate as ev
from . import train
from .errors import ExperimentError, ExperimentRunning

__all__ = ["Config", "check", "run", "arm_rows", "arm_tag", "ARM_FORMS", "report_table", "load_report", "side_by_side",
           "job_for", "job_status"]

ARM_FORMS = "random, all, passing@TAU, accepted, qdit:ALPHA, teacher:NAME"
_ARM = re.compile(r"^(random|all|accepted|passing@(?P<tau>[0-9.]+)|qdit:(?P<alpha>[0-9.]+)|teacher:(?P<t>.+))$")
BASELINE = "random"


class Config(BaseModel):
    """An experiment: ``base`` trained on ``budget`` rows of each arm, once per seed, evaluated on ``evalset``."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field("smollm2-135m-instruct", min_length=1, description="the student model spec")
    evalset: str = Field("sni-sample", min_length=1, description="evaluation set (curate evalsets)")
    budget: int = Field(200, ge=1, description="training rows per arm")
    arms: list[str] = Field(default_factory=lambda: ["random", "passing@0.01", "qdit:0.7"], min_length=1)
    seeds: int = Field(2, ge=1, le=20, description="training runs per arm")
    out: str = Field(min_length=1, description="the experiment's folder (models, reports)")
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N rows of the set")
    max_new_tokens: int = Field(128, ge=1, le=4096)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(512, ge=16)
    full: bool = False
    gradient_checkpointing: bool = False
    keep_models: bool = Field(False, description="keep each arm's trained model (they are deleted once evaluated)")
    resamples: int = Field(1000, ge=100)

    @field_validator("arms")
    @classmethod
    def _arms(cls, arms: list[str]) -> list[str]:
        for a in arms:
            if not _ARM.match(a):
                raise ValueError(f"unknown arm {a!r}; arms are {ARM_FORMS}")
        if len(set(arms)) != len(arms):
            raise ValueError("an arm is listed twice")
        return arms


def arm_tag(arm: str, seed: int) -> str:
    """The file name stem of an (arm, seed) in the experiment's folder: ``<arm>-seed<seed>.json`` and
    ``models/<arm>-seed<seed>``, with characters other than letters, digits, ``_.@-`` as ``_``."""
    return f"{re.sub(r'[^A-Za-z0-9_.@-]+', '_', arm)}-seed{seed}"


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a killed run never leaves half a report for the resume to trip on)."""
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def _draw(rows: list[dict], budget: int, seed: int) -> list[dict]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return sorted(rows[:budget], key=lambda r: r["seq"])


def arm_rows(store, arm: str, budget: int, seed: int, *, name: str = "experiment") -> list[dict]:
    """The training rows of ``arm`` for ``seed`` (at most ``budget``), as (instruction, input, output, id, seq).
    Raises ExperimentError for an arm the store cannot give (no teacher of that name, no embeddings)."""
    m = _ARM.match(arm)
    if m is None:
        raise ExperimentError(f"unknown arm {arm!r}; arms are {ARM_FORMS}")
    if arm == "random":
        return _draw(store.training_pool("ensembled"), budget, seed)
    if arm == "all":
        return _draw(store.training_pool("all"), budget, seed)
    if arm == "accepted":
        rows = [{**r, "seq": r["seq"]} for r in store.export_rows(("accepted",))]
        return _draw(rows, budget, seed)
    if m.group("tau") is not None:
        return _draw(store.training_pool("passing", tau=float(m.group("tau"))), budget, seed)
    if m.group("t") is not None:
        rows = store.training_pool("teacher", teacher=m.group("t"))
        if not rows:
            raise ExperimentError(f"arm {arm}: no output by {m.group('t')!r} in the store (teachers are the models "
                                  "that wrote outputs; `curate teachers` lists them)")
        return _draw(rows, budget, seed)
    from .select import run_selection
    pool = store.training_pool("passing")
    k = min(budget, len(pool))
    if k == 0:
        return []
    sel = f"{name}-{arm}"
    run_selection(store, k=k, alpha=float(m.group("alpha")), source="passing", quality="consensus", name=sel)
    chosen = {r["candidate_id"] for r in store.get_selection(sel)}
    return [r for r in pool if r["id"] in chosen]


def _pool_size(store, arm: str) -> int:
    """How many rows ``arm`` can draw from (its whole pool, before the budget)."""
    if arm.startswith("qdit:"):
        return len(store.training_pool("passing"))
    return len(arm_rows(store, arm, 1 << 30, 0))


def check(store, config: Config) -> None:
    """Before a job is created: the evaluation set can be read and has references; every arm has rows, some of
    them left after the contamination guard; and the budget is not larger than every arm's pool."""
    es = ev.load_evalset(config.evalset, limit=config.eval_limit)
    if not es.has_references:
        raise ExperimentError(f"the evaluation set {es.name!r} has no references, so an experiment cannot compare "
                              "Rouge-L and exact match on it: use user-oriented or sni-sample (or a file with "
                              "references). To score a model on it, use a judge: curate evaluate --model MODEL "
                              f"--set {es.name} --judge judge:<model>")
    sizes = {}
    for arm in config.arms:
        sizes[arm] = _pool_size(store, arm)
        if arm.startswith("qdit:"):
            if not sizes[arm]:
                raise ExperimentError(f"arm {arm} has no training rows in {store.path}: it selects from the "
                                      "candidates passing consensus; generate and ensemble candidates first")
            continue  # the selection is made when the arm runs
        rows = arm_rows(store, arm, config.budget, 0)
        if not rows:
            raise ExperimentError(f"arm {arm} has no training rows in {store.path}: "
                                  + ("accept candidates in the Review tab" if arm == "accepted"
                                     else "generate and ensemble candidates first"))
        _guard(arm, rows)
    if config.budget > max(sizes.values()):
        pools = ", ".join(f"{a} {n}" for a, n in sizes.items())
        raise ExperimentError(f"a budget of {config.budget} training rows per arm is larger than the pool: no arm "
                              f"has that many rows in {store.path} ({pools}); lower the budget (Rows per arm, "
                              f"--budget) to at most {max(sizes.values())}")


def _guard(arm: str, rows: list[dict]) -> tuple[list[dict], Any]:
    """``rows`` without those that match an evaluation set (and the guard's finding); raises ExperimentError
    naming the arm and the fix when none is left."""
    c = ev.contamination([r["instruction"] for r in rows])
    kept = [rows[i] for i in c.kept]
    if not kept:
        found = ", ".join(f"{n} in {s}" for s, n in c.counts.items())
        raise ExperimentError(f"arm {arm}: every one of its {len(rows)} training rows matches an evaluation set "
                              f"({found}), and evaluation rows never go into training, so nothing is left to "
                              "train on: drop the arm, or add (generate, import, accept) candidates that are not "
                              "evaluation instructions")
    return kept, c


def _evaluate(model_spec: str, es: ev.EvalSet, config: Config, ctx, phase: str) -> dict:
    from .lm.registry import load_lm
    ctx.report(phase=phase, done=0, total=len(es.rows), unit="rows")
    import torch
    try:
        lm = load_lm(model_spec)
        try:
            preds = ev.predict(lm, es.rows, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                               should_stop=ctx.should_stop,
                               progress=lambda d, t: ctx.report(phase=phase, done=d, total=t, unit="rows"))
            style = ev.prompt_style(lm)
        finally:
            del lm
    except (torch.OutOfMemoryError, MemoryError) as e:  # the message names the knobs
        raise ExperimentError(f"out of memory while {phase} ({e}): lower --batch-size ({config.batch_size}, the "
                              f"prompts predicted at once) or --max-new-tokens ({config.max_new_tokens})") from None
    return ev.evaluate(es.rows, preds, evalset=es, model=model_spec, style=style, resamples=config.resamples,
                       settings={"experiment": True}).as_dict()


def run(store, config: Config, ctx) -> dict:
    """Train and evaluate every (arm, seed) not done yet, then the table; returns it."""
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    es = ev.load_evalset(config.evalset, limit=config.eval_limit)
    reports: dict[str, list[dict]] = {}
    sizes: dict[str, int] = {}
    base_file = out / "base.json"
    if not base_file.exists():
        _write_json(base_file, _evaluate(config.base, es, config, ctx, f"evaluating the base {config.base}"))
    base = json.loads(base_file.read_text())
    total = len(config.arms) * config.seeds
    done = 0
    for arm in config.arms:
        for seed in range(config.seeds):
            tag = arm_tag(arm, seed)
            report_file = out / f"{tag}.json"
            if report_file.exists():
                rep = json.loads(report_file.read_text())
            else:
                ctx.check_stop()
                rows = arm_rows(store, arm, config.budget, seed, name=f"experiment-{ctx.job_id or out.name}")
                if len(rows) < config.budget:
                    ctx.warn(f"arm {arm} has only {len(rows)} of the {config.budget} rows asked for: it trains on "
                             "those, and the report says so")
                kept, c = _guard(arm, rows)
                model_dir = out / "models" / tag
                tc = train.Config(base=config.base, source="accepted", out=str(model_dir), epochs=config.epochs,
                                  max_steps=config.max_steps, learning_rate=config.learning_rate,
                                  batch_size=config.batch_size, max_length=config.max_length, full=config.full,
                                  gradient_checkpointing=config.gradient_checkpointing, seed=seed)
                record = train.fit(kept, {"rows": len(rows), "kept": len(kept),
                                          "dropped_as_contaminated": c.counts}, tc, ctx,
                                   phase=f"training {arm} (seed {seed})")
                rep = _evaluate(str(model_dir), es, config, ctx, f"evaluating {arm} (seed {seed})")
                rep["train"] = {k: v for k, v in record.items() if k != "base_resolved"}
                _write_json(report_file, rep)
                if not config.keep_models:
                    shutil.rmtree(model_dir, ignore_errors=True)
            reports.setdefault(arm, []).append(rep)
            sizes[arm] = rep["train"]["kept"]
            done += 1
            ctx.report(phase=f"{arm} (seed {seed}) done", done=done, total=total, unit="arm runs")
    table = report_table(base, reports, sizes, budget=config.budget, resamples=config.resamples)
    table["evalset_spec"] = config.evalset  # what loads the set again (a file's name is only its stem)
    _write_json(out / "report.json", table)
    ctx.report(phase="done", done=total, total=total, unit="arm runs",
               result={"report": str(out / "report.json"), "arms": len(config.arms)})
    return table


def _per_row(reports: list[dict], metric: str) -> list[float | None]:
    """Each row's score averaged over the seeds' reports (None where no seed scored it)."""
    out: list[float | None] = []
    for i in range(len(reports[0]["rows"])):
        vals = [r["rows"][i].get(metric) for r in reports if r["rows"][i].get(metric) is not None]
        out.append(sum(vals) / len(vals) if vals else None)
    return out


def report_table(base: dict, reports: dict[str, list[dict]], sizes: dict[str, int], *, budget: int,
                 resamples: int = 1000) -> dict:
    """The experiment's table: the base model's scores, and per arm its training size, seeds, each metric's mean
    with a 95% interval, and its difference from ``random`` (paired over rows) with a p-value."""
    metrics = [m for m in ev.REFERENCE_METRICS if m in base["metrics"]]
    rows: list[dict] = [{"arm": "base (no fine-tuning)", "train_rows": 0, "seeds": 0,
                         **{m: {"mean": base["metrics"][m]["mean"], "ci": base["metrics"][m]["ci"]} for m in metrics}}]
    per_arm = {arm: {m: _per_row(reps, m) for m in metrics} for arm, reps in reports.items()}
    for arm, reps in reports.items():
        row: dict[str, Any] = {"arm": arm, "train_rows": sizes[arm], "seeds": len(reps),
                               "short": sizes[arm] < budget}
        for m in metrics:
            vals = [v for v in per_arm[arm][m] if v is not None]
            row[m] = {"mean": sum(vals) / len(vals) if vals else None,
                      "ci": list(ev.bootstrap_ci(vals, resamples=resamples) or []) or None}
            if arm != BASELINE and BASELINE in per_arm:
                row[m]["vs_random"] = ev.paired_bootstrap(per_arm[arm][m], per_arm[BASELINE][m],
                                                          resamples=resamples)
        rows.append(row)
    notes = [f"{r['arm']} had only {r['train_rows']} of the {budget} rows asked for" for r in rows[1:] if r["short"]]
    return {"evalset": base["evalset"], "base": base["model"], "budget": budget, "metrics": metrics, "rows": rows,
            "notes": notes}


def job_for(store, folder: str | Path) -> dict | None:
    """The latest experiment job that writes to ``folder`` (None when none of the store's recent jobs does)."""
    want = Path(folder).expanduser().resolve()
    for job in store.list_jobs(limit=500):
        out = job["config"].get("out") if job["kind"] == "experiment" else None
        if out and Path(out).expanduser().resolve() == want:
            return job
    return None


def job_status(job: dict) -> str:
    """A sentence on an experiment job that has no report yet: its state and progress, or its error."""
    from .stage import describe
    from .store.jobs import ACTIVE_JOB_STATES
    view = describe(job["progress"], job["state"])
    where = f"job {job['id']} ({job['config'].get('out')})"
    if job["state"] in ACTIVE_JOB_STATES:
        return (f"{where} is {job['state']}: {view.phase or 'starting'}"
                + (f", {view.counts}" if view.counts else "") + (f", ETA {view.eta}" if view.eta != "—" else "")
                + ". Show results again when it is done (the Run tab follows it).")
    if job["state"] == "failed":
        return (f"{where} failed: {job.get('error') or 'no error recorded'}. Fix that and start it again from the "
                "Run tab: the finished arms are not redone.")
    return (f"{where} is {job['state']}: resume it from the Run tab (or `curate experiment --resume {job['id']}`); "
            "the finished arms are not redone.")


def load_report(folder: str | Path, store=None) -> dict:
    """The table an experiment wrote to ``folder/report.json``. Raises ExperimentError when there is none yet,
    saying (when ``store`` is given and has the experiment's job) whether it is still running, failed or paused."""
    if not str(folder).strip():
        raise ExperimentError("no experiment folder given: type the folder of an experiment (the one its start "
                              "named), or start one")
    path = Path(folder).expanduser() / "report.json"
    if not path.is_file():
        job = job_for(store, folder) if store is not None else None
        if job is not None:
            from .store.jobs import ACTIVE_JOB_STATES
            raise (ExperimentRunning if job["state"] in ACTIVE_JOB_STATES else ExperimentError)(job_status(job))
        raise ExperimentError(f"no experiment report in {path.parent} yet: start the experiment (or wait for it "
                              "to finish; the Run tab follows it)")
    return json.loads(path.read_text(encoding="utf-8"))


def side_by_side(folder: str | Path, *, seed: int = 0, evalset: str | None = None) -> list[dict]:
    """Per evaluation row: id, instruction, input, reference, the base model's prediction and each arm's (the run
    of ``seed``), from the reports in ``folder``."""
    table = load_report(folder)
    folder = Path(folder).expanduser()
    es = ev.load_evalset(evalset or table.get("evalset_spec") or table["evalset"])
    rows_by_id = {r.id: r for r in es.rows}
    base = json.loads((folder / "base.json").read_text(encoding="utf-8"))
    arms = {r["arm"]: json.loads((folder / f"{arm_tag(r['arm'], seed)}.json").read_text(encoding="utf-8"))
            for r in table["rows"][1:]}
    out = []
    for i, b in enumerate(base["rows"]):
        src = rows_by_id.get(b["id"])
        out.append({"id": b["id"], "instruction": src.instruction if src else "", "input": src.input if src else "",
                    "reference": " | ".join(src.references) if src else "", "base": b["prediction"],
                    **{arm: rep["rows"][i]["prediction"] for arm, rep in arms.items()}})
    return out
