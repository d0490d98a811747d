"""Background jobs: generation and ensembling runs recorded in the store, resumable, pausable, cancellable.

A job is a row (kind, config, state, progress, heartbeat, error). The work function of each kind is
resumable by construction (it continues from stored rows), so *resume* is simply running the job again.

States: queued → running → done | failed | paused | cancelled | interrupted. Pause and cancel are
requests (``pausing`` / ``cancelling``) that the worker honours between steps. A job left active by a
process that died (a server killed mid-run) is marked ``interrupted`` when a store is next opened by
:func:`recover`, and can be resumed.

The CLI runs jobs in the foreground with :func:`run_job`; the app starts them on a worker thread with
:class:`JobRunner`, so closing the browser tab never stops them.
"""

from __future__ import annotations

import os
import socket
import threading
import traceback
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from .errors import CurateError, StoreError
from .generate import GenerateConfig, Stopped, run_generation
from .mixture import ModelPool
from .store import Store

HOST = socket.gethostname()

# kind -> function(store, config_dict, pool, job_id, on_progress, should_stop)
WorkFn = Callable[..., Any]
KINDS: dict[str, WorkFn] = {}
# states run_job starts from (resume = run again); every other state is active or final
RUNNABLE = ("queued", "paused", "interrupted", "failed")


def register_kind(kind: str) -> Callable[[WorkFn], WorkFn]:
    def deco(fn: WorkFn) -> WorkFn:
        KINDS[kind] = fn
        return fn
    return deco


@register_kind("generate")
def _generate(store: Store, config: dict, pool: ModelPool, job_id: str, on_progress, should_stop):
    return run_generation(store, GenerateConfig(**config), pool, job_id=job_id, on_progress=on_progress,
                          should_stop=should_stop)


@register_kind("ensemble")
def _ensemble(store: Store, config: dict, pool: ModelPool, job_id: str, on_progress, should_stop):
    from .ensemble import EnsembleConfig, run_ensemble
    return run_ensemble(store, EnsembleConfig(**config), pool, job_id=job_id, on_progress=on_progress,
                        should_stop=should_stop)


class TeachersJobConfig(BaseModel):
    """A teacher-compatibility run (curate.teachers.compute_teacher_stats) as a background job."""

    model_config = ConfigDict(extra="forbid")

    student: str = Field("smollm2-135m-instruct", min_length=1, description="the student model spec")
    scorer: str = Field("proxy:consensus", min_length=1, description="quality scorer spec (curate.quality)")
    limit: int | None = Field(None, ge=1, description="instances sampled (None: all)")
    batch_size: int = Field(8, ge=1, le=256)


@register_kind("teachers")
def _teachers(store: Store, config: dict, pool: ModelPool, job_id: str, on_progress, should_stop):
    from .quality import load_scorer
    from .teachers import compute_teacher_stats
    c = TeachersJobConfig(**config)
    on_progress({"stage": f"loading the student {c.student}"})
    student = pool.get(c.student)
    scorer = load_scorer(c.scorer, store=store, batch_size=c.batch_size)

    def progress(stage: str, done: int, total: int) -> None:
        on_progress({"stage": stage, "done": done, "total": total})

    result = compute_teacher_stats(store, student, scorer, limit=c.limit, batch_size=c.batch_size,
                                   student_name=c.student, progress=progress, should_stop=should_stop)
    if should_stop():
        raise Stopped()
    on_progress({"stage": "done", "done": result["outputs"], "total": result["outputs"], "result": result})


