"""The review rules: what a candidate's reviews decide, which entry an undo undoes, and the log replayed.

Pure functions over plain values (no store, no SQL): the store applies them inside its write transaction, and
:func:`replay` rebuilds every candidate's state from the review log alone — the plain twin the store's
incremental writes are held equal to (``tests/test_review_property.py``). See docs/ARCHITECTURE.md, "Review".

Each log row writes one **slot** of its candidate:

* the **decision** (``scope = "decision"``): the one review in single-review mode (``quorum`` 1), an admin's
  adjudication, or a bulk action (accept all, reject duplicates, the selected rows);
* a reviewer's **vote** (``scope = "vote"``): their own review when ``reviews_per_candidate`` (the row's
  ``quorum``) is 2 or more.

A slot holds a :class:`Review` (or nothing: reset). What the candidate *shows* — its ``review_status`` and
final texts — is :func:`decide` over its decision and its votes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import ConflictError, StoreError

SCOPES = ("decision", "vote")
VOTE_STATUSES = ("accepted", "edited", "rejected")
#: the action that puts a slot back in each state (what an undo row records)
ACTION_OF_STATUS = {"accepted": "accept", "edited": "edit", "rejected": "reject", None: "reset"}
TEXT_KEYS = ("instruction", "input", "output")


@dataclass(frozen=True)
class Review:
    """The value of one slot: who, accepted / edited / rejected, the texts (None when rejected), the reason,
    and the log row that wrote it."""

    reviewer: str
    status: str
    texts: dict | None
    reason: str | None = None
    review_id: int | None = None
    at: float = 0.0

    @property
    def label(self) -> str:
        """accept or reject: what agreement compares (an edit counts as accept)."""
        return label(self.status)

    @classmethod
    def from_row(cls, row: dict) -> "Review":
        texts = None if row["status"] == "rejected" else {k: row[k] or "" for k in TEXT_KEYS}
        return cls(row["reviewer"], row["status"], texts, row.get("reason"), row.get("review_id"),
                   row.get("at") or 0.0)


def label(status: str) -> str:
    return "reject" if status == "rejected" else "accept"


def decide(decision: Review | None, votes: Iterable[Review], quorum: int) -> tuple[str, dict | None]:
    """``(review_status, final texts)`` of a candidate.

    The decision wins when there is one. Otherwise the candidate is ``pending`` until it has ``quorum`` votes;
    with that many, it is decided when they all agree (accept vs reject; an edit counts as accept) and
    ``disputed`` (the disagreements queue, for an admin to adjudicate) when any disagrees. An accepted one takes
    the texts most of its votes accepted (ties: texts someone edited, so a reviewer's fix is not dropped for a
    plain accept; then the earliest vote's), and is ``edited`` when any of those votes is an edit."""
    if decision is not None:
        return decision.status, decision.texts
    votes = list(votes)
    if not votes or len(votes) < max(1, quorum):
        return "pending", None
    labels = {v.label for v in votes}
    if len(labels) > 1:
        return "disputed", None
    if labels == {"reject"}:
        return "rejected", None
    groups: dict[tuple, list[Review]] = {}
    for v in votes:
        groups.setdefault(tuple(v.texts[k] for k in TEXT_KEYS), []).append(v)
    best = min(groups.values(), key=lambda g: (-len(g), not any(v.status == "edited" for v in g),
                                               min((v.review_id or 0) for v in g)))
    return ("edited" if any(v.status == "edited" for v in best) else "accepted"), dict(best[0].texts)


# -- undo -----------------------------------------------------------------------------------------------------
def undo_target(entries: Sequence[Any], reviewer: str, candidate: str = "") -> Any:
    """The log entry an undo by ``reviewer`` undoes: the latest entry, not itself an undo and not undone, among
    the candidate's decisions and ``reviewer``'s own votes (others' votes are theirs to undo).

    Raises StoreError when there is none, ConflictError when that entry is someone else's decision."""
    undone = {e.undoes for e in entries if e.undoes is not None}
    for e in reversed(entries):
        if e.undoes is not None or e.id in undone:
            continue
        if e.scope == "vote" and e.reviewer != reviewer:
            continue
        if e.reviewer != reviewer:
            raise ConflictError(f"the latest review of candidate {candidate[:10]} is {e.reviewer}'s ({e.action}); "
                                "you can only undo your own actions")
        return e
    raise StoreError(f"nothing to undo on candidate {candidate[:10]}: it has no review of yours left to undo")


# -- replay ---------------------------------------------------------------------------------------------------
@dataclass
class State:
    """A candidate's review state as the log leaves it."""

    decision: Review | None = None
    votes: dict[str, Review] = field(default_factory=dict)
    quorum: int = 1
    version: int = 0
    reviewed_by: str | None = None
    reviewed_at: float | None = None

    @property
    def decided(self) -> tuple[str, dict | None]:
        return decide(self.decision, self.votes.values(), self.quorum)

    def slot(self, scope: str, reviewer: str) -> Review | None:
        return self.decision if scope == "decision" else self.votes.get(reviewer)

    def put(self, scope: str, reviewer: str, value: Review | None) -> None:
        if scope == "decision":
            self.decision = value
        elif value is None:
            self.votes.pop(reviewer, None)
        else:
            self.votes[reviewer] = value


def value_of(entry: Any) -> Review | None:
    """The slot value an (ordinary) entry writes: its action, texts and reason."""
    if entry.action == "reset":
        return None
    status = {"accept": "accepted", "edit": "edited", "reject": "rejected"}[entry.action]
    texts = None if status == "rejected" else {k: (entry.after or {}).get(k, "") for k in TEXT_KEYS}
    return Review(entry.reviewer, status, texts, entry.reason, entry.id, entry.at)


def replay(entries: Iterable[Any]) -> dict[str, State]:
    """Every candidate's state from its log entries (oldest first), derived from the structure alone: an
    ordinary entry writes its value into its slot; an undo entry (``undoes`` set) puts the slot of the entry
    it undoes back to the value that slot had just before that entry — whatever the undo row itself says."""
    states: dict[str, State] = {}
    before: dict[int, tuple[str, str, Review | None]] = {}
    for e in entries:
        st = states.setdefault(e.candidate_id, State())
        if e.undoes is not None:
            scope, who, value = before[e.undoes]
            st.put(scope, who, value)
        else:
            before[e.id] = (e.scope, e.reviewer, st.slot(e.scope, e.reviewer))
            st.put(e.scope, e.reviewer, value_of(e))
        st.quorum, st.version, st.reviewed_by, st.reviewed_at = e.quorum, e.version, e.reviewer, e.at
    return states


def slot_before(entries: Sequence[Any], target: Any) -> Review | None:
    """The value ``target``'s slot had just before ``target`` (what undoing it restores)."""
    earlier = [e for e in entries if e.id < target.id]
    st = replay(earlier).get(target.candidate_id, State())
    return st.slot(target.scope, target.reviewer)
