"""The Select tab: quality-diversity selection (QDIT) over cached embeddings (embedded by a background job),
its 2-D map and baselines, and near-duplicate groups (reject the near-copies).

:class:`SelectHandlers` holds the handlers, :func:`layout` the components, :func:`wire` the events.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ... import checks, jobs, review, select
from ...errors import NotEmbedded
from ...settings import Settings
from ..base import TabHandlers, _num, info, plural, user_errors
from ..wiring import UI, on, tab
from . import review as review_tab

QUALITY_CHOICES = [("consensus agreement (proxy)", "consensus"), ("consensus min pairwise (proxy)",
                                                                    "consensus:min_pairwise"),
                   ("none (diversity only)", "none")]
EMBEDDER_CHOICES = [("all-MiniLM-L6-v2 (default, 384-d)", "all-minilm-l6-v2"),
                    ("all-mpnet-base-v2 (the paper's, 768-d, slower)", "all-mpnet-base-v2")]
SELECT = ["sel_status", "sel_report", "sel_map", "sel_table", "sel_embed_offer"]
DUPS = ["dup_status", "dup_table", "dup_groups", "sel_embed_offer"]
START = ["sel_status", "job_id", "sel_embed_offer"]


class SelectHandlers(TabHandlers):
    """The Select tab's handlers."""

    MAP_POINTS = 4000  # unselected points drawn on the 2-D map (every m-th; all selected ones are drawn)

    @user_errors
    def ui_embed_start(self, source: str, tau: float, model: str, request: gr.Request = None) -> dict:
        """Start the background job that embeds the pool's candidates missing from the cache."""
        self.require_admin(request, "start a job")
        config = {"model": model or "all-minilm-l6-v2", "source": source or "passing",
                  "tau": checks.tau(tau or 0, "Select tab")}
        job_id = jobs.start_job(self.store(), "embed", config)
        self.runner.submit(job_id)
        info(f"Job {job_id} started: the Run tab follows it.")
        return {"sel_status": f"job {job_id}: embedding the {config['source']} pool with {config['model']} "
                              "(follow it in the Run tab, then Select)", "job_id": job_id,
                "sel_embed_offer": gr.update(visible=False)}

    @staticmethod
    def _offer(e: NotEmbedded) -> dict:
        """Select or near-duplicates before the pool is embedded: say so once, in the status, and offer the
        button that starts the embedding job (no toast, no command to type)."""
        return {"message": f"{e.missing:,} of {e.total:,} candidates of the {e.source} pool have no {e.model} "
                           "embedding of their current text yet. Press \"Embed them now\" to start the embedding "
                           "job (the Run tab follows it), then try again.",
                "sel_embed_offer": gr.update(visible=True)}

    @user_errors
    def ui_qdit(self, k: float, alpha: float, source: str, tau: float, quality: str, model: str) -> dict:
        """Greedy QDIT over the cached embeddings; stores the selection "qdit"; the map, the baselines and
        the picks."""
        st = self.store()
        try:
            run = select.run_selection(st, k=int(k), alpha=float(alpha), source=source or "passing",
                                       tau=checks.tau(tau or 0, "Select tab"), quality=quality or "consensus",
                                       name="qdit", model=model or None, compute=False)
        except NotEmbedded as e:
            offer = self._offer(e)
            return {"sel_status": offer["message"], "sel_report": gr.skip(), "sel_map": gr.skip(),
                    "sel_table": gr.skip(), "sel_embed_offer": offer["sel_embed_offer"]}
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
        return {"sel_status": status, "sel_report": report, "sel_map": points, "sel_table": picks,
                "sel_embed_offer": gr.update(visible=False)}

    @user_errors
    def ui_dups(self, threshold: float, source: str, tau: float, quality: str, model: str) -> dict:
        """Near-duplicate groups of the pool (cached embeddings), the best-scored member of each kept."""
        try:
            groups = select.find_duplicates(self.store(), float(threshold), source=source or "all",
                                            tau=checks.tau(tau or 0, "Select tab"), quality=quality or "consensus",
                                            model=model or None, compute=False)
        except NotEmbedded as e:
            offer = self._offer(e)
            return {"dup_status": offer["message"], "dup_table": gr.skip(), "dup_groups": None,
                    "sel_embed_offer": offer["sel_embed_offer"]}
        rows = [[str(g), str(m["seq"]), "keep" if m["keep"] else "near-copy",
                 _num(m["quality"]), (m["instruction"] + (" | " + m["input"] if m["input"] else ""))[:200]]
                for g, grp in enumerate(groups, start=1) for m in grp["members"]]
        copies = sum(len(g["members"]) - 1 for g in groups)
        return {"dup_status": f"{plural(len(groups), 'group')} of near-copies (cosine ≥ {float(threshold):g}): "
                              f"{plural(copies, 'candidate')} would be rejected, keeping the best-scored of each "
                              "group.",
                "dup_table": pd.DataFrame(rows, columns=["group", "#", "", "quality", "instruction (+ input)"]),
                "dup_groups": groups, "sel_embed_offer": gr.update(visible=False)}

    @user_errors
    def ui_dups_reject(self, groups: list[dict] | None, reviewer: str, request: gr.Request = None) -> dict:
        self.require_admin(request, "reject near-duplicates")
        if not groups:
            raise gr.Error("Find near-duplicates first.")
        who = self.reviewer(reviewer, request)
        res = review.reject_duplicates(self.store(), groups, reviewer=who, quorum=self.quorum)
        info(f"Rejected {res['rejected']} near-copies ({res['skipped']} already reviewed were left alone).")
        return {"dup_status": f"rejected {res['rejected']} near-copies as {who}; {res['skipped']} already reviewed "
                              "were left alone", "dup_groups": None}


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI, settings: Settings) -> None:
    with tab(ui, "Select", "select"):
        gr.Markdown("Quality-diversity selection (QDIT, Bukharin & Zhao 2023): greedily add the candidate with "
                    "the largest (1−α)·coverage gain + α·quality. Embed the pool once (cached), then move the "
                    "sliders.")
        _selection(ui)
        _near_duplicates(ui)


