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
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from .. import jobs, team  # noqa: E402
from ..errors import SettingsError  # noqa: E402
from ..settings import Settings  # noqa: E402
from ..store import Store  # noqa: E402
from . import api, live  # noqa: E402
from .base import AppContext  # noqa: E402
from .tabs import disagreements, evaluate, export, imports, overview, review, run, select, teachers  # noqa: E402
from .wiring import UI  # noqa: E402

__all__ = ["build_app", "launch", "parse_auth", "check_exposure", "HEAD", "CSS", "Handlers"]

#: the tabs, in the order they are shown
TABS = (review, disagreements, run, imports, overview, teachers, select, export, evaluate)

#: Keyboard shortcuts: a = accept, r = reject, n = next, p = previous, u = undo — ignored while typing in a text
#: field; Ctrl+Enter (⌘+Enter) = Save edit, also inside the edit form's fields (but not in other text fields).
#: And the edit form's guard: the first touch of a field of the edit form (focus, a click, a selection, a key)
#: since the last click elsewhere (opening another candidate, an action…) or the last Save records the form
#: token the page shows at that moment and the texts the form holds then (``window.__curateTypedOn``); Save
#: sends them, so an edit begun before the form (re)rendered — begun on texts the form no longer holds, or whose
#: field the page rewrote while it was under way — is refused.
HEAD = """
<script>
(() => {
  window.__curateTypedOn = null;
  const val = (id) => {
    const el = document.querySelector(`#${id} textarea, #${id} input`);
    return el ? el.value : "";
  };
  const began = (e) => {  // focusing, selecting in or typing into a field of the edit form begins an edit
    const t = e.target;
    if (!t || !t.closest || !/^(TEXTAREA|INPUT)$/.test(t.tagName) || !t.closest("#curate-edit-box")) return;
    if (window.__curateTypedOn !== null) return;
    // the token and the texts the edit starts from (not known once a key went in: then the token alone)
    const texts = e.type === "input" ? null
      : [val("curate-edit-instruction"), val("curate-edit-input"), val("curate-edit-output")];
    window.__curateTypedOn = JSON.stringify({token: val("curate-form-token"), texts});
  };
  for (const kind of ["focusin", "mousedown", "select", "keydown", "input"]) {
    document.addEventListener(kind, began, true);
  }
  // the app itself writing a field of the form while an edit is under way (a late render) spoils that edit:
  // a different text replaces what the edit began on, and even the same text moves the caret and drops a
  // selection, so keys typed next land elsewhere (a select-all then typing would append to the old text)
  const area = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value");
  Object.defineProperty(HTMLTextAreaElement.prototype, "value", {
    configurable: true, enumerable: area.enumerable,
    get() { return area.get.call(this); },
    set(v) {
      const same = v === area.get.call(this);
      const moved = same && this === document.activeElement && this.selectionStart !== this.selectionEnd;
      if (window.__curateTypedOn !== null && (!same || moved) && this.closest
          && this.closest("#curate-edit-box")) window.__curateTypedOn = JSON.stringify({token: "overwritten"});
      area.set.call(this, v);
    },
  });
  document.addEventListener("click", (e) => {
    const t = e.target;
    if (t && t.closest && t.closest("#curate-edit-box")) return;
    window.__curateTypedOn = null;
  }, true);
  const KEYS = {a: "curate-accept", r: "curate-reject", n: "curate-next", p: "curate-prev", u: "curate-undo"};
  const press = (id) => {
    const el = document.getElementById(id);
    const btn = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (!btn || btn.disabled || btn.offsetParent === null) return false;
    btn.click();
    return true;
  };
  const typing = (t) => t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  document.addEventListener("keydown", (e) => {  // Ctrl+Enter saves the edit: in its form, or outside any field
    if (!(e.ctrlKey || e.metaKey) || e.key !== "Enter" || e.repeat || e.altKey) return;
    const t = e.target;
    if (typing(t) && !(t.closest && t.closest("#curate-edit-box"))) return;
    if (press("curate-save-edit")) e.preventDefault();
  }, true);
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (typing(e.target)) return;
    const id = KEYS[(e.key || "").toLowerCase()];
    if (id && press(id)) e.preventDefault();
  });
})();
</script>
"""

