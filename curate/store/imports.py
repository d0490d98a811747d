"""Imports (curate.importer): named sources and their licences, the import ledger, staging, the one-transaction
publish of an import's rows into instructions / candidates / outputs, provenance, rejects, and matching
outputs to candidates by instruction + input."""

from __future__ import annotations

import json
from collections import namedtuple
from contextlib import contextmanager
from typing import Iterator, Sequence

from ..errors import StoreError
from .base import StoreBase, _in_lists, _json, now

#: instructions.origin of an imported candidate's instruction (generated ones say instruction_prompt /
#: instance_completion, curate.generate)
IMPORT_ORIGIN = "import"
#: outputs.prompt_style of an output imported for an existing candidate (an imported candidate's o0 is
#: 'generator', like a generated one's)
IMPORTED_STYLE = "imported"
#: outputs.position of imported outputs (o0 is 0; ensembling models take 1, 2, … in their order)
IMPORTED_POSITION = 1

_STAGING_COLUMNS = ("import_id", "row", "line", "candidate_id", "instruction_id", "output_id", "task_type",
                    "instruction", "input", "model", "text", "system", "extra")
#: one row of import_staging, as :meth:`ImportQueries.stage_rows` takes it (columns left out are NULL)
StagedRow = namedtuple("StagedRow", _STAGING_COLUMNS, defaults=(None,) * len(_STAGING_COLUMNS))


