"""Reviewing candidates: the queue, one candidate's detail, accept / edit / reject / undo, thresholds and the
bulk "accept all that pass" — plain functions over a :class:`~curate.store.Store`, shared by the app and the
CLI.

Every write goes through :meth:`Store.review`, so each action is one row in the append-only review log (who,
when, before, after) and takes the candidate's ``version`` for optimistic locking: a write based on a stale
version raises :class:`~curate.errors.ConflictError` and changes nothing. Thresholds are queries over stored
consensus rows (no recomputation).

Undo restores the state before the candidate's latest action, through ordinary review actions marked
``undo of review #N`` in the log (the log itself is never rewritten).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .consensus import EXACT_REASONS, normalise, passes
from .errors import ConflictError, StoreError
from .store import Candidate, Output, ReviewEntry, Store

__all__ = ["QueueFilter", "PAGE_SIZE", "queue_page", "generator_choices", "candidate", "explain_consensus", "accept", "edit",
           "reject", "undo", "next_candidate", "threshold_summary", "threshold_view", "accept_all_passing", "overview",
           "reject_duplicates", "quality_summary",
           "STATUS_OF_ACTION"]

PAGE_SIZE = 50
HISTOGRAM_BINS = 100  # 0.01 wide: the τ slider's step, so τ always falls on a bin edge
STATUS_OF_ACTION = {"accept": "accepted", "edit": "edited", "reject": "rejected", "reset": "pending"}
_UNDO = re.compile(r"^undo of review #(\d+)(?:: (.*))?$", re.S)

Status = Literal["pending", "accepted", "edited", "rejected", "auto-filtered"]
Sort = Literal["seq", "-seq", "min_pairwise", "-min_pairwise", "reviewed"]


class QueueFilter(BaseModel):
    """What the review queue shows. ``None`` / "" means "any"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status | None = "pending"
    task_type: Literal["A", "B"] | None = None
    model: str | None = Field(None, description="the generator: a model, or an imported source (its candidates' "
                                                "generator is the source name, curate.importer)")
    consensus: Literal["pass", "fail", "none"] | None = Field(
        None, description="pass / fail: consensus kept / not kept at tau; none: not ensembled yet")
    tau: float = Field(0.01, ge=0.0, le=1.0)
    search: str = ""
    sort: Sort = "seq"
    quality_scorer: str | None = Field(None, description="a quality scorer with stored scores (curate.quality)")
    quality_min: float | None = Field(None, description="with quality_scorer: the chosen output scores at least "
                                                        "this")

    @property
    def quality_on(self) -> bool:
        return bool(self.quality_scorer) and self.quality_min is not None

    def store_filters(self) -> dict[str, Any]:
        return {"status": self.status, "task_type": self.task_type, "model": self.model or None,
                "consensus": self.consensus, "tau": self.tau, "search": self.search,
                "quality_scorer": self.quality_scorer if self.quality_on else None,
                "quality_min": self.quality_min if self.quality_on else None}


# -- the queue -----------------------------------------------------------------------------------------------
def queue_page(store: Store, f: QueueFilter, page: int = 1, page_size: int = PAGE_SIZE,
               total: int | None = None) -> dict:
    """One page of the queue: {rows, total, page, pages, page_size}; ``page`` is clamped to 1..pages.
    ``total``: the filter's count when the caller already knows it."""
    if total is None:
        total = store.count_queue(**f.store_filters())
    pages = max(1, math.ceil(total / page_size))
    page = min(max(1, int(page or 1)), pages)
    rows = store.review_queue(sort=f.sort, limit=page_size, offset=(page - 1) * page_size, **f.store_filters())
    return {"rows": rows, "total": total, "page": page, "pages": pages, "page_size": page_size}


def generator_choices(store: Store) -> list[tuple[str, str]]:
    """(label, value) of every generator the queue can be filtered by (``QueueFilter.model``): the models that
    generated candidates, and the imported sources, labelled "(imported)"."""
    imported = set(store.source_names())
    return [(f"{m} (imported)" if m in imported else m, m) for m in store.generator_models()]


def next_candidate(store: Store, f: QueueFilter, after_seq: int | None = None) -> str | None:
    """The next *pending* candidate after ``after_seq`` under the filter's other conditions (wrapping round);
    None when none is left."""
    return store.next_in_queue(after_seq, **{**f.store_filters(), "status": "pending"})