class EmbedJobConfig(BaseModel):
    """Embedding a selection pool into the store's cache (curate.select.embed_pool) as a background job."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("all-minilm-l6-v2", min_length=1, description="embedding model (embedded name, folder, "
                                                                     "HF id)")
    source: str = Field("passing", description="the pool: accepted | passing | all")
    tau: float = Field(0.01, ge=0.0, le=1.0)


@register_kind("embed")
def _embed(store: Store, config: dict, pool: ModelPool, job_id: str, on_progress, should_stop):
    from .select import embed_pool, load_pool
    c = EmbedJobConfig(**config)
    candidates = load_pool(store, c.source, tau=c.tau, quality="none")
    on_progress({"stage": f"embedding with {c.model}", "done": 0, "total": len(candidates.ids)})

    def progress(done: int, total: int) -> None:  # after each stored chunk: a stop here loses nothing
        on_progress({"stage": f"embedding with {c.model}", "done": done, "total": total})
        if should_stop():
            raise Stopped()

    _, stats = embed_pool(store, candidates, c.model, progress=progress)
    on_progress({"stage": "done", "done": len(candidates.ids), "total": len(candidates.ids), "result": stats})


#: how each kind's config is validated when the job is created
CONFIGS: dict[str, type[BaseModel]] = {"generate": GenerateConfig, "teachers": TeachersJobConfig,
                                       "embed": EmbedJobConfig}


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
            on_progress: Callable[[Any], None] | None = None) -> dict:
    """Run (or resume) job ``job_id`` in this thread until it ends; returns the final job row.

    KeyboardInterrupt leaves the job 'interrupted' (everything stored so far stays) and is re-raised.
    """
    job = store.get_job(job_id)
    if job["kind"] not in KINDS:
        raise StoreError(f"job {job_id} has unknown kind {job['kind']!r}; known: {', '.join(KINDS)}")
    if not store.request_job_state(job_id, "running", only_from=RUNNABLE):
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
    pool = pool or ModelPool()

    def progress(p) -> None:
        data = p.as_dict() if hasattr(p, "as_dict") else dict(p)
        store.update_job(job_id, progress=data)
        if on_progress:
            on_progress(p)

    def should_stop() -> bool:
        return store.job_state(job_id) in ("pausing", "cancelling")

    try:
        KINDS[job["kind"]](store, job["config"], pool, job_id, progress, should_stop)
    except Stopped:
        store.update_job(job_id, state="paused" if store.job_state(job_id) == "pausing" else "cancelled")
    except KeyboardInterrupt:
        store.update_job(job_id, state="interrupted", error="interrupted by the user (Ctrl-C)")
        raise
    except CurateError as e:
        store.update_job(job_id, state="failed", error=str(e))
    except Exception as e:  # a bug or a backend crash: keep the traceback for the UI / `curate jobs`
        store.update_job(job_id, state="failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    else:
        store.update_job(job_id, state="done")
    return store.get_job(job_id)


def start_job(store: Store, kind: str, config: dict) -> str:
    """Create a job row (validated config) and return its id; run it with run_job or JobRunner."""
    if kind not in KINDS:
        raise StoreError(f"unknown job kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "ensemble":
        from .ensemble import EnsembleConfig
        CONFIGS.setdefault("ensemble", EnsembleConfig)
    if kind in CONFIGS:
        config = CONFIGS[kind](**config).model_dump(mode="json")
    return store.create_job(kind, config)


def pause(store: Store, job_id: str) -> bool:
    """Ask a queued or running job to pause; its worker stops after the current step. Returns whether the
    request was recorded (False: the job is in no state that can pause)."""
    return store.request_job_state(job_id, "pausing", only_from=("queued", "running"))


def cancel(store: Store, job_id: str) -> bool:
    """Cancel a job; stored rows stay. A job that is not computing (queued, paused, interrupted, failed)
    ends at once: :func:`run_job` never runs a cancelled job, even one already waiting for a worker. A
    running (or pausing) one is asked to stop after its current step. Returns whether anything changed."""
    return (store.request_job_state(job_id, "cancelled", only_from=RUNNABLE)
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

    def submit(self, job_id: str) -> None:
        """Start (or resume) ``job_id`` on a worker thread."""
        with self._lock:
            t = self._threads.get(job_id)
            if t is not None and t.is_alive():
                return
            t = threading.Thread(target=self._work, args=(job_id,), name=f"curate-job-{job_id}", daemon=True)
            self._threads[job_id] = t
            t.start()

    def _work(self, job_id: str) -> None:
        with self._run_lock, Store(self.db_path) as store:  # one job computes at a time
            run_job(store, job_id, self.pool)

    def running(self) -> list[str]:
        return [j for j, t in self._threads.items() if t.is_alive()]

    def join(self, timeout: float | None = None) -> None:
        for t in list(self._threads.values()):
            t.join(timeout)
