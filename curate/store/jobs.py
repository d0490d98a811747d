"""Jobs: the background runs (generate, ensemble, …), their state, progress and heartbeat (curate.jobs)."""

from __future__ import annotations

import json
import uuid
from typing import Callable, Sequence

from ..errors import JobRunningError, StoreError
from .base import StoreBase, _json, now

#: Every job state; the one home of these names (curate.jobs and the app import them from here).
JOB_STATES = ("queued", "running", "pausing", "paused", "cancelling", "cancelled", "done", "failed",
              "interrupted")
#: States in which a worker owns the job (or is about to): a job left in one by a dead worker is interrupted.
ACTIVE_JOB_STATES = ("queued", "running", "pausing", "cancelling")
#: States that ask the worker to stop at its next step.
STOP_REQUESTED = ("pausing", "cancelling")
#: States a job can be (re)started from: resume = run again.
RUNNABLE_JOB_STATES = ("queued", "paused", "interrupted", "failed")


def _states_sql(states: Sequence[str]) -> str:
    unknown = [s for s in states if s not in JOB_STATES]
    if unknown:
        raise StoreError(f"unknown job state {unknown[0]!r}; one of {JOB_STATES}")
    return ", ".join(f"'{s}'" for s in states)


class JobQueries(StoreBase):
    """Jobs: create, read, update, and the state transitions workers and the app request."""

    # -- jobs -------------------------------------------------------------------------------------------
    def create_job(self, kind: str, config: dict, *, job_id: str | None = None, allow_concurrent: bool = True,
                   alive: Callable[[dict], bool] | None = None) -> str:
        """Insert a queued job and return its id. With ``allow_concurrent=False`` the check and the insert
        happen under one write lock (two processes cannot both start one): an active job of ``kind``
        (queued, running, pausing, cancelling) whose worker is ``alive(job)`` (default: every one) refuses it
        with JobRunningError naming that job; one whose worker is gone is marked 'interrupted' first."""
        jid = job_id or uuid.uuid4().hex[:12]
        with self.atomic():
            if not allow_concurrent:
                for job in self._rows(f"SELECT * FROM jobs WHERE kind = :kind AND state IN "
                                      f"({_states_sql(ACTIVE_JOB_STATES)}) ORDER BY created_at, rowid",
                                      {"kind": kind}):
                    if alive is None or alive(job):
                        raise JobRunningError(_running_message(job), job["id"])
                    self.db.execute("UPDATE jobs SET state = 'interrupted', updated_at = :t WHERE id = :id",
                                    {"t": now(), "id": job["id"]})
            t = now()
            self.db.execute("INSERT INTO jobs (id, kind, config, state, progress, created_at, updated_at, heartbeat)"
                            " VALUES (:id, :kind, :config, 'queued', '{}', :t, :t, :t)",
                            {"id": jid, "kind": kind, "config": _json(config), "t": t})
        return jid

    def active_jobs(self, kind: str | None = None) -> list[dict]:
        """Jobs in an active state (queued, running, pausing, cancelling), oldest first; of ``kind`` if given."""
        rows = self._rows(f"SELECT * FROM jobs WHERE state IN ({_states_sql(ACTIVE_JOB_STATES)})"
                          + (" AND kind = :kind" if kind else "") + " ORDER BY created_at, rowid", {"kind": kind})
        return [self._decode_job(r) for r in rows]

    def get_job(self, job_id: str) -> dict:
        """Raises StoreError for an unknown job id."""
        rows = self._rows("SELECT * FROM jobs WHERE id = :id", {"id": job_id})
        if not rows:
            raise StoreError(f"no job {job_id!r} in {self.path}; `curate jobs` lists them")
        return self._decode_job(rows[0])

    @staticmethod
    def _decode_job(r: dict) -> dict:
        r["config"] = json.loads(r["config"])
        r["progress"] = json.loads(r["progress"] or "{}")
        return r

    def list_jobs(self, limit: int = 50) -> list[dict]:
        rows = self._rows("SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT :n", {"n": limit})
        return [self._decode_job(r) for r in rows]

    def update_job(self, job_id: str, *, state: str | None = None, progress: dict | None = None,
                   error: str | None = None, pid: int | None = None) -> None:
        if state is not None and state not in JOB_STATES:
            raise StoreError(f"unknown job state {state!r}; one of {JOB_STATES}")
        t = now()
        sets, params = ["updated_at = :t", "heartbeat = :t"], {"t": t, "id": job_id}
        for col, val in (("state", state), ("error", error), ("pid", pid)):
            if val is not None:
                sets.append(f"{col} = :{col}")
                params[col] = val
        if progress is not None:
            sets.append("progress = :progress")
            params["progress"] = _json(progress)
        self.db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = :id", params)
        self.db.conn.commit()

    def job_state(self, job_id: str) -> str:
        return self._one("SELECT state FROM jobs WHERE id = :id", {"id": job_id})

    def mark_interrupted(self, alive: Callable[[dict], bool]) -> list[str]:
        """Active jobs whose worker is gone (``alive(job)`` is false) become 'interrupted'. Returns their ids."""
        ids = [r["id"] for r in self._rows(
            f"SELECT * FROM jobs WHERE state IN ({_states_sql(ACTIVE_JOB_STATES)})") if not alive(r)]
        for jid in ids:
            self.update_job(jid, state="interrupted")
        return ids

    def request_job_state(self, job_id: str, state: str, *, only_from: Sequence[str]) -> bool:
        """Move a job to ``state`` if it is in one of ``only_from`` (atomic). Returns whether it moved."""
        cur = self.db.execute(
            f"UPDATE jobs SET state = :s, updated_at = :t WHERE id = :id AND state IN ({_states_sql(only_from)})",
            {"s": state, "t": now(), "id": job_id})
        self.db.conn.commit()
        return cur.rowcount > 0


def _running_message(job: dict) -> str:
    jid, kind, state = job["id"], job["kind"], job["state"]
    return (f"a {kind} job is already {state} on this store: job {jid}. Follow it in the Run tab (click it in the "
            f"job list) or with `curate jobs`; pause or cancel it there (`curate jobs --cancel {jid}`) before "
            f"starting another {kind} job, or start this one alongside it on purpose (tick \"Run alongside the "
            "running job\" in the Run tab, or pass --allow-concurrent).")
