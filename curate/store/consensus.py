"""Ensembling and consensus: the ensemble outputs per candidate, the consensus rows computed over them,
and the threshold reads (passing counts and ids, the min-pairwise histogram) (curate.ensemble)."""

from __future__ import annotations

import json
from typing import Sequence

from .base import StoreBase, _json, content_id, now
from .rows import Output
from .sql import _ROUGE_ROWS, EXACT_ROWS, PASSING_SQL


class ConsensusQueries(StoreBase):
    """Outputs, consensus rows, passing counts at a threshold, and the min-pairwise histogram."""

    # -- outputs ----------------------------------------------------------------------------------------
    def candidates_missing_output(self, model_id: str, prompt_style: str, limit: int = 64) -> list[dict]:
        """OK candidates that have no output yet from (model, style): the ensembling resume point."""
        return self._rows(
            "SELECT x.id, x.input, x.task_type, i.text AS instruction FROM candidates x"
            " JOIN instructions i ON i.id = x.instruction_id WHERE x.status = 'ok'"
            " AND NOT EXISTS (SELECT 1 FROM outputs o WHERE o.candidate_id = x.id"
            " AND o.model_id = :m AND o.prompt_style = :s) ORDER BY x.seq LIMIT :n",
            {"m": model_id, "s": prompt_style, "n": limit})

    def add_outputs(self, rows: Sequence[dict]) -> int:
        """Store ensemble outputs; one per (candidate, model, prompt style) — re-adding is a no-op."""
        prepared = []
        for r in rows:
            r = dict(r)
            # the hash's part names predate the candidates table: kept, so ids stay stable across versions
            r["id"] = content_id(instance_id=r["candidate_id"], model_id=r["model_id"],
                                 prompt_style=r["prompt_style"])
            r["params"] = r["params"] if isinstance(r["params"], str) else _json(r["params"])
            r.setdefault("created_at", now())
            prepared.append(r)
        with self.atomic():
            self.db["outputs"].insert_all(prepared, ignore=True)
        return len(prepared)

    def outputs_for(self, candidate_id: str) -> list[Output]:
        """The candidate's outputs in stored order (position, then model)."""
        return [Output.from_row(r) for r in self._rows(
            "SELECT * FROM outputs WHERE candidate_id = :id ORDER BY position, model_id", {"id": candidate_id})]

    def candidates_needing_consensus(self, min_outputs: int = 2, limit: int = 1000) -> list[dict]:
        """Instances with ≥ ``min_outputs`` outputs whose consensus is missing or older than an output."""
        return self._rows(
            "SELECT x.id FROM candidates x WHERE x.status = 'ok'"
            " AND (SELECT COUNT(*) FROM outputs o WHERE o.candidate_id = x.id) >= :k"
            " AND NOT EXISTS (SELECT 1 FROM consensus c WHERE c.candidate_id = x.id"
            "   AND c.k = (SELECT COUNT(*) FROM outputs o WHERE o.candidate_id = x.id))"
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
        with self.atomic():
            self.db["consensus"].insert_all(prepared, replace=True)

    def get_consensus(self, candidate_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM consensus WHERE candidate_id = :id", {"id": candidate_id})
        if not rows:
            return None
        r = rows[0]
        for key in ("output_ids", "models", "pairwise", "scores"):
            r[key] = json.loads(r[key])
        return r

    def count_passing(self, tau: float) -> dict[str, int]:
        """{'scored', 'passing'} at threshold ``tau``: index-only counts, no recomputation (PASSING_SQL's rule)."""
        scored = self._one("SELECT COUNT(*) FROM consensus")
        exact = self._one(f"SELECT COUNT(*) FROM consensus WHERE {EXACT_ROWS}")
        rouge = self._one(f"SELECT COUNT(*) FROM consensus {_ROUGE_ROWS} AND min_pairwise > :tau", {"tau": tau})
        return {"scored": scored, "passing": exact + rouge}

    def passing_ids(self, tau: float) -> list[str]:
        return [r["candidate_id"] for r in self._rows(
            f"SELECT c.candidate_id FROM consensus c JOIN candidates x ON x.id = c.candidate_id"
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
