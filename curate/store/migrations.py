"""The schema: sqlite-utils migrations, applied in order when a :class:`~curate.store.Store` opens a
database (``Store._migrate``, curate.store.base) and recorded once applied."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

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


@migrations()
def m004_candidates(db: Database) -> None:
    """One name for the reviewed unit: the table ``instances`` becomes ``candidates``, every column that points at
    it ``candidate_id``, and ``scores.candidate_id`` (a candidate id or an output id) ``subject_id``; the indexes
    are renamed alike. SQLite rewrites the foreign keys and the index definitions with the names. One statement
    at a time (``executescript`` would commit the migration's transaction half-way)."""
    for sql in (
        "ALTER TABLE instances RENAME TO candidates",
        "ALTER TABLE outputs RENAME COLUMN instance_id TO candidate_id",
        "ALTER TABLE consensus RENAME COLUMN instance_id TO candidate_id",
        "ALTER TABLE reviews RENAME COLUMN instance_id TO candidate_id",
        "ALTER TABLE embeddings RENAME COLUMN instance_id TO candidate_id",
        "ALTER TABLE selections RENAME COLUMN instance_id TO candidate_id",
        "ALTER TABLE scores RENAME COLUMN candidate_id TO subject_id",
        "DROP INDEX instances_seq",
        "CREATE UNIQUE INDEX candidates_seq ON candidates(seq)",
        "DROP INDEX instances_instruction",
        "CREATE INDEX candidates_instruction ON candidates(instruction_id)",
        "DROP INDEX instances_review",
        "CREATE INDEX candidates_review ON candidates(status, review_status)",
        "DROP INDEX instances_review_queue",
        "CREATE INDEX candidates_review_queue ON candidates(status, review_status, seq, id)",
        "DROP INDEX outputs_instance",
        "CREATE INDEX outputs_candidate ON outputs(candidate_id, position)",
        "DROP INDEX reviews_instance",
        "CREATE INDEX reviews_candidate ON reviews(candidate_id, id)",
        "DROP INDEX selections_instance",
        "CREATE UNIQUE INDEX selections_candidate ON selections(name, candidate_id)",
    ):
        db.execute(sql)


_OLD_UNDO = r"^undo of review #(\d+)(?:: (.*))?$"


@migrations()
def m005_review(db: Database) -> None:
    """Team review (docs/ARCHITECTURE.md, "Review"). The review log gets three structural columns: ``undoes``
    (the id of the entry an undo undoes: no longer parsed out of the reason), ``scope`` (``decision`` or a
    reviewer's ``vote``) and ``quorum`` (reviews_per_candidate when it was written). Two tables hold the slots
    those rows write: ``review_decisions`` (one per candidate) and ``review_votes`` (one per candidate and
    reviewer). Rows written by older versions are kept: an undo's ``undo of review #N[: text]`` reason becomes
    ``undoes = N`` with the text after the prefix as its reason (only where #N is an earlier entry of the same
    candidate; anything else was a reviewer's own words and stays as it is), and each reviewed candidate's
    state becomes its decision. The log stays append-only (its trigger is lifted only for that rewrite).
    One statement at a time (``executescript`` would commit half-way)."""
    import re

    for sql in (
        "ALTER TABLE reviews ADD COLUMN undoes INTEGER REFERENCES reviews(id)",
        "ALTER TABLE reviews ADD COLUMN scope TEXT NOT NULL DEFAULT 'decision'"
        " CHECK (scope IN ('decision', 'vote'))",
        "ALTER TABLE reviews ADD COLUMN quorum INTEGER NOT NULL DEFAULT 1",
        "CREATE INDEX reviews_reviewer ON reviews(reviewer, candidate_id)",
        # the decision of a candidate: its single review (quorum 1), an adjudication or a bulk action
        "CREATE TABLE review_decisions ("
        " candidate_id TEXT PRIMARY KEY REFERENCES candidates(id),"
        " reviewer TEXT NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN ('accepted', 'edited', 'rejected')),"
        " instruction TEXT, input TEXT, output TEXT,"  # NULL when rejected
        " reason TEXT,"
        " review_id INTEGER REFERENCES reviews(id),"   # the log row that wrote this value
        " at REAL NOT NULL)",
        # each reviewer's own current review of a candidate (reviews_per_candidate >= 2)
        "CREATE TABLE review_votes ("
        " candidate_id TEXT NOT NULL REFERENCES candidates(id),"
        " reviewer TEXT NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN ('accepted', 'edited', 'rejected')),"
        " instruction TEXT, input TEXT, output TEXT,"
        " reason TEXT,"
        " review_id INTEGER REFERENCES reviews(id),"
        " at REAL NOT NULL,"
        " PRIMARY KEY (candidate_id, reviewer))",
        "CREATE INDEX review_votes_reviewer ON review_votes(reviewer, candidate_id)",
    ):
        db.execute(sql)
    ids = {}
    for rid, cid in db.execute("SELECT id, candidate_id FROM reviews").fetchall():
        ids[rid] = cid
    fixes = []
    for rid, cid, reason in db.execute(
            "SELECT id, candidate_id, reason FROM reviews WHERE reason LIKE 'undo of review #%' ORDER BY id"):
        m = re.match(_OLD_UNDO, reason, re.S)
        if m and int(m.group(1)) < rid and ids.get(int(m.group(1))) == cid:
            fixes.append((int(m.group(1)), m.group(2) or None, rid))
    if fixes:
        db.execute("DROP TRIGGER reviews_no_update")
        for fix in fixes:
            db.execute("UPDATE reviews SET undoes = ?, reason = ? WHERE id = ?", fix)
        db.execute("CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews"
                   " BEGIN SELECT RAISE(ABORT, 'the review log is append-only'); END")
    db.execute(
        "INSERT INTO review_decisions (candidate_id, reviewer, status, instruction, input, output, reason,"
        " review_id, at)"
        " SELECT x.id, COALESCE(x.reviewed_by, ''), x.review_status,"
        " CASE WHEN x.review_status = 'rejected' THEN NULL ELSE x.final_instruction END,"
        " CASE WHEN x.review_status = 'rejected' THEN NULL ELSE x.final_input END,"
        " CASE WHEN x.review_status = 'rejected' THEN NULL ELSE x.final_output END,"
        " (SELECT r.reason FROM reviews r WHERE r.candidate_id = x.id ORDER BY r.id DESC LIMIT 1),"
        " (SELECT r.id FROM reviews r WHERE r.candidate_id = x.id ORDER BY r.id DESC LIMIT 1),"
        " COALESCE(x.reviewed_at, 0)"
        " FROM candidates x WHERE x.review_status IN ('accepted', 'edited', 'rejected')")


@migrations()
def m006_imports(db: Database) -> None:
    """Bring your own data (curate.importer): the named sources and their licences, one ledger row per import
    (its file, format, mapping, progress and counts), the staging table an import fills before it is published
    in one transaction, the provenance of every imported candidate (source, row, line; an imported output's is in
    its params), the rejected
    rows of imports run with skip_bad, and an index to match outputs to candidates by instruction text. One
    statement at a time (``executescript`` would commit the migration's transaction half-way)."""
    for sql in (
        """CREATE TABLE sources (            -- a named dataset or outputs file people import
            name TEXT PRIMARY KEY,           -- the generator name of its candidates (outputs: their files' name)
            license TEXT NOT NULL,           -- SPDX id given with --license, or 'unknown'
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE imports (            -- one import of one file / folder / Hub split (the resume ledger)
            id TEXT PRIMARY KEY,             -- content hash of (source, location, fingerprint, options)
            source TEXT NOT NULL REFERENCES sources(name),
            kind TEXT NOT NULL CHECK (kind IN ('candidates', 'outputs')),
            model TEXT,                      -- outputs: --model (NULL: the generator column names each row's)
            location TEXT NOT NULL,          -- absolute path, or the Hub id
            reader TEXT NOT NULL,            -- jsonl | json | csv | parquet | datasets | hub
            fingerprint TEXT NOT NULL,       -- size:mtime (files), a hash of the files (folders), id:split (Hub)
            format TEXT NOT NULL,            -- alpaca | sharegpt | messages | guanaco (as detected or given)
            mapping TEXT NOT NULL,           -- JSON {field: column}
            split TEXT,
            row_limit INTEGER,
            skip_bad INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('staging', 'staged', 'done')),
            rows_read INTEGER NOT NULL DEFAULT 0,   -- records read and staged so far: where a re-run resumes
            counts TEXT NOT NULL DEFAULT '{}',      -- JSON: staged, duplicates, rejected, unmatched, added, ...
            job_id TEXT,
            created_at REAL NOT NULL,
            finished_at REAL
        )""",
        "CREATE INDEX imports_source ON imports(source, location)",
        """CREATE TABLE import_staging (     -- rows of unfinished imports; published together, then deleted
            import_id TEXT NOT NULL REFERENCES imports(id),
            row INTEGER NOT NULL,
            line INTEGER,
            candidate_id TEXT NOT NULL,      -- the new candidate, or (outputs) the matched one
            instruction_id TEXT,
            output_id TEXT NOT NULL,
            task_type TEXT,
            instruction TEXT,
            input TEXT,
            model TEXT NOT NULL,             -- the output's model: the source (o0), or the outputs' model
            text TEXT NOT NULL,              -- the output
            system TEXT,
            extra TEXT                       -- no index: appended in row order, read once when published
        )""",
        """CREATE TABLE import_rows (        -- provenance: the source row each imported candidate came from
            candidate_id TEXT PRIMARY KEY REFERENCES candidates(id),  -- (imported outputs: in outputs.params)
            import_id TEXT NOT NULL REFERENCES imports(id),
            source TEXT NOT NULL,
            row INTEGER NOT NULL,            -- 0-based record index in the source (the datasets index)
            line INTEGER,                    -- 1-based line the record starts on (text files)
            system TEXT,                     -- a conversation's system turn
            extra TEXT                       -- JSON: the record's other columns; turns cut off
        )""",
        """CREATE TABLE import_rejects (     -- rows an import could not use, with the reason
            import_id TEXT NOT NULL REFERENCES imports(id),
            row INTEGER NOT NULL,
            line INTEGER,
            kind TEXT NOT NULL CHECK (kind IN ('bad', 'unmatched')),
            reason TEXT NOT NULL,
            raw TEXT,
            PRIMARY KEY (import_id, row)
        )""",
        "CREATE INDEX instructions_text ON instructions(text)",
    ):
        db.execute(sql)


@migrations()
def m007_evaluations(db: Database) -> None:
    """Evaluation runs (curate.evaluate): a run's model, set, settings and metrics, and each row's prediction and
    scores. One statement at a time (see m004)."""
    for sql in (
        """CREATE TABLE eval_runs (
            id TEXT PRIMARY KEY,
            job_id TEXT,
            model TEXT,                      -- the model spec, NULL for a predictions file
            evalset TEXT NOT NULL,
            prompt_style TEXT,               -- chat | reference
            n INTEGER NOT NULL,
            metrics TEXT NOT NULL,           -- JSON {metric: {mean, ci, n, missing}}
            settings TEXT NOT NULL,          -- JSON: the run's Config
            licence TEXT,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE eval_rows (
            run_id TEXT NOT NULL REFERENCES eval_runs(id),
            position INTEGER NOT NULL,
            row_id TEXT NOT NULL,
            prediction TEXT NOT NULL,
            scores TEXT NOT NULL,            -- JSON {rouge_l, exact_match, judge, win_rate}
            PRIMARY KEY (run_id, position)
        )""",
    ):
        db.execute(sql)


@migrations()
def m008_review_day(db: Database) -> None:
    """The reviewer's day (curate.review): skips (a candidate set aside by one reviewer for now: it stays pending
    and leaves that reviewer's queue), comments on candidates (several reviewers, append-only), and the review
    guidelines an admin writes in the app (every version kept; the latest is shown). One statement at a time
    (see m004)."""
    for sql in (
        """CREATE TABLE review_skips (       -- one row per (candidate, reviewer) while it is set aside
            candidate_id TEXT NOT NULL REFERENCES candidates(id),
            reviewer TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (candidate_id, reviewer)
        )""",
        "CREATE INDEX review_skips_reviewer ON review_skips(reviewer, candidate_id)",
        """CREATE TABLE review_comments (    -- append-only: triggers refuse UPDATE and DELETE
            id INTEGER PRIMARY KEY,
            candidate_id TEXT NOT NULL REFERENCES candidates(id),
            author TEXT NOT NULL,
            at REAL NOT NULL,
            text TEXT NOT NULL
        )""",
        "CREATE INDEX review_comments_candidate ON review_comments(candidate_id, id)",
        """CREATE TRIGGER review_comments_no_update BEFORE UPDATE ON review_comments
           BEGIN SELECT RAISE(ABORT, 'review comments are append-only'); END""",
        """CREATE TRIGGER review_comments_no_delete BEFORE DELETE ON review_comments
           BEGIN SELECT RAISE(ABORT, 'review comments are append-only'); END""",
        """CREATE TABLE review_guidelines (  -- every version an admin saved; the latest is shown
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,              -- Markdown (shown sanitised)
            author TEXT NOT NULL,
            at REAL NOT NULL
        )""",
    ):
        db.execute(sql)
