"""Selection (QDIT, curate.select): the pool a selection draws from and its quality column, the
embeddings cache, and named selections."""

from __future__ import annotations

import json
from typing import Sequence

from ..errors import StoreError
from .base import StoreBase, _in_lists, _json, now
from .sql import CHOSEN_OUTPUT_ID, PASSING_SQL


class SelectionQueries(StoreBase):
    """The selection pool, the embeddings cache and named selections."""

    # -- selection (QDIT) and near-duplicates -------------------------------------------------------------
    # The pool a selection draws from, its quality column, cached embeddings and named selections
    # (curate.select wraps them).
    SELECTION_SOURCES = {
        "accepted": "x.status = 'ok' AND x.review_status IN ('accepted', 'edited')",
        "passing": f"x.status = 'ok' AND c.candidate_id IS NOT NULL AND ({PASSING_SQL})",
        "all": "x.status = 'ok'",
    }
    SELECTION_QUALITY = {
        # PROXY: the consensus agreement of the chosen output (mean Rouge-L to the other outputs)
        "consensus": "CASE WHEN c.chosen_index IS NULL THEN NULL"
                     " ELSE json_extract(c.scores, '$[' || c.chosen_index || ']') END",
        "min_pairwise": "c.min_pairwise",  # PROXY: the least agreeing pair of outputs
        # a scores-table row: the candidate's own, else the one of the output consensus chose
        "score": "COALESCE((SELECT s.value FROM scores s WHERE s.subject_id = x.id AND s.scorer = :qs"
                 f" AND s.name = :qn), (SELECT s.value FROM scores s WHERE s.subject_id = {CHOSEN_OUTPUT_ID}"
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
            " FROM candidates x JOIN instructions i ON i.id = x.instruction_id"
            f" LEFT JOIN consensus c ON c.candidate_id = x.id WHERE {self.SELECTION_SOURCES[source]}"
            " ORDER BY x.seq", {"tau": tau, "qs": scorer, "qn": name})

    def quality_sources(self) -> list[str]:
        """The ``scorer:name`` pairs in the scores table (choices for a selection's quality)."""
        return [f"{r['scorer']}:{r['name']}" for r in self._rows(
            "SELECT DISTINCT scorer, name FROM scores ORDER BY scorer, name")]

    def embeddings_for(self, model: str, keys: Sequence[tuple[str, str]]) -> dict[str, tuple[int, bytes]]:
        """{candidate id: (dim, float32 bytes)} of the cached vectors of ``model`` for the given
        (candidate id, text hash) pairs; pairs with no vector (new, or edited since) are left out."""
        wanted = dict(keys)
        out: dict[str, tuple[int, bytes]] = {}
        for marks, chunk in _in_lists(list(wanted)):
            for r in self.db.execute(
                    "SELECT candidate_id, text_hash, dim, vector FROM embeddings WHERE model = :model"
                    f" AND candidate_id IN ({marks})", {**chunk, "model": model}):
                if wanted[r[0]] == r[1]:
                    out[r[0]] = (r[2], r[3])
        return out

    def save_embeddings(self, model: str, rows: Sequence[dict]) -> int:
        """Store vectors: rows of candidate_id, text_hash, dim, vector (float32 bytes). Returns the count."""
        t = now()
        with self.atomic():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO embeddings (candidate_id, model, text_hash, dim, vector, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(r["candidate_id"], model, r["text_hash"], r["dim"], r["vector"], t) for r in rows])
        return len(rows)

    def count_embeddings(self, model: str | None = None) -> int:
        if model is None:
            return self._one("SELECT COUNT(*) FROM embeddings")
        return self._one("SELECT COUNT(*) FROM embeddings WHERE model = :m", {"m": model})

    def save_selection(self, name: str, rows: Sequence[dict], params: dict) -> int:
        """Store the selection ``name`` (replacing one of that name): rows of candidate_id, rank, gain,
        quality, score. Returns the count. Raises StoreError for an empty name."""
        if not name or not name.strip():
            raise StoreError("a selection needs a name (--name)")
        t, p = now(), _json(params)
        with self.atomic():
            self.db.execute("DELETE FROM selections WHERE name = :n", {"n": name})
            self.db.conn.executemany(
                "INSERT INTO selections (name, candidate_id, rank, gain, quality, score, params, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(name, r["candidate_id"], r["rank"], r["gain"], r.get("quality"), r["score"], p, t) for r in rows])
        return len(rows)

    def get_selection(self, name: str) -> list[dict]:
        """The picks of selection ``name`` in rank order, with instruction and input (reviewed text first)
        and params decoded. Raises StoreError (listing the names) when there is none of that name."""
        rows = self._rows(
            "SELECT s.rank, s.candidate_id, s.gain, s.quality, s.score, s.params, s.created_at,"
            " COALESCE(x.final_instruction, i.text) AS instruction, COALESCE(x.final_input, x.input) AS input"
            " FROM selections s JOIN candidates x ON x.id = s.candidate_id"
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
        with self.atomic():
            return self.db.execute("DELETE FROM selections WHERE name = :n", {"n": name}).rowcount
