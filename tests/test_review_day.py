"""The reviewer's day (issue 16, items 11 and 12) through the store, curate.review and the Review tab's
handlers: an edit stays open with its diff, Previous, skip (not now, still pending, counted apart, undoable,
per reviewer under team review), comments (several reviewers, kept as written, inert), the guidelines panel
(admin Markdown, sanitised), and the m008 migration on an old store."""

from __future__ import annotations

import os
import random
import re
import sqlite3
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from curate import jobs, review  # noqa: E402
from curate.errors import StoreError  # noqa: E402
from curate.review import QueueFilter  # noqa: E402
from curate.settings import load_settings  # noqa: E402
from curate.store import Store, migrations  # noqa: E402
from curate.ui import Handlers  # noqa: E402
from curate.ui.base import safe_markdown  # noqa: E402
from curate.ui.tabs.review import VIEW  # noqa: E402
from review_fixtures import XSS, filled_store, scripted_pool  # noqa: E402

F = QueueFilter()


def req(username=None):
    return SimpleNamespace(username=username)


def make(tmp_path, users: str | None = None, quorum: int = 1, **settings) -> Handlers:
    db = tmp_path / "d.db"
    filled_store(db, 12).close()
    extra = {}
    if users:
        path = tmp_path / "users.txt"
        path.write_text(users)
        extra["users_file"] = str(path)
    s = load_settings(None, db=str(db), reviewer="ann", reviews_per_candidate=quorum, **extra, **settings)
    return Handlers(s, jobs.JobRunner(str(db), scripted_pool()))


@pytest.fixture
def h(tmp_path):
    return make(tmp_path)


# -- item 11: the edit stays, with its diff; Previous ---------------------------------------------------------
def test_save_edit_stays_on_the_candidate_and_shows_the_saved_version_with_its_diff(h):
    first = h.review.ui_next(None, F)
    cur = first["current"]
    assert first["saved_box"]["visible"] is False and first["diff"] == []
    out = h.review.ui_edit(cur, instruction=first["edit_instruction"], input=first["edit_input"],
                           output="A much better answer.", reviewer="ann", history=[], f=F,
                           form=first["form_token"], typed_on=first["form_token"], request=req())
    assert set(out) >= set(VIEW)
    assert out["current"]["id"] == cur["id"] and out["current"]["version"] == cur["version"] + 1  # stayed
    assert "saved as version 1" in out["header"] and " · edited" in out["header"]
    assert out["saved_box"]["visible"] is True and out["saved_output"] == "A much better answer."
    assert out["edit_output"] == "A much better answer."  # the form shows the saved texts, ready for more
    removed = "".join(t for t, k in out["diff"] if k == "-")
    added = "".join(t for t, k in out["diff"] if k == "+")
    assert first["edit_output"].split()[0] in removed and "better" in added
    assert out["diff"][0] == ("output: ", None)  # only the output changed: the instruction is not listed
    assert out["instruction"]["label"] == "Instruction (as generated)"
    assert out["history"] == [[cur["id"], cur["version"] + 1]]
    # an edit of the instruction shows the reviewed instruction in the main panel, labelled so
    again = h.review.ui_edit(out["current"], instruction="Say it better.", input=out["edit_input"],
                             output=out["edit_output"], reviewer="ann", history=out["history"], f=F,
                             form=out["form_token"], typed_on=out["form_token"], request=req())
    assert again["instruction"]["value"] == "Say it better." and "reviewed version" in again["instruction"]["label"]
    assert [t for t, k in again["diff"] if k is None and t.endswith(": ")] == ["instruction: ", "output: "]


def test_word_diff_rebuilds_both_texts_on_random_cases():
    rng = random.Random(7)
    words = ["a", "b", "c", "<b>", "&amp;", "x y", "\n", "  "]
    for _ in range(300):
        before = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        after = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        d = review.word_diff(before, after)
        assert "".join(t for t, k in d if k != "+") == before
        assert "".join(t for t, k in d if k != "-") == after
        assert all(k in (None, "+", "-") for _, k in d)


def test_previous_opens_the_candidate_before_whatever_its_status(h):
    first = h.review.ui_next(None, F)
    after = h.review.ui_accept(first["current"], output_index=None, reviewer="ann", history=[], f=F, request=req())
    assert after["current"]["seq"] == first["current"]["seq"] + 1
    back = h.review.ui_prev(after["current"], F)  # the one just accepted: no longer pending, still one key away
    assert back["current"]["id"] == first["current"]["id"] and " · accepted" in back["header"]
    wrapped = h.review.ui_prev(back["current"], F)  # before the first: wraps round to the last
    assert wrapped["current"]["seq"] == max(r["seq"] for r in h.store().review_queue(status=None, limit=100))
    with pytest.raises(gr.Error, match="Open a candidate first"):
        h.review.ui_prev(None, F)


