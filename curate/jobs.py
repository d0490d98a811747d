"""Background jobs: stage runs (generate, ensemble, score, teachers, embed, import, …) recorded in the store, resumable,
pausable, cancellable.

A job is a row (kind, config, state, progress, heartbeat, error). Its kind names a stage (:data:`STAGES`, the
Stage contract of :mod:`curate.stage`); this module knows nothing about any one stage. Every stage is
resumable by construction (it continues from stored rows), so *resume* is simply running the job again.

States: queued → running → done | failed | paused | cancelled | interrupted. Pause and cancel are
requests (``pausing`` / ``cancelling``) that the worker honours at its next step, a model call included (the
backend's progress hook checks them between decode steps). Resume while a job is still pausing withdraws the
pause. One job of a kind is active per store unless asked otherwise (:func:`start_job`). A job left active by a
process that died (a server killed mid-run) is marked ``interrupted`` when a store is next opened by
:func:`recover`, and can be resumed.

The CLI runs jobs in the foreground with :func:`run_job`; the app starts them on a worker thread with
:class:`JobRunner`, so closing the browser tab never stops them.
"""

from __future__ import annotations

import importlib
import os
import threading
import traceback
from typing import Any, Callable

from .errors import CurateError, StoreError, Stopped
from .mixture import ModelPool
from .stage import Progress, Stage, StageContext
from .store import Store
from .store.jobs import ACTIVE_JOB_STATES, JOB_STATES, RUNNABLE_JOB_STATES, STOP_REQUESTED

__all__ = ["STAGES", "register_stage", "stage", "recover", "run_job", "start_job", "pause", "withdraw_pause",
           "cancel", "JobRunner",
           "JOB_STATES", "ACTIVE_JOB_STATES", "RUNNABLE_JOB_STATES"]


#: kind -> the module implementing that stage (the Stage contract, curate.stage), imported when a job of that
#: kind is created or run. Adding a stage is one module and one line here (or :func:`register_stage`).
STAGES: dict[str, str] = {
    "generate": "curate.generate",
    "ensemble": "curate.ensemble",
    "score": "curate.score",
    "teachers": "curate.teachers",
    "embed": "curate.embed",
    "evaluate": "curate.evaluate",
    "train": "curate.train",
    "experiment": "curate.experiment",
    "import": "curate.importer",
}


def register_stage(kind: str, module: str) -> None:
    """Make ``kind`` a job kind run by ``module`` (importable; it exposes ``Config`` and ``run``)."""
    STAGES[kind] = module


def stage(kind: str) -> Stage:
    """The stage module of job kind ``kind``. Raises StoreError for an unknown kind (listing the known ones)
    and CurateError for a registered module that does not offer the Stage contract."""
    if kind not in STAGES:
        raise StoreError(f"unknown job kind {kind!r}; known: {', '.join(STAGES)}")
    mod = importlib.import_module(STAGES[kind])
    if not (isinstance(getattr(mod, "Config", None), type) and callable(getattr(mod, "run", None))):
        raise CurateError(f"{STAGES[kind]} (job kind {kind!r}) has no Config class and run(store, config, ctx) "
                          "function: see docs/ARCHITECTURE.md, \"Adding a stage\"")
    return mod  # type: ignore[return-value]


def _live_threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def _alive(job: dict) -> bool:
    """Whether the worker of an active job still exists (same host only; pid check, thread name check)."""
    pid = job.get("pid")
    if not pid:
        return False
    if pid == os.getpid():
        return f"curate-job-{job['id']}" in _live_threads()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(store: Store) -> list[str]:
    """Mark jobs whose worker died as 'interrupted'. Returns their ids."""
    return store.mark_interrupted(_alive)


