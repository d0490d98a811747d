"""Typed rows for the review path: the rows that travel furthest (store → review → app / API / CLI) are
dataclasses, made at the store's boundary with ``from_row``, instead of dicts indexed by string."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any


def _pick(cls: type, row: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in row.items() if k in names}


@dataclass(frozen=True)
class Texts:
    """An instruction, its input and its output: what a reviewer reads, edits and accepts."""

    instruction: str
    input: str
    output: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    """One candidate (a row of ``candidates`` with its instruction's text). ``instruction`` / ``input`` /
    ``output`` are the generated texts and never change; ``final_*`` hold the reviewed texts (None while
    pending or rejected); ``version`` is bumped by every review action (optimistic locking)."""

    id: str
    seq: int
    instruction_id: str
    instruction: str
    task_type: str
    input: str
    output: str
    generator_model: str
    status: str                       # ok | rejected (by the instance parser: "auto-filtered")
    reason: str | None
    review_status: str                # pending | accepted | edited | rejected
    version: int
    final_instruction: str | None = None
    final_input: str | None = None
    final_output: str | None = None
    reviewed_by: str | None = None
    reviewed_at: float | None = None
    completion_id: str | None = None
    position: int = 0
    params: str = "{}"
    prompt_hash: str = ""
    rng_seed: int | None = None
    job_id: str | None = None
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row: dict) -> "Candidate":
        return cls(**_pick(cls, row))

    @property
    def original(self) -> Texts:
        return Texts(self.instruction, self.input, self.output)

    @property
    def reviewed(self) -> Texts | None:
        """The reviewed texts, or None while there are none (pending, rejected)."""
        if self.final_output is None:
            return None
        return Texts(self.final_instruction or "", self.final_input or "", self.final_output)

    @property
    def current(self) -> Texts:
        """What the candidate says now: the reviewed texts where there are any, else the generated ones."""
        return self.reviewed or self.original

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Output:
    """One model's output for a candidate (position 0 = the generator's)."""

    id: str
    candidate_id: str
    position: int
    model_id: str
    prompt_style: str                 # generator | reference | chat
    text: str
    params: str = "{}"
    finish_reason: str | None = None
    completion_tokens: int | None = None
    job_id: str | None = None
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row: dict) -> "Output":
        return cls(**_pick(cls, row))


@dataclass(frozen=True)
class ReviewEntry:
    """One row of the append-only review log: who did what to which candidate, and the texts before and after.

    ``before`` / ``after`` are the texts the row's slot showed before and after it (its reviewed texts, else
    the generated ones), so each row of a slot starts where the previous one left. ``scope`` is the slot
    (``decision`` or the reviewer's ``vote``), ``undoes`` the id of the entry an undo undoes, ``quorum`` the
    reviews per candidate when it was written (docs/ARCHITECTURE.md, "Review")."""

    id: int
    candidate_id: str
    reviewer: str
    at: float
    action: str                       # accept | edit | reject | reset
    version: int                      # the candidate's version this action produced
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str | None = None
    undoes: int | None = None
    scope: str = "decision"           # decision | vote
    quorum: int = 1

    @classmethod
    def from_row(cls, row: dict) -> "ReviewEntry":
        r = _pick(cls, row)
        for key in ("before", "after"):
            if isinstance(r.get(key), str):
                r[key] = json.loads(r[key])
        return cls(**r)
