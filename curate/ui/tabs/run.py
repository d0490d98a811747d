"""The Run tab: start a generation or ensembling job on the server, follow its progress (refreshed when a job
moves: curate.ui.live), pause / resume / cancel it, and the list of jobs. A page (re)loaded while a job is active
shows that job, and its form the job's settings.

:class:`RunHandlers` holds the handlers (the job helpers ``start_job``, ``job_status``, ``pause_job``…
also back the API), :func:`job_view` turns a job row into the progress fields, :func:`layout` holds the
components and :func:`wire` the events.
"""

from __future__ import annotations

from typing import Callable

import gradio as gr
import pandas as pd

from ... import jobs
from ...ensemble import EnsembleConfig
from ...errors import CurateError, InputError, JobRunningError
from ...generate import INSTANCE_PARAMS, INSTRUCTION_PARAMS, GenerateConfig, sampling
from ...mixture import parse_mixture
from ...settings import Settings
from ...stage import describe
from ...store import ACTIVE_JOB_STATES
from ...teachers import format_mixture
from .. import live
from ..base import TabHandlers, _when, as_gr_error, info, safe, user_errors, warn
from ..wiring import UI, on, tab

JOB_HEADERS = ["job", "kind", "state", "stage", "created", "error"]
#: the job form, in the order of ``ui_start_job``'s parameters (then ``job_alongside``, which is not restored)
FORM = ["job_kind", "job_instructions", "job_task_type", "job_instances", "job_instruction_models",
        "job_instance_models", "job_ensemble_models", "job_seed", "job_batch", "job_temperature", "job_top_k",
        "job_top_p", "job_max_tokens", "job_instance_max_tokens"]
#: The form's fields of one kind of job only (the other kind's are hidden).
GENERATE_FIELDS = ["job_instructions", "job_task_type", "job_instances", "job_instruction_models",
                   "job_instance_models", "job_sampling"]
ENSEMBLE_FIELDS = ["job_ensemble_models"]
JOB = ["job_state", "job_stage", "job_rate", "job_eta", "job_counts", "job_reasons", "job_error", "jobs"]