# -- one candidate -------------------------------------------------------------------------------------------
def candidate(store: Store, candidate_id: str, tau: float = 0.01) -> dict:
    """Everything the review pane shows about one candidate. Raises StoreError for an unknown id.

    ``outputs`` is in the consensus matrix order (o0 = the generator's), each with model, prompt style, text,
    agreement (mean Rouge-L to the others) and whether consensus chose it; ``consensus`` holds the pairwise
    matrix, the reason, whether it passes at ``tau`` and a one-paragraph explanation; ``final`` the reviewed
    texts (None while pending or rejected: the original texts are never changed).
    """
    x = store.get_candidate(candidate_id)
    cons = store.get_consensus(candidate_id)
    outs = _ordered_outputs(store, candidate_id, cons)
    outputs = [{"index": i, "model": o.model_id, "style": o.prompt_style, "text": o.text,
                "agreement": cons["scores"][i] if cons and i < len(cons["scores"]) else None,
                "chosen": bool(cons) and cons["chosen_index"] == i} for i, o in enumerate(outs)]
    log = store.review_log(candidate_id)
    final = x.reviewed.as_dict() if x.reviewed else None
    reject_reason = None
    if x.review_status == "rejected" and log:
        reject_reason = _plain_reason(log[-1].reason)
    consensus_view = None
    if cons:
        passes = _passes(cons, tau)
        consensus_view = {"k": cons["k"], "models": cons["models"], "pairwise": cons["pairwise"],
                          "reason": cons["reason"], "chosen_index": cons["chosen_index"],
                          "min_pairwise": cons["min_pairwise"], "passes": passes, "tau": tau,
                          "explanation": explain_consensus(cons, [o.text for o in outs], tau)}
    return {"id": x.id, "seq": x.seq, "version": x.version, "status": x.status, "reason": x.reason,
            "review_status": x.review_status if x.status == "ok" else "auto-filtered",
            "task_type": x.task_type, "generator_model": x.generator_model,
            "instruction": x.instruction, "input": x.input, "output": x.output, "final": final,
            "reject_reason": reject_reason, "reviewed_by": x.reviewed_by, "reviewed_at": x.reviewed_at,
            "outputs": outputs, "consensus": consensus_view, "source": _source(store, candidate_id),
            "log": [{"id": r.id, "reviewer": r.reviewer, "at": r.at, "action": r.action, "version": r.version,
                     "reason": r.reason} for r in log]}


def _source(store: Store, candidate_id: str) -> dict | None:
    p = store.provenance_for(candidate_id)
    return None if p is None else {k: p[k] for k in ("source", "license", "location", "row", "line", "system")}


def _ordered_outputs(store: Store, candidate_id: str, cons: dict | None) -> list[Output]:
    """The candidate's outputs in the consensus matrix order (stored order when not ensembled yet)."""
    outs = store.outputs_for(candidate_id)
    if not cons:
        return outs
    by_id = {o.id: o for o in outs}
    return [by_id[i] for i in cons["output_ids"] if i in by_id] + [
        o for o in outs if o.id not in set(cons["output_ids"])]


def _passes(cons: dict, tau: float) -> bool:
    """:func:`curate.consensus.passes` over a stored consensus row."""
    return passes(cons["reason"], cons["min_pairwise"], bool(cons["chosen_nonempty"]), tau)


