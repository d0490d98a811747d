"""Reviewing candidates: the queue, one candidate's detail, accept / edit / reject / undo, thresholds and the
bulk "accept all that pass" — plain functions over a :class:`~curate.store.Store`, shared by the app and the
CLI.

Every write goes through :meth:`Store.review`, so each action is one row in the append-only review log (who,
when, before, after) and takes the candidate's ``version`` for optimistic locking: a write based on a stale
version raises :class:`~curate.errors.ConflictError` and changes nothing. Thresholds are queries over stored
consensus rows (no recomputation).

Undo restores the state before the candidate's latest action, through one log row whose ``undoes`` column names
the entry it undoes (the log itself is never rewritten). With ``reviews_per_candidate`` ≥ 2 each reviewer's
actions are votes; the rules that turn votes into a decision are :mod:`curate.decision` (docs/ARCHITECTURE.md,
"Review").
"""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import checks
from .consensus import EXACT_REASONS, normalise, passes
from .errors import ConflictError, StoreError
from .store import Candidate, Output, Store
from .store.reports import SURPLUS

__all__ = ["QueueFilter", "PAGE_SIZE", "queue_page", "generator_choices", "candidate", "explain_consensus", "accept", "edit",
           "reject", "reset", "undo", "adjudicate", "bulk_review", "form_token", "check_form", "next_candidate",
           "previous_candidate",
           "threshold_summary", "threshold_view", "accept_all_passing", "overview",
           "reject_duplicates", "quality_summary", "agreement_of", "team_progress", "disagreements",
           "STATUS_OF_ACTION", "skip", "unskip", "comment", "guidelines", "set_guidelines", "word_diff"]

PAGE_SIZE = 50
HISTOGRAM_BINS = 100  # 0.01 wide: the τ slider's step, so τ always falls on a bin edge
STATUS_OF_ACTION = {"accept": "accepted", "edit": "edited", "reject": "rejected", "reset": "pending"}

Status = Literal["pending", "accepted", "edited", "rejected", "disputed", "auto-filtered", "skipped"]
Sort = Literal["seq", "-seq", "min_pairwise", "-min_pairwise", "agreement", "-agreement", "quality", "-quality",
               "reviewed"]
Source = Literal["instruction_prompt", "instance_completion"]


