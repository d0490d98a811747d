"""The SQLite store: schema, migrations and every query. No other module knows SQL.

One :class:`Store` owns one database file (or ``":memory:"``). Opening it applies any pending migration
(``m001_…``, ``m002_…``, only ever appended, each recorded once applied, each in a transaction with its
record), so a fresh database and an existing one are handled the same way. The journal is WAL, so the
app's readers never block the background writer.

Rows get content-hash ids (``content_id``): re-inserting the same row collapses instead of duplicating,
which is what makes every stage resumable.

Data flows one way: seeds → completions → instructions → instances → outputs → consensus / scores →
reviews → export. Thresholds are queries over stored scores, never recomputation.

A ``Store`` is used from one thread; open one per thread (opening is cheap).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations
from sqlite_utils.utils import hash_record

from .errors import ConflictError, StoreError

__all__ = ["Store", "content_id", "PASSING_SQL", "REVIEW_ACTIONS", "REVIEW_STATUSES", "JOB_STATES"]

REVIEW_ACTIONS = ("accept", "edit", "reject", "reset")
REVIEW_STATUSES = ("pending", "accepted", "edited", "rejected")
JOB_STATES = ("queued", "running", "pausing", "paused", "cancelling", "cancelled", "done", "failed",
              "interrupted")
ACTIVE_JOB_STATES = ("queued", "running", "pausing", "cancelling")
EXACT_REASONS = ("exact_o0", "exact_others")

# The consensus keep rule (curate.consensus.passes) as SQL over the stored columns: exact-match rows pass
# whatever tau is; rows of the Rouge branch pass iff the chosen text is non-empty and the minimum pairwise
# Rouge-L is strictly above tau; "empty" and "invalid" rows never pass.
PASSING_SQL = (
    "(c.reason IN ('exact_o0', 'exact_others') AND c.chosen_nonempty = 1)"
    " OR (c.reason IN ('rouge', 'below_threshold') AND c.chosen_nonempty = 1 AND c.min_pairwise > :tau)"
)
# Rows of the Rouge branch that can pass, through their partial index (the planner does not pick it alone).
_ROUGE_ROWS = ("INDEXED BY consensus_rouge_min WHERE reason IN ('rouge', 'below_threshold')"
               " AND chosen_nonempty = 1")


# The id of the output consensus chose (over a consensus row ``c``; NULL without a choice).
CHOSEN_OUTPUT_ID = "json_extract(c.output_ids, '$[' || c.chosen_index || ']')"
# "The output consensus chose has a quality score of at least :qmin from scorer :qs" (per-output scores keyed
# by the output id, curate.quality), as a probe list over the instances of the queue.
QUALITY_SQL = (f"+x.id IN (SELECT c.instance_id FROM consensus c JOIN scores s ON s.candidate_id = {CHOSEN_OUTPUT_ID}"
               " AND s.scorer = :qs AND s.name = 'reward' WHERE c.chosen_index IS NOT NULL AND s.value >= :qmin)")


# Pending OK candidates (``x``) whose consensus (``c``) passes at :tau: what "accept all that pass" takes.
PENDING_PASSING_SQL = f"x.status = 'ok' AND x.review_status = 'pending' AND ({PASSING_SQL})"


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


def now() -> float:
    return time.time()


def _json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


# ---------------------------------------------------------------------------------------------------------
# Migrations: append only. Never edit one that has shipped; add m00N instead.
# ---------------------------------------------------------------------------------------------------------
migrations = Migrations("curate")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE seeds (
            id TEXT PRIMARY KEY,             -- content hash of (instruction, instances)
            seed_key TEXT NOT NULL,          -- the id in the seed file
            source TEXT NOT NULL,
            name TEXT,
            instruction TEXT NOT NULL,
            instances TEXT NOT NULL,         -- JSON list of {input, output}
            task_type TEXT NOT NULL CHECK (task_type IN ('A', 'B')),
            is_classification INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,              -- generate | ensemble | ...
            config TEXT NOT NULL,            -- JSON
            state TEXT NOT NULL,
            progress TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            pid INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            heartbeat REAL
        );
        CREATE TABLE completions (       -- every raw model completion, parsed or not: nothing is lost
            id TEXT PRIMARY KEY,
            job_id TEXT REFERENCES jobs(id),
            stage TEXT NOT NULL,             -- instruction | instance
            task_type TEXT,
            instruction_id TEXT,             -- instance stage: the instruction it was prompted for
            model_id TEXT NOT NULL,
            params TEXT NOT NULL,            -- JSON GenParams
            prompt_style TEXT NOT NULL DEFAULT 'completion',
            demos INTEGER,                   -- few-shot demos in the prompt (after any trimming)
            prompt_hash TEXT NOT NULL,
            rng_seed INTEGER,
            text TEXT NOT NULL,
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            seconds REAL,
            parse_status TEXT NOT NULL DEFAULT 'ok',  -- ok | unparseable
            parse_reason TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX completions_instruction ON completions(instruction_id);
        CREATE TABLE instructions (
            id TEXT PRIMARY KEY,             -- content hash of (completion_id, position)
            seq INTEGER NOT NULL,            -- insertion order
            text TEXT NOT NULL,
            task_type TEXT NOT NULL CHECK (task_type IN ('A', 'B')),
            origin TEXT NOT NULL,            -- instruction_prompt | instance_completion
            completion_id TEXT REFERENCES completions(id),
            position INTEGER NOT NULL,
            generator_model TEXT NOT NULL,
            params TEXT NOT NULL,
            prompt_hash TEXT NOT NULL,
            rng_seed INTEGER,
            job_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('kept', 'filtered')),
            reason TEXT,                     -- NULL when kept; else the filter that rejected it
            detail TEXT,                     -- JSON: e.g. {"most_similar": ..., "score": ...}
            created_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX instructions_seq ON instructions(seq);
        CREATE INDEX instructions_status ON instructions(status, task_type);
        CREATE INDEX instructions_reason ON instructions(reason);
        CREATE TABLE instances (             -- a candidate: one (instruction, input, output) to review
            id TEXT PRIMARY KEY,             -- content hash of (completion_id, position)
            seq INTEGER NOT NULL,
            instruction_id TEXT NOT NULL REFERENCES instructions(id),
            task_type TEXT NOT NULL,
            input TEXT NOT NULL DEFAULT '',
            output TEXT NOT NULL,
            completion_id TEXT REFERENCES completions(id),
            position INTEGER NOT NULL,
            generator_model TEXT NOT NULL,
            params TEXT NOT NULL,
            prompt_hash TEXT NOT NULL,
            rng_seed INTEGER,
            job_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('ok', 'rejected')),
            reason TEXT,
            review_status TEXT NOT NULL DEFAULT 'pending',
            version INTEGER NOT NULL DEFAULT 0,   -- bumped by every review action (optimistic locking)
            final_instruction TEXT,
            final_input TEXT,
            final_output TEXT,
            reviewed_by TEXT,
            reviewed_at REAL,
            created_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX instances_seq ON instances(seq);
        CREATE INDEX instances_instruction ON instances(instruction_id);
        CREATE INDEX instances_review ON instances(status, review_status);
        CREATE TABLE outputs (               -- one row per (instance, model, prompt style); position 0 = generator
            id TEXT PRIMARY KEY,
            instance_id TEXT NOT NULL REFERENCES instances(id),
            position INTEGER NOT NULL,
            model_id TEXT NOT NULL,
            params TEXT NOT NULL,
            prompt_style TEXT NOT NULL,      -- generator | reference | chat
            text TEXT NOT NULL,
            finish_reason TEXT,
            completion_tokens INTEGER,
            job_id TEXT,
            created_at REAL NOT NULL,
            UNIQUE (instance_id, model_id, prompt_style)
        );
        CREATE INDEX outputs_instance ON outputs(instance_id, position);
        CREATE TABLE consensus (
            instance_id TEXT PRIMARY KEY REFERENCES instances(id),
            k INTEGER NOT NULL,
            output_ids TEXT NOT NULL,        -- JSON list, in the order the matrix uses
            models TEXT NOT NULL,            -- JSON list of model ids, same order
            chosen_index INTEGER,
            chosen_nonempty INTEGER NOT NULL,
            reason TEXT NOT NULL,
            min_pairwise REAL NOT NULL,
            pairwise TEXT NOT NULL,          -- JSON k x k
            scores TEXT NOT NULL,            -- JSON per-output agreement
            tokenizer TEXT NOT NULL,
            threshold REAL NOT NULL,         -- tau at compute time (informational: passing is a query)
            created_at REAL NOT NULL
        );
        CREATE INDEX consensus_reason ON consensus(reason, chosen_nonempty);
        -- rows of the Rouge branch that can pass: counting those above tau is an index range scan
        CREATE INDEX consensus_rouge_min ON consensus(min_pairwise)
            WHERE reason IN ('rouge', 'below_threshold') AND chosen_nonempty = 1;
        CREATE TABLE scores (                -- reward / quality / CAR and later scorers, one value per row
            candidate_id TEXT NOT NULL,
            scorer TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            detail TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (candidate_id, scorer, name)
        );
        CREATE INDEX scores_name ON scores(scorer, name, value);
        CREATE TABLE reviews (               -- append-only log
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            instance_id TEXT NOT NULL REFERENCES instances(id),
            reviewer TEXT NOT NULL,
            at REAL NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('accept', 'edit', 'reject', 'reset')),
            version INTEGER NOT NULL,        -- the candidate's version this action produced
            before TEXT NOT NULL,            -- JSON
            after TEXT NOT NULL,             -- JSON
            reason TEXT
        );
        CREATE INDEX reviews_instance ON reviews(instance_id, id);
        CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews
            BEGIN SELECT RAISE(ABORT, 'the review log is append-only'); END;
        CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews
            BEGIN SELECT RAISE(ABORT, 'the review log is append-only'); END;
        """
    )


