"""Team review: logins with roles, overlap (reviews_per_candidate), decided / disputed, adjudication, agreement,
the reviewer tools, and that two processes voting at once lose nothing."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from curate import export as ex  # noqa: E402
from curate import jobs, review  # noqa: E402
from curate.cli import main as cli_main  # noqa: E402
from curate.decision import replay  # noqa: E402
from curate.errors import ConflictError, SettingsError, StoreError  # noqa: E402
from curate.review import QueueFilter  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store  # noqa: E402
from curate.team import Team, parse_logins  # noqa: E402
from curate.ui import Handlers  # noqa: E402
from review_fixtures import filled_store, in_processes, review_steps, scripted_pool  # noqa: E402

F = QueueFilter()


def req(username=None):
    return SimpleNamespace(username=username)


@pytest.fixture
def store(tmp_path):
    s = filled_store(tmp_path / "t.db", 30)
    yield s
    s.close()


@pytest.fixture
def team(tmp_path):
    """An app with three logins (carl is the admin) and two reviews per candidate."""
    db = tmp_path / "team.db"
    filled_store(db, 30).close()
    users = tmp_path / "users.txt"
    users.write_text("ann:pw1 reviewer\nbob:pw2\ncarl:pw3 admin\n", encoding="utf-8")
    settings = load_settings(None, db=str(db), reviewer="x", users_file=str(users), reviews_per_candidate=2)
    runner = jobs.JobRunner(str(db), scripted_pool())
    yield Handlers(settings, runner)
    runner.join(10)


def pending(store, n):
    return [r["id"] for r in store.review_queue(status="pending", limit=n)]


# -- roles ----------------------------------------------------------------------------------------------------
def test_users_file_roles(tmp_path):
    logins = parse_logins("dora:pw admin", None)
    assert (logins[0].user, logins[0].password, logins[0].role) == ("dora", "pw", "admin")
    f = tmp_path / "u.txt"
    f.write_text("ann:p w1 reviewer\nbob:p:w2\n# a comment\ncarl:pw3   admin\n", encoding="utf-8")
    t = Team(parse_logins(None, f))
    assert t.roles == {"ann": "reviewer", "bob": "reviewer", "carl": "admin"}  # a role given: the rest review
    assert [lg.password for lg in parse_logins(None, f)] == ["p w1", "p:w2", "pw3"]
    assert Team(parse_logins("ann:pw1,bob:pw2")).roles == {"ann": "admin", "bob": "admin"}  # no role anywhere
    assert Team([]).role(None) == "admin"  # no login: one local user, an admin
    f.write_text("ann:pw1\nann:pw2\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="listed twice"):
        parse_logins(None, f)
    with pytest.raises(SettingsError, match=r"u.txt:1: 'ann' is not user:password"):
        f.write_text("ann admin\n", encoding="utf-8")
        parse_logins(None, f)


@pytest.mark.parametrize("call", [
    lambda h, r: h.review.ui_confirm_all(tau=0.0, request=r),
    lambda h, r: h.review.ui_accept_all(tau=0.0, count=None, reviewer="", q_scorer="", q_min=None, request=r),
    lambda h, r: h.review.ui_bulk_accept(["x:0"], reason="", reviewer="", request=r),
    lambda h, r: h.run.ui_start_job(kind="generate", instructions=40, task_type="both", instances=True,
                                    instruction_models="", instance_models="", ensemble_models="", seed=0,
                                    batch_size=2, request=r),
    lambda h, r: h.run.ui_cancel("nope", request=r),
    lambda h, r: h.export.ui_export(fmt="alpaca-jsonl", include=["accepted"], tau=0.01, selection="", system="",
                                    provenance="none", request=r),
    lambda h, r: h.select.ui_dups_reject([{"members": []}], reviewer="", request=r),
    lambda h, r: h.disagreements.ui_dis_queue(request=r),
    lambda h, r: h.api.accept_all_passing(tau=0.0, request=r),
    lambda h, r: h.api.adjudicate(candidate_id="x", decision="reject", request=r),
    lambda h, r: h.api.start_job(kind="generate", request=r),
])
def test_a_reviewer_cannot_run_admin_actions(team, call):
    before = len(team.store().review_log(limit=None)), team.store().list_jobs()
    with pytest.raises(gr.Error, match="only an admin can"):
        call(team, req("ann"))
    assert (len(team.store().review_log(limit=None)), team.store().list_jobs()) == before


def test_the_ui_shows_admin_tools_to_admins_only(team):
    ann, carl = team.review.ui_load(reviewer="", request=req("ann")), team.review.ui_load(reviewer="",
                                                                                          request=req("carl"))
    assert ann["admin_tools"]["visible"] is False and ann["disagreements_tab"]["visible"] is False
    assert carl["admin_tools"]["visible"] is True and carl["bulk_box"]["visible"] is True
    assert carl["disagreements_tab"]["visible"] is True
    assert ann["reviewer"]["value"] == "ann" and "2 agreeing reviews" in ann["team_note"]["value"]


# -- overlap, decided, disputed, adjudication ------------------------------------------------------------------
def test_votes_decide_when_they_agree_and_dispute_when_not(store):
    a, b, c = pending(store, 3)
    review.accept(store, a, reviewer="ann", quorum=2)
    assert store.get_candidate(a).review_status == "pending"  # one of two reviews
    review.edit(store, a, reviewer="bob", output="Bob's better output.", quorum=2)
    x = store.get_candidate(a)  # both accept; the texts tie 1-1, and the edited ones win the tie
    assert (x.review_status, x.final_output) == ("edited", "Bob's better output.")
    review.accept(store, b, reviewer="ann", quorum=2)
    review.reject(store, b, reviewer="bob", reason="wrong", quorum=2)
    assert store.get_candidate(b).review_status == "disputed"
    review.reject(store, c, reviewer="ann", quorum=2)
    review.reject(store, c, reviewer="bob", quorum=2)
    assert store.get_candidate(c).review_status == "rejected"
    # the disagreements queue, and an admin's decision over it
    dis = review.disagreements(store)
    assert [r["id"] for r in dis["rows"]] == [b] and {v["reviewer"] for v in dis["rows"][0]["votes"]} == {"ann", "bob"}
    review.adjudicate(store, b, reviewer="carl", decision="accept", from_reviewer="ann", quorum=2)
    x = store.get_candidate(b)
    ann_texts = next(v.texts for v in store.votes_of(b) if v.reviewer == "ann")
    assert x.review_status == "accepted" and x.reviewed.as_dict() == ann_texts
    assert len(store.votes_of(b)) == 2  # the reviews stay (agreement counts them)
    with pytest.raises(StoreError, match="no accepted or edited version"):
        review.adjudicate(store, c, reviewer="carl", decision="accept", from_reviewer="bob", quorum=2)


def test_each_reviewers_queue_leaves_out_their_votes(store):
    a, b = pending(store, 2)
    review.accept(store, a, reviewer="ann", quorum=2)
    f = QueueFilter().for_reviewer("ann", 2)
    assert a not in [r["id"] for r in review.queue_page(store, f, page_size=100)["rows"]]
    assert review.next_candidate(store, QueueFilter(), reviewer="ann", quorum=2) == b
    assert review.next_candidate(store, QueueFilter(), reviewer="bob", quorum=2) == a  # bob still needs to
    single = QueueFilter().for_reviewer("ann", 1)  # single review: no vote filter, only ann's skips leave it
    assert single.model_copy(update={"hide_skipped": False, "skipped_by": None}) == QueueFilter()
    assert (single.needs_review_by, single.hide_skipped, single.skipped_by) == (None, True, "ann")
    assert review.queue_page(store, f)["total"] == store.count_candidates("ok") - 1


def test_with_overlap_others_votes_do_not_conflict_but_your_own_and_decisions_do(store):
    cid = pending(store, 1)[0]
    seen = store.get_candidate(cid).version  # ann and bob both open it at version 0
    review.accept(store, cid, reviewer="ann", version=seen, quorum=3)
    review.reject(store, cid, reviewer="bob", version=seen, quorum=3)  # ann's vote is not bob's business
    with pytest.raises(ConflictError, match="by ann"):  # ann's second tab, still at version 0
        review.reject(store, cid, reviewer="ann", version=seen, quorum=3)
    now = store.get_candidate(cid).version
    review.adjudicate(store, cid, reviewer="carl", decision="accept", version=now, quorum=3)
    with pytest.raises(ConflictError, match="by carl"):  # decided meanwhile: carl's adjudication touches all
        review.edit(store, cid, reviewer="dora", version=now, output="late", quorum=3)


def test_undo_with_overlap_takes_back_only_your_own_vote(store):
    cid = pending(store, 1)[0]
    review.accept(store, cid, reviewer="ann", quorum=2)
    review.reject(store, cid, reviewer="bob", quorum=2)
    assert store.get_candidate(cid).review_status == "disputed"
    review.undo(store, cid, reviewer="ann", quorum=2)  # bob's vote is later, but it is bob's
    assert {v.reviewer for v in store.votes_of(cid)} == {"bob"}
    assert store.get_candidate(cid).review_status == "pending"
    with pytest.raises(StoreError, match="nothing to undo"):
        review.undo(store, cid, reviewer="ann", quorum=2)
    review.adjudicate(store, cid, reviewer="carl", decision="reject", quorum=2)
    with pytest.raises(ConflictError, match="carl"):  # after an adjudication, bob's own vote is not his latest
        review.undo(store, cid, reviewer="bob", quorum=2)
    review.undo(store, cid, reviewer="carl", quorum=2)  # carl takes his decision back: the votes decide again
    assert store.get_candidate(cid).review_status == "pending"


def test_the_export_takes_decided_candidates_only_and_the_card_states_overlap_and_agreement(store, tmp_path):
    ids = pending(store, 6)
    for cid, (x, y) in zip(ids, ["AA", "AR", "RR", "AA", "A.", "EA"]):
        for who, lab in (("ann", x), ("bob", y)):
            if lab == "A":
                review.accept(store, cid, reviewer=who, quorum=2)
            elif lab == "R":
                review.reject(store, cid, reviewer=who, quorum=2)
            elif lab == "E":
                review.edit(store, cid, reviewer=who, output="edited by a reviewer", quorum=2)
    res = ex.export(store, "alpaca-jsonl", tmp_path / "out", include=["accepted", "passing"], tau=0.0)
    exported = {json.loads(line)["instruction"] for line in res.data_path.read_text().splitlines()}
    texts = {cid: store.get_candidate(cid).instruction for cid in ids}
    assert texts[ids[0]] in exported and texts[ids[3]] in exported and texts[ids[5]] in exported  # decided
    assert texts[ids[1]] not in exported  # disputed
    assert texts[ids[2]] not in exported  # rejected by both
    assert texts[ids[4]] not in exported  # half-way: one review of two, even though it passes consensus
    card = (res.path / "README.md").read_text()
    assert "## Review" in card and "2 review(s) per candidate" in card and "Fleiss' kappa" in card
    assert "| ann / bob | 5 | 4 |" in card  # the shared candidates and how many agree


def test_bulk_review_of_selected_rows_skips_changed_ones(store):
    rows = store.review_queue(status="pending", limit=3)
    review.accept(store, rows[2]["id"], reviewer="ann")  # changed since the page was read
    res = review.bulk_review(store, [(r["id"], r["version"]) for r in rows], "reject", reviewer="carl",
                             reason="off topic")
    assert res == {"done": 2, "skipped": 1}
    assert [store.get_candidate(r["id"]).review_status for r in rows] == ["rejected", "rejected", "accepted"]


def test_reviewer_tools_filters_and_sorts(store):
    ids = pending(store, 4)
    review.accept(store, ids[0], reviewer="ann")
    review.reject(store, ids[1], reviewer="bob")
    assert [r["id"] for r in review.queue_page(store, QueueFilter(status=None, reviewer="bob"))["rows"]] == [ids[1]]
    rows = review.queue_page(store, QueueFilter(status=None, rouge_min=0.2, rouge_max=0.6), page_size=100)["rows"]
    assert rows and all(0.2 <= r["min_pairwise"] <= 0.6 for r in rows)
    assert review.queue_page(store, QueueFilter(status=None, rouge_min=0.2, rouge_max=0.6))["total"] == len(rows)
    gen = review.queue_page(store, QueueFilter(status=None, source="instruction_prompt"))["total"]
    assert gen == store.count_candidates(None)  # synthetic candidates all come from the instruction prompt
    assert review.queue_page(store, QueueFilter(status=None, source="instance_completion"))["total"] == 0
    by_agreement = review.queue_page(store, QueueFilter(sort="-agreement"), page_size=100)["rows"]
    values = [store.get_consensus(r["id"])["scores"][store.get_consensus(r["id"])["chosen_index"]]
              for r in by_agreement]
    assert values == sorted(values, reverse=True)
    with pytest.raises(StoreError, match="needs a quality scorer"):
        review.queue_page(store, QueueFilter(sort="quality"))
    with pytest.raises(ValueError, match="min pairwise Rouge-L must be"):
        QueueFilter(rouge_min=2)


def test_team_progress_against_the_share(store):
    for cid in pending(store, 4):
        review.accept(store, cid, reviewer="ann", quorum=2)
    progress = {p["reviewer"]: p for p in review.team_progress(store, ["ann", "bob"], 2)}
    ok = store.count_candidates("ok")
    assert progress["ann"]["reviewed"] == 4 and progress["ann"]["share"] == ok  # ok × 2 reviews ÷ 2 people
    assert progress["bob"]["reviewed"] == 0 and progress["bob"]["done"] == 0


# -- the app and the API ---------------------------------------------------------------------------------------
def test_the_app_with_overlap_adjudication_and_agreement(team):
    st = team.store()
    ann = team.review.ui_next(None, F, request=req("ann"))
    team.review.ui_accept(ann["current"], output_index=None, reviewer="", history=[], f=F, request=req("ann"))
    bob = team.review.ui_next(None, F, request=req("bob"))
    assert bob["current"]["id"] == ann["current"]["id"]  # it still needs bob's review
    team.review.ui_reject(bob["current"], reason="not good", reviewer="", history=[], f=F, request=req("bob"))
    assert st.get_candidate(ann["current"]["id"]).review_status == "disputed"
    assert team.review.ui_next(None, F, request=req("ann"))["current"]["id"] != ann["current"]["id"]
    q = team.disagreements.ui_dis_queue(request=req("carl"))
    assert list(q["dis_queue"]["id"]) == [ann["current"]["id"]]
    opened = team.disagreements.ui_dis_open(ann["current"]["id"], request=req("carl"))
    assert {opened["dis_vote_0"]["label"].split(" · ")[0], opened["dis_vote_1"]["label"].split(" · ")[0]} == {
        "ann", "bob"}
    out = team.disagreements.ui_dis_accept(opened["dis_current"], instruction="Final instruction.", input="",
                                           output="Final output.", reviewer="", request=req("carl"))
    x = st.get_candidate(ann["current"]["id"])
    assert (x.review_status, x.final_output, x.reviewed_by) == ("edited", "Final output.", "carl")
    assert out["dis_info"] == "No disagreement to decide."
    ov = team.overview.ui_overview(tau=0.01)
    assert list(ov["ov_agreement"]["reviewer"]) == ["ann"] and list(ov["ov_agreement"]["with"]) == ["bob"]
    assert set(ov["ov_progress"]["reviewer"]) == {"ann", "bob", "carl"}
    assert "Fleiss" in ov["ov_agreement_text"]
    assert team.api.agreement()["pairs"][0]["shared"] == 1


def _votes(ids, who):
    offset = {"ann": 0, "bob": 1}[who]
    return [("accept" if (i + offset) % 3 else "reject", cid, {"reviewer": who, "quorum": 2})
            for i, cid in enumerate(ids)]


def test_two_processes_voting_on_the_same_candidates_lose_nothing(tmp_path):
    path = tmp_path / "votes.db"
    filled_store(path, 150).close()
    with Store(path) as st:
        ids = [r["id"] for r in st.review_queue(status="pending", limit=1000)]
    # the same candidates, at the same time
    errors = [e for res in in_processes(review_steps, [(str(path), _votes(ids, who)) for who in ("ann", "bob")])
              for e in res]
    assert errors == []
    with Store(path) as st:
        assert len(st.all_votes()) == 2 * len(ids) and len(st.review_log(limit=None)) == 2 * len(ids)
        states = replay(st.review_log(limit=None))
        for cid in ids:
            x = st.get_candidate(cid)
            assert (x.review_status, x.reviewed.as_dict() if x.reviewed else None) == states[cid].decided
        counts = st.review_counts()
        assert counts.get("disputed", 0) > 0 and counts.get("accepted", 0) > 0 and counts.get("pending", 0) == 0


def test_curate_agreement_prints_the_pairs(store, capsys):
    for cid, (x, y) in zip(pending(store, 4), ["AA", "AR", "RR", "AA"]):
        (review.accept if x == "A" else review.reject)(store, cid, reviewer="ann", quorum=2)
        (review.accept if y == "A" else review.reject)(store, cid, reviewer="bob", quorum=2)
    assert cli_main(["agreement", "--db", store.path]) == 0
    out = capsys.readouterr().out
    assert "ann" in out and "bob" in out and "Fleiss' kappa" in out
    assert cli_main(["agreement", "--db", store.path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pairs"][0]["shared"] == 4 and data["pairs"][0]["agree"] == 3