class ImportQueries(StoreBase):
    """Sources, the import ledger, staging and publishing, provenance, rejects and matching."""

    @contextmanager
    def _bulk_write(self) -> Iterator[None]:
        """One write transaction that takes the write lock up front: the store's :meth:`atomic` (``BEGIN
        IMMEDIATE`` with a bounded wait), so nothing another writer does lands between its reads and writes."""
        with self.atomic():
            yield

    # -- sources ------------------------------------------------------------------------------------------
    def source_licence(self, name: str) -> str | None:
        """The stored licence of source ``name``, None when it was never imported."""
        return self._one("SELECT license FROM sources WHERE name = :n", {"n": name})

    def list_sources(self) -> list[dict]:
        """Every source: name, license, imports (done), kinds, locations, formats, candidates (imported under it)
        and outputs (imported from it), by name."""
        rows = self._rows(
            "SELECT s.name, s.license, COUNT(m.id) AS imports, group_concat(DISTINCT m.kind) AS kinds,"
            " group_concat(DISTINCT m.location) AS locations, group_concat(DISTINCT m.format) AS formats,"
            " group_concat(DISTINCT m.model) AS models FROM sources s"
            " LEFT JOIN imports m ON m.source = s.name AND m.state = 'done' GROUP BY s.name ORDER BY s.name")
        candidates = {r["source"]: r["n"] for r in self._rows(
            "SELECT source, COUNT(*) AS n FROM import_rows GROUP BY source")}
        outputs: dict[str, int] = {}
        for r in self._imported_outputs():
            outputs[r["source"]] = outputs.get(r["source"], 0) + r["n"]
        for r in rows:
            for key in ("kinds", "locations", "formats", "models"):
                r[key] = sorted((r[key] or "").split(",")) if r[key] else []
            r["candidates"], r["outputs"] = candidates.get(r["name"], 0), outputs.get(r["name"], 0)
        return rows

    def _imported_outputs(self) -> list[dict]:
        """(source, model, n) of the imported outputs (their params name the source)."""
        return self._rows(f"SELECT json_extract(params, '$.source') AS source, model_id AS model, COUNT(*) AS n"
                          f" FROM outputs WHERE prompt_style = '{IMPORTED_STYLE}' GROUP BY source, model")

    def generated_models(self) -> list[str]:
        """The generators of candidates that were not imported (the models of the generation stage)."""
        return [r["m"] for r in self._rows(
            "SELECT DISTINCT x.generator_model AS m FROM candidates x WHERE x.completion_id IS NOT NULL ORDER BY m")]

    def source_names(self) -> list[str]:
        """The names of the sources that have imported candidates (the review queue's generator filter)."""
        return [r["name"] for r in self._rows(
            "SELECT DISTINCT m.source AS name FROM imports m WHERE m.kind = 'candidates' AND m.state = 'done'"
            " ORDER BY name")]

    def imported_output_models(self) -> dict[str, str]:
        """{model: licence of the source its outputs came from} for every imported output model (several
        sources: their licences joined by " / ")."""
        licences = {r["name"]: r["license"] for r in self._rows("SELECT name, license FROM sources")}
        out: dict[str, set[str]] = {}
        for r in self._imported_outputs():
            out.setdefault(r["model"], set()).add(licences.get(r["source"], "unknown"))
        return {m: " / ".join(sorted(ls)) for m, ls in out.items()}

    # -- the ledger -----------------------------------------------------------------------------------------
    @staticmethod
    def _decode_import(r: dict | None) -> dict | None:
        if r is not None:
            r["mapping"] = json.loads(r["mapping"])
            r["counts"] = json.loads(r["counts"] or "{}")
        return r

    def get_import(self, import_id: str) -> dict | None:
        return self._decode_import(next(iter(self._rows("SELECT * FROM imports WHERE id = :id",
                                                        {"id": import_id})), None))

    def list_imports(self, limit: int = 100) -> list[dict]:
        """The latest imports first (every state)."""
        return [self._decode_import(r) for r in self._rows(
            "SELECT * FROM imports ORDER BY created_at DESC, rowid DESC LIMIT :n", {"n": limit})]

    def begin_import(self, row: dict, license: str | None) -> dict:
        """The ledger row of import ``row["id"]``: the stored one when this import ran before (to resume or to
        find it done), else a new one in state 'staging'. Records the source and its licence (``license`` None
        keeps a stored one, else 'unknown'). An unfinished import of the same source and location with another
        id (the file changed since) is dropped with its staged rows."""
        with self._bulk_write():
            stored = self.source_licence(row["source"])
            if stored is None:
                self.db.execute("INSERT INTO sources (name, license, created_at) VALUES (:n, :l, :t)",
                                {"n": row["source"], "l": license or "unknown", "t": now()})
            elif license and stored == "unknown":
                self.db.execute("UPDATE sources SET license = :l WHERE name = :n", {"n": row["source"], "l": license})
            found = self.get_import(row["id"])
            if found is not None:
                return found
            for (stale,) in self.db.execute(
                    "SELECT id FROM imports WHERE source = :s AND location = :l AND state != 'done' AND id != :id",
                    {"s": row["source"], "l": row["location"], "id": row["id"]}).fetchall():
                self._drop(stale)
            self.db["imports"].insert({**row, "mapping": _json(row["mapping"]), "state": "staging", "rows_read": 0,
                                       "counts": "{}", "created_at": now()})
            return self.get_import(row["id"])

    def _drop(self, import_id: str) -> None:
        for table in ("import_staging", "import_rejects"):
            self.db.execute(f"DELETE FROM {table} WHERE import_id = :id", {"id": import_id})
        self.db.execute("DELETE FROM imports WHERE id = :id", {"id": import_id})

    def drop_import(self, import_id: str) -> None:
        """Forget an unfinished import: its staged rows, its rejects, its ledger row, and its source when no other
        import names it. Raises StoreError for a published import (its rows are candidates now)."""
        with self._bulk_write():
            state = self._one("SELECT state FROM imports WHERE id = :id", {"id": import_id})
            if state == "done":
                raise StoreError(f"import {import_id[:12]} is published; its candidates stay")
            source = self._one("SELECT source FROM imports WHERE id = :id", {"id": import_id})
            self._drop(import_id)
            if source is not None and not self._one("SELECT 1 FROM imports WHERE source = :s", {"s": source}):
                self.db.execute("DELETE FROM sources WHERE name = :s", {"s": source})

    # -- staging --------------------------------------------------------------------------------------------
    def stage_rows(self, import_id: str, rows: Sequence[StagedRow], rejects: Sequence[dict], *, rows_read: int,
                   counts: dict) -> None:
        """Stage one batch of an import in one transaction: its rows (in row order; duplicates are sorted out
        when the import is published), its rejects, how far the source has been read and the counts so far."""
        with self._bulk_write():
            self.db.conn.executemany(
                f"INSERT INTO import_staging ({', '.join(_STAGING_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(_STAGING_COLUMNS))})", rows)
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO import_rejects (import_id, row, line, kind, reason, raw) VALUES (?, ?, ?, ?, ?, ?)",
                [(import_id, r["row"], r.get("line"), r["kind"], r["reason"], r.get("raw")) for r in rejects])
            moved = self.db.execute("UPDATE imports SET rows_read = :n, counts = :c WHERE id = :id"
                                    " AND state = 'staging'", {"n": rows_read, "c": _json(counts), "id": import_id})
            if moved.rowcount != 1:  # another run of the same import published (or dropped) it meanwhile
                raise StoreError(f"import {import_id[:12]} is no longer staging: another run of it finished first; "
                                 "`curate imports` shows it")

    def set_import_state(self, import_id: str, state: str, counts: dict | None = None) -> None:
        with self._bulk_write():
            self.db.execute("UPDATE imports SET state = :s, counts = COALESCE(:c, counts) WHERE id = :id",
                            {"s": state, "c": None if counts is None else _json(counts), "id": import_id})

    def import_rejects(self, import_id: str | None = None, *, source: str | None = None, kind: str | None = None,
                       limit: int = 20) -> list[dict]:
        """Rejected rows (of one import, or of every import of ``source``), in row order: row, line, kind
        ('bad' or 'unmatched'), reason, raw (the record's text, where there is one)."""
        where, p = ["1=1"], {"n": limit}
        if import_id:
            where.append("r.import_id = :id"); p["id"] = import_id
        if source:
            where.append("m.source = :s"); p["s"] = source
        if kind:
            where.append("r.kind = :k"); p["k"] = kind
        return self._rows("SELECT r.import_id, m.source, m.location, r.row, r.line, r.kind, r.reason, r.raw"
                          " FROM import_rejects r JOIN imports m ON m.id = r.import_id"
                          f" WHERE {' AND '.join(where)} ORDER BY m.created_at, r.row LIMIT :n", p)

    def count_import_rejects(self, import_id: str, kind: str) -> int:
        return self._one("SELECT COUNT(*) FROM import_rejects WHERE import_id = :id AND kind = :k",
                         {"id": import_id, "k": kind})

    # -- publishing -----------------------------------------------------------------------------------------
    def publish_import(self, import_id: str, *, job_id: str | None = None) -> dict:
        """Move an import's staged rows into the store in one transaction, and mark it done: for a candidates
        import, an instruction (origin 'import') and a candidate (generator = the source) per new row, with the
        row's output as o0; for an outputs import, one output (style 'imported') per matched candidate. Rows
        already in the store (the same content-hash id) are left as they are, and of rows repeated in the file the
        first is taken. Returns {duplicates, added, existing}."""
        with self._bulk_write():
            imp = self.get_import(import_id)
            if imp is None:
                raise StoreError(f"no import {import_id[:12]} in {self.path}")
            if imp["state"] == "done":
                return {k: imp["counts"].get(k, 0) for k in ("duplicates", "added", "existing")}
            p = {"imp": import_id, "src": imp["source"], "job": job_id, "t": now(),
                 "params": _json({"source": imp["source"], "import": import_id})}
            # the first staged row of each output id (rows are staged in row order): the file's duplicates out
            self.db.execute("DROP TABLE IF EXISTS temp.import_firsts")
            self.db.execute("CREATE TEMP TABLE import_firsts AS SELECT MIN(rowid) AS r FROM import_staging"
                            " WHERE import_id = :imp GROUP BY output_id", p)
            staged = self._one("SELECT COUNT(*) FROM import_staging WHERE import_id = :imp", p)
            distinct = self._one("SELECT COUNT(*) FROM temp.import_firsts")
            firsts = "WITH firsts AS (SELECT r FROM temp.import_firsts) "
            if imp["kind"] == "candidates":
                p.update(bi=self._next_seq("instructions") - 1, bx=self._next_seq("candidates") - 1)
                self.db.execute(
                    "INSERT INTO instructions (id, seq, text, task_type, origin, completion_id, position,"
                    " generator_model, params, prompt_hash, rng_seed, job_id, status, created_at)"
                    " SELECT instruction_id, :bi + ROW_NUMBER() OVER (ORDER BY MIN(row)), instruction, task_type,"
                    f" '{IMPORT_ORIGIN}', NULL, 0, :src, :params, '', NULL, :job, 'kept', :t FROM import_staging s"
                    " WHERE import_id = :imp AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.id = s.instruction_id)"
                    " GROUP BY instruction_id", p)
                before = self.db.conn.total_changes
                self.db.execute(
                    firsts + "INSERT INTO candidates (id, seq, instruction_id, task_type, input, output, completion_id,"
                    " position, generator_model, params, prompt_hash, rng_seed, job_id, status, created_at)"
                    " SELECT candidate_id, :bx + ROW_NUMBER() OVER (ORDER BY row), instruction_id, task_type, input,"
                    " text, NULL, 0, :src, :params, '', NULL, :job, 'ok', :t FROM import_staging s JOIN firsts f"
                    " ON f.r = s.rowid WHERE NOT EXISTS (SELECT 1 FROM candidates x WHERE x.id = s.candidate_id)", p)
                added = self.db.conn.total_changes - before
                self.db.execute(
                    firsts + "INSERT OR IGNORE INTO outputs (id, candidate_id, position, model_id, params, prompt_style,"
                    " text, job_id, created_at) SELECT output_id, candidate_id, 0, model, :params, 'generator', text,"
                    " :job, :t FROM import_staging s JOIN firsts f ON f.r = s.rowid ORDER BY output_id", p)
                self.db.execute(
                    firsts + "INSERT OR IGNORE INTO import_rows (candidate_id, import_id, source, row, line, system,"
                    " extra) SELECT candidate_id, :imp, :src, row, line, system, extra FROM import_staging s"
                    " JOIN firsts f ON f.r = s.rowid ORDER BY candidate_id", p)
            else:  # an imported output's provenance is its params: {source, import, row, line}
                before = self.db.conn.total_changes
                self.db.execute(
                    firsts + "INSERT OR IGNORE INTO outputs (id, candidate_id, position, model_id, params, prompt_style,"
                    f" text, job_id, created_at) SELECT output_id, candidate_id, {IMPORTED_POSITION}, model,"
                    f" json_set(:params, '$.row', row, '$.line', line), '{IMPORTED_STYLE}', text, :job, :t"
                    " FROM import_staging s JOIN firsts f ON f.r = s.rowid ORDER BY output_id", p)
                added = self.db.conn.total_changes - before
            if self._one("SELECT 1 FROM import_staging WHERE import_id != :imp LIMIT 1", p) is None:
                self.db.execute("DELETE FROM import_staging")  # SQLite's truncate: no row by row
            else:
                self.db.execute("DELETE FROM import_staging WHERE import_id = :imp", p)
            self.db.execute("DROP TABLE temp.import_firsts")
            counts = {**imp["counts"], "duplicates": staged - distinct, "added": added, "existing": distinct - added}
            self.db.execute("UPDATE imports SET state = 'done', counts = :c, finished_at = :t, job_id = :job"
                            " WHERE id = :imp", {**p, "c": _json(counts)})
        return {"duplicates": staged - distinct, "added": added, "existing": distinct - added}

    # -- matching and reading -------------------------------------------------------------------------------
    def match_candidates(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """{(instruction, input): [(candidate id, generator model), …]} for the OK candidates whose original
        instruction and input equal one of ``pairs`` exactly (pairs without a match are left out)."""
        wanted = set(pairs)
        out: dict[tuple[str, str], list[tuple[str, str]]] = {}
        texts = sorted({i for i, _ in wanted})
        for marks, chunk in _in_lists(texts):
            for text, inp, cid, gen in self.db.execute(
                    # instructions by text first (CROSS JOIN keeps that order), then their candidates
                    "SELECT i.text, x.input, x.id, x.generator_model FROM instructions i"
                    f" CROSS JOIN candidates x ON x.instruction_id = i.id WHERE i.text IN ({marks})"
                    " AND +x.status = 'ok' ORDER BY x.seq", chunk):
                if (text, inp) in wanted:
                    out.setdefault((text, inp), []).append((cid, gen))
        return out

    def provenance_for(self, candidate_id: str) -> dict | None:
        """Where an imported candidate came from: source, license, location, format, row, line, system, extra
        (decoded); None for a generated candidate. (An imported output's params say the same: source, import,
        row, line.)"""
        rows = self._rows("SELECT r.*, m.location, m.format, m.reader, s.license FROM import_rows r"
                          " JOIN imports m ON m.id = r.import_id JOIN sources s ON s.name = r.source"
                          " WHERE r.candidate_id = :id", {"id": candidate_id})
        if not rows:
            return None
        r = rows[0]
        r["extra"] = json.loads(r["extra"]) if r["extra"] else None
        return r

    def import_stats(self) -> dict[str, dict]:
        """{source: {"candidates": n, "outputs": n}} over the published imports (`curate stats`)."""
        return {r["name"]: {"candidates": r["candidates"], "outputs": r["outputs"]} for r in self.list_sources()}