def explain_consensus(cons: dict, texts: list[str], tau: float) -> str:
    """Which output consensus chose and why, in words (docs/ARCHITECTURE.md, "Output ensembling and
    consensus")."""
    c, models = cons["chosen_index"], cons["models"]
    if c is None:
        return f"No output chosen ({cons['reason']})."
    who = f"o{c} ({models[c]}{', the generator' if c == 0 else ''})"
    verdict = "passes" if _passes(cons, tau) else "is filtered"
    if cons["reason"] in EXACT_REASONS:
        norm = [normalise(t) for t in texts]
        twins = [f"o{j}" for j in range(len(norm)) if j != c and c < len(norm) and norm[j] == norm[c]]
        rule = ("the generator's output equals another output" if cons["reason"] == "exact_o0"
                else "two ensemble outputs are equal and the generator's matches none")
        return (f"Chose {who}: {rule} after normalising (lower case, no punctuation, single spaces)"
                f"{' — same as ' + ', '.join(twins) if twins else ''}. Exact matches pass at any threshold.")
    row = cons["pairwise"][c] if c < len(cons["pairwise"]) else []
    total = sum(v for j, v in enumerate(row) if j != c)
    if cons["reason"] == "empty" or not cons["chosen_nonempty"]:
        return f"Chose {who}, but its normalised text is empty, so the candidate never passes."
    op = ">" if cons["min_pairwise"] > tau else "≤"
    return (f"Chose {who}: the largest sum of Rouge-L F1 to the other outputs ({total:.3f}; ties go to the "
            f"lowest index). The smallest pairwise Rouge-L is {cons['min_pairwise']:.3f} {op} τ = {tau:g}, "
            f"so the candidate {verdict} at this threshold.")


# -- review actions ------------------------------------------------------------------------------------------
def accept(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
           output_index: int | None = None) -> Candidate:
    """Accept the consensus choice, or output ``output_index`` (matrix order). Returns the updated row.

    Raises ConflictError when ``version`` is stale, StoreError for an unknown id or output index.
    """
    text = None
    if output_index is not None:
        outs = _ordered_outputs(store, candidate_id, store.get_consensus(candidate_id))
        if not 0 <= output_index < len(outs):
            raise StoreError(f"candidate {candidate_id[:10]} has outputs o0..o{len(outs) - 1}; "
                             f"there is no o{output_index}")
        text = outs[output_index].text
    return store.review(candidate_id, "accept", reviewer=reviewer, expected_version=version, output=text)


def edit(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
         instruction: str | None = None, input: str | None = None, output: str | None = None) -> Candidate:
    """Save edited texts as the candidate's reviewed version (the original stays). Fields left None keep
    their current value. Raises ConflictError / StoreError (empty instruction or output)."""
    return store.review(candidate_id, "edit", reviewer=reviewer, expected_version=version,
                        instruction=instruction, input=input, output=output)


def reject(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
           reason: str | None = None) -> Candidate:
    """Reject the candidate, with an optional reason. Raises ConflictError / StoreError."""
    return store.review(candidate_id, "reject", reviewer=reviewer, expected_version=version,
                        reason=(reason or "").strip() or None)


def _plain_reason(reason: str | None) -> str | None:
    m = _UNDO.match(reason or "")
    return (m.group(2) if m else reason) or None


def _undo_target(log: list[ReviewEntry]) -> ReviewEntry | None:
    """The latest log entry that is not part of an undo and has not been undone."""
    undone: set[int] = set()
    for entry in reversed(log):
        m = _UNDO.match(entry.reason or "")
        if m:
            undone.add(int(m.group(1)))
        elif entry.id not in undone:
            return entry
    return None


def undo(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None) -> Candidate:
    """Undo the latest (not yet undone) review action on a candidate: restore the status and texts it had
    before, through review actions logged as ``undo of review #N``. Repeating goes further back.

    Only the reviewer who made that action can undo it. Raises ConflictError (stale ``version``, or the
    latest action is someone else's) and StoreError (nothing to undo).
    """
    log = store.review_log(candidate_id, limit=100_000)
    target = _undo_target(log)
    if target is None:
        raise StoreError(f"nothing to undo on candidate {candidate_id[:10]}: it has no review left to undo")
    if target.reviewer != reviewer:
        raise ConflictError(f"the latest review of candidate {candidate_id[:10]} is {target.reviewer}'s "
                            f"({target.action}); you can only undo your own actions")
    earlier = [e for e in log if e.id < target.id]
    status = STATUS_OF_ACTION[earlier[-1].action] if earlier else "pending"
    texts = earlier[-1].after if earlier else None
    why = f"undo of review #{target.id}"
    with store.atomic():
        cur = store.get_candidate(candidate_id)
        if version is not None and cur.version != version:
            raise ConflictError(f"candidate {candidate_id[:10]} changed since you last saw it (version "
                                f"{cur.version}, you had {version}); reload it before undoing")
        v = cur.version

        def act(action: str, **kw: Any) -> Candidate:
            nonlocal v
            row = store.review(candidate_id, action, reviewer=reviewer, expected_version=v, reason=why, **kw)
            v = row.version
            return row

        if status == "pending":
            return act("reset")
        if status == "rejected":
            old = _plain_reason(earlier[-1].reason)
            return store.review(candidate_id, "reject", reviewer=reviewer, expected_version=v,
                                reason=why + (f": {old}" if old else ""))
        if status == "edited":
            return act("edit", **texts)
        # accepted: Store.review's accept keeps the current instruction/input, so make those right first
        if (cur.current.instruction, cur.current.input) != (texts["instruction"], texts["input"]):
            cur = act("reset")
            if (cur.instruction, cur.input) != (texts["instruction"], texts["input"]):
                act("edit", **texts)
        return act("accept", output=texts["output"])