def run_job(store: Store, job_id: str, pool: ModelPool | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Run (or resume) job ``job_id`` in this thread until it ends; returns the final job row.

    The job's stage runs with a :class:`~curate.stage.StageContext` whose progress goes to the job row (and
    to ``on_progress``) and whose ``should_stop()`` is true once a pause or cancel was requested.
    KeyboardInterrupt leaves the job 'interrupted' (everything stored so far stays) and is re-raised.
    """
    job = store.get_job(job_id)
    st = stage(job["kind"])
    if not store.request_job_state(job_id, "running", only_from=RUNNABLE_JOB_STATES):
        # a request that came while the job waited for a worker is honoured now; done / cancelled stay
        state = store.job_state(job_id)
        if state == "pausing":
            store.request_job_state(job_id, "paused", only_from=("pausing",))
        elif state == "cancelling":
            store.request_job_state(job_id, "cancelled", only_from=("cancelling",))
        elif state == "running":
            raise StoreError(f"job {job_id} is already running (pid {job.get('pid')}); pause or cancel it, "
                             "or wait for it to end")
        return store.get_job(job_id)
    store.update_job(job_id, pid=os.getpid(), error="")

    def progress(p: Progress) -> None:
        store.update_job(job_id, progress=p.as_dict())
        if on_progress:
            on_progress(p)

    def should_stop() -> bool:
        return store.job_state(job_id) in STOP_REQUESTED

    pool = pool or ModelPool()
    while True:
        ctx = StageContext(job_id=job_id, pool=pool, on_progress=progress, should_stop=should_stop)
        if not _run_stage(store, job_id, st, job["config"], ctx):
            return store.get_job(job_id)
        # the pause was withdrawn (Resume while pausing) after the stage had stopped: run it again


def _run_stage(store: Store, job_id: str, st: Stage, config: dict, ctx: StageContext) -> bool:
    """Run the stage once and record how it ended. Returns True when it stopped for a pause that was withdrawn
    meanwhile (the job is 'running' again), so the caller runs it again."""
    try:
        result = st.run(store, st.Config(**config), ctx)
        if result is not None and ctx.progress.result is None:
            ctx.report(result=result)
    except Stopped:
        # the request is honoured atomically: pausing → paused, cancelling → cancelled
        if not (store.request_job_state(job_id, "paused", only_from=("pausing",))
                or store.request_job_state(job_id, "cancelled", only_from=("cancelling",))):
            return store.job_state(job_id) == "running"
    except KeyboardInterrupt:
        store.update_job(job_id, state="interrupted", error="interrupted by the user (Ctrl-C)")
        raise
    except CurateError as e:
        store.update_job(job_id, state="failed", error=str(e))
    except Exception as e:  # a bug or a backend crash: keep the traceback for the UI / `curate jobs`
        store.update_job(job_id, state="failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    else:
        store.update_job(job_id, state="done")
    return False


def start_job(store: Store, kind: str, config: dict, *, allow_concurrent: bool = False) -> str:
    """Create a job row with its config validated by the stage's ``Config`` (defaults filled in) and return
    its id; run it with :func:`run_job` or :class:`JobRunner`. A stage with a ``check(store, config)`` gets
    to refuse first (e.g. nothing to score yet, a model spec that names no model). One active job of a kind
    per store: unless ``allow_concurrent``, a queued or running job of ``kind`` refuses the new one
    (checked and inserted under one write lock, so two processes cannot both start one). Raises StoreError
    for an unknown kind, pydantic's ValidationError (a ValueError) for a bad config, the stage's CurateError
    from ``check`` and JobRunningError (naming the running job) for a second job of the kind."""
    st = stage(kind)
    cfg = st.Config(**config)
    check = getattr(st, "check", None)
    if check is not None:  # the stage's own preflight: refuse now rather than fail in the background
        check(store, cfg)
    return store.create_job(kind, cfg.model_dump(mode="json"), allow_concurrent=allow_concurrent,
                            alive=_may_be_working)


def _may_be_working(job: dict) -> bool:
    """For the one-job-per-kind check: whether an active job may still have a worker. A job without a pid waits
    for one (queued), a job of this process may run on any thread; another process's counts while it lives."""
    pid = job.get("pid")
    return not pid or pid == os.getpid() or _alive(job)


def pause(store: Store, job_id: str) -> bool:
    """Ask a queued or running job to pause; its worker stops at its next generation step (a model call checks
    the request between decode steps). Returns whether the request was recorded (False: the job is in no
    state that can pause)."""
    return store.request_job_state(job_id, "pausing", only_from=("queued", "running"))


def withdraw_pause(store: Store, job_id: str) -> bool:
    """Resume a job that is still pausing: the request is withdrawn (pausing → running) and its worker goes
    on; one that stopped meanwhile runs again (:func:`run_job`). Returns whether the job was pausing."""
    return store.request_job_state(job_id, "running", only_from=("pausing",))


def cancel(store: Store, job_id: str) -> bool:
    """Cancel a job; stored rows stay. A job that is not computing (queued, paused, interrupted, failed)
    ends at once: :func:`run_job` never runs a cancelled job, even one already waiting for a worker. A
    running (or pausing) one is asked to stop after its current step. Returns whether anything changed."""
    return (store.request_job_state(job_id, "cancelled", only_from=RUNNABLE_JOB_STATES)
            or store.request_job_state(job_id, "cancelling", only_from=("running", "pausing")))


class JobRunner:
    """Runs jobs on worker threads, each with its own store connection; one model pool shared by all
    (models are loaded once per process). Jobs run one at a time (a queue), as the CPU is the limit."""

    def __init__(self, db_path: str, pool: ModelPool | None = None):
        self.db_path = db_path
        self.pool = pool or ModelPool()
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._again: set[str] = set()

    def submit(self, job_id: str, *, again: bool = False) -> None:
        """Start (or resume) ``job_id`` on a worker thread. When its worker is still alive, nothing happens,
        or with ``again`` the worker runs the job once more when it is through (a Resume that came while the
        worker was finishing a pause)."""
        with self._lock:
            t = self._threads.get(job_id)
            if t is not None and t.is_alive():
                if again:
                    self._again.add(job_id)
                return
            t = threading.Thread(target=self._work, args=(job_id,), name=f"curate-job-{job_id}", daemon=True)
            self._threads[job_id] = t
            t.start()

    def _work(self, job_id: str) -> None:
        with self._run_lock, Store(self.db_path) as store:  # one job computes at a time
            while True:
                run_job(store, job_id, self.pool)
                with self._lock:
                    if job_id not in self._again:
                        return
                    self._again.discard(job_id)

    def running(self) -> list[str]:
        return [j for j, t in self._threads.items() if t.is_alive()]

    def join(self, timeout: float | None = None) -> None:
        for t in list(self._threads.values()):
            t.join(timeout)
