"""The Teachers tab: which model of the mixture teaches this student best (Compatibility-Adjusted Reward,
computed by a background job), and the generation mixture weighted by it.

:class:`TeachersHandlers` holds the handlers, :func:`layout` the components, :func:`wire` the events.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ... import jobs, quality, teachers
from ...quality import DEFAULT_SCORER
from ...settings import Settings
from .. import live
from ..base import TabHandlers, _num, info, user_errors
from ..wiring import UI, on, tab

SCORER_CHOICES = [(f"{DEFAULT_SCORER} (offline proxy: consensus agreement)", DEFAULT_SCORER),
                  ("judge:qwen2.5-0.5b-instruct (embedded judge)", "judge:qwen2.5-0.5b-instruct")]
TEACHERS = ["tch_table", "tch_chart", "tch_status"]


class TeachersHandlers(TabHandlers):
    """The Teachers tab's handlers."""

    @user_errors
    def ui_teachers_start(self, student: str, scorer: str, limit: float | None, batch_size: float | None,
                          request: gr.Request = None) -> dict:
        """Start the background job that computes the student's losses and the rewards (resumable)."""
        self.require_admin(request, "start a job")
        config = {"student": (student or "").strip() or self.settings.student_model,
                  "scorer": (scorer or "").strip() or self.settings.quality_scorer,
                  "limit": int(limit) if limit else None, "batch_size": int(batch_size or self.settings.batch_size)}
        job_id = jobs.start_job(self.store(), "teachers", config)
        self.runner.submit(job_id)
        info(f"Job {job_id} started: the Run tab follows it; the ranking fills in as it stores numbers.")
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
        info(f"Run tab mixtures set to {mix}")
        return {"job_instruction_models": mix, "job_instance_models": mix,
                "tch_status": f"generation mixture weighted by CAR: {mix} (Run tab)"}


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Teachers", "teachers"):
        gr.Markdown("Which model of the mixture teaches **this student** best? Compatibility-Adjusted Reward "
                    "(Xu et al., 2024): CAR = mean reward / (1 + β · L), L = the student's mean per-token loss on "
                    "the teacher's responses.")
        with gr.Row():
            ui.add("tch_student", gr.Textbox(settings.student_model, label="Student (model spec)",
                                             elem_id="curate-tch-student"))
            ui.add("tch_scorer", gr.Dropdown(SCORER_CHOICES, value=settings.quality_scorer, allow_custom_value=True,
                                             label="Reward (rm:<model>, judge:<model>, proxy:consensus)",
                                             elem_id="curate-tch-scorer"))
            ui.add("tch_limit", gr.Number(50, precision=0, minimum=1, label="Instances sampled",
                                          elem_id="curate-tch-limit"))
            ui.add("tch_start", gr.Button("Compute (background job)", elem_id="curate-tch-start"))
        with gr.Row():
            ui.add("tch_beta", gr.Slider(0.0, 5.0, value=settings.car_beta, step=0.05,
                                         label="β (the paper's value is not confirmed)", elem_id="curate-tch-beta"))
            ui.add("tch_type", gr.Radio([("all", "all"), ("A (needs input)", "A"), ("B (no input)", "B")],
                                        value="all", label="Task type", elem_id="curate-tch-type"))
            ui.add("tch_show", gr.Button("Show ranking", variant="primary", elem_id="curate-tch-show"))
            ui.add("tch_mix", gr.Button("Weight the generation mixture by CAR", elem_id="curate-tch-mix"))
        ui.add("tch_status", gr.Textbox(label="Status", interactive=False, elem_id="curate-tch-status"))
        with gr.Row():
            ui.add("tch_table", gr.Dataframe(interactive=False, datatype="str", label="Teachers ranked by CAR",
                                             elem_id="curate-tch-table"))
            ui.add("tch_chart", gr.BarPlot(x="teacher", y="CAR", title="CAR per teacher (this task type)",
                                           y_lim=[0, None], height=280, elem_id="curate-tch-chart"))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: TeachersHandlers) -> None:
    ranking = [ui.tch_student, ui.tch_scorer, ui.tch_beta, ui.tch_type]
    live.hurry(ui, on(ui.tch_start.click, h.ui_teachers_start,
                      [ui.tch_student, ui.tch_scorer, ui.tch_limit, ui.job_batch], ["tch_status", "job_id"], ui))
    for event in (ui.teachers_tab.select, ui.tch_show.click, ui.tch_beta.release, ui.tch_type.input):
        on(event, h.ui_teachers, ranking, TEACHERS, ui)
    live.on_change(ui, "data", "teachers", h.ui_teachers, ranking, TEACHERS)  # the job's numbers land
    on(ui.tch_mix.click, h.ui_teachers_mixture, ranking,
       ["job_instruction_models", "job_instance_models", "tch_status"], ui)
