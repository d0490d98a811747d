"""The connection under every query: opening the file (WAL, pragmas), applying pending migrations,
transactions, and the small helpers the query mixins share (rows, one value, the next ``seq``, JSON,
``IN (…)`` chunks, the quality clause, content-hash ids)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from sqlite_utils import Database
from sqlite_utils.utils import hash_record

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


def content_id(**parts: Any) -> str:
    """A stable sha1 id over the given named parts (sqlite-utils' ``hash_record``)."""
    return hash_record(parts)


#: how long a write waits for another process's write lock before giving up (seconds): bounded, so a reviewer
#: gets a clear "busy, try again" instead of a hang
LOCK_TIMEOUT_S = 30.0


def now() -> float:
    return time.time()


def _json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True)



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
