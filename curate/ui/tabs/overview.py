"""The Overview tab: counts per stage and reason, per-model contribution, reviewer progress.

:class:`OverviewHandlers` holds the handler, :func:`layout` the components, :func:`wire` the events.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ... import agreement, checks, review
from ...settings import Settings
from .. import live
from ..base import TabHandlers, _num, _when, plural, user_errors
from ..wiring import UI, on, tab

OVERVIEW = ["ov_notes", "ov_stages", "ov_reasons_plot", "ov_models_plot", "ov_reviewers_plot", "ov_models",
            "ov_reviewers",
            "ov_progress", "ov_agreement_text", "ov_agreement", "ov_kappa_map"]
PAIR_HEADERS = ["reviewer", "with", "shared", "agree", "observed", "Cohen's κ", "in words"]


class OverviewHandlers(TabHandlers):
    """The Overview tab's handlers."""

    @user_errors
    def ui_overview(self, tau: float) -> dict:
        ov = review.overview(self.store(), checks.tau(tau, "Overview"), members=self.ctx.team.members,
                             quorum=self.quorum)
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
                                str(m["instructions_surplus"]),
                                _num(m["instruction_keep_rate"], "{:.0%}"), str(m["candidates_ok"]),
                                str(m["passing"]), _num(m["pass_rate"], "{:.0%}"), str(m["accepted"]),
                                str(m["rejected"]), str(m["outputs"]), str(m["chosen"])] for m in ov["models"]],
                              columns=["model", "instr. kept", "instr. filtered", "instr. surplus", "keep rate",
                                       "candidates",
                                       f"pass τ={ov['tau']:.2f}", "pass rate", "accepted", "rejected",
                                       "ensemble outputs", "chosen"])
        people = pd.DataFrame([[r["reviewer"], str(r["actions"]), str(r["candidates"]), str(r["accept"]),
                                str(r["edit"]), str(r["reject"]), str(r["reset"]), _when(r["last_at"])]
                               for r in ov["reviewers"]],
                              columns=["reviewer", "actions", "candidates", "accept", "edit", "reject", "reset",
                                       "last"])
        return {"ov_stages": pd.DataFrame([[s["stage"], f"{s['n']:,}"] for s in ov["stages"]],
                                          columns=["stage", "count"]),
                "ov_reasons_plot": reasons, "ov_models_plot": gr.BarPlot(contrib, y_lim=stacked_lim(contrib)),
                "ov_reviewers_plot": reviewers, "ov_models": models, "ov_reviewers": people,
                "ov_notes": "\n".join(ov["notes"]), **self._team_frames(ov)}

    def _team_frames(self, ov: dict) -> dict:
        """Progress against each reviewer's share, and the agreement: the pairs table, Fleiss' κ in words and
        the κ heat map (reviewers × reviewers)."""
        progress = pd.DataFrame([[p["reviewer"], str(p["reviewed"]), str(p["share"]), _num(p["done"], "{:.0%}")]
                                 for p in ov["progress"]], columns=["reviewer", "reviewed", "share", "done"])
        ag = ov["agreement"]
        pairs = pd.DataFrame([[p["a"], p["b"], str(p["shared"]), str(p["agree"]), _num(p["observed"], "{:.0%}"),
                               _num(p["kappa"]), agreement.describe(p["kappa"])] for p in ag["pairs"]],
                             columns=PAIR_HEADERS)
        o = ag["overall"]
        if o["items"]:
            text = (f"Fleiss' κ = {_num(o['kappa'])} ({agreement.describe(o['kappa'])}) over "
                    f"{plural(o['items'], 'candidate')} with {o['raters_per_item']} reviews each; "
                    f"{plural(ag['items_with_overlap'], 'candidate')} "
                    f"{'has' if ag['items_with_overlap'] == 1 else 'have'} 2 or more reviews. Accept vs reject; "
                    "an edit counts as accept.")
        else:
            text = ("No candidate has two reviews yet: agreement needs overlap (reviews_per_candidate ≥ 2, "
                    "--reviews-per-candidate N).")
        return {"ov_progress": progress, "ov_agreement_text": text, "ov_agreement": pairs,
                "ov_kappa_map": kappa_map(ag)}


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Overview", "overview"):
        ui.add("overview_refresh", gr.Button("Refresh", size="sm", elem_id="curate-overview-refresh"))
        ui.add("ov_notes", gr.Textbox(label="Notes", interactive=False, lines=1, elem_id="curate-ov-notes",
                                      placeholder="surplus instructions and other counts that need a word"))
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
        ui.add("ov_progress", gr.Dataframe(interactive=False, datatype="str",
                                           label="Progress against each reviewer's share (candidates × reviews per "
                                                 "candidate ÷ reviewers)", elem_id="curate-ov-progress"))
        ui.add("ov_agreement_text", gr.Textbox(label="Agreement", interactive=False,
                                               elem_id="curate-ov-agreement-text"))
        with gr.Row():
            ui.add("ov_agreement", gr.Dataframe(headers=PAIR_HEADERS, datatype=["str"] * len(PAIR_HEADERS),
                                                interactive=False, label="Agreement per pair of reviewers",
                                                elem_id="curate-ov-agreement"))
            ui.add("ov_kappa_map", gr.Dataframe(interactive=False, datatype="str",
                                                label="Cohen's κ heat map (shared candidates in brackets)",
                                                elem_id="curate-ov-kappa-map"))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: OverviewHandlers) -> None:
    on(ui.overview_tab.select, h.ui_overview, [ui.tau], OVERVIEW, ui)
    live.on_change(ui, "data", "overview", h.ui_overview, [ui.tau], OVERVIEW)
    on(ui.overview_refresh.click, h.ui_overview, [ui.tau], OVERVIEW, ui, api="ui_overview")


def stacked_lim(df: pd.DataFrame, x: str = "model", y: str = "n") -> list[float]:
    """The y range of a stacked bar plot: up to the tallest stack (the sum over its colours) plus a margin, so
    every bar stays inside its axis."""
    top = float(df.groupby(x)[y].sum().max()) if len(df) else 0.0
    return [0.0, max(1.0, top * 1.05)]


def kappa_map(ag: dict):
    """Cohen's κ of every pair of reviewers as a reviewers × reviewers table, cells shaded by κ (a pandas
    Styler, like the Review tab's Rouge-L matrix)."""
    names = ag["reviewers"]
    if not names:
        return pd.DataFrame(columns=["reviewer"])
    cell = {(p["a"], p["b"]): p for p in ag["pairs"]}
    cell.update({(p["b"], p["a"]): p for p in ag["pairs"]})
    values, text = [], []
    for a in names:
        row_v, row_t = [], []
        for b in names:
            p = cell.get((a, b))
            k = p["kappa"] if p else None
            row_v.append(k)
            row_t.append("—" if a == b or not p or not p["shared"] else f"{_num(k, '{:.2f}')} ({p['shared']})")
        values.append(row_v)
        text.append(row_t)
    df = pd.DataFrame(text, columns=names)
    df.insert(0, "reviewer", names)
    shades = pd.DataFrame([[""] + [_shade(v) for v in row] for row in values], columns=df.columns)
    return df.style.apply(lambda _: shades, axis=None)


def _shade(k: float | None) -> str:
    if k is None:
        return ""
    v = min(max(float(k), 0.0), 1.0)
    return f"background-color: rgba(22, 163, 74, {0.08 + 0.72 * v:.2f}); color: {'white' if v > 0.6 else 'black'}"
