"""Live views: one refresh mechanism for the whole page (docs/ARCHITECTURE.md, "The app").

One timer per page polls :meth:`~curate.store.Store.store_version` (a few index lookups) and writes the two
parts of the version into two ``gr.State``s: ``live_jobs`` (moves with every job update) and ``live_data``
(moves with every row the app shows: candidates, outputs, consensus, scores, reviews, …). A State's ``change``
event fires only when its value changed, so the tabs wire their refresh to those events (:func:`when_shown`
keeps a tab that is not shown from re-rendering; it refreshes when it is selected) and an idle page costs one
probe per tick and nothing else. The timer ticks every :data:`ACTIVE_S` while a job is active, every
:data:`FAST_S` after a change, and backs off, doubling, to :data:`SLOW_S` when nothing changes
(:func:`next_interval`).
"""

from __future__ import annotations

import functools
import inspect
from collections import defaultdict
from typing import Callable

import gradio as gr

from .base import TabHandlers
from .wiring import UI, on

#: seconds between probes while a job is active (its progress moves within seconds)
ACTIVE_S = 0.5
#: seconds between probes after something changed
FAST_S = 1.0
#: the longest wait between probes of an idle page (another reviewer's action shows within this)
SLOW_S = 8.0
LIVE = ["live_jobs", "live_data", "live_timer", "live_interval"]


def next_interval(interval: float | None, changed: bool, active: bool) -> float:
    """The next wait: :data:`ACTIVE_S` while a job is active, :data:`FAST_S` after a change, else twice the last
    wait, at most :data:`SLOW_S`."""
    if active:
        return ACTIVE_S
    if changed or not interval:
        return FAST_S
    return min(SLOW_S, max(FAST_S, float(interval)) * 2)


class LiveHandlers(TabHandlers):
    """The page's probe."""

    def ui_tick(self, jobs_seen: list | None, data_seen: list | None, interval: float | None) -> dict:
        """One probe: the version parts that moved (the others stay as they are, so their ``change`` does not
        fire) and the timer's next interval (sent only when it changes, as a whole Timer: an update of its value
        alone leaves the timer inactive in the page)."""
        v = self.store().store_version()
        jobs_now, data_now = list(v.jobs), list(v.data)
        jobs_moved, data_moved = jobs_now != jobs_seen, data_now != data_seen
        nxt = next_interval(interval, jobs_moved or data_moved, v.active_jobs > 0)
        return {"live_jobs": jobs_now if jobs_moved else gr.skip(),
                "live_data": data_now if data_moved else gr.skip(),
                "live_timer": gr.skip() if nxt == interval else gr.Timer(value=nxt, active=True),
                "live_interval": gr.skip() if nxt == interval else nxt}


def when_shown(tab_id: str, fn: Callable[..., dict]) -> Callable[..., dict]:
    """``fn`` with a first parameter ``shown`` (the tab the page shows, ``live_shown``): it runs only when that is
    ``tab_id``; otherwise every output is left as it is (``gr.skip()``), and so it is when ``fn`` refuses its
    inputs (a ``gr.Error``: the user's own event shows that message; a background refresh never toasts).
    Gradio still sees ``fn``'s other parameters (and injects ``gr.Request``)."""
    sig = inspect.signature(fn)
    shown = inspect.Parameter("shown", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str | None)

    @functools.wraps(fn)
    def inner(shown, *args, **kwargs):
        if shown != tab_id:
            return defaultdict(gr.skip)
        try:
            return fn(*args, **kwargs)
        except gr.Error:  # e.g. a filter being typed: the reviewer's own event says what is wrong, not each probe
            return defaultdict(gr.skip)

    inner.__signature__ = sig.replace(parameters=[shown, *sig.parameters.values()])
    inner.__annotations__ = {**getattr(fn, "__annotations__", {}), "shown": str | None}
    inner.__name__ = f"{fn.__name__}_when_{tab_id}_shown"
    return inner


def _show(tab_id: str) -> Callable[[], dict]:
    def fn() -> dict:
        return {"live_shown": tab_id}
    fn.__name__ = f"ui_shown_{tab_id}"
    return fn


# -- layout ----------------------------------------------------------------------------------------------------
def layout(ui: UI) -> None:
    """The page's timer and what it last saw (call inside ``gr.Blocks``, outside the tabs)."""
    ui.add("live_timer", gr.Timer(FAST_S))
    ui.add("live_interval", gr.State(FAST_S))
    ui.add("live_jobs", gr.State(None))   # the last store_version().jobs this page saw
    ui.add("live_data", gr.State(None))   # … and .data
    ui.add("live_shown", gr.State("review"))  # the tab shown (the first one when the page loads)


# -- wiring ----------------------------------------------------------------------------------------------------
def wire(ui: UI, h: LiveHandlers, demo: gr.Blocks, tab_ids: list[str]) -> None:
    """The probe on each tick and once when the page loads (``ui.page_load``: tabs chain their own load
    steps on it), and which tab is shown."""
    probe = [ui.live_jobs, ui.live_data, ui.live_interval]
    ui.add("page_load", on(demo.load, h.ui_tick, probe, LIVE, ui, progress="hidden"))
    on(ui.live_timer.tick, h.ui_tick, probe, LIVE, ui, progress="hidden")
    for tab_id in tab_ids:
        on(ui.c[f"{tab_id}_tab"].select, _show(tab_id), [], ["live_shown"], ui, progress="hidden")


def _fast() -> dict:
    return {"live_timer": gr.Timer(value=ACTIVE_S, active=True), "live_interval": ACTIVE_S}


def hurry(ui: UI, dep) -> None:
    """After ``dep`` (an event that starts or resumes a job): probe every :data:`ACTIVE_S` at once, rather than
    after the idle page's slow wait (a short job could end before the next probe)."""
    on(dep.then, _fast, [], ["live_timer", "live_interval"], ui, progress="hidden")


def on_change(ui: UI, part: str, tab_id: str, fn: Callable[..., dict], inputs: list, names: list[str], *,
              event=None):
    """Refresh ``names`` with ``fn(*inputs)`` when the store's ``part`` (``"jobs"`` or ``"data"``) moved and the
    page shows ``tab_id`` (:func:`when_shown`). ``event``: run on it instead (e.g. ``.then`` of an earlier
    refresh). Returns the event's dependency (chain ``.then`` on it)."""
    return on(event or ui.c[f"live_{part}"].change, when_shown(tab_id, fn), [ui.live_shown, *inputs], names, ui,
              progress="hidden")