def _selection(ui: UI) -> None:
    with gr.Row():
        ui.add("sel_source", gr.Radio([("accepted", "accepted"), ("passing τ", "passing"), ("all", "all")],
                                      value="passing", label="Pool", elem_id="curate-sel-source"))
        ui.add("sel_quality", gr.Dropdown(QUALITY_CHOICES, value="consensus", allow_custom_value=True,
                                          label="Quality (or scorer:name from the scores)",
                                          elem_id="curate-sel-quality"))
        ui.add("sel_model", gr.Dropdown(EMBEDDER_CHOICES, value="all-minilm-l6-v2", allow_custom_value=True,
                                        label="Embeddings", elem_id="curate-sel-model"))
        ui.add("sel_embed", gr.Button("Embed the pool (background job)", elem_id="curate-sel-embed"))
    with gr.Row():
        ui.add("sel_k", gr.Slider(1, 5000, value=100, step=1, label="Budget k", elem_id="curate-sel-k"))
        ui.add("sel_alpha", gr.Slider(0.0, 1.0, value=0.7, step=0.05,
                                      label="α (0 = diversity only, 1 = quality only; the paper finds 0.5–0.9)",
                                      elem_id="curate-sel-alpha"))
        ui.add("sel_run", gr.Button("Select", variant="primary", elem_id="curate-sel-run"))
    ui.add("sel_status", gr.Textbox(label="Selection", interactive=False, elem_id="curate-sel-status"))
    ui.add("sel_embed_offer", gr.Button("Embed them now", variant="primary", visible=False,
                                        elem_id="curate-sel-embed-offer"))
    with gr.Row():
        ui.add("sel_map", gr.ScatterPlot(x="x", y="y", color="set", tooltip=["seq", "set"], height=380,
                                         title="The pool on its first two principal components",
                                         color_map={"selected": "#16a34a", "not selected": "#cbd5e1"},
                                         elem_id="curate-sel-map"))
        ui.add("sel_report", gr.Dataframe(interactive=False, datatype="str",
                                          label="The selection against baselines of the same size",
                                          elem_id="curate-sel-report"))
    ui.add("sel_table", gr.Dataframe(interactive=False, datatype="str", label="Picks, in order", max_height=300,
                                     elem_id="curate-sel-table"))


def _near_duplicates(ui: UI) -> None:
    with gr.Accordion("Near-duplicates", open=False, elem_id="curate-dups-box"):
        with gr.Row():
            ui.add("dup_threshold", gr.Slider(0.8, 1.0, value=0.95, step=0.005, label="Cosine at least",
                                              elem_id="curate-dup-threshold"))
            ui.add("dup_find", gr.Button("Find near-duplicates", elem_id="curate-dup-find"))
            ui.add("dup_reject", gr.Button("Reject the near-copies (keep the best of each group)", variant="stop",
                                           elem_id="curate-dup-reject"))
        ui.add("dup_status", gr.Textbox(label="Near-duplicates", interactive=False, elem_id="curate-dup-status"))
        ui.add("dup_table", gr.Dataframe(interactive=False, datatype="str", max_height=300,
                                         label="Groups (the kept member first in store order is marked keep)",
                                         elem_id="curate-dup-table"))
        ui.add("dup_groups", gr.State(None))


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: SelectHandlers, review_h: review_tab.ReviewHandlers) -> None:
    """``review_h``: rejecting near-copies refreshes the Review tab's counts and queue page."""
    for btn in (ui.sel_embed, ui.sel_embed_offer):
        on(btn.click, h.ui_embed_start, [ui.sel_source, ui.tau, ui.sel_model], START, ui)
    options = [ui.sel_source, ui.tau, ui.sel_quality, ui.sel_model]
    for event in (ui.sel_run.click, ui.sel_k.release, ui.sel_alpha.release):
        on(event, h.ui_qdit, [ui.sel_k, ui.sel_alpha, *options], SELECT, ui)
    on(ui.dup_find.click, h.ui_dups, [ui.dup_threshold, *options], DUPS, ui)
    review_tab.refresh_after(on(ui.dup_reject.click, h.ui_dups_reject, [ui.dup_groups, ui.reviewer],
                                ["dup_status", "dup_groups"], ui), ui, review_h)
