"""Review: review actions and their append-only log, the app's review queue (filters, sorts, pages,
counts) and "accept all that pass" (curate.review wraps them)."""

from __future__ import annotations

from typing import Any

from ..decision import ACTION_OF_STATUS, SCOPES, Review, decide, slot_before, undo_target
from ..errors import ConflictError, StoreError
from .base import StoreBase, _json, _quality_clause, now
from .rows import Candidate, ReviewEntry
from .sql import CHOSEN_OUTPUT_ID, PASSING_SQL, PENDING_PASSING_SQL, QUALITY_MAX_SQL, QUALITY_SQL

REVIEW_ACTIONS = ("accept", "edit", "reject", "reset")
REVIEW_STATUSES = ("pending", "accepted", "edited", "rejected", "disputed")


def _check_writer(reviewer: str, scope: str, quorum: int) -> None:
    if not reviewer or not reviewer.strip():
        raise StoreError("a review needs a reviewer name")
    if scope not in SCOPES:
        raise StoreError(f"unknown review scope {scope!r}; one of {', '.join(SCOPES)}")
    if not isinstance(quorum, int) or quorum < 1:
        raise StoreError(f"reviews per candidate must be a whole number of at least 1, not {quorum!r}")


class ReviewQueries(StoreBase):
    """Review actions, the review log and counts, the review queue and accept-all."""

    # -- reviews ----------------------------------------------------------------------------------------
    def review(self, candidate_id: str, action: str, *, reviewer: str, expected_version: int | None = None,
               instruction: str | None = None, input: str | None = None, output: str | None = None,
               reason: str | None = None, scope: str = "decision", quorum: int = 1) -> Candidate:
        """Apply one review action to one slot and append it to the log, atomically, under the write lock.

        ``scope``: ``decision`` (the candidate's decision: the single review with quorum 1, an adjudication, a
        bulk action) or ``vote`` (``reviewer``'s own vote, with ``quorum`` = reviews per candidate ≥ 2); the
        candidate then shows :func:`curate.decision.decide` over its decision and votes.
        ``accept`` takes ``output`` (default: the slot's reviewed texts when it has any — an edit stays —, else
        the consensus choice, else the generator's output); ``edit`` takes any of instruction/input/output
        (fields left None keep the slot's current value); ``reject`` takes an optional ``reason``; ``reset``
        empties the slot. With ``expected_version`` set, raises :class:`ConflictError` when a later action
        touched what this one is based on (any action, for a decision; the same reviewer's vote or a decision,
        for a vote); nothing is written. Returns the updated candidate.
        """
        if action not in REVIEW_ACTIONS:
            raise StoreError(f"unknown review action {action!r}; one of {', '.join(REVIEW_ACTIONS)}")
        _check_writer(reviewer, scope, quorum)
        with self.atomic():
            cur = self.get_candidate(candidate_id)
            if expected_version is not None:
                self._check_version(cur, expected_version, scope, reviewer)
            slot = self._slot(candidate_id, scope, reviewer)
            base = slot.texts if slot is not None else None
            if action == "accept":
                if output is not None:
                    texts = {**(base or cur.original.as_dict()), "output": output}
                else:
                    texts = base or {**cur.original.as_dict(), "output": self._default_output(cur)}
                value = Review(reviewer, "accepted", texts, reason)
            elif action == "edit":
                now_texts = base or cur.original.as_dict()
                texts = {"instruction": now_texts["instruction"] if instruction is None else instruction,
                         "input": now_texts["input"] if input is None else input,
                         "output": now_texts["output"] if output is None else output}
                if not texts["instruction"].strip() or not texts["output"].strip():
                    raise StoreError("an edit needs a non-empty instruction and output")
                value = Review(reviewer, "edited", texts, reason)
            elif action == "reject":
                value = Review(reviewer, "rejected", None, reason)
            else:
                value = None
            return self._write(cur, action, slot, value, scope=scope, reviewer=reviewer, quorum=quorum,
                               reason=reason)

    def undo_review(self, candidate_id: str, *, reviewer: str, expected_version: int | None = None,
                    quorum: int = 1) -> Candidate:
        """Undo ``reviewer``'s latest action on the candidate that is not undone yet (see
        :func:`curate.decision.undo_target`): one log row whose ``undoes`` names it puts that slot back to the
        value it had before. Repeating goes further back. Raises StoreError (nothing to undo) or ConflictError
        (the latest decision is someone else's; ``expected_version`` stale)."""
        with self.atomic():
            cur = self.get_candidate(candidate_id)
            log = self.review_log(candidate_id, limit=None)
            target = undo_target(log, reviewer, candidate_id)
            _check_writer(reviewer, target.scope, quorum)
            if expected_version is not None:
                self._check_version(cur, expected_version, target.scope, reviewer, undoing=True)
            slot = self._slot(candidate_id, target.scope, reviewer)
            value = slot_before(log, target)
            action = ACTION_OF_STATUS[value.status if value else None]
            return self._write(cur, action, slot, value, scope=target.scope, reviewer=reviewer, quorum=quorum,
                               reason=value.reason if value else None, undoes=target.id, restore=True)

    def _write(self, cur: Candidate, action: str, slot: Review | None, value: Review | None, *, scope: str,
               reviewer: str, quorum: int, reason: str | None, undoes: int | None = None,
               restore: bool = False) -> Candidate:
        """Inside the write transaction: the log row, the slot, and what the candidate now shows."""
        t = now()
        version = cur.version + 1
        original = cur.original.as_dict()
        before = (slot.texts if slot is not None else None) or original
        after = (value.texts if value is not None else None) or original
        rid = self.db.execute(
            "INSERT INTO reviews (candidate_id, reviewer, at, action, version, before, after, reason, undoes, scope,"
            " quorum) VALUES (:c, :r, :t, :a, :v, :b, :af, :why, :u, :s, :q)",
            {"c": cur.id, "r": reviewer, "t": t, "a": action, "v": version, "b": _json(before), "af": _json(after),
             "why": reason, "u": undoes, "s": scope, "q": quorum}).lastrowid
        if value is not None and not restore:
            value = Review(reviewer, value.status, value.texts, reason, rid, t)
        table = "review_decisions" if scope == "decision" else "review_votes"
        if value is None:
            self.db.execute(f"DELETE FROM {table} WHERE candidate_id = :c"
                            + (" AND reviewer = :r" if scope == "vote" else ""), {"c": cur.id, "r": reviewer})
        else:
            texts = value.texts or {}
            self.db.execute(
                f"INSERT OR REPLACE INTO {table} (candidate_id, reviewer, status, instruction, input, output, reason,"
                " review_id, at) VALUES (:c, :r, :st, :i, :x, :o, :why, :rid, :t)",
                {"c": cur.id, "r": value.reviewer, "st": value.status, "i": texts.get("instruction"),
                 "x": texts.get("input"), "o": texts.get("output"), "why": value.reason, "rid": value.review_id,
                 "t": value.at})
        # reviewing a candidate ends this reviewer's skip of it (m008: review_skips)
        self.db.execute("DELETE FROM review_skips WHERE candidate_id = :c AND reviewer = :r",
                        {"c": cur.id, "r": reviewer})
        decision = value if scope == "decision" else self._slot(cur.id, "decision", reviewer)
        status, final = decide(decision, self.votes_of(cur.id), quorum)
        final = final or {}
        self.db.execute(
            "UPDATE candidates SET review_status = :st, version = :v, final_instruction = :fi,"
            " final_input = :fx, final_output = :fo, reviewed_by = :who, reviewed_at = :t WHERE id = :id",
            {"st": status, "v": version, "fi": final.get("instruction"), "fx": final.get("input"),
             "fo": final.get("output"), "who": reviewer, "t": t, "id": cur.id})
        return self.get_candidate(cur.id)

    def _check_version(self, cur: Candidate, expected: int, scope: str, reviewer: str,
                       undoing: bool = False) -> None:
        """Raise ConflictError when a log row after version ``expected`` touched what this write is based on."""
        if cur.version == expected:
            return
        later = self._rows(
            "SELECT reviewer, action FROM reviews WHERE candidate_id = :c AND version > :v"
            + ("" if scope == "decision" else " AND (scope = 'decision' OR reviewer = :r)")
            + " ORDER BY id DESC LIMIT 1", {"c": cur.id, "v": expected, "r": reviewer})
        if not later and expected < cur.version:
            return  # only other reviewers' votes came since: they do not touch this reviewer's vote
        who = f" by {later[0]['reviewer']} ({later[0]['action']})" if later else ""
        if undoing:
            raise ConflictError(f"candidate {cur.id[:10]} changed since you last saw it{who} (version "
                                f"{cur.version}, you had {expected}); reload it before undoing")
        raise ConflictError(
            f"candidate {cur.id[:10]} changed since you opened it{who}: it is at version "
            f"{cur.version}, you had {expected}. Reload it and review again.")

    def _slot(self, candidate_id: str, scope: str, reviewer: str) -> Review | None:
        if scope == "decision":
            rows = self._rows("SELECT * FROM review_decisions WHERE candidate_id = :c", {"c": candidate_id})
        else:
            rows = self._rows("SELECT * FROM review_votes WHERE candidate_id = :c AND reviewer = :r",
                              {"c": candidate_id, "r": reviewer})
        return Review.from_row(rows[0]) if rows else None

    def decision_of(self, candidate_id: str) -> Review | None:
        """The candidate's decision (None: none; its votes decide)."""
        return self._slot(candidate_id, "decision", "")

    def votes_of(self, candidate_id: str) -> list[Review]:
        """Every reviewer's current vote on the candidate, oldest first."""
        return [Review.from_row(r) for r in self._rows(
            "SELECT * FROM review_votes WHERE candidate_id = :c ORDER BY review_id", {"c": candidate_id})]

    def all_votes(self) -> list[dict]:
        """(candidate_id, reviewer, status) of every current vote (what agreement is computed over)."""
        return self._rows("SELECT candidate_id, reviewer, status FROM review_votes ORDER BY candidate_id, reviewer")

    def _default_output(self, cur: Candidate) -> str:
        c = self.get_consensus(cur.id)
        if c and c["chosen_index"] is not None:
            text = self._one("SELECT text FROM outputs WHERE id = :id", {"id": c["output_ids"][c["chosen_index"]]})
            if text is not None:
                return text
        return cur.output

    def review_log(self, candidate_id: str | None = None, limit: int | None = 1000) -> list[ReviewEntry]:
        """The review log (of one candidate, or all), oldest first (``limit`` None: all of it)."""
        sql = "SELECT * FROM reviews"
        if candidate_id:
            sql += " WHERE candidate_id = :id"
        return [ReviewEntry.from_row(r) for r in self._rows(sql + " ORDER BY id LIMIT :n",
                                                             {"id": candidate_id, "n": -1 if limit is None else limit})]

    def review_counts(self) -> dict[str, int]:
        return {r["review_status"]: r["n"] for r in self._rows(
            "SELECT review_status, COUNT(*) AS n FROM candidates WHERE status = 'ok' GROUP BY review_status")}

    # -- review queue (app) ---------------------------------------------------------------------------
    # The queries behind the app's review queue and threshold panel (curate.review wraps them; the overview's
    # are in curate.store.reports).
    QUEUE_STATUSES = ("pending", "accepted", "edited", "rejected", "disputed", "auto-filtered", "skipped")
    QUEUE_CONSENSUS = ("pass", "fail", "none")
    QUEUE_SOURCES = ("instruction_prompt", "instance_completion")  # instructions.origin
    _QUALITY = ("(SELECT s.value FROM scores s WHERE s.subject_id = " + CHOSEN_OUTPUT_ID
                + " AND s.scorer = :qs AND s.name = 'reward')")
    _AGREEMENT = "json_extract(c.scores, '$[' || c.chosen_index || ']')"
    QUEUE_SORTS = {
        "seq": "x.seq", "-seq": "x.seq DESC",
        "min_pairwise": "c.min_pairwise IS NULL, c.min_pairwise, x.seq",
        "-min_pairwise": "c.min_pairwise IS NULL, c.min_pairwise DESC, x.seq",
        "agreement": f"{_AGREEMENT} IS NULL, {_AGREEMENT}, x.seq",
        "-agreement": f"{_AGREEMENT} IS NULL, {_AGREEMENT} DESC, x.seq",
        "quality": f"{_QUALITY} IS NULL, {_QUALITY}, x.seq",
        "-quality": f"{_QUALITY} IS NULL, {_QUALITY} DESC, x.seq",
        "reviewed": "x.reviewed_at IS NULL, x.reviewed_at DESC, x.seq",
    }
    #: filters that only _queue_where's general query handles (the counts' fast path knows none of them)
    _EXTRA_FILTERS = ("task_type", "model", "search", "quality_scorer", "source", "reviewer", "needs_review_by",
                      "rouge_min", "rouge_max", "hide_skipped")

    def _queue_where(self, *, status: str | None = None, task_type: str | None = None,
                     model: str | None = None, consensus: str | None = None, tau: float = 0.01,
                     search: str | None = None, quality_scorer: str | None = None,
                     quality_min: float | None = None, quality_max: float | None = None,
                     source: str | None = None, reviewer: str | None = None, needs_review_by: str | None = None,
                     rouge_min: float | None = None, rouge_max: float | None = None,
                     hide_skipped: bool | None = None, skipped_by: str | None = None) -> tuple[str, dict]:
        """WHERE clause (over ``x`` candidates, ``i`` instructions, ``c`` consensus) of the review queue.

        ``status``: a review status, or "auto-filtered" (candidates the generation filters rejected);
        ``consensus``: "pass" / "fail" at ``tau`` or "none" (not ensembled yet). Raises StoreError on others.
        ``quality_scorer`` + ``quality_min`` / ``quality_max``: the chosen output's score from that scorer is in
        that range. ``source``: the instruction's origin (:data:`QUEUE_SOURCES`). ``reviewer``: candidates that
        reviewer acted on (the log). ``needs_review_by``: not voted on by that reviewer (the team queue).
        ``rouge_min`` / ``rouge_max``: the minimum pairwise Rouge-L is in that range (ensembled ones only).
        ``hide_skipped``: leave out the candidates ``skipped_by`` set aside (anyone's skips when None);
        ``status`` "skipped": the pending candidates ``skipped_by`` (anyone, when None) set aside.
        """
        where, p = [], {"tau": tau}
        if _quality_clause(quality_scorer, quality_min, p):
            where.append(QUALITY_SQL)
        if quality_scorer and quality_max is not None:
            where.append(QUALITY_MAX_SQL); p.update(qs=quality_scorer, qmax=float(quality_max))
        if source:
            if source not in self.QUEUE_SOURCES:
                raise StoreError(f"unknown source {source!r}; one of {', '.join(self.QUEUE_SOURCES)}")
            where.append("i.origin = :source"); p["source"] = source
        if reviewer:
            where.append("+x.id IN (SELECT r.candidate_id FROM reviews r WHERE r.reviewer = :rv)"); p["rv"] = reviewer
        if needs_review_by:
            where.append("NOT EXISTS (SELECT 1 FROM review_votes v WHERE v.candidate_id = x.id AND v.reviewer = :me)")
            p["me"] = needs_review_by
        if rouge_min is not None:
            where.append("c.min_pairwise >= :rmin"); p["rmin"] = float(rouge_min)
        if rouge_max is not None:
            where.append("c.min_pairwise <= :rmax"); p["rmax"] = float(rouge_max)
        skip = ("EXISTS (SELECT 1 FROM review_skips s WHERE s.candidate_id = x.id"
                + (" AND s.reviewer = :skipper)" if skipped_by else ")"))
        if skipped_by:
            p["skipper"] = skipped_by
        if hide_skipped and status != "skipped":
            where.append("NOT " + skip)
        if status == "auto-filtered":
            where.append("x.status = 'rejected'")
        elif status == "skipped":
            where.append("x.status = 'ok' AND x.review_status = 'pending' AND " + skip)
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
            where.append(f"+x.id IN (SELECT c.candidate_id FROM consensus c WHERE {PASSING_SQL})")
        elif consensus == "fail":
            where.append(f"+x.id IN (SELECT c.candidate_id FROM consensus c WHERE NOT ({PASSING_SQL}))")
        elif consensus == "none":
            where.append("c.candidate_id IS NULL")
        elif consensus:
            raise StoreError(f"unknown consensus filter {consensus!r}; one of {', '.join(self.QUEUE_CONSENSUS)}")
        if search and search.strip():
            p["q"] = "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(i.text LIKE :q ESCAPE '\\' OR x.input LIKE :q ESCAPE '\\'"
                         " OR x.output LIKE :q ESCAPE '\\' OR x.final_output LIKE :q ESCAPE '\\'"
                         " OR x.final_instruction LIKE :q ESCAPE '\\')")
        return " AND ".join(where) or "1=1", p

    _QUEUE_FROM = (" FROM candidates x JOIN instructions i ON i.id = x.instruction_id"
                   " LEFT JOIN consensus c ON c.candidate_id = x.id")

    def review_queue(self, *, sort: str = "seq", limit: int = 50, offset: int = 0, snippet: int = 160,
                     **filters: Any) -> list[dict]:
        """One page of candidates (filters as in :meth:`_queue_where`), texts cut to ``snippet`` chars.

        Each row: id, seq, task_type, generator_model, status, reason, review_status, version, reviewed_by,
        instruction, input, output (the reviewed text when there is one), k, min_pairwise, consensus
        reason, passes (1/0 at ``tau``; NULL without consensus).
        """
        if sort not in self.QUEUE_SORTS:
            raise StoreError(f"unknown queue sort {sort!r}; one of {', '.join(self.QUEUE_SORTS)}")
        if "quality" in sort and not filters.get("quality_scorer"):
            raise StoreError("sorting by quality needs a quality scorer: pick one (scores from `curate score`)")
        where, p = self._queue_where(**self._without_idle_skips(filters))
        if "quality" in sort:
            p["qs"] = filters["quality_scorer"]
        p.update(n=limit, o=offset, s=snippet)
        return self._rows(
            "SELECT x.id, x.seq, x.task_type, x.generator_model, x.status, x.reason, x.review_status,"
            " x.version, x.reviewed_by, substr(COALESCE(x.final_instruction, i.text), 1, :s) AS instruction,"
            " substr(COALESCE(x.final_input, x.input), 1, :s) AS input,"
            " substr(COALESCE(x.final_output, x.output), 1, :s) AS output, c.k, c.min_pairwise,"
            " c.reason AS consensus_reason,"
            f" CASE WHEN c.candidate_id IS NULL THEN NULL WHEN {PASSING_SQL} THEN 1 ELSE 0 END AS passes"
            f"{self._QUEUE_FROM} WHERE {where} ORDER BY {self.QUEUE_SORTS[sort]} LIMIT :n OFFSET :o", p)

    def _without_idle_skips(self, filters: dict) -> dict:
        """``hide_skipped`` dropped while nobody has skipped anything (the counts keep their fast path)."""
        if filters.get("hide_skipped") and self._one("SELECT 1 FROM review_skips LIMIT 1") is None:
            return {**filters, "hide_skipped": None}
        return filters

    def count_queue(self, **filters: Any) -> int:
        """How many candidates match the queue filters (see :meth:`_queue_where`)."""
        filters = self._without_idle_skips(filters)
        status, consensus = filters.get("status"), filters.get("consensus")
        if (consensus in ("pass", "fail") and status in REVIEW_STATUSES
                and not any(filters.get(k) is not None and filters.get(k) != "" for k in self._EXTRA_FILTERS)):
            return self._count_status_consensus(status, consensus == "pass", filters.get("tau", 0.01))
        where, p = self._queue_where(**filters)
        joins = ""
        if "q" in p or "source" in p:  # text search and the source read the instruction
            joins += " JOIN instructions i ON i.id = x.instruction_id"
        if filters.get("consensus") == "none" or "rmin" in p or "rmax" in p:
            joins += " LEFT JOIN consensus c ON c.candidate_id = x.id"
        return self._one(f"SELECT COUNT(*) FROM candidates x{joins} WHERE {where}", p)

    def next_in_queue(self, after_seq: int | None = None, **filters: Any) -> str | None:
        """Id of the first candidate matching the filters after ``after_seq`` in queue order (``seq``),
        wrapping round to the start; None when nothing matches."""
        where, p = self._queue_where(**self._without_idle_skips(filters))
        sql = f"SELECT x.id{self._QUEUE_FROM} WHERE {where} AND x.seq > :after ORDER BY x.seq LIMIT 1"
        found = self._one(sql, {**p, "after": after_seq if after_seq is not None else -1})
        if found is None and after_seq is not None:
            found = self._one(sql, {**p, "after": -1})
        return found

    def prev_in_queue(self, before_seq: int, **filters: Any) -> str | None:
        """Id of the last candidate matching the filters before ``before_seq`` in queue order (``seq``),
        wrapping round to the end; None when nothing else matches."""
        where, p = self._queue_where(**filters)
        sql = f"SELECT x.id{self._QUEUE_FROM} WHERE {where} AND x.seq < :before ORDER BY x.seq DESC LIMIT 1"
        found = self._one(sql, {**p, "before": before_seq})
        if found is None:
            found = self._one(f"SELECT x.id{self._QUEUE_FROM} WHERE {where} AND x.seq > :before"
                              " ORDER BY x.seq DESC LIMIT 1", {**p, "before": before_seq})
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
            "SELECT review_status, COUNT(*) AS n FROM candidates WHERE status = 'ok' GROUP BY review_status")}
        others = [st for st in sizes if st != status]
        join = ("SELECT COUNT(*) FROM candidates x JOIN consensus c ON c.candidate_id = x.id"
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
            "SELECT x.id, x.version FROM candidates x JOIN consensus c ON c.candidate_id = x.id"
            f" WHERE {PENDING_PASSING_SQL}{q} ORDER BY x.seq", p)

    def accept_pending_passing(self, tau: float, *, reviewer: str, reason: str | None = None,
                               expected: int | None = None, quality_scorer: str | None = None,
                               quality_min: float | None = None, quorum: int = 1) -> int:
        """Accept, set-based and in one write transaction, every pending OK candidate passing at ``tau``:
        each takes its consensus choice (else its generator output) as its decision, its version is bumped and
        one ``accept`` row per candidate goes to the review log — the same rows :meth:`review` writes one at a
        time (scope ``decision``).

        ``expected``: the count the reviewer confirmed; when it differs, raises :class:`ConflictError` and
        writes nothing. ``quality_scorer`` + ``quality_min`` narrow it as in :meth:`pending_passing`.
        Returns how many were accepted."""
        _check_writer(reviewer, "decision", quorum)
        with self.atomic():  # the write lock first: no review lands between the read and the update
            p = {"tau": tau}
            q = _quality_clause(quality_scorer, quality_min, p)
            rows = self.db.execute(
                "SELECT x.id, x.version, i.text, x.input, x.output,"
                f" COALESCE((SELECT o.text FROM outputs o WHERE o.id = {CHOSEN_OUTPUT_ID}), x.output)"
                " FROM candidates x JOIN instructions i ON i.id = x.instruction_id"
                f" JOIN consensus c ON c.candidate_id = x.id WHERE {PENDING_PASSING_SQL}{q} ORDER BY x.seq",
                p).fetchall()
            if expected is not None and expected != len(rows):
                raise ConflictError(f"{len(rows)} pending candidates pass at τ = {tau:g} now, not the {expected} "
                                    "you confirmed; check the count and confirm again")
            t = now()
            last = self._one("SELECT COALESCE(MAX(id), 0) FROM reviews")
            self.db.conn.executemany(
                "UPDATE candidates SET review_status = 'accepted', version = version + 1, final_instruction = ?,"
                " final_input = ?, final_output = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ?",
                [(text, inp, chosen, reviewer, t, iid) for iid, _v, text, inp, _o, chosen in rows])
            self.db.conn.executemany(
                "INSERT INTO reviews (candidate_id, reviewer, at, action, version, before, after, reason, scope,"
                " quorum) VALUES (?, ?, ?, 'accept', ?, ?, ?, ?, 'decision', ?)",
                [(iid, reviewer, t, v + 1, _json({"instruction": text, "input": inp, "output": out}),
                  _json({"instruction": text, "input": inp, "output": chosen}), reason, quorum)
                 for iid, v, text, inp, out, chosen in rows])
            self.db.execute(  # each one's decision is the row just logged (we hold the lock: ids after `last`)
                "INSERT OR REPLACE INTO review_decisions (candidate_id, reviewer, status, instruction, input, output,"
                " reason, review_id, at) SELECT r.candidate_id, r.reviewer, 'accepted',"
                " json_extract(r.after, '$.instruction'), json_extract(r.after, '$.input'),"
                " json_extract(r.after, '$.output'), r.reason, r.id, r.at FROM reviews r WHERE r.id > :last",
                {"last": last})
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
            "SELECT DISTINCT generator_model AS m FROM candidates ORDER BY m")]
