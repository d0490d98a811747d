"""The Overview tab: counts per stage and reason, per-model contribution, reviewer progress.

:class:`OverviewHandlers` holds the handler, :func:`layout` the components, :func:`wire` the events.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ... import review
from ...settings import Settings
from ..base import TabHandlers, _num, _when, user_errors
from ..wiring import UI, on, tab

OVERVIEW = ["ov_stages", "ov_reasons_plot", "ov_models_plot", "ov_reviewers_plot", "ov_models", "ov_reviewers"]


class OverviewHandlers(TabHandlers):
    """The Overview tab's handlers."""

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


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Overview", "overview"):
        ui.add("overview_refresh", gr.Button("Refresh", size="sm", elem_id="curate-overview-refresh"))
        with gr.Row():
            ui.add("ov_stages", gr.Dataframe(headers=["stage", "count"], datatype=["str", "str"], interactive=False,
                                             label="Counts per stage", max_height=560, elem_id="curate-ov-stages"))
            ui.add("ov_reasons_plot", gr.BarPlot(x="reason", y="n", color="stage", title="Filtered, by reason",
                                                 x_label_angle=-30, height=300, elem_id="curate-ov-reasons"))
        with gr.Row():
            ui.add("ov_models_plot", gr.BarPlot(x="model", y="n", color="what", title="Per-model contribution",
                                                height=300, elem_id="curate-ov-models-plot"))
            ui.add("ov_reviewers_plot", gr.BarPlot(x="reviewer", y="n", color="action", title="Reviewer progress",
                                                   height=300, elem_id="curate-ov-reviewers-plot"))
        ui.add("ov_models", gr.Dataframe(interactive=False, datatype="str", label="Per model (keep / pass rates)",
                                         elem_id="curate-ov-models"))
        ui.add("ov_reviewers", gr.Dataframe(interactive=False, datatype="str", label="Reviewers",
                                            elem_id="curate-ov-reviewers"))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: OverviewHandlers) -> None:
    on(ui.overview_tab.select, h.ui_overview, [ui.tau], OVERVIEW, ui)
    on(ui.overview_refresh.click, h.ui_overview, [ui.tau], OVERVIEW, ui, api="ui_overview")