class QueueFilter(BaseModel):
    """What the review queue shows. ``None`` / "" means "any"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status | None = "pending"
    task_type: Literal["A", "B"] | None = None
    model: str | None = Field(None, description="the generator: a model, or an imported source (its candidates' "
                                                "generator is the source name, curate.importer)")
    consensus: Literal["pass", "fail", "none"] | None = Field(
        None, description="pass / fail: consensus kept / not kept at tau; none: not ensembled yet")
    tau: float = 0.01
    search: str = ""
    sort: Sort = "seq"
    quality_scorer: str | None = Field(None, description="a quality scorer with stored scores (curate.quality)")
    quality_min: float | None = Field(None, description="with quality_scorer: the chosen output scores at least "
                                                        "this")
    quality_max: float | None = Field(None, description="with quality_scorer: the chosen output scores at most this")
    source: Source | None = Field(None, description="where the instruction came from: the instruction prompt, or an "
                                                    "extra instruction found in an instance completion")
    reviewer: str | None = Field(None, description="only candidates this reviewer acted on")
    rouge_min: float | None = Field(None, description="the minimum pairwise Rouge-L is at least this")
    rouge_max: float | None = Field(None, description="the minimum pairwise Rouge-L is at most this")
    needs_review_by: str | None = Field(None, description="team review: only candidates this reviewer has not "
                                                          "voted on (set by the app from the login)")
    hide_skipped: bool = Field(False, description="leave out the candidates skipped_by set aside (skip: not now, "
                                                  "still pending); anyone's skips when skipped_by is None")
    skipped_by: str | None = Field(None, description="whose skips hide_skipped and the status 'skipped' mean "
                                                     "(None: anyone's)")

    @field_validator("tau", mode="before")
    @classmethod
    def _tau(cls, v: Any) -> float:
        return checks.tau(v, "queue filter")

    @field_validator("rouge_min", "rouge_max", mode="before")
    @classmethod
    def _rouge(cls, v: Any) -> float | None:
        return None if v is None or v == "" else checks.number(v, checks.ROUGE, "queue filter")

    @property
    def quality_on(self) -> bool:
        return bool(self.quality_scorer) and (self.quality_min is not None or self.quality_max is not None)

    def store_filters(self) -> dict[str, Any]:
        return {"status": self.status, "task_type": self.task_type, "model": self.model or None,
                "consensus": self.consensus, "tau": self.tau, "search": self.search,
                "quality_scorer": self.quality_scorer if self.quality_on or "quality" in self.sort else None,
                "quality_min": self.quality_min if self.quality_on else None,
                "quality_max": self.quality_max if self.quality_on else None,
                "source": self.source, "reviewer": self.reviewer or None,
                "needs_review_by": self.needs_review_by or None,
                "rouge_min": self.rouge_min, "rouge_max": self.rouge_max,
                "hide_skipped": True if self.hide_skipped else None, "skipped_by": self.skipped_by or None}

    def for_reviewer(self, reviewer: str | None, quorum: int) -> "QueueFilter":
        """A reviewer's queue: pending leaves out what they skipped (without a login, ``reviewer`` None: what
        anyone skipped, as the app cannot tell people apart), and "skipped" shows their skips; with overlap
        (``quorum`` ≥ 2) pending also leaves out what they have voted on."""
        update: dict[str, Any] = {}
        if self.status in ("pending", "skipped"):
            update.update(hide_skipped=self.status == "pending", skipped_by=reviewer or None)
        if quorum > 1 and reviewer and self.status == "pending":
            update["needs_review_by"] = reviewer
        return self.model_copy(update=update) if update else self


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


def next_candidate(store: Store, f: QueueFilter, after_seq: int | None = None, *, reviewer: str | None = None,
                   quorum: int = 1) -> str | None:
    """The next *pending* candidate after ``after_seq`` under the filter's other conditions (wrapping round);
    None when none is left. With overlap (``quorum`` ≥ 2), one ``reviewer`` has not voted on yet."""
    f = f.model_copy(update={"status": "pending"}).for_reviewer(reviewer, quorum)
    return store.next_in_queue(after_seq, **f.store_filters())


def previous_candidate(store: Store, f: QueueFilter, before_seq: int | None) -> str | None:
    """The candidate before ``before_seq`` in generation order under the filter's conditions other than the
    review status (so the one just reviewed is one step back), wrapping round; None when there is none."""
    if before_seq is None:
        return None
    f = f.model_copy(update={"status": None, "hide_skipped": False, "needs_review_by": None})
    return store.prev_in_queue(before_seq, **f.store_filters())


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
    original = {"instruction": x.instruction, "input": x.input, "output": _chosen_text(outs, cons, x.output)}
    decision, votes = store.decision_of(candidate_id), store.votes_of(candidate_id)
    reject_reason = None
    if x.review_status == "rejected":
        reasons = [decision.reason] if decision else [v.reason for v in votes]
        reject_reason = "; ".join(r for r in reasons if r) or None
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
            "original": original, "comments": store.comments(candidate_id),
            "skipped_by": store.skipped_by(candidate_id),
            "outputs": outputs, "consensus": consensus_view, "source": _source(store, candidate_id),
            "decision": _review_dict(decision) if decision else None, "votes": [_review_dict(v) for v in votes],
            "log": [{"id": r.id, "reviewer": r.reviewer, "at": r.at, "action": r.action, "version": r.version,
                     "reason": r.reason, "undoes": r.undoes, "scope": r.scope} for r in log]}


def _chosen_text(outs: list[Output], cons: dict | None, fallback: str) -> str:
    """The output a review starts from: the consensus choice, else the generator's."""
    if cons and cons["chosen_index"] is not None and cons["chosen_index"] < len(outs):
        return outs[cons["chosen_index"]].text
    return fallback


