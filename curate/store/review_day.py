"""The reviewer's day: skips (a candidate set aside by one reviewer, still pending), comments on candidates and
the review guidelines an admin writes in the app (curate.review wraps them; m008_review_day)."""

from __future__ import annotations

from ..errors import StoreError
from .base import StoreBase, now

#: the longest comment / guidelines text stored (characters)
MAX_COMMENT = 5_000
MAX_GUIDELINES = 50_000


def _name(who: str, what: str) -> str:
    if not who or not who.strip():
        raise StoreError(f"{what} needs a reviewer name")
    return who.strip()


class ReviewDayQueries(StoreBase):
    """Skips, comments and guidelines."""

    # -- skips ----------------------------------------------------------------------------------------------
    def skip(self, candidate_id: str, *, reviewer: str) -> bool:
        """Set the candidate aside for ``reviewer``: it stays pending (no review is logged, nothing is decided)
        and leaves their pending queue until they review it or unskip it. Only a pending, OK candidate can be
        skipped (StoreError otherwise). Returns False when it was already skipped by them."""
        who = _name(reviewer, "a skip")
        with self.atomic():
            cur = self.get_candidate(candidate_id)
            if cur.status != "ok" or cur.review_status != "pending":
                shown = cur.review_status if cur.status == "ok" else "auto-filtered"
                raise StoreError(f"candidate {candidate_id[:10]} is {shown}, not pending: only a pending candidate "
                                 "can be skipped")
            n = self.db.execute("INSERT OR IGNORE INTO review_skips (candidate_id, reviewer, at) VALUES (:c, :r, :t)",
                                {"c": candidate_id, "r": who, "t": now()}).rowcount
        return n == 1

    def unskip(self, candidate_id: str, *, reviewer: str) -> bool:
        """Put the candidate back in ``reviewer``'s queue. Returns False when they had not skipped it."""
        who = _name(reviewer, "an unskip")
        with self.atomic():
            n = self.db.execute("DELETE FROM review_skips WHERE candidate_id = :c AND reviewer = :r",
                                {"c": candidate_id, "r": who}).rowcount
        return n == 1

    def _clear_skip(self, candidate_id: str, reviewer: str) -> None:
        """Inside a review's write transaction: reviewing a candidate ends the reviewer's skip of it."""
        self.db.execute("DELETE FROM review_skips WHERE candidate_id = :c AND reviewer = :r",
                        {"c": candidate_id, "r": reviewer})

    def skipped_by(self, candidate_id: str) -> list[str]:
        """Who set the candidate aside, in name order."""
        return [r["reviewer"] for r in self._rows(
            "SELECT reviewer FROM review_skips WHERE candidate_id = :c ORDER BY reviewer", {"c": candidate_id})]

    def skip_counts(self, reviewer: str | None = None) -> dict[str, int]:
        """``skipped``: pending OK candidates someone set aside; ``mine``: those ``reviewer`` set aside (0 without
        one). Counted apart from the review statuses: a skipped candidate is still pending."""
        p = {"r": reviewer}
        base = ("SELECT COUNT(DISTINCT s.candidate_id) FROM review_skips s JOIN candidates x ON x.id = s.candidate_id"
                " WHERE x.status = 'ok' AND x.review_status = 'pending'")
        return {"skipped": self._one(base, p), "mine": self._one(base + " AND s.reviewer = :r", p) if reviewer else 0}

    # -- comments -------------------------------------------------------------------------------------------
    def add_comment(self, candidate_id: str, *, author: str, text: str) -> int:
        """Append a comment (kept as written: it is shown as text, never as markup). Raises StoreError for an
        empty or over-long comment or an unknown candidate. Returns its id."""
        who = _name(author, "a comment")
        body = (text or "").strip()
        if not body:
            raise StoreError("the comment is empty: type it first")
        if len(body) > MAX_COMMENT:
            raise StoreError(f"the comment is {len(body):,} characters; at most {MAX_COMMENT:,} are kept: shorten it")
        with self.atomic():
            self.get_candidate(candidate_id)  # StoreError for an unknown id
            return self.db.execute("INSERT INTO review_comments (candidate_id, author, at, text) VALUES (:c, :a, :t, :x)",
                                   {"c": candidate_id, "a": who, "t": now(), "x": body}).lastrowid

    def comments(self, candidate_id: str) -> list[dict]:
        """The candidate's comments, oldest first: id, author, at, text."""
        return self._rows("SELECT id, author, at, text FROM review_comments WHERE candidate_id = :c ORDER BY id",
                          {"c": candidate_id})

    # -- guidelines -----------------------------------------------------------------------------------------
    def set_guidelines(self, text: str, *, author: str) -> int:
        """Store a new version of the review guidelines (Markdown). Raises StoreError when too long."""
        who = _name(author, "the guidelines")
        body = (text or "").strip()
        if len(body) > MAX_GUIDELINES:
            raise StoreError(f"the guidelines are {len(body):,} characters; at most {MAX_GUIDELINES:,}: shorten them")
        with self.atomic():
            return self.db.execute("INSERT INTO review_guidelines (text, author, at) VALUES (:x, :a, :t)",
                                   {"x": body, "a": who, "t": now()}).lastrowid

    def guidelines(self) -> dict | None:
        """The latest stored guidelines (id, text, author, at), or None when no admin saved any."""
        rows = self._rows("SELECT id, text, author, at FROM review_guidelines ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None
