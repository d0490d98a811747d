"""Event wiring: which component events call which handler, with which inputs and outputs. No logic.

Handlers return a dict of component name → value; :func:`_named` turns it into the tuple Gradio expects for
an output list given by names. UI events are reachable from clients under ``ui_*`` names (undocumented: the
benchmark drives them); the documented API is the ``gr.api`` endpoints at the end.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import gradio as gr

from .handlers import DUPS, EXPORT, JOB, OVERVIEW, QUALITY, QUEUE, SELECT, TEACHERS, THRESHOLD, VIEW, Handlers
from .layout import UI


def _named(fn: Callable[..., dict], names: Sequence[str]) -> Callable[..., Any]:
    """Wrap a dict-returning handler so it returns the values of ``names`` in order."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        out = fn(*args, **kwargs)
        values = tuple(out[n] for n in names)
        return values[0] if len(values) == 1 else values
    return inner


def wire(ui: UI, h: Handlers, demo: gr.Blocks) -> None:
    _review(ui, h, demo)
    _run(ui, h)
    _overview(ui, h)
    _teachers(ui, h)
    _select(ui, h)
    _export(ui, h)
    _api(h)


def filter_inputs(ui: UI) -> list:
    """The queue filter's components, in the order every filter-taking handler expects them."""
    return [ui.f_status, ui.f_type, ui.f_model, ui.f_consensus, ui.tau, ui.f_search, ui.f_sort, ui.q_scorer, ui.q_min]


def _on(event, fn: Callable[..., dict], inputs: list, names: Sequence[str], ui: UI, *, api: str | None = None,
        progress: str = "minimal"):
    outputs = [ui.c[n] for n in names]
    return event(_named(fn, names), inputs=inputs, outputs=outputs, show_progress=progress,
                 api_name=api or f"private_{fn.__name__}",  # keeps the ui_* names free for `api`
                 api_visibility="undocumented" if api else "private")


def _review(ui: UI, h: Handlers, demo: gr.Blocks) -> None:
    filters = filter_inputs(ui)
    view_h = [*VIEW, "history"]
    refresh = THRESHOLD + QUEUE

    def after_review(dep):
        return _on(dep.then, h.ui_refresh, [*filters, ui.page], refresh, ui, progress="hidden")

    load = _on(demo.load, h.ui_load, [ui.reviewer], ["reviewer", "f_model", "q_scorer"], ui)
    load = _on(load.then, h.ui_threshold, filters, refresh, ui)
    _on(load.then, h.ui_next, [ui.current, *filters], VIEW, ui)

    for comp in (ui.f_status, ui.f_type, ui.f_model, ui.f_consensus, ui.f_sort):
        _on(comp.input, h.ui_queue, [*filters, ui.page_same], QUEUE, ui)  # page_same (0) resets to page 1 below
    _on(ui.f_search.submit, h.ui_queue, [*filters, ui.page_same], QUEUE, ui, api="ui_queue")
    _on(ui.page.submit, h.ui_queue, [*filters, ui.page], QUEUE, ui)
    _on(ui.prev_page.click, h.ui_queue, [*filters, ui.page, ui.page_prev], QUEUE, ui)
    _on(ui.next_page.click, h.ui_queue, [*filters, ui.page, ui.page_next], QUEUE, ui)
    _on(ui.tau.release, h.ui_threshold, filters, refresh, ui, api="ui_threshold")
    _on(ui.q_scorer.input, h.ui_quality_scorer, filters, QUALITY + refresh, ui)
    _on(ui.q_min.release, h.ui_quality, filters, QUALITY + refresh, ui)

    _on(ui.queue.select, h.ui_select, [ui.tau], VIEW, ui)
    _on(ui.open_btn.click, h.ui_open, [ui.open_id, ui.tau], VIEW, ui, api="ui_open")
    _on(ui.open_id.submit, h.ui_open, [ui.open_id, ui.tau], VIEW, ui)
    _on(ui.next.click, h.ui_next, [ui.current, *filters], VIEW, ui, api="ui_next")

    after_review(_on(ui.accept.click, h.ui_accept, [ui.current, ui.no_output, ui.reviewer, ui.history, *filters],
                     view_h, ui, api="ui_accept"))
    for i, (btn, idx) in enumerate(zip(ui.slot_buttons, ui.slot_index)):
        after_review(_on(btn.click, h.ui_accept, [ui.current, idx, ui.reviewer, ui.history, *filters], view_h,
                         ui))
    after_review(_on(ui.reject.click, h.ui_reject,
                     [ui.current, ui.reject_reason, ui.reviewer, ui.history, *filters], view_h, ui,
                     api="ui_reject"))
    after_review(_on(ui.save_edit.click, h.ui_edit,
                     [ui.current, ui.edit_instruction, ui.edit_input, ui.edit_output, ui.reviewer, ui.history,
                      *filters], view_h, ui, api="ui_edit"))
    after_review(_on(ui.undo.click, h.ui_undo, [ui.history, ui.reviewer, ui.tau], view_h, ui, api="ui_undo"))

    confirm = ["confirm_box", "confirm_text", "confirm_count"]
    _on(ui.accept_all.click, h.ui_confirm_all, [ui.tau, ui.q_scorer, ui.q_min], confirm, ui)
    _on(ui.confirm_no.click, h.ui_confirm_cancel, [], confirm, ui)
    after_review(_on(ui.confirm_yes.click, h.ui_accept_all, [ui.tau, ui.confirm_count, ui.reviewer, ui.q_scorer,
                                                              ui.q_min],
                     confirm + THRESHOLD, ui, api="ui_accept_all"))