def _review_dict(r) -> dict:
    return {"reviewer": r.reviewer, "status": r.status, "texts": r.texts, "reason": r.reason, "at": r.at,
            "review_id": r.review_id}


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
def scope_for(quorum: int) -> str:
    """The slot a reviewer's own action writes: the decision in single-review mode, their vote with overlap."""
    return "vote" if quorum > 1 else "decision"


def accept(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
           output_index: int | None = None, quorum: int = 1) -> Candidate:
    """Accept the texts under review: an edit made before stays (the edited instruction, input and output),
    else the consensus choice; ``output_index`` (matrix order) picks another output explicitly (an edited
    instruction and input stay). ``quorum``: reviews per candidate (2+: this is ``reviewer``'s vote).
    Returns the updated row. Raises ConflictError when ``version`` is stale, StoreError for an unknown id or
    output index."""
    text = None
    if output_index is not None:
        outs = _ordered_outputs(store, candidate_id, store.get_consensus(candidate_id))
        if not 0 <= output_index < len(outs):
            raise StoreError(f"candidate {candidate_id[:10]} has outputs o0..o{len(outs) - 1}; "
                             f"there is no o{output_index}")
        text = outs[output_index].text
    return store.review(candidate_id, "accept", reviewer=reviewer, expected_version=version, output=text,
                        scope=scope_for(quorum), quorum=quorum)


def edit(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
         instruction: str | None = None, input: str | None = None, output: str | None = None,
         quorum: int = 1) -> Candidate:
    """Save edited texts as the candidate's reviewed version (the original stays). Fields left None keep
    their current value. Raises ConflictError / StoreError (empty instruction or output)."""
    return store.review(candidate_id, "edit", reviewer=reviewer, expected_version=version,
                        instruction=instruction, input=input, output=output, scope=scope_for(quorum),
                        quorum=quorum)


def reject(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
           reason: str | None = None, quorum: int = 1) -> Candidate:
    """Reject the candidate, with an optional reason (free text, kept as written). Raises ConflictError /
    StoreError."""
    return store.review(candidate_id, "reject", reviewer=reviewer, expected_version=version,
                        reason=(reason or "").strip() or None, scope=scope_for(quorum), quorum=quorum)


def reset(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
          quorum: int = 1) -> Candidate:
    """Take back a review: the candidate (with overlap: ``reviewer``'s vote) is pending again."""
    return store.review(candidate_id, "reset", reviewer=reviewer, expected_version=version,
                        scope=scope_for(quorum), quorum=quorum)


def undo(store: Store, candidate_id: str, *, reviewer: str, version: int | None = None,
         quorum: int = 1) -> Candidate:
    """Undo the latest (not yet undone) review action of yours on a candidate: its slot (the decision, or
    with overlap your vote) gets back the status, texts and reason it had before, through one log row whose
    ``undoes`` column names the entry undone (the log itself is never rewritten). Repeating goes further back.

    In single-review mode only the latest action can be undone, by whoever made it. Raises ConflictError
    (stale ``version``, or the latest decision is someone else's) and StoreError (nothing to undo).
    """
    return store.undo_review(candidate_id, reviewer=reviewer, expected_version=version, quorum=quorum)


# -- the reviewer's day: skip, comments, guidelines, the diff of an edit -------------------------------------
def skip(store: Store, candidate_id: str, *, reviewer: str) -> bool:
    """Set a pending candidate aside for ``reviewer`` ("not now"): no review is logged and nothing is decided —
    it stays pending (for everyone else too) and leaves only ``reviewer``'s pending queue, until they review it
    or :func:`unskip` it (the queue's status "skipped" lists them). Counted apart
    (:meth:`Store.skip_counts`). Returns False when it was skipped already. Raises StoreError when it is not
    pending."""
    return store.skip(candidate_id, reviewer=reviewer)