# -- item 12: skip ----------------------------------------------------------------------------------------
def test_skip_leaves_the_queue_stays_pending_counts_apart_and_undo_brings_it_back(h):
    first = h.review.ui_next(None, F)
    cid = first["current"]["id"]
    pending = h.store().count_queue(status="pending")
    out = h.review.ui_skip(first["current"], reviewer="ann", history=[], f=F, request=req())
    st = h.store()
    assert out["current"]["id"] != cid and out["history"] == [[cid, 0, "skip"]]
    row = st.get_candidate(cid)
    assert (row.review_status, row.version) == ("pending", 0) and st.review_log(cid) == []  # no review logged
    assert st.count_queue(status="pending") == pending  # still pending for the store and the export
    queue = h.review.ui_queue(F, page=1, request=req())
    assert cid not in list(queue["queue"]["id"]) and len(queue["queue"]) == pending - 1
    assert "1 skipped for now" in queue["page_info"]
    skipped = h.review.ui_queue(QueueFilter(status="skipped"), page=1, request=req())
    assert list(skipped["queue"]["id"]) == [cid]
    assert st.skip_counts("ann") == {"skipped": 1, "mine": 1}
    assert "skipped for now by ann" in h.review.ui_open(cid, 0.01)["header"]
    assert any(s["stage"].strip().startswith("of them skipped") and s["n"] == 1
               for s in review.overview(st, 0.01)["stages"])
    # Next never lands on it
    seen = {out["current"]["id"]}
    cur = out["current"]
    for _ in range(15):
        cur = h.review.ui_next(cur, F)["current"]
        seen.add(cur["id"])
    assert cid not in seen
    # undo puts it back in the queue
    back = h.review.ui_undo(out["history"], reviewer="ann", tau=0.01, request=req())
    assert back["current"]["id"] == cid and back["history"] == [] and "skip was undone" in back["header"]
    assert st.skip_counts("ann")["mine"] == 0 and cid in list(h.review.ui_queue(F, page=1)["queue"]["id"])


def test_reviewing_a_skipped_candidate_ends_the_skip_and_only_pending_ones_can_be_skipped(h):
    first = h.review.ui_next(None, F)
    cid = first["current"]["id"]
    assert review.skip(h.store(), cid, reviewer="ann") is True
    assert review.skip(h.store(), cid, reviewer="ann") is False  # already
    review.accept(h.store(), cid, reviewer="ann", version=0)
    assert h.store().skipped_by(cid) == [] and h.store().skip_counts()["skipped"] == 0
    with pytest.raises(StoreError, match="not pending"):
        review.skip(h.store(), cid, reviewer="ann")
    with pytest.raises(gr.Error, match="not pending"):
        h.review.ui_skip({"id": cid, "version": 1, "seq": 1}, reviewer="ann", history=[], f=F, request=req())
    # the undo of the accept puts it back to pending; the skip stays ended
    review.undo(h.store(), cid, reviewer="ann", version=1)
    assert h.store().get_candidate(cid).review_status == "pending" and h.store().skipped_by(cid) == []


def test_with_logins_and_overlap_a_skip_leaves_only_that_reviewers_queue(tmp_path):
    h = make(tmp_path, users="ann:a reviewer\nbob:b reviewer\nboss:c admin\n", quorum=2)
    ann, bob = req("ann"), req("bob")
    first = h.review.ui_next(None, F, request=ann)
    cid = first["current"]["id"]
    h.review.ui_skip(first["current"], reviewer="", history=[], f=F, request=ann)
    assert cid not in list(h.review.ui_queue(F, page=1, request=ann)["queue"]["id"])
    assert cid in list(h.review.ui_queue(F, page=1, request=bob)["queue"]["id"])  # bob still has it
    assert h.review.ui_next(None, F, request=bob)["current"]["id"] == cid
    assert "1 skipped for now by you" in h.review.ui_queue(F, page=1, request=ann)["page_info"]
    assert "skipped" not in h.review.ui_queue(F, page=1, request=bob)["page_info"]
    # bob votes: a vote, the candidate still needs ann's (quorum 2), and stays out of ann's queue
    h.review.ui_accept({"id": cid, "version": 0, "seq": first["current"]["seq"]}, output_index=None,
                       reviewer="", history=[], f=F, request=bob)
    assert h.store().get_candidate(cid).review_status == "pending"
    assert cid not in list(h.review.ui_queue(F, page=1, request=ann)["queue"]["id"])
    skipped = h.review.ui_queue(QueueFilter(status="skipped"), page=1, request=ann)
    assert list(skipped["queue"]["id"]) == [cid]


