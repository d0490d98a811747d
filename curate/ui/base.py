"""What every tab's handlers share: the app context (settings, job runner, one store connection per thread),
the reviewer's identity, library errors → ``gr.Error``, the queue filter built from component values, and
small formatting helpers.

Per-user state lives in ``gr.State`` (the open candidate, this session's undo history) or the database —
never in a handler object, which all sessions share.
"""

from __future__ import annotations

import functools
import threading
from datetime import datetime
from typing import Callable

import gradio as gr
from pydantic import ValidationError

from .. import jobs, review
from ..errors import ConflictError, CurateError
from ..settings import Settings
from ..store import Store


def user_errors(fn: Callable) -> Callable:
    """Library errors → ``gr.Error`` with the library's message (which says what to do)."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConflictError as e:
            raise gr.Error(str(e), title="Conflict — nothing was overwritten") from e
        except (CurateError, ValueError) as e:
            msg = _validation_message(e) if isinstance(e, ValidationError) else str(e)
            raise gr.Error(msg) from e
    return inner


def _validation_message(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())


def queue_filter(status: str | None = "pending", task_type: str | None = None, model: str | None = None,
                 consensus: str | None = None, tau: float | None = 0.01, search: str | None = "",
                 sort: str | None = "seq", quality_scorer: str | None = None,
                 quality_min: float | None = None) -> review.QueueFilter:
    """The queue filter from component (or API) values: "" / None mean "any"; a bad value → ``gr.Error``
    with the validation message."""
    try:
        return review.QueueFilter(status=status or None, task_type=task_type or None, model=model or None,
                                  consensus=consensus or None, tau=float(tau if tau is not None else 0.0),
                                  search=search or "", sort=sort or "seq", quality_scorer=quality_scorer or None,
                                  quality_min=None if quality_min is None else float(quality_min))
    except ValidationError as e:
        raise gr.Error(_validation_message(e)) from e


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _num(v: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(v)


class AppContext:
    """What one app's handlers share: the settings, the job runner and per-thread store connections."""

    def __init__(self, settings: Settings, runner: jobs.JobRunner):
        self.settings = settings
        self.db_path = str(settings.db)
        self.runner = runner
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
