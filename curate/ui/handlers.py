"""The app's event handlers: plain methods that take component values and return new ones.

UI handlers (``ui_*``) return a ``dict`` of component name → value (events.py turns it into the tuple Gradio
wants, in the order of its output list), so they are testable without a browser. API handlers (``api_*``)
take typed values and return JSON-able dicts; they back the named endpoints (``/accept``, ``/queue``…).

All the work is done by the library (:mod:`curate.review`, :mod:`curate.jobs`, the store). Library errors
become ``gr.Error`` here, and only here. Per-user state lives in ``gr.State`` (the open candidate, this
session's undo history) or the database — never in this object, which all sessions share. Each worker thread
gets its own store connection.
"""

import functools
import json
import shutil
import tempfile
import threading
from pathlib import Path
from datetime import datetime
from typing import Any, Callable

import gradio as gr
import pandas as pd
from pydantic import ValidationError

from .. import export, jobs, quality, review, select, teachers
from ..ensemble import EnsembleConfig
from ..errors import ConflictError, CurateError
from ..generate import GenerateConfig, sampling
from ..mixture import parse_mixture
from ..settings import Settings
from ..stage import describe
from ..store import Store
from .layout import JOB_HEADERS, LOG_HEADERS, MAX_OUTPUTS, QUEUE_HEADERS

SLOTS = [f"slot_{i}" for i in range(MAX_OUTPUTS)]
SLOT_COLS = [f"slot_col_{i}" for i in range(MAX_OUTPUTS)]
#: what every "show a candidate" handler returns, in this order (events.py maps the names to components)
VIEW = ["header", "instruction", "input", *SLOT_COLS, *SLOTS, "heatmap", "explanation", "edit_instruction",
        "edit_input", "edit_output", "reject_reason", "log", "current", "open_id"]
QUEUE = ["queue", "page", "page_info"]
THRESHOLD = ["pass_count", "histogram", "accept_all"]
JOB = ["job_state", "job_stage", "job_rate", "job_eta", "job_counts", "job_reasons", "job_error", "jobs"]
OVERVIEW = ["ov_stages", "ov_reasons_plot", "ov_models_plot", "ov_reviewers_plot", "ov_models", "ov_reviewers"]
EXPORT = ["ex_summary", "ex_files", "ex_preview", "ex_card"]
TEACHERS = ["tch_table", "tch_chart", "tch_status"]
SELECT = ["sel_status", "sel_report", "sel_map", "sel_table"]
QUALITY = ["q_count", "q_hist", "q_min"]
DUPS = ["dup_status", "dup_table", "dup_groups"]
ACTIVE_STATES = ("queued", "running", "pausing", "cancelling")


