"""Scores: per-candidate and per-output scores, the teacher sample and its stats (curate.teachers), and the
stored quality scorers (curate.quality)."""

from __future__ import annotations

from typing import Any, Sequence

from .base import StoreBase, _in_lists, _json, now
from .sql import CHOSEN_OUTPUT_ID


class ScoreQueries(StoreBase):
    """Scores, the teacher sample and teacher stats, and quality scorers."""

    # -- scores -----------------------------------------------------------------------------------------
    def set_scores(self, rows: Sequence[dict]) -> None:
        """Upsert (subject_id, scorer, name) → value rows."""
        prepared = [{**r, "detail": None if r.get("detail") is None else _json(r["detail"]),
                     "created_at": r.get("created_at", now())} for r in rows]
        with self.atomic():
            self.db["scores"].insert_all(prepared, replace=True)

    def scores_for(self, subject_id: str) -> list[dict]:
        return self._rows("SELECT * FROM scores WHERE subject_id = :id ORDER BY scorer, name",
                          {"id": subject_id})

    # -- teachers / quality scores -------------------------------------------------------------------------
    # Per-OUTPUT scores (curate.quality's rewards, judge scores and proxies; curate.teachers' student NLLs)
    # are `scores` rows whose subject_id is the output id (outputs.id), with scorer = the scorer's name
    # ("rm:…", "judge:…", "proxy:consensus", "nll:<student>") and name "reward" / "unscored" (value 0, the
    # reason in detail) / "nll" (mean per-token NLL) / "tokens". Candidate-level scores keep the candidate id;
    # the two never collide (content hashes of different parts).
    # The teacher sample of size N: the N OK candidates with outputs whose ids come first (ids are content
    # hashes, so this is a deterministic, effectively random sample, and a larger N contains a smaller one).
    _SAMPLE_SQL = ("SELECT x.id, x.task_type FROM candidates x WHERE x.status = 'ok'"
                   " AND EXISTS (SELECT 1 FROM outputs o WHERE o.candidate_id = x.id) ORDER BY x.id LIMIT :limit")

    def count_outputs(self) -> int:
        return self._one("SELECT COUNT(*) FROM outputs")

    def sample_outputs(self, limit: int | None = None, *, missing: str | None = None,
                       missing_names: Sequence[str] = ("reward",), batch: int = -1) -> list[dict]:
        """Outputs of the teacher sample of ``limit`` candidates (None: all), each with its candidate's
        instruction, input and task type, in (candidate id, position) order. With ``missing`` (a scorer
        name): only outputs without a score row of that scorer named one of ``missing_names``. ``batch``
        caps the rows returned (-1: no cap)."""
        p: dict[str, Any] = {"limit": -1 if limit is None else limit, "batch": batch}
        where = ""
        if missing:
            names = {f"n{i}": n for i, n in enumerate(missing_names)}
            p.update(names, scorer=missing)
            where = (" WHERE NOT EXISTS (SELECT 1 FROM scores c WHERE c.subject_id = o.id AND c.scorer = :scorer"
                     f" AND c.name IN ({', '.join(':' + k for k in names)}))")
        return self._rows(
            f"WITH sample AS ({self._SAMPLE_SQL}) SELECT o.id, o.candidate_id, o.position, o.model_id,"
            " o.prompt_style, o.text, s.task_type, i.text AS instruction, x.input"
            " FROM sample s JOIN outputs o ON o.candidate_id = s.id JOIN candidates x ON x.id = s.id"
            f" JOIN instructions i ON i.id = x.instruction_id{where}"
            " ORDER BY o.candidate_id, o.position, o.model_id LIMIT :batch", p)

    def output_agreement(self, output_ids: Sequence[str]) -> dict[str, float]:
        """{output id: its consensus agreement} (``consensus.scores[i]``, the mean Rouge-L of output i to
        the other outputs of its candidate) for the given outputs that have a consensus row."""
        out: dict[str, float] = {}
        for marks, chunk in _in_lists(list(output_ids)):
            out.update({r["id"]: r["agreement"] for r in self._rows(
                "SELECT o.id, json_extract(c.scores, '$[' || j.key || ']') AS agreement FROM outputs o"
                " JOIN consensus c ON c.candidate_id = o.candidate_id JOIN json_each(c.output_ids) j"
                f" ON j.value = o.id WHERE o.id IN ({marks})", chunk)
                if r["agreement"] is not None})
        return out

    def teacher_stats(self, reward_scorer: str, nll_scorer: str, limit: int | None = None) -> list[dict]:
        """Per (teacher model, task type) over the outputs of the teacher sample of ``limit`` candidates
        (None: all) that have both a reward by ``reward_scorer`` and an NLL by ``nll_scorer``: n, reward_sum,
        nll_sum (Σ per-token NLL), tokens, and ``unscored`` (outputs the reward scorer could not score)."""
        p = {"limit": -1 if limit is None else limit, "rs": reward_scorer, "ls": nll_scorer}
        rows = self._rows(
            f"WITH sample AS ({self._SAMPLE_SQL}) SELECT o.model_id AS model, s.task_type, COUNT(*) AS n,"
            " SUM(r.value) AS reward_sum, SUM(l.value * t.value) AS nll_sum, SUM(t.value) AS tokens, 0 AS unscored"
            " FROM sample s JOIN outputs o ON o.candidate_id = s.id"
            " JOIN scores r ON r.subject_id = o.id AND r.scorer = :rs AND r.name = 'reward'"
            " JOIN scores l ON l.subject_id = o.id AND l.scorer = :ls AND l.name = 'nll'"
            " JOIN scores t ON t.subject_id = o.id AND t.scorer = :ls AND t.name = 'tokens'"
            " GROUP BY o.model_id, s.task_type ORDER BY model, s.task_type", p)
        by_key = {(r["model"], r["task_type"]): r for r in rows}
        for r in self._rows(
                f"WITH sample AS ({self._SAMPLE_SQL}) SELECT o.model_id AS model, s.task_type, COUNT(*) AS n"
                " FROM sample s JOIN outputs o ON o.candidate_id = s.id JOIN scores r ON r.subject_id = o.id"
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
        """{candidate id: the ``scorer``/``name`` score of the output consensus chose} (a candidate-level
        quality from per-output scores, e.g. for QDIT's q(a))."""
        return {r["candidate_id"]: r["value"] for r in self._rows(
            f"SELECT c.candidate_id, s.value FROM consensus c JOIN scores s ON s.subject_id = {CHOSEN_OUTPUT_ID}"
            " AND s.scorer = :s AND s.name = :n WHERE c.chosen_index IS NOT NULL", {"s": scorer, "n": name})}