CSS = """
#curate-title { margin: 0; }
.curate-hidden { display: none !important; }
#curate-header textarea { font-weight: 600; }
/* an output's Accept button keeps its small size at the foot of its column (columns share one height) */
.curate-slot-accept { flex-grow: 0 !important; margin-top: auto; }
"""


def parse_auth(text: str | None, users_file: str | os.PathLike | None = None) -> list[tuple[str, str]] | None:
    """``"alice:pw1,bob:pw2"`` → [("alice", "pw1"), ("bob", "pw2")], plus the ``user:password [role]`` lines of
    ``users_file`` (blank lines and ``#`` comments skipped); nothing given → None (no login). The roles are
    :func:`curate.team.parse_logins`'s.

    Raises SettingsError on an item without ``user:password`` (naming the file and line) or an unreadable
    file."""
    return [(lg.user, lg.password) for lg in team.parse_logins(text, users_file)] or None


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_exposure(settings: Settings) -> None:
    """Refuse to serve beyond this machine without a login: a ``host`` other than a loopback address needs
    ``auth`` / ``users_file``, or ``insecure_no_auth`` (then a warning is printed, loudly). Raises
    SettingsError naming the fix."""
    host = (settings.host or "").strip()
    if host in LOOPBACK or host.startswith("127.") or settings.auth or settings.users_file:
        return
    if not settings.insecure_no_auth:
        raise SettingsError(
            f"--host {host} serves the app to the network without a login: anyone who can reach it could review "
            "under any name, run jobs and export. Give logins (--auth user:pass or --users FILE), or pass "
            "--insecure-no-auth to do it anyway.")
    print(f"WARNING: serving on {host} without a login (--insecure-no-auth): anyone who can reach this address "
          "can review under any name, run jobs and export; reviewer names are not verified.", file=sys.stderr,
          flush=True)


class Handlers:
    """Every handler of one app, one attribute per tab (``.review``, ``.disagreements``, ``.run``, ``.imports``,
    ``.overview``, ``.teachers``, ``.select``, ``.export``, ``.evaluate``) plus ``.api``; they share one
    :class:`~curate.ui.base.AppContext` (the settings, the job runner, one store connection per thread)."""

    def __init__(self, settings: Settings, runner: jobs.JobRunner):
        self.ctx = AppContext(settings, runner)
        self.settings, self.runner = settings, runner
        self.review = review.ReviewHandlers(self.ctx)
        self.disagreements = disagreements.DisagreementHandlers(self.ctx)
        self.run = run.RunHandlers(self.ctx)
        self.imports = imports.ImportHandlers(self.ctx)
        self.overview = overview.OverviewHandlers(self.ctx)
        self.teachers = teachers.TeachersHandlers(self.ctx)
        self.select = select.SelectHandlers(self.ctx)
        self.export = export.ExportHandlers(self.ctx)
        self.evaluate = evaluate.EvaluateHandlers(self.ctx)
        self.api = api.ApiHandlers(self.ctx, self.run, self.teachers)
        self.live = live.LiveHandlers(self.ctx)

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
    ui.add("login_note", gr.Markdown("", visible=False, elem_id="curate-login-note"))
    review.session_state(ui)
    live.layout(ui)
    with gr.Tabs(elem_id="curate-tabs") as tabs:
        ui.add("tabs", tabs)
        for tab in TABS:
            tab.layout(ui, settings)
    return ui


def wire(ui: UI, h: Handlers, demo: gr.Blocks) -> None:
    """The page's probe (:mod:`curate.ui.live`), every event tab by tab, then the named API."""
    live.wire(ui, h.live, demo, [name[:-len("_tab")] for name in ui.c if name.endswith("_tab") and name != "tabs"])
    review.wire(ui, h.review, demo)
    disagreements.wire(ui, h.disagreements)
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
    ``.close()``). Raises SettingsError for a malformed ``auth``, or a network ``host`` without a login
    (:func:`check_exposure`)."""
    check_exposure(settings)
    auth = parse_auth(settings.auth, settings.users_file)
    demo = build_app(settings, runner)
    demo.queue(default_concurrency_limit=4)
    kwargs.setdefault("server_name", settings.host)
    kwargs.setdefault("server_port", settings.port)
    demo.launch(auth=auth, share=False, head=HEAD, css=CSS,
                auth_message="curate: log in to review" if auth else None, footer_links=["api"], **kwargs)
    return demo