def _run(ui: UI, h: Handlers) -> None:
    job_inputs = [ui.job_kind, ui.job_instructions, ui.job_task_type, ui.job_instances, ui.job_instruction_models,
                  ui.job_instance_models, ui.job_ensemble_models, ui.job_seed, ui.job_batch, ui.job_temperature,
                  ui.job_top_k, ui.job_top_p, ui.job_max_tokens, ui.job_instance_max_tokens]
    _on(ui.job_start.click, h.ui_start_job, job_inputs, ["job_id", *JOB], ui, api="ui_start_job")
    _on(ui.timer.tick, h.ui_job_status, [ui.job_id], JOB, ui, progress="hidden")
    _on(ui.job_id.submit, h.ui_job_status, [ui.job_id], JOB, ui)
    _on(ui.job_pause.click, h.ui_pause, [ui.job_id], JOB, ui)
    _on(ui.job_resume.click, h.ui_resume, [ui.job_id], JOB, ui)
    _on(ui.job_cancel.click, h.ui_cancel, [ui.job_id], JOB, ui)
    _on(ui.jobs.select, h.ui_job_select, [], ["job_id", *JOB], ui)


def _overview(ui: UI, h: Handlers) -> None:
    _on(ui.overview_tab.select, h.ui_overview, [ui.tau], OVERVIEW, ui)
    _on(ui.overview_refresh.click, h.ui_overview, [ui.tau], OVERVIEW, ui, api="ui_overview")


def _teachers(ui: UI, h: Handlers) -> None:
    ranking = [ui.tch_student, ui.tch_scorer, ui.tch_beta, ui.tch_type]
    _on(ui.tch_start.click, h.ui_teachers_start, [ui.tch_student, ui.tch_scorer, ui.tch_limit, ui.job_batch],
        ["tch_status", "job_id"], ui)
    for event in (ui.teachers_tab.select, ui.tch_show.click, ui.tch_beta.release, ui.tch_type.input):
        _on(event, h.ui_teachers, ranking, TEACHERS, ui)
    _on(ui.tch_mix.click, h.ui_teachers_mixture, ranking,
        ["job_instruction_models", "job_instance_models", "tch_status"], ui)


def _select(ui: UI, h: Handlers) -> None:
    _on(ui.sel_embed.click, h.ui_embed_start, [ui.sel_source, ui.tau, ui.sel_model], ["sel_status", "job_id"], ui)
    options = [ui.sel_source, ui.tau, ui.sel_quality, ui.sel_model]
    for event in (ui.sel_run.click, ui.sel_k.release, ui.sel_alpha.release):
        _on(event, h.ui_qdit, [ui.sel_k, ui.sel_alpha, *options], SELECT, ui)
    _on(ui.dup_find.click, h.ui_dups, [ui.dup_threshold, *options], DUPS, ui)
    after_review = _on(ui.dup_reject.click, h.ui_dups_reject, [ui.dup_groups, ui.reviewer], ["dup_status", "dup_groups"],
                       ui)
    _on(after_review.then, h.ui_refresh, [*filter_inputs(ui), ui.page], THRESHOLD + QUEUE, ui, progress="hidden")


def _export(ui: UI, h: Handlers) -> None:
    options = [ui.ex_format, ui.ex_include, ui.ex_tau, ui.ex_selection, ui.ex_system, ui.ex_provenance]
    _on(ui.tau.change, h.ui_sync_tau, [ui.tau], ["ex_tau"], ui, progress="hidden")
    _on(ui.ex_preview_btn.click, h.ui_export_preview, options, EXPORT, ui)
    _on(ui.ex_export_btn.click, h.ui_export, options, EXPORT, ui, progress="full")


def _api(h: Handlers) -> None:
    """The documented API: JSON in, JSON out (see each handler's docstring)."""
    for name in ("start_job", "job_status", "pause_job", "resume_job", "cancel_job", "queue", "candidate",
                 "accept", "edit", "reject", "undo", "passing_count", "accept_all_passing", "overview",
                 "export_preview", "teachers", "select"):
        gr.api(getattr(h, f"api_{name}"), api_name=name)
