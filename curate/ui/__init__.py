"""The Gradio app: Review (queue, candidate, thresholds), Run (background jobs), Import (bring your own data),
Overview, Teachers, Select, Export, and the documented JSON API.

``build_app(settings, runner)`` returns the Blocks; ``launch(settings)`` serves it (127.0.0.1 unless the
settings say otherwise; a login when ``auth`` is set, for the app and the API alike). Each tab is one module
of :mod:`curate.ui.tabs` holding its handlers, its layout and its wiring; :mod:`curate.ui.api` holds the
named API; :mod:`curate.ui.base` what their handlers share. All work happens in the library (curate.review,
curate.jobs, curate.export, curate.select, curate.teachers, curate.quality, the store).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from .. import jobs  # noqa: E402
from ..errors import SettingsError  # noqa: E402
from ..settings import Settings  # noqa: E402
from ..store import Store  # noqa: E402
from . import api  # noqa: E402
from .base import AppContext  # noqa: E402
from .tabs import evaluate, export, imports, overview, review, run, select, teachers  # noqa: E402
from .wiring import UI  # noqa: E402

__all__ = ["build_app", "launch", "parse_auth", "HEAD", "CSS", "Handlers"]

#: the tabs, in the order they are shown
TABS = (review, run, imports, overview, teachers, select, export, evaluate)

#: Keyboard shortcuts: a = accept, r = reject, n = next, u = undo — ignored while typing in a text field.
HEAD = """
<script>
(() => {
  const KEYS = {a: "curate-accept", r: "curate-reject", n: "curate-next", u: "curate-undo"};
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    const id = KEYS[(e.key || "").toLowerCase()];
    if (!id) return;
    const el = document.getElementById(id);
    const btn = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (!btn || btn.disabled || btn.offsetParent === null) return;
    e.preventDefault();
    btn.click();
  });
})();
</script>
"""

CSS = """
#curate-title { margin: 0; }
#curate-header textarea { font-weight: 600; }
"""


def parse_auth(text: str | None, users_file: str | os.PathLike | None = None) -> list[tuple[str, str]] | None:
    """``"alice:pw1,bob:pw2"`` → [("alice", "pw1"), ("bob", "pw2")], plus the ``user:password`` lines of
    ``users_file`` (blank lines and ``#`` comments skipped); nothing given → None (no login).

    Raises SettingsError on an item without ``user:password`` (naming the file and line) or an unreadable
    file."""
    pairs: list[tuple[str, str]] = []
    items = [(item.strip(), "auth") for item in (text or "").split(",") if item.strip()]
    if users_file:
        try:
            lines = Path(users_file).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(f"cannot read the users file {str(users_file)!r}: {e}. Pass a readable file of "
                                "user:password lines") from e
        items += [(line.strip(), f"{users_file}:{n}") for n, line in enumerate(lines, 1)
                  if line.strip() and not line.lstrip().startswith("#")]
    for item, where in items:
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            hint = "separate several with commas" if where == "auth" else "one user:password per line"
            raise SettingsError(f"{where}: {item!r} is not user:password ({hint})")
        pairs.append((user.strip(), password))
    return pairs or None


class Handlers:
    """Every handler of one app, one attribute per tab (``.review``, ``.run``, ``.imports``, ``.overview``,
    ``.teachers``, ``.select``, ``.export``, ``.evaluate``) plus ``.api``; they share one
    :class:`~curate.ui.base.AppContext` (the settings, the job runner, one store connection per thread)."""

    def __init__(self, settings: Settings, runner: jobs.JobRunner):
        self.ctx = AppContext(settings, runner)
        self.settings, self.runner = settings, runner
        self.review = review.ReviewHandlers(self.ctx)
        self.run = run.RunHandlers(self.ctx)
        self.imports = imports.ImportHandlers(self.ctx)
        self.overview = overview.OverviewHandlers(self.ctx)
        self.teachers = teachers.TeachersHandlers(self.ctx)
        self.select = select.SelectHandlers(self.ctx)
        self.export = export.ExportHandlers(self.ctx)
        self.evaluate = evaluate.EvaluateHandlers(self.ctx)
        self.api = api.ApiHandlers(self.ctx, self.run, self.teachers)

    def store(self) -> Store:
        """This thread's store connection."""
        return self.ctx.store()


def layout(settings: Settings) -> UI:
    """Every component (call inside ``gr.Blocks``): the header, the Review tab's session state, the tabs."""
    ui = UI()
    with gr.Row(equal_height=True):
        ui.add("title", gr.Markdown("## curate — review synthetic instruction data", elem_id="curate-title"))
        ui.add("reviewer", gr.Textbox(settings.reviewer, label="Reviewer (your login when one is required)",
                                      scale=0, min_width=260, elem_id="curate-reviewer"))
    review.session_state(ui)
    with gr.Tabs(elem_id="curate-tabs") as tabs:
        ui.add("tabs", tabs)
        for tab in TABS:
            tab.layout(ui, settings)
    return ui


def wire(ui: UI, h: Handlers, demo: gr.Blocks) -> None:
    """Every event, tab by tab, then the named API."""
    review.wire(ui, h.review, demo)
    run.wire(ui, h.run)
    imports.wire(ui, h.imports)
    overview.wire(ui, h.overview)
    teachers.wire(ui, h.teachers)
    select.wire(ui, h.select, h.review)
    export.wire(ui, h.export)
    evaluate.wire(ui, h.evaluate)
    api.wire(h.api)


def build_app(settings: Settings, runner: jobs.JobRunner | None = None) -> gr.Blocks:
    """The app over ``settings.db``. Marks jobs a dead server left running as interrupted (resumable).

    ``runner`` runs the jobs (default: a :class:`~curate.jobs.JobRunner` loading models from the registry;
    tests pass one whose pool holds scripted models)."""
    with Store(settings.db) as store:
        jobs.recover(store)
    handlers = Handlers(settings, runner or jobs.JobRunner(str(settings.db)))
    with gr.Blocks(title="curate", fill_width=True) as demo:
        ui = layout(settings)
        wire(ui, handlers, demo)
    demo.handlers = handlers  # for tests and embedding: demo.handlers.review.ui_threshold(...)
    return demo


def launch(settings: Settings, runner: jobs.JobRunner | None = None, **kwargs) -> gr.Blocks:
    """Build the app and serve it on ``settings.host:settings.port`` (never shared publicly).

    Blocks until the server stops, unless ``prevent_thread_lock=True``; returns the Blocks (``.local_url``,
    ``.close()``). Raises SettingsError for a malformed ``auth``."""
    auth = parse_auth(settings.auth, settings.users_file)
    demo = build_app(settings, runner)
    demo.queue(default_concurrency_limit=4)
    kwargs.setdefault("server_name", settings.host)
    kwargs.setdefault("server_port", settings.port)
    demo.launch(auth=auth, share=False, head=HEAD, css=CSS,
                auth_message="curate: log in to review" if auth else None, footer_links=["api"], **kwargs)
    return demo