@migrations()
def m002_queue_indexes(db: Database) -> None:
    """Covering indexes for the review queue at 50K rows: "pending and passing at tau" is an index-only
    join, and a queue page is read in ``seq`` order without sorting every row."""
    db.executescript(
        """
        CREATE INDEX IF NOT EXISTS instances_review_queue ON instances(status, review_status, seq, id);
        CREATE INDEX IF NOT EXISTS consensus_passing
            ON consensus(instance_id, reason, chosen_nonempty, min_pairwise);
        """
    )


@migrations()
def m003_selection(db: Database) -> None:
    """QDIT selection (curate.select): cached instruction embeddings and named selections."""
    db.executescript(
        """
        CREATE TABLE embeddings (            -- cache: one vector per (candidate, model, embedded text)
            instance_id TEXT NOT NULL REFERENCES instances(id),
            model TEXT NOT NULL,             -- embedded model name, or the resolved folder / HF id
            text_hash TEXT NOT NULL,         -- sha1 of the embedded text: an edited instruction is re-embedded
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,            -- float32, little-endian, L2-normalised
            created_at REAL NOT NULL,
            PRIMARY KEY (instance_id, model, text_hash)
        );
        CREATE TABLE selections (            -- a named QDIT selection, one row per pick
            name TEXT NOT NULL,
            instance_id TEXT NOT NULL REFERENCES instances(id),
            rank INTEGER NOT NULL,           -- 0 = first pick
            gain REAL NOT NULL,              -- facility-location gain F(A + a) - F(A) when picked
            quality REAL,                    -- q(a): the quality used, min-max scaled over the pool
            score REAL NOT NULL,             -- (1 - alpha) * gain + alpha * quality
            params TEXT NOT NULL,            -- JSON: k, alpha, source, tau, quality, model, pool size
            created_at REAL NOT NULL,
            PRIMARY KEY (name, rank)
        );
        CREATE UNIQUE INDEX selections_instance ON selections(name, instance_id);
        """
    )


# ---------------------------------------------------------------------------------------------------------