def user_errors(fn: Callable) -> Callable:
    """Library errors → ``gr.Error`` with the library's message (which says what to do)."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConflictError as e:
            raise gr.Error(str(e), title="Conflict — nothing was overwritten") from e
        except (CurateError, ValueError) as e:
            msg = _validation_message(e) if isinstance(e, ValidationError) else str(e)
            raise gr.Error(msg) from e
    return inner


def _validation_message(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _num(v: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(v)


class Handlers:
    """The handlers of one app. Shared by every session: holds only the settings, the job runner and
    per-thread store connections."""

    def __init__(self, settings: Settings, runner: jobs.JobRunner):
        self.settings = settings
        self.db_path = str(settings.db)
        self.runner = runner
        self._local = threading.local()

    def store(self) -> Store:
        """This thread's connection (a Store is used from one thread)."""
        st = getattr(self._local, "store", None)
        if st is None:
            st = self._local.store = Store(self.db_path)
        return st

    # -- shared helpers -----------------------------------------------------------------------------------
    def reviewer(self, name: str | None, request: gr.Request | None = None) -> str:
        """The login name when the app requires one, else the name typed in the Reviewer box."""
        user = getattr(request, "username", None) if request is not None else None
        if user:
            return user
        name = (name or "").strip()
        if not name:
            raise gr.Error("Type your name in the Reviewer box (top right) first: every review records who "
                           "made it.")
        return name

    @staticmethod
    def queue_filter(status: str | None, task_type: str | None, model: str | None, consensus: str | None,
                     tau: float, search: str | None, sort: str | None, quality_scorer: str | None = None,
                     quality_min: float | None = None) -> review.QueueFilter:
        try:
            return review.QueueFilter(status=status or None, task_type=task_type or None, model=model or None,
                                      consensus=consensus or None, tau=float(tau if tau is not None else 0.0),
                                      search=search or "", sort=sort or "seq", quality_scorer=quality_scorer or None,
                                      quality_min=None if quality_min is None else float(quality_min))
        except ValidationError as e:
            raise gr.Error(_validation_message(e)) from e

    # -- app load -----------------------------------------------------------------------------------------
    def ui_load(self, reviewer: str, request: gr.Request) -> dict:
        """Reviewer box from the login (locked) and the generator-model filter's choices."""
        user = getattr(request, "username", None)
        models = self.store().generator_models()
        scorers = self.store().stored_scorers()
        return {"reviewer": gr.update(value=user, interactive=False) if user else gr.update(),
                "f_model": gr.update(choices=[("any", "")] + [(m, m) for m in models]),
                "q_scorer": gr.update(choices=[("off", "")] + [(f"{r['scorer']} ({r['scored']:,} scored)", r["scorer"])
                                                               for r in scorers])}

    # -- queue --------------------------------------------------------------------------------------------
    @user_errors
    def ui_queue(self, status: str, task_type: str, model: str, consensus: str, tau: float, search: str,
                 sort: str, q_scorer: str | None, q_min: float | None, page: float | None,
                 step: int | None = None) -> dict:
        """One page of the queue (``step`` ±1 moves to the previous / next page)."""
        f = self.queue_filter(status, task_type, model, consensus, tau, search, sort, q_scorer, q_min)
        res = review.queue_page(self.store(), f, int(page or 1) + int(step or 0))
        return self._queue_view(res)

    def _queue_view(self, res: dict) -> dict:
        rows = [[str(r["seq"]), r["review_status"] if r["status"] == "ok" else "auto-filtered", r["task_type"],
                 r["generator_model"], _num(r["min_pairwise"]),
                 "" if r["passes"] is None else ("yes" if r["passes"] else "no"),
                 r["instruction"], r["input"], r["output"], r["id"]] for r in res["rows"]]
        first = (res["page"] - 1) * res["page_size"] + 1
        info = (f"{res['total']:,} candidates · page {res['page']} of {res['pages']}"
                + (f" · rows {first:,}–{first + len(rows) - 1:,}" if rows else " · nothing matches"))
        return {"queue": pd.DataFrame(rows, columns=QUEUE_HEADERS), "page": res["page"], "page_info": info}

    @user_errors
    def ui_threshold(self, status: str, task_type: str, model: str, consensus: str, tau: float, search: str,
                     sort: str, q_scorer: str | None = None, q_min: float | None = None) -> dict:
        """τ moved: pass count, histogram with the threshold, and the queue's first page."""
        f = self.queue_filter(status, task_type, model, consensus, tau, search, sort, q_scorer, q_min)
        v = review.threshold_view(self.store(), f, 1)
        out = self._threshold_fields(v)
        out.update(self._queue_view(v["queue"]))
        return out

    @user_errors
    def ui_refresh(self, status: str, task_type: str, model: str, consensus: str, tau: float, search: str,
                   sort: str, q_scorer: str | None, q_min: float | None, page: float | None) -> dict:
        """After a review: counts and the current queue page (run after the next candidate is shown)."""
        out = self._threshold_view(float(tau))
        out.update(self.ui_queue(status, task_type, model, consensus, tau, search, sort, q_scorer, q_min, page))
        return out

    # -- the quality threshold (scores from curate.quality, e.g. `curate score`) ---------------------------
    @user_errors
    def ui_quality_scorer(self, status: str, task_type: str, model: str, consensus: str, tau: float,
                          search: str, sort: str, q_scorer: str | None, q_min: float | None) -> dict:
        """A scorer was picked: the slider spans its scores, starting at the lowest (nothing filtered yet)."""
        s = review.quality_summary(self.store(), q_scorer or None, None)  # at no minimum: the lowest score
        lo, hi = s["min"], s["max"]
        slider = (gr.update(minimum=lo, maximum=hi if hi > lo else lo + 1, value=lo, interactive=True)
                  if lo is not None else gr.update(value=0, interactive=False))
        return {**self._quality_view(s, status, task_type, model, consensus, tau, search, sort, q_scorer, lo),
                "q_min": slider}

    @user_errors
    def ui_quality(self, status: str, task_type: str, model: str, consensus: str, tau: float, search: str,
                   sort: str, q_scorer: str | None, q_min: float | None) -> dict:
        """The quality slider moved: its count and histogram, τ's counts and the queue's first page."""
        s = review.quality_summary(self.store(), q_scorer or None, q_min)
        return {**self._quality_view(s, status, task_type, model, consensus, tau, search, sort, q_scorer, q_min),
                "q_min": gr.update()}

    def _quality_view(self, s: dict, status: str, task_type: str, model: str, consensus: str, tau: float,
                      search: str, sort: str, q_scorer: str | None, q_min: float | None) -> dict:
        if s["scorer"] is None:
            text = "no quality threshold (pick a scorer; `curate score` stores scores)"
        elif not s["scored"]:
            text = f"{q_scorer}: nothing scored yet (`curate score --scorer {q_scorer}`)"
        else:
            text = (f"{s['passing']:,} of {s['scored']:,} scored candidates have a chosen output scoring ≥ "
                    f"{s['quality_min']:.3g} ({q_scorer})")
        hist = pd.DataFrame([{"lo": round(b["lo"], 3), "n": b["n"], "side": b["side"]} for b in s["histogram"]],
                            columns=["lo", "n", "side"])
        out = self.ui_threshold(status, task_type, model, consensus, tau, search, sort, q_scorer, q_min)
        return {**out, "q_count": text, "q_hist": hist}

    def _threshold_view(self, tau: float) -> dict:
        return self._threshold_fields(review.threshold_summary(self.store(), tau))

    @staticmethod
    def _threshold_fields(s: dict) -> dict:
        tau = s["tau"]
        hist = pd.DataFrame([{"lo": round(b["lo"], 2), "n": b["n"], "side": b["side"]} for b in s["histogram"]],
                            columns=["lo", "n", "side"])
        text = (f"{s['passing']:,} of {s['scored']:,} ensembled candidates pass at τ = {tau:.2f} "
                f"({s['pending_passing']:,} of them still pending)")
        return {"pass_count": text, "histogram": hist,
                "accept_all": gr.update(value=f"Accept all {s['pending_passing']:,} pending that pass…",
                                        interactive=s["pending_passing"] > 0)}

    # -- one candidate ------------------------------------------------------------------------------------
    def _view(self, cid: str | None, tau: float, note: str = "", shown: dict | None = None) -> dict:
        """Everything the candidate pane shows (see VIEW); ``cid`` None shows an empty pane with ``note``.

        ``shown``: the ``current`` state of the pane before (its output count ``k`` lets unchanged slot
        columns be skipped: every component update costs Gradio a config rebuild)."""
        if not cid:
            out = {"header": note or "No candidate open.", "instruction": "", "input": "",
                   "heatmap": pd.DataFrame(), "explanation": "", "edit_instruction": "", "edit_input": "",
                   "edit_output": "", "reject_reason": "", "log": pd.DataFrame(columns=LOG_HEADERS),
                   "current": None, "open_id": ""}
            for i in range(MAX_OUTPUTS):
                out[SLOTS[i]] = gr.update(value="", label=f"o{i}")
                out[SLOT_COLS[i]] = gr.update(visible=i < 3)
            return out
        d = review.candidate(self.store(), cid, float(tau))
        return self._detail_view(d, note, (shown or {}).get("k"))

    def _detail_view(self, d: dict, note: str = "", shown_k: int | None = None) -> dict:
        c = d["consensus"]
        status = d["review_status"]
        who = f" by {d['reviewed_by']} at {_when(d['reviewed_at'])}" if d["reviewed_by"] else ""
        line1 = (f"#{d['seq']} · type {d['task_type']} · generator {d['generator_model']} · {status}"
                 f"{' (' + d['reason'] + ')' if d['status'] != 'ok' and d['reason'] else ''}{who} · version "
                 f"{d['version']}")
        if c:
            line2 = (f"consensus: {c['reason']}, o{c['chosen_index']} chosen, min pairwise "
                     f"{c['min_pairwise']:.3f} → {'passes' if c['passes'] else 'below'} τ = {c['tau']:.2f}")
        else:
            line2 = "not ensembled yet: run an ensemble job (Run tab) to get outputs from the other models"
        if d["reject_reason"]:
            line2 += f" · rejected because: {d['reject_reason']}"
        if note:
            line2 += f" · {note}"
        out = {"header": line1 + "\n" + line2, "instruction": d["instruction"], "input": d["input"],
               "explanation": c["explanation"] if c else "", "reject_reason": "",
               "current": {"id": d["id"], "version": d["version"], "seq": d["seq"], "k": len(d["outputs"])},
               "open_id": d["id"]}
        outs = d["outputs"]
        same_columns = shown_k == len(outs)
        for i in range(MAX_OUTPUTS):
            if i < len(outs):
                o = outs[i]
                role = "generator" if o["style"] == "generator" else o["style"]
                label = (f"o{i} · {o['model']} ({role}) · agreement {_num(o['agreement'], '{:.2f}')}"
                         f"{' · ✓ consensus choice' if o['chosen'] else ''}")
                out[SLOTS[i]] = gr.update(value=o["text"], label=label)
                out[SLOT_COLS[i]] = gr.skip() if same_columns else gr.update(visible=True)
            else:
                out[SLOTS[i]] = gr.skip() if same_columns else gr.update(value="", label=f"o{i}")
                out[SLOT_COLS[i]] = gr.skip() if same_columns else gr.update(visible=False)
        if len(outs) > MAX_OUTPUTS:
            out["header"] += f" · {len(outs) - MAX_OUTPUTS} more outputs not shown (see the API /candidate)"
        out["heatmap"] = heatmap(c["pairwise"], c["models"]) if c else pd.DataFrame()
        final = d["final"] or {"instruction": d["instruction"], "input": d["input"],
                               "output": _default_output(d)}
        out.update(edit_instruction=final["instruction"], edit_input=final["input"], edit_output=final["output"])
        out["log"] = pd.DataFrame([[str(r["id"]), r["reviewer"], _when(r["at"]), r["action"], str(r["version"]),
                                    r["reason"] or ""] for r in d["log"]], columns=LOG_HEADERS)
        return out

    @user_errors
    def ui_open(self, candidate_id: str, tau: float) -> dict:
        cid = (candidate_id or "").strip()
        if not cid:
            raise gr.Error("Paste a candidate id, or click a row of the queue.")
        return self._view(cid, tau)

    @user_errors
    def ui_select(self, tau: float, evt: gr.SelectData) -> dict:
        """A queue row was clicked: open its candidate (the id is the row's last column)."""
        row = evt.row_value or []
        return self._view(row[-1] if row else None, tau)

    @user_errors
    def ui_next(self, current: dict | None, status: str, task_type: str, model: str, consensus: str,
                tau: float, search: str, sort: str, q_scorer: str | None = None, q_min: float | None = None) -> dict:
        f = self.queue_filter(status, task_type, model, consensus, tau, search, sort, q_scorer, q_min)
        nxt = review.next_candidate(self.store(), f, (current or {}).get("seq"))
        return self._view(nxt, tau, "" if nxt else self._nothing_pending(), current)

    def _nothing_pending(self) -> str:
        if self.store().count_instances(None) == 0:  # a new store: say where candidates come from
            return "Nothing generated yet: start a generation job in the Run tab (then an ensembling job)."
        return "No pending candidate left under these filters."

    # -- review actions -----------------------------------------------------------------------------------
    def _act(self, action: Callable[..., dict], current: dict | None, history: list | None, filters: tuple,
             reviewer: str, **kw: Any) -> dict:
        """Run one review action on the open candidate, then open the next pending one.

        On a conflict (someone else reviewed it since it was opened) nothing is written: the reviewer gets a
        warning and the pane reloads the candidate as it is now."""
        if not current:
            raise gr.Error("Open a candidate first (click a queue row).")
        f = self.queue_filter(*filters)
        try:
            row = action(self.store(), current["id"], reviewer=reviewer, version=current["version"], **kw)
        except ConflictError as e:
            gr.Warning(f"Not saved: {e}")
            out = self._view(current["id"], f.tau, "reloaded after a conflict: review it again")
            out["history"] = history or []
            return out
        except CurateError as e:
            raise gr.Error(str(e)) from e
        nxt = review.next_candidate(self.store(), f, current["seq"])
        out = self._view(nxt, f.tau, "" if nxt else self._nothing_pending(), current)
        out["history"] = (history or []) + [[row["id"], row["version"]]]
        return out

    def ui_accept(self, current: dict | None, output_index: int | None, reviewer: str, history: list | None,
                  status: str, task_type: str, model: str, consensus: str, tau: float, search: str, sort: str,
                  q_scorer: str | None, q_min: float | None, request: gr.Request) -> dict:
        """Accept output ``output_index`` (None: the consensus choice), then open the next pending one."""
        return self._act(review.accept, current, history, (status, task_type, model, consensus, tau, search,
                                                            sort, q_scorer, q_min), self.reviewer(reviewer, request),
                         output_index=output_index)

    def ui_reject(self, current: dict | None, reason: str, reviewer: str, history: list | None, status: str,
                  task_type: str, model: str, consensus: str, tau: float, search: str, sort: str,
                  q_scorer: str | None, q_min: float | None, request: gr.Request) -> dict:
        return self._act(review.reject, current, history, (status, task_type, model, consensus, tau, search,
                                                            sort, q_scorer, q_min), self.reviewer(reviewer, request),
                         reason=reason)

    def ui_edit(self, current: dict | None, instruction: str, input: str, output: str, reviewer: str,
                history: list | None, status: str, task_type: str, model: str, consensus: str, tau: float,
                search: str, sort: str, q_scorer: str | None, q_min: float | None, request: gr.Request) -> dict:
        return self._act(review.edit, current, history, (status, task_type, model, consensus, tau, search,
                                                          sort, q_scorer, q_min), self.reviewer(reviewer, request),
                         instruction=instruction, input=input or "", output=output)

    def ui_undo(self, history: list | None, reviewer: str, tau: float, request: gr.Request) -> dict:
        """Undo this session's last action and show that candidate as restored."""
        history = list(history or [])
        if not history:
            raise gr.Error("Nothing to undo: you have not reviewed anything in this session.")
        cid, version = history[-1]
        try:
            review.undo(self.store(), cid, reviewer=self.reviewer(reviewer, request), version=version)
        except ConflictError as e:
            raise gr.Error(f"Cannot undo: {e}", title="Conflict — nothing was overwritten") from e
        except CurateError as e:
            raise gr.Error(str(e)) from e
        out = self._view(cid, tau, "your last action was undone")
        out["history"] = history[:-1]
        return out

    # -- bulk accept --------------------------------------------------------------------------------------
    @user_errors
    def ui_confirm_all(self, tau: float, q_scorer: str | None = None, q_min: float | None = None) -> dict:
        n = self.store().count_pending_passing(float(tau), quality_scorer=q_scorer or None, quality_min=q_min)
        also = f" and score ≥ {float(q_min):.3g} ({q_scorer})" if q_scorer and q_min is not None else ""
        if n == 0:
            gr.Info(f"No pending candidate passes at τ = {float(tau):.2f}{also}.")
            return {"confirm_box": gr.update(visible=False), "confirm_text": "", "confirm_count": None}
        return {"confirm_box": gr.update(visible=True), "confirm_count": n,
                "confirm_text": f"Accept the consensus choice of all {n:,} pending candidates that pass at "
                                f"τ = {float(tau):.2f}{also}? Each is logged under your name; undo works one by "
                                "one."}

    def ui_accept_all(self, tau: float, count: int | None, reviewer: str, q_scorer: str | None,
                      q_min: float | None, request: gr.Request) -> dict:
        who = self.reviewer(reviewer, request)
        try:
            res = review.accept_all_passing(self.store(), float(tau), reviewer=who, expected=count,
                                            quality_scorer=q_scorer or None, quality_min=q_min)
        except ConflictError as e:
            raise gr.Error(str(e), title="The count changed") from e
        except CurateError as e:
            raise gr.Error(str(e)) from e
        gr.Info(f"Accepted {res['accepted']:,} candidates"
                + (f"; {res['skipped']} skipped (reviewed by someone else meanwhile)" if res["skipped"] else ""))
        out = {"confirm_box": gr.update(visible=False), "confirm_text": "", "confirm_count": None}
        out.update(self._threshold_view(float(tau)))
        return out

    def ui_confirm_cancel(self) -> dict:
        return {"confirm_box": gr.update(visible=False), "confirm_text": "", "confirm_count": None}

    # -- jobs ---------------------------------------------------------------------------------------------
    def start_job(self, kind: str, instructions: int = 20, task_type: str = "both", instances: bool = True,
                  instruction_models: str = "", instance_models: str = "", ensemble_models: str = "",
                  seed: int = 0, batch_size: int = 8, temperature: float | None = None,
                  top_k: int | None = None, top_p: float | None = None, max_new_tokens: int | None = None,
                  instance_max_new_tokens: int | None = None) -> str:
        """Create a job from the Run tab's values and start it on the runner. Returns its id. Sampling
        values left None keep the reference defaults."""
        s = self.settings
        if kind == "generate":
            config = GenerateConfig(
                instructions=int(instructions), task_type=task_type, instances=bool(instances),
                seeds=str(s.seeds) if s.seeds else None,
                instruction_models=parse_mixture(instruction_models or s.instruction_models),
                instance_models=parse_mixture(instance_models or s.instance_models),
                seed=int(seed or 0), batch_size=int(batch_size or s.batch_size),
                similarity_threshold=s.similarity_threshold,
                **sampling(temperature, top_k, top_p, max_new_tokens, instance_max_new_tokens)
            ).model_dump(mode="json")
        elif kind == "ensemble":
            models = [m.strip() for m in (ensemble_models or ",".join(s.ensemble_models)).split(",") if m.strip()]
            config = EnsembleConfig(models=models, prompt_style=s.ensemble_prompt_style,
                                    threshold=s.consensus_threshold,
                                    batch_size=int(batch_size or s.batch_size)).model_dump(mode="json")
        else:
            raise gr.Error(f"unknown job kind {kind!r}: generate or ensemble")
        job_id = jobs.start_job(self.store(), kind, config)
        self.runner.submit(job_id)
        return job_id

    @user_errors
    def ui_start_job(self, kind: str, instructions: float, task_type: str, instances: bool,
                     instruction_models: str, instance_models: str, ensemble_models: str, seed: float,
                     batch_size: float, temperature: float | None = None, top_k: float | None = None,
                     top_p: float | None = None, max_new_tokens: float | None = None,
                     instance_max_new_tokens: float | None = None) -> dict:
        def opt_int(v):
            return None if v is None else int(v)
        job_id = self.start_job(kind, int(instructions or 1), task_type, instances, instruction_models,
                                instance_models, ensemble_models, int(seed or 0), int(batch_size or 1),
                                temperature, opt_int(top_k), top_p, opt_int(max_new_tokens),
                                opt_int(instance_max_new_tokens))
        gr.Info(f"Job {job_id} started: it runs on the server, closing this tab does not stop it.")
        out = self.ui_job_status(job_id)
        out["job_id"] = job_id
        return out

    def job_status(self, job_id: str) -> dict:
        """The job row with its progress, plus ``running`` (whether a worker of this server runs it)."""
        job = self.store().get_job(job_id.strip())
        return {**job, "running": job["id"] in self.runner.running()}

    def ui_job_status(self, job_id: str | None) -> dict:
        """The Run tab's progress fields for ``job_id`` (and the job list). Polled by the timer."""
        out = {"jobs": self._jobs_table()}
        jid = (job_id or "").strip()
        if not jid:
            out.update(job_state="", job_stage="", job_rate="", job_eta="", job_counts="",
                       job_reasons=pd.DataFrame(columns=["filtered / outcome", "n"]), job_error="")
            return out
        try:
            job = self.job_status(jid)
        except CurateError as e:
            out.update(job_state="unknown job", job_stage="", job_rate="", job_eta="", job_counts="",
                       job_reasons=pd.DataFrame(columns=["filtered / outcome", "n"]), job_error=str(e))
            return out
        out.update(job_view(job))
        return out

    def _jobs_table(self) -> pd.DataFrame:
        rows = [[j["id"], j["kind"], j["state"], describe(j["progress"], j["state"]).phase,
                 _when(j["created_at"]), ((j["error"] or "").strip().splitlines() or [""])[0][:120]]
                for j in self.store().list_jobs(limit=20)]
        return pd.DataFrame(rows, columns=JOB_HEADERS)

    def pause_job(self, job_id: str) -> dict:
        """Ask a queued or running job to pause after its current step."""
        st = self.store()
        if not jobs.pause(st, job_id):
            raise gr.Error(f"job {job_id} is {st.get_job(job_id)['state']}: only a queued or running job can "
                           "be paused")
        return self.job_status(job_id)

    def resume_job(self, job_id: str) -> dict:
        """Run a paused, interrupted or failed job again: it continues from what is stored."""
        st = self.store()
        job = st.get_job(job_id)
        if job["state"] in ("done", "cancelled", "cancelling"):
            raise gr.Error(f"job {job_id} is {job['state']}: start a new job instead")
        if job["id"] in self.runner.running():
            raise gr.Error(f"job {job_id} is already running")
        self.runner.submit(job_id)
        return self.job_status(job_id)

    def cancel_job(self, job_id: str) -> dict:
        """Cancel a job: a running one stops after its current step; one with no worker ends at once."""
        st = self.store()
        if not jobs.cancel(st, job_id):
            raise gr.Error(f"job {job_id} is {st.get_job(job_id)['state']}: it cannot be cancelled")
        return self.job_status(job_id)

    def _job_action(self, fn: Callable[[str], dict], job_id: str | None) -> dict:
        jid = (job_id or "").strip()
        if not jid:
            raise gr.Error("Pick a job first: start one or click a row of the job list.")
        try:
            fn(jid)
        except CurateError as e:
            raise gr.Error(str(e)) from e
        return self.ui_job_status(jid)

    def ui_pause(self, job_id: str) -> dict:
        return self._job_action(self.pause_job, job_id)

    def ui_resume(self, job_id: str) -> dict:
        return self._job_action(self.resume_job, job_id)

    def ui_cancel(self, job_id: str) -> dict:
        return self._job_action(self.cancel_job, job_id)

    def ui_job_select(self, evt: gr.SelectData) -> dict:
        row = evt.row_value or []
        out = self.ui_job_status(row[0] if row else "")
        out["job_id"] = row[0] if row else ""
        return out

    # -- overview -----------------------------------------------------------------------------------------
    @user_errors
    def ui_overview(self, tau: float) -> dict:
        ov = review.overview(self.store(), float(tau))
        reasons = pd.DataFrame(ov["reasons"], columns=["stage", "reason", "n"])
        contrib = pd.DataFrame(
            [{"model": m["model"], "what": what, "n": m[key]} for m in ov["models"]
             for what, key in (("instructions kept", "instructions_kept"), ("candidates passing", "passing"),
                               ("accepted / edited", "accepted"), ("chosen by consensus", "chosen"))],
            columns=["model", "what", "n"])
        reviewers = pd.DataFrame(
            [{"reviewer": r["reviewer"], "action": a, "n": r[a]} for r in ov["reviewers"]
             for a in ("accept", "edit", "reject", "reset") if r[a]], columns=["reviewer", "action", "n"])
        models = pd.DataFrame([[m["model"], str(m["instructions_kept"]), str(m["instructions_filtered"]),
                                _num(m["instruction_keep_rate"], "{:.0%}"), str(m["candidates_ok"]),
                                str(m["passing"]), _num(m["pass_rate"], "{:.0%}"), str(m["accepted"]),
                                str(m["rejected"]), str(m["outputs"]), str(m["chosen"])] for m in ov["models"]],
                              columns=["model", "instr. kept", "instr. filtered", "keep rate", "candidates",
                                       f"pass τ={ov['tau']:.2f}", "pass rate", "accepted", "rejected",
                                       "ensemble outputs", "chosen"])
        people = pd.DataFrame([[r["reviewer"], str(r["actions"]), str(r["candidates"]), str(r["accept"]),
                                str(r["edit"]), str(r["reject"]), str(r["reset"]), _when(r["last_at"])]
                               for r in ov["reviewers"]],
                              columns=["reviewer", "actions", "candidates", "accept", "edit", "reject", "reset",
                                       "last"])
        return {"ov_stages": pd.DataFrame([[s["stage"], f"{s['n']:,}"] for s in ov["stages"]],
                                          columns=["stage", "count"]),
                "ov_reasons_plot": reasons, "ov_models_plot": contrib, "ov_reviewers_plot": reviewers,
                "ov_models": models, "ov_reviewers": people}

    # -- teachers (CAR) -----------------------------------------------------------------------------------
    @user_errors
    def ui_teachers_start(self, student: str, scorer: str, limit: float | None, batch_size: float | None) -> dict:
        """Start the background job that computes the student's losses and the rewards (resumable)."""
        config = {"student": (student or "").strip() or self.settings.student_model,
                  "scorer": (scorer or "").strip() or self.settings.quality_scorer,
                  "limit": int(limit) if limit else None, "batch_size": int(batch_size or self.settings.batch_size)}
        job_id = jobs.start_job(self.store(), "teachers", config)
        self.runner.submit(job_id)
        gr.Info(f"Job {job_id} started: the Run tab follows it; the ranking fills in as it stores numbers.")
        return {"tch_status": f"job {job_id}: computing {config['student']}'s loss on each teacher's outputs and "
                              f"{config['scorer']} rewards (follow it in the Run tab, then Show ranking)",
                "job_id": job_id}

    def teacher_rows(self, student: str, scorer: str, beta: float) -> list[dict]:
        return teachers.teacher_ranking(self.store(), (student or "").strip() or self.settings.student_model,
                                        (scorer or "").strip() or self.settings.quality_scorer, float(beta))

    @user_errors
    def ui_teachers(self, student: str, scorer: str, beta: float, task_type: str) -> dict:
        """The ranking from stored numbers (β re-ranks instantly): a table and a CAR bar chart."""
        rows = self.teacher_rows(student, scorer, beta)
        shown = [r for r in rows if r["task_type"] == (task_type or "all")]
        table = pd.DataFrame([[str(r["rank"]), r["model"], str(r["n"]), _num(r["reward"]), _num(r["loss"]),
                               _num(r["car"]), str(r["unscored"])] for r in shown],
                             columns=["rank", "teacher", "outputs", "mean reward", "student loss L", "CAR",
                                      "unscored"])
        chart = pd.DataFrame([{"teacher": r["model"], "CAR": r["car"], "type": r["task_type"]}
                              for r in shown if r["car"] is not None],
                             columns=["teacher", "CAR", "type"]).astype({"CAR": float})  # quantitative even empty
        label = rows[0]["scorer"] if rows else (scorer or self.settings.quality_scorer)
        proxy = label.startswith("proxy:")
        note = (f"CAR = mean reward / (1 + β·L), β = {float(beta):g} (the paper's β is not confirmed; tune it). "
                f"Reward: {label}" + (f" — {quality.PROXY_LABEL}." if proxy else ".")
                + ("" if rows else " Nothing stored yet for this student and scorer: press Compute."))
        return {"tch_table": table, "tch_chart": chart, "tch_status": note}

    @user_errors
    def ui_teachers_mixture(self, student: str, scorer: str, beta: float, task_type: str) -> dict:
        """Weight the generation mixture (Run tab) by CAR."""
        mix = teachers.format_mixture(teachers.mixture_weights_from_car(self.teacher_rows(student, scorer, beta),
                                                                        task_type or "all"))
        gr.Info(f"Run tab mixtures set to {mix}")
        return {"job_instruction_models": mix, "job_instance_models": mix,
                "tch_status": f"generation mixture weighted by CAR: {mix} (Run tab)"}

    @user_errors
    def api_teachers(self, student: str = "", scorer: str = "", beta: float = 1.0) -> dict:
        """Teachers ranked by CAR for a student, per task type (all, A, B), from stored numbers; and the
        mixture weighted by CAR. Compute the numbers with `curate teachers` or the Teachers tab first."""
        rows = self.teacher_rows(student, scorer, beta)
        try:
            mix = teachers.format_mixture(teachers.mixture_weights_from_car(rows))
        except CurateError:
            mix = ""
        return {"ranking": rows, "mixture": mix}

    # -- selection (QDIT) and near-duplicates -------------------------------------------------------------
    MAP_POINTS = 4000  # unselected points drawn on the 2-D map (every m-th; all selected ones are drawn)

    @user_errors
    def ui_embed_start(self, source: str, tau: float, model: str) -> dict:
        """Start the background job that embeds the pool's candidates missing from the cache."""
        config = {"model": model or "all-minilm-l6-v2", "source": source or "passing", "tau": float(tau or 0)}
        job_id = jobs.start_job(self.store(), "embed", config)
        self.runner.submit(job_id)
        gr.Info(f"Job {job_id} started: the Run tab follows it.")
        return {"sel_status": f"job {job_id}: embedding the {config['source']} pool with {config['model']} "
                              "(follow it in the Run tab, then Select)", "job_id": job_id}

    @user_errors
    def ui_qdit(self, k: float, alpha: float, source: str, tau: float, quality: str, model: str) -> dict:
        """Greedy QDIT over the cached embeddings; stores the selection "qdit"; the map, the baselines and
        the picks."""
        st = self.store()
        run = select.run_selection(st, k=int(k), alpha=float(alpha), source=source or "passing",
                                   tau=float(tau or 0), quality=quality or "consensus", name="qdit",
                                   model=model or None, compute=False)
        xy = select.pca_2d(run.embeddings)
        picked = set(run.result.indices)
        step = max(1, (len(run.pool.ids) - len(picked)) // self.MAP_POINTS)
        others = [i for i in range(len(run.pool.ids)) if i not in picked][::step]
        points = pd.DataFrame(
            [{"x": float(xy[i, 0]), "y": float(xy[i, 1]), "set": "selected" if i in picked else "not selected",
              "seq": run.pool.rows[i]["seq"]} for i in [*others, *run.result.indices]],
            columns=["x", "y", "set", "seq"])
        report = pd.DataFrame([[r["method"], _num(r["mean_quality"]), _num(r["coverage"]), _num(r["mean_pairwise"])]
                               for r in run.report["rows"]],
                              columns=["method", "mean quality", "coverage F/n ↑", "mean pairwise cos ↓"])
        picks = pd.DataFrame([[str(r + 1), str(run.pool.rows[i]["seq"]), f"{g:.3f}", f"{q:.3f}",
                               run.pool.texts[i][:200]]
                              for r, (i, g, q) in enumerate(zip(run.result.indices, run.result.gains,
                                                                run.result.quality))],
                             columns=["rank", "#", "gain", "quality", "instruction (+ input)"])
        status = (f"Selected {len(picked):,} of {len(run.pool.ids):,} ({run.params['source']} pool) with α = "
                  f"{float(alpha):g}; quality: {run.pool.quality_label}; embeddings: {run.params['model']}. "
                  "Stored as the selection 'qdit' (Export → the QDIT selection).")
        return {"sel_status": status, "sel_report": report, "sel_map": points, "sel_table": picks}

    @user_errors
    def ui_dups(self, threshold: float, source: str, tau: float, quality: str, model: str) -> dict:
        """Near-duplicate groups of the pool (cached embeddings), the best-scored member of each kept."""
        groups = select.find_duplicates(self.store(), float(threshold), source=source or "all",
                                        tau=float(tau or 0), quality=quality or "consensus",
                                        model=model or None, compute=False)
        rows = [[str(g), str(m["seq"]), "keep" if m["keep"] else "near-copy",
                 _num(m["quality"]), (m["instruction"] + (" | " + m["input"] if m["input"] else ""))[:200]]
                for g, grp in enumerate(groups, start=1) for m in grp["members"]]
        copies = sum(len(g["members"]) - 1 for g in groups)
        return {"dup_status": f"{len(groups):,} groups of near-copies (cosine ≥ {float(threshold):g}): "
                              f"{copies:,} candidates would be rejected, keeping the best-scored of each group.",
                "dup_table": pd.DataFrame(rows, columns=["group", "#", "", "quality", "instruction (+ input)"]),
                "dup_groups": groups}

    @user_errors
    def ui_dups_reject(self, groups: list[dict] | None, reviewer: str, request: gr.Request = None) -> dict:
        if not groups:
            raise gr.Error("Find near-duplicates first.")
        who = self.reviewer(reviewer, request)
        res = review.reject_duplicates(self.store(), groups, reviewer=who)
        gr.Info(f"Rejected {res['rejected']} near-copies ({res['skipped']} already reviewed were left alone).")
        return {"dup_status": f"rejected {res['rejected']} near-copies as {who}; {res['skipped']} already reviewed "
                              "were left alone", "dup_groups": None}

    @user_errors
    def api_select(self, k: int, alpha: float = 0.7, source: str = "passing", tau: float = 0.01,
                   quality: str = "consensus", model: str = "") -> dict:
        """QDIT selection over cached embeddings (embed first: `curate embed` or the Select tab), stored as
        'qdit'. Returns the picked candidate ids in order and the report against the baselines."""
        run = select.run_selection(self.store(), k=int(k), alpha=float(alpha), source=source, tau=float(tau),
                                   quality=quality, name="qdit", model=model or None, compute=False)
        return {"ids": run.ids, "report": run.report, "params": run.params}

    # -- export -------------------------------------------------------------------------------------------
    @staticmethod
    def export_options(fmt: str, include: list[str] | str | None, tau: float | None, selection: str | None,
                       system: str | None, provenance: str | None) -> dict:
        return {"fmt": fmt or "alpaca-jsonl", "include": include or ("accepted",),
                "tau": float(tau if tau is not None else 0.01), "selection": (selection or "").strip() or None,
                "system": (system or "").strip() or None, "provenance": provenance or "none"}

    @staticmethod
    def ui_sync_tau(tau: float) -> dict:
        """The Export tab's τ follows the Review tab's slider (the "current threshold")."""
        return {"ex_tau": tau}

    @user_errors
    def ui_export_preview(self, fmt: str, include: list[str], tau: float, selection: str, system: str,
                          provenance: str) -> dict:
        """The first rows as they will be written and the dataset card; writes nothing."""
        o = self.export_options(fmt, include, tau, selection, system, provenance)
        rows = export.preview(self.store(), n=5, **o)
        if not rows:
            return {"ex_summary": "Nothing to export with these choices: accept candidates in the Review tab, "
                                  "or include those passing τ.", "ex_files": None, "ex_preview": "[]",
                    "ex_card": ""}
        card = export.dataset_card(self.store(), **o)
        return {"ex_summary": f"Preview of the first {len(rows)} rows as {o['fmt']} (nothing written yet).",
                "ex_files": None, "ex_preview": json.dumps(rows, ensure_ascii=False, indent=2, default=str),
                "ex_card": card}

    @user_errors
    def ui_export(self, fmt: str, include: list[str], tau: float, selection: str, system: str,
                  provenance: str) -> dict:
        """Write the export into a fresh temporary folder on the server and offer its files: the folder as
        a zip, and the data file itself when there is one."""
        o = self.export_options(fmt, include, tau, selection, system, provenance)
        folder = Path(tempfile.mkdtemp(prefix="curate-export-"))
        name = f"curate-{o['fmt']}"
        res = export.export(self.store(), out=folder / name, **o)
        archive = shutil.make_archive(str(folder / name), "zip", root_dir=folder, base_dir=name)
        files = [archive] + ([str(res.data_path)] if res.data_path.is_file() else [])
        counts = ", ".join(f"{k} {v:,}" for k, v in res.counts.items() if v)
        summary = (f"Exported {res.rows:,} rows ({counts}) as {res.format}: "
                   + ", ".join(f"{n} ({b:,} bytes)" for n, b in res.files) + ". Download below.")
        rows = export.preview(self.store(), n=5, **o)  # the first rows only; the card is the one written
        return {"ex_summary": summary, "ex_files": files,
                "ex_preview": json.dumps(rows, ensure_ascii=False, indent=2, default=str),
                "ex_card": (res.path / export.CARD).read_text(encoding="utf-8")}

    @user_errors
    def api_export_preview(self, fmt: str = "alpaca-jsonl", include: list[str] | None = None, tau: float = 0.01,
                           selection: str = "", system: str = "", provenance: str = "none", n: int = 5) -> dict:
        """The first ``n`` rows of an export exactly as they would be written, and the dataset card.
        fmt: alpaca|alpaca-jsonl|sharegpt|messages|hf|parquet; include: accepted|passing|selection."""
        o = self.export_options(fmt, include, tau, selection, system, provenance)
        rows = export.preview(self.store(), n=max(0, min(int(n), 100)), **o)
        return {"rows": rows, "card": export.dataset_card(self.store(), **o) if rows else ""}

    # -- the named API (JSON in, JSON out) ----------------------------------------------------------------
    def _api_reviewer(self, reviewer: str, request: gr.Request | None) -> str:
        user = getattr(request, "username", None) if request is not None else None
        return user or (reviewer or "").strip() or self.settings.reviewer

    @user_errors
    def api_start_job(self, kind: str = "generate", instructions: int = 20, task_type: str = "both",
                      instances: bool = True, instruction_models: str = "", instance_models: str = "",
                      ensemble_models: str = "", seed: int = 0, batch_size: int = 8,
                      temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                      max_new_tokens: int | None = None, instance_max_new_tokens: int | None = None) -> dict:
        """Start a generation or ensembling job on the server; returns the job (poll /job_status).
        Mixtures are "model[:weight],…"; empty means the settings' default. Sampling values (generation
        only) left null keep the defaults: temperature 0.7, top_k 50, top_p 1.0, 256 / 512 new tokens."""
        return self.job_status(self.start_job(kind, instructions, task_type, instances, instruction_models,
                                              instance_models, ensemble_models, seed, batch_size, temperature,
                                              top_k, top_p, max_new_tokens, instance_max_new_tokens))

    @user_errors
    def api_job_status(self, job_id: str) -> dict:
        """A job's state, progress (stage, kept, filtered by reason, tok/s, ETA) and last error."""
        return self.job_status(job_id)

    @user_errors
    def api_pause_job(self, job_id: str) -> dict:
        """Pause a running job after its current step."""
        return self.pause_job(job_id)

    @user_errors
    def api_resume_job(self, job_id: str) -> dict:
        """Resume a paused / interrupted / failed job from what is stored."""
        return self.resume_job(job_id)

    @user_errors
    def api_cancel_job(self, job_id: str) -> dict:
        """Cancel a job (stored rows stay)."""
        return self.cancel_job(job_id)

    @user_errors
    def api_queue(self, status: str = "pending", task_type: str = "", model: str = "", consensus: str = "",
                  tau: float = 0.01, search: str = "", sort: str = "seq", page: int = 1,
                  page_size: int = 50) -> dict:
        """A page of the review queue. status: pending|accepted|edited|rejected|auto-filtered|"" (any);
        consensus: pass|fail|none|""; sort: seq|-seq|min_pairwise|-min_pairwise|reviewed."""
        f = self.queue_filter(status, task_type, model, consensus, tau, search, sort)
        return review.queue_page(self.store(), f, page, max(1, min(int(page_size), 500)))

    @user_errors
    def api_candidate(self, candidate_id: str, tau: float = 0.01) -> dict:
        """One candidate: texts, every output with model and agreement, the pairwise matrix, the consensus
        choice and why, the review log. ``version`` is what accept/edit/reject/undo expect."""
        return review.candidate(self.store(), candidate_id.strip(), tau)

    @user_errors
    def api_accept(self, candidate_id: str, version: int | None = None, output_index: int | None = None,
                   reviewer: str = "", request: gr.Request = None) -> dict:
        """Accept the consensus choice (or output ``output_index``). With ``version``, a candidate someone
        else reviewed since is not overwritten (error "Conflict"). Returns the candidate as stored and the
        next pending id."""
        return self._api_result(review.accept(self.store(), candidate_id, reviewer=self._api_reviewer(
            reviewer, request), version=version, output_index=output_index))

    @user_errors
    def api_edit(self, candidate_id: str, instruction: str | None = None, input: str | None = None,
                 output: str | None = None, version: int | None = None, reviewer: str = "",
                 request: gr.Request = None) -> dict:
        """Save an edited version (fields left out keep their value; the original is kept)."""
        return self._api_result(review.edit(self.store(), candidate_id, reviewer=self._api_reviewer(
            reviewer, request), version=version, instruction=instruction, input=input, output=output))

    @user_errors
    def api_reject(self, candidate_id: str, reason: str = "", version: int | None = None, reviewer: str = "",
                   request: gr.Request = None) -> dict:
        """Reject a candidate, with an optional reason."""
        return self._api_result(review.reject(self.store(), candidate_id, reviewer=self._api_reviewer(
            reviewer, request), version=version, reason=reason))

    @user_errors
    def api_undo(self, candidate_id: str, version: int | None = None, reviewer: str = "",
                 request: gr.Request = None) -> dict:
        """Undo your latest review of a candidate (restores its previous status and texts)."""
        return self._api_result(review.undo(self.store(), candidate_id, reviewer=self._api_reviewer(
            reviewer, request), version=version))

    def _api_result(self, row: dict) -> dict:
        nxt = self.store().next_in_queue(row["seq"], status="pending")
        keep = ("id", "seq", "version", "review_status", "reviewed_by", "reviewed_at", "final_instruction",
                "final_input", "final_output")
        return {"candidate": {k: row[k] for k in keep}, "next_pending": nxt}

    @user_errors
    def api_passing_count(self, tau: float) -> dict:
        """How many ensembled candidates pass at ``tau`` (and how many of those are pending)."""
        s = review.threshold_summary(self.store(), float(tau))
        return {k: s[k] for k in ("tau", "scored", "passing", "pending_passing")}

    @user_errors
    def api_accept_all_passing(self, tau: float, expected: int | None = None, reviewer: str = "",
                               request: gr.Request = None) -> dict:
        """Accept every pending candidate passing at ``tau``. Pass ``expected`` (from /passing_count's
        pending_passing) to refuse when the count changed."""
        return review.accept_all_passing(self.store(), float(tau), reviewer=self._api_reviewer(reviewer, request),
                                         expected=expected)

    @user_errors
    def api_overview(self, tau: float = 0.01) -> dict:
        """Counts per stage and reason, per-model contribution, reviewer progress."""
        return review.overview(self.store(), float(tau))


def _default_output(d: dict) -> str:
    c = d["consensus"]
    if c and c["chosen_index"] is not None and c["chosen_index"] < len(d["outputs"]):
        return d["outputs"][c["chosen_index"]]["text"]
    return d["output"]


def heatmap(pairwise: list[list[float]], models: list[str]):
    """The pairwise Rouge-L matrix as a small table with cells shaded by value (a pandas Styler)."""
    names = [f"o{i} {m}" for i, m in enumerate(models)]
    df = pd.DataFrame([[f"{v:.2f}" for v in row] for row in pairwise], columns=[f"o{i}" for i in range(len(names))])
    df.insert(0, "", names)
    shades = pd.DataFrame([[""] + [_shade(v) for v in row] for row in pairwise], columns=df.columns)
    return df.style.apply(lambda _: shades, axis=None)


def _shade(v: float) -> str:
    v = min(max(float(v), 0.0), 1.0)
    return f"background-color: rgba(37, 99, 235, {0.08 + 0.72 * v:.2f}); color: {'white' if v > 0.6 else 'black'}"


def job_view(job: dict) -> dict:
    """A job row → the Run tab's progress fields, the same way for every stage (:func:`curate.stage.describe`)."""
    v = describe(job.get("progress"), job["state"])
    state = job["state"] + (" (no worker: resume it)" if job["state"] in ("paused", "interrupted") else "")
    err = (job.get("error") or "").strip()
    return {"job_state": state, "job_stage": v.phase, "job_rate": v.rate, "job_eta": v.eta, "job_counts": v.counts,
            "job_reasons": pd.DataFrame(v.rows, columns=["filtered / outcome", "n"]),
            "job_error": "\n".join(x for x in (err, *v.warnings) if x)}
