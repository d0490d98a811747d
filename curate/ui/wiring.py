"""What every tab's layout and wiring share: the component registry (:class:`UI`), :func:`on` (one event →
one handler) and :func:`with_filter`, the edge where the queue filter's component values become one
:class:`~curate.review.QueueFilter`. No logic.

Handlers return a dict of component name → value; :func:`on` wraps them so they return the tuple Gradio
expects for an output list given by names. UI events are reachable from clients under ``ui_*`` names
(undocumented: the benchmark drives them) when wired with ``api=``; the others are private.
"""

from __future__ import annotations

import functools
import inspect
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gradio as gr

from .. import review
from .base import logged, queue_filter

#: the queue filter's component values as events pass them (the parameter names clients see), in order
FILTER_PARAMS = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=hint)
                 for name, hint in (("status", str), ("task_type", str), ("model", str), ("consensus", str),
                                    ("tau", float), ("search", str), ("sort", str), ("q_scorer", str | None),
                                    ("q_min", float | None), ("q_max", float | None), ("source", str | None),
                                    ("by_reviewer", str | None), ("rouge_min", float | None),
                                    ("rouge_max", float | None))]
#: default None (no quality threshold, no reviewer tools' filter) where nothing without a default follows them in
#: the event's parameters
OPTIONAL_FILTER_PARAMS = ("q_scorer", "q_min", "q_max", "source", "by_reviewer", "rouge_min", "rouge_max")


@dataclass
class UI:
    """Every component the wiring needs, by name (``ui.tau`` is ``ui.c["tau"]``)."""

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


@contextmanager
def tab(ui: UI, title: str, tab_id: str, visible: bool = True):
    """A tab of the app (``id`` tab_id, ``elem_id`` tab-<tab_id>), registered as ``ui.<tab_id>_tab``."""
    with gr.Tab(title, id=tab_id, elem_id=f"tab-{tab_id}", visible=visible) as t:
        ui.add(f"{tab_id}_tab", t)
        yield t


def filter_inputs(ui: UI) -> list:
    """The queue filter's components, in the order :func:`with_filter` expects their values."""
    return [ui.f_status, ui.f_type, ui.f_model, ui.f_consensus, ui.tau, ui.f_search, ui.f_sort, ui.q_scorer,
            ui.q_min, ui.q_max, ui.f_source, ui.f_reviewer, ui.f_rouge_min, ui.f_rouge_max]


def with_filter(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Wrap a handler taking a ``QueueFilter`` parameter so an event can pass the values of
    :func:`filter_inputs` in its place: the filter is built (and validated: ``gr.Error``) once, here.

    The wrapper's signature is the handler's with that parameter replaced by the filter parameters, so
    Gradio still injects ``gr.Request`` / ``gr.SelectData`` and clients see the same parameter names."""
    hints = typing.get_type_hints(fn)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(fn).parameters.values()]
    at = next(i for i, p in enumerate(params) if p.annotation is review.QueueFilter)
    optional = all(p.default is not inspect.Parameter.empty for p in params[at + 1:])
    spread = [p.replace(default=None) if optional and p.name in OPTIONAL_FILTER_PARAMS else p
              for p in FILTER_PARAMS]
    new = params[:at] + spread + params[at + 1:]
    n = len(FILTER_PARAMS)

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        bound = inner.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        values = list(bound.arguments.values())
        return fn(*values[:at], queue_filter(*values[at:at + n]), *values[at + n:])

    inner.__signature__ = inspect.Signature(new, return_annotation=hints.get("return", inspect.Signature.empty))
    inner.__annotations__ = {p.name: p.annotation for p in new if p.annotation is not inspect.Parameter.empty}
    return inner


def _named(fn: Callable[..., dict], names: Sequence[str]) -> Callable[..., Any]:
    """Wrap a dict-returning handler so it returns the values of ``names`` in order."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except gr.Error as e:  # the user sees the message: one log line, no traceback (real bugs keep theirs)
            raise logged(e, fn.__name__)
        values = tuple(out[n] for n in names)
        return values[0] if len(values) == 1 else values
    return inner


def on(event, fn: Callable[..., dict], inputs: list, names: Sequence[str], ui: UI, *, api: str | None = None,
       progress: str = "minimal", js: str | None = None, every_click: bool = False):
    """Wire ``event`` to ``fn`` with ``inputs``; ``fn``'s dict fills the components ``names``. ``js``: a
    browser-side function run first, whose returned list replaces the input values. ``every_click``: each
    trigger is sent, also while the previous one runs (Gradio's default drops it silently)."""
    outputs = [ui.c[n] for n in names]
    extra = {"trigger_mode": "multiple"} if every_click else {}
    return event(_named(fn, names), inputs=inputs, outputs=outputs, show_progress=progress, js=js, **extra,
                 api_name=api or f"private_{fn.__name__}",  # keeps the ui_* names free for `api`
                 api_visibility="undocumented" if api else "private")