class Store:
    """The project's database. ``Store(":memory:")`` for tests; ``Store("data/curate.db")`` on disk.

    Raises :class:`~curate.errors.StoreError` when the path cannot be opened (with the path and the fix).
    """

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
            conn = sqlite3.connect(self.path, timeout=30.0)
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
        self.db.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(self.db)  # nested in our transaction: savepoints
            self.db.conn.commit()
        except BaseException:
            self.db.conn.rollback()
            raise

    # -- plumbing ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator["Store"]:
        """All writes inside happen together or not at all (nested blocks use savepoints)."""
        with self.db.atomic():
            yield self

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

    # -- seeds ------------------------------------------------------------------------------------------
    def add_seeds(self, seeds: Iterable[Any]) -> int:
        """Store seed tasks (``curate.seeds.SeedTask``). Re-adding the same task is a no-op. Returns the count."""
        rows = []
        for s in seeds:
            inst = [{"input": i.input, "output": i.output} for i in s.instances]
            rows.append({
                "id": content_id(instruction=s.instruction, instances=inst),
                "seed_key": s.id, "source": s.source, "name": s.name, "instruction": s.instruction,
                "instances": _json(inst), "task_type": s.task_type,
                "is_classification": int(bool(s.is_classification)),
            })
        with self.db.atomic():
            self.db["seeds"].insert_all(rows, ignore=True)
        return len(rows)

    def count_seeds(self) -> dict[str, int]:
        rows = self._rows("SELECT task_type, COUNT(*) AS n FROM seeds GROUP BY task_type")
        return {r["task_type"]: r["n"] for r in rows}

    # -- jobs -------------------------------------------------------------------------------------------
    def create_job(self, kind: str, config: dict, *, job_id: str | None = None) -> str:
        jid = job_id or uuid.uuid4().hex[:12]
        t = now()
        self.db["jobs"].insert({"id": jid, "kind": kind, "config": _json(config), "state": "queued",
                                "progress": "{}", "created_at": t, "updated_at": t, "heartbeat": t})
        return jid

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
            "SELECT * FROM jobs WHERE state IN ('queued', 'running', 'pausing', 'cancelling')") if not alive(r)]
        for jid in ids:
            self.update_job(jid, state="interrupted")
        return ids

    def request_job_state(self, job_id: str, state: str, *, only_from: Sequence[str]) -> bool:
        """Move a job to ``state`` if it is in one of ``only_from`` (atomic). Returns whether it moved."""
        cur = self.db.execute(
            f"UPDATE jobs SET state = :s, updated_at = :t WHERE id = :id AND state IN "
            f"({', '.join(repr(x) for x in only_from)})", {"s": state, "t": now(), "id": job_id})
        self.db.conn.commit()
        return cur.rowcount > 0

    # -- completions ------------------------------------------------------------------------------------
    def add_completion(self, row: dict) -> str:
        """Store one raw completion. ``row`` needs stage, model_id, params (dict), prompt_hash, text.

        The id is a content hash of (stage, model, params, prompt hash, seed, text, job): re-adding collapses.
        """
        row = dict(row)
        row["params"] = _json(row["params"]) if not isinstance(row["params"], str) else row["params"]
        row.setdefault("created_at", now())
        row["id"] = content_id(stage=row["stage"], model_id=row["model_id"], params=row["params"],
                               prompt_hash=row["prompt_hash"], rng_seed=row.get("rng_seed"),
                               text=row["text"], job_id=row.get("job_id"),
                               instruction_id=row.get("instruction_id"))
        self.db["completions"].insert(row, ignore=True)
        return row["id"]

    def mark_completion(self, completion_id: str, parse_status: str, reason: str | None) -> None:
        self.db.execute("UPDATE completions SET parse_status = :s, parse_reason = :r WHERE id = :id",
                        {"s": parse_status, "r": reason, "id": completion_id})

    def completion_stats(self) -> list[dict]:
        return self._rows(
            "SELECT stage, model_id, COUNT(*) AS completions, SUM(completion_tokens) AS tokens,"
            " SUM(seconds) AS seconds, SUM(parse_status = 'unparseable') AS unparseable"
            " FROM completions GROUP BY stage, model_id ORDER BY stage, model_id")

    # -- instructions -----------------------------------------------------------------------------------
    def add_instruction(self, row: dict) -> tuple[str, bool]:
        """Store one parsed instruction (kept or filtered, with its reason). Returns (id, newly inserted)."""
        row = dict(row)
        row["id"] = content_id(completion_id=row["completion_id"], position=row["position"],
                               origin=row["origin"])
        if self._one("SELECT 1 FROM instructions WHERE id = :id", {"id": row["id"]}):
            return row["id"], False
        row["params"] = row["params"] if isinstance(row["params"], str) else _json(row["params"])
        row["detail"] = None if row.get("detail") is None else _json(row["detail"])
        row.setdefault("created_at", now())
        row["seq"] = self._next_seq("instructions")
        self.db["instructions"].insert(row)
        return row["id"], True

    def kept_instruction_texts(self, task_type: str | None = None) -> list[str]:
        sql = "SELECT text FROM instructions WHERE status = 'kept'"
        if task_type:
            sql += " AND task_type = :t"
        return [r["text"] for r in self._rows(sql + " ORDER BY seq", {"t": task_type})]

    def count_kept_instructions(self, task_type: str | None = None, origin: str | None = None) -> int:
        where, p = ["status = 'kept'"], {}
        if task_type:
            where.append("task_type = :t"); p["t"] = task_type
        if origin:
            where.append("origin = :o"); p["o"] = origin
        return self._one(f"SELECT COUNT(*) FROM instructions WHERE {' AND '.join(where)}", p)

    def count_completions(self, stage: str, task_type: str | None = None) -> int:
        sql, p = "SELECT COUNT(*) FROM completions WHERE stage = :s", {"s": stage}
        if task_type:
            sql += " AND task_type = :t"; p["t"] = task_type
        return self._one(sql, p)

    def instructions_without_instances(self, task_type: str | None = None, limit: int = 1000) -> list[dict]:
        """Kept instructions that no instance completion has been stored for yet (resume point)."""
        sql = ("SELECT i.* FROM instructions i WHERE i.status = 'kept' AND i.origin = 'instruction_prompt'"
               " AND NOT EXISTS (SELECT 1 FROM completions c WHERE c.stage = 'instance'"
               " AND c.instruction_id = i.id)")
        if task_type:
            sql += " AND i.task_type = :t"
        return self._rows(sql + " ORDER BY i.seq LIMIT :n", {"t": task_type, "n": limit})

    def get_instruction(self, instruction_id: str) -> dict:
        rows = self._rows("SELECT * FROM instructions WHERE id = :id", {"id": instruction_id})
        if not rows:
            raise StoreError(f"no instruction {instruction_id!r}")
        return rows[0]

    def filter_reason_counts(self, stage: str = "instructions") -> dict[str, int]:
        """Counts per reason (``None`` = kept/ok) for 'instructions', 'instances' or 'completions'."""
        if stage == "instructions":
            sql = "SELECT COALESCE(reason, 'kept') AS r, COUNT(*) AS n FROM instructions GROUP BY r"
        elif stage == "instances":
            sql = "SELECT COALESCE(reason, 'ok') AS r, COUNT(*) AS n FROM instances GROUP BY r"
        elif stage == "completions":
            sql = ("SELECT stage || ':' || COALESCE(parse_reason, 'ok') AS r, COUNT(*) AS n"
                   " FROM completions GROUP BY r")
        else:
            raise StoreError(f"unknown stage {stage!r}: instructions, instances or completions")
        return {r["r"]: r["n"] for r in self._rows(sql + " ORDER BY n DESC")}

    def instructions(self, *, status: str | None = None, reason: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict]:
        where, p = ["1=1"], {"n": limit, "o": offset}
        if status:
            where.append("status = :s"); p["s"] = status
        if reason:
            where.append("reason = :r"); p["r"] = reason
        return self._rows(f"SELECT * FROM instructions WHERE {' AND '.join(where)}"
                          " ORDER BY seq LIMIT :n OFFSET :o", p)

    # -- instances --------------------------------------------------------------------------------------
    def add_instance(self, row: dict) -> tuple[str, bool]:
        row = dict(row)
        row["id"] = content_id(completion_id=row["completion_id"], position=row["position"])
        if self._one("SELECT 1 FROM instances WHERE id = :id", {"id": row["id"]}):
            return row["id"], False
        row["params"] = row["params"] if isinstance(row["params"], str) else _json(row["params"])
        row.setdefault("created_at", now())
        row["seq"] = self._next_seq("instances")
        self.db["instances"].insert(row)
        return row["id"], True

    def get_instance(self, instance_id: str) -> dict:
        """The candidate with its instruction text. Raises StoreError if unknown."""
        rows = self._rows("SELECT x.*, i.text AS instruction FROM instances x"
                          " JOIN instructions i ON i.id = x.instruction_id WHERE x.id = :id",
                          {"id": instance_id})
        if not rows:
            raise StoreError(f"no candidate {instance_id!r} in {self.path}")
        return rows[0]

    def count_instances(self, status: str | None = "ok") -> int:
        if status is None:
            return self._one("SELECT COUNT(*) FROM instances")
        return self._one("SELECT COUNT(*) FROM instances WHERE status = :s", {"s": status})

    def instances_missing_output(self, model_id: str, prompt_style: str, limit: int = 64) -> list[dict]:
        """OK instances that have no output yet from (model, style): the ensembling resume point."""
        return self._rows(
            "SELECT x.id, x.input, x.task_type, i.text AS instruction FROM instances x"
            " JOIN instructions i ON i.id = x.instruction_id WHERE x.status = 'ok'"
            " AND NOT EXISTS (SELECT 1 FROM outputs o WHERE o.instance_id = x.id"
            " AND o.model_id = :m AND o.prompt_style = :s) ORDER BY x.seq LIMIT :n",
            {"m": model_id, "s": prompt_style, "n": limit})

    # -- outputs ----------------------------------------------------------------------------------------
    def add_outputs(self, rows: Sequence[dict]) -> int:
        """Store ensemble outputs; one per (instance, model, prompt style) — re-adding is a no-op."""
        prepared = []
        for r in rows:
            r = dict(r)
            r["id"] = content_id(instance_id=r["instance_id"], model_id=r["model_id"],
                                 prompt_style=r["prompt_style"])
            r["params"] = r["params"] if isinstance(r["params"], str) else _json(r["params"])
            r.setdefault("created_at", now())
            prepared.append(r)
        with self.db.atomic():
            self.db["outputs"].insert_all(prepared, ignore=True)
        return len(prepared)

    def outputs_for(self, instance_id: str) -> list[dict]:
        return self._rows("SELECT * FROM outputs WHERE instance_id = :id ORDER BY position, model_id",
                          {"id": instance_id})

    def instances_needing_consensus(self, min_outputs: int = 2, limit: int = 1000) -> list[dict]:
        """Instances with ≥ ``min_outputs`` outputs whose consensus is missing or older than an output."""
        return self._rows(
            "SELECT x.id FROM instances x WHERE x.status = 'ok'"
            " AND (SELECT COUNT(*) FROM outputs o WHERE o.instance_id = x.id) >= :k"
            " AND NOT EXISTS (SELECT 1 FROM consensus c WHERE c.instance_id = x.id"
            "   AND c.k = (SELECT COUNT(*) FROM outputs o WHERE o.instance_id = x.id))"
            " ORDER BY x.seq LIMIT :n", {"k": min_outputs, "n": limit})

    # -- consensus --------------------------------------------------------------------------------------
    def save_consensus(self, rows: Sequence[dict]) -> None:
        prepared = []
        for r in rows:
            r = dict(r)
            for key in ("output_ids", "models", "pairwise", "scores"):
                r[key] = _json(r[key])
            r["chosen_nonempty"] = int(bool(r["chosen_nonempty"]))
            r.setdefault("created_at", now())
            prepared.append(r)
        with self.db.atomic():
            self.db["consensus"].insert_all(prepared, replace=True)

    def get_consensus(self, instance_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM consensus WHERE instance_id = :id", {"id": instance_id})
        if not rows:
            return None
        r = rows[0]
        for key in ("output_ids", "models", "pairwise", "scores"):
            r[key] = json.loads(r[key])
        return r

    def count_passing(self, tau: float) -> dict[str, int]:
        """{'scored', 'passing'} at threshold ``tau``: index-only counts, no recomputation (PASSING_SQL's rule)."""
        scored = self._one("SELECT COUNT(*) FROM consensus")
        exact = self._one("SELECT COUNT(*) FROM consensus WHERE reason IN ('exact_o0', 'exact_others')"
                          " AND chosen_nonempty = 1")
        rouge = self._one(f"SELECT COUNT(*) FROM consensus {_ROUGE_ROWS} AND min_pairwise > :tau", {"tau": tau})
        return {"scored": scored, "passing": exact + rouge}

    def passing_ids(self, tau: float) -> list[str]:
        return [r["instance_id"] for r in self._rows(
            f"SELECT c.instance_id FROM consensus c JOIN instances x ON x.id = c.instance_id"
            f" WHERE {PASSING_SQL} ORDER BY x.seq", {"tau": tau})]

    def min_pairwise_histogram(self, bins: int = 20) -> list[dict]:
        """Counts of min_pairwise over the Rouge-branch rows in ``bins`` equal bins over [0, 1] (the last bin
        includes 1.0). One index range count per bin, so it costs about one pass over the index."""
        out = []
        for i in range(bins):
            lo, hi = i / bins, (i + 1) / bins
            upper = "" if i == bins - 1 else " AND min_pairwise < :hi"
            n = self._one(f"SELECT COUNT(*) FROM consensus {_ROUGE_ROWS} AND min_pairwise >= :lo{upper}",
                          {"lo": lo, "hi": hi})
            out.append({"lo": lo, "hi": hi, "n": n})
        return out

    def consensus_reason_counts(self) -> dict[str, int]:
        return {r["reason"]: r["n"] for r in self._rows(
            "SELECT reason, COUNT(*) AS n FROM consensus GROUP BY reason ORDER BY n DESC")}

    # -- scores -----------------------------------------------------------------------------------------
    def set_scores(self, rows: Sequence[dict]) -> None:
        """Upsert (candidate_id, scorer, name) → value rows."""
        prepared = [{**r, "detail": None if r.get("detail") is None else _json(r["detail"]),
                     "created_at": r.get("created_at", now())} for r in rows]
        with self.db.atomic():
            self.db["scores"].insert_all(prepared, replace=True)

    def scores_for(self, candidate_id: str) -> list[dict]:
        return self._rows("SELECT * FROM scores WHERE candidate_id = :id ORDER BY scorer, name",
                          {"id": candidate_id})

    # -- teachers / quality scores -------------------------------------------------------------------------
    # Per-OUTPUT scores (curate.quality's rewards, judge scores and proxies; curate.teachers' student NLLs)
    # are `scores` rows whose candidate_id is the output id (outputs.id), with scorer = the scorer's name
    # ("rm:…", "judge:…", "proxy:consensus", "nll:<student>") and name "reward" / "unscored" (value 0, the
    # reason in detail) / "nll" (mean per-token NLL) / "tokens". Candidate-level scores keep the instance id;
    # the two never collide (content hashes of different parts).
    # The teacher sample of size N: the N OK instances with outputs whose ids come first (ids are content
    # hashes, so this is a deterministic, effectively random sample, and a larger N contains a smaller one).
    _SAMPLE_SQL = ("SELECT x.id, x.task_type FROM instances x WHERE x.status = 'ok'"
                   " AND EXISTS (SELECT 1 FROM outputs o WHERE o.instance_id = x.id) ORDER BY x.id LIMIT :limit")

    def count_outputs(self) -> int:
        return self._one("SELECT COUNT(*) FROM outputs")

    def sample_outputs(self, limit: int | None = None, *, missing: str | None = None,
                       missing_names: Sequence[str] = ("reward",), batch: int = -1) -> list[dict]:
        """Outputs of the teacher sample of ``limit`` instances (None: all), each with its instance's
        instruction, input and task type, in (instance id, position) order. With ``missing`` (a scorer
        name): only outputs without a score row of that scorer named one of ``missing_names``. ``batch``
        caps the rows returned (-1: no cap)."""
        p: dict[str, Any] = {"limit": -1 if limit is None else limit, "batch": batch}
        where = ""
        if missing:
            names = {f"n{i}": n for i, n in enumerate(missing_names)}
            p.update(names, scorer=missing)
            where = (" WHERE NOT EXISTS (SELECT 1 FROM scores c WHERE c.candidate_id = o.id AND c.scorer = :scorer"
                     f" AND c.name IN ({', '.join(':' + k for k in names)}))")
        return self._rows(
            f"WITH sample AS ({self._SAMPLE_SQL}) SELECT o.id, o.instance_id, o.position, o.model_id,"
            " o.prompt_style, o.text, s.task_type, i.text AS instruction, x.input"
            " FROM sample s JOIN outputs o ON o.instance_id = s.id JOIN instances x ON x.id = s.id"
            f" JOIN instructions i ON i.id = x.instruction_id{where}"
            " ORDER BY o.instance_id, o.position, o.model_id LIMIT :batch", p)

    def output_agreement(self, output_ids: Sequence[str]) -> dict[str, float]:
        """{output id: its consensus agreement} (``consensus.scores[i]``, the mean Rouge-L of output i to
        the other outputs of its instance) for the given outputs that have a consensus row."""
        out: dict[str, float] = {}
        for marks, chunk in _in_lists(list(output_ids)):
            out.update({r["id"]: r["agreement"] for r in self._rows(
                "SELECT o.id, json_extract(c.scores, '$[' || j.key || ']') AS agreement FROM outputs o"
                " JOIN consensus c ON c.instance_id = o.instance_id JOIN json_each(c.output_ids) j"
                f" ON j.value = o.id WHERE o.id IN ({marks})", chunk)
                if r["agreement"] is not None})
        return out

    def teacher_stats(self, reward_scorer: str, nll_scorer: str, limit: int | None = None) -> list[dict]:
        """Per (teacher model, task type) over the outputs of the teacher sample of ``limit`` instances
        (None: all) that have both a reward by ``reward_scorer`` and an NLL by ``nll_scorer``: n, reward_sum,
        nll_sum (Σ per-token NLL), tokens, and ``unscored`` (outputs the reward scorer could not score)."""
        p = {"limit": -1 if limit is None else limit, "rs": reward_scorer, "ls": nll_scorer}
        rows = self._rows(
            f"WITH sample AS ({self._SAMPLE_SQL}) SELECT o.model_id AS model, s.task_type, COUNT(*) AS n,"
            " SUM(r.value) AS reward_sum, SUM(l.value * t.value) AS nll_sum, SUM(t.value) AS tokens, 0 AS unscored"
            " FROM sample s JOIN outputs o ON o.instance_id = s.id"
            " JOIN scores r ON r.candidate_id = o.id AND r.scorer = :rs AND r.name = 'reward'"
            " JOIN scores l ON l.candidate_id = o.id AND l.scorer = :ls AND l.name = 'nll'"
            " JOIN scores t ON t.candidate_id = o.id AND t.scorer = :ls AND t.name = 'tokens'"
            " GROUP BY o.model_id, s.task_type ORDER BY model, s.task_type", p)
        by_key = {(r["model"], r["task_type"]): r for r in rows}
        for r in self._rows(
                f"WITH sample AS ({self._SAMPLE_SQL}) SELECT o.model_id AS model, s.task_type, COUNT(*) AS n"
                " FROM sample s JOIN outputs o ON o.instance_id = s.id JOIN scores r ON r.candidate_id = o.id"
                " AND r.scorer = :rs AND r.name = 'unscored' GROUP BY o.model_id, s.task_type", p):
            row = by_key.setdefault((r["model"], r["task_type"]), {
                "model": r["model"], "task_type": r["task_type"], "n": 0, "reward_sum": 0.0, "nll_sum": 0.0,
                "tokens": 0.0})
            row["unscored"] = r["n"]
        return [by_key[k] for k in sorted(by_key)]

    def stored_scorers(self) -> list[dict]:
        """The quality scorers with stored per-output scores: scorer, label, scored, unscored."""
        return self._rows(
            "SELECT scorer, json_extract(MAX(detail), '$.label') AS label, SUM(name = 'reward') AS scored,"
            " SUM(name = 'unscored') AS unscored FROM scores WHERE name IN ('reward', 'unscored')"
            " GROUP BY scorer ORDER BY scorer")

    def chosen_output_scores(self, scorer: str, name: str = "reward") -> dict[str, float]:
        """{instance id: the ``scorer``/``name`` score of the output consensus chose} (a candidate-level
        quality from per-output scores, e.g. for QDIT's q(a))."""
        return {r["instance_id"]: r["value"] for r in self._rows(
            f"SELECT c.instance_id, s.value FROM consensus c JOIN scores s ON s.candidate_id = {CHOSEN_OUTPUT_ID}"
            " AND s.scorer = :s AND s.name = :n WHERE c.chosen_index IS NOT NULL", {"s": scorer, "n": name})}

    # -- selection (QDIT) and near-duplicates -------------------------------------------------------------
    # The pool a selection draws from, its quality column, cached embeddings and named selections
    # (curate.select wraps them).
    SELECTION_SOURCES = {
        "accepted": "x.status = 'ok' AND x.review_status IN ('accepted', 'edited')",
        "passing": f"x.status = 'ok' AND c.instance_id IS NOT NULL AND ({PASSING_SQL})",
        "all": "x.status = 'ok'",
    }
    SELECTION_QUALITY = {
        # PROXY: the consensus agreement of the chosen output (mean Rouge-L to the other outputs)
        "consensus": "CASE WHEN c.chosen_index IS NULL THEN NULL"
                     " ELSE json_extract(c.scores, '$[' || c.chosen_index || ']') END",
        "min_pairwise": "c.min_pairwise",  # PROXY: the least agreeing pair of outputs
        # a scores-table row: the candidate's own, else the one of the output consensus chose
        "score": "COALESCE((SELECT s.value FROM scores s WHERE s.candidate_id = x.id AND s.scorer = :qs"
                 f" AND s.name = :qn), (SELECT s.value FROM scores s WHERE s.candidate_id = {CHOSEN_OUTPUT_ID}"
                 " AND s.scorer = :qs AND s.name = :qn))",
        "none": "0.0",
    }

    def selection_pool(self, source: str = "passing", *, tau: float = 0.01, quality: str = "consensus",
                       scorer: str | None = None, name: str | None = None) -> list[dict]:
        """The candidates a selection draws from, in ``seq`` order: id, seq, instruction, input (the reviewed
        text where there is one) and quality (NULL where missing).

        ``source``: accepted (accepted or edited), passing (consensus passes at ``tau``) or all (every OK
        candidate); ``quality``: a key of SELECTION_QUALITY (``score`` takes ``scorer`` and ``name``).
        Raises StoreError for an unknown source or quality.
        """
        if source not in self.SELECTION_SOURCES:
            raise StoreError(f"unknown pool {source!r}; one of {', '.join(self.SELECTION_SOURCES)}")
        if quality not in self.SELECTION_QUALITY:
            raise StoreError(f"unknown quality {quality!r}; one of {', '.join(self.SELECTION_QUALITY)}")
        return self._rows(
            "SELECT x.id, x.seq, COALESCE(x.final_instruction, i.text) AS instruction,"
            f" COALESCE(x.final_input, x.input) AS input, {self.SELECTION_QUALITY[quality]} AS quality"
            " FROM instances x JOIN instructions i ON i.id = x.instruction_id"
            f" LEFT JOIN consensus c ON c.instance_id = x.id WHERE {self.SELECTION_SOURCES[source]}"
            " ORDER BY x.seq", {"tau": tau, "qs": scorer, "qn": name})

    def quality_sources(self) -> list[str]:
        """The ``scorer:name`` pairs in the scores table (choices for a selection's quality)."""
        return [f"{r['scorer']}:{r['name']}" for r in self._rows(
            "SELECT DISTINCT scorer, name FROM scores ORDER BY scorer, name")]

    def embeddings_for(self, model: str, keys: Sequence[tuple[str, str]]) -> dict[str, tuple[int, bytes]]:
        """{instance id: (dim, float32 bytes)} of the cached vectors of ``model`` for the given
        (instance id, text hash) pairs; pairs with no vector (new, or edited since) are left out."""
        wanted = dict(keys)
        out: dict[str, tuple[int, bytes]] = {}
        for marks, chunk in _in_lists(list(wanted)):
            for r in self.db.execute(
                    "SELECT instance_id, text_hash, dim, vector FROM embeddings WHERE model = :model"
                    f" AND instance_id IN ({marks})", {**chunk, "model": model}):
                if wanted[r[0]] == r[1]:
                    out[r[0]] = (r[2], r[3])
        return out

    def save_embeddings(self, model: str, rows: Sequence[dict]) -> int:
        """Store vectors: rows of instance_id, text_hash, dim, vector (float32 bytes). Returns the count."""
        t = now()
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO embeddings (instance_id, model, text_hash, dim, vector, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(r["instance_id"], model, r["text_hash"], r["dim"], r["vector"], t) for r in rows])
        return len(rows)

    def count_embeddings(self, model: str | None = None) -> int:
        if model is None:
            return self._one("SELECT COUNT(*) FROM embeddings")
        return self._one("SELECT COUNT(*) FROM embeddings WHERE model = :m", {"m": model})

    def save_selection(self, name: str, rows: Sequence[dict], params: dict) -> int:
        """Store the selection ``name`` (replacing one of that name): rows of instance_id, rank, gain,
        quality, score. Returns the count. Raises StoreError for an empty name."""
        if not name or not name.strip():
            raise StoreError("a selection needs a name (--name)")
        t, p = now(), _json(params)
        with self.db.atomic():
            self.db.execute("DELETE FROM selections WHERE name = :n", {"n": name})
            self.db.conn.executemany(
                "INSERT INTO selections (name, instance_id, rank, gain, quality, score, params, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(name, r["instance_id"], r["rank"], r["gain"], r.get("quality"), r["score"], p, t) for r in rows])
        return len(rows)

    def get_selection(self, name: str) -> list[dict]:
        """The picks of selection ``name`` in rank order, with instruction and input (reviewed text first)
        and params decoded. Raises StoreError (listing the names) when there is none of that name."""
        rows = self._rows(
            "SELECT s.rank, s.instance_id, s.gain, s.quality, s.score, s.params, s.created_at,"
            " COALESCE(x.final_instruction, i.text) AS instruction, COALESCE(x.final_input, x.input) AS input"
            " FROM selections s JOIN instances x ON x.id = s.instance_id"
            " JOIN instructions i ON i.id = x.instruction_id WHERE s.name = :n ORDER BY s.rank", {"n": name})
        if not rows:
            names = ", ".join(r["name"] for r in self.list_selections()) or "none yet; `curate select` makes one"
            raise StoreError(f"no selection {name!r} in {self.path} (selections: {names})")
        for r in rows:
            r["params"] = json.loads(r["params"])
        return rows

    def list_selections(self) -> list[dict]:
        """name, size, params (decoded), created_at of every stored selection, newest first."""
        rows = self._rows("SELECT name, COUNT(*) AS size, MIN(params) AS params, MAX(created_at) AS created_at"
                          " FROM selections GROUP BY name ORDER BY created_at DESC, name")
        for r in rows:
            r["params"] = json.loads(r["params"])
        return rows

    def delete_selection(self, name: str) -> int:
        with self.db.atomic():
            return self.db.execute("DELETE FROM selections WHERE name = :n", {"n": name}).rowcount

    # -- reviews ----------------------------------------------------------------------------------------
    def review(self, instance_id: str, action: str, *, reviewer: str, expected_version: int | None = None,
               instruction: str | None = None, input: str | None = None, output: str | None = None,
               reason: str | None = None) -> dict:
        """Apply one review action and append it to the log, atomically.

        ``accept`` takes ``output`` (defaults to the consensus choice, else the generator's output);
        ``edit`` takes any of instruction/input/output (unchanged fields keep their current value);
        ``reject`` takes an optional ``reason``; ``reset`` returns the candidate to pending.
        With ``expected_version`` set, raises :class:`ConflictError` when someone else reviewed the
        candidate since that version (nothing is written). Returns the updated candidate.
        """
        if action not in REVIEW_ACTIONS:
            raise StoreError(f"unknown review action {action!r}; one of {', '.join(REVIEW_ACTIONS)}")
        if not reviewer or not reviewer.strip():
            raise StoreError("a review needs a reviewer name")
        with self.db.atomic():
            cur = self.get_instance(instance_id)
            if expected_version is not None and cur["version"] != expected_version:
                last = self.review_log(instance_id)[-1:]
                who = f" by {last[0]['reviewer']} ({last[0]['action']})" if last else ""
                raise ConflictError(
                    f"candidate {instance_id[:10]} changed since you opened it{who}: it is at version "
                    f"{cur['version']}, you had {expected_version}. Reload it and review again.")
            before = self._final(cur)
            if action == "accept":
                chosen = output if output is not None else self._default_output(cur)
                after = {**before, "output": chosen}
                status = "accepted"
            elif action == "edit":
                after = {"instruction": before["instruction"] if instruction is None else instruction,
                         "input": before["input"] if input is None else input,
                         "output": before["output"] if output is None else output}
                if not after["instruction"].strip() or not after["output"].strip():
                    raise StoreError("an edit needs a non-empty instruction and output")
                status = "edited"
            elif action == "reject":
                after, status = before, "rejected"
            else:
                after, status = before, "pending"
            version = cur["version"] + 1
            t = now()
            keep_final = status in ("accepted", "edited")
            self.db.execute(
                "UPDATE instances SET review_status = :st, version = :v, final_instruction = :fi,"
                " final_input = :fx, final_output = :fo, reviewed_by = :who, reviewed_at = :t WHERE id = :id",
                {"st": status, "v": version, "fi": after["instruction"] if keep_final else None,
                 "fx": after["input"] if keep_final else None, "fo": after["output"] if keep_final else None,
                 "who": reviewer, "t": t, "id": instance_id})
            self.db["reviews"].insert({"instance_id": instance_id, "reviewer": reviewer, "at": t,
                                       "action": action, "version": version, "before": _json(before),
                                       "after": _json(after), "reason": reason})
        return self.get_instance(instance_id)

    def _final(self, cur: dict) -> dict:
        if cur["final_output"] is not None:
            return {"instruction": cur["final_instruction"], "input": cur["final_input"],
                    "output": cur["final_output"]}
        return {"instruction": cur["instruction"], "input": cur["input"], "output": cur["output"]}

    def _default_output(self, cur: dict) -> str:
        c = self.get_consensus(cur["id"])
        if c and c["chosen_index"] is not None:
            text = self._one("SELECT text FROM outputs WHERE id = :id", {"id": c["output_ids"][c["chosen_index"]]})
            if text is not None:
                return text
        return cur["output"]

    def review_log(self, instance_id: str | None = None, limit: int = 1000) -> list[dict]:
        sql = "SELECT * FROM reviews"
        if instance_id:
            sql += " WHERE instance_id = :id"
        return self._rows(sql + " ORDER BY id LIMIT :n", {"id": instance_id, "n": limit})

    def review_counts(self) -> dict[str, int]:
        return {r["review_status"]: r["n"] for r in self._rows(
            "SELECT review_status, COUNT(*) AS n FROM instances WHERE status = 'ok' GROUP BY review_status")}

    # -- overview ---------------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counts per stage and reason: what `curate stats` prints and the app's overview shows."""
        return {
            "seeds": self.count_seeds(),
            "completions": self.completion_stats(),
            "instructions": self.filter_reason_counts("instructions"),
            "instructions_kept_by_type": {
                t: self.count_kept_instructions(t) for t in ("A", "B")},
            "instances": self.filter_reason_counts("instances"),
            "unparseable": {k: v for k, v in self.filter_reason_counts("completions").items()
                            if not k.endswith(":ok")},
            "outputs_by_model": {r["model_id"]: r["n"] for r in self._rows(
                "SELECT model_id, COUNT(*) AS n FROM outputs GROUP BY model_id ORDER BY model_id")},
            "consensus": self.consensus_reason_counts(),
            "reviews": self.review_counts(),
        }

    # -- export (read-only) -----------------------------------------------------------------------------
    # The reads behind curate.export. None of them writes.
    EXPORT_INCLUDES = ("accepted", "passing", "selection")

    def export_rows(self, include: Sequence[str] = ("accepted",), *, tau: float = 0.01,
                    selection: str | None = None, limit: int | None = None) -> list[dict]:
        """The candidates an export takes, in ``seq`` order: OK candidates not rejected by a reviewer that
        are accepted or edited ("accepted"), pass consensus at ``tau`` ("passing"), or belong to the stored
        selection ``selection`` (None: the newest) ("selection") — any of the ``include`` sources.

        Each row: id, seq, task_type, instruction, input, output (the reviewed texts when there are any;
        else the instruction, the candidate's input and the consensus choice, else the generator's output),
        generator_model, instruction_model, review_status, reviewed_by, reviewed_at, review_action (the
        latest in the log), consensus_reason, min_pairwise, chosen_index, ensemble_models (JSON list, None
        without consensus), passes (1/0 at ``tau``, None without consensus), in_accepted, in_selection.

        Text that is not valid UTF-8 in the file comes back with lone surrogates (``surrogateescape``), so
        the caller can name the candidate instead of failing on the whole read.
        Raises StoreError for an unknown include source or a selection that is not stored.
        """
        unknown = [s for s in include if s not in self.EXPORT_INCLUDES]
        if unknown or not include:
            raise StoreError(f"unknown export source {', '.join(map(repr, unknown)) or '(none)'}; "
                             f"one or more of {', '.join(self.EXPORT_INCLUDES)}")
        p: dict[str, Any] = {"tau": tau, "n": -1 if limit is None else limit}
        sel = "0"
        if "selection" in include:
            sel = self._export_selection_sql(selection, p)
        passes = f"CASE WHEN c.instance_id IS NULL THEN NULL WHEN {PASSING_SQL} THEN 1 ELSE 0 END"
        accepted = "x.review_status IN ('accepted', 'edited')"
        cond = {"accepted": accepted, "passing": f"({passes}) = 1", "selection": f"({sel}) = 1"}
        sql = (
            "SELECT x.id, x.seq, x.task_type, COALESCE(x.final_instruction, i.text) AS instruction,"
            " COALESCE(x.final_input, x.input) AS input, COALESCE(x.final_output, o.text, x.output) AS output,"
            " x.generator_model, i.generator_model AS instruction_model, x.review_status, x.reviewed_by,"
            " x.reviewed_at, (SELECT r.action FROM reviews r WHERE r.instance_id = x.id"
            " ORDER BY r.id DESC LIMIT 1) AS review_action, c.reason AS consensus_reason, c.min_pairwise,"
            f" c.chosen_index, c.models AS ensemble_models, {passes} AS passes, {accepted} AS in_accepted,"
            f" {sel} AS in_selection"
            " FROM instances x JOIN instructions i ON i.id = x.instruction_id"
            " LEFT JOIN consensus c ON c.instance_id = x.id"
            f" LEFT JOIN outputs o ON o.id = {CHOSEN_OUTPUT_ID}"
            " WHERE x.status = 'ok' AND x.review_status != 'rejected'"
            f" AND ({' OR '.join(cond[s] for s in dict.fromkeys(include))}) ORDER BY x.seq LIMIT :n")
        conn = self.db.conn
        factory = conn.text_factory
        conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
        try:
            return self._rows(sql, p)
        finally:
            conn.text_factory = factory

    def _export_selection_sql(self, selection: str | None, p: dict) -> str:
        """SQL for "the candidate ``x`` is in the selection ``selection``" (1/0; None: the newest selection).
        Raises StoreError when no selection is stored, or none of that name."""
        names = [r["name"] for r in self.list_selections()]  # newest first
        if not names:
            raise StoreError("no selection stored; run `curate select` first")
        if selection is None:
            selection = names[0]
        elif selection not in names:
            raise StoreError(f"no selection {selection!r} in {self.path} (selections: {', '.join(names)})")
        p["sel"] = selection
        return "EXISTS (SELECT 1 FROM selections s WHERE s.name = :sel AND s.instance_id = x.id)"

    def seed_sources(self) -> list[dict]:
        """(source, task_type, n): the stored seed tasks per seed file and type."""
        return self._rows("SELECT source, task_type, COUNT(*) AS n FROM seeds GROUP BY source, task_type"
                          " ORDER BY source, task_type")

    def consensus_thresholds(self) -> list[dict]:
        """(threshold, n): the tau each stored consensus row was computed with (informational)."""
        return self._rows("SELECT threshold, COUNT(*) AS n FROM consensus GROUP BY threshold ORDER BY threshold")

    # -- review queue (app) ---------------------------------------------------------------------------
    # The queries behind the app's review queue, threshold panel and overview (curate.review wraps them).
    QUEUE_STATUSES = ("pending", "accepted", "edited", "rejected", "auto-filtered")
    QUEUE_CONSENSUS = ("pass", "fail", "none")
    QUEUE_SORTS = {
        "seq": "x.seq", "-seq": "x.seq DESC",
        "min_pairwise": "c.min_pairwise IS NULL, c.min_pairwise, x.seq",
        "-min_pairwise": "c.min_pairwise IS NULL, c.min_pairwise DESC, x.seq",
        "reviewed": "x.reviewed_at IS NULL, x.reviewed_at DESC, x.seq",
    }

    def _queue_where(self, *, status: str | None = None, task_type: str | None = None,
                     model: str | None = None, consensus: str | None = None, tau: float = 0.01,
                     search: str | None = None, quality_scorer: str | None = None,
                     quality_min: float | None = None) -> tuple[str, dict]:
        """WHERE clause (over ``x`` instances, ``i`` instructions, ``c`` consensus) of the review queue.

        ``status``: a review status, or "auto-filtered" (candidates the generation filters rejected);
        ``consensus``: "pass" / "fail" at ``tau`` or "none" (not ensembled yet). Raises StoreError on others.
        ``quality_scorer`` + ``quality_min``: the chosen output's score from that scorer is at least the minimum.
        """
        where, p = [], {"tau": tau}
        if _quality_clause(quality_scorer, quality_min, p):
            where.append(QUALITY_SQL)
        if status == "auto-filtered":
            where.append("x.status = 'rejected'")
        elif status:
            if status not in REVIEW_STATUSES:
                raise StoreError(f"unknown review status {status!r}; one of {', '.join(self.QUEUE_STATUSES)}")
            where.append("x.status = 'ok' AND x.review_status = :status"); p["status"] = status
        if task_type:
            where.append("x.task_type = :task_type"); p["task_type"] = task_type
        if model:
            where.append("x.generator_model = :model"); p["model"] = model
        # pass / fail: probe a list built once from the consensus index ("+" keeps SQLite walking the queue
        # in seq order instead of seeking each listed id and sorting: bounded cost at any selectivity)
        if consensus == "pass":
            where.append(f"+x.id IN (SELECT c.instance_id FROM consensus c WHERE {PASSING_SQL})")
        elif consensus == "fail":
            where.append(f"+x.id IN (SELECT c.instance_id FROM consensus c WHERE NOT ({PASSING_SQL}))")
        elif consensus == "none":
            where.append("c.instance_id IS NULL")
        elif consensus:
            raise StoreError(f"unknown consensus filter {consensus!r}; one of {', '.join(self.QUEUE_CONSENSUS)}")
        if search and search.strip():
            p["q"] = "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(i.text LIKE :q ESCAPE '\\' OR x.input LIKE :q ESCAPE '\\'"
                         " OR x.output LIKE :q ESCAPE '\\' OR x.final_output LIKE :q ESCAPE '\\'"
                         " OR x.final_instruction LIKE :q ESCAPE '\\')")
        return " AND ".join(where) or "1=1", p

    _QUEUE_FROM = (" FROM instances x JOIN instructions i ON i.id = x.instruction_id"
                   " LEFT JOIN consensus c ON c.instance_id = x.id")

    def review_queue(self, *, sort: str = "seq", limit: int = 50, offset: int = 0, snippet: int = 160,
                     **filters: Any) -> list[dict]:
        """One page of candidates (filters as in :meth:`_queue_where`), texts cut to ``snippet`` chars.

        Each row: id, seq, task_type, generator_model, status, reason, review_status, version, reviewed_by,
        instruction, input, output (the reviewed text when there is one), k, min_pairwise, consensus
        reason, passes (1/0 at ``tau``; NULL without consensus).
        """
        if sort not in self.QUEUE_SORTS:
            raise StoreError(f"unknown queue sort {sort!r}; one of {', '.join(self.QUEUE_SORTS)}")
        where, p = self._queue_where(**filters)
        p.update(n=limit, o=offset, s=snippet)
        return self._rows(
            "SELECT x.id, x.seq, x.task_type, x.generator_model, x.status, x.reason, x.review_status,"
            " x.version, x.reviewed_by, substr(COALESCE(x.final_instruction, i.text), 1, :s) AS instruction,"
            " substr(COALESCE(x.final_input, x.input), 1, :s) AS input,"
            " substr(COALESCE(x.final_output, x.output), 1, :s) AS output, c.k, c.min_pairwise,"
            " c.reason AS consensus_reason,"
            f" CASE WHEN c.instance_id IS NULL THEN NULL WHEN {PASSING_SQL} THEN 1 ELSE 0 END AS passes"
            f"{self._QUEUE_FROM} WHERE {where} ORDER BY {self.QUEUE_SORTS[sort]} LIMIT :n OFFSET :o", p)

    def count_queue(self, **filters: Any) -> int:
        """How many candidates match the queue filters (see :meth:`_queue_where`)."""
        status, consensus = filters.get("status"), filters.get("consensus")
        if (consensus in ("pass", "fail") and status in REVIEW_STATUSES
                and not any(filters.get(k) for k in ("task_type", "model", "search", "quality_scorer"))):
            return self._count_status_consensus(status, consensus == "pass", filters.get("tau", 0.01))
        where, p = self._queue_where(**filters)
        joins = ""
        if "q" in p:  # text search reads the instruction
            joins += " JOIN instructions i ON i.id = x.instruction_id"
        if filters.get("consensus") == "none":
            joins += " LEFT JOIN consensus c ON c.instance_id = x.id"
        return self._one(f"SELECT COUNT(*) FROM instances x{joins} WHERE {where}", p)

    def next_in_queue(self, after_seq: int | None = None, **filters: Any) -> str | None:
        """Id of the first candidate matching the filters after ``after_seq`` in queue order (``seq``),
        wrapping round to the start; None when nothing matches."""
        where, p = self._queue_where(**filters)
        sql = f"SELECT x.id{self._QUEUE_FROM} WHERE {where} AND x.seq > :after ORDER BY x.seq LIMIT 1"
        found = self._one(sql, {**p, "after": after_seq if after_seq is not None else -1})
        if found is None and after_seq is not None:
            found = self._one(sql, {**p, "after": -1})
        return found

    def _count_status_consensus(self, status: str, passing: bool, tau: float,
                                everything: int | None = None) -> int:
        """OK candidates with review ``status`` whose consensus passes (or fails) at ``tau``.

        Joins from the smaller side: either the candidates with that status, or — early in a review, when
        nearly everything is pending — all consensus rows minus those of the candidates with another status.
        (Consensus rows exist only for OK candidates: the ensembling stage computes them for those only.)
        """
        test = f"({PASSING_SQL})" if passing else f"NOT ({PASSING_SQL})"
        sizes = {r["review_status"]: r["n"] for r in self._rows(
            "SELECT review_status, COUNT(*) AS n FROM instances WHERE status = 'ok' GROUP BY review_status")}
        others = [st for st in sizes if st != status]
        join = ("SELECT COUNT(*) FROM instances x JOIN consensus c ON c.instance_id = x.id"
                " WHERE x.status = 'ok' AND x.review_status IN ({}) AND " + test)
        if sizes.get(status, 0) <= sum(sizes[st] for st in others):
            return self._one(join.format(":s"), {"s": status, "tau": tau})
        if everything is None:  # all consensus rows passing (failing) at tau
            everything = self._one(f"SELECT COUNT(*) FROM consensus c WHERE {test}", {"tau": tau})
        if not others:
            return everything
        names = {f"o{i}": st for i, st in enumerate(others)}
        return everything - self._one(join.format(", ".join(f":{k}" for k in names)), {**names, "tau": tau})

    def pending_passing(self, tau: float, quality_scorer: str | None = None,
                        quality_min: float | None = None) -> list[dict]:
        """(id, version) of the pending, OK candidates whose consensus passes at ``tau`` (and whose chosen
        output scores at least ``quality_min`` from ``quality_scorer``, when given), in seq order."""
        p = {"tau": tau}
        q = _quality_clause(quality_scorer, quality_min, p)
        return self._rows(
            "SELECT x.id, x.version FROM instances x JOIN consensus c ON c.instance_id = x.id"
            f" WHERE {PENDING_PASSING_SQL}{q} ORDER BY x.seq", p)

    def accept_pending_passing(self, tau: float, *, reviewer: str, reason: str | None = None,
                               expected: int | None = None, quality_scorer: str | None = None,
                               quality_min: float | None = None) -> int:
        """Accept, set-based and in one write transaction, every pending OK candidate passing at ``tau``:
        each takes its consensus choice (else its generator output), its version is bumped and one ``accept``
        row per candidate goes to the review log — the same rows :meth:`review` writes one at a time.

        ``expected``: the count the reviewer confirmed; when it differs, raises :class:`ConflictError` and
        writes nothing. ``quality_scorer`` + ``quality_min`` narrow it as in :meth:`pending_passing`.
        Returns how many were accepted."""
        if not reviewer or not reviewer.strip():
            raise StoreError("a review needs a reviewer name")
        with self.db.atomic():
            # a write first takes the write lock, so no review lands between the read and the update
            self.db.execute("UPDATE instances SET version = version WHERE 0")
            p = {"tau": tau}
            q = _quality_clause(quality_scorer, quality_min, p)
            rows = self.db.execute(
                "SELECT x.id, x.version, i.text, x.input, x.output,"
                f" COALESCE((SELECT o.text FROM outputs o WHERE o.id = {CHOSEN_OUTPUT_ID}), x.output)"
                " FROM instances x JOIN instructions i ON i.id = x.instruction_id"
                f" JOIN consensus c ON c.instance_id = x.id WHERE {PENDING_PASSING_SQL}{q} ORDER BY x.seq",
                p).fetchall()
            if expected is not None and expected != len(rows):
                raise ConflictError(f"{len(rows)} pending candidates pass at τ = {tau:g} now, not the {expected} "
                                    "you confirmed; check the count and confirm again")
            t = now()
            self.db.conn.executemany(
                "UPDATE instances SET review_status = 'accepted', version = version + 1, final_instruction = ?,"
                " final_input = ?, final_output = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ?",
                [(text, inp, chosen, reviewer, t, iid) for iid, _v, text, inp, _o, chosen in rows])
            self.db.conn.executemany(
                "INSERT INTO reviews (instance_id, reviewer, at, action, version, before, after, reason)"
                " VALUES (?, ?, ?, 'accept', ?, ?, ?, ?)",
                [(iid, reviewer, t, v + 1, _json({"instruction": text, "input": inp, "output": out}),
                  _json({"instruction": text, "input": inp, "output": chosen}), reason)
                 for iid, v, text, inp, out, chosen in rows])
        return len(rows)

    def count_pending_passing(self, tau: float, passing: int | None = None, quality_scorer: str | None = None,
                              quality_min: float | None = None) -> int:
        """How many pending OK candidates pass consensus at ``tau`` (what "accept all that pass" would take).
        ``passing``: the count of all passing rows at ``tau`` when the caller has it (saves a scan).
        ``quality_scorer`` + ``quality_min``: only those whose chosen output scores at least that."""
        if quality_scorer and quality_min is not None:
            return self.count_queue(status="pending", consensus="pass", tau=tau, quality_scorer=quality_scorer,
                                    quality_min=quality_min)
        return self._count_status_consensus("pending", True, tau, passing)

    def generator_models(self) -> list[str]:
        """The distinct generator models of the stored candidates (the queue's model filter)."""
        return [r["m"] for r in self._rows(
            "SELECT DISTINCT generator_model AS m FROM instances ORDER BY m")]

    def model_contribution(self, tau: float) -> list[dict]:
        """Per model: kept / filtered instructions it generated, OK / rejected candidates, candidates passing
        consensus at ``tau``, accepted+edited / rejected reviews, ensemble outputs and how often consensus
        chose its output."""
        rows: dict[str, dict] = {}

        def row(m: str) -> dict:
            return rows.setdefault(m, {"model": m, "instructions_kept": 0, "instructions_filtered": 0,
                                       "candidates_ok": 0, "candidates_rejected": 0, "passing": 0,
                                       "accepted": 0, "rejected": 0, "outputs": 0, "chosen": 0})
        for r in self._rows("SELECT generator_model AS m, SUM(status = 'kept') AS k, SUM(status != 'kept') AS f"
                            " FROM instructions GROUP BY m"):
            row(r["m"]).update(instructions_kept=r["k"], instructions_filtered=r["f"])
        for r in self._rows(
                "SELECT x.generator_model AS m, SUM(x.status = 'ok') AS ok, SUM(x.status != 'ok') AS bad,"
                " SUM(x.status = 'ok' AND x.review_status IN ('accepted', 'edited')) AS acc,"
                " SUM(x.status = 'ok' AND x.review_status = 'rejected') AS rej,"
                f" SUM(CASE WHEN c.instance_id IS NOT NULL AND ({PASSING_SQL}) THEN 1 ELSE 0 END) AS pass"
                " FROM instances x LEFT JOIN consensus c ON c.instance_id = x.id GROUP BY m", {"tau": tau}):
            row(r["m"]).update(candidates_ok=r["ok"], candidates_rejected=r["bad"], passing=r["pass"],
                               accepted=r["acc"], rejected=r["rej"])
        for r in self._rows("SELECT model_id AS m, COUNT(*) AS n FROM outputs WHERE prompt_style != 'generator'"
                            " GROUP BY m"):
            row(r["m"])["outputs"] = r["n"]
        for r in self._rows("SELECT json_extract(models, '$[' || chosen_index || ']') AS m, COUNT(*) AS n"
                            " FROM consensus WHERE chosen_index IS NOT NULL GROUP BY m"):
            if r["m"] is not None:
                row(r["m"])["chosen"] = r["n"]
        return [rows[m] for m in sorted(rows)]

    def reviewer_progress(self) -> list[dict]:
        """Per reviewer: actions in the review log by kind, candidates touched, first and last time."""
        return self._rows(
            "SELECT reviewer, COUNT(*) AS actions, COUNT(DISTINCT instance_id) AS candidates,"
            " SUM(action = 'accept') AS accept, SUM(action = 'edit') AS edit, SUM(action = 'reject') AS reject,"
            " SUM(action = 'reset') AS reset, MIN(at) AS first_at, MAX(at) AS last_at"
            " FROM reviews GROUP BY reviewer ORDER BY actions DESC, reviewer")
