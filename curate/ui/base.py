"""What every tab's handlers share: the app context (settings, job runner, one store connection per thread),
the reviewer's identity, library errors → ``gr.Error``, the queue filter built from component values, and
small formatting helpers.

Per-user state lives in ``gr.State`` (the open candidate, this session's undo history) or the database —
never in a handler object, which all sessions share.
"""

from __future__ import annotations

import functools
import html
import re
import logging
import sqlite3
import threading
from datetime import datetime
from typing import Callable

import gradio as gr
from pydantic import ValidationError

from .. import jobs, review, team
from ..errors import ConflictError, CurateError, NotAllowed
from ..settings import Settings
from ..store import Store


def safe(text: object) -> str:
    """Text for a toast (``gr.Error`` / ``gr.Warning`` / ``gr.Info`` render their message as HTML) or Markdown:
    every ``<``, ``>`` and ``&`` escaped, so a reviewer's name or a generated text shows as the text it is."""
    return html.escape(str(text), quote=False)


_UNSAFE_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data|file):")


def safe_markdown(text: object) -> str:
    """Admin-written Markdown (the review guidelines) made inert before gr.Markdown renders it: raw HTML is
    escaped (:func:`safe`: a tag shows as text) and script-capable link schemes (``javascript:``, ``data:``…)
    are broken, so only Markdown's own formatting and plain links remain (gr.Markdown sanitises too)."""
    return _UNSAFE_SCHEME.sub(r"blocked-\1:", safe(text))


_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md_literal(text: object) -> str:
    """Plain text (a reviewer's name) to put inside Markdown: HTML escaped and every Markdown punctuation mark
    backslash-escaped, so it shows as the text it is (no link, no emphasis)."""
    return _MD_PUNCT.sub(r"\\\1", safe(text))


def warn(message: str) -> None:
    gr.Warning(safe(message))


def info(message: str) -> None:
    gr.Info(safe(message))


def as_gr_error(e: Exception) -> gr.Error:
    """Any error a handler meets → a ``gr.Error`` whose (escaped) message says what happened and what to do:
    the library's own message, or, for a store error that escaped the library (SQLite), what it means."""
    if isinstance(e, ConflictError):
        return gr.Error(safe(e), title="Conflict — nothing was overwritten")
    if isinstance(e, NotAllowed):
        return gr.Error(safe(e), title="Not allowed")
    if isinstance(e, ValidationError):
        return gr.Error(safe(_validation_message(e)))
    if isinstance(e, (CurateError, ValueError)):
        return gr.Error(safe(e))
    if isinstance(e, sqlite3.Error):
        return gr.Error(safe(f"The store could not complete this ({e}). Nothing was saved; try again in a moment "
                             "(another process may be writing to the same store)."), title="Store error")
    raise e


def user_errors(fn: Callable) -> Callable:
    """Library errors → ``gr.Error`` with the library's message (which says what to do), escaped; each logged
    as one line (:func:`logged`)."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as e:
            raise logged(e, fn.__name__)
        except (CurateError, ValueError, sqlite3.Error) as e:
            raise logged(as_gr_error(e), fn.__name__) from e
    return inner


log = logging.getLogger("curate.ui")


def logged(e: gr.Error, where: str) -> gr.Error:
    """A user-facing error (a refused input, a conflict: the user sees the message) is logged as one line,
    without Gradio's traceback; real bugs are not ``gr.Error`` and keep theirs. Returns ``e``."""
    if e.print_exception:
        e.print_exception = False
        log.warning("%s refused: %s", where, " ".join(str(e.message).split()))
    return e


def _validation_message(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())


def queue_filter(status: str | None = "pending", task_type: str | None = None, model: str | None = None,
                 consensus: str | None = None, tau: float | None = 0.01, search: str | None = "",
                 sort: str | None = "seq", quality_scorer: str | None = None,
                 quality_min: float | None = None, quality_max: float | None = None, source: str | None = None,
                 by_reviewer: str | None = None, rouge_min: float | None = None,
                 rouge_max: float | None = None) -> review.QueueFilter:
    """The queue filter from component (or API) values: "" / None mean "any"; a bad value → ``gr.Error``
    with the validation message."""
    def num(v):
        return None if v is None or v == "" else float(v)
    try:
        return review.QueueFilter(status=status or None, task_type=task_type or None, model=model or None,
                                  consensus=consensus or None, tau=tau if tau is not None else 0.0,
                                  search=search or "", sort=sort or "seq", quality_scorer=quality_scorer or None,
                                  quality_min=num(quality_min), quality_max=num(quality_max),
                                  source=source or None, reviewer=(by_reviewer or "").strip() or None,
                                  rouge_min=num(rouge_min), rouge_max=num(rouge_max))
    except ValidationError as e:
        raise gr.Error(safe(_validation_message(e))) from e


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 candidate"``, ``"2 candidates"``, ``"1,234 candidates"`` (``many``: the plural when it is not
    ``word + "s"``)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _num(v: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(v)


class AppContext:
    """What one app's handlers share: the settings, the job runner and per-thread store connections."""

    def __init__(self, settings: Settings, runner: jobs.JobRunner, logins: team.Team | None = None):
        self.settings = settings
        self.db_path = str(settings.db)
        self.runner = runner
        self.team = logins or team.Team.from_settings(settings)
        self._local = threading.local()

    def store(self) -> Store:
        """This thread's connection (a Store is used from one thread)."""
        st = getattr(self._local, "store", None)
        if st is None:
            st = self._local.store = Store(self.db_path)
        return st


class TabHandlers:
    """The base of each tab's handlers. Shared by every session: holds only the app context."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.settings = ctx.settings
        self.runner = ctx.runner

    def store(self) -> Store:
        return self.ctx.store()

    @property
    def quorum(self) -> int:
        """Reviews per candidate (the ``reviews_per_candidate`` setting)."""
        return self.settings.reviews_per_candidate

    def login(self, request: gr.Request | None) -> str | None:
        return getattr(request, "username", None) if request is not None else None

    def role(self, request: gr.Request | None) -> str:
        """The user's role: the login's, or "admin" for the one local user when the app has no login."""
        return self.ctx.team.role(self.login(request))

    def require_admin(self, request: gr.Request | None, what: str) -> None:
        """Raise ``gr.Error`` unless the user may run admin actions (:func:`curate.team.Team.require_admin`)."""
        try:
            self.ctx.team.require_admin(self.login(request), what)
        except NotAllowed as e:
            raise as_gr_error(e) from e

    def reviewer(self, name: str | None, request: gr.Request | None = None) -> str:
        """The login name when the app requires one, else the name typed in the Reviewer box."""
        user = getattr(request, "username", None) if request is not None else None
        if user:
            return user
        name = (name or "").strip()
        if not name:
            raise gr.Error("Type your name in the Reviewer box (top right) first: every review records who "
                           "made it.")
        return name

    def api_reviewer(self, reviewer: str, request: gr.Request | None) -> str:
        """The API's reviewer: the login, else the name passed, else the settings' reviewer."""
        user = getattr(request, "username", None) if request is not None else None
        return user or (reviewer or "").strip() or self.settings.reviewer