class RunHandlers(TabHandlers):
    """The Run tab's handlers."""

    def start_job(self, kind: str, instructions: int = 20, task_type: str = "both", instances: bool = True,
                  instruction_models: str = "", instance_models: str = "", ensemble_models: str = "",
                  seed: int = 0, batch_size: int | None = None, temperature: float | None = None,
                  top_k: int | None = None, top_p: float | None = None, max_new_tokens: int | None = None,
                  instance_max_new_tokens: int | None = None, *, allow_concurrent: bool = False) -> str:
        """Create a job from the Run tab's values and start it on the runner. Returns its id. Sampling
        values left None keep the reference defaults. The stage's preflight resolves every model first;
        a job of the same kind already active refuses it (JobRunningError) unless ``allow_concurrent``."""
        s = self.settings
        if kind == "generate":
            config = GenerateConfig(
                instructions=target(instructions), task_type=task_type, instances=bool(instances),
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
            raise gr.Error(safe(f"unknown job kind {kind!r}: generate or ensemble"))
        job_id = jobs.start_job(self.store(), kind, config, allow_concurrent=allow_concurrent)
        self.runner.submit(job_id)
        return job_id

    @user_errors
    def ui_start_job(self, kind: str, instructions: float | None, task_type: str, instances: bool,
                     instruction_models: str, instance_models: str, ensemble_models: str, seed: float,
                     batch_size: float, temperature: float | None = None, top_k: float | None = None,
                     top_p: float | None = None, max_new_tokens: float | None = None,
                     instance_max_new_tokens: float | None = None, alongside: bool = False,
                     request: gr.Request = None) -> dict:
        """Start button. A form that cannot work (no target, a model that does not resolve) is refused with
        the field to fix; a job of the same kind already active is named in a warning and stays in view (its
        progress fills the panel) unless "Run alongside" is ticked."""
        self.require_admin(request, "start a job")

        def opt_int(v):
            return None if v is None else int(v)
        try:
            job_id = self.start_job(kind, instructions, task_type, instances, instruction_models,
                                    instance_models, ensemble_models, int(seed or 0), int(batch_size or 1),
                                    temperature, opt_int(top_k), top_p, opt_int(max_new_tokens),
                                    opt_int(instance_max_new_tokens), allow_concurrent=bool(alongside))
        except JobRunningError as e:
            warn(str(e))
            out = self.ui_job_status(e.job_id)
            out["job_id"] = e.job_id
            return out
        info(f"Job {job_id} started: it runs on the server, closing this tab does not stop it.")
        out = self.ui_job_status(job_id)
        out["job_id"] = job_id
        return out

    def ui_job_kind(self, kind: str) -> dict:
        """The form shows the chosen kind's fields only (the ensemble form has no generation fields)."""
        gen = kind != "ensemble"
        return {name: gr.update(visible=gen) for name in GENERATE_FIELDS} | {
            name: gr.update(visible=not gen) for name in ENSEMBLE_FIELDS}

    def job_status(self, job_id: str) -> dict:
        """The job row with its progress, plus ``running`` (whether a worker of this server runs it)."""
        job = self.store().get_job(job_id.strip())
        return {**job, "running": job["id"] in self.runner.running()}

    def ui_job_status(self, job_id: str | None) -> dict:
        """The Run tab's progress fields for ``job_id`` (and the job list); refreshed whenever a job moves
        (curate.ui.live)."""
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
        """Run a paused, interrupted or failed job again: it continues from what is stored. A job still
        pausing goes on (the pause is withdrawn; a worker that stopped meanwhile runs it again); a running or
        queued one is left as it is."""
        st = self.store()
        job = st.get_job(job_id)
        if job["state"] in ("done", "cancelled", "cancelling"):
            raise gr.Error(f"job {job_id} is {job['state']}: start a new job instead")
        if jobs.withdraw_pause(st, job_id):
            if job_id not in self.runner.running() and st.job_state(job_id) == "running":
                self.runner.submit(job_id)  # its worker was gone (a pause requested from another process)
            return self.job_status(job_id)
        if job["state"] in ("running", "queued"):
            return self.job_status(job_id)  # nothing to resume: it runs (or waits for its worker)
        # paused, interrupted or failed; a worker still finishing the pause runs it again when it is through
        self.runner.submit(job_id, again=job_id in self.runner.running())
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
            raise as_gr_error(e) from e
        return self.ui_job_status(jid)

    def ui_pause(self, job_id: str, request: gr.Request = None) -> dict:
        self.require_admin(request, "pause a job")
        return self._job_action(self.pause_job, job_id)

    def ui_resume(self, job_id: str, request: gr.Request = None) -> dict:
        self.require_admin(request, "resume a job")
        return self._job_action(self.resume_job, job_id)

    def ui_cancel(self, job_id: str, request: gr.Request = None) -> dict:
        self.require_admin(request, "cancel a job")
        return self._job_action(self.cancel_job, job_id)

    def ui_run_load(self) -> dict:
        """The page (re)loads: follow the newest active job, if any, with the form showing its settings (a
        generation or ensembling job's); else the form keeps its defaults."""
        active = self._active_job()
        out = self.ui_follow("")
        out.update(form_from_config(active["kind"], active["config"]) if active else {})
        return {n: out.get(n, gr.skip()) for n in ["job_id", *JOB, *FORM]}

    def ui_follow(self, job_id: str | None) -> dict:
        """The Run tab is shown: the job it follows, or, when it follows none yet, the newest active job."""
        jid = (job_id or "").strip()
        active = None if jid else self._active_job()
        out = self.ui_job_status(jid or (active["id"] if active else ""))
        out["job_id"] = active["id"] if active else gr.skip()
        return out

    def _active_job(self) -> dict | None:
        return next((j for j in self.store().list_jobs(limit=50) if j["state"] in ACTIVE_JOB_STATES), None)

    def ui_job_select(self, evt: gr.SelectData) -> dict:
        row = evt.row_value or []
        out = self.ui_job_status(row[0] if row else "")
        out["job_id"] = row[0] if row else ""
        return out


#: What a state reads as in the Run tab, where the bare name would not say enough.
STATE_TEXT = {"pausing": "pausing… (it stops at its next generation step; Resume keeps it running)",
              "cancelling": "cancelling… (it stops at its next generation step)",
              "paused": "paused (no worker: resume it)", "interrupted": "interrupted (no worker: resume it)",
              "queued": "queued (waits for the job before it)"}


def target(value: float | str | None) -> int:
    """The Run form's target of kept instructions: a whole number ≥ 1. Raises InputError naming the field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError("Kept instructions (target in the store): enter a number of at least 1; the field is "
                         "empty")
    try:
        n = float(value)
    except (TypeError, ValueError):
        raise InputError(f"Kept instructions (target in the store): {value!r} is not a number; enter a whole "
                         "number of at least 1") from None
    if n < 1 or n != int(n):
        raise InputError(f"Kept instructions (target in the store): enter a whole number of at least 1 "
                         f"(got {value:g})")
    return int(n)


def job_view(job: dict) -> dict:
    """A job row → the Run tab's progress fields, the same way for every stage (:func:`curate.stage.describe`)."""
    v = describe(job.get("progress"), job["state"])
    state = STATE_TEXT.get(job["state"], job["state"])
    err = (job.get("error") or "").strip()
    return {"job_state": state, "job_stage": v.phase, "job_rate": v.rate, "job_eta": v.eta, "job_counts": v.counts,
            "job_reasons": pd.DataFrame(v.rows, columns=["filtered / outcome", "n"]),
            "job_error": "\n".join(x for x in (err, *v.warnings) if x)}


def form_from_config(kind: str, config: dict) -> dict:
    """A stored generation or ensembling job's config → the Run form's values (other kinds: nothing)."""
    if kind == "ensemble":
        return {"job_kind": "ensemble", "job_ensemble_models": ",".join(config.get("models") or []),
                "job_batch": config.get("batch_size")}
    if kind != "generate":
        return {}
    c = GenerateConfig.model_validate(config)
    ip, xp = c.instruction_params, c.instance_params
    return {"job_kind": "generate", "job_instructions": c.instructions, "job_task_type": c.task_type,
            "job_instances": c.instances, "job_instruction_models": format_mixture(c.instruction_models),
            "job_instance_models": format_mixture(c.instance_models), "job_seed": c.seed,
            "job_batch": c.batch_size, "job_temperature": ip.temperature, "job_top_k": ip.top_k,
            "job_top_p": ip.top_p, "job_max_tokens": ip.max_new_tokens,
            "job_instance_max_tokens": xp.max_new_tokens}


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Run", "run"):
        with gr.Row():
            with gr.Column(scale=2):
                _job_form(ui, settings)
            with gr.Column(scale=3):
                _job_progress(ui)
        ui.add("jobs", gr.Dataframe(headers=JOB_HEADERS, datatype=["str"] * len(JOB_HEADERS), interactive=False,
                                    max_height=260, label="Jobs (click one to follow it; they keep running when "
                                                          "the tab closes)", elem_id="curate-jobs"))


def _job_form(ui: UI, settings: Settings) -> None:
    ui.add("job_kind", gr.Radio([("Generate instructions + instances", "generate"),
                                 ("Ensemble outputs + consensus", "ensemble")], value="generate",
                                label="Job", elem_id="curate-job-kind"))
    with gr.Row():
        ui.add("job_instructions", gr.Number(20, label="Kept instructions (target in the store)",
                                             precision=0, minimum=1, elem_id="curate-job-n"))
        ui.add("job_task_type", gr.Radio([("both", "both"), ("A", "A"), ("B", "B")], value="both",
                                         label="Task type", elem_id="curate-job-type"))
        ui.add("job_instances", gr.Checkbox(True, label="Also generate instances"))
    ui.add("job_instruction_models", gr.Textbox(",".join(settings.instruction_models),
                                                label="Instruction mixture (model[:weight], …)",
                                                elem_id="curate-job-imodels"))
    ui.add("job_instance_models", gr.Textbox(",".join(settings.instance_models),
                                             label="Instance mixture (model[:weight], …)",
                                             elem_id="curate-job-xmodels"))
    ui.add("job_ensemble_models", gr.Textbox(",".join(settings.ensemble_models),
                                             label="Ensembling models (comma-separated)", visible=False,
                                             elem_id="curate-job-emodels"))
    with gr.Row():
        ui.add("job_seed", gr.Number(settings.seed, label="Sampling seed", precision=0))
        ui.add("job_batch", gr.Number(settings.batch_size, label="Batch size", precision=0, minimum=1))
    with ui.add("job_sampling", gr.Accordion("Sampling (generation jobs)", open=False,
                                              elem_id="curate-job-sampling")):
        with gr.Row():
            ui.add("job_temperature", gr.Number(INSTRUCTION_PARAMS.temperature, minimum=0, maximum=5,
                                                step=0.05, label="Temperature (0 = greedy)",
                                                elem_id="curate-job-temperature"))
            ui.add("job_top_k", gr.Number(INSTRUCTION_PARAMS.top_k, precision=0, minimum=0,
                                          label="Top-k (0 = off)", elem_id="curate-job-top-k"))
            ui.add("job_top_p", gr.Number(INSTRUCTION_PARAMS.top_p, minimum=0.01, maximum=1, step=0.05,
                                          label="Top-p", elem_id="curate-job-top-p"))
        with gr.Row():
            ui.add("job_max_tokens", gr.Number(INSTRUCTION_PARAMS.max_new_tokens, precision=0, minimum=1,
                                               label="Max new tokens per instruction completion",
                                               elem_id="curate-job-max-tokens"))
            ui.add("job_instance_max_tokens", gr.Number(
                INSTANCE_PARAMS.max_new_tokens, precision=0, minimum=1,
                label="Max new tokens per instance completion", elem_id="curate-job-instance-max-tokens"))
    ui.add("job_alongside", gr.Checkbox(False, label="Run alongside the running job of this kind",
                                        info="off: a second job of a kind is refused while one is active",
                                        elem_id="curate-job-alongside"))
    ui.add("job_start", gr.Button("Start job", variant="primary", elem_id="curate-job-start"))


def _job_progress(ui: UI) -> None:
    with gr.Row(equal_height=True):
        ui.add("job_id", gr.Textbox(label="Job id", elem_id="curate-job-id", scale=2,
                                    placeholder="start a job or click one below"))
        ui.add("job_pause", gr.Button("Pause", elem_id="curate-job-pause", scale=0, min_width=90))
        ui.add("job_resume", gr.Button("Resume", elem_id="curate-job-resume", scale=0, min_width=90))
        ui.add("job_cancel", gr.Button("Cancel", variant="stop", elem_id="curate-job-cancel", scale=0,
                                       min_width=90))
    with gr.Row():
        ui.add("job_state", gr.Textbox(label="State", interactive=False, elem_id="curate-job-state"))
        ui.add("job_stage", gr.Textbox(label="Stage", interactive=False, elem_id="curate-job-stage"))
        ui.add("job_rate", gr.Textbox(label="Rate", interactive=False, elem_id="curate-job-rate"))
        ui.add("job_eta", gr.Textbox(label="ETA", interactive=False, elem_id="curate-job-eta"))
    ui.add("job_counts", gr.Textbox(label="Progress", interactive=False, elem_id="curate-job-counts"))
    ui.add("job_reasons", gr.Dataframe(headers=["filtered / outcome", "n"], datatype=["str", "str"],
                                       interactive=False, max_height=200, label="Kept / filtered by reason",
                                       elem_id="curate-job-reasons"))
    ui.add("job_error", gr.Textbox(label="Last error / warnings", interactive=False, lines=2,
                                   max_lines=8, elem_id="curate-job-error"))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: RunHandlers) -> None:
    job_inputs = [*(ui.c[n] for n in FORM), ui.job_alongside]
    live.hurry(ui, on(ui.job_start.click, h.ui_start_job, job_inputs, ["job_id", *JOB], ui, api="ui_start_job"))
    on(ui.job_kind.change, h.ui_job_kind, [ui.job_kind], [*GENERATE_FIELDS, *ENSEMBLE_FIELDS], ui,
       progress="hidden")
    on(ui.run_tab.select, h.ui_follow, [ui.job_id], ["job_id", *JOB], ui, progress="hidden")
    live.on_change(ui, "jobs", "run", h.ui_job_status, [ui.job_id], JOB)
    on(ui.page_load.then, h.ui_run_load, [], ["job_id", *JOB, *FORM], ui, progress="hidden")
    on(ui.job_id.submit, h.ui_job_status, [ui.job_id], JOB, ui)
    on(ui.job_pause.click, h.ui_pause, [ui.job_id], JOB, ui)
    live.hurry(ui, on(ui.job_resume.click, h.ui_resume, [ui.job_id], JOB, ui))
    on(ui.job_cancel.click, h.ui_cancel, [ui.job_id], JOB, ui)
    on(ui.jobs.select, h.ui_job_select, [], ["job_id", *JOB], ui)
