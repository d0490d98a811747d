"""Generation: seed tasks, raw completions, parsed instructions (kept or filtered) and the candidate
candidates made from them (curate.seeds, curate.generate)."""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import StoreError
from .base import StoreBase, _json, content_id, now
from .imports import IMPORT_ORIGIN
from .rows import Candidate


class GenerationQueries(StoreBase):
    """Seeds, completions, instructions, and adding and reading candidates."""

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
        with self.atomic():
            self.db["seeds"].insert_all(rows, ignore=True)
        return len(rows)

    def count_seeds(self) -> dict[str, int]:
        rows = self._rows("SELECT task_type, COUNT(*) AS n FROM seeds GROUP BY task_type")
        return {r["task_type"]: r["n"] for r in rows}

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

    # Imported instructions (origin 'import', curate.importer) are not generated ones: they are no machine demos,
    # do not feed the novelty filter and are not counted here (stats list them under "imported").
    def kept_instruction_texts(self, task_type: str | None = None) -> list[str]:
        sql = f"SELECT text FROM instructions WHERE status = 'kept' AND origin != '{IMPORT_ORIGIN}'"
        if task_type:
            sql += " AND task_type = :t"
        return [r["text"] for r in self._rows(sql + " ORDER BY seq", {"t": task_type})]

    def count_kept_instructions(self, task_type: str | None = None, origin: str | None = None) -> int:
        where, p = ["status = 'kept'", f"origin != '{IMPORT_ORIGIN}'"], {}
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

    def instructions_without_instances(self, task_type: str | None = None, limit: int = 1000,
                                       after_seq: int = 0) -> list[dict]:
        """Kept instructions that no instance completion has been stored for yet (resume point), after
        ``after_seq`` in seq order (a cursor: batches handed out and not written yet are not read again)."""
        sql = ("SELECT i.* FROM instructions i WHERE i.status = 'kept' AND i.origin = 'instruction_prompt'"
               " AND i.seq > :after"
               " AND NOT EXISTS (SELECT 1 FROM completions c WHERE c.stage = 'instance'"
               " AND c.instruction_id = i.id)")
        if task_type:
            sql += " AND i.task_type = :t"
        return self._rows(sql + " ORDER BY i.seq LIMIT :n", {"t": task_type, "n": limit, "after": after_seq})

    def get_instruction(self, instruction_id: str) -> dict:
        rows = self._rows("SELECT * FROM instructions WHERE id = :id", {"id": instruction_id})
        if not rows:
            raise StoreError(f"no instruction {instruction_id!r}")
        return rows[0]

    def filter_reason_counts(self, stage: str = "instructions") -> dict[str, int]:
        """Counts per reason (``None`` = kept/ok) for 'instructions', 'candidates' or 'completions'."""
        if stage == "instructions":
            sql = ("SELECT COALESCE(reason, 'kept') AS r, COUNT(*) AS n FROM instructions"
                   f" WHERE origin != '{IMPORT_ORIGIN}' GROUP BY r")
        elif stage == "candidates":
            sql = "SELECT COALESCE(reason, 'ok') AS r, COUNT(*) AS n FROM candidates GROUP BY r"
        elif stage == "completions":
            sql = ("SELECT stage || ':' || COALESCE(parse_reason, 'ok') AS r, COUNT(*) AS n"
                   " FROM completions GROUP BY r")
        else:
            raise StoreError(f"unknown stage {stage!r}: instructions, candidates or completions")
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

    # -- candidates ---------------------------------------------------------------------------------------
    def add_candidate(self, row: dict) -> tuple[str, bool]:
        row = dict(row)
        row["id"] = content_id(completion_id=row["completion_id"], position=row["position"])
        if self._one("SELECT 1 FROM candidates WHERE id = :id", {"id": row["id"]}):
            return row["id"], False
        row["params"] = row["params"] if isinstance(row["params"], str) else _json(row["params"])
        row.setdefault("created_at", now())
        row["seq"] = self._next_seq("candidates")
        self.db["candidates"].insert(row)
        return row["id"], True

    def get_candidate(self, candidate_id: str) -> Candidate:
        """The candidate with its instruction text. Raises StoreError if unknown."""
        rows = self._rows("SELECT x.*, i.text AS instruction FROM candidates x"
                          " JOIN instructions i ON i.id = x.instruction_id WHERE x.id = :id",
                          {"id": candidate_id})
        if not rows:
            raise StoreError(f"no candidate {candidate_id!r} in {self.path}")
        return Candidate.from_row(rows[0])

    def count_candidates(self, status: str | None = "ok") -> int:
        if status is None:
            return self._one("SELECT COUNT(*) FROM candidates")
        return self._one("SELECT COUNT(*) FROM candidates WHERE status = :s", {"s": status})