# -- thresholds ----------------------------------------------------------------------------------------------
def threshold_summary(store: Store, tau: float, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts at threshold ``tau`` and the histogram of min pairwise Rouge-L (rows of the Rouge branch), each
    bin marked as passing or not; from stored scores only."""
    counts = store.count_passing(tau)
    hist = store.min_pairwise_histogram(bins)
    for b in hist:
        b["side"] = "passes τ" if b["lo"] >= tau - 1e-9 else "below τ"
    return {"tau": tau, "scored": counts["scored"], "passing": counts["passing"],
            "pending_passing": store.count_pending_passing(tau, counts["passing"]), "histogram": hist}


def quality_summary(store: Store, scorer: str | None, quality_min: float | None,
                    bins: int = HISTOGRAM_BINS) -> dict:
    """The quality threshold: how many candidates' chosen outputs score at least ``quality_min`` from
    ``scorer`` (of those it scored), and the histogram of those scores with each bin marked; from stored
    scores only. ``{"scorer": None}`` when no scorer is picked."""
    if not scorer:
        return {"scorer": None, "scored": 0, "passing": 0, "min": None, "max": None, "histogram": []}
    values = sorted(store.chosen_output_scores(scorer).values())
    if not values:
        return {"scorer": scorer, "scored": 0, "passing": 0, "min": None, "max": None, "histogram": []}
    lo, hi = values[0], values[-1]
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    q = lo if quality_min is None else float(quality_min)
    hist = [{"lo": lo + i * width, "hi": lo + (i + 1) * width, "n": n,
             "side": "passes" if lo + i * width >= q - 1e-12 else "below"} for i, n in enumerate(counts)]
    return {"scorer": scorer, "scored": len(values), "passing": sum(v >= q for v in values), "min": lo,
            "max": hi, "quality_min": q, "histogram": hist}


def threshold_view(store: Store, f: QueueFilter, page: int = 1, page_size: int = PAGE_SIZE) -> dict:
    """What moving τ updates: :func:`threshold_summary` at ``f.tau`` plus the queue page under ``f`` (the
    queue's count is shared with the summary when the filter is "pending and passing")."""
    s = threshold_summary(store, f.tau)
    plain = not (f.task_type or f.model or f.search or f.quality_on)
    total = s["pending_passing"] if plain and f.status == "pending" and f.consensus == "pass" else None
    return {**s, "queue": queue_page(store, f, page, page_size, total)}


def accept_all_passing(store: Store, tau: float, *, reviewer: str, expected: int | None = None,
                       quality_scorer: str | None = None, quality_min: float | None = None) -> dict:
    """Accept (the consensus choice of) every pending candidate that passes at ``tau``, in one transaction.

    ``expected``: the count the reviewer confirmed; when the pending-passing count differs now, raises
    ConflictError and accepts nothing. Returns {accepted, skipped} (skipped is 0: the transaction holds the
    write lock, so nobody reviews one of them meanwhile). Set-based in the store; same result as
    :func:`accept_all_passing_reference`, the one-review-at-a-time twin."""
    n = store.accept_pending_passing(tau, reviewer=reviewer, expected=expected, quality_scorer=quality_scorer,
                                     quality_min=quality_min,
                                     reason=_accept_all_reason(tau, quality_scorer, quality_min))
    return {"accepted": n, "skipped": 0}


def _accept_all_reason(tau: float, quality_scorer: str | None, quality_min: float | None) -> str:
    """The review-log reason of a bulk accept (the quality part only when that filter is on)."""
    quality = f", {quality_scorer} >= {quality_min:g}" if quality_scorer and quality_min is not None else ""
    return f"accept all passing at tau={tau:g}{quality}"


def accept_all_passing_reference(store: Store, tau: float, *, reviewer: str, expected: int | None = None,
                                 quality_scorer: str | None = None, quality_min: float | None = None) -> dict:
    """The plain twin of :func:`accept_all_passing`: one :meth:`Store.review` per candidate."""
    done = skipped = 0
    with store.atomic():
        todo = store.pending_passing(tau, quality_scorer, quality_min)
        if expected is not None and expected != len(todo):
            raise ConflictError(f"{len(todo)} pending candidates pass at τ = {tau:g} now, not the {expected} "
                                "you confirmed; check the count and confirm again")
        for row in todo:
            try:
                store.review(row["id"], "accept", reviewer=reviewer, expected_version=row["version"],
                             reason=_accept_all_reason(tau, quality_scorer, quality_min))
                done += 1
            except ConflictError:
                skipped += 1
    return {"accepted": done, "skipped": skipped}


def reject_duplicates(store: Store, groups: list[dict], *, reviewer: str) -> dict:
    """Reject, in one transaction, every member of each near-duplicate group (as
    :func:`curate.select.find_duplicates` returns them) except the one it keeps, when still pending; each
    with the reason "near-duplicate of #seq". Reviewed members are left alone. Returns {rejected, skipped}."""
    done = skipped = 0
    with store.atomic():
        for g in groups:
            keep = next((m for m in g["members"] if m["keep"]), None)
            if keep is None:
                continue
            for m in g["members"]:
                if m["keep"]:
                    continue
                cur = store.get_candidate(m["id"])
                if cur.review_status != "pending":
                    skipped += 1
                    continue
                store.review(m["id"], "reject", reviewer=reviewer, expected_version=cur.version,
                             reason=f"near-duplicate of #{keep['seq']}")
                done += 1
    return {"rejected": done, "skipped": skipped}


# -- overview -----------------------------------------------------------------------------------------------
def overview(store: Store, tau: float) -> dict:
    """Counts per stage and filter reason, per-model contribution and keep rates, reviewer progress."""
    st = store.stats()
    passing = store.count_passing(tau)
    instr = st["instructions"]
    inst = st["candidates"]
    reviews = st["reviews"]
    stages = [
        ("seed tasks", sum(st["seeds"].values())),
        ("raw completions", sum(r["completions"] for r in st["completions"])),
        ("instructions kept", instr.get("kept", 0)),
        ("instructions filtered", sum(n for r, n in instr.items() if r != "kept")),
        ("candidates", inst.get("ok", 0)),
        ("candidates auto-filtered", sum(n for r, n in inst.items() if r != "ok")),
        ("ensembled (consensus computed)", passing["scored"]),
        (f"passing consensus at τ={tau:g}", passing["passing"]),
        ("accepted", reviews.get("accepted", 0)),
        ("edited", reviews.get("edited", 0)),
        ("rejected", reviews.get("rejected", 0)),
        ("pending review", reviews.get("pending", 0)),
    ]
    reasons = ([{"stage": "instruction", "reason": r, "n": n} for r, n in instr.items() if r != "kept"]
               + [{"stage": "candidate", "reason": r, "n": n} for r, n in inst.items() if r != "ok"]
               + [{"stage": "completion", "reason": r, "n": n} for r, n in st["unparseable"].items()]
               + ([{"stage": "consensus", "reason": f"below τ={tau:g}", "n": passing["scored"] - passing["passing"]}]
                  if passing["scored"] else []))
    models = store.model_contribution(tau)
    for m in models:
        made = m["instructions_kept"] + m["instructions_filtered"]
        m["instruction_keep_rate"] = round(m["instructions_kept"] / made, 3) if made else None
        m["pass_rate"] = round(m["passing"] / m["candidates_ok"], 3) if m["candidates_ok"] else None
        m["chosen_rate"] = round(m["chosen"] / passing["scored"], 3) if passing["scored"] else None
    return {"tau": tau, "stages": [{"stage": s, "n": n} for s, n in stages], "reasons": reasons,
            "models": models, "reviewers": store.reviewer_progress(), "reviews": reviews}
