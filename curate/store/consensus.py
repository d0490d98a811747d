"""Ensembling and consensus: the ensemble outputs per candidate, the consensus rows computed over them,
and the threshold reads (passing counts and ids, the min-pairwise histogram) (curate.ensemble)."""

from __future__ import annotations

import json
from typing import Sequence

from .base import StoreBase, _in_lists, _json, content_id, now
from .rows import Output
from .sql import _ROUGE_ROWS, EXACT_ROWS, PASSING_SQL


_CONSENSUS_COLUMNS = ("candidate_id", "k", "output_ids", "models", "chosen_index", "chosen_nonempty", "reason",
                      "min_pairwise", "pairwise", "scores", "tokenizer", "threshold", "created_at")
_CONSENSUS_JSON = ("output_ids", "models", "pairwise", "scores")


def consensus_values(rows: Sequence[dict]) -> list[tuple]:
    """Consensus rows (dicts of the consensus columns; ``created_at`` defaults to now) as the tuples
    :meth:`ConsensusQueries.save_consensus_values` stores, the lists JSON-encoded. Pure: a worker process can
    run it."""
    t = now()
    return [tuple(_json(r[c]) if c in _CONSENSUS_JSON else int(bool(r[c])) if c == "chosen_nonempty"
                  else r.get(c, t) if c == "created_at" else r[c] for c in _CONSENSUS_COLUMNS) for r in rows]


def output_id(candidate_id: str, model_id: str, prompt_style: str) -> str:
    """The content-hash id of a candidate's output from (model, prompt style): one per such triple."""
    # the hash's part names predate the candidates table: kept, so ids stay stable across versions
    return content_id(instance_id=candidate_id, model_id=model_id, prompt_style=prompt_style)


class ConsensusQueries(StoreBase):
    """Outputs, consensus rows, passing counts at a threshold, and the min-pairwise histogram."""

    # -- outputs ----------------------------------------------------------------------------------------
    def candidates_missing_output(self, model_id: str, prompt_style: str, limit: int = 64,
                                  after_seq: int = 0) -> list[dict]:
        """OK candidates that have no output yet from (model, style), after ``after_seq`` in seq order: the
        ensembling resume point (a cursor: each batch continues where the last one ended)."""
        return self._rows(
            # "+x.status": walk candidates in seq order and stop at the limit (the status index would read and
            # sort every candidate for each batch)
            "SELECT x.id, x.seq, x.input, x.task_type, i.text AS instruction FROM candidates x"
            " JOIN instructions i ON i.id = x.instruction_id WHERE +x.status = 'ok' AND x.seq > :after"
            " AND NOT EXISTS (SELECT 1 FROM outputs o WHERE o.candidate_id = x.id"
            " AND o.model_id = :m AND o.prompt_style = :s) ORDER BY x.seq LIMIT :n",
            {"m": model_id, "s": prompt_style, "n": limit, "after": after_seq})

    def add_outputs(self, rows: Sequence[dict]) -> int:
        """Store ensemble outputs; one per (candidate, model, prompt style) — re-adding is a no-op."""
        prepared = []
        for r in rows:
            r = dict(r)
            r["id"] = output_id(r["candidate_id"], r["model_id"], r["prompt_style"])
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

    def output_texts_for(self, candidate_ids: Sequence[str]) -> dict[str, list[tuple[str, str, str]]]:
        """{candidate id: [(output id, model id, text), …] in stored order} for many candidates at once (one
        query per 500): what consensus reads, without building an Output per row."""
        out: dict[str, list[tuple[str, str, str]]] = {cid: [] for cid in candidate_ids}
        for marks, chunk in _in_lists(list(candidate_ids)):
            for cid, oid, model, text in self.db.execute(
                    f"SELECT candidate_id, id, model_id, text FROM outputs WHERE candidate_id IN ({marks})"
                    " ORDER BY candidate_id, position, model_id", chunk):
                out[cid].append((oid, model, text))
        return out

    def candidates_needing_consensus(self, min_outputs: int = 2, limit: int = 1000,
                                     after_seq: int = 0) -> list[dict]:
        """Instances with ≥ ``min_outputs`` outputs whose consensus is missing or older than an output, after
        ``after_seq`` in seq order (a cursor: each batch continues where the last one ended)."""
        return self._rows(
            "SELECT x.id, x.seq FROM candidates x WHERE +x.status = 'ok' AND x.seq > :after"  # seq order, no sort
            " AND (SELECT COUNT(*) FROM outputs o WHERE o.candidate_id = x.id) >= :k"
            " AND NOT EXISTS (SELECT 1 FROM consensus c WHERE c.candidate_id = x.id"
            "   AND c.k = (SELECT COUNT(*) FROM outputs o WHERE o.candidate_id = x.id))"
            " ORDER BY x.seq LIMIT :n", {"k": min_outputs, "n": limit, "after": after_seq})

    def count_needing_consensus(self, at_most: int, min_outputs: int = 2) -> int:
        """How many candidates need consensus (as :meth:`candidates_needing_consensus`), counting at most
        ``at_most`` (it stops there)."""
        return len(self.candidates_needing_consensus(min_outputs, limit=at_most))

    def count_candidates_with_outputs_below(self, k: int = 2) -> int:
        """OK candidates with fewer than ``k`` outputs (consensus needs 2: o0 and one more)."""
        return self._one("SELECT COUNT(*) FROM candidates x WHERE x.status = 'ok'"
                         " AND (SELECT COUNT(*) FROM outputs o WHERE o.candidate_id = x.id) < :k", {"k": k})

    # -- consensus --------------------------------------------------------------------------------------
    def save_consensus(self, rows: Sequence[dict]) -> None:
        """Store consensus rows (one per candidate; a new row replaces the candidate's old one)."""
        self.save_consensus_values(consensus_values(rows))

    def save_consensus_values(self, values: Sequence[tuple]) -> None:
        """Store consensus rows already encoded by :func:`consensus_values` (a worker process may encode them)."""
        values = sorted(values)  # by candidate id: the indexes fill page by page
        with self.atomic():
            self.db.conn.executemany(f"INSERT OR REPLACE INTO consensus ({', '.join(_CONSENSUS_COLUMNS)})"
                                     f" VALUES ({', '.join('?' * len(_CONSENSUS_COLUMNS))})", values)

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
