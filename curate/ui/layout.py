"""The app's Blocks layout: components only — no events, no logic, no SQL (events.py wires them up).

:func:`build` must be called inside a ``gr.Blocks`` context; it returns a :class:`UI` holding every component
that events.py needs. Untrusted text (instructions, inputs, model outputs) only ever goes into Textboxes and
``datatype="str"`` Dataframes, never into HTML or Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ..export import FORMATS
from ..quality import DEFAULT_SCORER
from ..generate import INSTANCE_PARAMS, INSTRUCTION_PARAMS
from ..settings import Settings

SCORER_CHOICES = [(f"{DEFAULT_SCORER} (offline proxy: consensus agreement)", DEFAULT_SCORER),
                  ("judge:qwen2.5-0.5b-instruct (embedded judge)", "judge:qwen2.5-0.5b-instruct")]
QUALITY_CHOICES = [("consensus agreement (proxy)", "consensus"), ("consensus min pairwise (proxy)",
                                                                    "consensus:min_pairwise"),
                   ("none (diversity only)", "none")]
EMBEDDER_CHOICES = [("all-MiniLM-L6-v2 (default, 384-d)", "all-minilm-l6-v2"),
                    ("all-mpnet-base-v2 (the paper's, 768-d, slower)", "all-mpnet-base-v2")]
MAX_OUTPUTS = 6  # output slots shown side by side (o0 = the generator's + up to 5 ensemble outputs)

STATUS_CHOICES = [("pending", "pending"), ("accepted", "accepted"), ("edited", "edited"),
                  ("rejected", "rejected"), ("auto-filtered", "auto-filtered"), ("any", "")]
TYPE_CHOICES = [("any", ""), ("A (needs input)", "A"), ("B (no input)", "B")]
CONSENSUS_CHOICES = [("any", ""), ("passes τ", "pass"), ("below τ", "fail"), ("not ensembled", "none")]
SORT_CHOICES = [("generation order", "seq"), ("newest first", "-seq"), ("min pairwise ↑", "min_pairwise"),
                ("min pairwise ↓", "-min_pairwise"), ("recently reviewed", "reviewed")]
QUEUE_HEADERS = ["#", "status", "type", "generator", "min RL", "pass", "instruction", "input", "output", "id"]
JOB_HEADERS = ["job", "kind", "state", "stage", "created", "error"]
LOG_HEADERS = ["#", "reviewer", "at", "action", "version", "reason"]


@dataclass
class UI:
    """Every component events.py wires, by name."""

    c: dict[str, Any] = field(default_factory=dict)
    slots: list[gr.Textbox] = field(default_factory=list)
    slot_buttons: list[gr.Button] = field(default_factory=list)
    slot_index: list[gr.State] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["c"][name]
        except KeyError:
            raise AttributeError(name) from None

    def add(self, name: str, component: Any) -> Any:
        self.c[name] = component
        return component


def build(settings: Settings) -> UI:
    ui = UI()
    with gr.Row(equal_height=True):
        ui.add("title", gr.Markdown("## curate — review synthetic instruction data", elem_id="curate-title"))
        ui.add("reviewer", gr.Textbox(settings.reviewer, label="Reviewer (your login when one is required)",
                                      scale=0, min_width=260, elem_id="curate-reviewer"))
    ui.add("current", gr.State(None))       # {"id", "version", "seq"} of the open candidate (per session)
    ui.add("history", gr.State([]))         # this session's actions, for undo: [[id, version], ...]
    ui.add("no_output", gr.State(None))     # "accept the consensus choice"
    for name, v in (("page_same", 0), ("page_prev", -1), ("page_next", 1)):
        ui.add(name, gr.State(v))           # constant inputs: page steps
    with gr.Tabs(elem_id="curate-tabs") as tabs:
        ui.add("tabs", tabs)
        with gr.Tab("Review", id="review", elem_id="tab-review"):
            _review_tab(ui, settings)
        with gr.Tab("Run", id="run", elem_id="tab-run"):
            _run_tab(ui, settings)
        with gr.Tab("Overview", id="overview", elem_id="tab-overview") as tab:
            ui.add("overview_tab", tab)
            _overview_tab(ui)
        with gr.Tab("Teachers", id="teachers", elem_id="tab-teachers") as tab:
            ui.add("teachers_tab", tab)
            _teachers_tab(ui, settings)
        with gr.Tab("Select", id="select", elem_id="tab-select"):
            _select_tab(ui, settings)
        with gr.Tab("Export", id="export", elem_id="tab-export"):
            _export_tab(ui, settings)
    return ui


def _review_tab(ui: UI, settings: Settings) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                ui.add("f_status", gr.Dropdown(STATUS_CHOICES, value="pending", label="Status", min_width=120))
                ui.add("f_type", gr.Dropdown(TYPE_CHOICES, value="", label="Task type", min_width=120))
                ui.add("f_model", gr.Dropdown([("any", "")], value="", label="Generator", min_width=160))
                ui.add("f_consensus", gr.Dropdown(CONSENSUS_CHOICES, value="", label="Consensus",
                                                  min_width=120))
                ui.add("f_sort", gr.Dropdown(SORT_CHOICES, value="seq", label="Sort", min_width=140))
            with gr.Row():
                ui.add("f_search", gr.Textbox(label="Search instruction / input / output", scale=4,
                                              placeholder="text, then Enter", elem_id="curate-search"))
                ui.add("prev_page", gr.Button("◀", size="sm", scale=0, min_width=40, elem_id="curate-prev-page"))
                ui.add("page", gr.Number(1, label="Page", precision=0, minimum=1, scale=0, min_width=80,
                                         elem_id="curate-page"))
                ui.add("next_page", gr.Button("▶", size="sm", scale=0, min_width=40, elem_id="curate-next-page"))
            ui.add("page_info", gr.Textbox(show_label=False, container=False, interactive=False,
                                           elem_id="curate-page-info"))
            ui.add("queue", gr.Dataframe(headers=QUEUE_HEADERS, datatype=["str"] * len(QUEUE_HEADERS),
                                         interactive=False, wrap=False, max_height=300, max_chars=90,
                                         label="Candidates (click a row to open it)", elem_id="curate-queue",
                                         column_widths=["55px", "95px", "50px", "150px", "70px", "55px", "30%",
                                                        "18%", "22%", "90px"]))
        with gr.Column(scale=2, min_width=300):
            ui.add("tau", gr.Slider(0.0, 1.0, value=settings.consensus_threshold, step=0.01,
                                    label="Consensus threshold τ (min pairwise Rouge-L must be above it)",
                                    elem_id="curate-tau"))
            ui.add("pass_count", gr.Textbox(label="Passing", interactive=False, elem_id="curate-pass-count"))
            ui.add("histogram", gr.BarPlot(x="lo", y="n", color="side", x_title="min pairwise Rouge-L",
                                           y_title="candidates", height=200, x_bin=None, x_lim=[0, 1],
                                           color_map={"passes τ": "#16a34a", "below τ": "#dc2626"},
                                           label="Min pairwise Rouge-L (exact matches pass at any τ)",
                                           elem_id="curate-histogram"))
            ui.add("accept_all", gr.Button("Accept all that pass…", elem_id="curate-accept-all"))
            with gr.Group(visible=False, elem_id="curate-confirm") as confirm:
                ui.add("confirm_box", confirm)
                ui.add("confirm_text", gr.Textbox(label="Confirm", interactive=False,
                                                  elem_id="curate-confirm-text"))
                ui.add("confirm_count", gr.State(None))
                with gr.Row():
                    ui.add("confirm_yes", gr.Button("Yes, accept them", variant="primary",
                                                    elem_id="curate-confirm-yes"))
                    ui.add("confirm_no", gr.Button("Cancel", elem_id="curate-confirm-no"))
            with gr.Accordion("Quality threshold (scores from `curate score`)", open=False, elem_id="curate-quality"):
                ui.add("q_scorer", gr.Dropdown([("off", "")], value="", label="Scorer of the chosen output",
                                               elem_id="curate-q-scorer"))
                ui.add("q_min", gr.Slider(0.0, 1.0, value=0.0, label="Minimum quality", interactive=False,
                                          elem_id="curate-q-min"))
                ui.add("q_count", gr.Textbox(label="Passing the quality threshold", interactive=False,
                                             elem_id="curate-q-count"))
                ui.add("q_hist", gr.BarPlot(x="lo", y="n", color="side", x_title="quality of the chosen output",
                                            y_title="candidates", height=180, x_bin=None,
                                            color_map={"passes": "#16a34a", "below": "#dc2626"},
                                            elem_id="curate-q-hist"))
    _candidate_pane(ui)


def _candidate_pane(ui: UI) -> None:
    with gr.Row(equal_height=True):
        ui.add("open_id", gr.Textbox(label="Candidate id", scale=4, elem_id="curate-open-id",
                                     placeholder="click a queue row, or paste an id and press Enter"))
        ui.add("open_btn", gr.Button("Open / reload", scale=0, min_width=120, elem_id="curate-open"))
    ui.add("header", gr.Textbox(label="Candidate", interactive=False, lines=2, elem_id="curate-header"))
    with gr.Row():
        ui.add("instruction", gr.Textbox(label="Instruction (as generated)", interactive=False, lines=2,
                                         scale=3, elem_id="curate-instruction"))
        ui.add("input", gr.Textbox(label="Input (as generated)", interactive=False, lines=2, scale=2,
                                   elem_id="curate-input"))
    with gr.Row(equal_height=True):
        for i in range(MAX_OUTPUTS):
            with gr.Column(min_width=180, visible=i < 3) as col:
                ui.add(f"slot_col_{i}", col)
                ui.slots.append(ui.add(f"slot_{i}", gr.Textbox(
                    label=f"o{i}", interactive=False, lines=6, max_lines=14, elem_id=f"curate-output-{i}",
                    buttons=["copy"])))
                ui.slot_buttons.append(gr.Button(f"Accept o{i}", size="sm", elem_id=f"curate-accept-{i}"))
                ui.slot_index.append(gr.State(i))
    with gr.Row():
        ui.add("heatmap", gr.Dataframe(label="Pairwise Rouge-L (normalised, stemmed)", interactive=False,
                                       datatype="str", elem_id="curate-heatmap", max_height=260))
        ui.add("explanation", gr.Textbox(label="Why consensus chose this output", interactive=False, lines=4,
                                         elem_id="curate-explanation"))
    with gr.Row():
        ui.add("accept", gr.Button("Accept consensus choice [a]", variant="primary", elem_id="curate-accept"))
        ui.add("reject", gr.Button("Reject [r]", variant="stop", elem_id="curate-reject"))
        ui.add("next", gr.Button("Next pending [n]", elem_id="curate-next"))
        ui.add("undo", gr.Button("Undo my last action [u]", elem_id="curate-undo"))
    ui.add("reject_reason", gr.Textbox(label="Reject reason (optional)", elem_id="curate-reject-reason"))
    with gr.Accordion("Edit (saved as a new version; the original is kept)", open=False, elem_id="curate-edit-box"):
        ui.add("edit_instruction", gr.Textbox(label="Instruction", lines=2, elem_id="curate-edit-instruction"))
        ui.add("edit_input", gr.Textbox(label="Input", lines=2, elem_id="curate-edit-input"))
        ui.add("edit_output", gr.Textbox(label="Output", lines=4, elem_id="curate-edit-output"))
        ui.add("save_edit", gr.Button("Save edit", variant="primary", elem_id="curate-save-edit"))
    ui.add("log", gr.Dataframe(headers=LOG_HEADERS, datatype=["str"] * len(LOG_HEADERS), interactive=False,
                               label="Review log of this candidate", max_height=200, elem_id="curate-log"))


def _run_tab(ui: UI, settings: Settings) -> None:
    with gr.Row():
        with gr.Column(scale=2):
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
                                                     label="Ensembling models (comma-separated)",
                                                     elem_id="curate-job-emodels"))
            with gr.Row():
                ui.add("job_seed", gr.Number(settings.seed, label="Sampling seed", precision=0))
                ui.add("job_batch", gr.Number(settings.batch_size, label="Batch size", precision=0, minimum=1))
            with gr.Accordion("Sampling (generation jobs)", open=False, elem_id="curate-job-sampling"):
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
            ui.add("job_start", gr.Button("Start job", variant="primary", elem_id="curate-job-start"))
        with gr.Column(scale=3):
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
                ui.add("job_rate", gr.Textbox(label="rate", interactive=False, elem_id="curate-job-rate"))
                ui.add("job_eta", gr.Textbox(label="ETA", interactive=False, elem_id="curate-job-eta"))
            ui.add("job_counts", gr.Textbox(label="Progress", interactive=False, elem_id="curate-job-counts"))
            ui.add("job_reasons", gr.Dataframe(headers=["filtered / outcome", "n"], datatype=["str", "str"],
                                               interactive=False, max_height=200, label="Kept / filtered by reason",
                                               elem_id="curate-job-reasons"))
            ui.add("job_error", gr.Textbox(label="Last error / warnings", interactive=False, lines=2,
                                           max_lines=8, elem_id="curate-job-error"))
    ui.add("jobs", gr.Dataframe(headers=JOB_HEADERS, datatype=["str"] * len(JOB_HEADERS), interactive=False,
                                max_height=260, label="Jobs (click one to follow it; they keep running when "
                                                      "the tab closes)", elem_id="curate-jobs"))
    ui.add("timer", gr.Timer(1.0))


def _overview_tab(ui: UI) -> None:
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


def _export_tab(ui: UI, settings: Settings) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            ui.add("ex_format", gr.Dropdown([(f"{f.name} — {f.description}", f.name) for f in FORMATS.values()],
                                            value="alpaca-jsonl", label="Format", elem_id="curate-ex-format"))
            ui.add("ex_include", gr.CheckboxGroup(
                [("accepted and edited (edited text wins)", "accepted"),
                 ("passing consensus at τ, not yet reviewed (rejected stay out)", "passing"),
                 ("the QDIT selection", "selection")], value=["accepted"], label="What goes in",
                elem_id="curate-ex-include"))
            with gr.Row():
                ui.add("ex_tau", gr.Number(settings.consensus_threshold, minimum=0, maximum=1, step=0.01,
                                           label="τ for “passing”", elem_id="curate-ex-tau"))
                ui.add("ex_selection", gr.Textbox("", label="Selection name (empty: the latest)",
                                                  elem_id="curate-ex-selection"))
            ui.add("ex_system", gr.Textbox("", label="System prompt (sharegpt / messages; optional)", lines=2,
                                           elem_id="curate-ex-system"))
            ui.add("ex_provenance", gr.Radio(
                [("none (what trainers expect)", "none"), ("a metadata field per row", "field"),
                 ("a sidecar file", "sidecar")], value="none", label="Provenance", elem_id="curate-ex-provenance"))
            with gr.Row():
                ui.add("ex_preview_btn", gr.Button("Preview", elem_id="curate-ex-preview-btn"))
                ui.add("ex_export_btn", gr.Button("Export", variant="primary", elem_id="curate-ex-export"))
        with gr.Column(scale=3):
            ui.add("ex_summary", gr.Textbox(label="Export", interactive=False, lines=3, elem_id="curate-ex-summary"))
            ui.add("ex_files", gr.File(label="Download", file_count="multiple", interactive=False,
                                       elem_id="curate-ex-files"))
            ui.add("ex_preview", gr.Code(label="The first rows, exactly as written", language="json",
                                         interactive=False, lines=12, elem_id="curate-ex-preview"))
            ui.add("ex_card", gr.Code(label="Dataset card (README.md beside the data)", language="markdown",
                                      interactive=False, lines=12, elem_id="curate-ex-card"))


def _teachers_tab(ui: UI, settings: Settings) -> None:
    gr.Markdown("Which model of the mixture teaches **this student** best? Compatibility-Adjusted Reward "
                "(Xu et al., 2024): CAR = mean reward / (1 + β · L), L = the student's mean per-token loss on the "
                "teacher's responses.")
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
        ui.add("tch_type", gr.Radio([("all", "all"), ("A (needs input)", "A"), ("B (no input)", "B")], value="all",
                                    label="Task type", elem_id="curate-tch-type"))
        ui.add("tch_show", gr.Button("Show ranking", variant="primary", elem_id="curate-tch-show"))
        ui.add("tch_mix", gr.Button("Weight the generation mixture by CAR", elem_id="curate-tch-mix"))
    ui.add("tch_status", gr.Textbox(label="Status", interactive=False, elem_id="curate-tch-status"))
    with gr.Row():
        ui.add("tch_table", gr.Dataframe(interactive=False, datatype="str", label="Teachers ranked by CAR",
                                         elem_id="curate-tch-table"))
        ui.add("tch_chart", gr.BarPlot(x="teacher", y="CAR", title="CAR per teacher (this task type)", y_lim=[0, None],
                                       height=280, elem_id="curate-tch-chart"))


def _select_tab(ui: UI, settings: Settings) -> None:
    gr.Markdown("Quality-diversity selection (QDIT, Bukharin & Zhao 2023): greedily add the candidate with the "
                "largest (1−α)·coverage gain + α·quality. Embed the pool once (cached), then move the sliders.")
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