def unskip(store: Store, candidate_id: str, *, reviewer: str) -> bool:
    """Put a skipped candidate back in ``reviewer``'s pending queue (undoing a skip)."""
    return store.unskip(candidate_id, reviewer=reviewer)


def comment(store: Store, candidate_id: str, *, author: str, text: str) -> int:
    """Add a comment to a candidate (any reviewer, any number; kept as written, shown as text). Raises
    StoreError for an empty or over-long one."""
    return store.add_comment(candidate_id, author=author, text=text)


def guidelines(store: Store, default: str = "") -> dict:
    """The review guidelines to show: the latest an admin saved in the app, else ``default`` (the
    ``review_guidelines`` setting). {text, author, at} (author and at None for the default)."""
    g = store.guidelines()
    return g if g else {"text": default or "", "author": None, "at": None}


def set_guidelines(store: Store, text: str, *, author: str) -> int:
    """Save a new version of the guidelines (Markdown; every version is kept). Admins only: the app checks."""
    return store.set_guidelines(text, author=author)


_WORDS = re.compile(r"\s+|[^\s]+")


def word_diff(before: str, after: str) -> list[tuple[str, str | None]]:
    """A word-level diff of ``after`` against ``before``: (text, "-" removed / "+" added / None kept) pieces,
    whitespace kept, so joining the pieces that are not "+" gives ``before`` and those that are not "-" give
    ``after``. The pieces are plain text (shown with gr.HighlightedText: never markup)."""
    a, b = _WORDS.findall(before or ""), _WORDS.findall(after or "")
    out: list[tuple[str, str | None]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("".join(a[i1:i2]), None))
            continue
        if i2 > i1:
            out.append(("".join(a[i1:i2]), "-"))
        if j2 > j1:
            out.append(("".join(b[j1:j2]), "+"))
    return out


def adjudicate(store: Store, candidate_id: str, *, reviewer: str, decision: str, version: int | None = None,
               texts: dict | None = None, from_reviewer: str | None = None, reason: str | None = None,
               quorum: int = 1) -> Candidate:
    """An admin's final decision on a candidate (the disagreements queue): ``decision`` is "accept" — with
    ``texts`` (instruction / input / output, e.g. edited) or the texts ``from_reviewer`` accepted — or
    "reject". It overrides the votes, which stay as they are (agreement is computed over them)."""
    if decision == "reject":
        return store.review(candidate_id, "reject", reviewer=reviewer, expected_version=version,
                            reason=(reason or "").strip() or None, scope="decision", quorum=quorum)
    if decision != "accept":
        raise StoreError(f"unknown decision {decision!r}; accept or reject")
    if from_reviewer:
        vote = next((v for v in store.votes_of(candidate_id) if v.reviewer == from_reviewer), None)
        if vote is None or vote.texts is None:
            raise StoreError(f"{from_reviewer} has no accepted or edited version of candidate {candidate_id[:10]} "
                             "to pick; pick another reviewer's or edit the texts")
        texts = vote.texts
    if texts is None:
        return store.review(candidate_id, "accept", reviewer=reviewer, expected_version=version,
                            scope="decision", quorum=quorum, reason=reason)
    x = store.get_candidate(candidate_id)
    full = {**x.original.as_dict(), **{k: v for k, v in texts.items() if v is not None}}
    action = "accept" if full == {**x.original.as_dict(), "output": full["output"]} else "edit"
    if action == "accept":
        return store.review(candidate_id, "accept", reviewer=reviewer, expected_version=version,
                            output=full["output"], scope="decision", quorum=quorum, reason=reason)
    return store.review(candidate_id, "edit", reviewer=reviewer, expected_version=version, scope="decision",
                        quorum=quorum, reason=reason, **full)


