"""The connection under every query: opening the file (WAL, pragmas), applying pending migrations,
transactions, and the small helpers the query mixins share (rows, one value, the next ``seq``, JSON,
``IN (…)`` chunks, the quality clause, content-hash ids)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Sequence

from sqlite_utils import Database

from ..errors import StoreBusyError, StoreError
from .migrations import migrations
from .sql import QUALITY_SQL

if TYPE_CHECKING:
    from . import Store


def _quality_clause(quality_scorer: str | None, quality_min: float | None, p: dict) -> str:
    """`` AND <QUALITY_SQL>`` with its parameters put in ``p`` when both are set, else "" (no filter)."""
    if not quality_scorer or quality_min is None:
        return ""
    p.update(qs=quality_scorer, qmin=float(quality_min))
    return f" AND {QUALITY_SQL}"


def _in_lists(values: Sequence[Any], size: int = 500) -> Iterator[tuple[str, dict]]:
    """``(placeholders, params)`` for ``IN (…)`` over ``values`` in chunks of ``size`` (SQLite caps the number
    of bound parameters of one statement)."""
    for start in range(0, len(values), size):
        chunk = {f"v{j}": v for j, v in enumerate(values[start:start + size])}
        yield ", ".join(":" + k for k in chunk), chunk


# hash_record's own JSON (sorted keys, no spaces, repr for the rest), with one encoder built once: the same bytes
_HASH_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=repr).encode
_STORE_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def content_id(**parts: Any) -> str:
    """A stable sha1 id over the given named parts: sqlite-utils' ``hash_record`` (its plain twin; a test holds
    the two equal), without building a JSON encoder per call."""
    return hashlib.sha1(_HASH_JSON(parts).encode("utf8")).hexdigest()


#: how long a write waits for another process's write lock before giving up (seconds): bounded, so a reviewer
#: gets a clear "busy, try again" instead of a hang
LOCK_TIMEOUT_S = 30.0


def now() -> float:
    return time.time()


def _json(v: Any) -> str:
    return _STORE_JSON(v)



class StoreVersion(NamedTuple):
    """:meth:`StoreBase.store_version`: ``jobs`` moves with every job update, ``data`` with every row the app
    shows (candidates, outputs, consensus, scores, reviews, …)."""

    jobs: tuple
    data: tuple

    @property
    def active_jobs(self) -> int:
        return self.jobs[1]


class StoreBase:
    """The connection and plumbing that every query mixin builds on. :class:`~curate.store.Store` is this
    plus all the query mixins; open a ``Store``, not a ``StoreBase``."""

    def __init__(self, path: str | os.PathLike = "data/curate.db"):
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder for the database {self.path!r}: {e}. "
                                 "Pass another --db PATH.") from e
        try:
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
            self.db = Database(conn)
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open {self.path!r} as a curate database: {e}. "
                             "Is it a SQLite file? Pass another --db PATH.") from e

    def _migrate(self) -> None:
        """Apply pending migrations under a write lock, so two processes opening a new database at once
        do not both run m001 (the second waits, then finds nothing pending)."""
        if not migrations.pending(self.db):
            return
        with self.atomic():
            migrations.apply(self.db)  # nested in our transaction: savepoints

    # -- plumbing ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator["Store"]:
        """All writes inside happen together or not at all, under the write lock taken up front.

        The outermost block starts with ``BEGIN IMMEDIATE``: it waits (at most :data:`LOCK_TIMEOUT_S`) for
        any other writer, then holds the lock, so what it reads cannot change before it writes (a deferred
        transaction that read first fails with "database is locked" when another process committed
        meanwhile). Raises :class:`~curate.errors.StoreBusyError` when the wait runs out; nothing is written.
        Nested blocks use savepoints."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():  # a savepoint inside ours
                yield self
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            raise StoreBusyError(
                f"the store {self.path} is busy: another process held its write lock for more than "
                f"{LOCK_TIMEOUT_S:g} s (a job step, an export or another app on the same file); nothing was "
                "written, try again") from e
        try:
            yield self
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        conn.commit()

    @contextmanager
    def bulk_writes(self, cache_mib: int = 256, checkpoint_mib: int = 64) -> Iterator[None]:
        """Settings for a bulk import on this connection, restored afterwards: a larger page cache (rows keyed
        by content hashes land all over their indexes: with SQLite's default 2 MiB most inserts would read and
        write pages) and fewer WAL checkpoints (each one syncs the file; by default one comes every 4 MiB)."""
        old = self._one("PRAGMA cache_size"), self._one("PRAGMA wal_autocheckpoint")
        self.db.execute(f"PRAGMA cache_size = {-int(cache_mib) * 1024}")
        self.db.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint_mib) * 256}")
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA cache_size = {int(old[0])}")
            self.db.execute(f"PRAGMA wal_autocheckpoint = {int(old[1])}")

    # -- the version probe the app polls --------------------------------------------------------------
    #: the tables whose rows the app shows; each only grows or replaces rows (a replaced row gets a new rowid)
    VERSIONED_TABLES = ("instructions", "candidates", "outputs", "consensus", "scores", "reviews", "embeddings",
                        "selections")

    def store_version(self) -> StoreVersion:
        """What the app needs to know whether anything it shows changed, in a few index lookups (no scans):
        ``jobs`` = (the latest job update time, the number of active jobs) and ``data`` = the largest rowid of
        each of :data:`VERSIONED_TABLES` (every insert, and every ``INSERT OR REPLACE``, moves it; a review
        action always appends to ``reviews``). Equal versions: nothing the app shows changed."""
        from .jobs import ACTIVE_JOB_STATES, _states_sql  # the one home of the state names
        row = self.db.execute(
            "SELECT (SELECT MAX(updated_at) FROM jobs), "
            f"(SELECT COUNT(*) FROM jobs WHERE state IN ({_states_sql(ACTIVE_JOB_STATES)})), "
            + ", ".join(f"(SELECT MAX(rowid) FROM {t})" for t in self.VERSIONED_TABLES)).fetchone()
        return StoreVersion(jobs=(row[0] or 0.0, row[1]), data=tuple(v or 0 for v in row[2:]))

    def applied_migrations(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    def table_names(self) -> list[str]:
        return self.db.table_names()

    def _rows(self, sql: str, params: Any = None) -> list[dict]:
        return [dict(r) for r in self.db.query(sql, params or {})]

    def _one(self, sql: str, params: Any = None) -> Any:
        row = self.db.execute(sql, params or {}).fetchone()
        return None if row is None else row[0]

    def _next_seq(self, table: str) -> int:
        return (self._one(f"SELECT MAX(seq) FROM {table}") or 0) + 1
