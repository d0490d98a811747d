"""The app's named API through gradio_client, against an in-process server on a free port."""

from __future__ import annotations

import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402

from curate import jobs
from curate.settings import load_settings
from curate.store import Store
from curate.ui import launch
from review_fixtures import free_port, scripted_pool

ENDPOINTS = {"start_job", "job_status", "queue", "candidate", "accept", "edit", "reject", "undo", "passing_count",
             "accept_all_passing", "pause_job", "resume_job", "cancel_job", "overview"}


def serve(db, **settings):
    s = load_settings(None, db=str(db), port=free_port(), reviewer="api-user", **settings)
    demo = launch(s, jobs.JobRunner(str(db), scripted_pool(delay=0.1)), prevent_thread_lock=True, quiet=True)
    return demo, demo.local_url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("api") / "api.db"
    Store(db).close()
    demo, url = serve(db)
    yield db, url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[1], verbose=False)


def wait_job(client, job_id, timeout=60.0) -> list[dict]:
    seen = []
    t0 = time.time()
    while time.time() - t0 < timeout:
        job = client.predict(job_id=job_id, api_name="/job_status")
        seen.append(job)
        if job["state"] not in ("queued", "running", "pausing", "cancelling"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {seen[-1]}")


@pytest.fixture(scope="module")
def generated(client, server):
    """Generation then ensembling through the API (scripted models), so the review tests have candidates."""
    job = client.predict(kind="generate", instructions=8, batch_size=2, api_name="/start_job")
    seen = wait_job(client, job["id"])
    ens = client.predict(kind="ensemble", api_name="/start_job")
    ens_seen = wait_job(client, ens["id"])
    return seen, ens_seen


def test_named_endpoints(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {f"/{e}" for e in ENDPOINTS} <= set(named)


def test_generation_job_runs_in_the_background_with_progress(generated, server):
    seen, ens_seen = generated
    final = seen[-1]
    assert final["state"] == "done", final["error"]
    kept = [(j["progress"].get("counts") or {}).get("kept", 0) for j in seen]
    assert kept == sorted(kept) and kept[-1] == 8
    assert len({(j["progress"].get("phase"), j["progress"].get("done")) for j in seen}) >= 3  # it moved
    assert final["progress"]["tok_s"] > 0 and final["progress"]["counts"]["candidates"] >= 8
    assert ens_seen[-1]["state"] == "done" and sum(ens_seen[-1]["progress"]["counts"]["consensus"].values()) >= 8
    with Store(server[0]) as st:
        assert st.count_kept_instructions() == 8 and st.count_passing(0.0)["scored"] >= 8


def test_queue_and_candidate(generated, client):
    q = client.predict(status="pending", api_name="/queue")
    assert q["total"] >= 8 and q["rows"][0]["min_pairwise"] is not None
    d = client.predict(candidate_id=q["rows"][0]["id"], api_name="/candidate")
    assert len(d["outputs"]) == 3 == len(d["consensus"]["pairwise"])
    assert all(o["agreement"] is not None and o["model"] for o in d["outputs"])
    assert d["consensus"]["explanation"].startswith("Chose o")


def pending(client, n=1) -> list[dict]:
    return client.predict(status="pending", page_size=n, api_name="/queue")["rows"]


def test_accept_edit_reject_change_the_store(generated, client, server):
    a, e, r = pending(client, 3)
    res = client.predict(candidate_id=a["id"], version=a["version"], reviewer="ann", api_name="/accept")
    assert res["candidate"]["review_status"] == "accepted" and res["next_pending"] != a["id"]
    client.predict(candidate_id=e["id"], output="An edited output.", version=e["version"], reviewer="ann",
                   api_name="/edit")
    client.predict(candidate_id=r["id"], reason="nonsense", reviewer="ann", api_name="/reject")
    with Store(server[0]) as st:
        assert st.get_candidate(a["id"]).review_status == "accepted"
        edited = st.get_candidate(e["id"])
        assert (edited.review_status, edited.final_output) == ("edited", "An edited output.")
        assert edited.output != "An edited output."  # the original is kept
        assert st.review_log(r["id"])[-1].reason == "nonsense"
        assert {x.reviewer for x in st.review_log()} == {"ann"}
    undone = client.predict(candidate_id=r["id"], reviewer="ann", api_name="/undo")
    assert undone["candidate"]["review_status"] == "pending"


def test_second_reviewer_gets_a_conflict_message(generated, client, server):
    (row,) = pending(client)
    other = Client(server[1], verbose=False)
    client.predict(candidate_id=row["id"], version=row["version"], reviewer="ann", api_name="/accept")
    with pytest.raises(Exception, match="changed since you opened it by ann"):
        other.predict(candidate_id=row["id"], version=row["version"], reviewer="bob", api_name="/reject")
    with Store(server[0]) as st:
        assert st.get_candidate(row["id"]).review_status == "accepted"
        log = st.review_log(row["id"])
        assert (log[-1].reviewer, log[-1].action) == ("ann", "accept")
        assert "bob" not in {x.reviewer for x in log}


def test_ui_events_take_the_nine_filter_values(generated, server):
    """The Review tab's events (undocumented ``/ui_*`` endpoints, what bench/ui.py drives) take the queue filter
    as its nine component values and build one filter from them."""
    c = Client(server[1], verbose=False)  # its own session: the open candidate is per session
    filters = ["pending", "", "", "", 0.0, "", "seq", "", 0.0,  # status, type, model, consensus, tau, search,
               None, "", "", None, None]  # sort, quality scorer (off), quality min / max, source, reviewed by,
    #                                       min RL range (the last five: the reviewer tools' filters)
    shown = c.predict(*filters[:3], "pass", *filters[4:], api_name="/ui_threshold")
    with Store(server[0]) as st:
        assert shown[0].startswith(f"{st.count_passing(0.0)['passing']:,} of ")
    header = c.predict(*filters, api_name="/ui_next")[0]
    seq = int(header[1:].split(" ")[0])
    after = c.predict("ann", *filters, api_name="/ui_accept")[0]  # accepts the open one, opens the next
    assert int(after[1:].split(" ")[0]) > seq
    with Store(server[0]) as st:
        accepted = [r for r in st.review_queue(status="accepted", limit=500) if r["seq"] == seq]
    assert accepted and accepted[0]["reviewed_by"] == "ann"


def test_passing_count_and_accept_all(generated, client, server):
    c = client.predict(tau=0.0, api_name="/passing_count")
    assert c["passing"] <= c["scored"] and c["pending_passing"] <= c["passing"]
    with pytest.raises(Exception, match="confirm again"):
        client.predict(tau=0.0, expected=c["pending_passing"] + 1, reviewer="ann", api_name="/accept_all_passing")
    res = client.predict(tau=0.0, expected=c["pending_passing"], reviewer="ann", api_name="/accept_all_passing")
    assert res["accepted"] == c["pending_passing"]
    assert client.predict(tau=0.0, api_name="/passing_count")["pending_passing"] == 0


def test_login_required_for_the_api_and_names_the_reviewer(tmp_path):
    db = tmp_path / "auth.db"
    from review_fixtures import filled_store
    filled_store(db, 5).close()
    demo, url = serve(db, auth="ann:pw1,bob:pw2")
    try:
        with pytest.raises(Exception):
            Client(url, verbose=False)
        with pytest.raises(Exception):
            Client(url, auth=("ann", "wrong"), verbose=False)
        c = Client(url, auth=("bob", "pw2"), verbose=False)
        (row,) = c.predict(page_size=1, api_name="/queue")["rows"]
        c.predict(candidate_id=row["id"], reviewer="mallory", api_name="/accept")
        with Store(db) as st:
            assert st.get_candidate(row["id"]).reviewed_by == "bob"  # the login, not the name passed
    finally:
        demo.close()


def test_a_team_through_the_api_roles_overlap_adjudication_agreement(tmp_path):
    """Two reviewers with logins split the queue with overlap, a reviewer cannot run admin actions, the admin
    adjudicates their disagreement, and the agreement comes back — all through HTTP."""
    from review_fixtures import filled_store
    db = tmp_path / "team.db"
    filled_store(db, 8).close()
    users = tmp_path / "users.txt"
    users.write_text("ann:pw1 reviewer\nbob:pw2 reviewer\ncarl:pw3 admin\n", encoding="utf-8")
    demo, url = serve(db, users_file=str(users), reviews_per_candidate=2)
    try:
        ann, bob, carl = (Client(url, auth=(u, p), verbose=False) for u, p in
                          (("ann", "pw1"), ("bob", "pw2"), ("carl", "pw3")))
        (row,) = ann.predict(page_size=1, api_name="/queue")["rows"]
        ann.predict(candidate_id=row["id"], version=row["version"], api_name="/accept")
        assert row["id"] not in [r["id"] for r in ann.predict(page_size=50, api_name="/queue")["rows"]]
        (brow,) = bob.predict(page_size=1, api_name="/queue")["rows"]
        assert brow["id"] == row["id"]  # still needs bob's review
        bob.predict(candidate_id=row["id"], reason="no", version=row["version"], api_name="/reject")  # no conflict
        with pytest.raises(Exception, match="only an admin can accept all that pass"):
            ann.predict(tau=0.0, api_name="/accept_all_passing")
        with pytest.raises(Exception, match="only an admin can"):
            bob.predict(candidate_id=row["id"], decision="accept", api_name="/adjudicate")
        dis = carl.predict(api_name="/disagreements")
        assert [r["id"] for r in dis["rows"]] == [row["id"]] and len(dis["rows"][0]["votes"]) == 2
        carl.predict(candidate_id=row["id"], decision="accept", from_reviewer="ann", api_name="/adjudicate")
        ag = carl.predict(api_name="/agreement")
        assert ag["pairs"][0]["a"] == "ann" and ag["pairs"][0]["shared"] == 1 and ag["pairs"][0]["agree"] == 0
        assert {p["reviewer"] for p in ag["progress"]} == {"ann", "bob", "carl"}
        with Store(db) as st:
            x = st.get_candidate(row["id"])
            assert (x.review_status, x.reviewed_by) == ("accepted", "carl")
            assert {(e.reviewer, e.scope) for e in st.review_log(row["id"])} == {
                ("ann", "vote"), ("bob", "vote"), ("carl", "decision")}
    finally:
        demo.close()