def bulk_review(store: Store, items: list[tuple[str, int | None]], action: str, *, reviewer: str,
                reason: str | None = None, quorum: int = 1) -> dict:
    """Accept or reject, in one transaction, the selected candidates (``(id, version)`` pairs; version None:
    whatever it is now) as decisions (an admin's bulk action). A candidate changed since its version was read
    is skipped, not overwritten. Returns {done, skipped}."""
    if action not in ("accept", "reject"):
        raise StoreError(f"bulk action must be accept or reject, not {action!r}")
    done = skipped = 0
    with store.atomic():
        for cid, version in items:
            try:
                store.review(cid, action, reviewer=reviewer, expected_version=version, scope="decision",
                             quorum=quorum, reason=(reason or "").strip() or None)
                done += 1
            except ConflictError:
                skipped += 1
    return {"done": done, "skipped": skipped}


# -- the edit form's guard ------------------------------------------------------------------------------------
def form_token(candidate_id: str, version: int, texts: dict) -> str:
    """A token for the edit form as it was rendered: the candidate, its version and a digest of the texts put
    in the form. The app sends it back with a save, together with the token the form showed when the reviewer
    began typing (:func:`check_form`)."""
    import hashlib
    digest = hashlib.sha1("\x1f".join(texts[k] or "" for k in ("instruction", "input", "output"))
                          .encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{candidate_id}:{version}:{digest}"


def check_form(current: dict, form: str | None, typed_on: str | None, texts: dict) -> None:
    """Refuse (StoreError saying to reload) a save whose texts may not be what the reviewer saw and typed:
    a form rendered for another candidate or version than the one open, an edit that began on an earlier render
    of the form or on texts the form was not showing as rendered (the texts were replaced under the reviewer's
    fingers), or texts identical to the rendered ones (nothing to save — also what typing lost to a re-render
    looks like).

    ``typed_on``: what the page recorded when the edit began — a JSON ``{"token", "texts"}`` (the form's token
    then, and the instruction / input / output the form held then, or null when unknown), or a plain token."""
    expected_prefix = f"{current['id']}:{current['version']}:"
    if not form or not form.startswith(expected_prefix):
        raise StoreError("the edit form was showing another candidate or version than the one open: nothing "
                         "was saved. Reload the candidate (Open / reload) and type your edit again.")
    if form_token(current["id"], current["version"], texts) == form:
        raise StoreError("nothing changed in the edit form, so nothing was saved. If you typed, the form "
                         "reloaded over your typing: reload the candidate and type your edit again.")
    began, base = typed_on or "", None
    if began.startswith("{"):
        try:
            seen = json.loads(began)
        except ValueError:
            seen = {}
        began = seen.get("token") or ""
        if isinstance(seen.get("texts"), list) and len(seen["texts"]) == 3:
            base = dict(zip(("instruction", "input", "output"), seen["texts"]))
    if (began and began != form) or (base is not None
                                     and form_token(current["id"], current["version"], base) != form):
        raise StoreError("you began editing before the edit form finished loading this candidate, so what you "
                         "typed may not be what is in the form now: nothing was saved. Reload the candidate and "
                         "type your edit again.")


# -- thresholds ----------------------------------------------------------------------------------------------
def threshold_summary(store: Store, tau: float, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts at threshold ``tau`` and the histogram of min pairwise Rouge-L (rows of the Rouge branch), each
    bin marked as passing or not; from stored scores only."""
    tau = checks.tau(tau, "threshold")
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
    plain = not (f.task_type or f.model or f.search or f.quality_on or f.source or f.reviewer or f.needs_review_by
                 or (f.hide_skipped and store.skip_counts()["skipped"])
                 or f.rouge_min is not None or f.rouge_max is not None)
    total = s["pending_passing"] if plain and f.status == "pending" and f.consensus == "pass" else None
    return {**s, "queue": queue_page(store, f, page, page_size, total)}


def accept_all_passing(store: Store, tau: float, *, reviewer: str, expected: int | None = None,
                       quality_scorer: str | None = None, quality_min: float | None = None,
                       quorum: int = 1) -> dict:
    """Accept (the consensus choice of) every pending candidate that passes at ``tau``, in one transaction.

    ``expected``: the count the reviewer confirmed; when the pending-passing count differs now, raises
    ConflictError and accepts nothing. Returns {accepted, skipped} (skipped is 0: the transaction holds the
    write lock, so nobody reviews one of them meanwhile). Set-based in the store; same result as
    :func:`accept_all_passing_reference`, the one-review-at-a-time twin. Each is a decision (an admin's bulk
    action), also with overlap."""
    tau = checks.tau(tau, "accept all passing")
    n = store.accept_pending_passing(tau, reviewer=reviewer, expected=expected, quality_scorer=quality_scorer,
                                     quality_min=quality_min, quorum=quorum,
                                     reason=_accept_all_reason(tau, quality_scorer, quality_min))
    return {"accepted": n, "skipped": 0}


def _accept_all_reason(tau: float, quality_scorer: str | None, quality_min: float | None) -> str:
    """The review-log reason of a bulk accept (the quality part only when that filter is on)."""
    quality = f", {quality_scorer} >= {quality_min:g}" if quality_scorer and quality_min is not None else ""
    return f"accept all passing at tau={tau:g}{quality}"


def accept_all_passing_reference(store: Store, tau: float, *, reviewer: str, expected: int | None = None,
                                 quality_scorer: str | None = None, quality_min: float | None = None,
                                 quorum: int = 1) -> dict:
    """The plain twin of :func:`accept_all_passing`: one :meth:`Store.review` per candidate."""
    tau = checks.tau(tau, "accept all passing")
    done = skipped = 0
    with store.atomic():
        todo = store.pending_passing(tau, quality_scorer, quality_min)
        if expected is not None and expected != len(todo):
            raise ConflictError(f"{len(todo)} pending candidates pass at τ = {tau:g} now, not the {expected} "
                                "you confirmed; check the count and confirm again")
        for row in todo:
            try:
                store.review(row["id"], "accept", reviewer=reviewer, expected_version=row["version"],
                             reason=_accept_all_reason(tau, quality_scorer, quality_min), quorum=quorum)
                done += 1
            except ConflictError:
                skipped += 1
    return {"accepted": done, "skipped": skipped}


def reject_duplicates(store: Store, groups: list[dict], *, reviewer: str, quorum: int = 1) -> dict:
    """Reject, in one transaction, every member of each near-duplicate group (as
    :func:`curate.select.find_duplicates` returns them) except the one it keeps, when still pending; each
    with the reason "near-duplicate of #seq", as a decision (an admin's bulk action). Reviewed members are left
    alone. Returns {rejected, skipped}."""
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
                             reason=f"near-duplicate of #{keep['seq']}", quorum=quorum)
                done += 1
    return {"rejected": done, "skipped": skipped}


# -- overview -----------------------------------------------------------------------------------------------
def overview(store: Store, tau: float, *, members: list[str] | None = None, quorum: int = 1) -> dict:
    """Counts per stage and filter reason, per-model contribution and keep rates, reviewer progress, each
    reviewer's progress against their share (``members``: the team's logins) and the agreement."""
    tau = checks.tau(tau, "overview")
    st = store.stats()
    passing = store.count_passing(tau)
    instr = st["instructions"]
    inst = st["candidates"]
    reviews = st["reviews"]
    stages = [
        ("seed tasks", sum(st["seeds"].values())),
        ("raw completions", sum(r["completions"] for r in st["completions"])),
        ("instructions kept", instr.get("kept", 0)),
        ("instructions filtered", sum(n for r, n in instr.items() if r not in ("kept", SURPLUS))),
        ("instructions surplus (past the target, set aside)", instr.get(SURPLUS, 0)),
        ("candidates", inst.get("ok", 0)),
        ("candidates auto-filtered", sum(n for r, n in inst.items() if r != "ok")),
        ("ensembled (consensus computed)", passing["scored"]),
        (f"passing consensus at τ={tau:g}", passing["passing"]),
        ("accepted", reviews.get("accepted", 0)),
        ("edited", reviews.get("edited", 0)),
        ("rejected", reviews.get("rejected", 0)),
        ("disagreements (an admin decides)", reviews.get("disputed", 0)),
        ("pending review", reviews.get("pending", 0)),
        ("  of them skipped for now (still pending)", store.skip_counts()["skipped"]),
    ]
    reasons = ([{"stage": "instruction", "reason": r, "n": n} for r, n in instr.items() if r not in ("kept", SURPLUS)]
               + [{"stage": "candidate", "reason": r, "n": n} for r, n in inst.items() if r != "ok"]
               + [{"stage": "completion", "reason": r, "n": n} for r, n in st["unparseable"].items()]
               + ([{"stage": "consensus", "reason": f"below τ={tau:g}", "n": passing["scored"] - passing["passing"]}]
                  if passing["scored"] else []))
    models = store.model_contribution(tau)
    for m in models:  # the keep rate is over what the filters judged: surplus instructions are not in it
        made = m["instructions_kept"] + m["instructions_filtered"]
        m["instruction_keep_rate"] = round(m["instructions_kept"] / made, 3) if made else None
        m["pass_rate"] = round(m["passing"] / m["candidates_ok"], 3) if m["candidates_ok"] else None
        m["chosen_rate"] = round(m["chosen"] / passing["scored"], 3) if passing["scored"] else None
    surplus = instr.get(SURPLUS, 0)
    notes = ([f"{surplus:,} instruction{'s' if surplus != 1 else ''} surplus: a batch's instructions that passed "
              "the filters after the target was reached. They stay stored with that reason (no later run uses them), "
              "are not counted as filtered and are left out of the keep rates."] if surplus else [])
    return {"tau": tau, "stages": [{"stage": s, "n": n} for s, n in stages], "reasons": reasons, "notes": notes,
            "models": models, "reviewers": store.reviewer_progress(), "reviews": reviews,
            "progress": team_progress(store, members or [], quorum), "agreement": agreement_of(store)}


def agreement_of(store: Store) -> dict:
    """Agreement on accept vs reject over the reviewers' current votes (:func:`curate.agreement.agreement`)."""
    from .agreement import agreement
    return agreement(store.all_votes())


def team_progress(store: Store, members: list[str], quorum: int = 1) -> list[dict]:
    """Each reviewer's progress against their share: ``reviewed`` (candidates they hold a vote or a decision
    on), ``share`` (the OK candidates × reviews per candidate, split evenly over the team — the logins, else
    whoever has reviewed), ``done`` (reviewed / share, capped at 1)."""
    counts = store.reviewed_per_reviewer()
    people = sorted(set(members) | set(counts))
    team = len(members) or len(people)
    total = store.count_candidates("ok")
    share = math.ceil(total * max(1, quorum) / team) if team else 0
    return [{"reviewer": r, "reviewed": counts.get(r, 0), "share": share, "on_team": r in members or not members,
             "done": min(1.0, counts.get(r, 0) / share) if share else None} for r in people]


def disagreements(store: Store, page: int = 1, page_size: int = PAGE_SIZE) -> dict:
    """The disagreements queue: candidates whose votes disagree, each with every vote (reviewer, status,
    texts, reason), for an admin to adjudicate. Same shape as :func:`queue_page`, rows with ``votes``."""
    res = queue_page(store, QueueFilter(status="disputed"), page, page_size)
    for r in res["rows"]:
        r["votes"] = [_review_dict(v) for v in store.votes_of(r["id"])]
    return res
