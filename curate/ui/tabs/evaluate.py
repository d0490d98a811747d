"""The Evaluate tab: start a closed-loop experiment (train the student on each arm's training set, evaluate it on
held-out instructions, as a background job), then read its table, a bar chart with 95% error bars, and every
example's predictions side by side (the base model and each arm, the reference beside them).

:class:`EvaluateHandlers` holds the handlers, :func:`layout` the components, :func:`wire` the events. Model text
only goes into the string Dataframe; the chart is SVG drawn here from numbers and escaped arm names.
"""

from __future__ import annotations

import html
import time

import gradio as gr
import pandas as pd

from ... import evaluate as ev
from ... import experiment, jobs
from ...errors import ExperimentRunning
from ...settings import Settings
from .. import live
from ..base import TabHandlers, plural, user_errors
from ..wiring import UI, on, tab

ARM_CHOICES = ["random", "all", "passing@0.01", "accepted", "qdit:0.7"]
EXPERIMENT = ["exp_table", "exp_chart", "exp_predictions", "exp_status"]


def error_bar_svg(table: dict, metric: str, *, width: int = 640, bar_h: int = 26) -> str:
    """A horizontal bar per row of the table (its mean of ``metric``) with its 95% interval as an error bar, on a
    0–100 axis; arm names are escaped."""
    rows = [r for r in table["rows"] if r.get(metric, {}).get("mean") is not None]
    left, right, top = 180, 20, 24
    height = top + bar_h * len(rows) + 24
    scale = (width - left - right) / 100.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(metric)} per arm with 95% intervals" font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="14" fill="#374151">{html.escape(metric)} (mean, 95% CI)</text>']
    for i, r in enumerate(rows):
        y = top + i * bar_h
        m = r[metric]
        w = max(0.0, min(100.0, m["mean"])) * scale
        colour = "#9ca3af" if r["arm"].startswith("base") else "#2563eb"
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" fill="#111827">'
                     f'{html.escape(r["arm"])}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{bar_h - 10}" fill="{colour}"/>')
        if m.get("ci"):
            lo, hi = (left + max(0.0, min(100.0, v)) * scale for v in m["ci"])
            mid = y + bar_h / 2
            parts.append(f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{mid:.1f}" y2="{mid:.1f}" stroke="#111827" '
                         'stroke-width="1.5"/>')
            parts += [f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}" stroke="#111827" '
                      'stroke-width="1.5"/>' for x in (lo, hi)]
        label_x = left + w + 6
        if m.get("ci"):  # right of the interval's upper cap, which it would overlap otherwise
            label_x = max(label_x, left + max(0.0, min(100.0, m["ci"][1])) * scale + 6)
        parts.append(f'<text x="{label_x:.1f}" y="{y + 16}" fill="#374151">{m["mean"]:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def prediction_widths(columns: list[str]) -> list[str]:
    """Column widths of the side-by-side predictions: narrow id, the instruction and input wide enough to read,
    and the reference and every model's prediction sharing the rest equally (so no arm is pushed out of view)."""
    fixed = {"id": 8, "instruction": 22, "input": 18}
    rest = [c for c in columns if c not in fixed]
    share = (100 - sum(fixed[c] for c in columns if c in fixed)) / max(1, len(rest))
    return [f"{fixed.get(c, share):.1f}%" for c in columns]


def table_frame(table: dict) -> pd.DataFrame:
    """The experiment's table as strings: per arm its rows, seeds, and per metric mean [CI] and Δ vs random (p)."""
    cols = ["arm", "train rows", "seeds"]
    for m in table["metrics"]:
        cols += [f"{m} [95% CI]", f"{m} vs random (p)"]
    out = []
    for r in table["rows"]:
        cells = [r["arm"], str(r["train_rows"]), str(r["seeds"])]
        for m in table["metrics"]:
            v, vs = r[m], r[m].get("vs_random")
            ci = f" [{v['ci'][0]:.1f}, {v['ci'][1]:.1f}]" if v.get("ci") else ""
            cells += ["—" if v["mean"] is None else f"{v['mean']:.2f}{ci}",
                      f"{vs['delta']:+.2f} ({vs['p']:.3f})" if vs else ""]
        out.append(cells)
    return pd.DataFrame(out, columns=cols)


class EvaluateHandlers(TabHandlers):
    """The Evaluate tab's handlers."""

    @user_errors
    def ui_experiment_start(self, base: str, evalset: str, budget: float | None, arms: list[str] | None,
                            extra_arms: str, seeds: float | None, max_steps: float | None,
                            eval_limit: float | None, folder: str, max_new_tokens: float | None = None,
                            batch_size: float | None = None, max_length: float | None = None, full: bool = False,
                            request: gr.Request = None) -> dict:
        """Start an experiment as a background job (admins, when the app has roles); its folder is shown to read it
        back. Blank numbers take the experiment's defaults (:class:`curate.experiment.Config`)."""
        self.require_admin(request, "start a job")
        arm_list = [*(arms or []), *[a.strip() for a in (extra_arms or "").split(",") if a.strip()]]
        out = (folder or "").strip() or f"data/experiments/{time.strftime('%Y%m%d-%H%M%S')}"
        config = {"base": (base or "").strip() or self.settings.student_model,
                  "evalset": (evalset or "").strip() or "sni-sample",
                  "budget": int(budget or 200), "arms": arm_list, "seeds": int(seeds or 2),
                  "max_steps": int(max_steps) if max_steps else None,
                  "eval_limit": int(eval_limit) if eval_limit else None, "out": out, "full": bool(full),
                  **{k: int(v) for k, v in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size),
                                            ("max_length", max_length)) if v}}
        job_id = jobs.start_job(self.store(), "experiment", config)
        self.runner.submit(job_id)
        return {"exp_status": f"job {job_id}: training and evaluating {plural(len(arm_list), 'arm')} × "
                              f"{plural(config['seeds'], 'seed')} into {out} (the Run tab follows it; Show reads "
                              "the table when it is done)",
                "exp_folder": out, "job_id": job_id}

    @user_errors
    def ui_experiment_show(self, folder: str, metric: str | None = None) -> dict:
        """The table, the chart with error bars and the predictions side by side of the experiment in ``folder``."""
        folder = (folder or "").strip()
        try:
            table = experiment.load_report(folder, self.store())
        except ExperimentRunning as e:  # not an error: the status says how far it is, the results stay
            return {"exp_status": str(e), **{k: gr.update() for k in EXPERIMENT if k != "exp_status"}}
        metric = metric if metric in table["metrics"] else table["metrics"][0]
        preds = experiment.side_by_side(folder)
        cols = list(preds[0]) if preds else ["id"]
        notes = "; ".join(table["notes"])
        return {"exp_table": table_frame(table), "exp_chart": error_bar_svg(table, metric),
                "exp_predictions": gr.update(value=pd.DataFrame([[str(p[c]) for c in cols] for p in preds],
                                                         columns=cols), column_widths=prediction_widths(cols)),
                "exp_status": f"{table['evalset']}, student {table['base']}, {plural(table['budget'], 'row')} per arm"
                              + (f" — {notes}" if notes else "")
                              + ". A curated arm that does not beat random is a finding, not a failure."}


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Evaluate", "evaluate"):
        with gr.Row():
            with gr.Column(scale=2):
                ui.add("exp_base", gr.Textbox(settings.student_model, label="Student (base model)",
                                              elem_id="curate-exp-base"))
                sets = [(f"{r['name']} ({plural(r['rows'], 'row')})", r["name"]) for r in ev.list_evalsets()
                        if r["references"]]
                ui.add("exp_set", gr.Dropdown(sets, value="sni-sample", allow_custom_value=True,
                                              label="Evaluation set (evaluation only): a shipped one, or the path "
                                                    "of a JSONL file with instruction, input, reference(s)",
                                              elem_id="curate-exp-set"))
                ui.add("exp_arms", gr.CheckboxGroup(ARM_CHOICES, value=["random", "passing@0.01", "qdit:0.7"],
                                                    label="Arms (each an equal-size training set)",
                                                    elem_id="curate-exp-arms"))
                ui.add("exp_extra", gr.Textbox(label="More arms (comma-separated: passing@TAU, qdit:ALPHA, "
                                                     "teacher:NAME)", elem_id="curate-exp-extra"))
                with gr.Row():
                    ui.add("exp_budget", gr.Number(200, label="Rows per arm", precision=0, minimum=1,
                                                  elem_id="curate-exp-budget"))
                    ui.add("exp_seeds", gr.Number(2, label="Seeds", precision=0, minimum=1,
                                                  elem_id="curate-exp-seeds"))
                    ui.add("exp_steps", gr.Number(0, label="Max steps (0: one epoch)", precision=0, minimum=0,
                                                  elem_id="curate-exp-steps"))
                    ui.add("exp_limit", gr.Number(0, label="Eval rows (0: all)", precision=0, minimum=0,
                                                  elem_id="curate-exp-limit"))
                with gr.Accordion("Training and generation", open=False):
                    with gr.Row():
                        ui.add("exp_new_tokens", gr.Number(128, label="Max new tokens per prediction", precision=0,
                                                           minimum=1, elem_id="curate-exp-new-tokens"))
                        ui.add("exp_batch", gr.Number(4, label="Batch size", precision=0, minimum=1,
                                                      elem_id="curate-exp-batch"))
                        ui.add("exp_max_length", gr.Number(512, label="Max length (tokens per example)",
                                                           precision=0, minimum=16, elem_id="curate-exp-max-length"))
                    ui.add("exp_full", gr.Checkbox(False, label="Train all weights (no LoRA; needs more memory)",
                                                   elem_id="curate-exp-full"))
                ui.add("exp_folder", gr.Textbox(label="Experiment folder (blank: a new one under data/experiments)",
                                                elem_id="curate-exp-folder"))
                with gr.Row():
                    ui.add("exp_start", gr.Button("Start experiment", variant="primary", elem_id="curate-exp-start"))
                    ui.add("exp_show", gr.Button("Show results", elem_id="curate-exp-show"))
            with gr.Column(scale=3):
                ui.add("exp_status", gr.Textbox(label="Status", interactive=False, elem_id="curate-exp-status"))
                ui.add("exp_metric", gr.Radio(list(ev.REFERENCE_METRICS), value="rouge_l", label="Chart metric"))
                ui.add("exp_chart", gr.HTML(elem_id="curate-exp-chart"))
                ui.add("exp_table", gr.Dataframe(interactive=False, wrap=True, label="Arms (mean [95% CI]; Δ vs "
                                                 "random with a paired bootstrap p)", elem_id="curate-exp-table"))
        ui.add("exp_predictions", gr.Dataframe(interactive=False, wrap=True, max_height=420,
                                               label="Predictions side by side (seed 0)",
                                               elem_id="curate-exp-predictions"))


def wire(ui: UI, h: EvaluateHandlers) -> None:
    on(ui.exp_start.click, h.ui_experiment_start,
       [ui.exp_base, ui.exp_set, ui.exp_budget, ui.exp_arms, ui.exp_extra, ui.exp_seeds, ui.exp_steps, ui.exp_limit,
        ui.exp_folder, ui.exp_new_tokens, ui.exp_batch, ui.exp_max_length, ui.exp_full],
       ["exp_status", "exp_folder", "job_id"], ui)
    for event in (ui.exp_show.click, ui.exp_metric.input):
        on(event, h.ui_experiment_show, [ui.exp_folder, ui.exp_metric], EXPERIMENT, ui)
    # while the tab is shown, the experiment's progress and, once done, its table follow the job (no folder yet:
    # nothing to show, and a background refresh never toasts)
    live.on_change(ui, "jobs", "evaluate", h.ui_experiment_show, [ui.exp_folder, ui.exp_metric], EXPERIMENT)
