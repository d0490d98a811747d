"""Property: whatever several reviewers do, in any order — accept, edit, reject, undo, reset, an admin's
adjudication, with stale versions among them — the store's state is exactly its review log replayed
(curate.decision.replay, which derives undo from the ``undoes`` column alone), every row of a slot starts where
the previous one left, and a refused action writes nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate import review
from curate.decision import replay
from curate.errors import StoreError
from curate.store import Store
from factories import make_candidate

REVIEWERS = ("ann", "bob", "carl")
ACTIONS = ("accept", "accept_o1", "edit", "reject", "undo", "reset", "adjudicate_accept", "adjudicate_reject")

op = st.tuples(st.sampled_from(ACTIONS), st.integers(0, len(REVIEWERS) - 1), st.integers(0, 2),
               st.sampled_from(("none", "current", "stale")), st.integers(0, 3))


def _apply(store, quorum, action, who, cid, version, k):
    reviewer = REVIEWERS[who]
    kw = {"reviewer": reviewer, "version": version, "quorum": quorum}
    if action == "accept":
        return review.accept(store, cid, **kw)
    if action == "accept_o1":
        return review.accept(store, cid, output_index=1, **kw)
    if action == "edit":
        texts = [{"output": f"edited {k}"}, {"instruction": f"New instruction {k}."},
                 {"instruction": "Both.", "output": f"both {k}"}, {"output": "  "}][k]  # the last one is refused
        return review.edit(store, cid, **texts, **kw)
    if action == "reject":
        return review.reject(store, cid, reason=[None, "off topic", "undo of review #1", "dup"][k], **kw)
    if action == "undo":
        return review.undo(store, cid, **kw)
    if action == "reset":
        return review.reset(store, cid, **kw)
    decision = "accept" if action == "adjudicate_accept" else "reject"
    texts = {"output": f"final {k}"} if decision == "accept" and k % 2 else None
    return review.adjudicate(store, cid, decision=decision, texts=texts, reason=None, **kw)


def _snapshot(store, cids):
    return ([store.get_candidate(c) for c in cids], len(store.review_log(limit=None)),
            store.all_votes(), [store.decision_of(c) for c in cids])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quorum=st.integers(1, 3), ops=st.lists(op, min_size=1, max_size=40))
def test_the_state_is_always_the_log_replayed(quorum, ops):
    store = Store(":memory:")
    cids = [make_candidate(store, instruction=f"Instruction number {i} of the property test.",
                           output=f"Output {i}.", outputs=(f"Output {i}.", f"other output {i}"))
            for i in range(3)]
    originals = {c: store.get_candidate(c).original.as_dict() for c in cids}
    for action, who, c, version_kind, k in ops:
        cid = cids[c]
        current = store.get_candidate(cid).version
        version = {"none": None, "current": current, "stale": current - 1 if current else current + 1}[version_kind]
        before = _snapshot(store, cids)
        try:
            _apply(store, quorum, action, who, cid, version, k)
        except StoreError:  # refused (conflict, nothing to undo, empty edit): nothing was written
            assert _snapshot(store, cids) == before, action
    log = store.review_log(limit=None)
    states = replay(log)
    for cid in cids:
        x = store.get_candidate(cid)
        s = states.get(cid)
        status, texts = s.decided if s else ("pending", None)
        shown = x.reviewed.as_dict() if x.reviewed else None
        assert (x.review_status, shown) == (status, texts)
        assert x.version == (s.version if s else 0)
        assert x.reviewed_by == (s.reviewed_by if s else None)
        assert store.decision_of(cid) == (s.decision if s else None)
        assert {v.reviewer: v for v in store.votes_of(cid)} == (s.votes if s else {})
    # each slot's rows chain: a row starts where the previous row of its slot left
    last: dict[tuple, dict] = {}
    for e in log:
        slot = (e.candidate_id, e.scope, e.reviewer if e.scope == "vote" else "")
        assert e.before == last.get(slot, originals[e.candidate_id]), e
        last[slot] = e.after
    assert all(e.reason is None or not e.reason.startswith("undo of review #") or e.action == "reject"
               for e in log)  # reasons are the reviewers' words only
    store.close()