# -- item 12: comments ------------------------------------------------------------------------------------
def test_comments_persist_with_author_and_time_from_several_reviewers_and_stay_text(tmp_path):
    h = make(tmp_path, users="ann:a reviewer\nbob:b reviewer\n")
    first = h.review.ui_next(None, F, request=req("ann"))
    cur = first["current"]
    assert first["comments"].empty
    out = h.review.ui_comment(cur, text="  Is this " + XSS, reviewer="", request=req("ann"))
    assert out["comment_text"] == ""
    h.review.ui_comment(cur, text="Agreed, the input is off.", reviewer="", request=req("bob"))
    with pytest.raises(gr.Error, match="empty"):
        h.review.ui_comment(cur, text="   ", reviewer="", request=req("bob"))
    with pytest.raises(gr.Error, match="Open a candidate first"):
        h.review.ui_comment(None, text="x", reviewer="", request=req("bob"))
    shown = h.review.ui_open(cur["id"], 0.01)["comments"]  # reopening shows them, as strings
    assert list(shown["author"]) == ["ann", "bob"] and list(shown["comment"])[0] == "Is this " + XSS
    assert all(isinstance(v, str) and v for v in shown["at"])
    st = Store(h.settings.db)  # another connection (another process would read the same)
    assert [c["author"] for c in st.comments(cur["id"])] == ["ann", "bob"]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        st.db.execute("DELETE FROM review_comments")
    st.close()
    assert h.store().get_candidate(cur["id"]).version == 0  # a comment is no review


# -- item 12: guidelines ----------------------------------------------------------------------------------
def test_guidelines_come_from_the_settings_admins_edit_them_and_they_render_sanitised(tmp_path):
    h = make(tmp_path, users="ann:a reviewer\nboss:b admin\n",
             review_guidelines="# Accept\nAnswers that are **correct**.\n<script>window.__g = 1</script>")
    shown = h.review.ui_guidelines(req("ann"))
    assert "**correct**" in shown["guidelines"] and "<script" not in shown["guidelines"]
    assert "&lt;script&gt;" in shown["guidelines"]
    assert shown["guidelines_admin"]["visible"] is False  # a reviewer reads them, cannot edit
    with pytest.raises(gr.Error, match="admin"):
        h.review.ui_guidelines_save("mine now", reviewer="", request=req("ann"))
    evil = ('Reject <img src=x onerror="alert(1)"> and [this](javascript:alert(2)) '
            "[that](JavaScript:alert(3)) ![i](data:text/html,x)")
    saved = h.review.ui_guidelines_save(evil, reviewer="", request=req("boss"))
    md = saved["guidelines"]
    assert "<img" not in md and not re.search(r"(?i)(?<!blocked-)\b(javascript|data):", md)
    assert "](blocked-javascript:alert(2))" in md
    assert "Guidelines saved by boss" in md and saved["guidelines_admin"]["visible"] is True
    assert saved["guidelines_edit"] == evil  # the editor holds the source as written
    assert review.guidelines(h.store())["text"] == evil  # stored as written, sanitised when shown
    assert h.review.ui_guidelines(req("ann"))["guidelines"] == md  # everyone sees the latest


def test_a_name_in_markdown_is_literal():
    from curate.ui.base import md_literal
    assert md_literal("[x](https://e.org) *b* <i>") == "\\[x\\]\\(https://e\\.org\\) \\*b\\* &lt;i&gt;"


def test_safe_markdown_keeps_formatting_and_plain_links():
    assert safe_markdown("**b** [x](https://example.com) a < b") == "**b** [x](https://example.com) a &lt; b"


# -- m008 on an old store ---------------------------------------------------------------------------------
def test_m008_adds_the_review_day_tables_to_a_store_without_them(tmp_path):
    path = tmp_path / "old.db"
    names = [m.name for m in migrations._migrations]
    keep = migrations._migrations
    migrations._migrations = keep[:names.index("m008_review_day")]
    try:
        st = Store(path)
        assert "m008_review_day" not in st.applied_migrations()
        assert "review_skips" not in st.db.table_names()
        st.close()
        filled_store(path, 4).close()
        with Store(path) as st:
            before = [(r["id"], r["review_status"]) for r in st.review_queue(status=None, limit=10)]
    finally:
        migrations._migrations = keep
    with Store(path) as st:  # opening with today's code applies m008 and keeps every row
        assert st.applied_migrations()[-1] == "m008_review_day"
        assert {"review_skips", "review_comments", "review_guidelines"} <= set(st.db.table_names())
        assert [(r["id"], r["review_status"]) for r in st.review_queue(status=None, limit=10)] == before
        cid = before[0][0]
        review.skip(st, cid, reviewer="ann")
        review.comment(st, cid, author="ann", text="fine")
        assert st.skipped_by(cid) == ["ann"] and st.comments(cid)[0]["text"] == "fine"
