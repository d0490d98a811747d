"""Reports: the overview (`curate stats`), the reads behind export (curate.export), and per-model and
per-reviewer summaries for the app. None of them writes."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import StoreError
from .base import StoreBase
from .sql import CHOSEN_OUTPUT_ID, PASSING_SQL

#: The reason of an instruction made past the target in the last batch (curate.generate): set aside, stored,
#: not filtered, so it counts apart from the filter reasons.
SURPLUS = "surplus"


class ReportQueries(StoreBase):
    """Stats, export reads, model contribution and reviewer progress."""

    # -- overview ---------------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counts per stage and reason: what `curate stats` prints and the app's overview shows."""
        return {
            "seeds": self.count_seeds(),
            "completions": self.completion_stats(),
            "instructions": self.filter_reason_counts("instructions"),
            "instructions_kept_by_type": {
                t: self.count_kept_instructions(t) for t in ("A", "B")},
            "candidates": self.filter_reason_counts("candidates"),
            "unparseable": {k: v for k, v in self.filter_reason_counts("completions").items()
                            if not k.endswith(":ok")},
            "outputs_by_model": {r["model_id"]: r["n"] for r in self._rows(
                "SELECT model_id, COUNT(*) AS n FROM outputs GROUP BY model_id ORDER BY model_id")},
            "consensus": self.consensus_reason_counts(),
            "reviews": self.review_counts(),
            "imported": self.import_stats(),
        }

    # -- export (read-only) -----------------------------------------------------------------------------
    # The reads behind curate.export. None of them writes.
    EXPORT_INCLUDES = ("accepted", "passing", "selection")

    def export_rows(self, include: Sequence[str] = ("accepted",), *, tau: float = 0.01,
                    selection: str | None = None, limit: int | None = None) -> list[dict]:
        """The candidates an export takes, in ``seq`` order: OK candidates not rejected by a reviewer, not
        disputed and not half-way through team review (some votes, not decided yet), that are accepted or edited
        ("accepted"), pass consensus at ``tau`` ("passing"), or belong to the stored
        selection ``selection`` (None: the newest) ("selection") — any of the ``include`` sources.

        Each row: id, seq, task_type, instruction, input, output (the reviewed texts when there are any;
        else the instruction, the candidate's input and the consensus choice, else the generator's output),
        generator_model, instruction_model, review_status, reviewed_by, reviewed_at, review_action (the
        latest in the log), consensus_reason, min_pairwise, chosen_index, ensemble_models (JSON list, None
        without consensus), passes (1/0 at ``tau``, None without consensus), in_accepted, in_selection, source and
        source_row (where an imported candidate came from; None for generated ones).

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
        passes = f"CASE WHEN c.candidate_id IS NULL THEN NULL WHEN {PASSING_SQL} THEN 1 ELSE 0 END"
        accepted = "x.review_status IN ('accepted', 'edited')"
        cond = {"accepted": accepted, "passing": f"({passes}) = 1", "selection": f"({sel}) = 1"}
        sql = (
            "SELECT x.id, x.seq, x.task_type, COALESCE(x.final_instruction, i.text) AS instruction,"
            " COALESCE(x.final_input, x.input) AS input, COALESCE(x.final_output, o.text, x.output) AS output,"
            " x.generator_model, i.generator_model AS instruction_model, x.review_status, x.reviewed_by,"
            " x.reviewed_at, (SELECT r.action FROM reviews r WHERE r.candidate_id = x.id"
            " ORDER BY r.id DESC LIMIT 1) AS review_action, c.reason AS consensus_reason, c.min_pairwise,"
            f" c.chosen_index, c.models AS ensemble_models, {passes} AS passes, {accepted} AS in_accepted,"
            f" {sel} AS in_selection, ir.source, ir.row AS source_row"
            " FROM candidates x JOIN instructions i ON i.id = x.instruction_id"
            " LEFT JOIN consensus c ON c.candidate_id = x.id LEFT JOIN import_rows ir ON ir.candidate_id = x.id"
            f" LEFT JOIN outputs o ON o.id = {CHOSEN_OUTPUT_ID}"
            " WHERE x.status = 'ok' AND x.review_status NOT IN ('rejected', 'disputed')"
            # team review: a candidate some reviewers voted on is exported once decided, never half-way
            " AND NOT (x.review_status = 'pending'"
            " AND EXISTS (SELECT 1 FROM review_votes v WHERE v.candidate_id = x.id))"
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
        return "EXISTS (SELECT 1 FROM selections s WHERE s.name = :sel AND s.candidate_id = x.id)"

    # The training pools of an experiment's arms (curate.experiment): id, seq, instruction, input, output in seq
    # order. "all": every OK candidate with its generator's output (uncurated); "ensembled": every candidate with
    # a consensus row, with the output consensus chose (no threshold, no review); "passing": those of them passing
    # at :tau; "teacher": the candidates the model :teacher wrote an output for, with that output.
    TRAINING_POOLS = {
        "all": ("SELECT x.id, x.seq, i.text AS instruction, x.input, x.output FROM candidates x"
                " JOIN instructions i ON i.id = x.instruction_id WHERE x.status = 'ok' ORDER BY x.seq"),
        "ensembled": ("SELECT x.id, x.seq, i.text AS instruction, x.input, COALESCE(o.text, x.output) AS output"
                      " FROM candidates x JOIN instructions i ON i.id = x.instruction_id"
                      f" JOIN consensus c ON c.candidate_id = x.id LEFT JOIN outputs o ON o.id = {CHOSEN_OUTPUT_ID}"
                      " WHERE x.status = 'ok' ORDER BY x.seq"),
        "passing": ("SELECT x.id, x.seq, i.text AS instruction, x.input, COALESCE(o.text, x.output) AS output"
                    " FROM candidates x JOIN instructions i ON i.id = x.instruction_id"
                    f" JOIN consensus c ON c.candidate_id = x.id LEFT JOIN outputs o ON o.id = {CHOSEN_OUTPUT_ID}"
                    f" WHERE x.status = 'ok' AND ({PASSING_SQL}) ORDER BY x.seq"),
        "teacher": ("SELECT x.id, x.seq, i.text AS instruction, x.input, o.text AS output FROM outputs o"
                    " JOIN candidates x ON x.id = o.candidate_id JOIN instructions i ON i.id = x.instruction_id"
                    " WHERE x.status = 'ok' AND o.model_id = :teacher ORDER BY x.seq, o.prompt_style"),
    }

    def training_pool(self, pool: str, *, tau: float = 0.01, teacher: str | None = None) -> list[dict]:
        """The rows of one of :attr:`TRAINING_POOLS`. Raises StoreError for an unknown pool."""
        if pool not in self.TRAINING_POOLS:
            raise StoreError(f"unknown training pool {pool!r}; one of {', '.join(self.TRAINING_POOLS)}")
        rows = self._rows(self.TRAINING_POOLS[pool], {"tau": tau, "teacher": teacher})
        seen: set[str] = set()  # a teacher with two prompt styles: its first output per candidate
        return [r for r in rows if not (r["id"] in seen or seen.add(r["id"]))]

    def seed_sources(self) -> list[dict]:
        """(source, task_type, n): the stored seed tasks per seed file and type."""
        return self._rows("SELECT source, task_type, COUNT(*) AS n FROM seeds GROUP BY source, task_type"
                          " ORDER BY source, task_type")

    def consensus_thresholds(self) -> list[dict]:
        """(threshold, n): the tau each stored consensus row was computed with (informational)."""
        return self._rows("SELECT threshold, COUNT(*) AS n FROM consensus GROUP BY threshold ORDER BY threshold")

    # -- contribution and progress (app overview) ----------------------------------------------------
    def model_contribution(self, tau: float) -> list[dict]:
        """Per model: kept / filtered / surplus instructions it generated (surplus: made past the target in the
        last batch and set aside, not filtered), OK / rejected candidates, candidates passing consensus at
        ``tau``, accepted+edited / rejected reviews, ensemble outputs and how often consensus chose its output."""
        rows: dict[str, dict] = {}

        def row(m: str) -> dict:
            return rows.setdefault(m, {"model": m, "instructions_kept": 0, "instructions_filtered": 0,
                                       "instructions_surplus": 0, "candidates_ok": 0, "candidates_rejected": 0,
                                       "passing": 0, "accepted": 0, "rejected": 0, "outputs": 0, "chosen": 0})
        for r in self._rows("SELECT generator_model AS m, SUM(status = 'kept') AS k,"
                            f" SUM(status != 'kept' AND COALESCE(reason, '') != '{SURPLUS}') AS f,"
                            f" SUM(status != 'kept' AND reason = '{SURPLUS}') AS s FROM instructions GROUP BY m"):
            row(r["m"]).update(instructions_kept=r["k"], instructions_filtered=r["f"], instructions_surplus=r["s"])
        for r in self._rows(
                "SELECT x.generator_model AS m, SUM(x.status = 'ok') AS ok, SUM(x.status != 'ok') AS bad,"
                " SUM(x.status = 'ok' AND x.review_status IN ('accepted', 'edited')) AS acc,"
                " SUM(x.status = 'ok' AND x.review_status = 'rejected') AS rej,"
                f" SUM(CASE WHEN c.candidate_id IS NOT NULL AND ({PASSING_SQL}) THEN 1 ELSE 0 END) AS pass"
                " FROM candidates x LEFT JOIN consensus c ON c.candidate_id = x.id GROUP BY m", {"tau": tau}):
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

    def reviewed_per_reviewer(self) -> dict[str, int]:
        """Per reviewer: the candidates on which they hold a vote or the decision now."""
        return {r["reviewer"]: r["n"] for r in self._rows(
            "SELECT reviewer, COUNT(*) AS n FROM (SELECT candidate_id, reviewer FROM review_votes"
            " UNION SELECT candidate_id, reviewer FROM review_decisions) GROUP BY reviewer")}

    def review_overlap(self) -> dict:
        """What the export card says about team review: the reviews per candidate the log was written with,
        how many candidates were decided by agreeing votes, by a decision (single review, adjudication, bulk),
        and how many are still disputed."""
        quorums = [r["q"] for r in self._rows("SELECT DISTINCT quorum AS q FROM reviews ORDER BY q")]
        decided_by_votes = self._one(
            "SELECT COUNT(*) FROM candidates x WHERE x.review_status IN ('accepted', 'edited', 'rejected')"
            " AND NOT EXISTS (SELECT 1 FROM review_decisions d WHERE d.candidate_id = x.id)")
        adjudicated = self._one(
            "SELECT COUNT(*) FROM review_decisions d WHERE EXISTS"
            " (SELECT 1 FROM review_votes v WHERE v.candidate_id = d.candidate_id)")
        return {"quorums": quorums, "decided_by_votes": decided_by_votes, "adjudicated": adjudicated,
                "decisions": self._one("SELECT COUNT(*) FROM review_decisions"),
                "disputed": self._one("SELECT COUNT(*) FROM candidates WHERE review_status = 'disputed'")}

    def reviewer_progress(self) -> list[dict]:
        """Per reviewer: actions in the review log by kind, candidates touched, first and last time."""
        return self._rows(
            "SELECT reviewer, COUNT(*) AS actions, COUNT(DISTINCT candidate_id) AS candidates,"
            " SUM(action = 'accept') AS accept, SUM(action = 'edit') AS edit, SUM(action = 'reject') AS reject,"
            " SUM(action = 'reset') AS reset, MIN(at) AS first_at, MAX(at) AS last_at"
            " FROM reviews GROUP BY reviewer ORDER BY actions DESC, reviewer")
